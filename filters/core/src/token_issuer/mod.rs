//! The token-issuer filter's whole policy (Pingap's `auth_path`, and more): which requests
//! are logins, which login responses become tokens, the token's claims and signature, the
//! answer that replaces the upstream's body, and the JWKS that publishes the public keys.
//!
//! The glue calls [`TokenIssuer::route`] on request headers, [`TokenIssuer::inspect`] on
//! response headers, and [`TokenIssuer::issue`] once the whole body has arrived.

pub mod claims;
pub mod config;
pub mod cookie;
pub mod jws;
pub mod keys;
pub mod refusal;

use serde_json::Value;

pub use claims::{ClaimRules, Claims};
pub use config::RawConfig;
pub use cookie::{CookieRules, SameSite};
pub use keys::{InModuleSigner, SignError, SigningBackend, SigningKey};
pub use refusal::Refusal;

use crate::config::strict_json;
use crate::jose::CryptoChoice;
use crate::UnixTime;

/// The text the start-up probe asks the host to sign.
pub const PROBE_TEXT: &[u8] = b"portcullis token-issuer: host sign probe";

/// One login endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthPath {
    pub path: String,
    /// [`normal_form`] of `path`: another spelling of it has the same.
    pub normal: Vec<u8>,
    /// `None`: every method.
    pub methods: Option<Vec<String>>,
    /// `None`: any Envoy route.
    pub routes: Option<Vec<String>>,
    /// `None`: any upstream cluster.
    pub clusters: Option<Vec<String>>,
}

/// Where Envoy sends a request: its route name and upstream cluster, read by the glue only
/// when an auth path names routes or clusters ([`TokenIssuer::needs_upstream`]); and
/// whether the request carries a method-override header
/// ([`crate::header_map::METHOD_OVERRIDE_HEADERS`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Upstream<'a> {
    pub route: Option<&'a str>,
    pub cluster: Option<&'a str>,
    pub method_overridden: bool,
}

/// The form in which two spellings of one path compare equal: [`crate::path::normalise`]
/// (percent-escapes, repeated slashes, `.` and `..`, `;` parameters, a trailing slash), in
/// ASCII lower case (many upstreams route case-insensitively).
pub fn normal_form(path: &str) -> Vec<u8> {
    let mut normal = crate::path::normalise(path);
    normal.make_ascii_lowercase();
    normal
}

impl AuthPath {
    /// Whether `plain` (a path without its query) may be another spelling of this path: a
    /// cheap look that lets nearly every request skip [`normal_form`].
    fn may_be_spelt(&self, plain: &str) -> bool {
        let last = self.path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("/");
        plain.contains('%')
            || plain
                .as_bytes()
                .windows(last.len())
                .any(|w| w.eq_ignore_ascii_case(last.as_bytes()))
    }

    /// Whether `plain` is this path spelt otherwise than configured.
    fn spelt_otherwise(&self, plain: &str) -> bool {
        plain != self.path && self.may_be_spelt(plain) && normal_form(plain) == self.normal
    }

    fn allows(&self, method: &str, upstream: &Upstream) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|methods| methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && self.reached_by(upstream)
    }

    /// Whether the request goes to this login's route and cluster (any, when not named).
    fn reached_by(&self, upstream: &Upstream) -> bool {
        let named = |list: &Option<Vec<String>>, name: Option<&str>| {
            list.as_ref()
                .is_none_or(|list| name.is_some_and(|n| list.iter().any(|l| l == n)))
        };
        named(&self.routes, upstream.route) && named(&self.clusters, upstream.cluster)
    }

    /// Whether the upstream could run the request as this login while it is not one here:
    /// a method-override header on a login limited to some methods.
    fn overridden_into(&self, upstream: &Upstream) -> bool {
        upstream.method_overridden && self.methods.is_some() && self.reached_by(upstream)
    }
}

/// The compiled, immutable configuration.
#[derive(Debug)]
pub struct TokenIssuer {
    pub(crate) auth_paths: Vec<AuthPath>,
    pub(crate) rules: ClaimRules,
    /// Signs new tokens.
    pub(crate) active: SigningKey,
    /// Kept for the JWKS: tokens they signed before a rotation still verify.
    pub(crate) retired: Vec<SigningKey>,
    pub(crate) cookie: Option<CookieRules>,
    pub(crate) max_body_bytes: usize,
    pub(crate) jwks_path: Option<String>,
    pub(crate) jwks: String,
    pub(crate) crypto: CryptoChoice,
    pub(crate) hold_headers: bool,
    /// Whether the glue publishes a decision record per request (`decision_records`).
    pub(crate) decision_records: bool,
}

