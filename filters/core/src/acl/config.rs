//! The acl filter's configuration as written (JSON, Kong's field names), and its compilation
//! into an [`AclPolicySet`]; every refusal names the JSON path it is about.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{Access, AclPolicySet, GroupSource, RouteAcl, Rule};
use crate::config::{self, err, ConfigError};
use crate::identity::header_safe;

/// Who may pass on a route: exactly one of `allow`, `deny`, `any_consumer: true` and
/// `public: true`. At the top level it is the default policy, for every route not under
/// `routes`; in a route it replaces the default (it is not merged with it).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccess {
    /// Kong's `allow`: the consumer must belong to a listed group (with the rule's method,
    /// if it lists methods). A consumer without groups is refused. Not empty.
    pub allow: Option<Vec<RawRule>>,
    /// Kong's `deny`: the consumer must belong to no listed group (with the rule's method,
    /// if it lists methods). A consumer without groups passes. Not empty.
    pub deny: Option<Vec<RawRule>>,
    /// Any request with an identity passes, whatever its groups; one without is still 401.
    /// For routes open to every authenticated consumer.
    pub any_consumer: Option<bool>,
    /// acl does not judge the route at all: even a request without identity passes.
    /// Pitfall: nothing then stops an unauthenticated request but the filters before acl.
    pub public: Option<bool>,
    /// Kong's `hide_groups_header`: the upstream gets no `X-Consumer-Groups` (default false;
    /// a route without it inherits the top level's).
    pub hide_groups_header: Option<bool>,
    /// On a route whose rules name methods, refuse (403) any request that carries a
    /// method-override header (`X-HTTP-Method-Override`, `X-HTTP-Method`,
    /// `X-Method-Override`) instead of judging it under every method it names (default
    /// false; a route without it inherits the top level's). For upstreams that honour such
    /// headers and clients that never need them.
    pub refuse_method_override: Option<bool>,
}

/// One entry of `allow` or `deny`: a group name (`"admins"`), or a group with the methods it
/// applies to (`{"group": "customers", "methods": ["GET", "HEAD"]}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRule {
    /// Matched exactly and case-sensitively against the consumer's groups.
    pub group: String,
    /// Methods the rule applies to, written in upper case and matched whatever the case a
    /// client sends (`GET` matches `get`: many upstreams upper-case the method, so a `deny`
    /// on `DELETE` must stop `delete` too). `HEAD` is not implied by `GET`. `None`: every
    /// method.
    pub methods: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScopedRule {
    group: String,
    methods: Vec<String>,
}

impl<'de> Deserialize<'de> for RawRule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RuleVisitor)
    }
}

struct RuleVisitor;

