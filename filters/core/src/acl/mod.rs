//! The acl filter's whole policy (Kong's acl plugin): which consumer groups may use a route,
//! and with which methods.
//!
//! Groups come only from the [`Identity`] the jwt filter handed over through filter state
//! (the consumer's configured groups and/or one of its claims), never from a request header:
//! a client's own `X-Consumer-Groups` counts for nothing and never reaches the upstream.
//! Group names match exactly and case-sensitively (`admins` is not `Admins`). Methods match
//! whatever the case the client sends (`delete` is `DELETE`: HTTP/2 passes a method through
//! as sent and many upstreams upper-case it), and on a route whose rules name methods a
//! request carrying a method-override header ([`METHOD_OVERRIDE_HEADERS`]) is judged under
//! `:method` and every method it names, passing only if each would pass (or is refused
//! outright with `refuse_method_override`): an upstream that honours the header cannot be
//! made to run a method the rules refuse.
//!
//! The glue compiles an [`AclPolicySet`] once from configuration ([`config`]), then per
//! request picks the route's [`RouteAcl`] and asks [`AclPolicySet::decide`] for a
//! [`Decision`], which says everything the glue shows: status, body, metric label, log reason.

pub mod config;

use std::collections::{HashMap, HashSet};

use crate::identity::{header_safe, Identity};

pub use config::RawAclConfig;

/// The compiled configuration: the default route policy and per-route ones, picked by Envoy
/// route name (`xds.route_name`), and where a consumer's groups come from.
#[derive(Clone, Debug)]
pub struct AclPolicySet {
    default: RouteAcl,
    /// The configured routes, in name order; route index `i + 1` in [`AclPolicySet::route`].
    routes: Vec<RouteAcl>,
    /// Route name → position in `routes`.
    by_name: HashMap<String, usize>,
    groups: GroupSource,
    /// Whether the glue publishes a decision record per request (`decision_records`).
    decision_records: bool,
}

/// One route's policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteAcl {
    /// The Envoy route name; `None` for the default policy.
    name: Option<String>,
    access: Access,
    hide_groups_header: bool,
    refuse_method_override: bool,
}

pub use crate::header_map::METHOD_OVERRIDE_HEADERS;

/// Most methods a request's override headers may name: more is refused as
/// [`DenyReason::MethodOverride`], so a header of thousands of `GET,GET,…` cannot cost
/// thousands of rule checks.
pub const MAX_OVERRIDE_METHODS: usize = 8;

/// What acl reads of a request's method, on routes whose rules name methods.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestMethod<'a> {
    /// `:method`, as sent.
    pub method: &'a str,
    /// The value of each method-override header the request carries, each copy.
    pub overrides: Vec<&'a str>,
}

impl<'a> RequestMethod<'a> {
    /// Only `:method`, no override.
    pub fn plain(method: &'a str) -> RequestMethod<'a> {
        RequestMethod {
            method,
            overrides: Vec::new(),
        }
    }

    /// Reads `:method` and the override headers from the request's headers (names in lower
    /// case, as Envoy gives them).
    pub fn from_headers(headers: impl Iterator<Item = (&'a str, &'a str)>) -> RequestMethod<'a> {
        let mut out = RequestMethod::default();
        for (name, value) in headers {
            if name == ":method" {
                out.method = value;
            } else if crate::header_map::is_method_override(name) {
                out.overrides.push(value);
            }
        }
        out
    }

    /// Every method the request may be taken for: `:method`, then each one an override
    /// header names (a value listing several, comma-separated, names each).
    fn judged(&self) -> impl Iterator<Item = &'a str> + '_ {
        std::iter::once(self.method).chain(
            self.overrides
                .iter()
                .flat_map(|v| v.split(','))
                .map(str::trim),
        )
    }
}

/// Who may pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Everyone, identity or not: acl does not judge this route.
    Public,
    /// Any request with an identity (an anonymous consumer included), whatever its groups.
    AnyConsumer,
    /// Requests where some rule matches one of the consumer's groups (and the method).
    Allow(Vec<Rule>),
    /// Requests where no rule matches any of the consumer's groups (with the method).
    Deny(Vec<Rule>),
}

