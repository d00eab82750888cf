//! Who may call: with a shared secret set, every call must carry
//! `authorization: Bearer <secret>` as gRPC metadata (Envoy's `GrpcService.initial_metadata`
//! sends it), compared in constant time; anything else is `UNAUTHENTICATED`.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The environment variable that can hold the secret (kept out of `ps`, unlike a flag).
pub const SECRET_ENV: &str = "PORTCULLIS_RATELIMIT_SECRET";
/// The shortest secret accepted: 16 bytes, e.g. `openssl rand -hex 16` gives 32.
pub const MIN_SECRET_BYTES: usize = 16;

/// The shared secret. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl Secret {
    /// The secret in `text` (from `source`, named in the error), a trailing newline removed:
    /// at least [`MIN_SECRET_BYTES`] of visible ASCII, what a header value and an unquoted
    /// YAML string carry unchanged.
    pub fn new(text: &str, source: &str) -> Result<Secret, String> {
        let secret = text.trim_end_matches(['\n', '\r']);
        if let Some(bad) = secret.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(format!(
                "{source}: the secret holds {bad:?}; use visible ASCII only (e.g. openssl rand -hex 32)"
            ));
        }
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "{source}: the secret is {} bytes, at least {MIN_SECRET_BYTES} wanted",
                secret.len()
            ));
        }
        Ok(Secret(secret.as_bytes().to_vec()))
    }

    /// Whether an `authorization` value is `Bearer <this secret>` (the scheme in any case).
    /// Takes the same time for every value of a given length up to the secret's.
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let (scheme, token) = value.split_at(value.len().min(7));
        scheme.eq_ignore_ascii_case(b"bearer ") && same(&self.0, token)
    }
}

/// `expected == given` in time that depends only on `expected`'s length.
fn same(expected: &[u8], given: &[u8]) -> bool {
    let mut diff = expected.len() ^ given.len();
    for (i, byte) in expected.iter().enumerate() {
        diff |= usize::from(byte ^ given.get(i).copied().unwrap_or(0));
    }
    std::hint::black_box(diff) == 0
}

/// The secret from `--secret-file` or [`SECRET_ENV`] (at most one of them), if any.
pub fn load(file: Option<&Path>, env: Option<String>) -> Result<Option<Secret>, String> {
    match (file, env) {
        (Some(_), Some(_)) => Err(format!(
            "--secret-file: {SECRET_ENV} already holds a secret; give it once"
        )),
        (Some(path), None) => {
            let source = format!("--secret-file {}", path.display());
            let text = std::fs::read_to_string(path).map_err(|e| format!("{source}: {e}"))?;
            Secret::new(&text, &source).map(Some)
        }
        (None, Some(text)) => Secret::new(&text, SECRET_ENV).map(Some),
        (None, None) => Ok(None),
    }
}

/// The check every call goes through before the service sees it.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    secret: Option<Secret>,
    refused: Arc<AtomicU64>,
}

impl Gate {
    pub fn new(secret: Option<Secret>) -> Gate {
        Gate {
            secret,
            refused: Arc::default(),
        }
    }

    /// Whether calls must carry the secret.
    pub fn authenticates(&self) -> bool {
        self.secret.is_some()
    }

    /// Lets the call through, or refuses it with `UNAUTHENTICATED`, logged on stderr for the
    /// 1st, 2nd, 4th, 8th… refusal (a prober is visible without flooding the log).
    pub fn check(&self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let Some(secret) = &self.secret else {
            return Ok(request);
        };
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|value| value.as_bytes());
        if secret.admits(authorization) {
            return Ok(request);
        }
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        if refused.is_power_of_two() {
            let peer = request
                .remote_addr()
                .map_or_else(|| "an unknown peer".to_owned(), |peer| peer.to_string());
            let what = if authorization.is_some() {
                "a wrong"
            } else {
                "no"
            };
            eprintln!(
                "portcullis-ratelimit: refused a call from {peer} with {what} authorization ({refused} refused so far)"
            );
        }
        Err(tonic::Status::unauthenticated(
            "this rate limit service wants `authorization: Bearer <its shared secret>`",
        ))
    }
}

/// How the service knows its callers, as the command line set it up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Callers {
    /// A shared secret is set.
    pub secret: bool,
    /// The connection is TLS (`--tls-cert`).
    pub tls: bool,
    /// Callers present client certificates (`--tls-client-ca`).
    pub client_certificates: bool,
}

impl Callers {
    fn authenticated(self) -> bool {
        self.secret || self.client_certificates
    }
}

