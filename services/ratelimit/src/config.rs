//! The optional static limits (`--config FILE`): limits for descriptors that arrive without
//! a `limit` override, for clients that do not send one (Envoy's own ratelimit filter
//! configured without `limit`). An override always wins over the file.
//!
//! ```json
//! { "limits": [
//!     { "domain": "edge", "entries": [{ "key": "route", "value": "users" }],
//!       "requests_per_unit": 100, "unit": "MINUTE" },
//!     { "domain": "edge", "entries": [{ "key": "remote_address" }],
//!       "requests_per_unit": 10, "unit": "SECOND" } ] }
//! ```
//!
//! A rule matches a descriptor of its domain whose entries have the same keys in the same
//! order, and the same values where the rule gives one; an entry without `value` matches
//! any value, and each value is then counted on its own (envoyproxy/ratelimit's rule). The
//! first rule that matches applies.

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use serde::Deserialize;

use crate::window::CountUnit;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    limits: Vec<RawLimit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    domain: String,
    entries: Vec<RawEntry>,
    requests_per_unit: u32,
    /// Envoy's unit names: `SECOND`, `MINUTE`, `HOUR`, `DAY`, `WEEK`, `MONTH`, `YEAR`.
    unit: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    key: String,
    value: Option<String>,
}

/// The compiled limits; empty when there is no file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    domain: String,
    /// Key, and the value it must have (`None`: any).
    entries: Vec<(String, Option<String>)>,
    limit: u32,
    unit: CountUnit,
}

impl Limits {
    /// Parses and checks the file's JSON. The error names the field:
    /// `limits[1].unit: "FORTNIGHT" is not one of SECOND, MINUTE, …`.
    pub fn from_json(bytes: &[u8]) -> Result<Limits, String> {
        let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            }
        })?;
        let rules = raw
            .limits
            .into_iter()
            .enumerate()
            .map(|(index, limit)| Rule::try_from(limit).map_err(|e| format!("limits[{index}].{e}")))
            .collect::<Result<_, _>>()?;
        Ok(Limits { rules })
    }

    /// The limit of the first rule matching `entries` in `domain`.
    pub fn find(&self, domain: &str, entries: &[Entry]) -> Option<(u32, CountUnit)> {
        self.rules
            .iter()
            .find(|rule| rule.matches(domain, entries))
            .map(|rule| (rule.limit, rule.unit))
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl TryFrom<RawLimit> for Rule {
    type Error = String;

    fn try_from(raw: RawLimit) -> Result<Rule, String> {
        if raw.domain.is_empty() {
            return Err("domain: must not be empty".to_owned());
        }
        if raw.entries.is_empty() {
            return Err("entries: want at least one".to_owned());
        }
        let unit = Unit::from_str_name(&raw.unit)
            .and_then(|unit| CountUnit::from_envoy(unit as i32))
            .ok_or_else(|| {
                format!(
                    "unit: {:?} is not one of SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, YEAR",
                    raw.unit
                )
            })?;
        Ok(Rule {
            domain: raw.domain,
            entries: raw.entries.into_iter().map(|e| (e.key, e.value)).collect(),
            limit: raw.requests_per_unit,
            unit,
        })
    }
}

impl Rule {
    fn matches(&self, domain: &str, entries: &[Entry]) -> bool {
        self.domain == domain
            && self.entries.len() == entries.len()
            && self
                .entries
                .iter()
                .zip(entries)
                .all(|((key, value), entry)| {
                    *key == entry.key && value.as_ref().is_none_or(|value| *value == entry.value)
                })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::rate_limit::Period;

    fn entries(pairs: &[(&str, &str)]) -> Vec<Entry> {
        pairs
            .iter()
            .map(|(key, value)| Entry {
                key: key.to_string(),
                value: value.to_string(),
            })
            .collect()
    }

    const CONFIG: &str = r#"{ "limits": [
        { "domain": "edge", "entries": [{ "key": "route", "value": "users" }],
          "requests_per_unit": 100, "unit": "MINUTE" },
        { "domain": "edge", "entries": [{ "key": "remote_address" }],
          "requests_per_unit": 10, "unit": "SECOND" },
        { "domain": "edge", "entries": [{ "key": "route" }, { "key": "consumer", "value": "app" }],
          "requests_per_unit": 5, "unit": "WEEK" } ] }"#;

    #[test]
    fn the_first_rule_with_the_same_keys_and_values_applies() {
        let limits = Limits::from_json(CONFIG.as_bytes()).unwrap();
        let minute = CountUnit::Calendar(Period::Minute);
        type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<(u32, CountUnit)>);
        let rows: [Row; 7] = [
            ("edge", &[("route", "users")], Some((100, minute))),
            ("edge", &[("route", "orders")], None),
            ("other", &[("route", "users")], None),
            (
                "edge",
                &[("remote_address", "10.0.0.1")],
                Some((10, CountUnit::Calendar(Period::Second))),
            ),
            (
                "edge",
                &[("route", "x"), ("consumer", "app")],
                Some((5, CountUnit::Week)),
            ),
            ("edge", &[("route", "x"), ("consumer", "web")], None),
            ("edge", &[("consumer", "app"), ("route", "x")], None),
        ];
        for (domain, pairs, expected) in rows {
            assert_eq!(
                limits.find(domain, &entries(pairs)),
                expected,
                "{domain} {pairs:?}"
            );
        }
    }

    #[test]
    fn a_broken_file_is_refused_with_the_field_named() {
        let rows = [
            ("{}", "missing field `limits` at line 1 column 2"),
            (
                r#"{"limits":[{"domain":"d","entries":[{"key":"k"}],"requests_per_unit":1,"unit":"FORTNIGHT"}]}"#,
                r#"limits[0].unit: "FORTNIGHT" is not one of SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, YEAR"#,
            ),
            (
                r#"{"limits":[{"domain":"d","entries":[],"requests_per_unit":1,"unit":"DAY"}]}"#,
                "limits[0].entries: want at least one",
            ),
            (
                r#"{"limits":[{"domain":"d","entries":[{"key":"k","val":"v"}],"requests_per_unit":1,"unit":"DAY"}]}"#,
                "limits[0].entries[0].val: unknown field `val`, expected `key` or `value` at line 1 column 52",
            ),
            (
                r#"{"limits":[{"domain":"d","entries":[{"key":"k"}],"requests_per_unit":-1,"unit":"DAY"}]}"#,
                "limits[0].requests_per_unit: invalid value: integer `-1`, expected u32 at line 1 column 71",
            ),
        ];
        for (json, message) in rows {
            assert_eq!(
                Limits::from_json(json.as_bytes()),
                Err(message.to_owned()),
                "{json}"
            );
        }
    }
}
