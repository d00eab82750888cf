//! What a filter decided for one request, as Envoy's access log shows it: one record per
//! filter per request, published as filter state `portcullis.decision.<filter>` (Envoy
//! files it under `wasm.portcullis.decision.<filter>`, read with
//! `%FILTER_STATE(wasm.portcullis.decision.jwt:PLAIN)%`). docs/access-log.md documents every
//! field and value; this module is that format's one writer.
//!
//! The record is a JSON object (`{"v":1,"filter":"jwt","outcome":"accepted",…}`) written
//! entirely in printable ASCII: a value from a token (a consumer name taken from a claim, a
//! credential key) has `"` and `\` escaped and every other character outside printable ASCII
//! as `\uXXXX`, and is cut after [`MAX_VALUE_CHARS`] characters. So whatever a token carries,
//! the record is one line of valid JSON, and an access log that embeds it as a JSON string
//! (Envoy's `json_format`) stays valid JSON. A token, a secret or a signature is never a
//! field: nothing here can carry one.

use crate::decimal::Decimal;

/// Every filter's switch for its records: `"decision_records": false` in a filter's
/// configuration (a stage's object, in the gateway) publishes no record for it, and saves
/// the request one property write and the record's encoding. Default true. Envoy's own
/// filters write such metadata only when asked (jwt_authn's `payload_in_metadata`), and
/// Kong's per-request logs are plugins one adds: an operator whose access log does not read
/// the records turns them off. The identity the jwt filter hands on is published either way.
pub const RECORDS_FIELD: &str = "decision_records";

/// The format version [`Record::encode`] writes (the record's `v`).
pub const VERSION: u32 = 1;

/// How many characters of one value (consumer, credential, route) a record keeps; a longer
/// value is cut and ends with `…` (escaped `\u2026`).
pub const MAX_VALUE_CHARS: usize = 128;

/// The filter that decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    Jwt,
    Acl,
    RateLimiting,
    TokenIssuer,
}

impl Filter {
    /// The record's `filter`.
    pub fn name(self) -> &'static str {
        match self {
            Filter::Jwt => "jwt",
            Filter::Acl => "acl",
            Filter::RateLimiting => "rate-limiting",
            Filter::TokenIssuer => "token-issuer",
        }
    }

    /// How its record begins: the version and the filter (`{"v":1,"filter":"jwt"`).
    pub fn prefix(self) -> &'static str {
        match self {
            Filter::Jwt => r#"{"v":1,"filter":"jwt""#,
            Filter::Acl => r#"{"v":1,"filter":"acl""#,
            Filter::RateLimiting => r#"{"v":1,"filter":"rate-limiting""#,
            Filter::TokenIssuer => r#"{"v":1,"filter":"token-issuer""#,
        }
    }

    /// The filter-state property the record is published under (Envoy prefixes `wasm.`).
    pub fn property(self) -> &'static str {
        match self {
            Filter::Jwt => "portcullis.decision.jwt",
            Filter::Acl => "portcullis.decision.acl",
            Filter::RateLimiting => "portcullis.decision.rate-limiting",
            Filter::TokenIssuer => "portcullis.decision.token-issuer",
        }
    }
}

/// What became of the request in one filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Let through: jwt authenticated it, acl allowed it, rate-limiting counted it within
    /// its limits.
    Accepted,
    /// Nothing to decide: no jwt policy on the route (or a CORS preflight it skips), no
    /// rate limit on the route.
    Skipped,
    /// Refused for what the client sent: jwt's 401, rate-limiting's 400 (a counted header
    /// repeated), token-issuer's 400 (a misspelt auth path) and 502 (a login answer it will
    /// not sign).
    Rejected,
    /// acl refused it: 401 without an identity, 403 for the groups.
    Denied,
    /// rate-limiting refused it: over a limit (429 or the configured `error_code`).
    Limited,
    /// token-issuer signed a token into the login answer.
    Issued,
    /// The filter could not decide: the host or a service failed (JWKS unavailable, the
    /// credential lookup unavailable, the rate limit service or the counters failing).
    /// `passed` says whether the request went on anyway (`fault_tolerant`, a fallback).
    Failed,
}

