//! What the service counts, rendered for Prometheus at `/metrics` (text format 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::failure::Failure;

/// Every counter and gauge of the service.
#[derive(Default)]
pub struct Metrics {
    /// (api, method, status) → requests answered.
    requests: Mutex<BTreeMap<(&'static str, &'static str, u16), u64>>,
    /// reason → failed requests.
    failures: Mutex<BTreeMap<&'static str, u64>>,
    writes: AtomicU64,
    events: AtomicU64,
    head: AtomicI64,
    lookups_found: AtomicU64,
    lookups_missing: AtomicU64,
    pruned: AtomicU64,
    forgotten: AtomicU64,
    /// 1 when the last database call succeeded, 0 when it found the database unreachable.
    database_up: AtomicI64,
}

/// A request method as a label: the methods the APIs answer, every other one `other`, so
/// that a client sending `FOO1`, `FOO2`… cannot grow the label set without bound.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        _ => "other",
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let metrics = Metrics::default();
        metrics.database_up.store(1, Ordering::Relaxed);
        metrics
    }

    pub fn request(&self, api: &'static str, method: &str, status: u16) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests
                .entry((api, method_label(method), status))
                .or_default() += 1;
        }
    }

    pub fn failed(&self, failure: &Failure) {
        if let Ok(mut failures) = self.failures.lock() {
            *failures.entry(failure.metric_label()).or_default() += 1;
        }
        if matches!(failure, Failure::Unavailable(_)) {
            self.database_up.store(0, Ordering::Relaxed);
        }
    }

    pub fn committed(&self, events: usize, head: i64) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(events as u64, Ordering::Relaxed);
        self.head.fetch_max(head, Ordering::Relaxed);
        self.database_up.store(1, Ordering::Relaxed);
    }

    pub fn reachable(&self, up: bool) {
        self.database_up.store(i64::from(up), Ordering::Relaxed);
    }

    pub fn head_seen(&self, head: i64) {
        self.head.fetch_max(head, Ordering::Relaxed);
    }

    pub fn lookup(&self, found: bool) {
        let counter = if found {
            &self.lookups_found
        } else {
            &self.lookups_missing
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn pruned(&self, events: u64, revocations: u64) {
        self.pruned.fetch_add(events, Ordering::Relaxed);
        self.forgotten.fetch_add(revocations, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP portcullis_admin_requests_total HTTP requests answered, by API, method and status.\n# TYPE portcullis_admin_requests_total counter\n");
        if let Ok(requests) = self.requests.lock() {
            for ((api, method, status), n) in requests.iter() {
                let _ = writeln!(
                    out,
                    "portcullis_admin_requests_total{{api=\"{api}\",method=\"{method}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP portcullis_admin_failures_total Requests refused or failed, by reason.\n# TYPE portcullis_admin_failures_total counter\n");
        if let Ok(failures) = self.failures.lock() {
            for (reason, n) in failures.iter() {
                let _ = writeln!(
                    out,
                    "portcullis_admin_failures_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let rows: [(&str, &str, &str, String); 7] = [
            (
                "portcullis_admin_writes_total",
                "counter",
                "Write transactions committed.",
                load(&self.writes).to_string(),
            ),
            (
                "portcullis_admin_events_total",
                "counter",
                "Change events appended by this process.",
                load(&self.events).to_string(),
            ),
            (
                "portcullis_admin_events_head",
                "gauge",
                "The highest event id this process has seen.",
                self.head.load(Ordering::Relaxed).to_string(),
            ),
            (
                "portcullis_admin_events_pruned_total",
                "counter",
                "Events deleted after the retention.",
                load(&self.pruned).to_string(),
            ),
            (
                "portcullis_admin_revocations_forgotten_total",
                "counter",
                "Revocations deleted after their expires_at.",
                load(&self.forgotten).to_string(),
            ),
            (
                "portcullis_admin_database_up",
                "gauge",
                "1 if the last database call reached the database.",
                self.database_up.load(Ordering::Relaxed).to_string(),
            ),
            (
                "portcullis_admin_credential_lookups_total",
                "counter",
                "Data-plane credential lookups, by result.",
                String::new(),
            ),
        ];
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            if value.is_empty() {
                let _ = writeln!(
                    out,
                    "{name}{{result=\"found\"}} {}",
                    load(&self.lookups_found)
                );
                let _ = writeln!(
                    out,
                    "{name}{{result=\"not_found\"}} {}",
                    load(&self.lookups_missing)
                );
            } else {
                let _ = writeln!(out, "{name} {value}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_methods_share_one_label() {
        let metrics = Metrics::new();
        for n in 0..50 {
            metrics.request("admin", &format!("FOO{n}"), 401);
        }
        metrics.request("admin", "GET", 200);
        let text = metrics.render();
        assert!(text.contains(
            "portcullis_admin_requests_total{api=\"admin\",method=\"other\",status=\"401\"} 50"
        ));
        assert_eq!(text.matches("portcullis_admin_requests_total{").count(), 2);
    }
}
