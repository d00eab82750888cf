//! Who may sign: consumers with their credentials, and providers with their key sets —
//! compiled once from configuration and shared by every route — and the per-worker store of
//! the remote key sets the glue fills from shared data.

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use serde_json::{Map, Value};

use super::config::{RawConsumer, RawCredential, RawProvider, RawRemoteJwks};
use crate::config::{bounded, err, ConfigError};
use crate::identity::{header_safe, Identity};
use crate::jose::crypto::{Algorithm, Family, PreparedKey};
use crate::jose::jwks::{parse_jwks, prepare_jwk, JwkSet};

/// A Kong consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    pub id: String,
    pub username: String,
    pub custom_id: Option<String>,
    pub groups: Vec<String>,
}

impl Consumer {
    /// The identity this consumer authenticates as, with `credential` when one was used.
    pub fn identity(&self, credential: Option<&str>, anonymous: bool) -> Identity {
        Identity {
            consumer_id: Some(self.id.clone()),
            username: Some(self.username.clone()),
            custom_id: self.custom_id.clone(),
            credential: credential.map(str::to_owned),
            groups: self.groups.clone(),
            claims: Default::default(),
            anonymous,
        }
    }
}

/// A consumer's JWT credential: found by its `key`, pinned to one algorithm.
#[derive(Clone, Debug)]
pub struct Credential {
    pub key: String,
    pub algorithm: Algorithm,
    pub prepared: Arc<PreparedKey>,
    /// The consumer's identity through this credential, ready to hand on.
    pub handoff: Arc<super::Handoff>,
}

/// Where a remote provider's keys are fetched from (through an Envoy cluster).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteJwks {
    /// The provider these keys belong to.
    pub provider: String,
    /// Envoy cluster for `dispatch_http_call`.
    pub cluster: String,
    /// `:authority` of the fetch.
    pub authority: String,
    /// `:path` of the fetch.
    pub path: String,
    /// Fetch timeout.
    pub timeout_ms: u64,
    /// Seconds between routine refreshes.
    pub refresh_interval: u64,
    /// Least seconds between two fetches triggered by an unknown `kid` or a failure.
    pub min_refresh_interval: u64,
}

/// Keys of a provider: inline in configuration, or fetched.
#[derive(Clone, Debug)]
pub enum ProviderKeys {
    Inline(JwkSet),
    Remote(RemoteJwks),
}

/// An issuer whose tokens are verified with its JWKS (Envoy's jwt_authn provider).
#[derive(Clone, Debug)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub keys: ProviderKeys,
    /// Claim that becomes the identity's username.
    pub username_claim: String,
    /// Claim (string or array of strings) that becomes the identity's groups.
    pub groups_claim: Option<String>,
}

/// Every key the filter knows, shared by all routes.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    pub(crate) credentials: HashMap<String, Credential>,
    pub(crate) providers: Vec<Provider>,
    pub(crate) issuers: HashMap<String, usize>,
    pub(crate) consumers: Vec<Arc<Consumer>>,
}

impl Keyring {
    /// The credential with this `key`.
    pub fn credential(&self, key: &str) -> Option<&Credential> {
        self.credentials.get(key)
    }

    /// The provider with this issuer.
    pub fn provider_for_issuer(&self, issuer: &str) -> Option<&Provider> {
        self.issuers
            .get(issuer)
            .and_then(|i| self.providers.get(*i))
    }

    /// All providers.
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// All consumers.
    pub fn consumers(&self) -> &[Arc<Consumer>] {
        &self.consumers
    }
}

pub(crate) fn compile_keyring(
    consumers: &[RawConsumer],
    providers: &[RawProvider],
) -> Result<Keyring, ConfigError> {
    let mut keyring = Keyring::default();
    for (ci, raw) in consumers.iter().enumerate() {
        let path = format!("consumers[{ci}]");
        let consumer = Arc::new(compile_consumer(&path, raw)?);
        for other in &keyring.consumers {
            if other.username == consumer.username || other.id == consumer.id {
                return Err(err(
                    &path,
                    format!("username or id repeats consumer {:?}", other.username),
                ));
            }
        }
        for (ki, cred) in raw.credentials.iter().enumerate() {
            let path = format!("{path}.credentials[{ki}]");
            let credential = compile_credential(&path, cred, &consumer.identity(None, false))?;
            if keyring.credentials.contains_key(&credential.key) {
                return Err(err(
                    format!("{path}.key"),
                    format!("{:?} is used by another credential", credential.key),
                ));
            }
            keyring
                .credentials
                .insert(credential.key.clone(), credential);
        }
        keyring.consumers.push(consumer);
    }
    for (pi, raw) in providers.iter().enumerate() {
        let path = format!("providers[{pi}]");
        let provider = compile_provider(&path, raw)?;
        if keyring.providers.iter().any(|p| p.name == provider.name) {
            return Err(err(
                format!("{path}.name"),
                format!("{:?} repeats", provider.name),
            ));
        }
        if keyring.issuers.contains_key(&provider.issuer)
            || keyring.credentials.contains_key(&provider.issuer)
        {
            return Err(err(
                format!("{path}.issuer"),
                format!(
                    "{:?} is already a provider issuer or credential key",
                    provider.issuer
                ),
            ));
        }
        keyring
            .issuers
            .insert(provider.issuer.clone(), keyring.providers.len());
        keyring.providers.push(provider);
    }
    Ok(keyring)
}

