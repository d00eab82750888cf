//! The jwt filter's configuration as written (JSON, Kong's and Envoy's field names), and its
//! compilation into a [`JwtPolicySet`]; every refusal names the JSON path it is about.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::claims::TimeRules;
use super::keyring::{compile_keyring, Keyring};
use super::policy::{JwtPolicy, JwtPolicySet, RoutePolicy};
use super::sources::TokenLocations;
use super::Handoff;
use crate::config::{bounded, err, is_token_char, strict_json, typed, ConfigError};
use crate::identity;
use crate::jose::CryptoChoice;

/// Settings a route may override; at the top level they are the default policy's.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    /// Request headers searched for `Bearer <token>` (default `["authorization"]`). In
    /// `authorization` only the Bearer scheme counts; other headers may carry a bare token.
    pub header_names: Option<Vec<String>>,
    /// Query parameters searched for a token (Kong, default `["jwt"]`). Pitfall: tokens in
    /// URLs end up in access logs; set `[]` to turn this off.
    pub uri_param_names: Option<Vec<String>>,
    /// Cookies searched for a token (Kong, default `[]`).
    pub cookie_names: Option<Vec<String>>,
    /// Claim naming the consumer credential's `key` (Kong, default `iss`); the token's `kid`
    /// header is tried too. Pitfall: the claim is read before the signature is checked, so it
    /// only selects a key, it proves nothing by itself.
    pub key_claim_name: Option<String>,
    /// Registered claims that must be present (Kong: `exp`, `nbf`). `exp`, `nbf` and `iat`
    /// are checked whenever present, listed or not — stricter than Kong, which ignores an
    /// unlisted `exp`.
    pub claims_to_verify: Option<Vec<String>>,
    /// Refuse tokens without `exp` (default true). Pitfall: false lets a token live forever.
    pub exp_required: Option<bool>,
    /// Seconds of clock skew tolerated on `exp`, `nbf`, `iat` (default 60, at most 86400).
    /// Also accepted as `clock_skew_seconds` (Envoy's name).
    #[serde(alias = "clock_skew_seconds")]
    pub leeway: Option<u64>,
    /// Kong's `maximum_expiration`: `exp` may lie at most this many seconds ahead (0 = off,
    /// at most 31536000). Needs `exp`, so it implies `exp_required`.
    pub maximum_expiration: Option<u64>,
    /// Claims every token must carry (present and not `null`).
    pub required_claims: Option<Vec<String>>,
    /// Claim → upstream header (`{"sub": "x-jwt-sub"}`). A value with CR, LF, NUL or any
    /// other control character is dropped, never forwarded. Client copies are removed.
    pub claims_to_headers: Option<BTreeMap<String, String>>,
    /// Claims copied (as strings) into the identity handed to acl and rate-limiting, beside
    /// those of `claims_to_headers`.
    pub identity_claims: Option<Vec<String>>,
    /// Envoy's `forward_payload_header`: upstream header receiving the payload segment
    /// (base64url JSON) of a verified token.
    pub forward_payload_header: Option<String>,
    /// Remove the token from the upstream request (Kong's `hide_credentials`; Envoy's
    /// `forward: false`). Default false: the upstream sees the token.
    pub hide_credentials: Option<bool>,
    /// Username (or id) of a configured consumer that stands in when a request carries no
    /// token at all. A token that is present but bad is still refused.
    pub anonymous: Option<String>,
    /// Authenticate CORS preflight `OPTIONS` requests too (Kong, default true).
    pub run_on_preflight: Option<bool>,
    /// Longest token accepted, in bytes (default 8192, 64..=65536); checked before parsing.
    pub max_token_bytes: Option<usize>,
    /// Send `{"message":"Unauthorized"}` for every 401 instead of Kong's specific bodies; the
    /// reason still goes to the log and the metric.
    pub plain_unauthorized_body: Option<bool>,
    /// Delay every refusal by this many milliseconds (Pingap's `delay`, at most 10000),
    /// against timing probes. Pitfall: each delayed request holds a connection.
    pub failure_delay_ms: Option<u64>,
    /// `realm` of `WWW-Authenticate` (default `portcullis`; printable ASCII, no `"` or `\`).
    pub realm: Option<String>,
    /// No authentication at all (for a route; at the top level, for every unlisted route).
    pub public: Option<bool>,
}

/// A Kong consumer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsumer {
    /// Unique name, sent as `X-Consumer-Username`.
    pub username: String,
    /// Unique id, sent as `X-Consumer-ID` (default: the username).
    pub id: Option<String>,
    /// Your own id for the consumer, sent as `X-Consumer-Custom-ID`.
    pub custom_id: Option<String>,
    /// Groups for acl, sent as `X-Consumer-Groups` (no commas).
    #[serde(default)]
    pub groups: Vec<String>,
    /// The consumer's JWT credentials.
    #[serde(default)]
    pub credentials: Vec<RawCredential>,
}

