//! The rate-limiting filter's configuration as written (Kong's field names) and its
//! compilation into a [`RateLimitPolicySet`]; every refusal names the JSON path it is about.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::counter::Algorithm;
use super::key::{ClientIpRule, LimitBy, DEFAULT_IPV6_PREFIX_LENGTH};
use super::policy::{Policy, RateLimitPolicySet, ResponseSettings, RoutePolicies, ServiceSettings};
use super::table::{DEFAULT_SLOTS, MAX_SLOTS, MIN_SLOTS};
use super::window::Period;
use crate::config::{self, err, ConfigError};

/// Kong's default `error_message`.
pub const DEFAULT_MESSAGE: &str = "API rate limit exceeded";
/// `rate_limit_service.domain` when left out.
pub const DEFAULT_DOMAIN: &str = "portcullis";
/// `rate_limit_service.timeout` when left out, in milliseconds.
pub const DEFAULT_SERVICE_TIMEOUT_MS: u64 = 100;
/// Longest `rate_limit_service.timeout` accepted, in milliseconds.
pub const MAX_SERVICE_TIMEOUT_MS: u64 = 60_000;
/// Longest `error_message` accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1_024;
/// Most `xff_num_trusted_hops` accepted.
pub const MAX_TRUSTED_HOPS: u32 = 16;
/// Shortest `ipv6_prefix_length` accepted: a /32 is the least a registry allocates to an
/// ISP, so anything shorter counts many providers' customers as one client.
pub const MIN_IPV6_PREFIX_LENGTH: u8 = 32;

/// Kong's `limit_by` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawLimitBy {
    Consumer,
    Credential,
    Ip,
    Header,
    Path,
    Route,
    Service,
}

/// Kong's `policy` values: `local` (shared data) and `redis` (a rate limit service over
/// Envoy's gRPC protocol, counting in Redis); `cluster` (Kong's database) is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawPolicyKind {
    Local,
    Redis,
    Cluster,
}

