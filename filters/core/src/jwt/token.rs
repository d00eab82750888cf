//! The strict compact-JWS parser: three base64url segments, JSON-object header and payload
//! without duplicate members, a supported `alg`, no `crit` it does not understand.

use std::fmt;

use serde_json::Value;

use super::object::{JsonObject, ObjectError};
use crate::config::StrictError;
use crate::jose::base64url;
use crate::jose::crypto::{ecdsa_in_range, Algorithm, Family};

/// Which part of the token a problem is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    Header,
    Payload,
    Signature,
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Segment::Header => "header",
            Segment::Payload => "payload",
            Segment::Signature => "signature",
        })
    }
}

/// Why a token is not a well-formed JWS this crate accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Longer than the configured `max_token_bytes`.
    TooLarge { len: usize, max: usize },
    /// Not exactly three dot-separated segments (a JWE has five).
    Segments(usize),
    /// Not unpadded base64url: padding, whitespace, `+` or `/`, or stray trailing bits.
    Base64(Segment),
    /// Not valid JSON (or not UTF-8).
    Json(Segment),
    /// Valid JSON, but not an object.
    NotObject(Segment),
    /// The same member name twice in one object.
    DuplicateMember(Segment),
    /// No `alg`, or `alg` not a string.
    AlgMissing,
    /// `alg: none`, in any letter case.
    AlgNone,
    /// An `alg` this crate does not verify.
    AlgUnsupported,
    /// `crit` malformed, or naming an extension this crate does not implement.
    Crit,
    /// `b64: false` (RFC 7797 unencoded payload) or a non-boolean `b64`.
    B64,
    /// `kid` present but not a string.
    Kid,
    /// The signature length does not fit the algorithm.
    SignatureLength { alg: Algorithm, len: usize },
    /// ECDSA `r` or `s` is zero or not below the curve order.
    EcdsaRange,
}

impl TokenError {
    /// A short reason for logs.
    pub fn reason(&self) -> String {
        match self {
            TokenError::TooLarge { len, max } => format!("token of {len} bytes, limit {max}"),
            TokenError::Segments(n) => format!("{n} segments, a JWS has 3"),
            TokenError::Base64(seg) => format!("{seg} is not unpadded base64url"),
            TokenError::Json(seg) => format!("{seg} is not valid JSON"),
            TokenError::NotObject(seg) => format!("{seg} is not a JSON object"),
            TokenError::DuplicateMember(seg) => format!("{seg} repeats a member name"),
            TokenError::AlgMissing => "header has no string alg".into(),
            TokenError::AlgNone => "alg none".into(),
            TokenError::AlgUnsupported => "alg not supported".into(),
            TokenError::Crit => "crit names an unsupported extension".into(),
            TokenError::B64 => "b64 other than true".into(),
            TokenError::Kid => "kid is not a string".into(),
            TokenError::SignatureLength { alg, len } => {
                format!("{len}-byte signature for {alg}")
            }
            TokenError::EcdsaRange => "ECDSA r or s zero or not below the curve order".into(),
        }
    }
}

/// A token's `exp`, `nbf` and `iat`, read once when the token is parsed (a cached token is
/// checked against the clock on every request): each absent, a number, or present but not
/// a number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimeClaims {
    pub(super) exp: Option<Option<f64>>,
    pub(super) nbf: Option<Option<f64>>,
    pub(super) iat: Option<Option<f64>>,
}

impl TimeClaims {
    /// Reads them from a token's claims.
    pub fn read(claims: &JsonObject) -> TimeClaims {
        TimeClaims {
            exp: claims.get_f64("exp"),
            nbf: claims.get_f64("nbf"),
            iat: claims.get_f64("iat"),
        }
    }
}

/// A parsed, not yet verified, compact JWS.
#[derive(Clone, Debug)]
pub struct Token {
    raw: String,
    header_end: usize,
    payload_end: usize,
    alg: Algorithm,
    kid: Option<String>,
    header: JsonObject,
    claims: JsonObject,
    times: TimeClaims,
    signature: Vec<u8>,
}