/// A consumer's JWT credential (Kong's `jwt_secrets`): exactly one of `secret`,
/// `secret_base64`, `public_key`, `jwk`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredential {
    /// Unique; matched against the token's `key_claim_name` claim or `kid`, and sent as
    /// `X-Credential-Identifier`.
    pub key: String,
    /// The one algorithm this credential verifies (Kong, default `HS256`); a token with any
    /// other `alg` is refused.
    pub algorithm: Option<String>,
    /// HMAC secret as text; at least as long as the hash (32/48/64 bytes).
    pub secret: Option<String>,
    /// HMAC secret, base64 (standard or url alphabet).
    pub secret_base64: Option<String>,
    /// Public key PEM (`PUBLIC KEY`, or `RSA PUBLIC KEY`); Kong's `rsa_public_key`.
    #[serde(alias = "rsa_public_key")]
    pub public_key: Option<String>,
    /// Public key (or `oct` secret) as a JWK object.
    pub jwk: Option<Map<String, Value>>,
}

/// An issuer verified with its JWKS (Envoy's jwt_authn provider): exactly one of `jwks`,
/// `remote_jwks`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Unique name, used in logs, metrics and as `X-Credential-Identifier`.
    pub name: String,
    /// The `iss` its tokens carry; unique, and no consumer credential key may equal it.
    pub issuer: String,
    /// When set, a token's `aud` must name one of these.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Inline JWKS: the document as an object, or as a JSON string.
    pub jwks: Option<Value>,
    /// JWKS fetched by the glue through an Envoy cluster.
    pub remote_jwks: Option<RawRemoteJwks>,
    /// Claim that becomes the username (default `sub`).
    pub username_claim: Option<String>,
    /// Claim (string or array of strings) that becomes the groups.
    pub groups_claim: Option<String>,
}

/// Where to fetch a provider's JWKS: `uri`, or `path` with `authority`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemoteJwks {
    /// Envoy cluster the fetch goes through (`dispatch_http_call`).
    pub cluster: String,
    /// `http(s)://authority/path`.
    pub uri: Option<String>,
    /// Path, when `uri` is not given.
    pub path: Option<String>,
    /// `:authority`; overrides the one in `uri`.
    pub authority: Option<String>,
    /// Seconds between refreshes (default 600, at least 10).
    pub refresh_interval: Option<u64>,
    /// Least seconds between fetches triggered by an unknown `kid` or a failure (default 30).
    pub min_refresh_interval: Option<u64>,
    /// Fetch timeout in milliseconds (default 5000).
    pub timeout_ms: Option<u64>,
}

/// A route's entry in `routes`: overrides of the top-level settings.
#[derive(Clone, Debug, Default)]
pub struct RawRoute {
    pub settings: RawSettings,
}

/// The configuration as written: `consumers`, `providers`, `routes` and, beside them, the
/// default policy's [`RawSettings`].
#[derive(Clone, Debug, Default)]
pub struct RawJwtConfig {
    pub consumers: Vec<RawConsumer>,
    pub providers: Vec<RawProvider>,
    /// Envoy route name → overrides.
    pub routes: BTreeMap<String, RawRoute>,
    /// Entries of the per-worker verified-token cache (default 1024; 0 turns it off). A hit
    /// skips the signature check only: time claims are checked on every request.
    pub token_cache_size: Option<usize>,
    /// `auto` (default): signatures the host can check (Envoy's `verify_signature`: RS*, ES*)
    /// go to the host, the rest are checked in the module; `in_module`: everything in the
    /// module, for hosts whose crypto cannot be trusted or for comparison.
    pub crypto: Option<CryptoChoice>,
    pub settings: RawSettings,
}