/// The configuration as written. The top level is the global policy, applied to every
/// request; `routes` adds a policy per Envoy route name on top of it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Requests allowed per UTC second (Kong). Every limit is a whole number ≥ 1, and a
    /// longer window's limit may not be lower than a shorter one's (Kong refuses that too).
    pub second: Option<u64>,
    /// Requests per calendar minute.
    pub minute: Option<u64>,
    /// Requests per calendar hour.
    pub hour: Option<u64>,
    /// Requests per UTC day.
    pub day: Option<u64>,
    /// Requests per calendar month (28 to 31 days; Kong assumes 30).
    pub month: Option<u64>,
    /// Requests per calendar year. Pitfall: a client's slot is kept until its year (or,
    /// sliding, the next one) ends, so year limits over many clients need many `slots`.
    pub year: Option<u64>,
    /// What a request is counted under (Kong, default `consumer`): `consumer`, `credential`,
    /// `ip`, `header`, `path`, `route` or `service`. Whatever is missing from a request
    /// falls back to the client IP, as in Kong.
    pub limit_by: Option<RawLimitBy>,
    /// The header `limit_by: header` counts by (required then).
    pub header_name: Option<String>,
    /// The path `limit_by: path` counts (required then; starts with `/`). Requests to any
    /// other path are counted by IP, as in Kong. Both sides are compared normalised
    /// (`rate_limit::path`): `//payments`, `/%70ayments`, `/payments/`, `/payments;x=1` are
    /// `/payments`. Pitfall: paths stay case-sensitive, as Kong's and Envoy's routes.
    pub path: Option<String>,
    /// Proxies in front of Envoy whose `X-Forwarded-For` entries are trusted (Envoy's name
    /// and meaning, default 0: the connection's peer is the client): the filter takes the
    /// address Envoy's own `xff_num_trusted_hops` would, skipping the entry Envoy appended
    /// with `use_remote_address: true`. Pitfalls: a value higher than the real number of
    /// proxies lets clients choose their IP; so does `skip_xff_append: true` on the
    /// connection manager, or setting it there too; see `key::client_ip`.
    pub xff_num_trusted_hops: Option<u32>,
    /// How many leading bits of an IPv6 client address name the client (default 64,
    /// 32..=128): every address of one `/64` shares a counter, as one subscriber holds a
    /// whole /64 (or more) and may use a fresh address per request. IPv4 addresses (and
    /// IPv4-mapped IPv6 ones, `::ffff:a.b.c.d`) are always counted whole. Pitfall: 128
    /// gives a client 2^64 counters; a short prefix (/48, /32) counts a whole site or
    /// provider as one client, refusing its users early (never admitting more).
    pub ipv6_prefix_length: Option<u8>,
    /// `fixed` (Kong's rate-limiting, default) or `sliding` (no double burst across a window
    /// edge). Also accepted as `window_type` (Kong rate-limiting-advanced).
    #[serde(alias = "window_type")]
    pub algorithm: Option<Algorithm>,
    /// Where counters live: `local` (default; Envoy shared data: exact across the workers
    /// of one Envoy) or `redis` (the rate limit service of `rate_limit_service`, which
    /// counts in Redis: exact across every Envoy that asks it). `cluster` is refused.
    pub policy: Option<RawPolicyKind>,
    /// The rate limit service `policy: redis` asks (required then, refused otherwise).
    pub rate_limit_service: Option<RawService>,
    /// When counting fails (shared data refused, contention past the retry budget) let the
    /// request through, logged and counted (Kong, default true); false answers 500.
    pub fault_tolerant: Option<bool>,
    /// Leave out every rate-limit header, `Retry-After` included (Kong, default false).
    pub hide_client_headers: Option<bool>,
    /// Status of a limited request (default 429; 400..=599).
    pub error_code: Option<u16>,
    /// `message` of a limited request's JSON body (default `API rate limit exceeded`, at
    /// most 1024 bytes).
    pub error_message: Option<String>,
    /// Size of the counter table in shared data (default 65536, 64..=1048576). Memory is
    /// bounded by it (see the filter's README); each client of each policy holds one slot
    /// while its windows last. Pitfall: changing it restarts every count.
    pub slots: Option<u32>,
    /// Envoy route name → a policy for that route, applied on top of the global one (both
    /// count, both must admit) unless it says `override_global`. A route's entry sets its
    /// own limits; every other field it leaves out is the top level's.
    #[serde(default)]
    pub routes: BTreeMap<String, RawRoute>,
    /// See [`crate::decision::RECORDS_FIELD`] (default true).
    pub decision_records: Option<bool>,
}

/// Where the rate limit service is (`policy: redis`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// The Envoy cluster of the service (HTTP/2, as every gRPC cluster). Required.
    pub cluster: String,
    /// The descriptors' domain (default `portcullis`): filters sharing a service and a
    /// domain share counters, so give each gateway deployment its own.
    pub domain: Option<String>,
    /// Milliseconds to wait for an answer (default 100, 1..=60000); past it the call has
    /// failed and `fault_tolerant` decides.
    pub timeout: Option<u64>,
}

/// A route's policy: its own limits, and overrides of the top level's other fields.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub second: Option<u64>,
    pub minute: Option<u64>,
    pub hour: Option<u64>,
    pub day: Option<u64>,
    pub month: Option<u64>,
    pub year: Option<u64>,
    pub limit_by: Option<RawLimitBy>,
    pub header_name: Option<String>,
    pub path: Option<String>,
    pub xff_num_trusted_hops: Option<u32>,
    pub ipv6_prefix_length: Option<u8>,
    #[serde(alias = "window_type")]
    pub algorithm: Option<Algorithm>,
    pub fault_tolerant: Option<bool>,
    pub hide_client_headers: Option<bool>,
    pub error_code: Option<u16>,
    pub error_message: Option<String>,
    /// This route's policy replaces the global one on the route instead of adding to it:
    /// Kong's plugin precedence, where only the most specific rate-limiting plugin runs.
    /// A route entry's field only (the top level has no such field).
    pub override_global: Option<bool>,
}

impl RawConfig {
    /// Reads the JSON configuration. Unknown fields, wrong types and repeated member names
    /// are refused with their path.
    pub fn from_json(bytes: &[u8]) -> Result<RawConfig, ConfigError> {
        config::from_json(bytes)
    }

