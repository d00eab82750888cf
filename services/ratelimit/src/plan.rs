//! A request checked and turned into the counters it touches: one [`Check`] per descriptor
//! that carries a limit override, with its key, window and hits.

use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use portcullis_core::rate_limit::window::Window;
use portcullis_core::rate_limit::UnixMillis;

use crate::config::Limits;
use crate::failure::Failure;
use crate::key::counter_key;
use crate::window::CountUnit;

/// At most this many descriptors per request: the client controls the count, and every one
/// is a key in one Redis script.
pub const MAX_DESCRIPTORS: usize = 64;
/// At most this many bytes per counter key.
pub const MAX_KEY_BYTES: usize = 4_096;

/// What a client may ask, set by the operator (`--max-hits-addend`, `--max-limit`): the
/// client is trusted with its own limits, but not without bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ceilings {
    /// The most hits one call may add to a counter (the request's `hits_addend` and each
    /// descriptor's). Above it the call is refused with `INVALID_ARGUMENT` and counts
    /// nowhere: a single call cannot spend a shared counter's whole window.
    pub hits_addend: u64,
    /// The most `requests_per_unit` a descriptor's `limit` override may ask. Above it the
    /// descriptor is counted against this ceiling instead (clamped, reported in
    /// `current_limit`): refusing would let Envoy's `failure_mode_deny: false` wave the
    /// request through. Static limits (`--config`) are the operator's and not clamped.
    pub limit: u32,
}

impl Default for Ceilings {
    /// Generous enough for byte or token counting; tighten them to what your callers need.
    fn default() -> Ceilings {
        Ceilings {
            hits_addend: 1_000_000,
            limit: 1_000_000_000,
        }
    }
}

/// One counter one request touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// The descriptor's position in the request (and in the response's `statuses`).
    pub descriptor: usize,
    pub key: String,
    /// `requests_per_unit`: the request is over when the count plus its hits exceeds it.
    pub limit: u32,
    pub unit: CountUnit,
    /// The window `now` falls in.
    pub window: Window,
    /// What the request adds to the counter when admitted; 0 checks without counting.
    pub hits: u64,
}

/// What one request asks of the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// How many descriptors the request has: the response has a status for each.
    pub descriptors: usize,
    /// The limited descriptors, in request order. Descriptors without a `limit` override
    /// and without a rule in the static limits have none: they are always OK.
    pub checks: Vec<Check>,
    /// Descriptors whose override asked more than [`Ceilings::limit`]: (position, asked).
    pub clamped: Vec<(usize, u32)>,
}