/// What a request is to the issuer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestRoute {
    /// A login: pass it untouched and look at the response.
    Login,
    /// A GET or HEAD of `jwks_path`: answer with [`TokenIssuer::jwks`].
    Jwks,
    /// Another method on `jwks_path`: answer 405.
    JwksMethodNotAllowed,
    /// An auth path spelt otherwise than configured (`/login/`, `/LOGIN`, `/%6Cogin`), or a
    /// login limited to some methods carrying a method-override header: answer 400, so the
    /// upstream's login answer never leaves unsigned.
    Misspelt,
    /// Nothing to do.
    Other,
}

/// What the glue reads from a login response's headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    pub status: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub content_length: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    /// The headers end the response (no body).
    pub end_of_stream: bool,
}

/// What to do with a login response, decided on its headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadDecision {
    /// Not 2xx: the upstream refused the login; it passes unchanged.
    UpstreamRefusal,
    /// 2xx, but nothing to sign; it passes unchanged. The reason is for the log.
    PassThrough(&'static str),
    /// Refuse now (a declared length over the limit).
    Refuse(Refusal),
    /// Buffer the body, then call [`TokenIssuer::issue`].
    Buffer,
}

/// What became of a whole login body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyOutcome {
    /// Replace the body (and, when held, the headers) with the token.
    Issued(Issued),
    /// Not a JSON object: the body passes unchanged. The reason is for the log.
    PassThrough(&'static str),
    /// Answer 502 instead.
    Refused(Refusal),
}

/// A token and the answer that carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub token: String,
    /// `{"token":"…","token_type":"Bearer","expires_in":N}`.
    pub body: String,
    pub expires_in: u64,
    /// The `Set-Cookie` value, when a cookie is configured.
    pub set_cookie: Option<String>,
    /// The token's `sub` when it is a string: who logged in, for the access log.
    pub subject: Option<String>,
}

/// Headers a token answer always carries (RFC 6749 §5.1): never cached.
pub const NO_STORE: [(&str, &str); 2] = [("cache-control", "no-store"), ("pragma", "no-cache")];

impl Issued {
    /// Every response header to set when the headers were held until now: the type, the exact
    /// length, no caching, and the cookie.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("content-type", "application/json".to_owned()),
            ("content-length", self.body.len().to_string()),
        ];
        headers.extend(NO_STORE.iter().map(|(k, v)| (*k, (*v).to_owned())));
        if let Some(cookie) = &self.set_cookie {
            headers.push(("set-cookie", cookie.clone()));
        }
        headers
    }
}

impl TokenIssuer {
    /// Whether `path` (`:path`, query ignored) is a login or the JWKS path, whatever the
    /// method: the cheap test every request takes before [`route`](Self::route).
    pub fn watches(&self, path: &str) -> bool {
        let path = without_query(path);
        self.jwks_path.as_deref() == Some(path)
            || self
                .auth_paths
                .iter()
                .any(|a| a.path == path || a.spelt_otherwise(path))
    }

    /// Whether an auth path is limited to some methods: only then does a method-override
    /// header matter (see [`Upstream::method_overridden`]).
    pub fn limits_methods(&self) -> bool {
        self.auth_paths.iter().any(|a| a.methods.is_some())
    }

    /// Whether an auth path names routes or clusters: only then must the glue read
    /// [`Upstream`] for a watched request.
    pub fn needs_upstream(&self) -> bool {
        self.auth_paths
            .iter()
            .any(|a| a.routes.is_some() || a.clusters.is_some())
    }

    /// What `method path` is; `path` is `:path`, whose query string is ignored. A login is a
    /// configured path, method, route and cluster.
    pub fn route(&self, method: &str, path: &str, upstream: &Upstream) -> RequestRoute {
        let path = without_query(path);
        if self.jwks_path.as_deref() == Some(path) {
            return match method {
                "GET" | "HEAD" => RequestRoute::Jwks,
                _ => RequestRoute::JwksMethodNotAllowed,
            };
        }
        let mut exact = self.auth_paths.iter().filter(|a| a.path == path).peekable();
        if exact.peek().is_some() {
            let exact: Vec<&AuthPath> = exact.collect();
            if exact.iter().any(|a| a.overridden_into(upstream)) {
                return RequestRoute::Misspelt;
            }
            return if exact.iter().any(|a| a.allows(method, upstream)) {
                RequestRoute::Login
            } else {
                RequestRoute::Other
            };
        }
        if self
            .auth_paths
            .iter()
            .any(|a| a.allows(method, upstream) && a.spelt_otherwise(path))
        {
            return RequestRoute::Misspelt;
        }
        RequestRoute::Other
    }

