//! The token-issuer's configuration as written (JSON), and its compilation into a
//! [`TokenIssuer`]; every refusal names the JSON path it is about.

use serde::Deserialize;
use serde_json::Value;

use super::claims::{ClaimRules, RESERVED};
use super::cookie::{CookieRules, RawCookie};
use super::jws::jwks_document;
use super::keys::{decode_secret_base64, SigningKey, SIGNING_ALGORITHMS};
use super::{normal_form, AuthPath, TokenIssuer};
use crate::config::{err, strict_json, typed, ConfigError};
use crate::jose::{Algorithm, CryptoChoice};

/// Default token lifetime: one hour.
pub const DEFAULT_TTL: u64 = 3600;
/// Default ceiling on a token's lifetime: one day.
pub const DEFAULT_MAX_TTL: u64 = 86_400;
/// Longest `max_ttl` accepted: one year (Kong's `maximum_expiration` bound).
pub const MAX_MAX_TTL: u64 = 31_536_000;
/// Default largest login body buffered.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;
/// Largest `max_body_bytes`: well under Envoy's default 1 MiB buffer limit, whose own
/// refusal (a 500) would otherwise come first.
pub const MAX_MAX_BODY_BYTES: usize = 512 * 1024;

/// The configuration as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Login endpoints whose successful JSON answers become tokens: exact paths (the query
    /// string is ignored), optionally only for some methods. Pitfall: `/login/` is not
    /// `/login`.
    pub auth_paths: Vec<RawAuthPath>,
    /// Token lifetime in seconds (default 3600), unless the upstream's `exp` is earlier.
    pub ttl: Option<u64>,
    /// Ceiling on any token's lifetime in seconds (default 86400, at most 31536000); `ttl`
    /// may not exceed it.
    pub max_ttl: Option<u64>,
    /// The `iss` claim. The jwt filter finds the key by it: a provider's `issuer`, or a
    /// consumer credential's `key` for HS* tokens.
    pub iss: String,
    /// The `aud` claim: a string or an array of strings. Pitfall: a jwt provider with
    /// `audiences` refuses tokens without a matching `aud`.
    pub aud: Option<Value>,
    /// Body field that becomes `sub` (default `sub`); a string, or an integer written in
    /// decimal. When set, an answer without it (a `200 {"success":false}` or GraphQL
    /// `{"errors":[…]}` login API) is never signed: it passes unchanged. Left out, a body
    /// without `sub` gives a token without `sub`.
    pub sub_field: Option<String>,
    /// Body fields copied into the token, the rest dropped; without it every field is copied
    /// (Pingap's behaviour). Registered claims (`iss`, `aud`, `iat`, `exp`, `nbf`, `jti`,
    /// `sub`) are the issuer's and cannot be listed.
    pub claims: Option<Vec<String>>,
    /// Signing keys; exactly one is `active` (a lone key is active unless it says otherwise).
    /// The others stay in the JWKS, so tokens signed before a rotation still verify.
    pub keys: Vec<RawKey>,
    /// Also hand the token out as a cookie. Needs `allow_on_headers_stop_iteration`.
    pub cookie: Option<RawCookie>,
    /// Largest login body buffered, in bytes (default 16384, at most 524288); a larger one
    /// gets 502 and none of it reaches the client.
    pub max_body_bytes: Option<usize>,
    /// Exact path answered by the filter itself with the JWKS of the asymmetric keys (GET or
    /// HEAD). Needs at least one RS256, ES256 or EdDSA key.
    pub jwks_path: Option<String>,
    /// `auto` (default): RS256/ES256 are signed by the host's `sign` (Envoy's BoringSSL) when
    /// a start-up probe shows it works, else in the module; `in_module`: always in the module.
    pub crypto: Option<CryptoChoice>,
    /// Set to true exactly when Envoy's wasm filter config sets
    /// `allow_on_headers_stop_iteration: true` (Envoy ≥ 1.35). The filter then holds a
    /// login response's headers until the token is signed: exact `content-length`,
    /// `Set-Cookie`, and a 502 for an oversize chunked body. With false (default) the headers
    /// leave before the body: the token goes out chunked, and an oversize body without
    /// `content-length` ends in a reset stream. Pitfall: true without Envoy's setting hangs
    /// every login until Envoy's timeout.
    pub allow_on_headers_stop_iteration: Option<bool>,
    /// See [`crate::decision::RECORDS_FIELD`] (default true).
    pub decision_records: Option<bool>,
}

