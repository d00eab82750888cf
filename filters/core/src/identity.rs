//! Who a request is: the hand-off from the jwt filter to acl and rate-limiting, in a
//! versioned format both sides share, and the Kong headers that tell the upstream.
//!
//! The encoded identity travels in Envoy filter state, which a client cannot write:
//! `set_property(["portcullis.identity"], identity.encode())` in jwt, and
//! `Identity::decode(&get_property(["portcullis.identity"])?)` in a later filter.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The filter-state property path the identity travels under.
pub const PROPERTY: &str = "portcullis.identity";

/// The format version [`Identity::encode`] writes and [`Identity::decode`] accepts.
pub const VERSION: u32 = 1;

/// An encoded identity larger than this is refused by [`Identity::decode`].
pub const MAX_ENCODED_BYTES: usize = 64 * 1024;

/// Kong's upstream identity headers, lowercase as HTTP/2 and Envoy want them.
pub mod headers {
    pub const CONSUMER_ID: &str = "x-consumer-id";
    pub const CONSUMER_CUSTOM_ID: &str = "x-consumer-custom-id";
    pub const CONSUMER_USERNAME: &str = "x-consumer-username";
    pub const CREDENTIAL_IDENTIFIER: &str = "x-credential-identifier";
    pub const CONSUMER_GROUPS: &str = "x-consumer-groups";
    pub const ANONYMOUS_CONSUMER: &str = "x-anonymous-consumer";

    /// Every identity header: a filter removes client-sent copies of all of them on every
    /// request, authenticated or not, before it sets its own.
    pub const ALL: [&str; 6] = [
        CONSUMER_ID,
        CONSUMER_CUSTOM_ID,
        CONSUMER_USERNAME,
        CREDENTIAL_IDENTIFIER,
        CONSUMER_GROUPS,
        ANONYMOUS_CONSUMER,
    ];
}

/// The authenticated (or anonymous) caller of one request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// Kong consumer `id` (defaults to the username); `None` for provider tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer_id: Option<String>,
    /// Kong consumer `username`, or the provider token's username claim (`sub`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Kong consumer `custom_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_id: Option<String>,
    /// What authenticated: the consumer credential's `key`, or the provider's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// The consumer's groups (acl matches on these), or the provider token's groups claim.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Claims the jwt policy selected (`claims_to_headers`, `identity_claims`), as strings.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
    /// No token was presented and the policy's `anonymous` consumer stands in.
    pub anonymous: bool,
}

/// Why bytes are not an identity this version understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    TooLarge(usize),
    /// A well-formed envelope from a version this build does not know.
    UnknownVersion(u64),
    Malformed(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLarge(len) => {
                write!(f, "identity of {len} bytes, limit {MAX_ENCODED_BYTES}")
            }
            DecodeError::UnknownVersion(v) => {
                write!(f, "identity format version {v}, this build reads {VERSION}")
            }
            DecodeError::Malformed(e) => write!(f, "malformed identity: {e}"),
        }
    }
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    v: u32,
    #[serde(flatten)]
    identity: &'a Identity,
}

#[derive(Deserialize)]
struct VersionProbe {
    v: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeV1 {
    #[allow(dead_code)]
    v: u64,
    #[serde(default)]
    consumer_id: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    custom_id: Option<String>,
    #[serde(default)]
    credential: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    claims: BTreeMap<String, String>,
    #[serde(default)]
    anonymous: bool,
}

impl Identity {
    /// The wire form: a JSON object with `"v": 1` beside the fields above.
    pub fn encode(&self) -> Vec<u8> {
        let envelope = EnvelopeOut {
            v: VERSION,
            identity: self,
        };
        // Serialising strings, lists and maps of strings cannot fail.
        serde_json::to_vec(&envelope).unwrap_or_default()
    }

