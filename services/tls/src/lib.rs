//! The TLS files of the services (`portcullis-admin`, `portcullis-ratelimit`): `--tls-cert`,
//! `--tls-key` and `--tls-client-ca`. Every file is read and checked at start-up, so a wrong
//! path, an empty file or one without what it should hold stops the start with the flag
//! named, never the first handshake. Each service builds its own server (rustls for the
//! admin service, tonic for the rate limit service) from what this reads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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
    /// is authenticated by the handshake, as by a token or a shared secret.
    pub fn mutual(&self) -> bool {
        self.client_ca.is_some()
    }

    /// What the start-up line says of the transport; `cleartext` names it without TLS
    /// (`cleartext HTTP/2`).
    pub fn describe(&self, cleartext: &'static str) -> &'static str {
        match (&self.cert, &self.client_ca) {
            (None, _) => cleartext,
            (Some(_), None) => "TLS",
            (Some(_), Some(_)) => "TLS with client certificates (mTLS)",
        }
    }

    /// The certificate's and the key's paths, or `None` for cleartext: both `--tls-cert`
    /// and `--tls-key` or neither; `--tls-client-ca` only with them.
    pub fn pair(&self) -> Result<Option<(&Path, &Path)>, String> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) if self.client_ca.is_some() => Err(
                "--tls-client-ca: client certificates need TLS: add --tls-cert and --tls-key"
                    .to_owned(),
            ),
            (None, None) => Ok(None),
            (Some(_), None) => Err("--tls-cert: needs --tls-key, its private key".to_owned()),
            (None, Some(_)) => {
                Err("--tls-key: needs --tls-cert, the certificate it belongs to".to_owned())
            }
        }
    }
}

/// A PEM file, read and checked: its text, for what takes PEM (tonic), and what it holds.
#[derive(Debug)]
pub struct Pem<T> {
    pub text: Vec<u8>,
    pub parsed: T,
}

/// The certificates in the PEM file `flag` names: at least one, and nothing unreadable.
pub fn certificates(flag: &str, path: &Path) -> Result<Pem<Vec<CertificateDer<'static>>>, String> {
    let text = read(flag, path)?;
    let parsed = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    if parsed.is_empty() {
        return Err(format!(
            "{flag} {}: no certificate in it; want PEM (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(Pem { text, parsed })
}

/// The private key in the PEM file `flag` names.
pub fn private_key(flag: &str, path: &Path) -> Result<Pem<PrivateKeyDer<'static>>, String> {
    let text = read(flag, path)?;
    let parsed = PrivateKeyDer::from_pem_slice(&text).map_err(|e| {
        format!(
            "{flag} {}: no private key in it ({e}); want PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC)",
            path.display()
        )
    })?;
    Ok(Pem { text, parsed })
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
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
        assert_eq!(files(false, false, false).pair(), Ok(None));
        assert_eq!(
            files(true, true, true).pair(),
            Ok(Some((Path::new("c.pem"), Path::new("k.pem"))))
        );
        let refused = |f: TlsFiles| f.pair().err().unwrap_or_default();
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
    }

    #[test]
    fn a_missing_or_empty_file_is_refused_naming_its_flag() {
        let missing = certificates("--tls-cert", Path::new("c.pem")).unwrap_err();
        assert!(missing.starts_with("--tls-cert c.pem: "), "{missing}");
        let empty = std::env::temp_dir().join(format!("portcullis-tls-{}.pem", std::process::id()));
        std::fs::write(&empty, "").unwrap();
        let no_certificate = certificates("--tls-client-ca", &empty).unwrap_err();
        let no_key = private_key("--tls-key", &empty).unwrap_err();
        let _ = std::fs::remove_file(&empty);
        assert!(
            no_certificate.starts_with("--tls-client-ca ")
                && no_certificate
                    .ends_with(": no certificate in it; want PEM (-----BEGIN CERTIFICATE-----)"),
            "{no_certificate}"
        );
        assert!(
            no_key.starts_with("--tls-key ") && no_key.contains(": no private key in it ("),
            "{no_key}"
        );
    }
}