impl RawJwtConfig {
    /// Reads the JSON configuration. Unknown fields, wrong types and repeated member names
    /// are refused with their path.
    pub fn from_json(bytes: &[u8]) -> Result<RawJwtConfig, ConfigError> {
        let Ok(Value::Object(mut top)) = strict_json(bytes) else {
            return Err(err("", "not a JSON object (or a member name repeats)"));
        };
        let consumers = take(&mut top, "consumers")?.unwrap_or_default();
        let providers = take(&mut top, "providers")?.unwrap_or_default();
        let raw_routes: BTreeMap<String, Value> = take(&mut top, "routes")?.unwrap_or_default();
        let token_cache_size = take(&mut top, "token_cache_size")?;
        let crypto = take(&mut top, "crypto")?;
        let settings = typed("", Value::Object(top)).map_err(|mut e| {
            // The settings struct lists only its own fields; name the others too.
            e.message = e.message.replacen(
                "expected one of ",
                "expected one of `consumers`, `providers`, `routes`, `token_cache_size`, `crypto`, ",
                1,
            );
            e
        })?;
        let mut routes = BTreeMap::new();
        for (name, value) in raw_routes {
            let settings = typed(&format!("routes.{name}"), value)?;
            routes.insert(name, RawRoute { settings });
        }
        Ok(RawJwtConfig {
            consumers,
            providers,
            routes,
            token_cache_size,
            crypto,
            settings,
        })
    }
}

