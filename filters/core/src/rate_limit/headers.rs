//! The rate-limit headers a client sees: Kong's `X-RateLimit-Limit-<Window>` and
//! `X-RateLimit-Remaining-<Window>` for every window counted, the IETF draft's
//! `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` for the most restrictive
//! one, and `Retry-After` on a refusal.

use std::cmp::Reverse;

pub use crate::decimal::Decimal;

use super::window::Period;

pub const RATELIMIT_LIMIT: &str = "ratelimit-limit";
pub const RATELIMIT_REMAINING: &str = "ratelimit-remaining";
pub const RATELIMIT_RESET: &str = "ratelimit-reset";
pub const RETRY_AFTER: &str = "retry-after";

/// One window of one policy, as the response reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowReport {
    pub period: Period,
    pub limit: u64,
    /// Requests left after this one (0 for a window that refused it).
    pub remaining: u64,
    /// Seconds until the window's quota comes back: its end, or for a window that refused
    /// the request, until one more request fits (the same for fixed windows).
    pub reset: u64,
    /// This window refused the request.
    pub exceeded: bool,
}

/// The headers a response gets: each a name of this module's and a number.
pub type ClientHeaders = Vec<(&'static str, Decimal)>;

/// Every header name this module may emit (what `hide_client_headers` leaves out, and what
/// a test checks for).
pub fn all_names() -> Vec<&'static str> {
    Period::ALL
        .iter()
        .flat_map(|p| [p.limit_header(), p.remaining_header()])
        .chain([
            RATELIMIT_LIMIT,
            RATELIMIT_REMAINING,
            RATELIMIT_RESET,
            RETRY_AFTER,
        ])
        .collect()
}

/// The headers for `reports` (every window of every policy that applied).
///
/// - Per window name, the policy with the fewest requests left (then the lower limit) speaks:
///   with 100 a minute globally and 20 on a route, the route's minute shows until the global
///   one has fewer left.
/// - `RateLimit-*`: the window with the fewest left; on a tie the longer window, as Kong.
/// - `Retry-After` (refusals only): the longest wait among the windows that refused.
pub fn client_headers(reports: &[WindowReport]) -> ClientHeaders {
    let mut out = Vec::with_capacity(reports.len() * 2 + 4);
    for period in Period::ALL {
        let speaker = reports
            .iter()
            .filter(|r| r.period == period)
            .min_by_key(|r| (r.remaining, r.limit));
        if let Some(r) = speaker {
            out.push((period.limit_header(), Decimal::new(r.limit)));
            out.push((period.remaining_header(), Decimal::new(r.remaining)));
        }
    }
    if let Some(r) = tightest(reports) {
        out.push((RATELIMIT_LIMIT, Decimal::new(r.limit)));
        out.push((RATELIMIT_REMAINING, Decimal::new(r.remaining)));
        out.push((RATELIMIT_RESET, Decimal::new(r.reset)));
    }
    if let Some(wait) = reports.iter().filter(|r| r.exceeded).map(|r| r.reset).max() {
        out.push((RETRY_AFTER, Decimal::new(wait)));
    }
    out
}

/// The window the `RateLimit-*` headers and the access log report: the one with the fewest
/// requests left; on a tie the longer window, as Kong.
pub fn tightest(reports: &[WindowReport]) -> Option<&WindowReport> {
    reports
        .iter()
        .min_by_key(|r| (r.remaining, Reverse(r.period), r.limit))
}

/// [`tightest`] as the access log's record has it.
pub fn logged_window(reports: &[WindowReport]) -> Option<crate::decision::Window> {
    tightest(reports).map(|r| crate::decision::Window {
        period: r.period.name(),
        limit: r.limit,
        remaining: r.remaining,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(period: Period, limit: u64, remaining: u64, reset: u64) -> WindowReport {
        WindowReport {
            period,
            limit,
            remaining,
            reset,
            exceeded: false,
        }
    }

    fn get<'a>(headers: &'a [(&'static str, Decimal)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_window_is_reported_and_the_tightest_speaks_for_ietf() {
        let headers = client_headers(&[
            report(Period::Second, 5, 4, 1),
            report(Period::Minute, 10, 2, 37),
            report(Period::Hour, 100, 2, 1_800),
        ]);
        let names: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "x-ratelimit-limit-second",
                "x-ratelimit-remaining-second",
                "x-ratelimit-limit-minute",
                "x-ratelimit-remaining-minute",
                "x-ratelimit-limit-hour",
                "x-ratelimit-remaining-hour",
                "ratelimit-limit",
                "ratelimit-remaining",
                "ratelimit-reset",
            ]
        );
        // Minute and hour tie at 2 left: the longer window wins, as in Kong.
        assert_eq!(get(&headers, "ratelimit-limit"), Some("100"));
        assert_eq!(get(&headers, "ratelimit-reset"), Some("1800"));
        assert_eq!(get(&headers, "retry-after"), None);
    }

    #[test]
    fn stacked_policies_show_the_one_with_fewer_left() {
        let route = report(Period::Minute, 20, 19, 30);
        let global = report(Period::Minute, 100, 99, 30);
        let headers = client_headers(&[global, route]);
        assert_eq!(get(&headers, "x-ratelimit-limit-minute"), Some("20"));
        assert_eq!(get(&headers, "x-ratelimit-remaining-minute"), Some("19"));
        let busy_global = report(Period::Minute, 100, 3, 30);
        let headers = client_headers(&[busy_global, route]);
        assert_eq!(get(&headers, "x-ratelimit-limit-minute"), Some("100"));
        assert_eq!(get(&headers, "ratelimit-remaining"), Some("3"));
    }

    #[test]
    fn a_refusal_says_when_to_retry() {
        let headers = client_headers(&[
            WindowReport {
                exceeded: true,
                ..report(Period::Second, 5, 0, 1)
            },
            WindowReport {
                exceeded: true,
                ..report(Period::Minute, 10, 0, 42)
            },
            report(Period::Hour, 100, 60, 1_000),
        ]);
        assert_eq!(get(&headers, "retry-after"), Some("42"));
        assert_eq!(get(&headers, "ratelimit-remaining"), Some("0"));
        assert_eq!(get(&headers, "ratelimit-reset"), Some("42"));
    }

    #[test]
    fn decimal_writes_every_u64() {
        for n in [0, 7, 10, 99, 1_000, 4_294_967_296, u64::MAX] {
            assert_eq!(Decimal::new(n).as_str(), n.to_string());
        }
    }

    #[test]
    fn all_names_lists_every_header_once() {
        let names = all_names();
        assert_eq!(names.len(), 16);
        assert!(names.contains(&"x-ratelimit-remaining-year"));
    }
}
