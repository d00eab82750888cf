//! The demo's certificates (`portcullis-services certs --dir DIR`): a CA made afresh at every
//! `make run`, and one certificate it signs for each part that serves TLS, as PEM files in
//! the run directory (`.run/tls/`, git-ignored). The CA's private key is never written: once
//! the files exist nobody can sign another certificate this CA vouches for, and the next start
//! makes a new CA. Demo only: a real deployment gets its certificates from its own PKI.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// The CA certificate's file: what a client trusts (`curl --cacert DIR/ca.pem`) and what
/// Envoy checks each upstream against.
pub const CA_FILE: &str = "ca.pem";

/// How long the certificates are valid: a start makes new ones, so a week is plenty, and a
/// day of slack before now allows for a clock a little behind.
const VALID_FOR: Duration = Duration::days(7);
const BACKDATE: Duration = Duration::days(1);

/// One certificate the demo serves with: its file stem and the names it is valid for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// `DIR/<stem>.pem` (certificate) and `DIR/<stem>.key` (private key).
    pub stem: &'static str,
    /// Subject alternative names: DNS names, and `127.0.0.1` as an IP address.
    pub names: &'static [&'static str],
}

/// Envoy's listener, what clients call: `https://127.0.0.1:8080`, `https://localhost:8080`.
pub const GATEWAY: Leaf = Leaf {
    stem: "gateway",
    names: &["localhost", "127.0.0.1"],
};

/// The demo services (one process serves all four): each cluster checks the name of its own
/// service (`user-service`, …), sent as SNI.
pub const SERVICES: Leaf = Leaf {
    stem: "services",
    names: &[
        "user-service",
        "order-service",
        "payment-service",
        "login-service",
        "localhost",
        "127.0.0.1",
    ],
};

/// portcullis-admin, both listeners: the gateways' cluster `portcullis_admin` checks
/// `portcullis-admin`; people and scripts call the Admin API at `localhost` or `127.0.0.1`.
pub const ADMIN: Leaf = Leaf {
    stem: "portcullis-admin",
    names: &["portcullis-admin", "localhost", "127.0.0.1"],
};

/// The rate limit service of `make run NODES=2`: the cluster `ratelimit` checks `ratelimit`.
pub const RATELIMIT: Leaf = Leaf {
    stem: "ratelimit",
    names: &["ratelimit", "localhost", "127.0.0.1"],
};

/// Every certificate `certs` writes.
pub const LEAVES: [Leaf; 4] = [GATEWAY, SERVICES, ADMIN, RATELIMIT];

impl Leaf {
    /// `DIR/<stem>.pem`.
    pub fn cert(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.pem", self.stem))
    }

    /// `DIR/<stem>.key`.
    pub fn key(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.key", self.stem))
    }
}

/// Makes a new CA and every certificate of [`LEAVES`] in `dir` (created if need be),
/// replacing what a previous start left there. Keys are written readable by their owner only.
/// Returns the files written.
pub fn generate(dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate().map_err(|e| format!("CA key: {e}"))?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|e| format!("CA: {e}"))?;
    ca.distinguished_name
        .push(DnType::CommonName, "Portcullis demo CA (make run)");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - BACKDATE;
    ca.not_after = now + VALID_FOR;
    let ca_cert = ca.self_signed(&ca_key).map_err(|e| format!("CA: {e}"))?;
    let mut written = vec![write(&dir.join(CA_FILE), &ca_cert.pem(), false)?];
    let issuer = Issuer::new(ca, ca_key);
    for leaf in LEAVES {
        let key = KeyPair::generate().map_err(|e| format!("{} key: {e}", leaf.stem))?;
        let names = leaf.names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let mut params =
            CertificateParams::new(names).map_err(|e| format!("{}: {e}", leaf.stem))?;
        params
            .distinguished_name
            .push(DnType::CommonName, leaf.names[0]);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now - BACKDATE;
        params.not_after = now + VALID_FOR;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| format!("{}: {e}", leaf.stem))?;
        written.push(write(&leaf.cert(dir), &cert.pem(), false)?);
        written.push(write(&leaf.key(dir), &key.serialize_pem(), true)?);
    }
    Ok(written)
}

/// Writes `text` to `path` afresh; a `secret` file is created with mode 0600.
fn write(path: &Path, text: &str, secret: bool) -> Result<PathBuf, String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let failed = |e: std::io::Error| format!("{}: {e}", path.display());
    // Removed first: an existing file keeps its mode through a truncating open.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(failed(e)),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn generate_writes_a_ca_and_a_certificate_and_key_per_leaf() {
        let dir = std::env::temp_dir().join(format!("portcullis-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = generate(&dir).unwrap();
        assert_eq!(first.len(), 1 + 2 * LEAVES.len(), "{first:?}");
        let ca = std::fs::read_to_string(dir.join(CA_FILE)).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        for leaf in LEAVES {
            let key = leaf.key(&dir);
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
            assert!(std::fs::read_to_string(&key)
                .unwrap()
                .contains("PRIVATE KEY"));
        }
        // No CA key anywhere: only the leaves' keys.
        let keys = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".key")
            })
            .count();
        assert_eq!(keys, LEAVES.len());
        // A second start makes a new CA, replacing the files.
        generate(&dir).unwrap();
        assert_ne!(std::fs::read_to_string(dir.join(CA_FILE)).unwrap(), ca);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