impl<'de> Visitor<'de> for RuleVisitor {
    type Value = RawRule;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a group name, or {"group": …, "methods": […]}"#)
    }

    fn visit_str<E: de::Error>(self, group: &str) -> Result<RawRule, E> {
        Ok(RawRule {
            group: group.to_owned(),
            methods: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawRule, A::Error> {
        let scoped = RawScopedRule::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(RawRule {
            group: scoped.group,
            methods: Some(scoped.methods),
        })
    }
}

/// The configuration as written: the default policy's [`RawAccess`] fields, where groups
/// come from, and `routes`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAclConfig {
    /// See [`RawAccess::allow`].
    pub allow: Option<Vec<RawRule>>,
    /// See [`RawAccess::deny`].
    pub deny: Option<Vec<RawRule>>,
    /// See [`RawAccess::any_consumer`].
    pub any_consumer: Option<bool>,
    /// See [`RawAccess::public`].
    pub public: Option<bool>,
    /// See [`RawAccess::hide_groups_header`].
    pub hide_groups_header: Option<bool>,
    /// See [`RawAccess::refuse_method_override`].
    pub refuse_method_override: Option<bool>,
    /// Use the groups configured for the consumer in the jwt filter (default true).
    pub consumer_groups: Option<bool>,
    /// Also take groups from this claim of the identity: a string (`"admins"` or
    /// `"admins, ops"`) or an array of strings. Pitfall: the jwt filter hands acl only the
    /// claims it is told to; list this one in its `identity_claims` (a provider's own
    /// `groups_claim` lands in the consumer groups instead).
    pub groups_claim: Option<String>,
    /// Envoy route name → that route's policy. The names cannot be checked against Envoy's
    /// route table (a filter never sees it): a misspelt name silently falls to the default.
    #[serde(default)]
    pub routes: BTreeMap<String, RawAccess>,
    /// See [`crate::decision::RECORDS_FIELD`] (default true).
    pub decision_records: Option<bool>,
}

impl RawAclConfig {
    /// Reads the JSON configuration. Unknown fields, wrong types and repeated member names
    /// are refused with their path.
    pub fn from_json(bytes: &[u8]) -> Result<RawAclConfig, ConfigError> {
        config::from_json(bytes)
    }
}

impl TryFrom<RawAclConfig> for AclPolicySet {
    type Error = ConfigError;

    fn try_from(raw: RawAclConfig) -> Result<AclPolicySet, ConfigError> {
        let groups = GroupSource {
            consumer_groups: raw.consumer_groups.unwrap_or(true),
            claim: raw.groups_claim.clone(),
        };
        if let Some(claim) = &groups.claim {
            if claim.is_empty() {
                return Err(err("groups_claim", "must not be empty"));
            }
        }
        if !groups.consumer_groups && groups.claim.is_none() {
            return Err(err(
                "consumer_groups",
                "false leaves no source of groups: set groups_claim",
            ));
        }
        let top = RawAccess {
            allow: raw.allow,
            deny: raw.deny,
            any_consumer: raw.any_consumer,
            public: raw.public,
            hide_groups_header: raw.hide_groups_header,
            refuse_method_override: raw.refuse_method_override,
        };
        let inherited = Inherited {
            hide_groups_header: top.hide_groups_header.unwrap_or(false),
            refuse_method_override: top.refuse_method_override.unwrap_or(false),
        };
        let default = compile_route("", None, &top, inherited)?;
        let mut routes = Vec::with_capacity(raw.routes.len());
        let mut by_name = HashMap::with_capacity(raw.routes.len());
        for (name, access) in &raw.routes {
            if name.is_empty() {
                return Err(err("routes", "empty route name"));
            }
            let prefix = format!("routes.{name}");
            by_name.insert(name.clone(), routes.len());
            routes.push(compile_route(&prefix, Some(name), access, inherited)?);
        }
        Ok(AclPolicySet {
            default,
            routes,
            by_name,
            groups,
            decision_records: raw.decision_records.unwrap_or(true),
        })
    }
}

fn at(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

/// What a route without its own setting takes from the top level.
#[derive(Clone, Copy)]
struct Inherited {
    hide_groups_header: bool,
    refuse_method_override: bool,
}

fn compile_route(
    prefix: &str,
    name: Option<&str>,
    raw: &RawAccess,
    inherited: Inherited,
) -> Result<RouteAcl, ConfigError> {
    let mut chosen = Vec::new();
    if let Some(rules) = &raw.allow {
        chosen.push(Access::Allow(compile_rules(&at(prefix, "allow"), rules)?));
    }
    if let Some(rules) = &raw.deny {
        chosen.push(Access::Deny(compile_rules(&at(prefix, "deny"), rules)?));
    }
    if raw.any_consumer == Some(true) {
        chosen.push(Access::AnyConsumer);
    }
    if raw.public == Some(true) {
        chosen.push(Access::Public);
    }
    let access = match (chosen.pop(), chosen.is_empty()) {
        (Some(access), true) => access,
        (last, _) => {
            let what = if last.is_none() {
                "none is set"
            } else {
                "several are set"
            };
            let whose = if prefix.is_empty() {
                " (the default policy, for routes not under `routes`)"
            } else {
                ""
            };
            return Err(err(
                prefix,
                format!(
                    "set exactly one of `allow`, `deny`, `any_consumer: true` and \
                     `public: true`{whose}: {what}"
                ),
            ));
        }
    };
    Ok(RouteAcl {
        name: name.map(str::to_owned),
        access,
        hide_groups_header: raw
            .hide_groups_header
            .unwrap_or(inherited.hide_groups_header),
        refuse_method_override: raw
            .refuse_method_override
            .unwrap_or(inherited.refuse_method_override),
    })
}

fn compile_rules(path: &str, rules: &[RawRule]) -> Result<Vec<Rule>, ConfigError> {
    if rules.is_empty() {
        return Err(err(path, "must not be empty"));
    }
    rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let here = format!("{path}[{i}]");
            check_group(&here, &rule.group)?;
            let methods = match &rule.methods {
                None => None,
                Some(methods) => Some(check_methods(&format!("{here}.methods"), methods)?),
            };
            Ok(Rule {
                group: rule.group.clone(),
                methods,
            })
        })
        .collect()
}

fn check_group(path: &str, group: &str) -> Result<(), ConfigError> {
    let problem = if group.is_empty() {
        "empty group name"
    } else if group.contains(',') {
        "a group name cannot contain ',' (X-Consumer-Groups separates groups with it)"
    } else if !header_safe(group) {
        "a group name cannot contain control characters"
    } else if group.trim() != group {
        "a group name cannot start or end with whitespace (matching is exact)"
    } else {
        return Ok(());
    };
    Err(err(path, format!("{group:?}: {problem}")))
}

fn check_methods(path: &str, methods: &[String]) -> Result<Vec<String>, ConfigError> {
    if methods.is_empty() {
        return Err(err(path, "must not be empty"));
    }
    for (i, method) in methods.iter().enumerate() {
        let token = !method.is_empty()
            && method
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token || method.bytes().any(|b| b.is_ascii_lowercase()) {
            return Err(err(
                format!("{path}[{i}]"),
                format!(
                    "{method:?} is not a method token in upper case: write methods as \
                     HTTP defines them (\"GET\"); requests match whatever their case"
                ),
            ));
        }
    }
    Ok(methods.to_vec())
}
