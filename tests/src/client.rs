//! A tiny HTTP client for talking to Envoy as a user would: every status, 4xx and 5xx
//! included, comes back as a [`Reply`]; only a transport failure is an error. `https://`
//! URLs are checked against the CAs a test [`trust`]s (and no other: a test never reaches
//! the internet), as `curl --cacert` would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::{chunked, headers};

/// How long one exchange may take before it counts as a transport failure.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A response as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Every header in arrival order, names lowercased, duplicates kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of the header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        headers::first(&self.headers, name)
    }

    /// Every value of the header `name` (any case), in arrival order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        headers::all(&self.headers, name)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics, showing the body, if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }
}

/// The CAs every `https://` request trusts: those [`trust`] was given, in this process.
static TRUSTED: Mutex<Option<Arc<ClientConfig>>> = Mutex::new(None);
static ROOTS: Mutex<Vec<CertificateDer<'static>>> = Mutex::new(Vec::new());

/// Makes every later `https://` request of this process trust the CA certificates in the PEM
/// file `ca` (a test's own CA, such as the demo's `ca.pem`), beside those trusted already.
/// Panics if the file holds no certificate.
pub fn trust(ca: &Path) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .unwrap_or_else(|e| panic!("{}: {e}", ca.display()));
    assert!(!certs.is_empty(), "{}: no certificate", ca.display());
    let mut roots = ROOTS.lock().unwrap_or_else(PoisonError::into_inner);
    roots.extend(certs);
    let mut store = RootCertStore::empty();
    for cert in roots.iter() {
        store
            .add(cert.clone())
            .unwrap_or_else(|e| panic!("{}: {e}", ca.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|builder| builder.with_root_certificates(store).with_no_client_auth())
        .unwrap_or_else(|e| panic!("TLS client: {e}"));
    *TRUSTED.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(config));
}

/// Sends one request on a fresh connection and returns the reply whatever its status;
/// panics on a transport failure (refused connection, timeout). `body: None` sends no body
/// and no `content-length`. ureq sends a repeated header name only for `x-` headers (a later
/// `authorization` replaces an earlier one): use [`send_raw`] to repeat any other.
pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
    try_send(method, url, headers, body)
        .unwrap_or_else(|e| panic!("{method} {url}: no HTTP reply: {e}"))
}

/// `send("GET", url, headers, None)`.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    send("GET", url, headers, None)
}

/// Like [`send`], but a transport failure is an `Err` naming it, for tests that expect one.
pub fn try_send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Reply, String> {
    // A fresh agent per request: no pooled connection carries over between requests, so
    // successive requests are spread over Envoy's workers as separate clients would be.
    let mut agent = ureq::AgentBuilder::new().timeout(TIMEOUT).redirects(0);
    if let Some(config) = TRUSTED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
    {
        agent = agent.tls_config(config);
    }
    let agent = agent.build();
    let request = headers
        .iter()
        .fold(agent.request(method, url), |r, (n, v)| r.set(n, v));
    let result = match body {
        Some(bytes) => request.send_bytes(bytes),
        None => request.call(),
    };
    let response = match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(ureq::Error::Transport(e)) => return Err(e.to_string()),
    };
    into_reply(response)
}

fn into_reply(response: ureq::Response) -> Result<Reply, String> {
    let status = response.status();
    let mut headers: Vec<(String, String)> = Vec::new();
    for name in response.headers_names() {
        // headers_names lists a repeated header once per occurrence: take the values in turn.
        let seen = headers.iter().filter(|(n, _)| *n == name).count();
        if let Some(value) = response.all(&name).get(seen) {
            let value = value.to_string();
            headers.push((name, value));
        }
    }
    let mut body = Vec::new();
    response
        .into_reader()
        .read_to_end(&mut body)
        .map_err(|e| format!("status {status}, then reading the body failed: {e}"))?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// Writes `request` verbatim to `127.0.0.1:port` and reads the reply until the server closes
/// the connection (so send `connection: close`), for requests ureq will not build: repeated
/// headers, odd framing. Panics on a transport failure or a reply that is not HTTP/1.1.
pub fn send_raw(port: u16, request: &[u8]) -> Reply {
    let exchange = || -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.write_all(request)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        Ok(raw)
    };
    let raw = exchange().unwrap_or_else(|e| panic!("127.0.0.1:{port}: no HTTP reply: {e}"));
    parse_raw(&raw).unwrap_or_else(|e| {
        panic!(
            "127.0.0.1:{port}: {e} in reply {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn parse_raw(raw: &[u8]) -> Result<Reply, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or("no HTTP/1.1 status line")?;
    let headers: Vec<(String, String)> = lines.filter_map(headers::parse_line).collect();
    let mut reply = Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    };
    if reply.header("transfer-encoding") == Some("chunked") {
        reply.body = chunked::decode(&mut reply.body.as_slice())
            .map_err(|e| format!("malformed chunked body: {e}"))?;
    }
    Ok(reply)
}