fn take<T: DeserializeOwned>(
    map: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<T>, ConfigError> {
    map.remove(key).map(|v| typed(key, v)).transpose()
}

impl JwtPolicySet {
    /// Reads and compiles the JSON configuration in one step.
    pub fn from_json(bytes: &[u8]) -> Result<JwtPolicySet, ConfigError> {
        JwtPolicySet::try_from(RawJwtConfig::from_json(bytes)?)
    }
}

impl TryFrom<RawJwtConfig> for JwtPolicySet {
    type Error = ConfigError;

    fn try_from(raw: RawJwtConfig) -> Result<JwtPolicySet, ConfigError> {
        let keyring = Arc::new(compile_keyring(&raw.consumers, &raw.providers)?);
        let default = compile_route("", &raw.settings, &keyring)?;
        let mut routes = HashMap::new();
        let mut strip: Vec<String> = Vec::new();
        let mut note = |policy: &RoutePolicy| {
            if let RoutePolicy::Protected(p) = policy {
                for name in p.header_names_set() {
                    if !strip.iter().any(|s| s == name) {
                        strip.push(name.to_owned());
                    }
                }
            }
        };
        note(&default);
        for (name, route) in &raw.routes {
            if name.is_empty() {
                return Err(err("routes", "empty route name"));
            }
            let merged = overlay(&raw.settings, &route.settings);
            let policy = compile_route(&format!("routes.{name}"), &merged, &keyring)?;
            note(&policy);
            routes.insert(name.clone(), policy);
        }
        for name in identity::headers::ALL {
            if !strip.iter().any(|s| s == name) {
                strip.push(name.to_owned());
            }
        }
        Ok(JwtPolicySet {
            default,
            routes,
            keyring,
            strip_headers: strip,
            token_cache_size: raw.token_cache_size.unwrap_or(1024),
            crypto: raw.crypto.unwrap_or_default(),
        })
    }
}

fn overlay(base: &RawSettings, over: &RawSettings) -> RawSettings {
    macro_rules! pick {
        ($($field:ident),*) => {
            RawSettings { $($field: over.$field.clone().or_else(|| base.$field.clone()),)* }
        };
    }
    pick!(
        header_names,
        uri_param_names,
        cookie_names,
        key_claim_name,
        claims_to_verify,
        exp_required,
        leeway,
        maximum_expiration,
        required_claims,
        claims_to_headers,
        identity_claims,
        forward_payload_header,
        hide_credentials,
        anonymous,
        run_on_preflight,
        max_token_bytes,
        plain_unauthorized_body,
        failure_delay_ms,
        realm,
        public
    )
}

fn at(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

fn compile_route(
    prefix: &str,
    s: &RawSettings,
    keyring: &Arc<Keyring>,
) -> Result<RoutePolicy, ConfigError> {
    if s.public == Some(true) {
        return Ok(RoutePolicy::Public);
    }
    let header_names = header_list(
        &at(prefix, "header_names"),
        s.header_names.clone(),
        &["authorization"],
    )?;
    let uri_param_names = name_list(
        &at(prefix, "uri_param_names"),
        s.uri_param_names.clone(),
        &["jwt"],
    )?;
    let cookie_names = name_list(&at(prefix, "cookie_names"), s.cookie_names.clone(), &[])?;
    if header_names.is_empty() && uri_param_names.is_empty() && cookie_names.is_empty() {
        return Err(err(prefix, "no place to look for a token (header_names, uri_param_names and cookie_names all empty)"));
    }
    let key_claim_name = s.key_claim_name.clone().unwrap_or_else(|| "iss".into());
    if key_claim_name.is_empty() {
        return Err(err(at(prefix, "key_claim_name"), "empty"));
    }
    let mut nbf_required = false;
    let mut exp_listed = false;
    for (i, claim) in s.claims_to_verify.iter().flatten().enumerate() {
        match claim.as_str() {
            "exp" => exp_listed = true,
            "nbf" => nbf_required = true,
            other => {
                return Err(err(
                    format!("{}[{i}]", at(prefix, "claims_to_verify")),
                    format!("{other:?}: only \"exp\" and \"nbf\" can be verified"),
                ))
            }
        }
    }
    let leeway = bounded(&at(prefix, "leeway"), s.leeway.unwrap_or(60), 0, 86_400)?;
    let maximum_expiration = bounded(
        &at(prefix, "maximum_expiration"),
        s.maximum_expiration.unwrap_or(0),
        0,
        31_536_000,
    )?;
    let exp_required = s.exp_required.unwrap_or(true) || exp_listed;
    if maximum_expiration > 0 && !exp_required {
        return Err(err(
            at(prefix, "maximum_expiration"),
            "needs exp: set exp_required or list \"exp\" in claims_to_verify",
        ));
    }
    let mut claims_to_headers = Vec::new();
    for (claim, header) in s.claims_to_headers.iter().flatten() {
        let path = format!("{}.{claim}", at(prefix, "claims_to_headers"));
        claims_to_headers.push((claim.clone(), upstream_header(&path, header)?));
    }
    let forward_payload_header = match &s.forward_payload_header {
        Some(h) => Some(upstream_header(&at(prefix, "forward_payload_header"), h)?),
        None => None,
    };
    let anonymous = match &s.anonymous {
        None => None,
        Some(name) => {
            let consumer = keyring
                .consumers()
                .iter()
                .find(|c| c.username == *name || c.id == *name);
            let consumer = consumer.ok_or_else(|| {
                err(
                    at(prefix, "anonymous"),
                    format!("no consumer named {name:?}"),
                )
            })?;
            Some(Arc::new(Handoff::new(
                consumer.identity(None, true),
                Vec::new(),
            )))
        }
    };
    let max_token_bytes = bounded(
        &at(prefix, "max_token_bytes"),
        s.max_token_bytes.unwrap_or(8192) as u64,
        64,
        65_536,
    )? as usize;
    let failure_delay_ms = bounded(
        &at(prefix, "failure_delay_ms"),
        s.failure_delay_ms.unwrap_or(0),
        0,
        10_000,
    )?;
    let realm = s.realm.clone().unwrap_or_else(|| "portcullis".into());
    if !realm
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        return Err(err(
            at(prefix, "realm"),
            "must be printable ASCII without '\"' or '\\'",
        ));
    }
    Ok(RoutePolicy::Protected(Arc::new(JwtPolicy {
        locations: TokenLocations {
            header_names,
            uri_param_names,
            cookie_names,
        },
        key_claim_name,
        time: TimeRules {
            leeway,
            exp_required,
            nbf_required,
            maximum_expiration,
        },
        required_claims: s.required_claims.clone().unwrap_or_default(),
        claims_to_headers,
        identity_claims: s.identity_claims.clone().unwrap_or_default(),
        forward_payload_header,
        hide_credentials: s.hide_credentials.unwrap_or(false),
        anonymous,
        run_on_preflight: s.run_on_preflight.unwrap_or(true),
        max_token_bytes,
        plain_unauthorized_body: s.plain_unauthorized_body.unwrap_or(false),
        failure_delay_ms,
        realm,
        keyring: Arc::clone(keyring),
    })))
}

fn header_list(
    path: &str,
    names: Option<Vec<String>>,
    default: &[&str],
) -> Result<Vec<String>, ConfigError> {
    let names = names.unwrap_or_else(|| default.iter().map(|s| (*s).to_owned()).collect());
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            if name.is_empty() || !name.bytes().all(is_token_char) {
                return Err(err(
                    format!("{path}[{i}]"),
                    format!("{name:?} is not a header name"),
                ));
            }
            Ok(name.to_ascii_lowercase())
        })
        .collect()
}

fn name_list(
    path: &str,
    names: Option<Vec<String>>,
    default: &[&str],
) -> Result<Vec<String>, ConfigError> {
    let names = names.unwrap_or_else(|| default.iter().map(|s| (*s).to_owned()).collect());
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(err(
                format!("{path}[{i}]"),
                format!("{name:?} is not a valid name"),
            ));
        }
    }
    Ok(names)
}

fn upstream_header(path: &str, name: &str) -> Result<String, ConfigError> {
    let lower = header_list(path, Some(vec![name.to_owned()]), &[])
        .map_err(|e| err(path, e.message))?
        .concat();
    if identity::headers::ALL.contains(&lower.as_str())
        || ["authorization", "host", "cookie"].contains(&lower.as_str())
    {
        return Err(err(path, format!("{lower:?} is reserved")));
    }
    Ok(lower)
}
