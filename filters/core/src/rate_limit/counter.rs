//! One window's counter: a stored count rolled forward to the window `now` falls in (clock
//! steps included), how much of the limit it uses under each algorithm, and when a refused
//! client may try again.

use serde::Deserialize;

use super::window::{ceil_secs, weighted_previous, Period, Window};
use super::UnixMillis;

/// How a window counts (Kong rate-limiting-advanced's `window_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Kong's rate-limiting: a counter per calendar window, reset at its end. A client can
    /// send its whole limit at the end of one window and again at the start of the next.
    #[default]
    Fixed,
    /// The current window's count plus the previous window's, weighted by how much of it a
    /// window-long span ending now still covers: no double burst across an edge.
    Sliding,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Fixed => "fixed",
            Algorithm::Sliding => "sliding",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Algorithm::Fixed => 1,
            Algorithm::Sliding => 2,
        }
    }
}

/// What a slot keeps for one window: the window it counts in, the requests admitted in it,
/// and those admitted in the window before (the sliding algorithm weighs them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowCount {
    /// Unix seconds the counted window starts at.
    pub start: u64,
    pub count: u64,
    pub previous: u64,
}

/// The stored counter as it stands at `now`, in the window it now counts in.
///
/// - Same window: unchanged.
/// - A later window: the count moves to `previous` if the stored window is the one just
///   before (else both restart from 0).
/// - The window right after the one `now` falls in: another worker read the clock a moment
///   later and already counts there; count there too, so two workers straddling an edge
///   never reset each other's count.
/// - Further ahead: the clock stepped back. The counts carry into the window the clock now
///   shows, so a step back never hands out a fresh allowance; at worst a client stays
///   limited until that window ends.
///
/// The third value says the clock stepped back (the last case): the caller persists the
/// carried counts even for a refused request, or the next window would carry them again.
pub fn roll(
    period: Period,
    stored: Option<WindowCount>,
    now: UnixMillis,
) -> (Window, WindowCount, bool) {
    let window = period.window_at(now.secs());
    let fresh = WindowCount {
        start: window.start,
        count: 0,
        previous: 0,
    };
    let Some(stored) = stored else {
        return (window, fresh, false);
    };
    if stored.start == window.start {
        (window, stored, false)
    } else if stored.start < window.start {
        let previous = if stored.start == period.previous(window).start {
            stored.count
        } else {
            0
        };
        (window, WindowCount { previous, ..fresh }, false)
    } else if stored.start == window.end {
        (period.window_at(stored.start), stored, false)
    } else {
        let carried = WindowCount {
            start: window.start,
            ..stored
        };
        (window, carried, true)
    }
}

/// One window of one policy, evaluated for one request at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowState {
    pub period: Period,
    pub limit: u64,
    pub algorithm: Algorithm,
    /// The window the request counts in.
    pub window: Window,
    /// The counter rolled to `window`, before this request.
    pub count: WindowCount,
    /// How much of the limit is used before this request: the count, plus the weighted
    /// previous window when sliding.
    pub used: u64,
    /// The clock stepped back and the counts were carried (see [`roll`]).
    pub stepped_back: bool,
}

impl WindowState {
    /// Rolls `stored` to `now` and measures it against `limit`.
    pub fn at(
        period: Period,
        limit: u64,
        algorithm: Algorithm,
        stored: Option<WindowCount>,
        now: UnixMillis,
    ) -> WindowState {
        let (window, count, stepped_back) = roll(period, stored, now);
        let used = match algorithm {
            Algorithm::Fixed => count.count,
            Algorithm::Sliding => count.count.saturating_add(weighted_previous(
                count.previous,
                window,
                period.previous(window),
                now,
            )),
        };
        WindowState {
            period,
            limit,
            algorithm,
            window,
            count,
            used,
            stepped_back,
        }
    }

    /// Whether one more request fits.
    pub fn admits(&self) -> bool {
        self.used < self.limit
    }

    /// The counter with this request counted.
    pub fn counted(&self) -> WindowCount {
        WindowCount {
            count: self.count.count.saturating_add(1),
            ..self.count
        }
    }

    /// Requests left after this one: Kong counts the request itself when it is admitted,
    /// and never shows less than 0.
    pub fn remaining(&self, admitted: bool) -> u64 {
        let used = if admitted {
            self.used.saturating_add(1)
        } else {
            self.used
        };
        self.limit.saturating_sub(used)
    }

    /// Seconds until the window ends and its count starts over (`RateLimit-Reset`).
    pub fn reset_secs(&self, now: UnixMillis) -> u64 {
        self.window.secs_until_end(now)
    }

    /// Seconds until one more request would fit if nothing else is admitted meanwhile
    /// (`Retry-After`), at least 1. Fixed: the end of the window. Sliding: when the
    /// previous window's weight has shrunk enough, which may be inside this window, in the
    /// next one (this window's count then weighs as the previous), or at the start of the
    /// one after.
    pub fn retry_secs(&self, now: UnixMillis) -> u64 {
        let ms = match self.algorithm {
            Algorithm::Fixed => return self.reset_secs(now),
            Algorithm::Sliding => self.sliding_retry_at().saturating_sub(now.0),
        };
        ceil_secs(ms).max(1)
    }