/// Checks `request` and plans its counters at `now`. A descriptor's limit is its override,
/// else the first matching rule of `limits` (usually none: the service holds no policy).
///
/// Hits: a descriptor's own `hits_addend` wins; else the request's, where 0 means 1 (Envoy's
/// rule). `is_negative_hits` is refused, and so are hits above `ceilings.hits_addend`; an
/// override above `ceilings.limit` is clamped to it.
pub fn plan(
    request: &RateLimitRequest,
    limits: &Limits,
    ceilings: Ceilings,
    now: UnixMillis,
) -> Result<Plan, Failure> {
    if request.domain.is_empty() {
        return Err(Failure::EmptyDomain);
    }
    if request.descriptors.is_empty() {
        return Err(Failure::NoDescriptors);
    }
    if request.descriptors.len() > MAX_DESCRIPTORS {
        return Err(Failure::TooManyDescriptors(request.descriptors.len()));
    }
    let request_hits = u64::from(request.hits_addend.max(1));
    if request_hits > ceilings.hits_addend {
        return Err(Failure::HitsAboveCeiling {
            descriptor: None,
            hits: request_hits,
            ceiling: ceilings.hits_addend,
        });
    }
    let mut checks = Vec::with_capacity(request.descriptors.len());
    let mut clamped = Vec::new();
    for (index, descriptor) in request.descriptors.iter().enumerate() {
        let (limit, unit) = match &descriptor.limit {
            Some(limit) => {
                let unit = CountUnit::from_envoy(limit.unit).ok_or(Failure::UnknownUnit {
                    descriptor: index,
                    unit: limit.unit,
                })?;
                if limit.requests_per_unit > ceilings.limit {
                    clamped.push((index, limit.requests_per_unit));
                }
                (limit.requests_per_unit.min(ceilings.limit), unit)
            }
            None => match limits.find(&request.domain, &descriptor.entries) {
                Some(found) => found,
                None => continue,
            },
        };
        if descriptor.is_negative_hits {
            return Err(Failure::NegativeHits { descriptor: index });
        }
        let hits = descriptor
            .hits_addend
            .map_or(request_hits, |addend| addend.value);
        if hits > ceilings.hits_addend {
            return Err(Failure::HitsAboveCeiling {
                descriptor: Some(index),
                hits,
                ceiling: ceilings.hits_addend,
            });
        }
        let window = unit.window_at(now.secs());
        let key = counter_key(&request.domain, &descriptor.entries, unit, window.start);
        if key.len() > MAX_KEY_BYTES {
            return Err(Failure::KeyTooLong {
                descriptor: index,
                bytes: key.len(),
            });
        }
        checks.push(Check {
            descriptor: index,
            key,
            limit,
            unit,
            window,
            hits,
        });
    }
    Ok(Plan {
        descriptors: request.descriptors.len(),
        checks,
        clamped,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
        Entry, RateLimitOverride,
    };
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
    use envoy_types::pb::google::protobuf::UInt64Value;
    use portcullis_core::rate_limit::Period;

    /// 2026-11-25T16:30:20.500Z.
    pub const NOW: UnixMillis = UnixMillis(1_795_624_220_500);

    pub fn descriptor(pairs: &[(&str, &str)], limit: Option<(u32, Unit)>) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: pairs
                .iter()
                .map(|(key, value)| Entry {
                    key: key.to_string(),
                    value: value.to_string(),
                })
                .collect(),
            limit: limit.map(|(requests_per_unit, unit)| RateLimitOverride {
                requests_per_unit,
                unit: unit as i32,
            }),
            hits_addend: None,
            is_negative_hits: false,
        }
    }

    pub fn request(descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
        RateLimitRequest {
            domain: "edge".to_owned(),
            descriptors,
            hits_addend: 0,
        }
    }

    #[test]
    fn an_overridden_descriptor_becomes_a_check_in_its_window() {
        let req = request(vec![descriptor(
            &[("route", "users")],
            Some((10, Unit::Minute)),
        )]);
        let plan = plan(&req, &Limits::default(), Ceilings::default(), NOW).unwrap();
        assert_eq!(plan.descriptors, 1);
        let check = &plan.checks[0];
        assert_eq!(check.key, "{edge}:route=users:minute:1795624200");
        assert_eq!(check.limit, 10);
        assert_eq!(check.unit, CountUnit::Calendar(Period::Minute));
        assert_eq!(
            check.window,
            Window {
                start: 1_795_624_200,
                end: 1_795_624_260
            }
        );
        assert_eq!(check.hits, 1);
    }

    #[test]
    fn descriptors_without_override_have_no_check_but_keep_their_place() {
        let req = request(vec![
            descriptor(&[("a", "1")], None),
            descriptor(&[("b", "2")], Some((5, Unit::Second))),
        ]);
        let plan = plan(&req, &Limits::default(), Ceilings::default(), NOW).unwrap();
        assert_eq!(plan.descriptors, 2);
        assert_eq!(plan.checks.len(), 1);
        assert_eq!(plan.checks[0].descriptor, 1);
    }

    #[test]
    fn request_hits_of_zero_mean_one_and_the_descriptors_own_hits_win() {
        let mut req = request(vec![
            descriptor(&[("a", "1")], Some((5, Unit::Second))),
            descriptor(&[("b", "2")], Some((5, Unit::Second))),
        ]);
        req.hits_addend = 3;
        req.descriptors[1].hits_addend = Some(UInt64Value { value: 0 });
        let plan = plan(&req, &Limits::default(), Ceilings::default(), NOW).unwrap();
        assert_eq!(plan.checks[0].hits, 3);
        assert_eq!(plan.checks[1].hits, 0);
        req.hits_addend = 0;
        assert_eq!(
            super::plan(&req, &Limits::default(), Ceilings::default(), NOW)
                .unwrap()
                .checks[0]
                .hits,
            1
        );
    }

    #[test]
    fn refuses_what_it_cannot_count() {
        let ok = descriptor(&[("a", "1")], Some((5, Unit::Second)));
        let mut unknown = ok.clone();
        unknown.limit = Some(RateLimitOverride {
            requests_per_unit: 5,
            unit: 0,
        });
        let mut negative = ok.clone();
        negative.is_negative_hits = true;
        let mut huge = ok.clone();
        huge.hits_addend = Some(UInt64Value { value: 1 << 32 });
        let long = descriptor(
            &[("a", &"x".repeat(MAX_KEY_BYTES))],
            Some((5, Unit::Second)),
        );
        let mut empty_domain = request(vec![ok.clone()]);
        empty_domain.domain.clear();
        let rows: Vec<(&str, RateLimitRequest, Failure)> = vec![
            ("empty domain", empty_domain, Failure::EmptyDomain),
            ("no descriptors", request(vec![]), Failure::NoDescriptors),
            (
                "too many",
                request(vec![ok.clone(); MAX_DESCRIPTORS + 1]),
                Failure::TooManyDescriptors(MAX_DESCRIPTORS + 1),
            ),
            (
                "unknown unit",
                request(vec![ok.clone(), unknown]),
                Failure::UnknownUnit {
                    descriptor: 1,
                    unit: 0,
                },
            ),
            (
                "negative",
                request(vec![negative]),
                Failure::NegativeHits { descriptor: 0 },
            ),
            (
                "huge hits",
                request(vec![huge]),
                Failure::HitsAboveCeiling {
                    descriptor: Some(0),
                    hits: 1 << 32,
                    ceiling: Ceilings::default().hits_addend,
                },
            ),
            (
                "long key",
                request(vec![long]),
                Failure::KeyTooLong {
                    descriptor: 0,
                    bytes: MAX_KEY_BYTES + 27,
                },
            ),
        ];
        for (name, req, failure) in rows {
            assert_eq!(
                plan(&req, &Limits::default(), Ceilings::default(), NOW),
                Err(failure.clone()),
                "{name}"
            );
            assert_eq!(failure.code(), tonic::Code::InvalidArgument, "{name}");
        }
    }

    #[test]
    fn hits_above_the_ceiling_are_refused_wherever_they_are_asked() {
        let ceilings = Ceilings {
            hits_addend: 10,
            limit: 100,
        };
        let mut req = request(vec![descriptor(&[("a", "1")], Some((50, Unit::Hour)))]);
        req.hits_addend = 10;
        assert_eq!(
            plan(&req, &Limits::default(), ceilings, NOW)
                .unwrap()
                .checks[0]
                .hits,
            10
        );
        req.hits_addend = 11;
        let refused = plan(&req, &Limits::default(), ceilings, NOW).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "hits_addend: 11 is above this service's ceiling of 10 (--max-hits-addend)"
        );
        req.hits_addend = 0;
        req.descriptors[0].hits_addend = Some(UInt64Value { value: 11 });
        let refused = plan(&req, &Limits::default(), ceilings, NOW).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "descriptors[0].hits_addend: 11 is above this service's ceiling of 10 (--max-hits-addend)"
        );
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn an_override_above_the_ceiling_is_clamped_and_a_static_limit_is_not() {
        let ceilings = Ceilings {
            hits_addend: 10,
            limit: 100,
        };
        let limits = Limits::from_json(
            br#"{"limits":[{"domain":"edge","entries":[{"key":"s"}],"requests_per_unit":500,"unit":"HOUR"}]}"#,
        )
        .unwrap();
        let req = request(vec![
            descriptor(&[("a", "1")], Some((100, Unit::Hour))),
            descriptor(&[("b", "2")], Some((u32::MAX, Unit::Hour))),
            descriptor(&[("s", "x")], None),
        ]);
        let plan = plan(&req, &limits, ceilings, NOW).unwrap();
        let applied: Vec<u32> = plan.checks.iter().map(|check| check.limit).collect();
        assert_eq!(applied, vec![100, 100, 500]);
        assert_eq!(plan.clamped, vec![(1, u32::MAX)]);
    }
}