    /// The top level's fields as a route entry.
    fn as_route(&self) -> RawRoute {
        RawRoute {
            second: self.second,
            minute: self.minute,
            hour: self.hour,
            day: self.day,
            month: self.month,
            year: self.year,
            limit_by: self.limit_by,
            header_name: self.header_name.clone(),
            path: self.path.clone(),
            xff_num_trusted_hops: self.xff_num_trusted_hops,
            ipv6_prefix_length: self.ipv6_prefix_length,
            algorithm: self.algorithm,
            fault_tolerant: self.fault_tolerant,
            hide_client_headers: self.hide_client_headers,
            error_code: self.error_code,
            error_message: self.error_message.clone(),
            override_global: None,
        }
    }
}

impl RawRoute {
    fn limits(&self) -> [(Period, Option<u64>); 6] {
        [
            (Period::Second, self.second),
            (Period::Minute, self.minute),
            (Period::Hour, self.hour),
            (Period::Day, self.day),
            (Period::Month, self.month),
            (Period::Year, self.year),
        ]
    }

    /// This route's settings, each one it leaves out taken from `top`; limits never are.
    fn over(&self, top: &RawRoute) -> RawRoute {
        RawRoute {
            limit_by: self.limit_by.or(top.limit_by),
            header_name: self.header_name.clone().or_else(|| top.header_name.clone()),
            path: self.path.clone().or_else(|| top.path.clone()),
            xff_num_trusted_hops: self.xff_num_trusted_hops.or(top.xff_num_trusted_hops),
            ipv6_prefix_length: self.ipv6_prefix_length.or(top.ipv6_prefix_length),
            algorithm: self.algorithm.or(top.algorithm),
            fault_tolerant: self.fault_tolerant.or(top.fault_tolerant),
            hide_client_headers: self.hide_client_headers.or(top.hide_client_headers),
            error_code: self.error_code.or(top.error_code),
            error_message: self
                .error_message
                .clone()
                .or_else(|| top.error_message.clone()),
            ..self.clone()
        }
    }
}

impl RateLimitPolicySet {
    /// Reads and compiles the JSON configuration in one step.
    pub fn from_json(bytes: &[u8]) -> Result<RateLimitPolicySet, ConfigError> {
        RateLimitPolicySet::try_from(RawConfig::from_json(bytes)?)
    }
}

impl TryFrom<RawConfig> for RateLimitPolicySet {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<RateLimitPolicySet, ConfigError> {
        let service = compile_service(&raw)?;
        let slots = raw.slots.unwrap_or(DEFAULT_SLOTS);
        if !(MIN_SLOTS..=MAX_SLOTS).contains(&slots) {
            return Err(err(
                "slots",
                format!("{slots} is outside {MIN_SLOTS}..={MAX_SLOTS}"),
            ));
        }
        let top = raw.as_route();
        let mut index = 0u32;
        let global = if top.limits().iter().any(|(_, l)| l.is_some()) {
            index += 1;
            Some(compile_policy("", "global", 0, &top)?)
        } else {
            None
        };
        let default_response = compile_response("", &top)?;
        let mut routes = HashMap::with_capacity(raw.routes.len());
        for (name, route) in &raw.routes {
            let prefix = format!("routes.{name}");
            if name.is_empty() {
                return Err(err("routes", "empty route name"));
            }
            if !route.limits().iter().any(|(_, l)| l.is_some()) {
                return Err(err(prefix, no_limit_message()));
            }
            let merged = route.over(&top);
            let policy = compile_policy(&prefix, &prefix, index, &merged)?;
            index += 1;
            let response = compile_response(&prefix, &merged)?;
            let replaces_global = route.override_global.unwrap_or(false);
            routes.insert(
                name.clone(),
                RoutePolicies {
                    policy,
                    response,
                    replaces_global,
                },
            );
        }
        if global.is_none() && routes.is_empty() {
            return Err(err("", no_limit_message()));
        }
        let records = raw.decision_records.unwrap_or(true);
        let set =
            RateLimitPolicySet::new(global, routes, default_response, slots, service, records);
        if set.service().is_some() {
            check_service_limits(&set)?;
        }
        Ok(set)
    }
}