    /// The instant (Unix ms) from which a sliding window admits one more request.
    fn sliding_retry_at(&self) -> u64 {
        let limit = u128::from(self.limit);
        let count = u128::from(self.count.count);
        let previous = u128::from(self.count.previous);
        let window = self.window;
        let len = u128::from(window.len_secs()) * 1_000;
        let start = u128::from(window.start) * 1_000;
        // In this window: needs count + 1 + ⌈previous × overlap / previous_len⌉ ≤ limit,
        // that is overlap ≤ ⌊(limit − 1 − count) × previous_len / previous⌋, and the overlap
        // is len − elapsed.
        if count < limit {
            if previous == 0 {
                return to_u64(start);
            }
            let previous_len = u128::from(self.period.previous(window).len_secs()) * 1_000;
            let max_overlap = (limit - 1 - count) * previous_len / previous;
            if max_overlap > 0 {
                return to_u64(start + len.saturating_sub(max_overlap));
            }
        }
        // In the next window this window's count is the previous one.
        let next = self.period.next(window);
        let next_start = u128::from(next.start) * 1_000;
        if count == 0 {
            return to_u64(next_start);
        }
        let next_len = u128::from(next.len_secs()) * 1_000;
        let max_overlap = (limit.saturating_sub(1) * len / count).min(len);
        if max_overlap == 0 {
            // Only once this window has dropped out entirely: the window after next.
            return to_u64(next_start + next_len);
        }
        if max_overlap >= len {
            return to_u64(next_start);
        }
        to_u64(next_start + next_len.saturating_sub(max_overlap))
    }

    /// When this window's data stops mattering (Unix seconds): its end, or for a sliding
    /// window the end of the next one, which still weighs this window's count.
    pub fn expires(&self) -> u64 {
        match self.algorithm {
            Algorithm::Fixed => self.window.end,
            Algorithm::Sliding => self.period.next(self.window).end,
        }
    }
}