impl Token {
    /// Parses `raw` strictly. `max_bytes` bounds the whole token and is checked first.
    pub fn parse(raw: &str, max_bytes: usize) -> Result<Token, TokenError> {
        if raw.len() > max_bytes {
            return Err(TokenError::TooLarge {
                len: raw.len(),
                max: max_bytes,
            });
        }
        let mut parts = raw.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Segments(raw.split('.').count()));
        };
        let header = object(h, Segment::Header)?;
        let alg = match header.get_str("alg").flatten() {
            Some(name) if name.eq_ignore_ascii_case("none") => return Err(TokenError::AlgNone),
            Some(name) => Algorithm::from_name(&name).ok_or(TokenError::AlgUnsupported)?,
            None => return Err(TokenError::AlgMissing),
        };
        check_extensions(&header)?;
        let kid = match header.get_str("kid") {
            None => None,
            Some(Some(kid)) => Some(kid.into_owned()),
            Some(None) => return Err(TokenError::Kid),
        };
        let claims = object(p, Segment::Payload)?;
        let signature = decode(s, Segment::Signature)?;
        check_signature_shape(alg, &signature)?;
        Ok(Token {
            header_end: h.len(),
            payload_end: h.len() + 1 + p.len(),
            raw: raw.to_owned(),
            alg,
            kid,
            header,
            times: TimeClaims::read(&claims),
            claims,
            signature,
        })
    }

    /// The token as received.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// `header.payload`, the bytes the signature covers.
    pub fn signing_input(&self) -> &[u8] {
        self.raw
            .as_bytes()
            .get(..self.payload_end)
            .unwrap_or_default()
    }

    /// The payload segment as received (base64url JSON), for `forward_payload_header`.
    pub fn payload_segment(&self) -> &str {
        self.raw
            .get(self.header_end + 1..self.payload_end)
            .unwrap_or_default()
    }

    /// The decoded signature.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The header's `alg`.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The header's `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The header's members.
    pub fn header(&self) -> &JsonObject {
        &self.header
    }

    /// The payload's members (the claims).
    pub fn claims(&self) -> &JsonObject {
        &self.claims
    }

    /// The claims `exp`, `nbf` and `iat`, read when the token was parsed.
    pub fn times(&self) -> &TimeClaims {
        &self.times
    }
}

fn decode(segment: &str, which: Segment) -> Result<Vec<u8>, TokenError> {
    // Refuses `=`, whitespace, `+`, `/` and non-canonical trailing bits.
    base64url::decode(segment.as_bytes()).ok_or(TokenError::Base64(which))
}

fn object(segment: &str, which: Segment) -> Result<JsonObject, TokenError> {
    match JsonObject::parse(decode(segment, which)?) {
        Ok(object) => Ok(object),
        Err(ObjectError::NotObject) => Err(TokenError::NotObject(which)),
        Err(ObjectError::Strict(StrictError::Duplicate)) => Err(TokenError::DuplicateMember(which)),
        Err(ObjectError::Strict(StrictError::Syntax)) => Err(TokenError::Json(which)),
    }
}

fn check_extensions(header: &JsonObject) -> Result<(), TokenError> {
    match header.get("b64") {
        None | Some(Value::Bool(true)) => {}
        Some(_) => return Err(TokenError::B64),
    }
    match header.get("crit") {
        None => Ok(()),
        // RFC 7515 §4.1.11: a non-empty array of names, each present in the header. The only
        // extension understood is `b64`, and only its default value passes the check above.
        Some(Value::Array(names))
            if !names.is_empty()
                && names
                    .iter()
                    .all(|n| n.as_str() == Some("b64") && header.contains_key("b64")) =>
        {
            Ok(())
        }
        Some(_) => Err(TokenError::Crit),
    }
}

