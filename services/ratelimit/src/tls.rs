//! TLS and mutual TLS: tonic's server set-up from the service's certificate and key and the
//! CAs whose client certificates it accepts, each file read and checked at start-up by
//! `portcullis-tls`, and what only rustls can say checked now too.

use portcullis_tls::{certificates, private_key, TlsFiles, HANDSHAKE_TIMEOUT};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// The server's TLS set-up from `files`, or `None` for cleartext.
pub fn load(files: &TlsFiles) -> Result<Option<ServerTlsConfig>, String> {
    let Some((cert_path, key_path)) = files.pair()? else {
        return Ok(None);
    };
    let cert = certificates("--tls-cert", cert_path)?.text;
    let key = private_key("--tls-key", key_path)?.text;
    let mut config = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .timeout(HANDSHAKE_TIMEOUT);
    if let Some(path) = &files.client_ca {
        config = config.client_ca_root(Certificate::from_pem(
            certificates("--tls-client-ca", path)?.text,
        ));
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
