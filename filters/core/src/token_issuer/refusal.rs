//! Why a successful login response could not become a token, and how each reason looks: one
//! status, one JSON body, one metric label, one log line.

use super::keys::SignError;

/// A 2xx login response the issuer will not sign. The client gets 502 and none of the
/// upstream's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The body is over `max_body_bytes` (declared, or as it arrived).
    BodyTooLarge { len: usize, max: usize },
    /// The upstream's `exp` is not a number: it meant to shorten the token in a way the
    /// issuer cannot read, so no token is safer than a longer one.
    ExpNotNumber,
    /// The upstream's `exp` is not in the future.
    ExpPassed,
    /// Signing failed.
    Signing(SignError),
}

impl Refusal {
    /// Always 502: the upstream said yes, the gateway could not make the token.
    pub fn status(&self) -> u16 {
        502
    }

    /// The JSON body (Kong's `{"message": …}` shape); never the upstream's data.
    pub fn body(&self) -> &'static str {
        match self {
            Refusal::BodyTooLarge { .. } => {
                r#"{"message":"Bad gateway: the login response is too large to sign"}"#
            }
            Refusal::ExpNotNumber | Refusal::ExpPassed | Refusal::Signing(_) => {
                r#"{"message":"Bad gateway: the login response cannot be turned into a token"}"#
            }
        }
    }

    /// The suffix of the `portcullis_token_issuer_rejected_<label>_total` counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Refusal::BodyTooLarge { .. } => "too_large",
            Refusal::ExpNotNumber => "exp_not_number",
            Refusal::ExpPassed => "exp_passed",
            Refusal::Signing(_) => "signing_failed",
        }
    }

    /// One line for the log.
    pub fn log_reason(&self) -> String {
        match self {
            Refusal::BodyTooLarge { len, max } => {
                format!("login response of {len} bytes, limit {max}")
            }
            Refusal::ExpNotNumber => "the login response's exp is not a number".into(),
            Refusal::ExpPassed => "the login response's exp is not in the future".into(),
            Refusal::Signing(e) => e.to_string(),
        }
    }
}