fn check_signature_shape(alg: Algorithm, signature: &[u8]) -> Result<(), TokenError> {
    if let Some(len) = alg.signature_len() {
        if signature.len() != len {
            return Err(TokenError::SignatureLength {
                alg,
                len: signature.len(),
            });
        }
    } else if signature.is_empty() {
        return Err(TokenError::SignatureLength { alg, len: 0 });
    }
    if alg.family() == Family::Ecdsa && !ecdsa_in_range(alg, signature) {
        return Err(TokenError::EcdsaRange);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn token(header: &str, payload: &str, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64(header),
            b64(payload),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    const HS: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
    const SIG32: [u8; 32] = [7u8; 32];

    fn parse(raw: &str) -> Result<Token, TokenError> {
        Token::parse(raw, 8192)
    }

    #[test]
    fn accepts_a_well_formed_token_and_keeps_its_parts() {
        let raw = token(HS, r#"{"iss":"a","n":1}"#, &SIG32);
        let t = parse(&raw).unwrap();
        assert_eq!(t.alg(), Algorithm::HS256);
        assert_eq!(t.claims().get("iss"), Some(Value::from("a")));
        let dot = raw.rfind('.').unwrap();
        assert_eq!(t.signing_input(), &raw.as_bytes()[..dot]);
        assert_eq!(t.payload_segment(), b64(r#"{"iss":"a","n":1}"#));
        assert_eq!(t.signature(), &SIG32);
    }

    #[test]
    fn rejects_alg_none_in_any_case() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            let raw = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}", &[]);
            assert_eq!(parse(&raw).unwrap_err(), TokenError::AlgNone, "{alg}");
        }
    }

    #[test]
    fn rejects_unknown_missing_or_miscased_alg() {
        let cases = [
            (r#"{"alg":"hs256"}"#, TokenError::AlgUnsupported),
            (r#"{"alg":"HS1"}"#, TokenError::AlgUnsupported),
            (r#"{"alg":"ES512"}"#, TokenError::AlgUnsupported),
            (r#"{"typ":"JWT"}"#, TokenError::AlgMissing),
            (r#"{"alg":256}"#, TokenError::AlgMissing),
        ];
        for (header, expected) in cases {
            assert_eq!(
                parse(&token(header, "{}", &SIG32)).unwrap_err(),
                expected,
                "{header}"
            );
        }
    }

    #[test]
    fn rejects_anything_but_three_segments() {
        let good = token(HS, "{}", &SIG32);
        let cases = [
            ("", 1),
            ("abc", 1),
            ("a.b", 2),
            ("a.b.c.d", 4),
            ("a.b.c.d.e", 5),
        ];
        for (raw, n) in cases {
            assert_eq!(parse(raw).unwrap_err(), TokenError::Segments(n), "{raw}");
        }
        assert_eq!(
            parse(&format!("{good}.")).unwrap_err(),
            TokenError::Segments(4)
        );
    }

    #[test]
    fn rejects_base64_with_padding_whitespace_or_standard_alphabet() {
        let h = b64(HS);
        let p = b64(r#"{"a":"??>"}"#); // encodes to `Pz8-` territory: has url-safe chars
        let s = URL_SAFE_NO_PAD.encode(SIG32);
        let cases = [
            (format!("{h}=.{p}.{s}"), Segment::Header),
            (format!("{h}.{p}=.{s}"), Segment::Payload),
            (format!("{h}.{p}.{s}="), Segment::Signature),
            (format!(" {h}.{p}.{s}"), Segment::Header),
            (format!("{h}.{p}.{s} "), Segment::Signature),
            (format!("{h}.{}.{s}", p.replace('-', "+")), Segment::Payload),
            (
                format!("{h}.{p}.{}", s.replace('_', "/").replace('-', "+") + "/"),
                Segment::Signature,
            ),
            (format!("{h}.{p}.{s}\n"), Segment::Signature),
        ];
        for (raw, seg) in cases {
            assert_eq!(parse(&raw).unwrap_err(), TokenError::Base64(seg), "{raw}");
        }
    }

    #[test]
    fn rejects_non_canonical_trailing_bits() {
        // "e30" is `{}`; "e31" decodes to the same byte with a non-zero trailing bit.
        let raw = format!("{}.e31.{}", b64(HS), URL_SAFE_NO_PAD.encode(SIG32));
        assert_eq!(
            parse(&raw).unwrap_err(),
            TokenError::Base64(Segment::Payload)
        );
    }

    #[test]
    fn rejects_header_or_payload_that_is_not_a_json_object() {
        let cases = [
            (HS, "[]", TokenError::NotObject(Segment::Payload)),
            (HS, "\"x\"", TokenError::NotObject(Segment::Payload)),
            (HS, "null", TokenError::NotObject(Segment::Payload)),
            (HS, "{", TokenError::Json(Segment::Payload)),
            (HS, "{} {}", TokenError::Json(Segment::Payload)),
            ("[\"HS256\"]", "{}", TokenError::NotObject(Segment::Header)),
            ("{alg:HS256}", "{}", TokenError::Json(Segment::Header)),
        ];
        for (header, payload, expected) in cases {
            assert_eq!(
                parse(&token(header, payload, &SIG32)).unwrap_err(),
                expected,
                "{payload}"
            );
        }
    }

    #[test]
    fn rejects_duplicate_member_names_at_any_depth() {
        let cases = [
            (r#"{"alg":"HS256","alg":"HS256"}"#, "{}", Segment::Header),
            (r#"{"alg":"none","alg":"HS256"}"#, "{}", Segment::Header),
            (HS, r#"{"sub":"a","sub":"b"}"#, Segment::Payload),
            (HS, r#"{"x":{"y":1,"y":2}}"#, Segment::Payload),
            (HS, r#"{"x":[{"y":1,"y":2}]}"#, Segment::Payload),
            (HS, r#"{"a\u0062":1,"ab":2}"#, Segment::Payload),
        ];
        for (header, payload, seg) in cases {
            let err = parse(&token(header, payload, &SIG32)).unwrap_err();
            assert_eq!(err, TokenError::DuplicateMember(seg), "{header} {payload}");
        }
    }

    #[test]
    fn rejects_invalid_utf8_and_lone_surrogates() {
        let raw = format!(
            "{}.{}.{}",
            b64(HS),
            URL_SAFE_NO_PAD.encode(b"{\"a\":\"\xff\"}"),
            URL_SAFE_NO_PAD.encode(SIG32)
        );
        assert_eq!(parse(&raw).unwrap_err(), TokenError::Json(Segment::Payload));
        let raw = token(HS, r#"{"a":"\ud800"}"#, &SIG32);
        assert_eq!(parse(&raw).unwrap_err(), TokenError::Json(Segment::Payload));
    }

    #[test]
    fn rejects_unknown_crit_entries() {
        let cases = [
            r#"{"alg":"HS256","crit":["exp"],"exp":1}"#,
            r#"{"alg":"HS256","crit":[]}"#,
            r#"{"alg":"HS256","crit":"b64","b64":true}"#,
            r#"{"alg":"HS256","crit":["b64"]}"#,
            r#"{"alg":"HS256","crit":["b64","x"],"b64":true,"x":1}"#,
        ];
        for header in cases {
            assert_eq!(
                parse(&token(header, "{}", &SIG32)).unwrap_err(),
                TokenError::Crit,
                "{header}"
            );
        }
        let understood = r#"{"alg":"HS256","crit":["b64"],"b64":true}"#;
        assert!(parse(&token(understood, "{}", &SIG32)).is_ok());
    }

    #[test]
    fn rejects_b64_false() {
        for header in [
            r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#,
            r#"{"alg":"HS256","b64":false}"#,
            r#"{"alg":"HS256","b64":"true"}"#,
        ] {
            assert_eq!(
                parse(&token(header, "{}", &SIG32)).unwrap_err(),
                TokenError::B64,
                "{header}"
            );
        }
    }

    #[test]
    fn rejects_tokens_over_the_size_limit_before_decoding() {
        let raw = token(HS, "{}", &SIG32);
        assert!(Token::parse(&raw, raw.len()).is_ok());
        let err = Token::parse(&raw, raw.len() - 1).unwrap_err();
        assert_eq!(
            err,
            TokenError::TooLarge {
                len: raw.len(),
                max: raw.len() - 1
            }
        );
    }

    #[test]
    fn rejects_signatures_of_the_wrong_length() {
        let cases = [
            (r#"{"alg":"HS256"}"#, 31),
            (r#"{"alg":"HS384"}"#, 32),
            (r#"{"alg":"HS512"}"#, 65),
            (r#"{"alg":"ES256"}"#, 63),
            (r#"{"alg":"ES256"}"#, 70),
            (r#"{"alg":"ES384"}"#, 64),
            (r#"{"alg":"EdDSA"}"#, 0),
            (r#"{"alg":"RS256"}"#, 0),
        ];
        for (header, len) in cases {
            let err = parse(&token(header, "{}", &vec![1u8; len])).unwrap_err();
            assert!(
                matches!(err, TokenError::SignatureLength { len: l, .. } if l == len),
                "{header} {len}"
            );
        }
    }

    #[test]
    fn rejects_ecdsa_signatures_with_r_or_s_zero_or_not_below_the_order() {
        let p256_order = hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
        let one = {
            let mut v = vec![0u8; 32];
            v[31] = 1;
            v
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("ES256", [vec![0; 32], one.clone()].concat()),
            ("ES256", [one.clone(), vec![0; 32]].concat()),
            ("ES256", [p256_order.clone(), one.clone()].concat()),
            ("ES256", [one.clone(), vec![0xff; 32]].concat()),
            ("ES384", vec![0; 96]),
        ];
        for (alg, sig) in cases {
            let raw = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}", &sig);
            assert_eq!(parse(&raw).unwrap_err(), TokenError::EcdsaRange, "{alg}");
        }
        let raw = token(r#"{"alg":"ES256"}"#, "{}", &[one.clone(), one].concat());
        assert!(parse(&raw).is_ok());
    }

    #[test]
    fn rejects_a_kid_that_is_not_a_string() {
        let raw = token(r#"{"alg":"HS256","kid":7}"#, "{}", &SIG32);
        assert_eq!(parse(&raw).unwrap_err(), TokenError::Kid);
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    mod never_panics {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn on_any_string(raw in ".{0,300}") {
                let _ = Token::parse(&raw, 8192);
            }

            #[test]
            fn on_token_shaped_strings(raw in "[A-Za-z0-9_\\-+/=. ]{0,200}") {
                let _ = Token::parse(&raw, 8192);
            }

            #[test]
            fn on_any_json_in_header_and_payload(
                header in "[{}\\[\\]\",:a-z0-9 ]{0,60}",
                payload in "[{}\\[\\]\",:a-z0-9 ]{0,60}",
                sig in proptest::collection::vec(any::<u8>(), 0..100),
            ) {
                let _ = Token::parse(&token(&header, &payload, &sig), 8192);
            }

            #[test]
            fn on_any_signature_for_every_alg(
                alg in proptest::sample::select(Algorithm::ALL.to_vec()),
                sig in proptest::collection::vec(any::<u8>(), 0..130),
            ) {
                let raw = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}", &sig);
                let _ = Token::parse(&raw, 8192);
            }
        }
    }
}