    /// Decides on a login response's headers whether its body may become a token.
    pub fn inspect(&self, head: &ResponseHead<'_>) -> HeadDecision {
        let two_hundreds = head
            .status
            .and_then(|s| s.parse::<u16>().ok())
            .is_some_and(|s| (200..300).contains(&s));
        if !two_hundreds {
            return HeadDecision::UpstreamRefusal;
        }
        if head.end_of_stream {
            return HeadDecision::PassThrough("no body");
        }
        if !head.content_type.is_some_and(is_json) {
            return HeadDecision::PassThrough("not JSON (content-type)");
        }
        if head
            .content_encoding
            .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"))
        {
            return HeadDecision::PassThrough("content-encoding");
        }
        if let Some(len) = head.content_length {
            match len.trim().parse::<usize>() {
                Ok(len) if len > self.max_body_bytes => {
                    return HeadDecision::Refuse(self.too_large(len))
                }
                Ok(0) => return HeadDecision::PassThrough("no body"),
                Ok(_) => {}
                Err(_) => return HeadDecision::PassThrough("unreadable content-length"),
            }
        }
        HeadDecision::Buffer
    }

    /// `Err` when `len` buffered bytes are already too many.
    pub fn check_size(&self, len: usize) -> Result<(), Refusal> {
        if len > self.max_body_bytes {
            Err(self.too_large(len))
        } else {
            Ok(())
        }
    }

    fn too_large(&self, len: usize) -> Refusal {
        Refusal::BodyTooLarge {
            len,
            max: self.max_body_bytes,
        }
    }

    /// Turns a whole login body into a token at `now`, with `jti` from 16 random bytes,
    /// signed by `backend` with the active key.
    pub fn issue(
        &self,
        body: &[u8],
        now: UnixTime,
        jti: [u8; 16],
        backend: &dyn SigningBackend,
    ) -> BodyOutcome {
        if let Err(refusal) = self.check_size(body.len()) {
            return BodyOutcome::Refused(refusal);
        }
        let object = match strict_json(body) {
            Ok(Value::Object(object)) => object,
            Ok(_) => return BodyOutcome::PassThrough("not a JSON object"),
            Err(_) => return BodyOutcome::PassThrough("not JSON (or a member repeats)"),
        };
        if claims::lacks_required_subject(&object, &self.rules) {
            return BodyOutcome::PassThrough("no subject (sub_field) in the answer");
        }
        let claims = match claims::build(&object, &self.rules, now, jti) {
            Ok(claims) => claims,
            Err(refusal) => return BodyOutcome::Refused(refusal),
        };
        let token = match jws::compact(self.active_key(), &claims.claims, backend) {
            Ok(token) => token,
            Err(e) => return BodyOutcome::Refused(Refusal::Signing(e)),
        };
        // The token is base64url and dots: nothing in it needs escaping.
        let body = format!(
            r#"{{"token":"{token}","token_type":"Bearer","expires_in":{}}}"#,
            claims.expires_in
        );
        let set_cookie = self
            .cookie
            .as_ref()
            .map(|c| c.set_cookie(&token, claims.expires_in));
        let subject = claims
            .claims
            .get("sub")
            .and_then(Value::as_str)
            .map(str::to_owned);
        BodyOutcome::Issued(Issued {
            token,
            body,
            expires_in: claims.expires_in,
            set_cookie,
            subject,
        })
    }

    /// The key that signs new tokens.
    pub fn active_key(&self) -> &SigningKey {
        &self.active
    }

    /// Every configured key, the active one first.
    pub fn keys(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.active).chain(&self.retired)
    }

    /// The JWKS document (`{"keys":[…]}`) served on `jwks_path`; empty without one.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// Where signatures are made.
    pub fn crypto(&self) -> CryptoChoice {
        self.crypto
    }

    /// Whether the host holds response headers while the body is buffered (Envoy's
    /// `allow_on_headers_stop_iteration`): then the glue pauses the headers and sets them with
    /// [`Issued::headers`]; otherwise it lets them go with `content-length` removed.
    pub fn holds_headers(&self) -> bool {
        self.hold_headers
    }

    /// Whether a decision record is published for each request it decides on
    /// (`decision_records`, default true).
    pub fn decision_records(&self) -> bool {
        self.decision_records
    }

    /// The largest body buffered.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }
}

fn without_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

fn is_json(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

#[cfg(test)]
mod tests;