    /// Reads [`Identity::encode`]'s output. Strict: an unknown version, an unknown field or a
    /// field of the wrong type is an error, never a guess.
    pub fn decode(bytes: &[u8]) -> Result<Identity, DecodeError> {
        if bytes.len() > MAX_ENCODED_BYTES {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        let probe: VersionProbe =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if probe.v != u64::from(VERSION) {
            return Err(DecodeError::UnknownVersion(probe.v));
        }
        let v1: EnvelopeV1 =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        Ok(Identity {
            consumer_id: v1.consumer_id,
            username: v1.username,
            custom_id: v1.custom_id,
            credential: v1.credential,
            groups: v1.groups,
            claims: v1.claims,
            anonymous: v1.anonymous,
        })
    }

    /// Kong's upstream headers for this identity; absent fields give no header (the glue has
    /// already removed client-sent copies of every name in [`headers::ALL`]).
    pub fn identity_headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(6);
        let fields = [
            (headers::CONSUMER_ID, &self.consumer_id),
            (headers::CONSUMER_CUSTOM_ID, &self.custom_id),
            (headers::CONSUMER_USERNAME, &self.username),
            (headers::CREDENTIAL_IDENTIFIER, &self.credential),
        ];
        for (name, value) in fields {
            if let Some(value) = value.as_ref().filter(|v| header_safe(v)) {
                out.push((name, value.clone()));
            }
        }
        let groups: Vec<&str> = self
            .groups
            .iter()
            .map(String::as_str)
            .filter(|g| header_safe(g) && !g.contains(','))
            .collect();
        if !groups.is_empty() {
            out.push((headers::CONSUMER_GROUPS, groups.join(", ")));
        }
        if self.anonymous {
            out.push((headers::ANONYMOUS_CONSUMER, "true".to_owned()));
        }
        out
    }
}

/// Whether `value` may become an HTTP header value: no CR, LF, NUL or other control
/// character (horizontal tab aside), which would split or truncate the header.
pub fn header_safe(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity {
            consumer_id: Some("c-1".into()),
            username: Some("alice".into()),
            custom_id: Some("ext-9".into()),
            credential: Some("alice-key".into()),
            groups: vec!["admin".into(), "ops".into()],
            claims: BTreeMap::from([("sub".into(), "alice".into())]),
            anonymous: false,
        }
    }

    #[test]
    fn round_trips_through_encode_and_decode() {
        for identity in [
            alice(),
            Identity::default(),
            Identity {
                anonymous: true,
                ..alice()
            },
        ] {
            assert_eq!(Identity::decode(&identity.encode()).unwrap(), identity);
        }
    }

    #[test]
    fn encodes_the_version_field() {
        let text = String::from_utf8(alice().encode()).unwrap();
        assert!(text.starts_with(r#"{"v":1,"#), "{text}");
    }

    #[test]
    fn decode_is_strict() {
        type Check = fn(&DecodeError) -> bool;
        let cases: [(&str, Check); 6] = [
            (r#"{"v":2,"username":"a"}"#, |e| {
                *e == DecodeError::UnknownVersion(2)
            }),
            (r#"{"v":0}"#, |e| *e == DecodeError::UnknownVersion(0)),
            (r#"{"username":"a"}"#, |e| {
                matches!(e, DecodeError::Malformed(_))
            }),
            (r#"{"v":1,"admin":true}"#, |e| {
                matches!(e, DecodeError::Malformed(_))
            }),
            (r#"{"v":1,"groups":"admin"}"#, |e| {
                matches!(e, DecodeError::Malformed(_))
            }),
            ("not json", |e| matches!(e, DecodeError::Malformed(_))),
        ];
        for (bytes, expected) in cases {
            let err = Identity::decode(bytes.as_bytes()).unwrap_err();
            assert!(expected(&err), "{bytes}: {err:?}");
        }
        let huge = vec![b' '; MAX_ENCODED_BYTES + 1];
        assert!(matches!(
            Identity::decode(&huge),
            Err(DecodeError::TooLarge(_))
        ));
    }

    #[test]
    fn gives_kong_headers_with_groups_joined() {
        let got = alice().identity_headers();
        assert_eq!(
            got,
            vec![
                ("x-consumer-id", "c-1".to_owned()),
                ("x-consumer-custom-id", "ext-9".to_owned()),
                ("x-consumer-username", "alice".to_owned()),
                ("x-credential-identifier", "alice-key".to_owned()),
                ("x-consumer-groups", "admin, ops".to_owned()),
            ]
        );
    }

    #[test]
    fn anonymous_identity_sets_the_anonymous_header() {
        let anon = Identity {
            consumer_id: Some("anon".into()),
            username: Some("anon".into()),
            anonymous: true,
            ..Identity::default()
        };
        let got = anon.identity_headers();
        assert!(got.contains(&("x-anonymous-consumer", "true".to_owned())));
        assert!(!got.iter().any(|(n, _)| *n == "x-credential-identifier"));
    }

    #[test]
    fn never_emits_a_header_value_with_cr_lf_or_nul() {
        let evil = Identity {
            username: Some("a\r\nx-admin: 1".into()),
            custom_id: Some("a\0b".into()),
            groups: vec!["ok".into(), "bad\ngroup".into(), "a,b".into()],
            ..Identity::default()
        };
        let got = evil.identity_headers();
        assert_eq!(got, vec![("x-consumer-groups", "ok".to_owned())]);
    }
}
