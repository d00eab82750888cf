//! The jwt filter's configuration as written (JSON, Kong's and Envoy's field names), read
//! strictly; `compile` turns it into a [`JwtPolicySet`](super::JwtPolicySet). Every refusal
//! names the JSON path it is about.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::source::RawConsumerSource;
use crate::config::{err, strict_json, typed, ConfigError};
use crate::decision::RECORDS_FIELD;
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
    /// Consumers looked up at runtime in portcullis-admin ([`RawConsumerSource`]).
    pub consumer_source: Option<RawConsumerSource>,
    /// See [`crate::decision::RECORDS_FIELD`] (default true).
    pub decision_records: Option<bool>,
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
        let consumer_source = take(&mut top, "consumer_source")?;
        let decision_records = take(&mut top, RECORDS_FIELD)?;
        let settings = typed("", Value::Object(top)).map_err(|mut e| {
            // The settings struct lists only its own fields; name the others too.
            e.message = e.message.replacen(
                "expected one of ",
                "expected one of `consumers`, `providers`, `routes`, `token_cache_size`, `crypto`, `consumer_source`, `decision_records`, ",
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
            consumer_source,
            decision_records,
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
