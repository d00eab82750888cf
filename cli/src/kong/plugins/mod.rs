//! Kong plugins → the Portcullis filters' configurations (jwt, acl, rate-limiting), with
//! Kong's scoping and precedence; every other plugin is reported with the Envoy filter to
//! use instead.
//!
//! **Precedence.** On a request Kong runs only the most specific instance of each plugin:
//! consumer+route+service > consumer+route > consumer+service > route+service > consumer >
//! route > service > global (Kong 3's documentation; consumer-group scopes sit between, and
//! are reported). Consumer-scoped instances have no Portcullis counterpart (a policy cannot
//! depend on who the caller turns out to be) and are reported; for each route, the most
//! specific of route+service, route, service and global is its policy. Every Kong route gets
//! a complete per-route entry in each filter used (nothing inherited by accident): a route
//! without jwt is `public: true` in jwt, without acl `public: true` in acl; rate-limiting
//! keeps the global instance at its top level (Kong's global counter is shared by every
//! route, as Portcullis's top-level one) and gives each route whose most specific instance is
//! another one a route policy with `override_global: true`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value as Json};

mod config;
mod credentials;

use super::input::{Node, Value};
use super::model::{Config, Plugin};
use crate::report::Report;
use crate::InputError;
use config::{read_acl, read_jwt, read_rate, AclConf, JwtConf, RateConf};
use credentials::jwt_consumers;

/// The route name of the catch-all route (Kong's 404 for requests no route matches). Kong
/// names cannot hold `:`, so it cannot clash with a converted route.
pub const NO_ROUTE: &str = "portcullis:no-route";

/// Options that change the policies.
#[derive(Clone, Debug, Default)]
pub struct PolicyOptions {
    /// `--rate-limit-service`: given, `policy: redis` (and Kong's `cluster`) count through it.
    pub rate_limit_service: bool,
    /// `--admin-url`: consumers come from portcullis-admin (`consumer_source`), with this
    /// `:authority`.
    pub admin_authority: Option<String>,
}

/// The filters' configurations, those the input uses.
#[derive(Clone, Debug, Default)]
pub struct Policies {
    pub jwt: Option<Json>,
    pub acl: Option<Json>,
    pub rate_limiting: Option<Json>,
    /// rate-limiting counts through the rate limit service (cluster `portcullis_ratelimit`).
    pub uses_rate_limit_service: bool,
    /// What `--admin-url` loads: consumers, their credentials and groups.
    pub admin_load: Vec<AdminConsumer>,
    /// How many plugin instances were carried.
    pub carried_plugins: usize,
}

/// A consumer to load into portcullis-admin, with what of it was carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConsumer {
    pub path: String,
    /// The consumer's `id` in the Kong file, kept so X-Consumer-ID stays what it was.
    pub id: Option<String>,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    pub credentials: Vec<AdminCredential>,
    pub groups: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminCredential {
    pub path: String,
    pub key: String,
    pub algorithm: String,
    /// The secret as text (decoded when `secret_is_base64`), or the PEM.
    pub secret: Option<String>,
    pub rsa_public_key: Option<String>,
}

/// One carried instance of jwt, acl or rate-limiting.
#[derive(Clone, Debug)]
enum Instance {
    Jwt(JwtConf),
    Acl(AclConf),
    RateLimiting(RateConf),
}