/// Refuses to serve unauthenticated calls beyond loopback unless `--trusted-network` says
/// that every host that can reach `listen` may spend any counter. `Ok(Some(warning))` for a
/// shared secret that would cross the network in cleartext.
pub fn exposure(
    listen: SocketAddr,
    callers: Callers,
    trusted_network: bool,
) -> Result<Option<String>, String> {
    if listen.ip().is_loopback() {
        return Ok(None);
    }
    if !callers.authenticated() && !trusted_network {
        return Err(format!(
            "--listen {listen}: beyond loopback, and calls are not authenticated: set a shared \
             secret (--secret-file FILE or {SECRET_ENV}) or client certificates \
             (--tls-client-ca FILE), or add --trusted-network if every host that can reach \
             this address may spend any counter"
        ));
    }
    if callers.secret && !callers.tls {
        return Ok(Some(format!(
            "--listen {listen}: beyond loopback without TLS, the shared secret crosses the \
             network in cleartext and whoever reads the traffic can use it; add --tls-cert and \
             --tls-key"
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123";

    fn call(authorization: Option<&str>) -> tonic::Request<()> {
        let mut request = tonic::Request::new(());
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        request
    }

    #[test]
    fn admits_only_the_bearer_secret() {
        let secret = Secret::new(SECRET, "test").unwrap();
        let rows = [
            (Some("Bearer 0123456789abcdef0123"), true),
            (Some("bearer 0123456789abcdef0123"), true),
            (None, false),
            (Some("Bearer 0123456789abcdef012"), false),
            (Some("Bearer 0123456789abcdef01234"), false),
            (Some("Bearer 0123456789abcdef0124"), false),
            (Some("Basic 0123456789abcdef0123"), false),
            (Some("0123456789abcdef0123"), false),
            (Some("Bearer"), false),
            (Some(""), false),
        ];
        for (value, admitted) in rows {
            assert_eq!(
                secret.admits(value.map(str::as_bytes)),
                admitted,
                "{value:?}"
            );
        }
    }

    #[test]
    fn the_gate_refuses_with_unauthenticated_and_without_a_secret_lets_all_through() {
        let gate = Gate::new(Some(Secret::new(SECRET, "test").unwrap()));
        assert!(gate
            .check(call(Some("Bearer 0123456789abcdef0123")))
            .is_ok());
        let refused = gate.check(call(Some("Bearer nope"))).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(Gate::new(None).check(call(None)).is_ok());
    }

    #[test]
    fn refuses_weak_or_unsendable_secrets_naming_their_source() {
        assert_eq!(
            Secret::new("short\n", SECRET_ENV),
            Err(format!(
                "{SECRET_ENV}: the secret is 5 bytes, at least 16 wanted"
            ))
        );
        assert_eq!(
            Secret::new("0123456789 abcdef", "--secret-file s"),
            Err("--secret-file s: the secret holds ' '; use visible ASCII only (e.g. openssl rand -hex 32)".to_owned())
        );
        assert_eq!(
            Secret::new("0123456789abcdef\n", "f"),
            Secret::new("0123456789abcdef", "f")
        );
        assert!(format!("{:?}", Secret::new(SECRET, "f").unwrap()).ends_with("(20 bytes)"));
        assert_eq!(
            load(Some(Path::new("/nonexistent/secret")), None)
                .unwrap_err()
                .split(':')
                .next(),
            Some("--secret-file /nonexistent/secret")
        );
        assert_eq!(
            load(Some(Path::new("s")), Some(SECRET.to_owned())),
            Err(format!(
                "--secret-file: {SECRET_ENV} already holds a secret; give it once"
            ))
        );
        assert_eq!(
            load(None, Some(SECRET.to_owned())),
            Ok(Some(Secret::new(SECRET, "x").unwrap()))
        );
    }

    #[test]
    fn beyond_loopback_wants_a_secret_client_certificates_or_a_trusted_network() {
        let loopback: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        let v6_loopback: SocketAddr = "[::1]:8081".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8081".parse().unwrap();
        let lan: SocketAddr = "10.0.0.5:8081".parse().unwrap();
        let none = Callers::default();
        let secret_over_tls = Callers {
            secret: true,
            tls: true,
            client_certificates: false,
        };
        let mutual = Callers {
            secret: false,
            tls: true,
            client_certificates: true,
        };
        assert_eq!(exposure(loopback, none, false), Ok(None));
        assert_eq!(exposure(v6_loopback, none, false), Ok(None));
        assert_eq!(exposure(any, secret_over_tls, false), Ok(None));
        assert_eq!(exposure(lan, mutual, false), Ok(None));
        assert_eq!(exposure(lan, none, true), Ok(None));
        let refused = exposure(any, none, false).unwrap_err();
        assert!(
            refused.starts_with("--listen 0.0.0.0:8081: beyond loopback"),
            "{refused}"
        );
        assert!(refused.contains("--trusted-network"), "{refused}");
        assert!(refused.contains("--tls-client-ca"), "{refused}");
        assert!(exposure(lan, none, false).is_err());
        // TLS alone proves nothing about the caller.
        let tls_only = Callers { tls: true, ..none };
        assert!(exposure(lan, tls_only, false).is_err());
    }

    #[test]
    fn a_secret_in_cleartext_beyond_loopback_is_served_with_a_warning() {
        let lan: SocketAddr = "10.0.0.5:8081".parse().unwrap();
        let cleartext_secret = Callers {
            secret: true,
            ..Callers::default()
        };
        let warning = exposure(lan, cleartext_secret, false).unwrap().unwrap();
        assert!(warning.contains("in cleartext"), "{warning}");
        assert!(warning.contains("--tls-cert"), "{warning}");
        let loopback: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        assert_eq!(exposure(loopback, cleartext_secret, false), Ok(None));
    }
}