/// One login endpoint.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthPath {
    /// Exact path, starting with `/`. Another spelling of it (`/login/`, `/LOGIN`,
    /// `//login`, `/%6Cogin`, `/login;x`) is answered 400 and never reaches the upstream, so
    /// no login answer leaves unsigned.
    pub path: String,
    /// Methods (upper case) whose responses are signed; every method when absent.
    pub methods: Option<Vec<String>>,
    /// Envoy route names (`xds.route_name`) whose answers on this path are signed; any route
    /// when absent. Pitfall: without `routes` or `clusters`, a `POST /login` sent with
    /// another `Host` to another virtual host is signed too, whatever its upstream answers.
    pub routes: Option<Vec<String>>,
    /// Upstream cluster names (`xds.cluster_name`) whose answers on this path are signed;
    /// any cluster when absent.
    pub clusters: Option<Vec<String>>,
}

/// One signing key: `secret` or `secret_base64` for HS*, `private_key` for the others.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// The `kid` of the tokens it signs; unique.
    pub kid: String,
    /// HS256, HS384, HS512, RS256, ES256 or EdDSA.
    pub algorithm: String,
    /// HMAC secret as text: at least as long as the hash, not typed by a person.
    pub secret: Option<String>,
    /// HMAC secret, base64 (standard or url alphabet).
    pub secret_base64: Option<String>,
    /// PEM private key, unencrypted: `PRIVATE KEY` (PKCS#8), or `RSA PRIVATE KEY` /
    /// `EC PRIVATE KEY`.
    pub private_key: Option<String>,
    /// Signs new tokens.
    pub active: Option<bool>,
}

impl RawConfig {
    /// Reads the JSON configuration; unknown fields, wrong types and repeated member names
    /// are refused with their path.
    pub fn from_json(bytes: &[u8]) -> Result<RawConfig, ConfigError> {
        let value =
            strict_json(bytes).map_err(|_| err("", "not JSON (or a member name repeats)"))?;
        if !value.is_object() {
            return Err(err("", "expected a JSON object"));
        }
        typed("", value)
    }
}

impl TokenIssuer {
    /// Reads and compiles the JSON configuration in one step.
    pub fn from_json(bytes: &[u8]) -> Result<TokenIssuer, ConfigError> {
        TokenIssuer::try_from(RawConfig::from_json(bytes)?)
    }
}

