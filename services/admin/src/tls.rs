//! TLS and mutual TLS for both listeners: the acceptor built from the service's certificate
//! and key and the CAs whose client certificates it accepts, each file read and checked at
//! start-up by `portcullis-tls` (as for services/ratelimit).

use std::sync::Arc;

use portcullis_tls::{certificates, private_key, TlsFiles};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The acceptor both listeners use, or `None` for cleartext.
pub fn load(files: &TlsFiles) -> Result<Option<TlsAcceptor>, String> {
    let Some((cert_path, key_path)) = files.pair()? else {
        return Ok(None);
    };
    let chain = certificates("--tls-cert", cert_path)?.parsed;
    let key = private_key("--tls-key", key_path)?.parsed;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &files.client_ca {
        Some(ca_path) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates("--tls-client-ca", ca_path)?.parsed {
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
