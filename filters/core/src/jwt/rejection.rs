//! Why a request was refused, and — from one match — how that looks: status, Kong's body,
//! metric label, log line and `WWW-Authenticate`.

use std::fmt;

use super::token::TokenError;
use crate::jose::crypto::CryptoError;

/// Every reason the jwt filter refuses a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// No token anywhere the policy looks (and no `anonymous` consumer).
    Missing,
    /// Two or more different tokens in one request.
    Multiple,
    /// The token is not a well-formed JWS this filter accepts.
    Malformed(TokenError),
    /// Neither the key claim (`key_claim_name`) nor `kid` names a credential.
    MissingKeyClaim { claim: String },
    /// The key claim or `kid` names no consumer credential and `iss` no provider.
    UnknownCredential { claim: String },
    /// The provider has keys, but none with the token's `kid`. The glue may refresh the
    /// provider's remote JWKS (subject to its floor) on this.
    UnknownKid { provider: String, kid: String },
    /// The provider's remote keys have not been fetched yet (or never could be).
    KeysUnavailable { provider: String },
    /// The token's `alg` is not the one the credential pins.
    AlgorithmMismatch,
    /// The signature does not verify.
    BadSignature,
    /// `exp` (plus leeway) has passed.
    Expired,
    /// `nbf` (minus leeway) is still ahead.
    NotYetValid,
    /// `iat` (minus leeway) is in the future.
    IssuedInFuture,
    /// A time claim is missing where required, or is not a number.
    ClaimNotNumber(&'static str),
    /// `exp` lies further ahead than `maximum_expiration` allows.
    ExceedsMaximumExpiration,
    /// A provider token whose `aud` names none of the provider's audiences.
    AudienceMismatch,
    /// A claim from `required_claims` is absent or `null`.
    MissingClaim(String),
    /// The signature backend could not decide; the request fails closed.
    Crypto(CryptoError),
    /// The key is for `consumer_source` and this worker has no answer for it yet: the glue
    /// resolves it (shared slot, or a lookup) and authenticates again. Refused with 503 if
    /// it ever reaches the client.
    NotCached { key: String },
    /// `consumer_source` cannot decide: its revocations are not loaded yet, the admin has
    /// been unreachable longer than `stale_ttl`, or a lookup failed or timed out. 503, not
    /// 401: the credential may well be good, and the client should retry, not drop it.
    SourceUnavailable,
    /// `consumer_source`'s lookups per second are used up (a flood of unknown keys): 503.
    LookupThrottled,
    /// A looked-up consumer's token that the admin revoked (its `jti`, or a cutoff).
    Revoked,
}

const UNAUTHORIZED: &str = r#"{"message":"Unauthorized"}"#;

