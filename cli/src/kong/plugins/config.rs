//! Reading the `config` of Kong's jwt, acl and rate-limiting plugins into typed
//! configurations with Kong's defaults, reporting the fields not carried over.

use super::super::fields::{self, Fields, METADATA};
use super::super::input::{Node, Value};
use super::super::model::Format;
use crate::report::{Loc, Report};
use crate::InputError;

#[derive(Clone, Debug)]
pub struct JwtConf {
    pub uri_param_names: Vec<String>,
    pub cookie_names: Vec<String>,
    pub header_names: Vec<String>,
    pub key_claim_name: String,
    pub claims_to_verify: Vec<String>,
    pub maximum_expiration: u64,
    pub secret_is_base64: bool,
    pub anonymous: Option<(Loc, String)>,
    pub run_on_preflight: bool,
    pub realm: Option<String>,
}

#[derive(Clone, Debug)]
pub struct AclConf {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub hide_groups_header: bool,
}

#[derive(Clone, Debug)]
pub struct RateConf {
    pub limits: Vec<(&'static str, u64)>,
    pub limit_by: String,
    pub header_name: Option<String>,
    pub path: Option<String>,
    /// Kong's policy: local, cluster or redis.
    pub policy: String,
    pub policy_at: Loc,
    pub fault_tolerant: bool,
    pub hide_client_headers: bool,
    pub error_code: u16,
    pub error_message: String,
}

pub const WINDOWS: [&str; 6] = ["second", "minute", "hour", "day", "month", "year"];

/// What becomes of a `config` field the reader did not take.
enum Leftover {
    /// Not a field of Kong's plugin.
    Unknown,
    /// Kong's field, without effect here (reading it changes nothing a request gets).
    Inert,
    /// Kong's field, not carried: why.
    Reported(String),
}

/// Reports the `config` fields the reader did not take: unknown ones, and known ones not at
/// their default (`defaults`) that `why` says are not carried.
fn leftovers(
    f: Fields,
    plugin: &str,
    defaults: &[(&str, &Node)],
    report: &mut Report,
    why: impl Fn(&str) -> Leftover,
) {
    for (at, key, node) in f.rest() {
        if METADATA.contains(&key) {
            continue;
        }
        if let Some((_, default)) = defaults.iter().find(|(k, _)| *k == key) {
            if fields::show(node) == fields::show(default) {
                continue;
            }
        }
        match why(key) {
            Leftover::Inert => {}
            Leftover::Reported(why) => {
                report.add(&at, format!("{plugin} {key} ({})", fields::show(node)), why)
            }
            Leftover::Unknown => report.add(
                &at,
                format!("unknown {plugin} field {key}"),
                "not a field of Kong's plugin: ignored",
            ),
        }
    }
}

fn node(value: Value) -> Node {
    Node { value, seq: 0 }
}

pub fn read_jwt(config: &Node, at: &Loc, report: &mut Report) -> Result<JwtConf, InputError> {
    let mut f = Fields::of(config, at)?;
    let list = |f: &mut Fields, key: &str, default: &[&str]| -> Result<Vec<String>, InputError> {
        Ok(f.strings(key)?
            .unwrap_or_else(|| default.iter().map(|s| (*s).to_owned()).collect()))
    };
    let uri_param_names = list(&mut f, "uri_param_names", &["jwt"])?;
    let cookie_names = list(&mut f, "cookie_names", &[])?;
    let header_names = list(&mut f, "header_names", &["authorization"])?;
    let key_claim_name = f
        .string("key_claim_name")?
        .unwrap_or_else(|| "iss".to_owned());
    let claims_at = f.loc("claims_to_verify");
    let claims_to_verify = list(&mut f, "claims_to_verify", &[])?;
    for c in &claims_to_verify {
        if c != "exp" && c != "nbf" {
            return Err(InputError::at(
                &claims_at,
                format!("{c:?}: Kong verifies \"exp\" and \"nbf\" only"),
            ));
        }
    }
    let max_at = f.loc("maximum_expiration");
    let maximum_expiration = match f.int("maximum_expiration")? {
        None => 0,
        Some(m) => u64::try_from(m)
            .ok()
            .filter(|m| *m <= 31_536_000)
            .ok_or_else(|| InputError::at(&max_at, format!("not 0..=31536000: {m}")))?,
    };
    if maximum_expiration > 0 && !claims_to_verify.iter().any(|c| c == "exp") {
        return Err(InputError::at(
            &max_at,
            "Kong needs \"exp\" in claims_to_verify for maximum_expiration",
        ));
    }
    let secret_is_base64 = f.bool("secret_is_base64")?.unwrap_or(false);
    let anonymous_at = f.loc("anonymous");
    let anonymous = f
        .string("anonymous")?
        .filter(|a| !a.is_empty())
        .map(|a| (anonymous_at, a));
    let run_on_preflight = f.bool("run_on_preflight")?.unwrap_or(true);
    let realm = f.string("realm")?;
    leftovers(f, "jwt", &[], report, |_| Leftover::Unknown);
    Ok(JwtConf {
        uri_param_names,
        cookie_names,
        header_names,
        key_claim_name,
        claims_to_verify,
        maximum_expiration,
        secret_is_base64,
        anonymous,
        run_on_preflight,
        realm,
    })
}

pub fn read_acl(
    config: &Node,
    at: &Loc,
    report: &mut Report,
) -> Result<Option<AclConf>, InputError> {
    let mut f = Fields::of(config, at)?;
    let mut lists = Vec::new();
    for (key, old) in [("allow", "whitelist"), ("deny", "blacklist")] {
        let chosen = if f.has(key) { key } else { old };
        let list_at = f.loc(chosen);
        let seqs: Vec<u32> = match f.get(chosen).map(|n| &n.value) {
            Some(Value::Seq(items)) => items.iter().map(|n| n.seq).collect(),
            _ => Vec::new(),
        };
        let list = f.strings(chosen)?;
        let _ = f.get(old);
        lists.push(list.map(|l| {
            l.into_iter()
                .enumerate()
                .filter(|(i, g)| match group_problem(g) {
                    None => true,
                    Some(why) => {
                        report.add(
                            &list_at.index(*i, seqs.get(*i).copied().unwrap_or(list_at.seq)),
                            format!("group {g:?}"),
                            format!("{why}: Portcullis refuses such group names (X-Consumer-Groups is comma-separated); not converted"),
                        );
                        false
                    }
                })
                .map(|(_, g)| g)
                .collect::<Vec<String>>()
        }));
    }
    let deny = lists.pop().flatten();
    let allow = lists.pop().flatten();
    let allow_empty_given = allow.as_ref().is_some_and(|a| a.is_empty());
    let deny_empty_given = deny.as_ref().is_some_and(|d| d.is_empty());
    let hide_groups_header = f.bool("hide_groups_header")?.unwrap_or(false);
    let f_at = f.at.clone();
    let defaults_false = node(Value::Bool(false));
    leftovers(
        f,
        "acl",
        &[
            ("include_consumer_groups", &defaults_false),
            ("always_use_authenticated_groups", &defaults_false),
        ],
        report,
        |key| {
            match key {
            "include_consumer_groups" => Leftover::Reported("consumer groups are not converted: only the consumer's own ACL groups count".to_owned()),
            "always_use_authenticated_groups" => Leftover::Reported("groups come from the identity jwt hands on; there are no other authenticated groups".to_owned()),
            _ => Leftover::Unknown,
        }
        },
    );
    match (&allow, &deny) {
        (Some(_), Some(_)) if !allow_empty_given && !deny_empty_given => {
            return Err(InputError::at(
                &f_at,
                "allow and deny together: Kong takes one of them",
            ))
        }
        (None, None) => {
            return Err(InputError::at(
                &f_at,
                "neither allow nor deny: Kong needs one of them",
            ))
        }
        _ => {}
    }
    let allow = allow.filter(|a| !a.is_empty());
    let deny = deny.filter(|d| !d.is_empty());
    if allow.is_none() && deny.is_none() {
        return Ok(None);
    }
    Ok(Some(AclConf {
        allow,
        deny,
        hide_groups_header,
    }))
}

/// Why Portcullis would refuse a group name (the acl filter's rule), if it would.
pub fn group_problem(group: &str) -> Option<&'static str> {
    if group.is_empty() {
        Some("empty")
    } else if group.contains(',') {
        Some("holds a comma")
    } else if group.chars().any(char::is_control) {
        Some("holds a control character")
    } else if group.trim() != group {
        Some("starts or ends with whitespace")
    } else {
        None
    }
}