/// Builds the policies. Errors are malformed plugin configurations (Kong would refuse them
/// too) and `policy: redis` without `--rate-limit-service`.
pub fn policies(
    config: &Config,
    options: &PolicyOptions,
    report: &mut Report,
) -> Result<Policies, InputError> {
    // 1. Which instances are carried, read into typed configurations.
    let mut instances: Vec<(usize, Instance)> = Vec::new();
    for (index, plugin) in config.plugins.iter().enumerate() {
        if let Some(instance) = classify(config, plugin, report)? {
            instances.push((index, instance));
        }
    }

    // 2. Each carried route's most specific instance of each plugin.
    let mut effective: BTreeMap<&str, Vec<(usize, Option<usize>)>> = BTreeMap::new();
    for name in ["jwt", "acl", "rate-limiting"] {
        let mut per_route = Vec::new();
        for (r, route) in config.routes.iter().enumerate() {
            if !route.carried {
                continue;
            }
            per_route.push((r, most_specific(config, &instances, name, r)));
        }
        effective.insert(name, per_route);
    }
    let global = |name: &str| {
        instances.iter().find(|(i, _)| {
            config
                .plugins
                .get(*i)
                .is_some_and(|p| p.name == name && p.service.is_none() && p.route.is_none())
        })
    };
    let instance = |i: usize| {
        instances
            .iter()
            .find(|(j, _)| *j == i)
            .map(|(_, inst)| inst)
    };
    let route_name = |r: usize| {
        config
            .routes
            .get(r)
            .map_or_else(String::new, |r| r.envoy_name.clone())
    };

    let mut policies = Policies {
        carried_plugins: instances.len(),
        ..Policies::default()
    };

    // 3. jwt.
    let jwt_routes = effective.get("jwt").cloned().unwrap_or_default();
    let jwt_used = jwt_routes.iter().any(|(_, i)| i.is_some()) || global("jwt").is_some();
    if !jwt_used && options.admin_authority.is_none() {
        for consumer in &config.consumers {
            report.add(
                &consumer.at.labelled(&consumer.label()),
                "consumer",
                "no jwt plugin is converted, so Envoy identifies no consumer: not converted with its credentials and groups",
            );
        }
    }
    if !jwt_used && options.admin_authority.is_some() {
        let (_, admin_load) = jwt_consumers(config, false, options, report);
        policies.admin_load = admin_load;
    }
    if jwt_used {
        let jwts: Vec<(usize, &JwtConf)> = instances
            .iter()
            .filter_map(|(i, inst)| match inst {
                Instance::Jwt(j) => Some((*i, j)),
                _ => None,
            })
            .collect();
        // Credentials are shared by every jwt instance: their encoding is one decision, the
        // global instance's (else the first one's).
        let global_jwt = global("jwt").map(|(i, _)| *i);
        let decider = jwts
            .iter()
            .find(|(i, _)| Some(*i) == global_jwt)
            .or_else(|| jwts.first())
            .copied();
        let base64 = decider.is_some_and(|(_, j)| j.secret_is_base64);
        let decider_path = decider
            .and_then(|(i, _)| config.plugins.get(i))
            .map_or_else(String::new, |p| p.at.path.clone());
        for (i, j) in &jwts {
            if j.secret_is_base64 != base64 {
                if let Some(p) = config.plugins.get(*i) {
                    report.add(
                        &p.config_loc().field("secret_is_base64", p.config_loc().seq),
                        format!("field secret_is_base64 ({})", j.secret_is_base64),
                        format!(
                            "credentials are shared by every jwt instance in Portcullis: they are read as {decider_path} says (secret_is_base64: {base64})"
                        ),
                    );
                }
            }
        }
        let (consumers, admin_load) = jwt_consumers(config, base64, options, report);
        let anonymous_ok = |name: &str| {
            consumers
                .iter()
                .any(|c| c.get("username").and_then(Json::as_str) == Some(name))
        };
        let settings = |conf: &JwtConf, report: &mut Report| -> Map<String, Json> {
            let mut m = Map::new();
            m.insert("header_names".into(), json!(conf.header_names));
            m.insert("uri_param_names".into(), json!(conf.uri_param_names));
            m.insert("cookie_names".into(), json!(conf.cookie_names));
            m.insert("key_claim_name".into(), json!(conf.key_claim_name));
            m.insert("claims_to_verify".into(), json!(conf.claims_to_verify));
            m.insert(
                "exp_required".into(),
                json!(conf.claims_to_verify.iter().any(|c| c == "exp")),
            );
            m.insert("leeway".into(), json!(0));
            m.insert("maximum_expiration".into(), json!(conf.maximum_expiration));
            m.insert("run_on_preflight".into(), json!(conf.run_on_preflight));
            m.insert("hide_credentials".into(), json!(false));
            if let Some(realm) = &conf.realm {
                m.insert("realm".into(), json!(realm));
            }
            if let Some((at, anonymous)) = &conf.anonymous {
                let found = resolve_consumer(config, anonymous);
                match found.and_then(|c| c.username.clone()) {
                    Some(username) if anonymous_ok(&username) => {
                        m.insert("anonymous".into(), json!(username));
                    }
                    _ => report.add(
                        at,
                        format!("field anonymous ({anonymous:?})"),
                        "no consumer with a username has that username or id: Kong would answer 500 to requests without a token; Portcullis answers 401",
                    ),
                }
            }
            m.insert("public".into(), json!(false));
            m
        };
        let mut top = match global("jwt") {
            // The same settings are computed (and reported) for each route it covers.
            Some((_, Instance::Jwt(conf))) => settings(conf, &mut Report::new()),
            _ => {
                let mut m = Map::new();
                m.insert("public".into(), json!(true));
                m
            }
        };
        let mut routes = Map::new();
        let mut done_settings: BTreeMap<usize, Map<String, Json>> = BTreeMap::new();
        for (r, eff) in &jwt_routes {
            let entry = match eff.and_then(|i| instance(i).map(|inst| (i, inst))) {
                Some((i, Instance::Jwt(conf))) => done_settings
                    .entry(i)
                    .or_insert_with(|| settings(conf, report))
                    .clone(),
                _ => public_entry(),
            };
            routes.insert(route_name(*r), Json::Object(entry));
        }
        routes.insert(NO_ROUTE.to_owned(), Json::Object(public_entry()));
        top.insert("routes".into(), Json::Object(routes));
        match &options.admin_authority {
            Some(authority) => {
                top.insert(
                    "consumer_source".into(),
                    json!({"cluster": crate::envoy::ADMIN_CLUSTER, "authority": authority}),
                );
                // Only consumers named as `anonymous` stay static: they have no credential
                // to look up.
                let anonymous: Vec<&str> = done_settings
                    .values()
                    .filter_map(|m| m.get("anonymous").and_then(Json::as_str))
                    .collect();
                let statics: Vec<Json> = consumers
                    .iter()
                    .filter(|c| {
                        c.get("username")
                            .and_then(Json::as_str)
                            .is_some_and(|u| anonymous.contains(&u))
                    })
                    .map(|c| {
                        let mut c = c.clone();
                        if let Some(m) = c.as_object_mut() {
                            m.insert("credentials".into(), json!([]));
                        }
                        c
                    })
                    .collect();
                top.insert("consumers".into(), Json::Array(statics));
                policies.admin_load = admin_load;
            }
            None => {
                top.insert("consumers".into(), Json::Array(consumers));
            }
        }
        policies.jwt = Some(Json::Object(top));
    }

    // 4. acl.
    let acl_routes = effective.get("acl").cloned().unwrap_or_default();
    if acl_routes.iter().any(|(_, i)| i.is_some()) || global("acl").is_some() {
        let entry = |conf: &AclConf| {
            let mut m = Map::new();
            if let Some(allow) = &conf.allow {
                m.insert("allow".into(), json!(allow));
            }
            if let Some(deny) = &conf.deny {
                m.insert("deny".into(), json!(deny));
            }
            m.insert("hide_groups_header".into(), json!(conf.hide_groups_header));
            m
        };
        // Kong adds X-Consumer-Groups only where the acl plugin runs and admits: a route
        // without acl sends none, even for a consumer that has groups.
        let public = || {
            let mut m = Map::new();
            m.insert("public".into(), json!(true));
            m.insert("hide_groups_header".into(), json!(true));
            m
        };
        let mut top = match global("acl") {
            Some((_, Instance::Acl(conf))) => entry(conf),
            _ => public(),
        };
        let mut routes = Map::new();
        for (r, eff) in &acl_routes {
            let e = match eff.and_then(instance) {
                Some(Instance::Acl(conf)) => entry(conf),
                _ => public(),
            };
            routes.insert(route_name(*r), Json::Object(e));
        }
        routes.insert(NO_ROUTE.to_owned(), Json::Object(public()));
        top.insert("routes".into(), Json::Object(routes));
        policies.acl = Some(Json::Object(top));
    }

    // 5. rate-limiting.
    let rl_routes = effective.get("rate-limiting").cloned().unwrap_or_default();
    if rl_routes.iter().any(|(_, i)| i.is_some()) || global("rate-limiting").is_some() {
        let rates: Vec<(usize, &RateConf)> = instances
            .iter()
            .filter_map(|(i, inst)| match inst {
                Instance::RateLimiting(r) => Some((*i, r)),
                _ => None,
            })
            .collect();
        let shared = rates.iter().any(|(_, r)| r.policy == "redis")
            || (options.rate_limit_service && rates.iter().any(|(_, r)| r.policy == "cluster"));
        if shared && !options.rate_limit_service {
            let (i, r) = rates
                .iter()
                .find(|(_, r)| r.policy == "redis")
                .copied()
                .ok_or_else(|| InputError::root("policy redis needs --rate-limit-service"))?;
            let label = config
                .plugins
                .get(i)
                .map_or_else(String::new, |p| p.at.path.clone());
            return Err(InputError::at(
                &r.policy_at,
                format!(
                    "policy redis ({label}) needs --rate-limit-service HOST:PORT: the rate limit service that keeps the counts in Redis (services/ratelimit)"
                ),
            ));
        }
        for (i, r) in &rates {
            let Some(p) = config.plugins.get(*i) else {
                continue;
            };
            match (r.policy.as_str(), shared) {
                ("cluster", true) => report.add(
                    &r.policy_at,
                    "policy cluster",
                    "Kong's database counter is not available: counted by the rate limit service (--rate-limit-service, policy redis), which shares the count across Envoy nodes as cluster does",
                ),
                ("cluster", false) => report.add(
                    &r.policy_at,
                    if p.config.as_ref().is_some_and(|c| has_key(c, "policy")) { "policy cluster" } else { "policy cluster (Kong's default before 3.0)" },
                    "Kong's database counter is not available: counted per Envoy (policy local); give --rate-limit-service to share the count across Envoy nodes",
                ),
                ("local", true) => report.add(
                    &r.policy_at,
                    "policy local",
                    "Portcullis has one policy per filter: counted by the rate limit service like the other instances",
                ),
                _ => {}
            }
        }
        let limits_entry = |conf: &RateConf| {
            let mut m = Map::new();
            for (window, limit) in &conf.limits {
                let limit = if shared {
                    (*limit).min(u64::from(u32::MAX))
                } else {
                    *limit
                };
                m.insert((*window).into(), json!(limit));
            }
            m.insert("limit_by".into(), json!(conf.limit_by));
            if let Some(h) = &conf.header_name {
                m.insert("header_name".into(), json!(h));
            }
            if let Some(p) = &conf.path {
                m.insert("path".into(), json!(p));
            }
            m.insert("algorithm".into(), json!("fixed"));
            m.insert("xff_num_trusted_hops".into(), json!(0));
            m.insert("ipv6_prefix_length".into(), json!(128));
            m.insert("fault_tolerant".into(), json!(conf.fault_tolerant));
            m.insert(
                "hide_client_headers".into(),
                json!(conf.hide_client_headers),
            );
            m.insert("error_code".into(), json!(conf.error_code));
            m.insert("error_message".into(), json!(conf.error_message));
            m
        };
        let global_rl = global("rate-limiting").map(|(i, _)| *i);
        let mut top = match global("rate-limiting") {
            Some((_, Instance::RateLimiting(conf))) => limits_entry(conf),
            _ => Map::new(),
        };
        let mut routes = Map::new();
        let mut covered: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for (r, eff) in &rl_routes {
            let Some(i) = eff else { continue };
            if Some(*i) == global_rl {
                continue;
            }
            if let Some(Instance::RateLimiting(conf)) = instance(*i) {
                let mut e = limits_entry(conf);
                if global_rl.is_some() {
                    e.insert("override_global".into(), json!(true));
                }
                routes.insert(route_name(*r), Json::Object(e));
                covered.entry(*i).or_default().push(route_name(*r));
            }
        }
        for (i, names) in &covered {
            let Some(p) = config.plugins.get(*i) else {
                continue;
            };
            if p.route.is_none() && names.len() > 1 {
                report.add(
                    &p.at,
                    "plugin rate-limiting on a service",
                    format!(
                        "Kong counts one limit shared by the service's routes; Portcullis counts each route on its own ({}): a client gets up to {}× the limit across them",
                        names.join(", "),
                        names.len()
                    ),
                );
            }
        }
        if !routes.is_empty() {
            top.insert("routes".into(), Json::Object(routes));
        }
        if shared {
            top.insert("policy".into(), json!("redis"));
            top.insert(
                "rate_limit_service".into(),
                json!({"cluster": crate::envoy::RATELIMIT_CLUSTER, "domain": "portcullis", "timeout": 100}),
            );
            policies.uses_rate_limit_service = true;
        } else {
            top.insert("policy".into(), json!("local"));
        }
        policies.rate_limiting = Some(Json::Object(top));
    }
    Ok(policies)
}