impl TryFrom<RawConfig> for TokenIssuer {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<TokenIssuer, ConfigError> {
        let auth_paths = auth_paths(&raw.auth_paths)?;
        let max_ttl = raw.max_ttl.unwrap_or(DEFAULT_MAX_TTL);
        if !(1..=MAX_MAX_TTL).contains(&max_ttl) {
            return Err(err(
                "max_ttl",
                format!("{max_ttl} is outside 1..={MAX_MAX_TTL}"),
            ));
        }
        let ttl = raw.ttl.unwrap_or(DEFAULT_TTL.min(max_ttl));
        if !(1..=max_ttl).contains(&ttl) {
            return Err(err(
                "ttl",
                format!("{ttl} is outside 1..={max_ttl} (max_ttl)"),
            ));
        }
        if raw.iss.is_empty() {
            return Err(err("iss", "empty"));
        }
        let aud = match raw.aud {
            None => None,
            Some(Value::String(s)) if !s.is_empty() => Some(Value::String(s)),
            Some(Value::Array(list))
                if !list.is_empty()
                    && list
                        .iter()
                        .all(|a| a.as_str().is_some_and(|s| !s.is_empty())) =>
            {
                Some(Value::Array(list))
            }
            Some(_) => {
                return Err(err(
                    "aud",
                    "expected a non-empty string or a non-empty array of them",
                ))
            }
        };
        let require_sub = raw.sub_field.is_some();
        let sub_field = raw.sub_field.unwrap_or_else(|| "sub".into());
        if sub_field.is_empty() {
            return Err(err("sub_field", "empty"));
        }
        let allow = match raw.claims {
            None => None,
            Some(names) => {
                for (i, name) in names.iter().enumerate() {
                    let path = format!("claims[{i}]");
                    if name.is_empty() {
                        return Err(err(path, "empty"));
                    }
                    if RESERVED.contains(&name.as_str()) {
                        return Err(err(
                            path,
                            format!("{name:?} is a registered claim the issuer sets itself"),
                        ));
                    }
                    if names.iter().take(i).any(|n| n == name) {
                        return Err(err(path, format!("{name:?} twice")));
                    }
                }
                Some(names)
            }
        };
        let (active, retired) = keys(&raw.keys)?;
        let hold_headers = raw.allow_on_headers_stop_iteration.unwrap_or(false);
        let cookie = match raw.cookie {
            None => None,
            Some(_) if !hold_headers => {
                return Err(err(
                    "cookie",
                    "needs allow_on_headers_stop_iteration: Set-Cookie must be written before \
                     the response headers leave, which only a held response allows",
                ))
            }
            Some(cookie) => Some(CookieRules::compile(cookie)?),
        };
        let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if !(1..=MAX_MAX_BODY_BYTES).contains(&max_body_bytes) {
            return Err(err(
                "max_body_bytes",
                format!("{max_body_bytes} is outside 1..={MAX_MAX_BODY_BYTES}"),
            ));
        }
        let jwks = jwks_document(std::iter::once(&active).chain(&retired));
        let jwks_path = match raw.jwks_path {
            None => None,
            Some(path) => {
                exact_path("jwks_path", &path)?;
                if auth_paths.iter().any(|a| a.path == path) {
                    return Err(err("jwks_path", format!("{path:?} is also an auth path")));
                }
                if jwks.is_none() {
                    return Err(err(
                        "jwks_path",
                        "no RS256, ES256 or EdDSA key to publish (HMAC secrets never are)",
                    ));
                }
                Some(path)
            }
        };
        Ok(TokenIssuer {
            auth_paths,
            rules: ClaimRules {
                iss: raw.iss,
                aud,
                ttl,
                max_ttl,
                sub_field: Some(sub_field),
                require_sub,
                allow,
            },
            active,
            retired,
            cookie,
            max_body_bytes,
            jwks_path,
            jwks: jwks.unwrap_or_default(),
            crypto: raw.crypto.unwrap_or_default(),
            hold_headers,
            decision_records: raw.decision_records.unwrap_or(true),
        })
    }
}

fn exact_path(field: &str, path: &str) -> Result<(), ConfigError> {
    if !path.starts_with('/') {
        return Err(err(field, format!("{path:?} does not start with '/'")));
    }
    if path
        .bytes()
        .any(|b| b == b'?' || b == b'#' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(err(
            field,
            format!("{path:?}: an exact path, without query, fragment or spaces"),
        ));
    }
    Ok(())
}

