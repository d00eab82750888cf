//! TLS and mutual TLS on both listeners, with certificates made for each test (a CA, a
//! server certificate for localhost, client certificates of that CA and of another).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{Admin, Answer};
use portcullis_tests::paths::ScratchDir;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A CA for one test, and the PEM files it writes.
struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert: PathBuf,
    dir: PathBuf,
}

/// A certificate and its key, as PEM files.
struct Pair {
    cert: PathBuf,
    key: PathBuf,
}

impl Authority {
    fn new(dir: &Path, name: &str) -> Authority {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        let path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, cert.pem()).unwrap();
        Authority {
            issuer: Issuer::new(params, key),
            cert: path,
            dir: dir.to_owned(),
        }
    }

    fn sign(&self, name: &str, alt_names: Vec<String>, usage: ExtendedKeyUsagePurpose) -> Pair {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(alt_names).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let pair = Pair {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}.key")),
        };
        std::fs::write(&pair.cert, cert.pem()).unwrap();
        std::fs::write(&pair.key, key.serialize_pem()).unwrap();
        pair
    }

    fn server(&self) -> Pair {
        self.sign(
            "admin.test",
            vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn client(&self, name: &str) -> Pair {
        self.sign(name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// A client trusting `ca`, presenting `identity` if given.
fn client(ca: &Path, identity: Option<&Pair>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    Arc::new(match identity {
        Some(pair) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&pair.cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(&pair.key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// One request over TLS (`Connection: close`); `Err` if the handshake or the exchange fails.
fn send_tls(
    config: &Arc<ClientConfig>,
    address: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, String> {
    let tcp = TcpStream::connect(address).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = ServerName::try_from("localhost").unwrap().to_owned();
    let connection = ClientConnection::new(Arc::clone(config), name).map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(connection, tcp);
    let mut head = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str("Host: localhost\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // A server that closes without close_notify after answering: keep what came.
        Err(e) if !raw.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e.to_string()),
    }
    if raw.is_empty() {
        return Err("no answer".to_owned());
    }
    Ok(common::parse_answer(&raw))
}

fn db(dir: &ScratchDir) -> String {
    format!("sqlite:{}", dir.path().join("admin.db").display())
}

#[test]
fn serves_both_listeners_over_tls() {
    let dir = ScratchDir::new("tls").unwrap();
    let ca = Authority::new(dir.path(), "tls");
    let server = ca.server();
    let admin = Admin::start(
        &db(&dir),
        &[
            "--tls-cert",
            server.cert.to_str().unwrap(),
            "--tls-key",
            server.key.to_str().unwrap(),
        ],
    );
    let config = client(&ca.cert, None);
    for (address, path) in [
        (admin.admin, "/consumers"),
        (admin.data_plane, "/v1/revocations"),
    ] {
        let answer = send_tls(&config, address, path, &[]).unwrap();
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        // Cleartext on a TLS listener gets no HTTP answer.
        let mut plain = TcpStream::connect(address).unwrap();
        plain
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        plain
            .write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut raw = Vec::new();
        let _ = plain.read_to_end(&mut raw);
        assert!(!raw.starts_with(b"HTTP/1.1 200"), "cleartext answered");
    }
    // A client that does not trust the server's CA refuses it.
    let other = Authority::new(dir.path(), "other");
    assert!(send_tls(&client(&other.cert, None), admin.admin, "/status", &[]).is_err());
    assert!(admin.log().contains("transport=\"TLS\""), "{}", admin.log());
}

/// With `--tls-client-ca`, a client certificate authenticates beyond loopback as a token
/// does: the service starts on 0.0.0.0 without a token, answers only clients with a
/// certificate of that CA, any `Host`, and still refuses a foreign `Origin` (a browser
/// sends a client certificate by itself).
#[test]
fn client_certificates_authenticate_beyond_loopback() {
    let dir = ScratchDir::new("mtls").unwrap();
    let ca = Authority::new(dir.path(), "mtls");
    let server = ca.server();
    let alice = ca.client("alice");
    let stranger_ca = Authority::new(dir.path(), "stranger");
    let stranger = stranger_ca.client("mallory");
    let tls_args = [
        "--tls-cert",
        server.cert.to_str().unwrap(),
        "--tls-key",
        server.key.to_str().unwrap(),
        "--tls-client-ca",
        ca.cert.to_str().unwrap(),
    ];
    let mut args = vec!["--listen", "0.0.0.0:0", "--data-plane-listen", "0.0.0.0:0"];
    args.extend(tls_args);
    let admin = Admin::start(&db(&dir), &args);
    let admin_address = SocketAddr::from(([127, 0, 0, 1], admin.admin.port()));
    let data_address = SocketAddr::from(([127, 0, 0, 1], admin.data_plane.port()));

    let with_cert = client(&ca.cert, Some(&alice));
    for (address, path) in [
        (admin_address, "/consumers"),
        (data_address, "/v1/revocations"),
    ] {
        let answer = send_tls(
            &with_cert,
            address,
            path,
            &[("Host", "admin.internal:8001")],
        )
        .unwrap();
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        let cross = send_tls(
            &with_cert,
            address,
            path,
            &[("Origin", "https://evil.example")],
        )
        .unwrap();
        assert_eq!(cross.status, 403, "{path}: {}", cross.body);
        for config in [client(&ca.cert, None), client(&ca.cert, Some(&stranger))] {
            assert!(
                send_tls(&config, address, path, &[]).is_err(),
                "{path}: answered without a certificate of the CA"
            );
        }
    }
    assert!(admin
        .log()
        .contains("transport=\"TLS with client certificates (mTLS)\""));
}

#[test]
fn refuses_to_start_with_tls_files_that_cannot_work() {
    let dir = ScratchDir::new("tls-refuse").unwrap();
    let ca = Authority::new(dir.path(), "refuse");
    let server = ca.server();
    let other = ca.client("other");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a pem").unwrap();
    let (cert, key) = (server.cert.to_str().unwrap(), server.key.to_str().unwrap());
    let rows: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--tls-cert", cert],
            "--tls-cert: needs --tls-key, its private key".to_owned(),
        ),
        (
            vec!["--tls-client-ca", ca.cert.to_str().unwrap()],
            "--tls-client-ca: client certificates need TLS".to_owned(),
        ),
        (
            vec!["--tls-cert", garbage.to_str().unwrap(), "--tls-key", key],
            format!("--tls-cert {}: no certificate in it", garbage.display()),
        ),
        (
            vec!["--tls-cert", cert, "--tls-key", garbage.to_str().unwrap()],
            format!("--tls-key {}: no private key in it", garbage.display()),
        ),
        (
            vec!["--tls-cert", cert, "--tls-key", other.key.to_str().unwrap()],
            format!("--tls-cert {cert} / --tls-key {}: ", other.key.display()),
        ),
        (
            vec!["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", "/nonexistent/ca.pem"],
            "--tls-client-ca /nonexistent/ca.pem: No such file".to_owned(),
        ),
        (
            vec!["--listen", "0.0.0.0:0", "--tls-cert", cert, "--tls-key", key],
            "--listen 0.0.0.0:0: beyond loopback, and requests are not authenticated: set --admin-token-file FILE or --tls-client-ca FILE".to_owned(),
        ),
    ];
    for (args, message) in rows {
        let log = Admin::try_start(&db(&dir), &args, &[])
            .err()
            .unwrap_or_else(|| panic!("{args:?} started"));
        assert!(log.contains(&message), "{args:?}: {log}");
    }
}