/// A jwt route entry for a route without jwt.
fn public_entry() -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("public".into(), json!(true));
    m
}

fn has_key(node: &Node, key: &str) -> bool {
    matches!(&node.value, Value::Map(entries) if entries.iter().any(|(k, n)| k == key && n.value != Value::Null))
}

/// A consumer by id or username (Kong's `anonymous` takes either).
fn resolve_consumer<'c>(config: &'c Config, reference: &str) -> Option<&'c super::model::Consumer> {
    config
        .consumers
        .iter()
        .find(|c| c.id.as_deref() == Some(reference))
        .or_else(|| {
            config
                .consumers
                .iter()
                .find(|c| c.username.as_deref() == Some(reference))
        })
}

/// The most specific carried instance of `name` for route `r`: route+service, route,
/// service, global.
fn most_specific(
    config: &Config,
    instances: &[(usize, Instance)],
    name: &str,
    r: usize,
) -> Option<usize> {
    let route = config.routes.get(r)?;
    let mut best: Option<(u8, usize)> = None;
    for (i, _) in instances {
        let Some(p) = config.plugins.get(*i) else {
            continue;
        };
        if p.name != name {
            continue;
        }
        let rank = match (p.route, p.service) {
            (Some(pr), Some(ps)) if pr == r && ps == route.service => 4,
            (Some(pr), None) if pr == r => 3,
            (None, Some(ps)) if ps == route.service => 2,
            (None, None) => 1,
            _ => continue,
        };
        if best.is_none_or(|(b, _)| rank > b) {
            best = Some((rank, *i));
        }
    }
    best.map(|(_, i)| i)
}

