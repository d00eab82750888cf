//! TLS and mutual TLS for both listeners: the service's certificate and key, and the CAs
//! whose client certificates it accepts. Every file is read and checked at start-up, so a
//! wrong path, an empty file or a key that does not match its certificate stops the start
//! with the flag named, never the first handshake (as services/ratelimit does).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The longest a client may take over its TLS handshake before the connection is closed,
/// so unauthenticated peers cannot hold connections open by never finishing one.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// `--tls-cert`, `--tls-key` and `--tls-client-ca`, as the command line gave them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether every client must present a certificate (`--tls-client-ca`): then a client
    /// is authenticated by the handshake, as by a token.
    pub fn mutual(&self) -> bool {
        self.client_ca.is_some()
    }

    /// What the start-up line says of the transport.
    pub fn describe(&self) -> &'static str {
        match (&self.cert, &self.client_ca) {
            (None, _) => "cleartext HTTP/1.1",
            (Some(_), None) => "TLS",
            (Some(_), Some(_)) => "TLS with client certificates (mTLS)",
        }
    }
}

/// The acceptor both listeners use, or `None` for cleartext. Both `--tls-cert` and
/// `--tls-key` or neither; `--tls-client-ca` only with them.
pub fn load(files: &TlsFiles) -> Result<Option<TlsAcceptor>, String> {
    let (cert_path, key_path) = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) if files.client_ca.is_some() => {
            return Err(
                "--tls-client-ca: client certificates need TLS: add --tls-cert and --tls-key"
                    .to_owned(),
            )
        }
        (None, None) => return Ok(None),
        (Some(_), None) => return Err("--tls-cert: needs --tls-key, its private key".to_owned()),
        (None, Some(_)) => {
            return Err("--tls-key: needs --tls-cert, the certificate it belongs to".to_owned())
        }
    };
    let chain = certificates("--tls-cert", cert_path)?;
    let key = PrivateKeyDer::from_pem_slice(&read("--tls-key", key_path)?).map_err(|e| {
        format!(
            "--tls-key {}: no private key in it ({e}); want PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC)",
            key_path.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &files.client_ca {
        Some(ca_path) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates("--tls-client-ca", ca_path)? {
                roots
                    .add(ca)
                    .map_err(|e| format!("--tls-client-ca {}: {e}", ca_path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("--tls-client-ca {}: {e}", ca_path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    // A key that is not the certificate's is refused here, naming both files.
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "--tls-cert {} / --tls-key {}: {e}",
            cert_path.display(),
            key_path.display()
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

/// The certificates in a PEM file: at least one, and nothing unreadable.
fn certificates(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(flag, path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "{flag} {}: no certificate in it; want PEM (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wants_both_halves_and_tls_for_client_certificates() {
        let files = |cert: bool, key: bool, ca: bool| TlsFiles {
            cert: cert.then(|| PathBuf::from("c.pem")),
            key: key.then(|| PathBuf::from("k.pem")),
            client_ca: ca.then(|| PathBuf::from("ca.pem")),
        };
        assert!(matches!(load(&files(false, false, false)), Ok(None)));
        let refused = |f: TlsFiles| load(&f).err().unwrap_or_default();
        assert_eq!(
            refused(files(true, false, false)),
            "--tls-cert: needs --tls-key, its private key"
        );
        assert_eq!(
            refused(files(false, true, false)),
            "--tls-key: needs --tls-cert, the certificate it belongs to"
        );
        assert_eq!(
            refused(files(false, false, true)),
            "--tls-client-ca: client certificates need TLS: add --tls-cert and --tls-key"
        );
        assert!(refused(files(true, true, false)).starts_with("--tls-cert c.pem: "));
    }
}
