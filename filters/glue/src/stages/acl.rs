//! The acl stage: the proxy-wasm glue around `portcullis_core::acl`. It compiles the
//! configuration, then per request reads the route, the method and the identity the jwt
//! stage handed on (in memory, or from filter state in a separate filter), asks the policy,
//! and acts on the [`Decision`].

use proxy_wasm::types::LogLevel;

use crate::chain::{Stage, Step};
use crate::exchange::Exchange;
use crate::host::{self, log, Counter};
use portcullis_core::acl::{AclPolicySet, Decision, DenyReason, RequestMethod, RouteAcl};
use portcullis_core::decision::{Filter, Outcome, Record};
use portcullis_core::identity::{headers, Identity};
use portcullis_core::log_value;

/// Counters for one route (or for the default policy).
#[derive(Clone, Copy)]
struct RouteCounters {
    allowed: Counter,
    denied: Counter,
}

/// Every counter, defined once at configure time.
struct Metrics {
    allowed: Counter,
    /// Every refusal, 401 and 403.
    denied: Counter,
    unauthenticated: Counter,
    not_in_allow: Counter,
    in_deny: Counter,
    method_override: Counter,
    /// Indexed like `AclPolicySet::routes`: the default first.
    routes: Vec<RouteCounters>,
}

impl Metrics {
    fn define(policy: &AclPolicySet) -> Metrics {
        let routes = policy
            .routes()
            .map(|route| {
                let prefix = match route.name() {
                    None => "portcullis_acl_default".to_owned(),
                    Some(name) => format!("portcullis_acl_route_{}", metric_safe(name)),
                };
                RouteCounters {
                    allowed: Counter::define(&format!("{prefix}_allowed_total")),
                    denied: Counter::define(&format!("{prefix}_denied_total")),
                }
            })
            .collect();
        Metrics {
            allowed: Counter::define("portcullis_acl_allowed_total"),
            denied: Counter::define("portcullis_acl_denied_total"),
            unauthenticated: Counter::define("portcullis_acl_denied_unauthenticated_total"),
            not_in_allow: Counter::define("portcullis_acl_denied_not_in_allow_total"),
            in_deny: Counter::define("portcullis_acl_denied_in_deny_total"),
            method_override: Counter::define("portcullis_acl_denied_method_override_total"),
            routes,
        }
    }

    fn count(&self, route: usize, decision: &Decision) {
        let per_route = self.routes.get(route).copied();
        let (total, route_counter, reason) = match decision {
            Decision::Allow { .. } => (self.allowed, per_route.map(|r| r.allowed), None),
            Decision::Unauthenticated => (
                self.denied,
                per_route.map(|r| r.denied),
                Some(self.unauthenticated),
            ),
            Decision::Deny { reason } => (
                self.denied,
                per_route.map(|r| r.denied),
                Some(match reason {
                    DenyReason::NotInAllow { .. } => self.not_in_allow,
                    DenyReason::InDeny { .. } => self.in_deny,
                    DenyReason::MethodOverride => self.method_override,
                }),
            ),
        };
        total.inc();
        route_counter
            .into_iter()
            .chain(reason)
            .for_each(Counter::inc);
    }
}

/// A route name as it may appear inside a metric name: letters, digits, `_` and `-` kept,
/// anything else (dots would split Envoy's stat hierarchy) replaced by `_`.
fn metric_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The acl stage of one worker.
pub struct Acl {
    policy: AclPolicySet,
    metrics: Metrics,
}

impl Acl {
    /// Publishes this stage's decision record, unless `decision_records` is off.
    fn record(&self, record: &Record<'_>) {
        if self.policy.decision_records() {
            host::publish_decision(record);
        }
    }

    /// The separate filter's configuration: required.
    pub fn configure(bytes: Option<Vec<u8>>) -> Option<Acl> {
        let Some(bytes) = bytes else {
            log(
                LogLevel::Error,
                "portcullis-acl: configuration refused: none given; set `allow` or `deny` \
                 (or `any_consumer` / `public`)",
            );
            return None;
        };
        match AclPolicySet::from_json(&bytes) {
            Ok(policy) => Some(Acl::new(policy)),
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("portcullis-acl: configuration refused: {e}"),
                );
                None
            }
        }
    }

    pub fn new(policy: AclPolicySet) -> Acl {
        let metrics = Metrics::define(&policy);
        Acl { policy, metrics }
    }
}