/// One entry of `allow` or `deny`: a group, optionally only for some methods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) group: String,
    /// `None`: every method.
    pub(crate) methods: Option<Vec<String>>,
}

impl Rule {
    fn matches(&self, groups: &[&str], method: &str) -> bool {
        groups.contains(&self.group.as_str())
            && self
                .methods
                .as_ref()
                .is_none_or(|methods| methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
    }
}

/// Where a consumer's groups come from; both only ever from the [`Identity`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GroupSource {
    /// The consumer's configured groups (`Identity::groups`).
    pub(crate) consumer_groups: bool,
    /// A claim the jwt filter copied into `Identity::claims` (a string, or a list it joined
    /// with `, `).
    pub(crate) claim: Option<String>,
}

/// The answer for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Let it through. `groups_header` is the upstream's `X-Consumer-Groups` (the groups
    /// joined with `, `, Kong's format); `None` means the upstream gets no such header.
    Allow { groups_header: Option<String> },
    /// 403: an identity whose groups this route refuses.
    Deny { reason: DenyReason },
    /// 401: no identity (jwt did not run on this route, or what it left does not decode).
    Unauthenticated,
}

/// Why an identity was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// `allow`: no rule names one of the consumer's groups for this method. `groups` is what
    /// the consumer has, joined with `, ` (for the log).
    NotInAllow { groups: String },
    /// `deny`: a rule names this group of the consumer's (for this method).
    InDeny { group: String },
    /// `refuse_method_override`: the request carries a method-override header on a route
    /// whose rules name methods.
    MethodOverride,
}

/// Up to this many groups, duplicates are found by a linear scan.
const SCAN_LIMIT: usize = 16;

const UNAUTHORIZED: &str = r#"{"message":"Unauthorized"}"#;
const FORBIDDEN: &str = r#"{"message":"You cannot consume this service"}"#;

impl Decision {
    /// The HTTP status: 401 or 403 for a refusal (Kong's); 200 for `Allow`, where the
    /// upstream answers instead.
    pub fn status(&self) -> u16 {
        match self {
            Decision::Allow { .. } => 200,
            Decision::Deny { .. } => 403,
            Decision::Unauthenticated => 401,
        }
    }

    /// Kong's JSON body for a refusal; empty for `Allow`.
    pub fn body(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "",
            Decision::Deny { .. } => FORBIDDEN,
            Decision::Unauthenticated => UNAUTHORIZED,
        }
    }

    /// The label of this outcome in metric names.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allowed",
            Decision::Deny {
                reason: DenyReason::NotInAllow { .. },
            } => "not_in_allow",
            Decision::Deny {
                reason: DenyReason::InDeny { .. },
            } => "in_deny",
            Decision::Deny {
                reason: DenyReason::MethodOverride,
            } => "method_override",
            Decision::Unauthenticated => "unauthenticated",
        }
    }

    /// Why, for the log line.
    pub fn log_reason(&self) -> String {
        match self {
            Decision::Allow { .. } => "allowed".to_owned(),
            Decision::Deny {
                reason: DenyReason::NotInAllow { groups },
            } => format!("no allow rule for this method matches groups [{groups}]"),
            Decision::Deny {
                reason: DenyReason::InDeny { group },
            } => format!("group {group:?} is denied"),
            Decision::Deny {
                reason: DenyReason::MethodOverride,
            } => "a method-override header on a route with method rules".to_owned(),
            Decision::Unauthenticated => "no authenticated identity".to_owned(),
        }
    }
}

impl AclPolicySet {
    /// Reads and compiles the JSON configuration in one step.
    pub fn from_json(bytes: &[u8]) -> Result<AclPolicySet, crate::config::ConfigError> {
        AclPolicySet::try_from(RawAclConfig::from_json(bytes)?)
    }

    /// The policy for a route and its index in [`routes`](Self::routes): the default
    /// (index 0) when the route is unnamed or not configured.
    pub fn route(&self, name: Option<&str>) -> (usize, &RouteAcl) {
        name.and_then(|name| self.by_name.get(name))
            .and_then(|&i| Some((i + 1, self.routes.get(i)?)))
            .unwrap_or((0, &self.default))
    }

