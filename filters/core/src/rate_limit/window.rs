//! Rate-limit windows: the calendar-aligned UTC second, minute, hour, day, month or year an
//! instant falls in, and how much of the previous window a sliding window still sees.
//!
//! Months and years are real calendar ones (28 to 31 days, 365 or 366), not Kong's fixed
//! 30 and 365 days, so `RateLimit-Reset` is right on the 31st and on 29 February.

use super::UnixMillis;

/// The latest instant the arithmetic works with: 9999-12-31T23:59:59Z. A host clock past it
/// (broken, or hostile in a test) is clamped there rather than overflowing.
pub const MAX_SECS: u64 = 253_402_300_799;

/// One of Kong's six window lengths, shortest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Year,
}

impl Period {
    /// Every period, shortest first (the order Kong checks that limits do not decrease in).
    pub const ALL: [Period; 6] = [
        Period::Second,
        Period::Minute,
        Period::Hour,
        Period::Day,
        Period::Month,
        Period::Year,
    ];

    /// The config field and the word in log lines: `second` … `year`.
    pub fn name(self) -> &'static str {
        match self {
            Period::Second => "second",
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
            Period::Year => "year",
        }
    }

    /// Kong's `X-RateLimit-Limit-<Window>`, lower-case as HTTP/2 and Envoy want it.
    pub fn limit_header(self) -> &'static str {
        match self {
            Period::Second => "x-ratelimit-limit-second",
            Period::Minute => "x-ratelimit-limit-minute",
            Period::Hour => "x-ratelimit-limit-hour",
            Period::Day => "x-ratelimit-limit-day",
            Period::Month => "x-ratelimit-limit-month",
            Period::Year => "x-ratelimit-limit-year",
        }
    }

    /// Kong's `X-RateLimit-Remaining-<Window>`, lower-case.
    pub fn remaining_header(self) -> &'static str {
        match self {
            Period::Second => "x-ratelimit-remaining-second",
            Period::Minute => "x-ratelimit-remaining-minute",
            Period::Hour => "x-ratelimit-remaining-hour",
            Period::Day => "x-ratelimit-remaining-day",
            Period::Month => "x-ratelimit-remaining-month",
            Period::Year => "x-ratelimit-remaining-year",
        }
    }

    /// A stable small number for fingerprints (never reordered).
    pub(crate) fn code(self) -> u8 {
        match self {
            Period::Second => 1,
            Period::Minute => 2,
            Period::Hour => 3,
            Period::Day => 4,
            Period::Month => 5,
            Period::Year => 6,
        }
    }

    /// The window of this period that contains `secs` (Unix seconds, UTC).
    pub fn window_at(self, secs: u64) -> Window {
        let secs = secs.min(MAX_SECS);
        let fixed = |len: u64| {
            let start = secs - secs % len;
            Window {
                start,
                end: start + len,
            }
        };
        match self {
            Period::Second => fixed(1),
            Period::Minute => fixed(60),
            Period::Hour => fixed(3_600),
            Period::Day => fixed(86_400),
            Period::Month => {
                let (year, month, _) = civil_from_days(secs / 86_400);
                let (next_year, next_month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                Window {
                    start: days_from_civil(year, month) * 86_400,
                    end: days_from_civil(next_year, next_month) * 86_400,
                }
            }
            Period::Year => {
                let (year, _, _) = civil_from_days(secs / 86_400);
                Window {
                    start: days_from_civil(year, 1) * 86_400,
                    end: days_from_civil(year + 1, 1) * 86_400,
                }
            }
        }
    }

    /// The window just before `window` (itself at the epoch, where there is none).
    pub fn previous(self, window: Window) -> Window {
        match window.start.checked_sub(1) {
            Some(last) => self.window_at(last),
            None => window,
        }
    }

    /// The window just after `window`.
    pub fn next(self, window: Window) -> Window {
        self.window_at(window.end)
    }
}

/// A half-open span of Unix seconds `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub start: u64,
    pub end: u64,
}

