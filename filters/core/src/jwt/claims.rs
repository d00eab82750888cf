//! Claim checks that need no key: `exp`, `nbf`, `iat` with leeway, Kong's
//! `maximum_expiration`, audiences and required claims; and claims as header-safe strings.

use serde_json::Value;

use super::object::JsonObject;
use super::rejection::Rejection;
use super::token::TimeClaims;
use crate::identity::header_safe;
use crate::UnixTime;

/// The time rules of one policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeRules {
    /// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: u64,
    /// A token without `exp` is refused.
    pub exp_required: bool,
    /// A token without `nbf` is refused.
    pub nbf_required: bool,
    /// When non-zero, `exp` may lie at most this many seconds ahead (Kong).
    pub maximum_expiration: u64,
}

/// Checks `exp`, `nbf` and `iat` against `now`. Each claim, when present, must be a number
/// in [0, 2^64) (RFC 7519 NumericDate; fractions truncated), the range Envoy's jwt_authn
/// accepts: a negative `nbf`, or an `exp` of 1e300 that would never expire, is refused as
/// not a NumericDate rather than read as a time.
pub fn check_times(times: &TimeClaims, rules: &TimeRules, now: UnixTime) -> Result<(), Rejection> {
    let now = now.secs() as f64;
    let leeway = rules.leeway as f64;
    let exp = numeric(times.exp, "exp")?;
    match exp {
        Some(exp) if exp + leeway <= now => return Err(Rejection::Expired),
        None if rules.exp_required || rules.maximum_expiration > 0 => {
            return Err(Rejection::ClaimNotNumber("exp"))
        }
        _ => {}
    }
    match numeric(times.nbf, "nbf")? {
        Some(nbf) if nbf > now + leeway => return Err(Rejection::NotYetValid),
        None if rules.nbf_required => return Err(Rejection::ClaimNotNumber("nbf")),
        _ => {}
    }
    if numeric(times.iat, "iat")?.is_some_and(|iat| iat > now + leeway) {
        return Err(Rejection::IssuedInFuture);
    }
    if let (Some(exp), true) = (exp, rules.maximum_expiration > 0) {
        if exp - now > rules.maximum_expiration as f64 {
            return Err(Rejection::ExceedsMaximumExpiration);
        }
    }
    Ok(())
}

/// 2^64, the first value past the NumericDate range (exact as an f64).
const NUMERIC_DATE_END: f64 = 18_446_744_073_709_551_616.0;

fn numeric(claim: Option<Option<f64>>, name: &'static str) -> Result<Option<f64>, Rejection> {
    match claim {
        None => Ok(None),
        Some(Some(v)) if (0.0..NUMERIC_DATE_END).contains(&v) => Ok(Some(v.trunc())),
        Some(_) => Err(Rejection::ClaimNotNumber(name)),
    }
}

/// When `audiences` is not empty, the token's `aud` (a string or an array of strings) must
/// name one of them.
pub fn check_audience(claims: &JsonObject, audiences: &[String]) -> Result<(), Rejection> {
    if audiences.is_empty() {
        return Ok(());
    }
    let matches = |aud: &Value| {
        aud.as_str()
            .is_some_and(|a| audiences.iter().any(|x| x == a))
    };
    let ok = match claims.get("aud") {
        Some(Value::Array(auds)) => auds.iter().any(matches),
        Some(aud) => matches(&aud),
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Rejection::AudienceMismatch)
    }
}

/// Every claim in `required` must be present and not `null`.
pub fn check_required(claims: &JsonObject, required: &[String]) -> Result<(), Rejection> {
    match required
        .iter()
        .find(|name| claims.get(name).is_none_or(|v| v.is_null()))
    {
        Some(missing) => Err(Rejection::MissingClaim(missing.clone())),
        None => Ok(()),
    }
}

