//! Certificates for the TLS tests, made fresh for each test: a CA, and certificates it signs
//! for servers on loopback and for clients, written as PEM files in a scratch directory.
//!
//! ```no_run
//! use portcullis_tests::certs::Authority;
//!
//! let ca = Authority::new("ratelimit-tls").unwrap();
//! let server = ca.server("ratelimit.test").unwrap();   // SANs: the name, localhost, 127.0.0.1
//! let client = ca.client("envoy").unwrap();
//! // server.cert, server.key, client.cert, client.key, ca.cert(): paths to PEM files
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::paths::ScratchDir;

/// A certificate and its private key, as PEM files.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A certificate authority for one test; its files live as long as it does.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert: PathBuf,
    dir: ScratchDir,
}

impl Authority {
    /// A new CA named `name`, its certificate written to `ca.pem`.
    pub fn new(name: &str) -> anyhow::Result<Authority> {
        let dir = ScratchDir::new(name)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, cert.pem()).with_context(|| path.display().to_string())?;
        Ok(Authority {
            issuer: Issuer::new(params, key),
            cert: path,
            dir,
        })
    }

    /// The CA's certificate (PEM).
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// A server certificate for `name`, `localhost` and `127.0.0.1`.
    pub fn server(&self, name: &str) -> anyhow::Result<Pair> {
        self.sign(
            name,
            vec![
                name.to_owned(),
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate whose common name is `name`.
    pub fn client(&self, name: &str) -> anyhow::Result<Pair> {
        self.sign(name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn sign(
        &self,
        name: &str,
        alt_names: Vec<String>,
        usage: ExtendedKeyUsagePurpose,
    ) -> anyhow::Result<Pair> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(alt_names)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer)?;
        let pair = Pair {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}.key")),
        };
        std::fs::write(&pair.cert, cert.pem())?;
        std::fs::write(&pair.key, key.serialize_pem())?;
        Ok(pair)
    }
}