impl Outcome {
    /// The record's `outcome` field, with the comma before it.
    fn field(self) -> &'static str {
        match self {
            Outcome::Accepted => r#","outcome":"accepted""#,
            Outcome::Skipped => r#","outcome":"skipped""#,
            Outcome::Rejected => r#","outcome":"rejected""#,
            Outcome::Denied => r#","outcome":"denied""#,
            Outcome::Limited => r#","outcome":"limited""#,
            Outcome::Issued => r#","outcome":"issued""#,
            Outcome::Failed => r#","outcome":"failed""#,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Skipped => "skipped",
            Outcome::Rejected => "rejected",
            Outcome::Denied => "denied",
            Outcome::Limited => "limited",
            Outcome::Issued => "issued",
            Outcome::Failed => "failed",
        }
    }
}

/// The rate-limit window that spoke: the one with the fewest requests left (the
/// `RateLimit-*` headers' window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// `second`, `minute`, `hour`, `day`, `month` or `year`.
    pub period: &'static str,
    pub limit: u64,
    /// Requests left after this one (0 when this window refused it).
    pub remaining: u64,
}

/// One filter's decision for one request. Borrowed values: building one allocates nothing;
/// [`Record::encode`] allocates the one string published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub filter: Filter,
    pub outcome: Outcome,
    /// Why: the label of the filter's metrics (`expired`, `not_in_allow`, …).
    pub reason: Option<&'static str>,
    /// The HTTP status the filter answered with itself; `None` when it let the request on.
    pub status: Option<u16>,
    /// The consumer's username (else its id), or a provider token's username claim.
    pub consumer: Option<&'a str>,
    /// What authenticated: the credential's key (`iss`/`kid`), or the provider's name.
    pub credential: Option<&'a str>,
    /// The policy's `anonymous` consumer stood in for a request without a token.
    pub anonymous: bool,
    /// The Envoy route name, when the filter read it (its policy depends on it).
    pub route: Option<&'a str>,
    /// rate-limiting: the window that spoke.
    pub window: Option<Window>,
    /// [`Outcome::Failed`]: whether the request went on anyway.
    pub passed: Option<bool>,
}

impl<'a> Record<'a> {
    pub fn new(filter: Filter, outcome: Outcome) -> Record<'a> {
        Record {
            filter,
            outcome,
            reason: None,
            status: None,
            consumer: None,
            credential: None,
            anonymous: false,
            route: None,
            window: None,
            passed: None,
        }
    }

    pub fn reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn route(mut self, route: Option<&'a str>) -> Self {
        self.route = route;
        self
    }

    pub fn window(mut self, window: Option<Window>) -> Self {
        self.window = window;
        self
    }

    pub fn passed(mut self, passed: bool) -> Self {
        self.passed = Some(passed);
        self
    }

    /// Who the caller is, from the identity jwt established (or handed on).
    pub fn identity(mut self, identity: Option<&'a crate::identity::Identity>) -> Self {
        if let Some(identity) = identity {
            self.consumer = identity
                .username
                .as_deref()
                .or(identity.consumer_id.as_deref());
            self.credential = identity.credential.as_deref();
            self.anonymous = identity.anonymous;
        }
        self
    }

    /// The published form: one line of JSON in printable ASCII, fields in a fixed order,
    /// absent ones left out.
    pub fn encode(&self) -> String {
        let mut out = Vec::with_capacity(160);
        self.encode_into(&mut out);
        // Printable ASCII throughout: every byte pushed is a constant, a digit or a byte
        // `push_string` let through as plain.
        String::from_utf8(out).unwrap_or_default()
    }

    /// [`Record::encode`] appended to `out`, so that a caller can keep one buffer for every
    /// record (a request publishes one per stage). Each fixed part is one copy.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.filter.prefix().as_bytes());
        out.extend_from_slice(self.outcome.field().as_bytes());
        if let Some(reason) = self.reason {
            push_label(out, b",\"reason\":\"", reason);
        }
        if let Some(status) = self.status {
            out.extend_from_slice(b",\"status\":");
            push_decimal(out, u64::from(status));
        }
        if let Some(consumer) = self.consumer {
            out.extend_from_slice(b",\"consumer\":");
            push_string(out, consumer);
        }
        if let Some(credential) = self.credential {
            out.extend_from_slice(b",\"credential\":");
            push_string(out, credential);
        }
        if self.anonymous {
            out.extend_from_slice(b",\"anonymous\":true");
        }
        if let Some(route) = self.route {
            out.extend_from_slice(b",\"route\":");
            push_string(out, route);
        }
        if let Some(window) = self.window {
            push_label(out, b",\"window\":\"", window.period);
            out.extend_from_slice(b",\"limit\":");
            push_decimal(out, window.limit);
            out.extend_from_slice(b",\"remaining\":");
            push_decimal(out, window.remaining);
        }
        match self.passed {
            Some(true) => out.extend_from_slice(b",\"passed\":true"),
            Some(false) => out.extend_from_slice(b",\"passed\":false"),
            None => {}
        }
        out.push(b'}');
    }
}