/// `policy` and `rate_limit_service`, checked together.
fn compile_service(raw: &RawConfig) -> Result<Option<ServiceSettings>, ConfigError> {
    match (
        raw.policy.unwrap_or(RawPolicyKind::Local),
        &raw.rate_limit_service,
    ) {
        (RawPolicyKind::Local, None) => Ok(None),
        (RawPolicyKind::Local, Some(_)) => {
            Err(err("rate_limit_service", "only used with policy \"redis\""))
        }
        (RawPolicyKind::Cluster, _) => Err(err(
            "policy",
            "\"cluster\" (Kong's database) is not offered: use \"redis\" (a rate limit \
             service counting in Redis, exact across Envoy nodes) or \"local\"",
        )),
        (RawPolicyKind::Redis, None) => Err(err(
            "rate_limit_service",
            "required when policy is \"redis\": {\"cluster\": \"<Envoy cluster of the rate \
             limit service>\"}",
        )),
        (RawPolicyKind::Redis, Some(service)) => {
            if service.cluster.is_empty() {
                return Err(err("rate_limit_service.cluster", "empty cluster name"));
            }
            let domain = service.domain.as_deref().unwrap_or(DEFAULT_DOMAIN);
            if domain.is_empty() || domain.chars().any(char::is_control) {
                return Err(err(
                    "rate_limit_service.domain",
                    format!("{domain:?} is not a domain (non-empty, no control characters)"),
                ));
            }
            let timeout_ms = service.timeout.unwrap_or(DEFAULT_SERVICE_TIMEOUT_MS);
            if !(1..=MAX_SERVICE_TIMEOUT_MS).contains(&timeout_ms) {
                return Err(err(
                    "rate_limit_service.timeout",
                    format!("{timeout_ms} is outside 1..={MAX_SERVICE_TIMEOUT_MS} (milliseconds)"),
                ));
            }
            Ok(Some(ServiceSettings {
                cluster: service.cluster.clone(),
                domain: domain.to_owned(),
                timeout_ms,
            }))
        }
    }
}