/// A claim as a header value: strings as they are, arrays of strings joined with `, `,
/// anything else as compact JSON. `None` when absent, `null`, or when the value would carry
/// a CR, LF, NUL or other control character into a header.
pub fn header_value(claims: &JsonObject, name: &str) -> Option<String> {
    let text = match claims.get(name)? {
        Value::Null => return None,
        Value::String(s) => s,
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    header_safe(&text).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: UnixTime = UnixTime(1_700_000_000);

    fn rules() -> TimeRules {
        TimeRules {
            leeway: 60,
            exp_required: true,
            nbf_required: false,
            maximum_expiration: 0,
        }
    }

    fn claims(value: Value) -> JsonObject {
        JsonObject::parse(value.to_string().into_bytes()).unwrap()
    }

    fn times(value: Value) -> TimeClaims {
        TimeClaims::read(&claims(value))
    }

    #[test]
    fn time_claims_are_checked_with_leeway() {
        let n = NOW.secs() as i64;
        let cases: Vec<(&str, Value, Result<(), Rejection>)> = vec![
            ("exp ahead", json!({"exp": n + 10}), Ok(())),
            ("exp just inside leeway", json!({"exp": n - 59}), Ok(())),
            (
                "exp at leeway edge",
                json!({"exp": n - 60}),
                Err(Rejection::Expired),
            ),
            (
                "exp long gone",
                json!({"exp": n - 3600}),
                Err(Rejection::Expired),
            ),
            ("exp fractional", json!({"exp": n as f64 + 0.5}), Ok(())),
            (
                "exp fraction truncated, not rounded",
                json!({"exp": (n - 60) as f64 + 0.9}),
                Err(Rejection::Expired),
            ),
            (
                "exp beyond 2^64 never reads as no expiry",
                json!({"exp": 1e300}),
                Err(Rejection::ClaimNotNumber("exp")),
            ),
            (
                "exp at 2^64",
                json!({"exp": 18_446_744_073_709_551_616.0_f64}),
                Err(Rejection::ClaimNotNumber("exp")),
            ),
            (
                "exp just under 2^64",
                json!({"exp": 18_446_744_073_709_549_568.0_f64}),
                Ok(()),
            ),
            (
                "exp negative",
                json!({"exp": -1}),
                Err(Rejection::ClaimNotNumber("exp")),
            ),
            (
                "nbf negative",
                json!({"exp": n + 10, "nbf": -1}),
                Err(Rejection::ClaimNotNumber("nbf")),
            ),
            (
                "nbf minus zero is zero",
                json!({"exp": n + 10, "nbf": -0.0}),
                Ok(()),
            ),
            (
                "iat huge",
                json!({"exp": n + 10, "iat": 1e20}),
                Err(Rejection::ClaimNotNumber("iat")),
            ),
            ("iat zero", json!({"exp": n + 10, "iat": 0}), Ok(())),
            (
                "exp missing",
                json!({}),
                Err(Rejection::ClaimNotNumber("exp")),
            ),
            (
                "exp string",
                json!({"exp": "soon"}),
                Err(Rejection::ClaimNotNumber("exp")),
            ),
            (
                "nbf inside leeway",
                json!({"exp": n + 10, "nbf": n + 60}),
                Ok(()),
            ),
            (
                "nbf ahead",
                json!({"exp": n + 10, "nbf": n + 61}),
                Err(Rejection::NotYetValid),
            ),
            (
                "nbf bool",
                json!({"exp": n + 10, "nbf": true}),
                Err(Rejection::ClaimNotNumber("nbf")),
            ),
            (
                "iat inside leeway",
                json!({"exp": n + 10, "iat": n + 60}),
                Ok(()),
            ),
            (
                "iat in the future",
                json!({"exp": n + 10, "iat": n + 61}),
                Err(Rejection::IssuedInFuture),
            ),
            (
                "iat null",
                json!({"exp": n + 10, "iat": null}),
                Err(Rejection::ClaimNotNumber("iat")),
            ),
        ];
        for (name, value, expected) in cases {
            assert_eq!(
                check_times(&times(value), &rules(), NOW),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn exp_is_optional_only_when_configured() {
        let optional = TimeRules {
            exp_required: false,
            ..rules()
        };
        assert_eq!(check_times(&times(json!({})), &optional, NOW), Ok(()));
        let expired = json!({"exp": NOW.secs() - 3600});
        assert_eq!(
            check_times(&times(expired), &optional, NOW),
            Err(Rejection::Expired)
        );
    }

    #[test]
    fn nbf_required_refuses_a_token_without_it() {
        let strict = TimeRules {
            nbf_required: true,
            ..rules()
        };
        let c = times(json!({"exp": NOW.secs() + 10}));
        assert_eq!(
            check_times(&c, &strict, NOW),
            Err(Rejection::ClaimNotNumber("nbf"))
        );
    }

    #[test]
    fn maximum_expiration_bounds_how_far_exp_may_lie() {
        let capped = TimeRules {
            maximum_expiration: 3600,
            exp_required: false,
            ..rules()
        };
        let n = NOW.secs();
        assert_eq!(
            check_times(&times(json!({"exp": n + 3600})), &capped, NOW),
            Ok(())
        );
        assert_eq!(
            check_times(&times(json!({"exp": n + 3601})), &capped, NOW),
            Err(Rejection::ExceedsMaximumExpiration)
        );
        assert_eq!(
            check_times(&times(json!({})), &capped, NOW),
            Err(Rejection::ClaimNotNumber("exp"))
        );
    }

    #[test]
    fn audience_must_match_one_configured() {
        let auds = vec!["api".to_owned(), "web".to_owned()];
        let cases = [
            (json!({"aud": "api"}), true),
            (json!({"aud": ["x", "web"]}), true),
            (json!({"aud": "other"}), false),
            (json!({"aud": ["x"]}), false),
            (json!({"aud": 1}), false),
            (json!({}), false),
        ];
        for (value, ok) in cases {
            let got = check_audience(&claims(value.clone()), &auds);
            assert_eq!(got.is_ok(), ok, "{value}");
        }
        assert!(check_audience(&claims(json!({})), &[]).is_ok());
    }

    #[test]
    fn required_claims_must_be_present_and_not_null() {
        let req = vec!["sub".to_owned(), "tenant".to_owned()];
        assert!(check_required(&claims(json!({"sub": "a", "tenant": 0})), &req).is_ok());
        assert_eq!(
            check_required(&claims(json!({"sub": "a", "tenant": null})), &req),
            Err(Rejection::MissingClaim("tenant".into()))
        );
    }

    #[test]
    fn claim_header_values_refuse_cr_lf_and_nul() {
        let c = claims(json!({
            "s": "plain", "n": 42, "b": true, "l": ["a", "b"], "o": {"k": 1},
            "crlf": "a\r\nx-admin: 1", "lf": "a\nb", "nul": "a\u{0}b", "z": null,
            "lcrlf": ["a", "b\r\n"]
        }));
        let cases = [
            ("s", Some("plain")),
            ("n", Some("42")),
            ("b", Some("true")),
            ("l", Some("a, b")),
            ("o", Some(r#"{"k":1}"#)),
            ("crlf", None),
            ("lf", None),
            ("nul", None),
            ("lcrlf", None),
            ("z", None),
            ("absent", None),
        ];
        for (name, expected) in cases {
            assert_eq!(header_value(&c, name).as_deref(), expected, "{name}");
        }
    }
}
