//! `consumer_source` as written, and checked once at configure time.

use serde::Deserialize;

use crate::config::{bounded, err, ConfigError};
use crate::identity::header_safe;

/// Where the jwt filter looks up consumers it does not know statically: portcullis-admin's
/// data-plane API, through an Envoy cluster.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsumerSource {
    /// Envoy cluster of the admin's data plane (`--data-plane-listen`).
    pub cluster: String,
    /// `:authority` of every call (default: the cluster's name).
    pub authority: Option<String>,
    /// Timeout of one call, and the longest a request waits for a lookup, in milliseconds
    /// (default 1000, 10..=60000).
    pub timeout_ms: Option<u64>,
    /// How often the change feed is read, in milliseconds (default 1000, 100..=60000): the
    /// bound on how late a change takes effect is this plus one round trip.
    pub poll_interval_ms: Option<u64>,
    /// Seconds an unknown key stays known as unknown (default 30, 0..=3600). A credential
    /// created with that key ends it at once (the feed names the key).
    pub negative_ttl: Option<u64>,
    /// Seconds cached consumers keep serving while the admin cannot be reached (Kong's
    /// `db_resurrect_ttl`; default 300, 0..=86400). Past it they are refused too.
    pub stale_ttl: Option<u64>,
    /// Credentials (and unknown keys) cached per Envoy, in shared data, and per worker
    /// (default 10000, 16..=1000000).
    pub cache_size: Option<u64>,
    /// Lookups per second per Envoy, at most (default 100, 1..=100000). Past it a request
    /// with an unknown key is refused with 503, so random keys cannot flood the admin.
    pub max_lookups_per_second: Option<u64>,
    /// Sent as `Authorization: Bearer <token>` (the admin's `--data-plane-token-file`).
    pub token: Option<String>,
}

/// The checked `consumer_source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerSource {
    pub cluster: String,
    pub authority: String,
    pub timeout_ms: u64,
    pub poll_interval_ms: u64,
    pub negative_ttl_ms: u64,
    pub stale_ttl_ms: u64,
    pub cache_size: usize,
    pub max_lookups_per_second: u32,
    pub token: Option<String>,
}

impl ConsumerSource {
    /// Checks `raw`; refusals name `path` and the field.
    pub fn compile(path: &str, raw: &RawConsumerSource) -> Result<ConsumerSource, ConfigError> {
        let at = |field: &str| format!("{path}.{field}");
        let text = |field: &str, value: &str| -> Result<String, ConfigError> {
            if value.is_empty() || !header_safe(value) {
                return Err(err(
                    at(field),
                    "must be non-empty, without control characters",
                ));
            }
            Ok(value.to_owned())
        };
        let cluster = text("cluster", &raw.cluster)?;
        let authority = text("authority", raw.authority.as_deref().unwrap_or(&cluster))?;
        let token = raw.token.as_deref().map(|t| text("token", t)).transpose()?;
        let number = |field: &str, value: Option<u64>, default: u64, min: u64, max: u64| {
            bounded(&at(field), value.unwrap_or(default), min, max)
        };
        Ok(ConsumerSource {
            authority,
            token,
            timeout_ms: number("timeout_ms", raw.timeout_ms, 1000, 10, 60_000)?,
            poll_interval_ms: number("poll_interval_ms", raw.poll_interval_ms, 1000, 100, 60_000)?,
            negative_ttl_ms: number("negative_ttl", raw.negative_ttl, 30, 0, 3600)? * 1000,
            stale_ttl_ms: number("stale_ttl", raw.stale_ttl, 300, 0, 86_400)? * 1000,
            cache_size: number("cache_size", raw.cache_size, 10_000, 16, 1_000_000)? as usize,
            max_lookups_per_second: number(
                "max_lookups_per_second",
                raw.max_lookups_per_second,
                100,
                1,
                100_000,
            )? as u32,
            cluster,
        })
    }

    /// The headers of a call to `path`.
    pub fn headers<'a>(&'a self, path: &'a str) -> Vec<(&'a str, String)> {
        let mut headers = vec![
            (":method", "GET".to_owned()),
            (":path", path.to_owned()),
            (":authority", self.authority.clone()),
            ("accept", "application/json".to_owned()),
        ];
        if let Some(token) = &self.token {
            headers.push(("authorization", format!("Bearer {token}")));
        }
        headers
    }
}

/// `key` as one path segment: every byte but RFC 3986's unreserved ones percent-encoded
/// (the admin's contract, item 5).
pub fn path_segment(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> RawConsumerSource {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = ConsumerSource::compile("consumer_source", &raw(r#"{"cluster":"admin"}"#)).unwrap();
        assert_eq!(s.authority, "admin");
        assert_eq!(
            (
                s.timeout_ms,
                s.poll_interval_ms,
                s.negative_ttl_ms,
                s.stale_ttl_ms
            ),
            (1000, 1000, 30_000, 300_000)
        );
        assert_eq!((s.cache_size, s.max_lookups_per_second), (10_000, 100));
    }

    #[test]
    fn refusals_name_the_field() {
        for (json, path) in [
            (r#"{"cluster":""}"#, "consumer_source.cluster"),
            (
                r#"{"cluster":"a","poll_interval_ms":10}"#,
                "consumer_source.poll_interval_ms",
            ),
            (
                r#"{"cluster":"a","cache_size":0}"#,
                "consumer_source.cache_size",
            ),
            (r#"{"cluster":"a","token":"x\ny"}"#, "consumer_source.token"),
            (
                r#"{"cluster":"a","max_lookups_per_second":0}"#,
                "consumer_source.max_lookups_per_second",
            ),
        ] {
            let e = ConsumerSource::compile("consumer_source", &raw(json)).unwrap_err();
            assert_eq!(e.path, path, "{json}");
        }
        assert!(
            serde_json::from_str::<RawConsumerSource>(r#"{"cluster":"a","polling":1}"#).is_err()
        );
    }

    #[test]
    fn keys_become_one_path_segment() {
        assert_eq!(path_segment("a/b c+d%é~._-"), "a%2Fb%20c%2Bd%25%C3%A9~._-");
    }

    #[test]
    fn the_token_goes_in_authorization() {
        let s = ConsumerSource::compile(
            "c",
            &raw(r#"{"cluster":"a","authority":"admin:8005","token":"t0k"}"#),
        )
        .unwrap();
        let h = s.headers("/v1/changes?after=0");
        assert!(h.contains(&(":authority", "admin:8005".to_owned())));
        assert!(h.contains(&("authorization", "Bearer t0k".to_owned())));
    }
}