fn auth_paths(raw: &[RawAuthPath]) -> Result<Vec<AuthPath>, ConfigError> {
    if raw.is_empty() {
        return Err(err("auth_paths", "empty: name at least one login path"));
    }
    let mut compiled: Vec<AuthPath> = Vec::with_capacity(raw.len());
    for (i, entry) in raw.iter().enumerate() {
        exact_path(&format!("auth_paths[{i}].path"), &entry.path)?;
        if compiled.iter().any(|a| a.path == entry.path) {
            return Err(err(
                format!("auth_paths[{i}].path"),
                format!("{:?} twice", entry.path),
            ));
        }
        let methods = match &entry.methods {
            None => None,
            Some(methods) if methods.is_empty() => {
                return Err(err(
                    format!("auth_paths[{i}].methods"),
                    "empty: leave it out to match every method",
                ))
            }
            Some(methods) => {
                for (j, method) in methods.iter().enumerate() {
                    let is_method = !method.is_empty()
                        && method.bytes().all(|b| b.is_ascii_uppercase() || b == b'-');
                    if !is_method {
                        return Err(err(
                            format!("auth_paths[{i}].methods[{j}]"),
                            format!("{method:?} is not an upper-case HTTP method"),
                        ));
                    }
                }
                Some(methods.clone())
            }
        };
        let names = |field: &str, list: &Option<Vec<String>>| -> Result<_, ConfigError> {
            let Some(list) = list else { return Ok(None) };
            let at = format!("auth_paths[{i}].{field}");
            if list.is_empty() {
                return Err(err(at, "empty: leave it out to match any"));
            }
            if let Some(j) = list.iter().position(String::is_empty) {
                return Err(err(format!("{at}[{j}]"), "empty name"));
            }
            Ok(Some(list.clone()))
        };
        compiled.push(AuthPath {
            normal: normal_form(&entry.path),
            path: entry.path.clone(),
            methods,
            routes: names("routes", &entry.routes)?,
            clusters: names("clusters", &entry.clusters)?,
        });
    }
    Ok(compiled)
}

/// The active key and the others, in configuration order.
fn keys(raw: &[RawKey]) -> Result<(SigningKey, Vec<SigningKey>), ConfigError> {
    if raw.is_empty() {
        return Err(err("keys", "empty: configure at least one signing key"));
    }
    let mut keys = Vec::with_capacity(raw.len());
    let mut active = Vec::new();
    for (i, entry) in raw.iter().enumerate() {
        let at = |field: &str| format!("keys[{i}].{field}");
        if entry.kid.is_empty() || entry.kid.bytes().any(|b| b.is_ascii_control()) {
            return Err(err(at("kid"), "empty or with control characters"));
        }
        if raw.iter().take(i).any(|k| k.kid == entry.kid) {
            return Err(err(at("kid"), format!("{:?} twice", entry.kid)));
        }
        let alg = Algorithm::from_name(&entry.algorithm)
            .filter(|alg| SIGNING_ALGORITHMS.contains(alg))
            .ok_or_else(|| {
                err(
                    at("algorithm"),
                    format!(
                        "{:?}: expected one of HS256, HS384, HS512, RS256, ES256, EdDSA",
                        entry.algorithm
                    ),
                )
            })?;
        let key = match (&entry.secret, &entry.secret_base64, &entry.private_key) {
            (Some(secret), None, None) => SigningKey::hmac(&entry.kid, alg, secret.as_bytes())
                .map_err(|e| err(at("secret"), e.0))?,
            (None, Some(encoded), None) => {
                let secret = decode_secret_base64(encoded)
                    .ok_or_else(|| err(at("secret_base64"), "not base64"))?;
                SigningKey::hmac(&entry.kid, alg, &secret)
                    .map_err(|e| err(at("secret_base64"), e.0))?
            }
            (None, None, Some(pem)) => SigningKey::from_pem(&entry.kid, alg, pem)
                .map_err(|e| err(at("private_key"), e.0))?,
            _ => {
                return Err(err(
                    format!("keys[{i}]"),
                    "exactly one of secret, secret_base64, private_key",
                ))
            }
        };
        let is_active = entry.active.unwrap_or(raw.len() == 1);
        if is_active {
            active.push(i);
        }
        keys.push(key);
    }
    match active.as_slice() {
        [one] => {
            let mut chosen = None;
            let mut retired = Vec::with_capacity(keys.len());
            for (i, key) in keys.into_iter().enumerate() {
                if i == *one {
                    chosen = Some(key);
                } else {
                    retired.push(key);
                }
            }
            chosen
                .map(|active| (active, retired))
                .ok_or_else(|| err("keys", "no key is active"))
        }
        [] => Err(err(
            "keys",
            "no key is active: mark exactly one `active: true`",
        )),
        [_, second, ..] => Err(err(
            format!("keys[{second}].active"),
            "a second active key: exactly one signs new tokens",
        )),
    }
}