pub(crate) fn safe_text(path: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() || !header_safe(value) {
        return Err(err(path, "must be non-empty, without control characters"));
    }
    Ok(())
}

fn compile_consumer(path: &str, raw: &RawConsumer) -> Result<Consumer, ConfigError> {
    safe_text(&format!("{path}.username"), &raw.username)?;
    let id = raw.id.clone().unwrap_or_else(|| raw.username.clone());
    safe_text(&format!("{path}.id"), &id)?;
    if let Some(custom) = &raw.custom_id {
        safe_text(&format!("{path}.custom_id"), custom)?;
    }
    for (i, group) in raw.groups.iter().enumerate() {
        safe_text(&format!("{path}.groups[{i}]"), group)?;
        if group.contains(',') {
            return Err(err(format!("{path}.groups[{i}]"), "must not contain ','"));
        }
    }
    Ok(Consumer {
        id,
        username: raw.username.clone(),
        custom_id: raw.custom_id.clone(),
        groups: raw.groups.clone(),
    })
}

/// Compiles a credential of the consumer whose identity (without a credential) is `consumer`.
pub(crate) fn compile_credential(
    path: &str,
    raw: &RawCredential,
    consumer: &Identity,
) -> Result<Credential, ConfigError> {
    safe_text(&format!("{path}.key"), &raw.key)?;
    let name = raw.algorithm.as_deref().unwrap_or("HS256");
    let algorithm = Algorithm::from_name(name).ok_or_else(|| {
        err(
            format!("{path}.algorithm"),
            format!("{name:?} is not a supported algorithm"),
        )
    })?;
    let given: Vec<&str> = [
        ("secret", raw.secret.is_some()),
        ("secret_base64", raw.secret_base64.is_some()),
        ("public_key", raw.public_key.is_some()),
        ("jwk", raw.jwk.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, set)| set.then_some(field))
    .collect();
    let [field] = given.as_slice() else {
        return Err(err(
            path,
            format!(
                "needs exactly one of secret, secret_base64, public_key, jwk (got {})",
                given.len()
            ),
        ));
    };
    let field_path = format!("{path}.{field}");
    let hmac = algorithm.family() == Family::Hmac;
    let prepared = match (*field, hmac) {
        ("secret", true) => PreparedKey::hmac(
            algorithm,
            raw.secret.as_deref().unwrap_or_default().as_bytes(),
        ),
        ("secret_base64", true) => {
            let text = raw.secret_base64.as_deref().unwrap_or_default().trim();
            let bytes = STANDARD
                .decode(text)
                .or_else(|_| URL_SAFE.decode(text))
                .map_err(|_| err(&field_path, "not base64"))?;
            PreparedKey::hmac(algorithm, &bytes)
        }
        ("public_key", false) => {
            PreparedKey::from_pem(algorithm, raw.public_key.as_deref().unwrap_or_default())
        }
        ("jwk", _) => prepare_jwk(raw.jwk.as_ref().unwrap_or(&Map::new()), Some(algorithm))
            .map(|(_, key)| key),
        (_, true) => {
            return Err(err(
                &field_path,
                format!("{algorithm} needs secret, secret_base64 or jwk"),
            ))
        }
        (_, false) => {
            return Err(err(
                &field_path,
                format!("{algorithm} needs public_key or jwk"),
            ))
        }
    }
    .map_err(|e| err(&field_path, e.0))?;
    Ok(Credential {
        key: raw.key.clone(),
        algorithm,
        prepared: Arc::new(prepared),
        handoff: Arc::new(super::Handoff::new(
            Identity {
                credential: Some(raw.key.clone()),
                ..consumer.clone()
            },
            Vec::new(),
        )),
    })
}