fn to_u64(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-01T00:00:00Z, a minute edge.
    const T0: u64 = 1_767_225_600;

    fn ms(secs: u64) -> UnixMillis {
        UnixMillis(secs * 1_000)
    }

    fn count(start: u64, count: u64, previous: u64) -> WindowCount {
        WindowCount {
            start,
            count,
            previous,
        }
    }

    #[test]
    fn a_new_counter_starts_empty_in_the_current_window() {
        let (window, c, _) = roll(Period::Minute, None, ms(T0 + 75));
        assert_eq!(window.start, T0 + 60);
        assert_eq!(c, count(T0 + 60, 0, 0));
    }

    #[test]
    fn the_next_window_keeps_the_count_as_previous() {
        let stored = Some(count(T0, 7, 3));
        assert_eq!(roll(Period::Minute, stored, ms(T0 + 59)).1, count(T0, 7, 3));
        assert_eq!(
            roll(Period::Minute, stored, ms(T0 + 60)).1,
            count(T0 + 60, 0, 7)
        );
        assert_eq!(
            roll(Period::Minute, stored, ms(T0 + 120)).1,
            count(T0 + 120, 0, 0)
        );
    }

    #[test]
    fn a_worker_a_moment_behind_counts_in_the_window_already_started() {
        let stored = Some(count(T0 + 60, 4, 9));
        let (window, c, stepped) = roll(Period::Minute, stored, UnixMillis((T0 + 60) * 1_000 - 2));
        assert!(!stepped);
        assert_eq!(window.start, T0 + 60);
        assert_eq!(c, count(T0 + 60, 4, 9));
    }

    #[test]
    fn a_clock_stepping_back_carries_the_counts_instead_of_resetting_them() {
        let stored = Some(count(T0 + 3_600, 10, 2));
        let (window, c, stepped) = roll(Period::Minute, stored, ms(T0 + 30));
        assert!(stepped);
        assert_eq!(window.start, T0);
        assert_eq!(c, count(T0, 10, 2));
        let state = WindowState::at(Period::Minute, 10, Algorithm::Fixed, stored, ms(T0 + 30));
        assert!(
            !state.admits(),
            "a step back must not hand out a fresh allowance"
        );
        assert_eq!(state.reset_secs(ms(T0 + 30)), 30);
    }

    #[test]
    fn a_clock_stepping_forward_starts_a_fresh_window() {
        let stored = Some(count(T0, 10, 0));
        let state = WindowState::at(
            Period::Hour,
            10,
            Algorithm::Sliding,
            stored,
            ms(T0 + 86_400),
        );
        assert_eq!(state.used, 0);
        assert!(state.admits());
    }

    #[test]
    fn fixed_windows_admit_exactly_the_limit() {
        let mut stored = None;
        let mut admitted = 0;
        for _ in 0..15 {
            let state = WindowState::at(Period::Second, 10, Algorithm::Fixed, stored, ms(T0));
            if state.admits() {
                admitted += 1;
                stored = Some(state.counted());
            }
        }
        assert_eq!(admitted, 10);
        let state = WindowState::at(Period::Second, 10, Algorithm::Fixed, stored, ms(T0));
        assert_eq!((state.remaining(false), state.retry_secs(ms(T0))), (0, 1));
    }

    #[test]
    fn remaining_counts_the_admitted_request_itself() {
        let state = WindowState::at(
            Period::Minute,
            5,
            Algorithm::Fixed,
            Some(count(T0, 2, 0)),
            ms(T0),
        );
        assert_eq!(state.remaining(true), 2);
        assert_eq!(state.remaining(false), 3);
    }

    #[test]
    fn sliding_weighs_the_previous_window_by_overlap() {
        let stored = Some(count(T0, 60, 0));
        let at = |secs| WindowState::at(Period::Minute, 60, Algorithm::Sliding, stored, ms(secs));
        assert_eq!(at(T0 + 60).used, 60);
        assert!(
            !at(T0 + 60).admits(),
            "no second burst right after the edge"
        );
        assert_eq!(at(T0 + 90).used, 30);
        assert_eq!(at(T0 + 119).used, 1);
        assert_eq!(at(T0 + 120).used, 0);
    }

    #[test]
    fn sliding_never_admits_twice_the_limit_across_an_edge() {
        // A client sends as fast as it may, one request per 100 ms, for two minutes.
        let limit = 60;
        let mut stored = None;
        let mut admitted_at: Vec<u64> = Vec::new();
        for tick in 0..1_200 {
            let now = UnixMillis(T0 * 1_000 + 30_000 + tick * 100);
            let state = WindowState::at(Period::Minute, limit, Algorithm::Sliding, stored, now);
            if state.admits() {
                stored = Some(state.counted());
                admitted_at.push(now.0);
            }
        }
        // Any 10 s span holds at most the limit plus the share of the limit 10 s is of a minute.
        for (i, first) in admitted_at.iter().enumerate() {
            let in_span = admitted_at[i..]
                .iter()
                .take_while(|t| **t < first + 10_000)
                .count() as u64;
            assert!(
                in_span <= limit + limit / 6,
                "{in_span} in 10 s from {first}"
            );
        }
    }

    #[test]
    fn sliding_retry_after_is_when_one_more_request_fits() {
        let limit = 10;
        let cases = [
            // (stored count, previous, now offset in ms) → retry seconds
            // Full current window, nothing before: fits once this window weighs ⌈10×ov/60⌉ ≤ 9,
            // overlap ≤ 54 s, i.e. 6 s into the next window: 60 − 30 + 6.
            ((10, 0), 30_000, 36),
            // Nothing counted now, 20 before: overlap ≤ 9×60/20 = 27 s, 33 s into this window.
            ((0, 20), 10_000, 23),
            // Five now, ten before: overlap ≤ 4×60/10 = 24 s → 36 s in.
            ((5, 10), 30_000, 6),
        ];
        for ((c, previous), offset_ms, expected) in cases {
            let now = UnixMillis(T0 * 1_000 + offset_ms);
            let state = WindowState::at(
                Period::Minute,
                limit,
                Algorithm::Sliding,
                Some(count(T0, c, previous)),
                now,
            );
            assert!(!state.admits(), "{c}/{previous}");
            let retry = state.retry_secs(now);
            assert_eq!(retry, expected, "{c}/{previous}");
            // Exactly then it fits, a second earlier it does not.
            let later = |secs: u64| {
                let then = UnixMillis(now.0 + secs * 1_000);
                WindowState::at(
                    Period::Minute,
                    limit,
                    Algorithm::Sliding,
                    Some(count(T0, c, previous)),
                    then,
                )
            };
            assert!(later(retry).admits(), "{c}/{previous} at +{retry}");
            assert!(
                !later(retry - 1).admits(),
                "{c}/{previous} at +{}",
                retry - 1
            );
        }
    }

    #[test]
    fn a_limit_of_one_sliding_waits_for_the_window_after_next() {
        let now = ms(T0 + 10);
        let state = WindowState::at(
            Period::Minute,
            1,
            Algorithm::Sliding,
            Some(count(T0, 1, 0)),
            now,
        );
        assert_eq!(state.retry_secs(now), 110);
    }

    #[test]
    fn data_expires_with_the_window_or_the_next_when_sliding() {
        let fixed = WindowState::at(Period::Month, 5, Algorithm::Fixed, None, ms(T0));
        assert_eq!(fixed.expires(), T0 + 31 * 86_400);
        let sliding = WindowState::at(Period::Month, 5, Algorithm::Sliding, None, ms(T0));
        assert_eq!(sliding.expires(), T0 + (31 + 28) * 86_400);
    }
}
