//! The rounds under wrk at one concurrency, and their table: median req/s and latency per
//! row, each row's ratio to its native counterpart and to the ceiling, and the notes below.

use std::collections::BTreeMap;

use portcullis_tests::Envoy;

use crate::envoy::{rss_mb, start, Backends};
use crate::rows::Row;
use crate::service::Service;
use crate::source::{self, Admin};
use crate::wrk::{median, Run};

/// How long the rows are loaded.
pub struct Plan {
    /// Measured rounds; each loads every row once, in turn.
    pub rounds: usize,
    /// Seconds of wrk per row and round.
    pub seconds: u64,
    /// Seconds of wrk per row before the first round (0: no warm-up).
    pub warmup: u64,
}

/// Loads every row at `concurrency` in alternating rounds and prints the table; returns each
/// row's Envoy resident memory (MiB) after the rounds, by `<row> (c<concurrency>)`.
pub fn measure(
    rows: &[Row],
    service: Option<&Service>,
    admin: Option<&Admin>,
    concurrency: u32,
    plan: &Plan,
) -> Vec<(String, f64)> {
    let envoys: Vec<Envoy> = rows
        .iter()
        .map(|row| {
            let backends = Backends {
                ratelimit: row.domain.and(service).map(|s| s.service.port()),
                admin: admin.filter(|_| row.source).map(Admin::port),
            };
            start(row, backends, concurrency)
        })
        .collect();
    // A looked-up credential is fetched before the rounds: they measure cache hits.
    for (row, envoy) in rows.iter().zip(&envoys).filter(|(row, _)| row.source) {
        source::warm(row, envoy);
    }
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); rows.len()];
    // Requests wrk completed, and what the service counted meanwhile, warm-up included.
    let mut served: Vec<(u64, i64)> = vec![(0, 0); rows.len()];
    for round in 0..=plan.rounds {
        if round == 0 && plan.warmup == 0 {
            continue;
        }
        let seconds = if round == 0 {
            plan.warmup
        } else {
            plan.seconds
        };
        for (i, (row, envoy)) in rows.iter().zip(&envoys).enumerate() {
            let (run, counted) = Service::load(service, row, &envoy.url("/"), seconds);
            served[i].0 += run.requests;
            served[i].1 += counted;
            if round > 0 {
                runs[i].push(run);
            }
        }
    }
    let memory = rows
        .iter()
        .zip(&envoys)
        .map(|(row, envoy)| {
            (
                format!("{} (c{concurrency})", row.name),
                rss_mb(envoy.pid()),
            )
        })
        .collect();
    let medians: Vec<Run> = runs
        .iter()
        .map(|r| Run {
            rps: median(r.iter().map(|x| x.rps).collect()),
            p50_ms: median(r.iter().map(|x| x.p50_ms).collect()),
            p99_ms: median(r.iter().map(|x| x.p99_ms).collect()),
            non_2xx: r.iter().any(|x| x.non_2xx),
            requests: r.iter().map(|x| x.requests).sum(),
        })
        .collect();
    println!("\n## --concurrency {concurrency}\n");
    table(rows, &medians);
    let mut notes = versus(rows, &medians, concurrency);
    notes.extend(counted(rows, &served));
    if !notes.is_empty() {
        println!("\n{}", notes.join("\n"));
    }
    memory
}

/// The rows' medians by name.
fn by_name<'a>(rows: &'a [Row], medians: &'a [Run]) -> BTreeMap<&'a str, &'a Run> {
    rows.iter()
        .zip(medians)
        .map(|(row, m)| (row.name.as_str(), m))
        .collect()
}

fn table(rows: &[Row], medians: &[Run]) {
    let ceiling = medians.first().map_or(0.0, |m| m.rps);
    let by_name = by_name(rows, medians);
    println!("| row | req/s | p50 ms | p99 ms | vs native | vs ceiling |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (row, m) in rows.iter().zip(medians) {
        let vs_native = row
            .native
            .as_deref()
            .and_then(|n| by_name.get(n))
            .filter(|n| n.rps > 0.0)
            .map_or("".into(), |n| format!("{:.2}x", m.rps / n.rps));
        let flag = if m.non_2xx { " (non-2xx answers!)" } else { "" };
        println!(
            "| {}{flag} | {:.0} | {:.2} | {:.2} | {vs_native} | {:.2}x |",
            row.name,
            m.rps,
            m.p50_ms,
            m.p99_ms,
            if ceiling > 0.0 { m.rps / ceiling } else { 0.0 },
        );
    }
}

/// A note for each row against each of its `versus` rows.
fn versus(rows: &[Row], medians: &[Run], concurrency: u32) -> Vec<String> {
    let by_name = by_name(rows, medians);
    let mut notes = Vec::new();
    for (row, m) in rows.iter().zip(medians) {
        for (other_name, o) in row
            .versus
            .iter()
            .filter_map(|n| by_name.get_key_value(n.as_str()))
        {
            if o.rps > 0.0 && m.rps > 0.0 {
                // The time per request the row adds to (or saves on) the other, per worker:
                // what a host call costs in the host group, what a filter's logic costs
                // over its floor or over an empty filter.
                let added = 1e6 * f64::from(concurrency) * (1.0 / m.rps - 1.0 / o.rps);
                notes.push(format!(
                    "- {} vs {other_name}: {:.2}x req/s, p99 {:.2} ms vs {:.2} ms, {added:+.2} µs per request",
                    row.name,
                    m.rps / o.rps,
                    m.p99_ms,
                    o.p99_ms
                ));
            }
        }
    }
    notes
}

/// A note for each row that calls the rate limit service: what it counted in Redis against
/// what wrk completed (`served`: both, per row).
fn counted(rows: &[Row], served: &[(u64, i64)]) -> Vec<String> {
    rows.iter()
        .zip(served)
        .filter(|(row, _)| row.domain.is_some())
        .map(|(row, &(completed, counted))| {
            // A request in flight when wrk stops is counted and not completed: at most
            // one per connection.
            let missing = counted < completed as i64;
            format!(
                "- {}: the service counted {counted} requests in Redis, wrk completed \
                 {completed}{}",
                row.name,
                if missing { " (calls missing!)" } else { "" }
            )
        })
        .collect()
}