fn compile_provider(path: &str, raw: &RawProvider) -> Result<Provider, ConfigError> {
    safe_text(&format!("{path}.name"), &raw.name)?;
    safe_text(&format!("{path}.issuer"), &raw.issuer)?;
    let keys = match (&raw.jwks, &raw.remote_jwks) {
        (Some(jwks), None) => {
            let bytes = match jwks {
                Value::String(text) => text.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            };
            let parsed =
                parse_jwks(&bytes).map_err(|e| err(format!("{path}.jwks"), e.to_string()))?;
            if let Some(skipped) = parsed.skipped.first() {
                return Err(err(format!("{path}.jwks"), skipped.clone()));
            }
            ProviderKeys::Inline(parsed.set)
        }
        (None, Some(remote)) => ProviderKeys::Remote(compile_remote(
            &format!("{path}.remote_jwks"),
            &raw.name,
            remote,
        )?),
        _ => return Err(err(path, "needs exactly one of jwks, remote_jwks")),
    };
    Ok(Provider {
        name: raw.name.clone(),
        issuer: raw.issuer.clone(),
        audiences: raw.audiences.clone(),
        keys,
        username_claim: raw.username_claim.clone().unwrap_or_else(|| "sub".into()),
        groups_claim: raw.groups_claim.clone(),
    })
}

fn compile_remote(
    path: &str,
    provider: &str,
    raw: &RawRemoteJwks,
) -> Result<RemoteJwks, ConfigError> {
    safe_text(&format!("{path}.cluster"), &raw.cluster)?;
    let (mut authority, request_path) = match (&raw.uri, &raw.path) {
        (Some(uri), None) => {
            let rest = uri
                .strip_prefix("https://")
                .or_else(|| uri.strip_prefix("http://"))
                .ok_or_else(|| err(format!("{path}.uri"), "must start with http:// or https://"))?;
            let (authority, p) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            (
                authority.to_owned(),
                if p.is_empty() {
                    "/".to_owned()
                } else {
                    p.to_owned()
                },
            )
        }
        (None, Some(p)) => (String::new(), p.clone()),
        _ => return Err(err(path, "needs exactly one of uri, path")),
    };
    if let Some(a) = &raw.authority {
        authority = a.clone();
    }
    if authority.is_empty() || !header_safe(&authority) || authority.contains('/') {
        return Err(err(
            format!("{path}.authority"),
            "missing or not a host[:port]",
        ));
    }
    if !request_path.starts_with('/') || !header_safe(&request_path) || request_path.contains(' ') {
        return Err(err(format!("{path}.path"), "must be an absolute path"));
    }
    Ok(RemoteJwks {
        provider: provider.to_owned(),
        cluster: raw.cluster.clone(),
        authority,
        path: request_path,
        timeout_ms: bounded(
            &format!("{path}.timeout_ms"),
            raw.timeout_ms.unwrap_or(5000),
            1,
            60_000,
        )?,
        refresh_interval: bounded(
            &format!("{path}.refresh_interval"),
            raw.refresh_interval.unwrap_or(600),
            10,
            604_800,
        )?,
        min_refresh_interval: bounded(
            &format!("{path}.min_refresh_interval"),
            raw.min_refresh_interval.unwrap_or(30),
            1,
            86_400,
        )?,
    })
}

/// The remote key sets of every provider, per worker. The glue installs a set whenever the
/// shared-data copy changes generation (its CAS), so each worker parses a document once.
#[derive(Debug, Default)]
pub struct KeyStore {
    sets: HashMap<String, (u64, JwkSet)>,
}

impl KeyStore {
    /// An empty store.
    pub fn new() -> KeyStore {
        KeyStore::default()
    }

    /// Installs `set` as `provider`'s keys at `generation`, replacing the previous set.
    pub fn install(&mut self, provider: &str, generation: u64, set: JwkSet) {
        self.sets.insert(provider.to_owned(), (generation, set));
    }

    /// The generation installed for `provider`, if any: the glue compares it with the
    /// shared-data CAS to know whether to re-parse.
    pub fn generation(&self, provider: &str) -> Option<u64> {
        self.sets.get(provider).map(|(generation, _)| *generation)
    }

    /// `provider`'s current keys, if any were ever installed.
    pub fn keys(&self, provider: &str) -> Option<&JwkSet> {
        self.sets.get(provider).map(|(_, set)| set)
    }
}
