//! Concurrent bursts for the rate-limit tests: many client threads at once, spread over one
//! or several gateways, and the calendar-window helper that keeps a burst inside one minute.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::client::{self, Reply};

/// Waits, if need be, for the next calendar minute, so that a burst of `burst_secs` seconds
/// stays inside one window (Envoy's clock, and the rate limit service's, is this
/// machine's). At most a minute's wait, usually none.
pub fn room_in_this_minute(burst_secs: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let into_minute = now.as_secs() % 60;
    if 60 - into_minute < burst_secs {
        let to_edge =
            Duration::from_secs(60 - into_minute) - Duration::from_nanos(now.subsec_nanos().into());
        std::thread::sleep(to_edge + Duration::from_millis(100));
    }
}

/// `total` GETs from `connections` threads at once, each request on its own connection (so
/// every worker of every gateway serves some); request `i` goes to `urls[i % urls.len()]`
/// with the headers `headers_for(i)`. The replies come back in no particular order.
pub fn burst(
    urls: &[String],
    connections: usize,
    total: usize,
    headers_for: impl Fn(usize) -> Vec<(String, String)> + Sync,
) -> Vec<Reply> {
    assert!(!urls.is_empty(), "a burst needs a gateway");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..connections)
            .map(|t| {
                let headers_for = &headers_for;
                s.spawn(move || {
                    (t..total)
                        .step_by(connections)
                        .map(|i| {
                            let headers = headers_for(i);
                            let pairs: Vec<(&str, &str)> = headers
                                .iter()
                                .map(|(n, v)| (n.as_str(), v.as_str()))
                                .collect();
                            client::get(&urls[i % urls.len()], &pairs)
                        })
                        .collect::<Vec<Reply>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| panic!("a client thread panicked"))
            })
            .collect()
    })
}

/// How many replies had each status.
pub fn statuses(replies: &[Reply]) -> BTreeMap<u16, usize> {
    let mut counts = BTreeMap::new();
    for r in replies {
        *counts.entry(r.status).or_insert(0) += 1;
    }
    counts
}
