//! The compiled configuration: the global policy, each route's, and which apply to a
//! request. Built once in `on_configure` (see `config.rs`); read-only afterwards.

use std::collections::HashMap;

use super::counter::Algorithm;
use super::key::{ClientIpRule, LimitBy};
use super::slot::hash;
use super::window::Period;

/// One set of limits counted under one key per request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `global` or `routes.<name>`: in log lines, and part of every counter's identity.
    pub name: String,
    /// Position among the set's policies; names the policy's overflow slots.
    pub index: u32,
    /// The limits, shortest window first, never decreasing.
    pub limits: Vec<(Period, u64)>,
    pub limit_by: LimitBy,
    pub algorithm: Algorithm,
    /// Which address is the client's, and how much of it is its key.
    pub client_ip: ClientIpRule,
    /// Hash of the name, the periods and the algorithm: what a slot's layout depends on.
    /// Changing a limit's value keeps the counts; changing which windows are counted (or the
    /// algorithm) starts them over.
    pub fingerprint: u64,
}

impl Policy {
    pub fn new(
        name: String,
        index: u32,
        limits: Vec<(Period, u64)>,
        limit_by: LimitBy,
        algorithm: Algorithm,
        client_ip: ClientIpRule,
    ) -> Policy {
        let shape: Vec<u8> = limits
            .iter()
            .map(|(p, _)| p.code())
            .chain([algorithm.code()])
            .collect();
        let fingerprint = hash(&[name.as_bytes(), &shape]);
        Policy {
            name,
            index,
            limits,
            limit_by,
            algorithm,
            client_ip,
            fingerprint,
        }
    }
}

/// What a refused request gets, and how faults and headers are handled; per route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseSettings {
    /// Status of a limited request (Kong's `error_code`).
    pub error_code: u16,
    /// `{"message": error_message}`, serialised once.
    pub error_body: String,
    pub hide_client_headers: bool,
    pub fault_tolerant: bool,
}

/// A route's own policy and the response settings its requests get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePolicies {
    pub policy: Policy,
    pub response: ResponseSettings,
    /// The global policy does not apply on this route (`override_global`).
    pub replaces_global: bool,
}

/// Where the service is and how long to wait for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSettings {
    /// The Envoy cluster (HTTP/2) of the rate limit service.
    pub cluster: String,
    /// The descriptors' domain: deployments sharing a service and a domain share counters.
    pub domain: String,
    /// Milliseconds before the call counts as failed.
    pub timeout_ms: u64,
}

/// The whole configuration, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitPolicySet {
    global: Option<Policy>,
    routes: HashMap<String, RoutePolicies>,
    default_response: ResponseSettings,
    slots: u32,
    service: Option<ServiceSettings>,
    /// Whether the glue publishes a decision record per request (`decision_records`).
    decision_records: bool,
}

/// The policies that apply to one request, global first, and its response settings.
#[derive(Clone, Debug)]
pub struct Selection<'a> {
    pub policies: Vec<&'a Policy>,
    pub response: &'a ResponseSettings,
}

impl RateLimitPolicySet {
    pub(crate) fn new(
        global: Option<Policy>,
        routes: HashMap<String, RoutePolicies>,
        default_response: ResponseSettings,
        slots: u32,
        service: Option<ServiceSettings>,
        decision_records: bool,
    ) -> RateLimitPolicySet {
        RateLimitPolicySet {
            global,
            routes,
            default_response,
            slots,
            service,
            decision_records,
        }
    }

    /// Whether a decision record is published for each request (`decision_records`,
    /// default true).
    pub fn decision_records(&self) -> bool {
        self.decision_records
    }

    /// The rate limit service to count in (`policy: redis`), or `None`: shared data.
    pub fn service(&self) -> Option<&ServiceSettings> {
        self.service.as_ref()
    }

    /// The global policy (if it has limits) and the route's (if it has an entry): both count
    /// and both must admit, unless the route's entry overrides the global one. A request
    /// without a route name gets the global one only.
    pub fn select(&self, route: Option<&str>) -> Selection<'_> {
        let entry = route.and_then(|r| self.routes.get(r));
        let mut policies = Vec::with_capacity(2);
        if !entry.is_some_and(|e| e.replaces_global) {
            policies.extend(self.global.as_ref());
        }
        policies.extend(entry.map(|e| &e.policy));
        Selection {
            policies,
            response: entry.map_or(&self.default_response, |e| &e.response),
        }
    }

    /// Whether a decision can depend on the Envoy route name: a policy per route, or one
    /// limited by route. When not, the glue need not ask the host for it (each value a host
    /// call returns costs a re-entry into the VM).
    pub fn needs_route_name(&self) -> bool {
        !self.routes.is_empty()
            || self
                .global
                .as_ref()
                .is_some_and(|p| p.limit_by == super::key::LimitBy::Route)
    }

    /// Every policy, global first (the order of their `index`).
    pub fn policies(&self) -> Vec<&Policy> {
        let mut all: Vec<&Policy> = self.global.iter().collect();
        all.extend(self.routes.values().map(|r| &r.policy));
        all.sort_by_key(|p| p.index);
        all
    }

    /// The counter table's size in slots.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// The most windows any policy counts (what a slot may grow to).
    pub fn max_windows(&self) -> usize {
        self.policies()
            .iter()
            .map(|p| p.limits.len())
            .max()
            .unwrap_or(0)
    }
}
