//! Portcullis acl filter: the proxy-wasm glue around `portcullis_core::acl`. The root context
//! compiles the configuration; the HTTP context reads the route, the method and the identity
//! the jwt filter left in filter state, asks the policy, and acts on the [`Decision`].

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use portcullis_core::acl::{AclPolicySet, Decision, DenyReason, RequestMethod, RouteAcl};
use portcullis_core::decision::{Filter, Outcome, Record};
use portcullis_core::identity::{headers, Identity};
use portcullis_core::log_value;
use portcullis_glue::host::{self, log, Counter};

proxy_wasm::main! {{
    portcullis_glue::start("acl");
    proxy_wasm::set_root_context(|_| Box::new(AclRoot::default()));
}}

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

/// What every HTTP context of one worker shares with the root context.
struct Worker {
    policy: AclPolicySet,
    metrics: Metrics,
}

#[derive(Default)]
struct AclRoot {
    worker: Option<Rc<Worker>>,
}

impl Context for AclRoot {}

impl RootContext for AclRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = portcullis_glue::plugin_configuration() else {
            log(
                LogLevel::Error,
                "portcullis-acl: configuration refused: none given; set `allow` or `deny` \
                 (or `any_consumer` / `public`)",
            );
            return false;
        };
        match AclPolicySet::from_json(&bytes) {
            Ok(policy) => {
                let metrics = Metrics::define(&policy);
                self.worker = Some(Rc::new(Worker { policy, metrics }));
                true
            }
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("portcullis-acl: configuration refused: {e}"),
                );
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = self.worker.clone()?;
        Some(Box::new(AclFilter { worker }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct AclFilter {
    worker: Rc<Worker>,
}

impl Context for AclFilter {}

impl HttpContext for AclFilter {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let worker = Rc::clone(&self.worker);
        // Each value a host call returns costs a re-entry into the VM: the route name and the
        // method are read only when a rule can depend on them.
        let needs_route_name = worker.policy.needs_route_name();
        let route_name = host::route_name_if(needs_route_name);
        let (index, route) = worker.policy.route(route_name.as_deref());
        // Rules that name methods need `:method` and any method-override header: the header
        // map in one host call. A map the host cannot give leaves nothing to judge: refuse.
        let headers = if route.uses_methods() {
            match host::request_header_map() {
                Ok(headers) => Some(headers),
                Err(e) => {
                    log(LogLevel::Error, &format!("portcullis-acl: {e}"));
                    host::publish_decision(
                        &Record::new(Filter::Acl, Outcome::Failed)
                            .reason("headers_unreadable")
                            .status(500)
                            .route(route_name.as_deref()),
                    );
                    host::set_request_header(headers::CONSUMER_GROUPS, None);
                    host::respond_json(500, portcullis_core::UNEXPECTED_ERROR_BODY, &[]);
                    return Action::Pause;
                }
            }
        } else {
            None
        };
        let method = headers
            .as_ref()
            .map(|h| RequestMethod::from_headers(h.iter()))
            .unwrap_or_default();
        let identity = match host::received_identity() {
            Ok(identity) => identity,
            Err(e) => {
                // Fail closed: what jwt left cannot be read, so nobody is authenticated.
                log(LogLevel::Warn, &format!("portcullis-acl: {e}"));
                None
            }
        };
        let decision = worker.policy.decide(route, &method, identity.as_ref());
        worker.metrics.count(index, &decision);
        if let Decision::Allow { groups_header } = &decision {
            // Replaces (or removes) whatever arrived: a client's own copy never passes.
            host::set_request_header(headers::CONSUMER_GROUPS, groups_header.as_deref());
            host::publish_decision(
                &Record::new(Filter::Acl, Outcome::Accepted)
                    .identity(identity.as_ref())
                    .route(route_name.as_deref()),
            );
            return Action::Continue;
        }
        host::set_request_header(headers::CONSUMER_GROUPS, None);
        // The refusal's log line names both, read now if the decision did not need them.
        let route_name = route_name.or_else(|| host::route_name_if(!needs_route_name));
        let method = if route.uses_methods() {
            method.method.to_owned()
        } else {
            host::request_header(":method").unwrap_or_default()
        };
        host::publish_decision(
            &Record::new(Filter::Acl, Outcome::Denied)
                .reason(decision.metric_label())
                .status(decision.status())
                .identity(identity.as_ref())
                .route(route_name.as_deref()),
        );
        log_refusal(
            &decision,
            identity.as_ref(),
            route_name.as_deref(),
            route,
            &method,
        );
        host::respond_json(u32::from(decision.status()), decision.body(), &[]);
        Action::Pause
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
