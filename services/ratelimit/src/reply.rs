//! The `RateLimitResponse` for a planned request and what the script counted: an overall
//! code, and per descriptor its code, limit, what remains and when its window resets.

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use envoy_types::pb::google::protobuf::Duration;
use portcullis_core::rate_limit::UnixMillis;

use crate::plan::Plan;
use crate::script::Counted;

/// The answer to a request whose every check `counted` reports on (in plan order).
///
/// A descriptor without a limit override is `OK` with no `current_limit`, as
/// envoyproxy/ratelimit answers a descriptor it has no limit for. `limit_remaining` is what
/// is left after this request when admitted, and what was left before it when refused
/// (0 for the exceeded window when each request is one hit).
pub fn response(plan: &Plan, counted: &Counted, now: UnixMillis) -> RateLimitResponse {
    let mut statuses = vec![
        DescriptorStatus {
            code: Code::Ok as i32,
            ..DescriptorStatus::default()
        };
        plan.descriptors
    ];
    for (check, &(count, over)) in plan.checks.iter().zip(&counted.counts) {
        let Some(status) = statuses.get_mut(check.descriptor) else {
            continue;
        };
        *status = DescriptorStatus {
            code: code(!over),
            current_limit: Some(RateLimit {
                name: String::new(),
                requests_per_unit: check.limit,
                unit: check.unit.to_envoy() as i32,
            }),
            limit_remaining: u32::try_from(u64::from(check.limit).saturating_sub(count))
                .unwrap_or(0),
            duration_until_reset: Some(until(check.window.end, now)),
            quota: None,
        };
    }
    RateLimitResponse {
        overall_code: code(counted.admitted),
        statuses,
        ..RateLimitResponse::default()
    }
}

fn code(ok: bool) -> i32 {
    if ok {
        Code::Ok as i32
    } else {
        Code::OverLimit as i32
    }
}

/// From `now` to the window end at `end_secs`; zero if the end has passed.
fn until(end_secs: u64, now: UnixMillis) -> Duration {
    let millis = end_secs.saturating_mul(1_000).saturating_sub(now.0);
    Duration {
        seconds: i64::try_from(millis / 1_000).unwrap_or(i64::MAX),
        // Below 1e9: fits.
        nanos: i32::try_from((millis % 1_000) * 1_000_000).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::plan::tests::{descriptor, request, NOW};
    use crate::plan::{plan, Ceilings};
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;

    fn two_limits() -> Plan {
        plan(
            &request(vec![
                descriptor(&[("route", "users")], Some((10, Unit::Minute))),
                descriptor(&[("free", "1")], None),
                descriptor(&[("ip", "10.0.0.1")], Some((100, Unit::Hour))),
            ]),
            &Limits::default(),
            Ceilings::default(),
            NOW,
        )
        .unwrap()
    }

    #[test]
    fn an_admitted_request_reports_what_remains_after_it_and_when_each_window_resets() {
        let counted = Counted {
            admitted: true,
            counts: vec![(4, false), (40, false)],
        };
        let response = response(&two_limits(), &counted, NOW);
        assert_eq!(response.overall_code, Code::Ok as i32);
        let [minute, free, hour] = &response.statuses[..] else {
            panic!("{:?}", response.statuses)
        };
        assert_eq!(minute.code, Code::Ok as i32);
        assert_eq!(
            minute.current_limit,
            Some(RateLimit {
                name: String::new(),
                requests_per_unit: 10,
                unit: Unit::Minute as i32
            })
        );
        assert_eq!(minute.limit_remaining, 6);
        // 16:30:20.500 → 16:31:00.
        assert_eq!(
            minute.duration_until_reset,
            Some(Duration {
                seconds: 39,
                nanos: 500_000_000
            })
        );
        assert_eq!(hour.limit_remaining, 60);
        assert_eq!(
            hour.duration_until_reset,
            Some(Duration {
                seconds: 1_779,
                nanos: 500_000_000
            })
        );
        assert_eq!(
            free,
            &DescriptorStatus {
                code: Code::Ok as i32,
                ..DescriptorStatus::default()
            }
        );
    }

    #[test]
    fn a_refused_request_names_the_window_that_is_over() {
        let counted = Counted {
            admitted: false,
            counts: vec![(10, true), (40, false)],
        };
        let response = response(&two_limits(), &counted, NOW);
        assert_eq!(response.overall_code, Code::OverLimit as i32);
        assert_eq!(response.statuses[0].code, Code::OverLimit as i32);
        assert_eq!(response.statuses[0].limit_remaining, 0);
        assert_eq!(response.statuses[2].code, Code::Ok as i32);
        assert_eq!(response.statuses[2].limit_remaining, 60);
    }

    #[test]
    fn a_count_past_the_limit_leaves_nothing_rather_than_wrapping() {
        let counted = Counted {
            admitted: false,
            counts: vec![(25, true), (1_000, true)],
        };
        let response = response(&two_limits(), &counted, NOW);
        assert_eq!(response.statuses[0].limit_remaining, 0);
        assert_eq!(response.statuses[2].limit_remaining, 0);
    }

    #[test]
    fn reset_is_never_negative() {
        assert_eq!(
            until(10, UnixMillis(11_000)),
            Duration {
                seconds: 0,
                nanos: 0
            }
        );
    }
}
