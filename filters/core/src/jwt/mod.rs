//! The jwt filter's whole policy: find the token, check it (cheap checks first, crypto
//! last), and say who the caller is or why they are refused.
//!
//! The glue reads the request headers into [`TokenSources`], picks the route's
//! [`JwtPolicy`] from the [`JwtPolicySet`], calls [`authenticate`], and acts on the answer.

pub mod cache;
pub mod claims;
pub mod compile;
pub mod config;
pub mod delay;
pub mod keyring;
pub mod object;
pub mod policy;
pub mod refresh;
pub mod rejection;
pub mod source;
pub mod sources;
pub mod token;

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

use serde_json::Value;

pub use cache::TokenCache;
pub use config::RawJwtConfig;
pub use keyring::KeyStore;
pub use policy::{JwtPolicy, JwtPolicySet, Refusal, RoutePolicy};
pub use rejection::Rejection;
pub use sources::{TokenLocation, TokenSources};
pub use token::{Token, TokenError};

use crate::identity::Identity;
use crate::jose::{PreparedKey, SignatureBackend};
use crate::UnixTime;
use cache::CachedToken;
use keyring::{Credential, Provider, ProviderKeys};
use object::JsonObject;

/// What verifies signatures for [`authenticate`], and the state it may reuse.
pub struct Verifier<'a> {
    /// The backend chosen at start (host, in-module, or split between them).
    pub backend: &'a dyn SignatureBackend,
    /// Remote providers' keys, as the glue last installed them.
    pub remote_keys: &'a KeyStore,
    /// The per-worker verified-token cache, if enabled.
    pub cache: Option<&'a mut TokenCache>,
    /// Consumers looked up at runtime (`consumer_source`), as this worker last synced them.
    pub source: Option<&'a source::Directory>,
}

/// A request that may proceed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Who the caller is, its encoding for later filters and the upstream headers: shared
    /// with the consumer's credential when nothing in it depends on the token.
    pub handoff: Arc<Handoff>,
    /// Claims that were configured for a header but whose value was unsafe (CR, LF, NUL,
    /// control characters) and so were left out; for the log.
    pub dropped_claims: Vec<String>,
    /// Everywhere the token was found, for a policy that hides credentials (to remove
    /// each); empty for one that does not.
    pub token_locations: Vec<TokenLocation>,
    /// The signature verdict came from the cache.
    pub cache_hit: bool,
    /// The credential came from `consumer_source`.
    pub looked_up: bool,
}

impl Accepted {
    /// Who the caller is.
    pub fn identity(&self) -> &Identity {
        &self.handoff.identity
    }

    /// Headers to set on the upstream request, after removing
    /// [`JwtPolicySet::headers_to_strip`]: Kong's identity headers, `claims_to_headers`,
    /// and `forward_payload_header`.
    pub fn upstream_headers(&self) -> &[(Arc<str>, Arc<str>)] {
        &self.handoff.upstream_headers
    }

    /// [`Identity::encode`] of [`identity`](Self::identity): what to hand on to later filters.
    pub fn encoded_identity(&self) -> &[u8] {
        &self.handoff.encoded
    }
}

/// What an accepted request hands on. For a consumer's credential on a policy that forwards
/// no claim it depends on nothing in the token, so it is built once, at configure time
/// ([`Credential::handoff`](keyring::Credential)), and shared by every request it accepts.
#[derive(Debug, PartialEq, Eq)]
pub struct Handoff {
    pub identity: Identity,
    /// Names in lower case. Shared (`Arc<str>`), so that a request can keep the headers it
    /// set without copying them.
    pub upstream_headers: Vec<(Arc<str>, Arc<str>)>,
    pub encoded: Vec<u8>,
}

impl Handoff {
    /// The identity with Kong's headers for it, then `extra` headers.
    pub fn new(identity: Identity, extra: Vec<(String, String)>) -> Handoff {
        let mut upstream_headers = header_pairs(&identity);
        upstream_headers.extend(
            extra
                .into_iter()
                .map(|(name, value)| (name.to_ascii_lowercase().into(), value.into())),
        );
        Handoff {
            encoded: identity.encode(),
            identity,
            upstream_headers,
        }
    }
}

