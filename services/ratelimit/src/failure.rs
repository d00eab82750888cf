//! Why a `ShouldRateLimit` call gets no answer, and the gRPC status each reason becomes.

use std::fmt;

/// Every way a call can fail. The status code and the message both come from here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// `domain` is empty (envoyproxy/ratelimit refuses it too).
    EmptyDomain,
    /// The request has no descriptor.
    NoDescriptors,
    /// More descriptors than [`crate::plan::MAX_DESCRIPTORS`].
    TooManyDescriptors(usize),
    /// A descriptor's override names `UNKNOWN` or a unit Envoy's enum does not have.
    UnknownUnit { descriptor: usize, unit: i32 },
    /// `is_negative_hits` is set: this service does not hand quota back.
    NegativeHits { descriptor: usize },
    /// The request's `hits_addend` (`descriptor: None`) or a descriptor's is above
    /// `--max-hits-addend`.
    HitsAboveCeiling {
        descriptor: Option<usize>,
        hits: u64,
        ceiling: u64,
    },
    /// A descriptor's counter key would be longer than [`crate::plan::MAX_KEY_BYTES`].
    KeyTooLong { descriptor: usize, bytes: usize },
    /// Redis did not answer in time, refused the connection, or failed the script: what
    /// happened, and the message for the client.
    Unavailable(Outage, String),
}

/// What went wrong with Redis when a call fails with [`Failure::Unavailable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outage {
    /// A connection attempt failed (refused, unreachable, a Sentinel without an answer).
    Connect,
    /// Not tried: the last connection attempt failed less than
    /// [`crate::store::RETRY_AFTER`] ago.
    Backoff,
    /// No answer within `--redis-timeout-ms` (connecting or running the call).
    Timeout,
    /// The connection broke during the call.
    ConnectionLost,
    /// Redis answered with an error (`OOM`, `BUSY`, `CROSSSLOT`, `READONLY`, …).
    ErrorReply,
    /// Redis answered, but not in the shape the script returns.
    BadReply,
}

impl Outage {
    /// Every outage, in the order the metrics list them.
    pub const ALL: [Outage; 6] = [
        Outage::Connect,
        Outage::Backoff,
        Outage::Timeout,
        Outage::ConnectionLost,
        Outage::ErrorReply,
        Outage::BadReply,
    ];

    /// Its label in `portcullis_ratelimit_unavailable_total{cause}` and
    /// `portcullis_ratelimit_redis_errors_total{kind}`.
    pub fn metric_label(self) -> &'static str {
        match self {
            Outage::Connect => "connect",
            Outage::Backoff => "backoff",
            Outage::Timeout => "timeout",
            Outage::ConnectionLost => "connection_lost",
            Outage::ErrorReply => "error_reply",
            Outage::BadReply => "bad_reply",
        }
    }

    /// Whether Redis itself failed (every outage but [`Outage::Backoff`], where nothing was
    /// asked of it).
    pub fn is_redis_error(self) -> bool {
        self != Outage::Backoff
    }
}

impl Failure {
    /// The gRPC status code: the client's mistakes are `INVALID_ARGUMENT`, Redis trouble is
    /// `UNAVAILABLE` (Envoy's ratelimit filter then applies its `failure_mode_deny`).
    pub fn code(&self) -> tonic::Code {
        match self {
            Failure::Unavailable(..) => tonic::Code::Unavailable,
            _ => tonic::Code::InvalidArgument,
        }
    }

    pub fn status(&self) -> tonic::Status {
        tonic::Status::new(self.code(), self.to_string())
    }

    /// Every reason a request is refused as malformed, as [`Failure::invalid_label`] spells
    /// them, in the order the metrics list them.
    pub const INVALID_LABELS: [&'static str; 7] = [
        "empty_domain",
        "no_descriptors",
        "too_many_descriptors",
        "unknown_unit",
        "negative_hits",
        "hits_above_ceiling",
        "key_too_long",
    ];

    /// Why a request was refused as malformed, as `portcullis_ratelimit_invalid_requests_total`
    /// labels it; `None` for [`Failure::Unavailable`], which is Redis failing, not the client.
    pub fn invalid_label(&self) -> Option<&'static str> {
        Some(match self {
            Failure::EmptyDomain => "empty_domain",
            Failure::NoDescriptors => "no_descriptors",
            Failure::TooManyDescriptors(_) => "too_many_descriptors",
            Failure::UnknownUnit { .. } => "unknown_unit",
            Failure::NegativeHits { .. } => "negative_hits",
            Failure::HitsAboveCeiling { .. } => "hits_above_ceiling",
            Failure::KeyTooLong { .. } => "key_too_long",
            Failure::Unavailable(..) => return None,
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::EmptyDomain => write!(f, "rate limit domain must not be empty"),
            Failure::NoDescriptors => write!(f, "rate limit descriptor list must not be empty"),
            Failure::TooManyDescriptors(n) => write!(
                f,
                "{n} descriptors: at most {} per request",
                crate::plan::MAX_DESCRIPTORS
            ),
            Failure::UnknownUnit { descriptor, unit } => write!(
                f,
                "descriptors[{descriptor}].limit.unit: {unit} is not a unit this service counts in (SECOND to YEAR, WEEK)"
            ),
            Failure::NegativeHits { descriptor } => write!(
                f,
                "descriptors[{descriptor}].is_negative_hits: not supported, quota is never handed back"
            ),
            Failure::HitsAboveCeiling {
                descriptor,
                hits,
                ceiling,
            } => {
                if let Some(descriptor) = descriptor {
                    write!(f, "descriptors[{descriptor}].")?;
                }
                write!(
                    f,
                    "hits_addend: {hits} is above this service's ceiling of {ceiling} (--max-hits-addend)"
                )
            }
            Failure::KeyTooLong { descriptor, bytes } => write!(
                f,
                "descriptors[{descriptor}]: its counter key would be {bytes} bytes, at most {}",
                crate::plan::MAX_KEY_BYTES
            ),
            Failure::Unavailable(_, why) => write!(f, "rate limit store unavailable: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_a_listed_label_and_only_redis_trouble_has_none() {
        let refusals = [
            Failure::EmptyDomain,
            Failure::NoDescriptors,
            Failure::TooManyDescriptors(65),
            Failure::UnknownUnit {
                descriptor: 0,
                unit: 0,
            },
            Failure::NegativeHits { descriptor: 0 },
            Failure::HitsAboveCeiling {
                descriptor: None,
                hits: 2,
                ceiling: 1,
            },
            Failure::KeyTooLong {
                descriptor: 0,
                bytes: 5_000,
            },
        ];
        let labels: Vec<&str> = refusals
            .iter()
            .map(|failure| failure.invalid_label().unwrap())
            .collect();
        assert_eq!(labels, Failure::INVALID_LABELS);
        for outage in Outage::ALL {
            let failure = Failure::Unavailable(outage, String::new());
            assert_eq!(failure.invalid_label(), None);
            assert_eq!(failure.code(), tonic::Code::Unavailable);
        }
    }
}
