//! Counter keys: `{<domain>}:<entries>:<unit>:<window start>`.
//!
//! The domain in braces is a Redis Cluster hash tag: every key of one request lands on one
//! slot, so the one script that checks and counts them all can run there. Entries are
//! `key=value` joined by `,`; in the domain, keys and values `%`, `{`, `}`, `:`, `=` and `,`
//! are percent-escaped, so no two descriptors (nor two domains) share a key, and no domain
//! can end the hash tag early.

use std::fmt::Write as _;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;

use crate::window::CountUnit;

/// The key counting `entries` of `domain` in the `unit` window that starts at `window_start`.
pub fn counter_key(domain: &str, entries: &[Entry], unit: CountUnit, window_start: u64) -> String {
    let mut key = String::with_capacity(domain.len() + 32);
    key.push('{');
    escape_into(&mut key, domain);
    key.push_str("}:");
    for (n, entry) in entries.iter().enumerate() {
        if n > 0 {
            key.push(',');
        }
        escape_into(&mut key, &entry.key);
        key.push('=');
        escape_into(&mut key, &entry.value);
    }
    // Writing to a String cannot fail.
    let _ = write!(key, ":{}:{window_start}", unit.name());
    key
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '%' | '{' | '}' | ':' | '=' | ',' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            _ => out.push(c),
        }
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

    const MINUTE: CountUnit = CountUnit::Calendar(Period::Minute);

    #[test]
    fn keys_read_domain_entries_unit_and_window() {
        let key = counter_key(
            "edge",
            &entries(&[("route", "users"), ("ip", "10.0.0.1")]),
            MINUTE,
            60,
        );
        assert_eq!(key, "{edge}:route=users,ip=10.0.0.1:minute:60");
    }

    #[test]
    fn separators_inside_names_never_make_two_descriptors_collide() {
        let pairs: [&[(&str, &str)]; 4] = [
            &[("a", "b,c=d")],
            &[("a", "b"), ("c", "d")],
            &[("a=b", "c")],
            &[("a", "b:minute:0")],
        ];
        let keys: Vec<String> = pairs
            .iter()
            .map(|p| counter_key("d", &entries(p), MINUTE, 0))
            .collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn a_domain_cannot_close_the_hash_tag_early() {
        let key = counter_key("a}b{c", &entries(&[("k", "v")]), MINUTE, 0);
        assert_eq!(key, "{a%7Db%7Bc}:k=v:minute:0");
    }

    #[test]
    fn the_unit_and_window_tell_counters_apart() {
        let e = entries(&[("k", "v")]);
        assert_ne!(
            counter_key("d", &e, MINUTE, 0),
            counter_key("d", &e, MINUTE, 60)
        );
        assert_ne!(
            counter_key("d", &e, MINUTE, 0),
            counter_key("d", &e, CountUnit::Calendar(Period::Hour), 0)
        );
    }
}