impl Window {
    /// Length in seconds (a month is 28 to 31 days).
    pub fn len_secs(self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    fn start_ms(self) -> u64 {
        self.start.saturating_mul(1_000)
    }

    fn end_ms(self) -> u64 {
        self.end.saturating_mul(1_000)
    }

    fn len_ms(self) -> u64 {
        self.len_secs().saturating_mul(1_000)
    }

    /// Milliseconds of this window already gone at `now`: 0 before it starts (a worker
    /// whose clock reads a little behind another's), the whole length after it ends.
    pub fn elapsed_ms(self, now: UnixMillis) -> u64 {
        now.0.saturating_sub(self.start_ms()).min(self.len_ms())
    }

    /// Whole seconds from `now` until this window ends, rounded up and at least 1 (Kong's
    /// `RateLimit-Reset` never says 0).
    pub fn secs_until_end(self, now: UnixMillis) -> u64 {
        ceil_secs(self.end_ms().saturating_sub(now.0)).max(1)
    }
}

/// Milliseconds to whole seconds, rounded up.
pub(crate) fn ceil_secs(ms: u64) -> u64 {
    ms.div_ceil(1_000)
}

/// How many of the previous window's `previous_count` requests a sliding window of the
/// current window's length, ending `now`, still covers: the count scaled by the overlap of
/// the sliding window with the previous one, assuming its requests were spread evenly, and
/// rounded up so the estimate never favours the client.
///
/// The overlap is `current.len - elapsed`, capped at the previous window's own length (a
/// 31-day month after a 28-day February covers all of February for its first 3 days).
pub fn weighted_previous(
    previous_count: u64,
    current: Window,
    previous: Window,
    now: UnixMillis,
) -> u64 {
    let previous_len = u128::from(previous.len_ms());
    if previous_count == 0 || previous_len == 0 {
        return 0;
    }
    let overlap = u128::from(current.len_ms() - current.elapsed_ms(now)).min(previous_len);
    let weighted = (u128::from(previous_count) * overlap).div_ceil(previous_len);
    u64::try_from(weighted).unwrap_or(u64::MAX)
}

/// The civil date (proleptic Gregorian, UTC) of a day number counted from 1970-01-01:
/// (year, month 1..=12, day 1..=31). Howard Hinnant's `civil_from_days`, for days ≥ 0.
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The day number (from 1970-01-01) of the first day of `month` in `year` (≥ 1970).
pub(crate) fn days_from_civil(year: u64, month: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC date and time, for readable tests.
    fn at(year: u64, month: u64, day: u64, h: u64, m: u64, s: u64) -> u64 {
        (days_from_civil(year, month) + day - 1) * 86_400 + h * 3_600 + m * 60 + s
    }

    fn ms(secs: u64) -> UnixMillis {
        UnixMillis(secs * 1_000)
    }

    #[test]
    fn civil_dates_round_trip_over_four_centuries() {
        for days in (0..146_097 * 2).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m) + d - 1, days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(at(2026, 1, 1, 0, 0, 0), 1_767_225_600);
        assert_eq!(at(2000, 3, 1, 0, 0, 0), 951_868_800);
    }

    #[test]
    fn fixed_length_windows_align_to_their_unit() {
        let t = at(2026, 5, 17, 13, 45, 27);
        let cases = [
            (Period::Second, t, t + 1),
            (Period::Minute, t - 27, t + 33),
            (Period::Hour, t - 45 * 60 - 27, t - 45 * 60 - 27 + 3_600),
            (
                Period::Day,
                at(2026, 5, 17, 0, 0, 0),
                at(2026, 5, 18, 0, 0, 0),
            ),
        ];
        for (period, start, end) in cases {
            assert_eq!(period.window_at(t), Window { start, end }, "{period:?}");
        }
    }

    #[test]
    fn a_window_includes_its_start_and_excludes_its_end() {
        let edge = at(2026, 1, 1, 0, 1, 0);
        assert_eq!(Period::Minute.window_at(edge).start, edge);
        assert_eq!(Period::Minute.window_at(edge - 1).end, edge);
        assert_eq!(
            Period::Day.window_at(edge - 61).end,
            at(2026, 1, 1, 0, 0, 0)
        );
    }

    #[test]
    fn months_have_their_calendar_lengths() {
        let cases = [
            (2026, 1, 31),
            (2026, 2, 28),
            (2024, 2, 29),
            (2000, 2, 29),
            (2100, 2, 28),
            (2026, 4, 30),
            (2026, 12, 31),
        ];
        for (year, month, days) in cases {
            let window = Period::Month.window_at(at(year, month, 15, 12, 0, 0));
            assert_eq!(window.start, at(year, month, 1, 0, 0, 0), "{year}-{month}");
            assert_eq!(window.len_secs(), days * 86_400, "{year}-{month}");
        }
        let december = Period::Month.window_at(at(2026, 12, 31, 23, 59, 59));
        assert_eq!(december.end, at(2027, 1, 1, 0, 0, 0));
    }