/// What the rate limit service protocol can carry: limits as `uint32`, fixed windows.
fn check_service_limits(set: &RateLimitPolicySet) -> Result<(), ConfigError> {
    for policy in set.policies() {
        let prefix = if policy.name == "global" {
            ""
        } else {
            policy.name.as_str()
        };
        if policy.algorithm != Algorithm::Fixed {
            return Err(err(
                at(prefix, "algorithm"),
                "\"sliding\" is counted in shared data only (policy \"local\"): the rate \
                 limit service counts fixed windows",
            ));
        }
        for (period, limit) in &policy.limits {
            if *limit > u64::from(u32::MAX) {
                return Err(err(
                    at(prefix, period.name()),
                    format!(
                        "{limit} is over {} (the rate limit protocol's most)",
                        u32::MAX
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn no_limit_message() -> String {
    "set at least one limit: second, minute, hour, day, month or year".to_owned()
}

fn at(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

fn compile_policy(
    prefix: &str,
    name: &str,
    index: u32,
    r: &RawRoute,
) -> Result<Policy, ConfigError> {
    let mut limits: Vec<(Period, u64)> = Vec::with_capacity(6);
    for (period, limit) in r.limits() {
        let Some(limit) = limit else { continue };
        if limit == 0 {
            return Err(err(at(prefix, period.name()), "must be at least 1"));
        }
        // Kong's rule: a longer window may not allow fewer requests than a shorter one.
        if let Some((shorter, shorter_limit)) = limits.iter().find(|(_, l)| *l > limit) {
            return Err(err(
                at(prefix, period.name()),
                format!(
                    "the limit for {}({limit}) cannot be lower than the limit for {}({shorter_limit})",
                    period.name(),
                    shorter.name()
                ),
            ));
        }
        limits.push((period, limit));
    }
    let limit_by = match r.limit_by.unwrap_or(RawLimitBy::Consumer) {
        RawLimitBy::Consumer => LimitBy::Consumer,
        RawLimitBy::Credential => LimitBy::Credential,
        RawLimitBy::Ip => LimitBy::Ip,
        RawLimitBy::Route => LimitBy::Route,
        RawLimitBy::Service => LimitBy::Service,
        RawLimitBy::Header => {
            let Some(name) = &r.header_name else {
                return Err(err(
                    at(prefix, "header_name"),
                    "required when limit_by is \"header\"",
                ));
            };
            if name.is_empty() || !name.bytes().all(is_token_char) {
                return Err(err(
                    at(prefix, "header_name"),
                    format!("{name:?} is not a header name"),
                ));
            }
            LimitBy::Header(name.to_ascii_lowercase())
        }
        RawLimitBy::Path => {
            let Some(path) = &r.path else {
                return Err(err(
                    at(prefix, "path"),
                    "required when limit_by is \"path\"",
                ));
            };
            if !path.starts_with('/') || path.contains(['?', '#']) {
                return Err(err(
                    at(prefix, "path"),
                    format!("{path:?} is not a path (starts with '/', no query)"),
                ));
            }
            // Held in the form requests are compared in: `/payments/` is `/payments`.
            let Ok(normal) = String::from_utf8(crate::path::normalise(path)) else {
                return Err(err(
                    at(prefix, "path"),
                    format!("{path:?} decodes to bytes that are not UTF-8"),
                ));
            };
            LimitBy::Path(normal)
        }
    };
    let trusted_hops = r.xff_num_trusted_hops.unwrap_or(0);
    if trusted_hops > MAX_TRUSTED_HOPS {
        return Err(err(
            at(prefix, "xff_num_trusted_hops"),
            format!("{trusted_hops} is outside 0..={MAX_TRUSTED_HOPS}"),
        ));
    }
    let ipv6_prefix_length = r.ipv6_prefix_length.unwrap_or(DEFAULT_IPV6_PREFIX_LENGTH);
    if !(MIN_IPV6_PREFIX_LENGTH..=128).contains(&ipv6_prefix_length) {
        return Err(err(
            at(prefix, "ipv6_prefix_length"),
            format!(
                "{ipv6_prefix_length} is outside {MIN_IPV6_PREFIX_LENGTH}..=128 (bits of an \
                 IPv6 address that name one client; 64 is one subscriber)"
            ),
        ));
    }
    Ok(Policy::new(
        name.to_owned(),
        index,
        limits,
        limit_by,
        r.algorithm.unwrap_or_default(),
        ClientIpRule {
            trusted_hops,
            ipv6_prefix_length,
        },
    ))
}

fn compile_response(prefix: &str, r: &RawRoute) -> Result<ResponseSettings, ConfigError> {
    let error_code = r.error_code.unwrap_or(429);
    if !(400..=599).contains(&error_code) {
        return Err(err(
            at(prefix, "error_code"),
            format!("{error_code} is outside 400..=599"),
        ));
    }
    let message = r.error_message.as_deref().unwrap_or(DEFAULT_MESSAGE);
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(err(
            at(prefix, "error_message"),
            format!("{} bytes, at most {MAX_MESSAGE_BYTES}", message.len()),
        ));
    }
    Ok(ResponseSettings {
        error_code,
        error_body: serde_json::json!({ "message": message }).to_string(),
        hide_client_headers: r.hide_client_headers.unwrap_or(false),
        fault_tolerant: r.fault_tolerant.unwrap_or(true),
    })
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(config: serde_json::Value) -> Result<RateLimitPolicySet, ConfigError> {
        RateLimitPolicySet::from_json(config.to_string().as_bytes())
    }

    #[test]
    fn the_scenario_compiles_to_a_global_and_a_route_policy() {
        let set = compile(json!({
            "minute": 100,
            "limit_by": "ip",
            "routes": {"payments": {"minute": 20}}
        }))
        .unwrap();
        let on_payments = set.select(Some("payments"));
        let names: Vec<&str> = on_payments
            .policies
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["global", "routes.payments"]);
        assert_eq!(on_payments.policies[1].limits, [(Period::Minute, 20)]);
        assert_eq!(on_payments.policies[1].limit_by, LimitBy::Ip, "inherited");
        let elsewhere = set.select(Some("users"));
        assert_eq!(elsewhere.policies.len(), 1);
        assert_eq!(set.select(None).policies.len(), 1);
        assert_eq!(elsewhere.response.error_code, 429);
        assert_eq!(
            elsewhere.response.error_body,
            r#"{"message":"API rate limit exceeded"}"#
        );
        assert!(elsewhere.response.fault_tolerant);
        assert!(!elsewhere.response.hide_client_headers);
    }

    #[test]
    fn a_route_that_overrides_the_global_policy_is_counted_under_its_own_alone() {
        let set = compile(json!({
            "minute": 100,
            "routes": {
                "payments": {"minute": 20, "override_global": true},
                "orders": {"minute": 50, "override_global": false}
            }
        }))
        .unwrap();
        let names = |route: &str| -> Vec<String> {
            set.select(Some(route))
                .policies
                .iter()
                .map(|p| p.name.clone())
                .collect()
        };
        assert_eq!(names("payments"), ["routes.payments"]);
        assert_eq!(names("orders"), ["global", "routes.orders"]);
        assert_eq!(names("users"), ["global"]);
    }

    #[test]
    fn defaults_are_kongs() {
        let set = compile(json!({"second": 5})).unwrap();
        let global = &set.select(None).policies[0];
        assert_eq!(global.limit_by, LimitBy::Consumer);
        assert_eq!(global.algorithm, Algorithm::Fixed);
        assert_eq!(global.client_ip.trusted_hops, 0);
        assert_eq!(global.client_ip.ipv6_prefix_length, 64);
        assert_eq!(set.slots(), DEFAULT_SLOTS);
    }

    #[test]
    fn routes_alone_leave_other_routes_unlimited() {
        let set =
            compile(json!({"routes": {"payments": {"hour": 3, "limit_by": "route"}}})).unwrap();
        assert!(set.select(Some("users")).policies.is_empty());
        assert_eq!(
            set.select(Some("payments")).policies[0].limit_by,
            LimitBy::Route
        );
    }

    #[test]
    fn the_route_name_is_needed_only_with_routes_or_limits_by_route() {
        let needs = |config: serde_json::Value| compile(config).unwrap().needs_route_name();
        assert!(!needs(json!({"minute": 100, "limit_by": "ip"})));
        assert!(!needs(json!({"minute": 100, "limit_by": "consumer"})));
        assert!(needs(json!({"minute": 100, "limit_by": "route"})));
        assert!(needs(
            json!({"minute": 100, "routes": {"payments": {"minute": 20}}})
        ));
        // Without routes, every route name selects the same policies.
        let set = compile(json!({"minute": 100, "limit_by": "ip"})).unwrap();
        let names = |route| {
            set.select(route)
                .policies
                .iter()
                .map(|p| p.index)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(None), names(Some("payments")));
    }

    #[test]
    fn route_entries_override_every_field_but_the_limits() {
        let set = compile(json!({
            "minute": 10, "hour": 100, "limit_by": "header", "header_name": "X-Api-Key",
            "algorithm": "sliding", "error_code": 503, "error_message": "slow down",
            "hide_client_headers": true, "fault_tolerant": false,
            "routes": {"login": {"second": 1, "limit_by": "ip", "error_message": "no \"brute\" force"}}
        }))
        .unwrap();
        let login = set.select(Some("login"));
        let route = &login.policies[1];
        assert_eq!(route.limits, [(Period::Second, 1)]);
        assert_eq!(route.limit_by, LimitBy::Ip);
        assert_eq!(route.algorithm, Algorithm::Sliding);
        assert_eq!(
            login.policies[0].limit_by,
            LimitBy::Header("x-api-key".into())
        );
        assert_eq!(login.response.error_code, 503);
        assert_eq!(
            login.response.error_body,
            r#"{"message":"no \"brute\" force"}"#
        );
        assert!(login.response.hide_client_headers && !login.response.fault_tolerant);
        assert_eq!(
            set.select(None).response.error_body,
            r#"{"message":"slow down"}"#
        );
    }

    #[test]
    fn ipv6_prefix_length_is_per_policy_and_inherited_by_routes() {
        let set = compile(json!({
            "minute": 10, "limit_by": "ip", "ipv6_prefix_length": 56,
            "routes": {"login": {"second": 1}, "pay": {"second": 1, "ipv6_prefix_length": 128}}
        }))
        .unwrap();
        let prefix = |route| {
            set.select(Some(route))
                .policies
                .iter()
                .map(|p| p.client_ip.ipv6_prefix_length)
                .collect::<Vec<_>>()
        };
        assert_eq!(prefix("login"), [56, 56]);
        assert_eq!(prefix("pay"), [56, 128]);
    }

    #[test]
    fn the_configured_path_is_held_normalised() {
        for (path, held) in [
            ("/payments", "/payments"),
            ("/payments/", "/payments"),
            ("//v1/./payments", "/v1/payments"),
            ("/%70ayments", "/payments"),
            ("/", "/"),
        ] {
            let set = compile(json!({"minute": 1, "limit_by": "path", "path": path})).unwrap();
            assert_eq!(
                set.select(None).policies[0].limit_by,
                LimitBy::Path(held.into()),
                "{path}"
            );
        }
    }

    #[test]
    fn window_type_is_accepted_for_algorithm() {
        let set = compile(json!({"minute": 1, "window_type": "sliding"})).unwrap();
        assert_eq!(set.select(None).policies[0].algorithm, Algorithm::Sliding);
    }

    #[test]
    fn refuses_broken_configs_naming_the_field() {
        let cases = [
            (json!({}), "", "set at least one limit"),
            (json!([]), "", "not a JSON object"),
            (json!({"minute": 0}), "minute", "at least 1"),
            (json!({"minute": -1}), "minute", "invalid value"),
            (json!({"minute": 1.5}), "minute", "invalid type"),
            (json!({"minute": "10"}), "minute", "invalid type"),
            (
                json!({"minute": 100, "hour": 50}),
                "hour",
                "the limit for hour(50) cannot be lower than the limit for minute(100)",
            ),
            (
                json!({"second": 10, "minute": 20, "year": 5}),
                "year",
                "cannot be lower than the limit for second(10)",
            ),
            (
                json!({"minute": 1, "limit_by": "consumer-group"}),
                "limit_by",
                "unknown variant",
            ),
            (
                json!({"minute": 1, "limit_by": "header"}),
                "header_name",
                "required",
            ),
            (
                json!({"minute": 1, "limit_by": "header", "header_name": "bad name"}),
                "header_name",
                "not a header name",
            ),
            (json!({"minute": 1, "limit_by": "path"}), "path", "required"),
            (
                json!({"minute": 1, "limit_by": "path", "path": "payments"}),
                "path",
                "not a path",
            ),
            (
                json!({"minute": 1, "limit_by": "path", "path": "/pay#x"}),
                "path",
                "not a path",
            ),
            (
                json!({"minute": 1, "limit_by": "path", "path": "/%ff"}),
                "path",
                "not UTF-8",
            ),
            (
                json!({"minute": 1, "policy": "redis"}),
                "rate_limit_service",
                "required when policy is \"redis\"",
            ),
            (
                json!({"minute": 1, "policy": "cluster"}),
                "policy",
                "\"cluster\" (Kong's database) is not offered",
            ),
            (
                json!({"minute": 1, "rate_limit_service": {"cluster": "rls"}}),
                "rate_limit_service",
                "only used with policy \"redis\"",
            ),
            (
                json!({"minute": 1, "policy": "redis", "rate_limit_service": {"cluster": ""}}),
                "rate_limit_service.cluster",
                "empty cluster name",
            ),
            (
                json!({"minute": 1, "policy": "redis", "rate_limit_service": {}}),
                "rate_limit_service",
                "missing field `cluster`",
            ),
            (
                json!({"minute": 1, "policy": "redis",
                       "rate_limit_service": {"cluster": "rls", "host": "redis"}}),
                "rate_limit_service.host",
                "unknown field `host`",
            ),
            (
                json!({"minute": 1, "policy": "redis",
                       "rate_limit_service": {"cluster": "rls", "timeout": 0}}),
                "rate_limit_service.timeout",
                "outside 1..=60000",
            ),
            (
                json!({"minute": 1, "policy": "redis",
                       "rate_limit_service": {"cluster": "rls", "domain": ""}}),
                "rate_limit_service.domain",
                "not a domain",
            ),
            (
                json!({"minute": 1, "policy": "redis", "algorithm": "sliding",
                       "rate_limit_service": {"cluster": "rls"}}),
                "algorithm",
                "counted in shared data only",
            ),
            (
                json!({"minute": 1, "policy": "redis", "rate_limit_service": {"cluster": "rls"},
                       "routes": {"pay": {"minute": 1, "window_type": "sliding"}}}),
                "routes.pay.algorithm",
                "counted in shared data only",
            ),
            (
                json!({"minute": 1, "hour": 5_000_000_000u64, "policy": "redis",
                       "rate_limit_service": {"cluster": "rls"}}),
                "hour",
                "the rate limit protocol's most",
            ),
            (
                json!({"minute": 1, "policy": "memcached"}),
                "policy",
                "unknown variant",
            ),
            (
                json!({"minute": 1, "algorithm": "leaky"}),
                "algorithm",
                "unknown variant",
            ),
            (
                json!({"minute": 1, "error_code": 200}),
                "error_code",
                "outside 400..=599",
            ),
            (
                json!({"minute": 1, "error_message": "x".repeat(1025)}),
                "error_message",
                "1025 bytes",
            ),
            (
                json!({"minute": 1, "xff_num_trusted_hops": 17}),
                "xff_num_trusted_hops",
                "outside",
            ),
            (
                json!({"minute": 1, "ipv6_prefix_length": 31}),
                "ipv6_prefix_length",
                "31 is outside 32..=128",
            ),
            (
                json!({"minute": 1, "ipv6_prefix_length": 129}),
                "ipv6_prefix_length",
                "129 is outside 32..=128",
            ),
            (
                json!({"minute": 1, "ipv6_prefix_length": 0}),
                "ipv6_prefix_length",
                "outside 32..=128",
            ),
            (
                json!({"minute": 1, "ipv6_prefix_length": 256}),
                "ipv6_prefix_length",
                "invalid value",
            ),
            (
                json!({"minute": 1, "ipv6_prefix_length": "/64"}),
                "ipv6_prefix_length",
                "invalid type",
            ),
            (
                json!({"minute": 1, "routes": {"pay": {"minute": 1, "ipv6_prefix_length": 200}}}),
                "routes.pay.ipv6_prefix_length",
                "200 is outside 32..=128",
            ),
            (
                json!({"minute": 1, "slots": 10}),
                "slots",
                "outside 64..=1048576",
            ),
            (
                json!({"minute": 1, "sync_rate": 1}),
                "sync_rate",
                "unknown field `sync_rate`",
            ),
            (
                json!({"minute": 1, "routes": {"": {"minute": 1}}}),
                "routes",
                "empty route name",
            ),
            (
                json!({"routes": {"pay": {}}}),
                "routes.pay",
                "set at least one limit",
            ),
            (
                json!({"routes": {"pay": {"minute": 5, "hour": 4}}}),
                "routes.pay.hour",
                "cannot be lower",
            ),
            (
                json!({"routes": {"pay": {"slots": 100}}}),
                "routes.pay.slots",
                "unknown field `slots`",
            ),
            (
                json!({"minute": 5, "override_global": true}),
                "override_global",
                "unknown field `override_global`",
            ),
            (
                json!({"minute": 5, "routes": {"pay": {"minute": 1, "override_global": 1}}}),
                "routes.pay.override_global",
                "expected a boolean",
            ),
            (
                json!({"minute": 5, "routes": {"pay": {"second": 1, "limit_by": "header"}}}),
                "routes.pay.header_name",
                "required",
            ),
        ];
        for (config, path, message) in cases {
            let Err(e) = compile(config.clone()) else {
                panic!("{config} was accepted");
            };
            assert_eq!(e.path, path, "{config}: {e}");
            assert!(e.message.contains(message), "{config}: {e}");
        }
    }

    #[test]
    fn refuses_a_repeated_member() {
        let e = RateLimitPolicySet::from_json(br#"{"minute": 1, "minute": 1000}"#).unwrap_err();
        assert!(e.message.contains("repeats"), "{e}");
    }
}