pub fn read_rate(
    format: Format,
    config: &Node,
    at: &Loc,
    report: &mut Report,
) -> Result<RateConf, InputError> {
    let mut f = Fields::of(config, at)?;
    let mut limits = Vec::new();
    for window in WINDOWS {
        let w_at = f.loc(window);
        if let Some(v) = f.number(window)? {
            if v.is_nan() || v <= 0.0 {
                return Err(InputError::at(
                    &w_at,
                    format!("must be greater than 0: {v}"),
                ));
            }
            let whole = v.floor().max(1.0);
            if whole != v {
                report.add(
                    &w_at,
                    format!("rate-limiting {window} ({v})"),
                    format!("Portcullis counts whole requests: limited to {whole}"),
                );
            }
            limits.push((window, whole.min(1e15) as u64));
        }
    }
    if limits.is_empty() {
        return Err(InputError::at(
            at,
            "no limit: Kong needs one of second, minute, hour, day, month, year",
        ));
    }
    for (i, (w1, l1)) in limits.iter().enumerate() {
        for (w2, l2) in limits.iter().skip(i + 1) {
            if l2 < l1 {
                return Err(InputError::at(
                    &f.loc(w2),
                    format!(
                        "the limit for {w2}({l2}) cannot be lower than the limit for {w1}({l1})"
                    ),
                ));
            }
        }
    }
    let limit_by_at = f.loc("limit_by");
    let mut limit_by = f
        .string("limit_by")?
        .unwrap_or_else(|| "consumer".to_owned());
    match limit_by.as_str() {
        "consumer" | "credential" | "ip" | "service" | "header" | "path" => {}
        "consumer-group" => {
            report.add(
                &limit_by_at,
                "rate-limiting limit_by (\"consumer-group\")",
                "consumer groups are not converted: counted per consumer",
            );
            limit_by = "consumer".to_owned();
        }
        other => {
            return Err(InputError::at(
                &limit_by_at,
                format!("{other:?}: not one of Kong's limit_by values"),
            ))
        }
    }
    let header_name = f.string("header_name")?;
    let path = f.string("path")?;
    if limit_by == "header" && header_name.is_none() {
        return Err(InputError::at(
            &f.loc("header_name"),
            "limit_by header needs header_name",
        ));
    }
    if limit_by == "path" && path.is_none() {
        return Err(InputError::at(&f.loc("path"), "limit_by path needs path"));
    }
    let header_name = header_name.filter(|_| limit_by == "header");
    let path = path.filter(|_| limit_by == "path");
    let policy_at = f.loc("policy");
    let policy = f.string("policy")?.unwrap_or_else(|| {
        if format == Format::V3_0 {
            "local"
        } else {
            "cluster"
        }
        .to_owned()
    });
    if !matches!(policy.as_str(), "local" | "cluster" | "redis") {
        return Err(InputError::at(
            &policy_at,
            format!("{policy:?}: local, cluster or redis"),
        ));
    }
    let fault_tolerant = f.bool("fault_tolerant")?.unwrap_or(true);
    let hide_client_headers = f.bool("hide_client_headers")?.unwrap_or(false);
    let code_at = f.loc("error_code");
    let error_code = match f.number("error_code")? {
        None => 429,
        Some(c) if c.fract() == 0.0 && (400.0..=599.0).contains(&c) => c as u16,
        Some(c) => {
            report.add(
                &code_at,
                format!("rate-limiting error_code ({c})"),
                "Portcullis answers refusals with a status in 400..=599: 429 instead",
            );
            429
        }
    };
    let message_at = f.loc("error_message");
    let mut error_message = f
        .string("error_message")?
        .unwrap_or_else(|| "API rate limit exceeded".to_owned());
    if error_message.len() > 1024 {
        report.add(
            &message_at,
            "rate-limiting error_message",
            "longer than the 1024 bytes Portcullis sends: Kong's default message instead",
        );
        error_message = "API rate limit exceeded".to_owned();
    }
    let redis = policy == "redis";
    let minus_one = node(Value::Int(-1));
    leftovers(
        f,
        "rate-limiting",
        &[("sync_rate", &minus_one)],
        report,
        |key| {
            if key == "sync_rate" {
                Leftover::Reported("not built: Portcullis counts every request where it is counted (shared data, or the rate limit service)".to_owned())
            } else if key == "redis" || key.starts_with("redis_") {
                // Kong reads them only with policy redis.
                if redis {
                    Leftover::Reported("the rate limit service's own setting (its Redis), not the gateway's: configure services/ratelimit with it".to_owned())
                } else {
                    Leftover::Inert
                }
            } else {
                Leftover::Unknown
            }
        },
    );
    Ok(RateConf {
        limits,
        limit_by,
        header_name,
        path,
        policy,
        policy_at,
        fault_tolerant,
        hide_client_headers,
        error_code,
        error_message,
    })
}