/// Authenticates one request under `policy` at time `now`.
pub fn authenticate(
    sources: &TokenSources,
    policy: &JwtPolicy,
    now: UnixTime,
    verifier: &mut Verifier<'_>,
) -> Result<Accepted, Rejection> {
    let raw = match sources.only() {
        Ok(None) => return anonymous(policy),
        Ok(Some(one)) => one,
        Err(_) => return Err(Rejection::Multiple),
    };
    if raw.len() > policy.max_token_bytes {
        return Err(Rejection::Malformed(TokenError::TooLarge {
            len: raw.len(),
            max: policy.max_token_bytes,
        }));
    }
    let cache_key = verifier.cache.as_ref().map(|cache| cache.key(raw));
    let hit = match (cache_key, verifier.cache.as_deref()) {
        (Some(key), Some(cache)) => cache
            .get(key, raw)
            .map(|e| (Rc::clone(&e.token), Some(e.verified_by))),
        _ => None,
    };
    let (token, cached) = match hit {
        Some(hit) => hit,
        None => {
            let token = Token::parse(raw, policy.max_token_bytes).map_err(Rejection::Malformed)?;
            (Rc::new(token), None)
        }
    };
    let claims = token.claims();
    claims::check_times(token.times(), &policy.time, now)?;
    let signer = find_signer(&token, policy, verifier.remote_keys, verifier.source, now)?;
    if let Signer::Provider(provider, _) = &signer {
        claims::check_audience(claims, &provider.audiences)?;
    }
    claims::check_required(claims, &policy.required_claims)?;

    let keys: Vec<&PreparedKey> = match &signer {
        Signer::Consumer(credential) => vec![credential.prepared.as_ref()],
        Signer::Looked(found) => vec![found.credential.prepared.as_ref()],
        Signer::Provider(_, keys) => keys.iter().map(Arc::as_ref).collect(),
    };
    let mut cache_hit = false;
    let mut verified_by = None;
    for key in keys {
        let valid = match cached {
            Some(by) if by == key.fingerprint() => {
                cache_hit = true;
                true
            }
            _ => verifier
                .backend
                .verify(token.alg(), key, token.signing_input(), token.signature())
                .map_err(Rejection::Crypto)?,
        };
        if valid {
            verified_by = Some(key.fingerprint());
            break;
        }
    }
    let Some(verified_by) = verified_by else {
        return Err(Rejection::BadSignature);
    };
    // A looked-up consumer's token is checked against the admin's revocations on every
    // request, cache hits included.
    if let (Signer::Looked(found), Some(directory)) = (&signer, verifier.source) {
        let jti = claims.get_str("jti").flatten();
        let iat = token.times().iat.flatten();
        if directory.revoked(found, jti.as_deref(), iat, now.secs()) {
            return Err(Rejection::Revoked);
        }
    }
    // Only a verified token enters the cache: junk (unsigned, forged, expired) can never
    // evict the tokens of real clients.
    if !cache_hit {
        if let (Some(key), Some(cache)) = (cache_key, verifier.cache.as_deref_mut()) {
            cache.put(
                key,
                CachedToken {
                    token: Rc::clone(&token),
                    verified_by,
                },
            );
        }
    }
    Ok(accept(&token, policy, &signer, sources, cache_hit))
}

enum Signer<'p> {
    Consumer(&'p Credential),
    /// A credential of `consumer_source`.
    Looked(Arc<source::Found>),
    Provider(&'p Provider, Vec<Arc<PreparedKey>>),
}

impl Signer<'_> {
    fn credential(&self) -> Option<&Credential> {
        match self {
            Signer::Consumer(credential) => Some(credential),
            Signer::Looked(found) => Some(&found.credential),
            Signer::Provider(..) => None,
        }
    }
}

/// Member `name` of the claims, else of the header, when it is a string. A member that is
/// present but not a string hides the header's (as it always has).
fn string_member<'t>(token: &'t Token, name: &str) -> Option<Cow<'t, str>> {
    match token.claims().get_str(name) {
        Some(claim) => claim,
        None => token.header().get_str(name).flatten(),
    }
}

fn find_signer<'p>(
    token: &Token,
    policy: &'p JwtPolicy,
    remote: &KeyStore,
    source: Option<&source::Directory>,
    now: UnixTime,
) -> Result<Signer<'p>, Rejection> {
    let keyring = policy.keyring.as_ref();
    // Order: the key claim names a credential; else `iss` names a provider; else `kid`
    // names a credential; else the source is asked for the key claim (or, without one,
    // for `kid`). A token claiming a provider's issuer is that provider's; a static
    // credential shadows the source's with the same key.
    let key_value = string_member(token, &policy.key_claim_name);
    let provider = token
        .claims()
        .get_str("iss")
        .flatten()
        .and_then(|iss| keyring.provider_for_issuer(&iss));
    let credential = match (
        key_value.as_deref().and_then(|v| keyring.credential(v)),
        provider,
    ) {
        (Some(credential), _) => Some(credential),
        (None, None) => token.kid().and_then(|kid| keyring.credential(kid)),
        (None, Some(_)) => None,
    };
    let looked = match (credential, provider, source) {
        (None, None, Some(directory)) => match key_value.as_deref().or(token.kid()) {
            Some(key) => match directory.find(key, now.secs().saturating_mul(1000)) {
                source::Lookup::Found(found) => Some(found),
                source::Lookup::Missing => None,
                source::Lookup::NotCached => {
                    return Err(Rejection::NotCached {
                        key: key.to_owned(),
                    })
                }
                source::Lookup::Unavailable => return Err(Rejection::SourceUnavailable),
            },
            None => None,
        },
        _ => None,
    };
    let signer = match (credential, looked) {
        (Some(credential), _) => Some(Signer::Consumer(credential)),
        (None, Some(found)) => Some(Signer::Looked(found)),
        (None, None) => None,
    };
    if let Some(signer) = signer {
        let allowed = signer
            .credential()
            .is_some_and(|c| c.prepared.allows(token.alg()));
        if !allowed {
            return Err(Rejection::AlgorithmMismatch);
        }
        return Ok(signer);
    }
    let Some(provider) = provider else {
        let claim = policy.key_claim_name.clone();
        return Err(if key_value.is_none() && token.kid().is_none() {
            Rejection::MissingKeyClaim { claim }
        } else {
            Rejection::UnknownCredential { claim }
        });
    };
    let set = match &provider.keys {
        ProviderKeys::Inline(set) => set,
        ProviderKeys::Remote(_) => {
            remote
                .keys(&provider.name)
                .ok_or_else(|| Rejection::KeysUnavailable {
                    provider: provider.name.clone(),
                })?
        }
    };
    let keys: Vec<Arc<PreparedKey>> = set
        .candidates(token.kid(), token.alg())
        .map(|jwk| Arc::clone(&jwk.key))
        .collect();
    if keys.is_empty() {
        return Err(match token.kid() {
            Some(kid) if !set.has_kid(kid) => Rejection::UnknownKid {
                provider: provider.name.clone(),
                kid: kid.to_owned(),
            },
            _ => Rejection::AlgorithmMismatch,
        });
    }
    Ok(Signer::Provider(provider, keys))
}

