//! The HTTP side: bind each service's port (naming the port if it is taken), answer requests
//! on a few threads, over HTTPS when given a certificate ([`Tls`]), and log one line per
//! request to stdout.
//!
//! With TLS, tiny_http does each handshake on its accept thread, with no time limit: a client
//! that connects and never says hello holds up the next connections. These are demo upstreams
//! on loopback, behind Envoy; a service exposed further would need a server that bounds it.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use portcullis_tls::{certificates, private_key};

use crate::login::{self, Users};
use crate::service::{self, Answer, Request, Service};

/// The largest request body a service reads; a longer one gets 413.
pub const MAX_BODY: u64 = 64 * 1024;

/// Threads answering each service's requests (tiny_http reads each connection on its own
/// thread already): two, so one slow client does not hold up the rest.
const WORKERS: usize = 2;

/// Binds `addr` for `service`. The error names the service and the port, and says what to do
/// when the port is taken.
pub fn bind(service: Service, addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).map_err(|e| match e.kind() {
        ErrorKind::AddrInUse => format!(
            "{}: port {} is already in use on {} (another `make run` still running? \
             `ss -ltnp 'sport = :{}'` shows who holds it)",
            service.name(),
            addr.port(),
            addr.ip(),
            addr.port()
        ),
        _ => format!("{}: cannot listen on {addr}: {e}", service.name()),
    })
}

/// The certificate (chain, leaf first) and private key the services serve HTTPS with, read
/// and checked at start-up (`--tls-cert`, `--tls-key`).
#[derive(Clone, Debug)]
pub struct Tls {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl Tls {
    /// Reads both PEM files; an error names the flag and the file. Whether the key is the
    /// certificate's is checked when the first service starts with them.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, String> {
        Ok(Tls {
            cert: certificates("--tls-cert", cert)?.text,
            key: private_key("--tls-key", key)?.text,
        })
    }
}

/// A service answering on its port until the process ends.
pub struct Running {
    pub service: Service,
    pub addr: SocketAddr,
    /// Whether it serves HTTPS.
    pub tls: bool,
    workers: Vec<JoinHandle<()>>,
}

impl Running {
    /// `http://ADDR` or `https://ADDR`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

impl Running {
    /// Waits for the worker threads, which run until the process ends.
    pub fn join(self) {
        for worker in self.workers {
            let _ = worker.join();
        }
    }
}

/// Starts answering on `listener`, over HTTPS with `tls`. `users` is who may log in, for the
/// login service.
pub fn serve(
    service: Service,
    listener: TcpListener,
    users: Arc<Users>,
    tls: Option<&Tls>,
) -> Result<Running, String> {
    let addr = listener
        .local_addr()
        .map_err(|e| format!("{}: {e}", service.name()))?;
    let ssl = tls.map(|tls| tiny_http::SslConfig {
        certificate: tls.cert.clone(),
        private_key: tls.key.clone(),
    });
    // OpenSSL refuses a key that is not the certificate's here.
    let server = tiny_http::Server::from_listener(listener, ssl).map_err(|e| match tls {
        Some(_) => format!("{}: --tls-cert / --tls-key: {e}", service.name()),
        None => format!("{}: {e}", service.name()),
    })?;
    let server = Arc::new(server);
    let workers = (0..WORKERS)
        .map(|_| {
            let (server, users) = (server.clone(), users.clone());
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    handle(service, &users, request);
                }
            })
        })
        .collect();
    Ok(Running {
        service,
        addr,
        tls: tls.is_some(),
        workers,
    })
}

fn handle(service: Service, users: &Users, mut request: tiny_http::Request) {
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|h| {
            let name = h.field.as_str().as_str().to_ascii_lowercase();
            (name, h.value.as_str().to_owned())
        })
        .collect();
    let method = request.method().as_str().to_owned();
    let url = request.url().to_owned();
    let tls = request.secure();
    let mut body = Vec::new();
    let read = request
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body);
    let answer = match read {
        Err(e) => Answer::message(400, "Unreadable body", format!("(body: {e})")),
        Ok(_) if body.len() as u64 > MAX_BODY => Answer::message(
            413,
            "Request body too large",
            format!("(body over {MAX_BODY} bytes)"),
        ),
        Ok(_) => {
            let request = Request {
                method: &method,
                url: &url,
                headers: &headers,
                body: &body,
                tls,
            };
            match service {
                Service::Login => login::answer(users, &request),
                _ => service::echo(service, &request),
            }
        }
    };
    // A closed stdout (`| head`) must not take the service down, as println! would.
    let _ = writeln!(
        std::io::stdout().lock(),
        "[{}] {method} {url} -> {} {}",
        service.name(),
        answer.status,
        answer.log
    );
    let _ = request.respond(response(service, answer));
}

fn response(service: Service, answer: Answer) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut response =
        tiny_http::Response::from_data(answer.body.into_bytes()).with_status_code(answer.status);
    let headers = [
        ("content-type", Some("application/json")),
        ("x-service", Some(service.name())),
        ("allow", answer.allow),
    ];
    for (name, value) in headers {
        let header = value.and_then(|v| tiny_http::Header::from_bytes(name, v).ok());
        if let Some(header) = header {
            response.add_header(header);
        }
    }
    response
}
