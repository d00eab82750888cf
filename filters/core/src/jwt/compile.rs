//! The jwt configuration as written, compiled into a [`JwtPolicySet`]: defaults filled in,
//! every value checked once, routes laid over the top-level settings. Every refusal names the
//! JSON path it is about.

use std::collections::HashMap;
use std::sync::Arc;

use super::claims::TimeRules;
use super::config::{RawJwtConfig, RawSettings};
use super::keyring::{compile_keyring, Keyring};
use super::policy::{JwtPolicy, JwtPolicySet, RoutePolicy};
use super::source::ConsumerSource;
use super::sources::TokenLocations;
use super::Handoff;
use crate::config::{bounded, err, is_token_char, ConfigError};
use crate::identity;

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
            consumer_source: raw
                .consumer_source
                .as_ref()
                .map(|s| ConsumerSource::compile("consumer_source", s))
                .transpose()?,
            decision_records: raw.decision_records.unwrap_or(true),
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
