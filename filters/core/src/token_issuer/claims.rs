//! The claims of an issued token, built from the upstream's login object: the registered
//! claims the issuer owns (`iss`, `aud`, `iat`, `exp`, `jti`, `sub`) and the body fields it
//! copies.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use super::refusal::Refusal;
use crate::UnixTime;

/// Claims only the issuer sets: a body field of the same name is never copied (`exp` is read
/// to shorten the token, `sub` comes from `sub_field`).
pub const RESERVED: [&str; 7] = ["iss", "aud", "iat", "exp", "nbf", "jti", "sub"];

/// How claims are built, compiled from configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRules {
    /// `iss` of every token.
    pub iss: String,
    /// `aud`: `None`, one audience (a string), or several (an array).
    pub aud: Option<Value>,
    /// Lifetime of a token when the upstream sets no earlier `exp`, in seconds.
    pub ttl: u64,
    /// Hard ceiling on any token's lifetime, in seconds.
    pub max_ttl: u64,
    /// The body field whose value becomes `sub`.
    pub sub_field: Option<String>,
    /// `sub_field` was configured: an answer without a usable subject is not signed.
    pub require_sub: bool,
    /// Body fields copied into the token; `None` copies every field not in [`RESERVED`].
    pub allow: Option<Vec<String>>,
}

/// The claims of one token and how long it lives.
#[derive(Clone, Debug, PartialEq)]
pub struct Claims {
    pub claims: Map<String, Value>,
    /// Seconds from `now` to `exp`, the `expires_in` of the answer.
    pub expires_in: u64,
}

/// Builds the claims of a token issued at `now` from the upstream's `body`, with `jti` from
/// 16 random bytes the caller supplies.
pub fn build(
    body: &Map<String, Value>,
    rules: &ClaimRules,
    now: UnixTime,
    jti: [u8; 16],
) -> Result<Claims, Refusal> {
    let lifetime = rules.ttl.min(rules.max_ttl);
    let expires_in = match body.get("exp") {
        None | Some(Value::Null) => lifetime,
        Some(Value::Number(n)) => {
            let exp = n
                .as_f64()
                .filter(|e| e.is_finite())
                .ok_or(Refusal::ExpNotNumber)?;
            // Whole seconds, rounded down: never later than what the upstream said.
            let left = exp.floor() - now.secs() as f64;
            if left < 1.0 {
                return Err(Refusal::ExpPassed);
            }
            if left < lifetime as f64 {
                left as u64
            } else {
                lifetime
            }
        }
        Some(_) => return Err(Refusal::ExpNotNumber),
    };
    let mut claims = Map::new();
    let copy = |name: &String, value: &Value, claims: &mut Map<String, Value>| {
        if !RESERVED.contains(&name.as_str()) {
            claims.insert(name.clone(), value.clone());
        }
    };
    match &rules.allow {
        Some(allowed) => {
            for name in allowed {
                if let Some(value) = body.get(name) {
                    copy(name, value, &mut claims);
                }
            }
        }
        None => {
            for (name, value) in body {
                copy(name, value, &mut claims);
            }
        }
    }
    if let Some(sub) = rules.sub_field.as_ref().and_then(|f| subject(body.get(f))) {
        claims.insert("sub".into(), Value::String(sub));
    }
    claims.insert("iss".into(), Value::from(rules.iss.as_str()));
    if let Some(aud) = &rules.aud {
        claims.insert("aud".into(), aud.clone());
    }
    claims.insert("iat".into(), Value::from(now.secs()));
    claims.insert(
        "exp".into(),
        Value::from(now.secs().saturating_add(expires_in)),
    );
    claims.insert("jti".into(), Value::from(URL_SAFE_NO_PAD.encode(jti)));
    Ok(Claims { claims, expires_in })
}

/// Whether the rules require a subject (`sub_field` configured) that `body` does not give:
/// such an answer (`{"success":false}`, `{"errors":[…]}`) is no login and is never signed.
pub fn lacks_required_subject(body: &Map<String, Value>, rules: &ClaimRules) -> bool {
    rules.require_sub
        && rules
            .sub_field
            .as_ref()
            .and_then(|f| subject(body.get(f)))
            .is_none()
}