/// Reports what is not carried; reads jwt, acl and rate-limiting instances.
fn classify(
    config: &Config,
    plugin: &Plugin,
    report: &mut Report,
) -> Result<Option<Instance>, InputError> {
    let name = plugin.name.as_str();
    let what = format!("plugin {name}");
    if !plugin.enabled {
        report.add(
            &plugin.at,
            what,
            "disabled (`enabled: false`): not converted",
        );
        return Ok(None);
    }
    if plugin.consumer_group {
        report.add(
            &plugin.at,
            what,
            "scoped to a consumer group: consumer groups are not converted",
        );
        return Ok(None);
    }
    if let Some(c) = plugin.consumer {
        let label = config
            .consumers
            .get(c)
            .map_or_else(String::new, |c| c.label());
        report.add(
            &plugin.at,
            what,
            format!("scoped to consumer {label}: Portcullis's policies are per route, not per consumer; Kong would apply this instance instead of the route's or service's for that consumer"),
        );
        return Ok(None);
    }
    if let Some(r) = plugin.route {
        let route = config.routes.get(r);
        if !route.is_some_and(|r| r.carried) {
            report.add(&plugin.at, what, "on a route that is not converted");
            return Ok(None);
        }
        if let (Some(route), Some(s)) = (route, plugin.service) {
            if route.service != s {
                report.add(&plugin.at, what, "scoped to a route and a service the route does not belong to: Kong never runs it");
                return Ok(None);
            }
        }
    }
    if let Some(s) = plugin.service {
        if !config.services.get(s).is_some_and(|s| s.carried) {
            report.add(&plugin.at, what, "on a service that is not converted");
            return Ok(None);
        }
    }
    if let Some(protocols) = &plugin.protocols {
        if !protocols
            .iter()
            .any(|p| matches!(p.as_str(), "http" | "https" | "grpc" | "grpcs"))
        {
            report.add(
                &plugin.at,
                what,
                format!(
                    "runs only on protocols {}: not on the converted HTTP listener",
                    protocols.join(", ")
                ),
            );
            return Ok(None);
        }
    }
    let empty = Node {
        value: Value::Map(Vec::new()),
        seq: plugin.base.seq,
    };
    let node = plugin.config.as_ref().unwrap_or(&empty);
    let at = plugin.config_loc();
    let instance = match name {
        "jwt" => Instance::Jwt(read_jwt(node, &at, report)?),
        "acl" => match read_acl(node, &at, report)? {
            Some(acl) => Instance::Acl(acl),
            None => {
                report.add(&plugin.at, what, "no group left to judge by: not converted");
                return Ok(None);
            }
        },
        "rate-limiting" => Instance::RateLimiting(read_rate(config.format, node, &at, report)?),
        _ => {
            report.add(&plugin.at, what, elsewhere(name));
            return Ok(None);
        }
    };
    Ok(Some(instance))
}