/// `key` (`,"name":"`, opening the quote) and a label of ours (`jwt`, `accepted`, a metric
/// label, a window): printable ASCII without `"` or `\\` by construction, so quoted as it is.
fn push_label(out: &mut Vec<u8>, key: &[u8], label: &'static str) {
    debug_assert!(label.bytes().all(is_plain), "{label}");
    out.extend_from_slice(key);
    out.extend_from_slice(label.as_bytes());
    out.push(b'"');
}

/// Printable ASCII that JSON takes as it is.
fn is_plain(b: u8) -> bool {
    matches!(b, b' '..=b'~') && b != b'"' && b != b'\\'
}

/// `value` as a JSON string in printable ASCII, cut after [`MAX_VALUE_CHARS`] characters.
/// Runs of plain characters are copied whole: a usual value is one copy, and one that is
/// short and plain throughout (a consumer name, a key, a route) is checked byte by byte.
fn push_string(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    if value.len() <= MAX_VALUE_CHARS && value.bytes().all(is_plain) {
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
        return;
    }
    let mut plain_from = 0;
    let mut end = value.len();
    let mut cut = false;
    for (count, (i, c)) in value.char_indices().enumerate() {
        if count == MAX_VALUE_CHARS {
            end = i;
            cut = true;
            break;
        }
        if c.is_ascii() && is_plain(c as u8) {
            continue;
        }
        out.extend_from_slice(value.as_bytes().get(plain_from..i).unwrap_or_default());
        plain_from = i + c.len_utf8();
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    push_unicode_escape(out, *unit);
                }
            }
        }
    }
    out.extend_from_slice(value.as_bytes().get(plain_from..end).unwrap_or_default());
    if cut {
        out.extend_from_slice(b"\\u2026");
    }
    out.push(b'"');
}

fn push_unicode_escape(out: &mut Vec<u8>, unit: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hex = |shift: u16| {
        HEX.get(usize::from((unit >> shift) & 0xf))
            .copied()
            .unwrap_or(b'0')
    };
    out.extend_from_slice(&[b'\\', b'u', hex(12), hex(8), hex(4), hex(0)]);
}

