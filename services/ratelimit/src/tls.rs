//! TLS and mutual TLS: the service's certificate and key, and the CAs whose client
//! certificates it accepts. Every file is read and checked at start-up, so a wrong path, an
//! empty file or a key that does not match its certificate stops the start with the flag
//! named, never the first handshake.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// The longest a client may take over its TLS handshake before the connection is closed, so
/// unauthenticated peers cannot hold connections open by never finishing one.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// `--tls-cert`, `--tls-key` and `--tls-client-ca`, as the command line gave them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether calls must present a client certificate (`--tls-client-ca`).
    pub fn mutual(&self) -> bool {
        self.client_ca.is_some()
    }

    /// What the start-up line says of the transport.
    pub fn describe(&self) -> &'static str {
        match (&self.cert, &self.client_ca) {
            (None, _) => "cleartext HTTP/2",
            (Some(_), None) => "TLS",
            (Some(_), Some(_)) => "TLS with client certificates (mTLS)",
        }
    }
}

/// The server's TLS set-up from `files`, or `None` for cleartext. Both `--tls-cert` and
/// `--tls-key` or neither; `--tls-client-ca` only with them.
pub fn load(files: &TlsFiles) -> Result<Option<ServerTlsConfig>, String> {
    let (cert_path, key_path) = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) if files.client_ca.is_some() => {
            return Err(
                "--tls-client-ca: client certificates need TLS: add --tls-cert and \
                        --tls-key"
                    .to_owned(),
            )
        }
        (None, None) => return Ok(None),
        (Some(_), None) => return Err("--tls-cert: needs --tls-key, its private key".to_owned()),
        (None, Some(_)) => {
            return Err("--tls-key: needs --tls-cert, the certificate it belongs to".to_owned())
        }
    };
    let cert = certificates("--tls-cert", cert_path)?;
    let key = read("--tls-key", key_path)?;
    PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
        format!(
            "--tls-key {}: no private key in it ({e}); want PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC)",
            key_path.display()
        )
    })?;
    let mut config = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .timeout(HANDSHAKE_TIMEOUT);
    if let Some(path) = &files.client_ca {
        config = config.client_ca_root(Certificate::from_pem(certificates(
            "--tls-client-ca",
            path,
        )?));
    }
    // What only rustls can say (a key that is not the certificate's, a CA it cannot use) is
    // said now, naming the files, rather than at the first handshake.
    tonic::transport::Server::builder()
        .tls_config(config.clone())
        .map_err(|e| {
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(inner) = source {
                why = format!("{why}: {inner}");
                source = inner.source();
            }
            format!(
                "--tls-cert {} / --tls-key {}{}: {why}",
                cert_path.display(),
                key_path.display(),
                files
                    .client_ca
                    .as_ref()
                    .map_or_else(String::new, |ca| format!(
                        " / --tls-client-ca {}",
                        ca.display()
                    )),
            )
        })?;
    Ok(Some(config))
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

/// The file's bytes, once it is known to hold at least one PEM certificate and nothing
/// unreadable.
fn certificates(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    let pem = read(flag, path)?;
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        certificate.map_err(|e| format!("{flag} {}: {e}", path.display()))?;
        count += 1;
    }
    if count == 0 {
        return Err(format!(
            "{flag} {}: no certificate in it; want PEM (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(pem)
}