/// Where a plugin Portcullis does not have goes in Envoy.
fn elsewhere(name: &str) -> String {
    let native = match name {
        "cors" => "use Envoy's envoy.filters.http.cors (and a cors policy on the virtual host)",
        "key-auth" | "key-auth-enc" => "use Envoy's envoy.filters.http.api_key_auth",
        "basic-auth" => "use Envoy's envoy.filters.http.basic_auth",
        "hmac-auth" | "ldap-auth" | "ldap-auth-advanced" => "use Envoy's envoy.filters.http.ext_authz with a service that checks it",
        "ip-restriction" => "use Envoy's envoy.filters.http.rbac (remote_ip / direct_remote_ip principals)",
        "bot-detection" => "use Envoy's envoy.filters.http.rbac with user-agent header matchers",
        "request-transformer" | "request-transformer-advanced" => "use the route's request_headers_to_add / request_headers_to_remove and regex_rewrite",
        "response-transformer" | "response-transformer-advanced" => "use the route's response_headers_to_add / response_headers_to_remove",
        "request-size-limiting" => "use Envoy's envoy.filters.http.buffer (max_request_bytes)",
        "proxy-cache" | "proxy-cache-advanced" => "use Envoy's envoy.filters.http.cache",
        "prometheus" => "Envoy serves its metrics, the filters' included, at the admin's /stats/prometheus",
        "statsd" | "datadog" | "statsd-advanced" => "use an Envoy stats sink (envoy.stat_sinks.statsd / dog_statsd)",
        "file-log" | "http-log" | "tcp-log" | "udp-log" | "syslog" | "loggly" | "kafka-log" => "use an Envoy access log on the connection manager (file, OpenTelemetry, …)",
        "correlation-id" => "Envoy sets x-request-id itself (the connection manager's generate_request_id)",
        "oauth2" => "use Envoy's envoy.filters.http.oauth2",
        "openid-connect" => "use Envoy's envoy.filters.http.oauth2 with jwt_authn, or Portcullis jwt with a provider (remote JWKS)",
        "request-termination" => "use a route with direct_response",
        "redirect" => "use a route with a redirect action",
        "zipkin" | "opentelemetry" => "use Envoy's tracing (the connection manager's tracing provider)",
        "aws-lambda" => "use Envoy's envoy.filters.http.aws_lambda",
        "grpc-web" => "use Envoy's envoy.filters.http.grpc_web",
        "grpc-gateway" => "use Envoy's envoy.filters.http.grpc_json_transcoder",
        "pre-function" | "post-function" => "use Envoy's envoy.filters.http.lua",
        "rate-limiting-advanced" => "convert it by hand to rate-limiting's fields (this converter reads rate-limiting), or use Envoy's local_ratelimit",
        "response-ratelimiting" => "Envoy has no counterpart (limits counted from response headers)",
        _ => "no Portcullis filter; the converter knows no Envoy counterpart",
    };
    format!("not converted: {native}")
}

#[cfg(test)]
mod tests;