impl Rejection {
    /// The HTTP status: 401, except 500 when the verifier itself failed.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::Crypto(_) => 500,
            Rejection::NotCached { .. }
            | Rejection::SourceUnavailable
            | Rejection::LookupThrottled => 503,
            _ => 401,
        }
    }

    /// Kong's JSON response body for this rejection.
    pub fn kong_body(&self) -> String {
        let message = |m: &str| format!(r#"{{"message":{}}}"#, json_string(m));
        match self {
            Rejection::Missing | Rejection::KeysUnavailable { .. } => UNAUTHORIZED.to_owned(),
            Rejection::Multiple => message("Multiple tokens provided"),
            Rejection::Malformed(e) => match e {
                TokenError::TooLarge { .. } => message("Bad token; too large"),
                TokenError::AlgMissing | TokenError::AlgNone | TokenError::AlgUnsupported => {
                    message("Bad token; invalid alg")
                }
                TokenError::Base64(super::token::Segment::Signature) => {
                    message("Bad token; invalid signature")
                }
                TokenError::SignatureLength { .. } | TokenError::EcdsaRange => {
                    message("Invalid signature")
                }
                _ => message("Bad token; invalid JSON"),
            },
            Rejection::MissingKeyClaim { claim } => {
                message(&format!("No mandatory '{claim}' in claims"))
            }
            Rejection::UnknownCredential { claim } => {
                message(&format!("No credentials found for given '{claim}'"))
            }
            Rejection::UnknownKid { .. } => message("No credentials found for given 'kid'"),
            Rejection::AlgorithmMismatch => message("Invalid algorithm"),
            Rejection::BadSignature => message("Invalid signature"),
            Rejection::Expired => r#"{"exp":"token expired"}"#.to_owned(),
            Rejection::NotYetValid => r#"{"nbf":"token not valid yet"}"#.to_owned(),
            Rejection::IssuedInFuture => r#"{"iat":"token issued in the future"}"#.to_owned(),
            Rejection::ClaimNotNumber(claim) => format!(r#"{{"{claim}":"must be a number"}}"#),
            Rejection::ExceedsMaximumExpiration => {
                r#"{"exp":"exceeds maximum allowed expiration"}"#.to_owned()
            }
            Rejection::AudienceMismatch => message("Audiences in Jwt are not allowed"),
            Rejection::MissingClaim(claim) => {
                format!(r#"{{{}:"required claim missing"}}"#, json_string(claim))
            }
            Rejection::Crypto(_) => message("An unexpected error occurred"),
            Rejection::NotCached { .. } | Rejection::SourceUnavailable => {
                message("Credential lookup unavailable")
            }
            Rejection::LookupThrottled => message("Too many credential lookups"),
            Rejection::Revoked => message("Token revoked"),
        }
    }

    /// The body to send: Kong's, or the plain `{"message":"Unauthorized"}` when the policy
    /// hides reasons (`plain_unauthorized_body`).
    pub fn body(&self, plain: bool) -> String {
        if plain && self.status() == 401 {
            UNAUTHORIZED.to_owned()
        } else {
            self.kong_body()
        }
    }

    /// The access log's outcome ([`crate::decision`]): `failed` when the filter could not
    /// decide (no keys from the JWKS, the consumer source unavailable or throttled, the
    /// verifier failing), else `rejected`.
    pub fn outcome(&self) -> crate::decision::Outcome {
        match self {
            Rejection::KeysUnavailable { .. }
            | Rejection::Crypto(_)
            | Rejection::NotCached { .. }
            | Rejection::SourceUnavailable
            | Rejection::LookupThrottled => crate::decision::Outcome::Failed,
            _ => crate::decision::Outcome::Rejected,
        }
    }

    /// A stable, low-cardinality label for the rejected-requests metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::Multiple => "multiple",
            Rejection::Malformed(TokenError::TooLarge { .. }) => "too_large",
            Rejection::Malformed(TokenError::SignatureLength { .. } | TokenError::EcdsaRange) => {
                "malformed_signature"
            }
            Rejection::Malformed(TokenError::AlgNone) => "alg_none",
            Rejection::Malformed(_) => "malformed",
            Rejection::MissingKeyClaim { .. } => "missing_key_claim",
            Rejection::UnknownCredential { .. } => "unknown_credential",
            Rejection::UnknownKid { .. } => "unknown_kid",
            Rejection::KeysUnavailable { .. } => "keys_unavailable",
            Rejection::AlgorithmMismatch => "algorithm_mismatch",
            Rejection::BadSignature => "bad_signature",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::IssuedInFuture => "issued_in_future",
            Rejection::ClaimNotNumber(_) => "claim_not_number",
            Rejection::ExceedsMaximumExpiration => "exceeds_maximum_expiration",
            Rejection::AudienceMismatch => "audience_mismatch",
            Rejection::MissingClaim(_) => "missing_claim",
            Rejection::Crypto(_) => "verifier_error",
            Rejection::NotCached { .. } | Rejection::SourceUnavailable => "source_unavailable",
            Rejection::LookupThrottled => "lookup_throttled",
            Rejection::Revoked => "revoked",
        }
    }

    /// The specific reason, for the log (never for the client).
    pub fn log_reason(&self) -> String {
        match self {
            Rejection::Missing => "no token".into(),
            Rejection::Multiple => "several different tokens".into(),
            Rejection::Malformed(e) => format!("malformed token: {}", e.reason()),
            Rejection::MissingKeyClaim { claim } => format!("no '{claim}' claim and no kid"),
            Rejection::UnknownCredential { claim } => {
                format!("'{claim}'/kid names no credential or provider")
            }
            Rejection::UnknownKid { provider, kid } => {
                // The kid is the client's: escaped and cut short, never raw in the log.
                format!(
                    "provider '{provider}' has no key with kid {}",
                    crate::log_value::quote(kid)
                )
            }
            Rejection::KeysUnavailable { provider } => {
                format!("provider '{provider}' has no keys loaded yet")
            }
            Rejection::AlgorithmMismatch => "alg differs from the credential's".into(),
            Rejection::BadSignature => "signature does not verify".into(),
            Rejection::Expired => "token expired".into(),
            Rejection::NotYetValid => "token not valid yet (nbf)".into(),
            Rejection::IssuedInFuture => "iat in the future".into(),
            Rejection::ClaimNotNumber(claim) => format!("'{claim}' missing or not a number"),
            Rejection::ExceedsMaximumExpiration => "exp beyond maximum_expiration".into(),
            Rejection::AudienceMismatch => "aud names no allowed audience".into(),
            Rejection::MissingClaim(claim) => format!("required claim '{claim}' missing"),
            Rejection::Crypto(e) => format!("verifier failed: {e}"),
            Rejection::NotCached { key } => format!(
                "no answer from the consumer source for key {}",
                crate::log_value::quote(key)
            ),
            Rejection::SourceUnavailable => {
                "consumer source unavailable (revocations not loaded, admin unreachable past stale_ttl, or lookup failed)".into()
            }
            Rejection::LookupThrottled => "consumer source lookups per second used up".into(),
            Rejection::Revoked => "token revoked by the admin".into(),
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3): `error="invalid_token"` whenever a token
    /// was presented, no error attribute when none was. `realm` is validated at configure
    /// time to need no escaping.
    pub fn www_authenticate(&self, realm: &str) -> String {
        match self {
            Rejection::Missing => format!(r#"Bearer realm="{realm}""#),
            _ => format!(r#"Bearer realm="{realm}", error="invalid_token""#),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.log_reason())
    }
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_to_decide_are_failed_and_the_rest_rejected_in_the_access_log() {
        use crate::decision::Outcome;
        let failed = [
            Rejection::KeysUnavailable {
                provider: "p".into(),
            },
            Rejection::Crypto(CryptoError::Host("gone".into())),
            Rejection::SourceUnavailable,
            Rejection::LookupThrottled,
        ];
        for r in failed {
            assert_eq!(r.outcome(), Outcome::Failed, "{r:?}");
        }
        for r in [Rejection::Missing, Rejection::Expired, Rejection::Revoked] {
            assert_eq!(r.outcome(), Outcome::Rejected, "{r:?}");
        }
    }

    #[test]
    fn a_kid_from_the_token_reaches_the_log_escaped_and_cut_short() {
        let forged = Rejection::UnknownKid {
            provider: "corp".into(),
            kid: format!("k9\r\n[critical] forged line{}", "x".repeat(500)),
        };
        let line = forged.log_reason();
        assert!(!line.contains(['\r', '\n']), "{line}");
        assert!(line.starts_with(r#"provider 'corp' has no key with kid "k9\r\n[critical] forged"#));
        assert!(line.ends_with("\"…"), "{line}");
        assert!(line.len() < 200, "{} bytes", line.len());
    }

    #[test]
    fn bodies_are_kongs() {
        let cases = [
            (Rejection::Missing, r#"{"message":"Unauthorized"}"#),
            (
                Rejection::Multiple,
                r#"{"message":"Multiple tokens provided"}"#,
            ),
            (
                Rejection::Malformed(TokenError::Json(super::super::token::Segment::Payload)),
                r#"{"message":"Bad token; invalid JSON"}"#,
            ),
            (
                Rejection::Malformed(TokenError::AlgNone),
                r#"{"message":"Bad token; invalid alg"}"#,
            ),
            (
                Rejection::BadSignature,
                r#"{"message":"Invalid signature"}"#,
            ),
            (
                Rejection::AlgorithmMismatch,
                r#"{"message":"Invalid algorithm"}"#,
            ),
            (
                Rejection::UnknownCredential {
                    claim: "iss".into(),
                },
                r#"{"message":"No credentials found for given 'iss'"}"#,
            ),
            (
                Rejection::MissingKeyClaim {
                    claim: "iss".into(),
                },
                r#"{"message":"No mandatory 'iss' in claims"}"#,
            ),
            (Rejection::Expired, r#"{"exp":"token expired"}"#),
            (Rejection::NotYetValid, r#"{"nbf":"token not valid yet"}"#),
            (
                Rejection::ClaimNotNumber("exp"),
                r#"{"exp":"must be a number"}"#,
            ),
            (
                Rejection::ExceedsMaximumExpiration,
                r#"{"exp":"exceeds maximum allowed expiration"}"#,
            ),
        ];
        for (rejection, body) in cases {
            assert_eq!(rejection.kong_body(), body, "{rejection:?}");
            assert_eq!(rejection.status(), 401);
            assert!(serde_json::from_str::<serde_json::Value>(&rejection.kong_body()).is_ok());
        }
    }

    #[test]
    fn plain_body_hides_every_401_reason() {
        assert_eq!(
            Rejection::Expired.body(true),
            r#"{"message":"Unauthorized"}"#
        );
        assert_eq!(Rejection::Expired.body(false), r#"{"exp":"token expired"}"#);
    }

    #[test]
    fn bodies_with_configured_names_stay_valid_json() {
        let r = Rejection::MissingClaim("we\"ird".into());
        let body: serde_json::Value = serde_json::from_str(&r.kong_body()).unwrap();
        assert_eq!(body["we\"ird"], "required claim missing");
    }

    #[test]
    fn www_authenticate_omits_the_error_without_a_token() {
        assert_eq!(
            Rejection::Missing.www_authenticate("api"),
            r#"Bearer realm="api""#
        );
        assert_eq!(
            Rejection::BadSignature.www_authenticate("api"),
            r#"Bearer realm="api", error="invalid_token""#
        );
    }
}
