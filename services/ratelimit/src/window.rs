//! Envoy's rate limit units as calendar UTC windows: second to year as Kong counts them
//! (`portcullis_core`'s [`Period`]), and weeks from Monday 00:00 UTC.

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use portcullis_core::rate_limit::window::{Window, MAX_SECS};
use portcullis_core::rate_limit::Period;

const DAY: u64 = 86_400;
const WEEK: u64 = 7 * DAY;
/// 1970-01-01 was a Thursday: three days after a Monday.
const EPOCH_AFTER_MONDAY: u64 = 3 * DAY;

/// A unit the service counts in: every Envoy unit but `UNKNOWN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CountUnit {
    Calendar(Period),
    Week,
}

impl CountUnit {
    /// The unit of an override's `unit` field; `None` for `UNKNOWN` and for numbers Envoy's
    /// enum does not have.
    pub fn from_envoy(unit: i32) -> Option<CountUnit> {
        Some(match Unit::try_from(unit).ok()? {
            Unit::Unknown => return None,
            Unit::Second => CountUnit::Calendar(Period::Second),
            Unit::Minute => CountUnit::Calendar(Period::Minute),
            Unit::Hour => CountUnit::Calendar(Period::Hour),
            Unit::Day => CountUnit::Calendar(Period::Day),
            Unit::Week => CountUnit::Week,
            Unit::Month => CountUnit::Calendar(Period::Month),
            Unit::Year => CountUnit::Calendar(Period::Year),
        })
    }

    /// Envoy's enum value, for `current_limit.unit`.
    pub fn to_envoy(self) -> Unit {
        match self {
            CountUnit::Calendar(Period::Second) => Unit::Second,
            CountUnit::Calendar(Period::Minute) => Unit::Minute,
            CountUnit::Calendar(Period::Hour) => Unit::Hour,
            CountUnit::Calendar(Period::Day) => Unit::Day,
            CountUnit::Calendar(Period::Month) => Unit::Month,
            CountUnit::Calendar(Period::Year) => Unit::Year,
            CountUnit::Week => Unit::Week,
        }
    }

    /// The word in counter keys: `second` … `year`, `week`.
    pub fn name(self) -> &'static str {
        match self {
            CountUnit::Calendar(period) => period.name(),
            CountUnit::Week => "week",
        }
    }

    /// The window of this unit that contains `secs` (Unix seconds, UTC).
    pub fn window_at(self, secs: u64) -> Window {
        match self {
            CountUnit::Calendar(period) => period.window_at(secs),
            CountUnit::Week => {
                let secs = secs.min(MAX_SECS);
                let start = secs.saturating_sub((secs + EPOCH_AFTER_MONDAY) % WEEK);
                Window {
                    start,
                    end: start + WEEK,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-25T16:30:00Z, a Wednesday.
    const WEDNESDAY: u64 = 1_795_624_200;
    /// 2026-11-23T00:00:00Z, the Monday before.
    const MONDAY: u64 = 1_795_392_000;

    #[test]
    fn weeks_start_on_monday_midnight_utc() {
        let week = CountUnit::Week.window_at(WEDNESDAY);
        assert_eq!(week.start, MONDAY);
        assert_eq!(week.end, MONDAY + WEEK);
        assert_eq!(CountUnit::Week.window_at(MONDAY).start, MONDAY);
        assert_eq!(CountUnit::Week.window_at(MONDAY - 1).start, MONDAY - WEEK);
    }

    #[test]
    fn the_first_days_of_the_epoch_belong_to_a_week_that_starts_at_it() {
        // 1970-01-05 was the first Monday; the days before it clamp to the epoch.
        assert_eq!(CountUnit::Week.window_at(0).start, 0);
        assert_eq!(CountUnit::Week.window_at(4 * DAY).start, 4 * DAY);
    }

    #[test]
    fn months_are_calendar_months() {
        let unit = CountUnit::from_envoy(Unit::Month as i32);
        assert_eq!(unit, Some(CountUnit::Calendar(Period::Month)));
        // 2028-02-10 lies in a leap February: 29 days.
        let february = CountUnit::Calendar(Period::Month).window_at(1_833_753_600);
        assert_eq!(february.len_secs(), 29 * DAY);
    }

    #[test]
    fn unknown_and_foreign_units_are_refused() {
        assert_eq!(CountUnit::from_envoy(Unit::Unknown as i32), None);
        assert_eq!(CountUnit::from_envoy(8), None);
        assert_eq!(CountUnit::from_envoy(-1), None);
    }

    #[test]
    fn every_unit_round_trips_through_envoys_enum() {
        for value in 1..=7 {
            let unit = CountUnit::from_envoy(value);
            assert_eq!(unit.map(|u| u.to_envoy() as i32), Some(value));
        }
    }
}