fn anonymous(policy: &JwtPolicy) -> Result<Accepted, Rejection> {
    let handoff = policy.anonymous.clone().ok_or(Rejection::Missing)?;
    Ok(Accepted {
        handoff,
        dropped_claims: Vec::new(),
        token_locations: Vec::new(),
        cache_hit: false,
        looked_up: false,
    })
}

/// Where the token was found, when `policy` removes it from there (`hide_credentials`).
fn hidden_locations(policy: &JwtPolicy, sources: &TokenSources<'_>) -> Vec<TokenLocation> {
    match policy.hide_credentials {
        true => sources.locations(),
        false => Vec::new(),
    }
}

fn header_pairs(identity: &Identity) -> Vec<(Arc<str>, Arc<str>)> {
    identity
        .identity_headers()
        .into_iter()
        .map(|(name, value)| (name.into(), value.into()))
        .collect()
}

fn accept(
    token: &Token,
    policy: &JwtPolicy,
    signer: &Signer<'_>,
    sources: &TokenSources,
    cache_hit: bool,
) -> Accepted {
    if let Some(credential) = signer.credential() {
        if policy.claims_to_headers.is_empty()
            && policy.identity_claims.is_empty()
            && policy.forward_payload_header.is_none()
        {
            return Accepted {
                handoff: Arc::clone(&credential.handoff),
                dropped_claims: Vec::new(),
                token_locations: hidden_locations(policy, sources),
                cache_hit,
                looked_up: matches!(signer, Signer::Looked(_)),
            };
        }
    }
    let claims = token.claims();
    let mut identity = match signer {
        Signer::Consumer(credential) => credential.handoff.identity.clone(),
        Signer::Looked(found) => found.credential.handoff.identity.clone(),
        Signer::Provider(provider, _) => Identity {
            username: claims::header_value(claims, &provider.username_claim),
            credential: Some(provider.name.clone()),
            groups: provider_groups(claims, provider.groups_claim.as_deref()),
            ..Identity::default()
        },
    };
    let mut dropped_claims = Vec::new();
    let selected = policy
        .claims_to_headers
        .iter()
        .map(|(claim, _)| claim)
        .chain(&policy.identity_claims);
    for claim in selected {
        match claims::header_value(claims, claim) {
            Some(value) => {
                identity.claims.insert(claim.clone(), value);
            }
            None if claims.get(claim).is_some_and(|v| !v.is_null())
                && !dropped_claims.contains(claim) =>
            {
                dropped_claims.push(claim.clone());
            }
            None => {}
        }
    }
    let mut extra = Vec::new();
    for (claim, header) in &policy.claims_to_headers {
        if let Some(value) = identity.claims.get(claim) {
            extra.push((header.clone(), value.clone()));
        }
    }
    if let Some(header) = &policy.forward_payload_header {
        extra.push((header.clone(), token.payload_segment().to_owned()));
    }
    Accepted {
        handoff: Arc::new(Handoff::new(identity, extra)),
        dropped_claims,
        token_locations: hidden_locations(policy, sources),
        cache_hit,
        looked_up: matches!(signer, Signer::Looked(_)),
    }
}

fn provider_groups(claims: &JsonObject, claim: Option<&str>) -> Vec<String> {
    let safe = |g: &&str| crate::identity::header_safe(g) && !g.contains(',') && !g.is_empty();
    match claim.and_then(|c| claims.get(c)) {
        Some(Value::String(group)) => [group.as_str()]
            .into_iter()
            .filter(safe)
            .map(str::to_owned)
            .collect(),
        Some(Value::Array(groups)) => groups
            .iter()
            .filter_map(Value::as_str)
            .filter(safe)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}