/// `n` in decimal ([`Decimal`]).
fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(Decimal::new(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn parse(record: &Record<'_>) -> serde_json::Value {
        let text = record.encode();
        assert!(
            text.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "not printable ASCII: {text}"
        );
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    #[test]
    fn writes_the_version_filter_and_outcome_first() {
        let text = Record::new(Filter::Jwt, Outcome::Accepted).encode();
        assert_eq!(text, r#"{"v":1,"filter":"jwt","outcome":"accepted"}"#);
    }

    #[test]
    fn writes_every_field_in_a_fixed_order() {
        let identity = Identity {
            username: Some("alice".into()),
            consumer_id: Some("c-1".into()),
            credential: Some("alice-key".into()),
            ..Identity::default()
        };
        let record = Record::new(Filter::RateLimiting, Outcome::Limited)
            .reason("limited")
            .status(429)
            .identity(Some(&identity))
            .route(Some("payments"))
            .window(Some(Window {
                period: "minute",
                limit: 20,
                remaining: 0,
            }));
        assert_eq!(
            record.encode(),
            r#"{"v":1,"filter":"rate-limiting","outcome":"limited","reason":"limited","status":429,"consumer":"alice","credential":"alice-key","route":"payments","window":"minute","limit":20,"remaining":0}"#
        );
        let failed = Record::new(Filter::RateLimiting, Outcome::Failed)
            .reason("service_failed")
            .passed(true);
        assert_eq!(
            failed.encode(),
            r#"{"v":1,"filter":"rate-limiting","outcome":"failed","reason":"service_failed","passed":true}"#
        );
    }

    #[test]
    fn the_consumer_is_the_username_else_the_id_and_anonymous_is_marked() {
        let anon = Identity {
            consumer_id: Some("anon-id".into()),
            anonymous: true,
            ..Identity::default()
        };
        let v = parse(&Record::new(Filter::Acl, Outcome::Accepted).identity(Some(&anon)));
        assert_eq!(v["consumer"], "anon-id");
        assert_eq!(v["anonymous"], true);
        assert!(v.get("credential").is_none());
        let none = Record::new(Filter::Acl, Outcome::Denied).identity(None);
        assert!(parse(&none).get("consumer").is_none());
    }

    #[test]
    fn hostile_values_stay_one_line_of_valid_ascii_json() {
        let hostile = [
            "quote\" and \\ backslash",
            "line\r\nbreak {\"outcome\":\"accepted\"}",
            "nul\0 esc\u{1b}[31m del\u{7f}",
            "é ✓ 😀 \u{2028}\u{2029}",
            "\u{fffd}",
            "",
        ];
        for value in hostile {
            let record = Record::new(Filter::Jwt, Outcome::Accepted)
                .route(Some(value))
                .identity(None);
            let record = Record {
                consumer: Some(value),
                credential: Some(value),
                ..record
            };
            let v = parse(&record);
            assert_eq!(v["consumer"], value, "{value:?}");
            assert_eq!(v["credential"], value);
            assert_eq!(v["route"], value);
            assert_eq!(v["outcome"], "accepted", "a value cannot add a field");
        }
    }

    #[test]
    fn a_long_value_is_cut_after_max_value_chars() {
        let long = "x".repeat(100_000);
        let record = Record {
            consumer: Some(&long),
            ..Record::new(Filter::Jwt, Outcome::Accepted)
        };
        let v = parse(&record);
        let expected = format!("{}…", "x".repeat(MAX_VALUE_CHARS));
        assert_eq!(v["consumer"], expected.as_str());
        // Characters, not bytes: a character outside the BMP is never split.
        let wide = "😀".repeat(MAX_VALUE_CHARS + 1);
        let record = Record {
            consumer: Some(&wide),
            ..Record::new(Filter::Jwt, Outcome::Accepted)
        };
        let expected = format!("{}…", "😀".repeat(MAX_VALUE_CHARS));
        assert_eq!(parse(&record)["consumer"], expected.as_str());
        let exact = "y".repeat(MAX_VALUE_CHARS);
        let record = Record {
            consumer: Some(&exact),
            ..Record::new(Filter::Jwt, Outcome::Accepted)
        };
        assert_eq!(parse(&record)["consumer"], exact.as_str());
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0u64, 7, 10, 429, 1_000_000, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn the_fixed_parts_spell_the_version_each_filter_and_each_outcome() {
        let outcomes = [
            Outcome::Accepted,
            Outcome::Skipped,
            Outcome::Rejected,
            Outcome::Denied,
            Outcome::Limited,
            Outcome::Issued,
            Outcome::Failed,
        ];
        for filter in [
            Filter::Jwt,
            Filter::Acl,
            Filter::RateLimiting,
            Filter::TokenIssuer,
        ] {
            for outcome in outcomes {
                let v = parse(&Record::new(filter, outcome));
                assert_eq!(v["v"], VERSION);
                assert_eq!(v["filter"], filter.name());
                assert_eq!(v["outcome"], outcome.name());
            }
        }
    }

    #[test]
    fn records_append_to_a_kept_buffer() {
        let mut out = b"left as it was".to_vec();
        let record = Record::new(Filter::Acl, Outcome::Denied).status(403);
        record.encode_into(&mut out);
        assert_eq!(
            out,
            [b"left as it was".as_slice(), record.encode().as_bytes()].concat()
        );
    }

    #[test]
    fn every_filter_publishes_under_its_own_property() {
        for filter in [
            Filter::Jwt,
            Filter::Acl,
            Filter::RateLimiting,
            Filter::TokenIssuer,
        ] {
            assert_eq!(
                filter.property(),
                format!("portcullis.decision.{}", filter.name())
            );
        }
    }
}