/// `sub` is a string (RFC 7519 StringOrURI): a string as is, an integer in decimal; anything
/// else leaves the token without `sub`.
fn subject(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: UnixTime = UnixTime(1_767_225_600);
    const JTI: [u8; 16] = [7; 16];

    fn rules() -> ClaimRules {
        ClaimRules {
            iss: "https://login.example".into(),
            aud: Some(json!("orders-api")),
            ttl: 900,
            max_ttl: 3600,
            sub_field: Some("sub".into()),
            require_sub: false,
            allow: None,
        }
    }

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    fn exp_of(result: &Claims) -> u64 {
        result.claims["exp"].as_u64().unwrap()
    }

    #[test]
    fn exp_is_now_plus_ttl_unless_the_upstream_set_an_earlier_one() {
        let n = NOW.secs();
        let cases: Vec<(&str, Value, Result<u64, Refusal>)> = vec![
            ("no exp", json!({}), Ok(900)),
            ("null exp", json!({"exp": null}), Ok(900)),
            ("earlier exp wins", json!({"exp": n + 60}), Ok(60)),
            (
                "fraction rounds down",
                json!({"exp": n as f64 + 60.9}),
                Ok(60),
            ),
            (
                "later exp is capped to ttl",
                json!({"exp": n + 86_400}),
                Ok(900),
            ),
            ("one second left", json!({"exp": n + 1}), Ok(1)),
            ("exp now", json!({"exp": n}), Err(Refusal::ExpPassed)),
            (
                "exp passed",
                json!({"exp": n - 10}),
                Err(Refusal::ExpPassed),
            ),
            (
                "exp text",
                json!({"exp": "tomorrow"}),
                Err(Refusal::ExpNotNumber),
            ),
            ("exp bool", json!({"exp": true}), Err(Refusal::ExpNotNumber)),
        ];
        for (name, value, expected) in cases {
            let result = build(&body(value), &rules(), NOW, JTI);
            match expected {
                Ok(expires_in) => {
                    let claims = result.unwrap_or_else(|e| panic!("{name}: {e:?}"));
                    assert_eq!(claims.expires_in, expires_in, "{name}");
                    assert_eq!(exp_of(&claims), n + expires_in, "{name}");
                }
                Err(refusal) => assert_eq!(result.unwrap_err(), refusal, "{name}"),
            }
        }
    }

    #[test]
    fn no_token_outlives_max_ttl() {
        let long = ClaimRules {
            ttl: 7200,
            max_ttl: 3600,
            ..rules()
        };
        let claims = build(&body(json!({})), &long, NOW, JTI).unwrap();
        assert_eq!(claims.expires_in, 3600);
    }

    #[test]
    fn the_allowlist_drops_every_other_field() {
        let allow = ClaimRules {
            allow: Some(vec!["username".into(), "groups".into(), "absent".into()]),
            ..rules()
        };
        let upstream = body(json!({
            "sub": "123", "username": "mobile-app", "groups": ["admins"],
            "email": "m@example.com", "password_hash": "x"
        }));
        let claims = build(&upstream, &allow, NOW, JTI).unwrap().claims;
        let mut names: Vec<&str> = claims.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["aud", "exp", "groups", "iat", "iss", "jti", "sub", "username"]
        );
        assert_eq!(claims["groups"], json!(["admins"]));
        assert_eq!(claims["sub"], json!("123"));
    }

    #[test]
    fn the_upstream_cannot_set_the_registered_claims() {
        let upstream = body(json!({
            "iss": "evil", "aud": "everything", "iat": 1, "nbf": 1, "jti": "fixed",
            "sub": "123", "role": "admin"
        }));
        let claims = build(&upstream, &rules(), NOW, JTI).unwrap().claims;
        assert_eq!(claims["iss"], json!("https://login.example"));
        assert_eq!(claims["aud"], json!("orders-api"));
        assert_eq!(claims["iat"], json!(NOW.secs()));
        assert!(!claims.contains_key("nbf"));
        assert_eq!(claims["jti"], json!(URL_SAFE_NO_PAD.encode(JTI)));
        assert_eq!(claims["role"], json!("admin"));
    }

    #[test]
    fn sub_comes_from_the_configured_field() {
        let by_id = ClaimRules {
            sub_field: Some("userId".into()),
            require_sub: false,
            ..rules()
        };
        let cases = [
            (json!({"userId": 123, "sub": "ignored"}), Some(json!("123"))),
            (json!({"userId": "u-9"}), Some(json!("u-9"))),
            (json!({"userId": ""}), None),
            (json!({"userId": 1.5}), None),
            (json!({"userId": {"id": 1}}), None),
            (json!({}), None),
        ];
        for (value, expected) in cases {
            let claims = build(&body(value.clone()), &by_id, NOW, JTI)
                .unwrap()
                .claims;
            assert_eq!(claims.get("sub").cloned(), expected, "{value}");
        }
    }
}
