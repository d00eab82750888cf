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
    /// Redis did not answer in time, refused the connection, or failed the script.
    Unavailable(String),
}

impl Failure {
    /// The gRPC status code: the client's mistakes are `INVALID_ARGUMENT`, Redis trouble is
    /// `UNAVAILABLE` (Envoy's ratelimit filter then applies its `failure_mode_deny`).
    pub fn code(&self) -> tonic::Code {
        match self {
            Failure::Unavailable(_) => tonic::Code::Unavailable,
            _ => tonic::Code::InvalidArgument,
        }
    }

    pub fn status(&self) -> tonic::Status {
        tonic::Status::new(self.code(), self.to_string())
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
            Failure::Unavailable(why) => write!(f, "rate limit store unavailable: {why}"),
        }
    }
}