    #[test]
    fn years_have_365_or_366_days() {
        for (year, days) in [(2026, 365), (2024, 366), (2000, 366), (2100, 365)] {
            let window = Period::Year.window_at(at(year, 7, 1, 0, 0, 0));
            assert_eq!(window.start, at(year, 1, 1, 0, 0, 0));
            assert_eq!(window.len_secs(), days * 86_400, "{year}");
        }
    }

    #[test]
    fn previous_and_next_cross_month_and_year_edges() {
        let march = Period::Month.window_at(at(2024, 3, 10, 0, 0, 0));
        let february = Period::Month.previous(march);
        assert_eq!(february.start, at(2024, 2, 1, 0, 0, 0));
        assert_eq!(february.len_secs(), 29 * 86_400);
        assert_eq!(Period::Month.next(february), march);
        let year = Period::Year.window_at(at(2026, 1, 1, 0, 0, 0));
        assert_eq!(Period::Year.previous(year).start, at(2025, 1, 1, 0, 0, 0));
        let epoch = Period::Minute.window_at(0);
        assert_eq!(Period::Minute.previous(epoch), epoch);
    }

    #[test]
    fn a_clock_far_in_the_future_is_clamped_not_overflowed() {
        for period in Period::ALL {
            let window = period.window_at(u64::MAX);
            assert!(
                window.start <= MAX_SECS && window.end > window.start,
                "{period:?}"
            );
        }
        let window = Period::Year.window_at(u64::MAX);
        assert_eq!(window.secs_until_end(UnixMillis(u64::MAX)), 1);
    }

    #[test]
    fn reset_rounds_up_and_is_never_zero() {
        let window = Period::Minute.window_at(at(2026, 1, 1, 0, 0, 0));
        assert_eq!(window.secs_until_end(ms(window.start)), 60);
        assert_eq!(
            window.secs_until_end(UnixMillis(window.start * 1_000 + 1)),
            60
        );
        assert_eq!(window.secs_until_end(UnixMillis(window.end * 1_000 - 1)), 1);
        assert_eq!(window.secs_until_end(ms(window.end)), 1);
        // A worker whose clock is behind the window it counts in waits for the whole of it.
        assert_eq!(window.secs_until_end(ms(window.start - 5)), 65);
    }

    #[test]
    fn the_previous_window_weighs_by_its_overlap_rounded_up() {
        let start = at(2026, 1, 1, 0, 1, 0);
        let current = Period::Minute.window_at(start);
        let previous = Period::Minute.previous(current);
        let weigh = |now_ms: u64| weighted_previous(60, current, previous, UnixMillis(now_ms));
        assert_eq!(weigh(start * 1_000), 60, "at the edge all of it");
        assert_eq!(weigh((start + 15) * 1_000), 45);
        assert_eq!(weigh((start + 30) * 1_000), 30);
        assert_eq!(weigh((start + 59) * 1_000), 1);
        assert_eq!(weigh((start + 59) * 1_000 + 999), 1, "rounded up");
        assert_eq!(weigh((start + 60) * 1_000), 0);
        assert_eq!(
            weigh((start - 3) * 1_000),
            60,
            "a clock behind counts all of it"
        );
        assert_eq!(weighted_previous(0, current, previous, ms(start)), 0);
    }

    #[test]
    fn a_long_month_after_february_covers_all_of_february_first() {
        let march = Period::Month.window_at(at(2026, 3, 1, 0, 0, 0));
        let february = Period::Month.previous(march);
        let weigh = |secs| weighted_previous(280, march, february, ms(secs));
        // The 31-day sliding window reaches back past 1 February for March's first 3 days.
        assert_eq!(weigh(at(2026, 3, 2, 0, 0, 0)), 280);
        assert_eq!(weigh(at(2026, 3, 4, 0, 0, 0)), 280);
        // Then February drops out a 28th a day: on 5 March, 280 × 27/28.
        assert_eq!(weigh(at(2026, 3, 5, 0, 0, 0)), 270);
        assert_eq!(weigh(at(2026, 3, 31, 0, 0, 0)), 10);
    }
}