impl Stage for Acl {
    type Request = ();

    fn request(&self, x: &mut Exchange, _r: &mut ()) -> Step {
        // Each value a host call returns costs a re-entry into the VM: the route name and the
        // method are read only when a rule can depend on them.
        let needs_route_name = self.policy.needs_route_name();
        let route_name = x.route(needs_route_name).map(str::to_owned);
        let (index, route) = self.policy.route(route_name.as_deref());
        let identity = match x.identity() {
            Ok(identity) => identity,
            Err(e) => {
                // Fail closed: what jwt left cannot be read, so nobody is authenticated.
                log(LogLevel::Warn, &format!("portcullis-acl: {e}"));
                None
            }
        };
        // Rules that name methods need `:method` and any method-override header: the header
        // map in one host call. A map the host cannot give leaves nothing to judge: refuse.
        let read = route.uses_methods().then(|| x.headers());
        let (decision, method) = match &read {
            Some(Err(e)) => {
                log(LogLevel::Error, &format!("portcullis-acl: {e}"));
                self.record(
                    &Record::new(Filter::Acl, Outcome::Failed)
                        .reason("headers_unreadable")
                        .status(500)
                        .route(route_name.as_deref()),
                );
                x.set_header(headers::CONSUMER_GROUPS, None);
                host::respond_json(500, portcullis_core::UNEXPECTED_ERROR_BODY, &[]);
                return Step::Answered;
            }
            Some(Ok(headers)) => {
                let method = RequestMethod::from_headers(headers.iter().copied());
                let decision = self.policy.decide(route, &method, identity.as_deref());
                (decision, Some(method.method.to_owned()))
            }
            None => {
                let method = RequestMethod::default();
                (
                    self.policy.decide(route, &method, identity.as_deref()),
                    None,
                )
            }
        };
        self.metrics.count(index, &decision);
        if let Decision::Allow { groups_header } = &decision {
            // Replaces (or removes) whatever arrived: a client's own copy never passes.
            x.set_header(headers::CONSUMER_GROUPS, groups_header.as_deref());
            self.record(
                &Record::new(Filter::Acl, Outcome::Accepted)
                    .identity(identity.as_deref())
                    .route(route_name.as_deref()),
            );
            return Step::Next;
        }
        x.set_header(headers::CONSUMER_GROUPS, None);
        // The refusal's log line names both, read now if the decision did not need them.
        let route_name = route_name.or_else(|| x.route(true).map(str::to_owned));
        let method = method.unwrap_or_else(|| x.header(":method").unwrap_or_default());
        self.record(
            &Record::new(Filter::Acl, Outcome::Denied)
                .reason(decision.metric_label())
                .status(decision.status())
                .identity(identity.as_deref())
                .route(route_name.as_deref()),
        );
        log_refusal(
            &decision,
            identity.as_deref(),
            route_name.as_deref(),
            route,
            &method,
        );
        host::respond_json(u32::from(decision.status()), decision.body(), &[]);
        Step::Answered
    }
}

/// One line per refusal: who, where, and why.
fn log_refusal(
    decision: &Decision,
    identity: Option<&Identity>,
    route_name: Option<&str>,
    policy: &RouteAcl,
    method: &str,
) {
    // A username may come from a token's claim: escaped and cut short in the log.
    let consumer = identity
        .and_then(|i| i.username.as_deref().or(i.consumer_id.as_deref()))
        .map_or_else(|| "\"-\"".to_owned(), log_value::quote);
    let judged_by = if policy.name().is_some() {
        ""
    } else {
        " (default policy)"
    };
    log(
        LogLevel::Info,
        &format!(
            "portcullis-acl: {} consumer={consumer} route={:?}{judged_by} method={method:?} \
             reason={}: {}",
            decision.status(),
            route_name.unwrap_or("-"),
            decision.metric_label(),
            decision.log_reason()
        ),
    );
}
