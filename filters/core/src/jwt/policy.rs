//! The compiled, immutable jwt policy: per route, how tokens are found and checked, over
//! the [`Keyring`] every route shares. Built once from configuration by `compile`.

use std::collections::HashMap;
use std::sync::Arc;

use super::claims::TimeRules;
use super::keyring::{Keyring, ProviderKeys, RemoteJwks};
use super::rejection::Rejection;
use super::source::ConsumerSource;
use super::sources::TokenLocations;
use crate::identity::{self, Identity};
use crate::jose::CryptoChoice;

/// How one route treats requests.
#[derive(Clone, Debug)]
pub enum RoutePolicy {
    /// No authentication on this route.
    Public,
    /// Authenticate with this policy.
    Protected(Arc<JwtPolicy>),
}

/// The whole compiled configuration: a default policy and per-route overrides, picked by
/// Envoy route name (`xds.route_name`).
#[derive(Clone, Debug)]
pub struct JwtPolicySet {
    pub(crate) default: RoutePolicy,
    pub(crate) routes: HashMap<String, RoutePolicy>,
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) strip_headers: Vec<String>,
    pub(crate) token_cache_size: usize,
    pub(crate) crypto: CryptoChoice,
    pub(crate) consumer_source: Option<ConsumerSource>,
    /// Whether the glue publishes a decision record per request (`decision_records`).
    pub(crate) decision_records: bool,
}

impl JwtPolicySet {
    /// The policy for a route; the default when the route is unnamed or not configured.
    pub fn for_route(&self, route_name: Option<&str>) -> &RoutePolicy {
        route_name
            .and_then(|name| self.routes.get(name))
            .unwrap_or(&self.default)
    }

    /// Where consumers are looked up at runtime, if anywhere.
    pub fn consumer_source(&self) -> Option<&ConsumerSource> {
        self.consumer_source.as_ref()
    }

    /// Whether the policy can depend on the Envoy route name (any policy per route). When
    /// not, the glue need not ask the host for it.
    pub fn needs_route_name(&self) -> bool {
        !self.routes.is_empty()
    }

    /// Every request header to remove from client requests before anything else, on every
    /// route: Kong's identity headers and every configured claim or payload header.
    pub fn headers_to_strip(&self) -> &[String] {
        &self.strip_headers
    }

    /// Which of [`headers_to_strip`](Self::headers_to_strip) a request sent, given its
    /// header names (compared without regard to ASCII case): each once, however often and
    /// in whatever letter case it came, in the configured spelling.
    pub fn forged_headers<'r>(&self, names: impl IntoIterator<Item = &'r str>) -> Vec<&str> {
        let mut forged: Vec<&str> = Vec::new();
        for name in names {
            if let Some(strip) = self
                .strip_headers
                .iter()
                .find(|s| s.eq_ignore_ascii_case(name))
            {
                if !forged.contains(&strip.as_str()) {
                    forged.push(strip);
                }
            }
        }
        forged
    }

    /// Remote key sets the glue must fetch and keep fresh.
    pub fn remote_jwks(&self) -> impl Iterator<Item = &RemoteJwks> {
        self.keyring.providers.iter().filter_map(|p| match &p.keys {
            ProviderKeys::Remote(remote) => Some(remote),
            ProviderKeys::Inline(_) => None,
        })
    }

    /// The keys every route shares.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Whether a decision record is published for each request (`decision_records`,
    /// default true).
    pub fn decision_records(&self) -> bool {
        self.decision_records
    }

    /// Entries of the per-worker verified-token cache; 0 means no cache.
    pub fn token_cache_size(&self) -> usize {
        self.token_cache_size
    }

    /// Where signatures are checked.
    pub fn crypto(&self) -> CryptoChoice {
        self.crypto
    }
}

/// One route's compiled jwt policy.
#[derive(Clone, Debug)]
pub struct JwtPolicy {
    pub(crate) locations: TokenLocations,
    pub(crate) key_claim_name: String,
    pub(crate) time: TimeRules,
    pub(crate) required_claims: Vec<String>,
    pub(crate) claims_to_headers: Vec<(String, String)>,
    pub(crate) identity_claims: Vec<String>,
    pub(crate) forward_payload_header: Option<String>,
    pub(crate) hide_credentials: bool,
    pub(crate) anonymous: Option<Arc<super::Handoff>>,
    pub(crate) run_on_preflight: bool,
    pub(crate) max_token_bytes: usize,
    pub(crate) plain_unauthorized_body: bool,
    pub(crate) failure_delay_ms: u64,
    pub(crate) realm: String,
    pub(crate) keyring: Arc<Keyring>,
}

/// Everything the glue needs to send a refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// JSON body; send with `content-type: application/json`.
    pub body: String,
    pub www_authenticate: String,
    /// Wait this long before answering (0: answer at once).
    pub delay_ms: u64,
}

impl JwtPolicy {
    /// Where to look for tokens.
    pub fn locations(&self) -> &TokenLocations {
        &self.locations
    }

    /// Whether this request passes without authentication as a CORS preflight
    /// (`run_on_preflight: false` and method `OPTIONS`).
    pub fn skips_preflight(&self, method: &str) -> bool {
        !self.run_on_preflight && method == "OPTIONS"
    }

    /// Remove the token from the upstream request (`hide_credentials`).
    pub fn hide_credentials(&self) -> bool {
        self.hide_credentials
    }

    /// The response for a rejection under this policy.
    pub fn refusal(&self, rejection: &Rejection) -> Refusal {
        Refusal {
            status: rejection.status(),
            body: rejection.body(self.plain_unauthorized_body),
            www_authenticate: rejection.www_authenticate(&self.realm),
            delay_ms: self.failure_delay_ms,
        }
    }

    /// Largest token accepted, in bytes.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// The claim (or header member) that names a consumer credential.
    pub fn key_claim_name(&self) -> &str {
        &self.key_claim_name
    }

    /// The anonymous identity used when no token is presented, if configured.
    pub fn anonymous(&self) -> Option<&Identity> {
        self.anonymous.as_deref().map(|h| &h.identity)
    }

    pub(crate) fn header_names_set(&self) -> impl Iterator<Item = &str> {
        identity::headers::ALL.into_iter().chain(
            self.claims_to_headers
                .iter()
                .map(|(_, header)| header.as_str())
                .chain(self.forward_payload_header.as_deref()),
        )
    }
}