    /// Whether a decision record is published for each request (`decision_records`,
    /// default true).
    pub fn decision_records(&self) -> bool {
        self.decision_records
    }

    /// Whether a decision can depend on the Envoy route name (any policy per route). When
    /// not, the glue need not ask the host for it.
    pub fn needs_route_name(&self) -> bool {
        !self.routes.is_empty()
    }

    /// Every policy, the default first: the index [`route`](Self::route) gives is the
    /// position in this sequence.
    pub fn routes(&self) -> impl Iterator<Item = &RouteAcl> {
        std::iter::once(&self.default).chain(&self.routes)
    }

    /// Judges one request on `route` with its method (read only when the route's rules name
    /// methods: [`RouteAcl::uses_methods`]) and the identity the jwt filter left, if any.
    pub fn decide(
        &self,
        route: &RouteAcl,
        method: &RequestMethod,
        identity: Option<&Identity>,
    ) -> Decision {
        let Some(identity) = identity else {
            return match route.access {
                Access::Public => Decision::Allow {
                    groups_header: None,
                },
                _ => Decision::Unauthenticated,
            };
        };
        let groups = self.groups(identity);
        let overridden = !method.overrides.is_empty() && route.uses_methods();
        let too_many = || method.judged().nth(MAX_OVERRIDE_METHODS + 1).is_some();
        let refusal = match &route.access {
            Access::Public | Access::AnyConsumer => None,
            _ if overridden && (route.refuse_method_override || too_many()) => {
                Some(DenyReason::MethodOverride)
            }
            // Every method the request may be taken for must be allowed.
            Access::Allow(rules) => method
                .judged()
                .any(|m| !rules.iter().any(|r| r.matches(&groups, m)))
                .then(|| DenyReason::NotInAllow {
                    groups: groups.join(", "),
                }),
            Access::Deny(rules) => method.judged().find_map(|m| {
                rules
                    .iter()
                    .find(|r| r.matches(&groups, m))
                    .map(|r| DenyReason::InDeny {
                        group: r.group.clone(),
                    })
            }),
        };
        match refusal {
            Some(reason) => Decision::Deny { reason },
            None => Decision::Allow {
                groups_header: (!route.hide_groups_header && !groups.is_empty())
                    .then(|| groups.join(", ")),
            },
        }
    }

    /// The consumer's groups, from the identity only: its configured groups, then the groups
    /// claim's, each once, in that order. A group that could not travel in a header (control
    /// characters, a comma) is left out: it can match no rule, since rules refuse those too.
    pub fn groups<'a>(&self, identity: &'a Identity) -> Vec<&'a str> {
        let consumer = identity
            .groups
            .iter()
            .filter(|_| self.groups.consumer_groups)
            .map(String::as_str);
        let claimed = self
            .groups
            .claim
            .as_ref()
            .and_then(|claim| identity.claims.get(claim))
            .into_iter()
            .flat_map(|value| value.split(',').map(str::trim));
        let mut out: Vec<&str> = Vec::new();
        // Few groups: a linear scan is cheapest. Many: a set, so a long list cannot cost
        // quadratic time.
        let mut seen: Option<HashSet<&str>> = None;
        for group in consumer.chain(claimed) {
            if group.is_empty() || !header_safe(group) || group.contains(',') {
                continue;
            }
            let repeated = match &mut seen {
                Some(set) => !set.insert(group),
                None if out.len() < SCAN_LIMIT => out.contains(&group),
                None => {
                    let set = seen.insert(out.iter().copied().collect());
                    !set.insert(group)
                }
            };
            if !repeated {
                out.push(group);
            }
        }
        out
    }
}

impl RouteAcl {
    /// The Envoy route name; `None` for the default policy.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether a rule of this route is limited to some methods: only then does
    /// [`AclPolicySet::decide`] look at the method, so the glue may pass `""` otherwise.
    pub fn uses_methods(&self) -> bool {
        match &self.access {
            Access::Allow(rules) | Access::Deny(rules) => rules.iter().any(|r| r.methods.is_some()),
            Access::Public | Access::AnyConsumer => false,
        }
    }
}

#[cfg(test)]
mod tests;
