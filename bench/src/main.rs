//! `make bench`: Portcullis next to Envoy's native filters, in one run on one machine, so the
//! ratios hold on a noisy host. Every row is its own Envoy with a `direct_response` route (no
//! upstream cost; the rate limiting rows answer from a fault filter, see [`FAULT_200`]); wrk
//! loads them in alternating rounds after a warm-up; the table gives the median req/s and
//! p50/p99 latency per row, and each Portcullis row's ratio to its native
//! counterpart and to the ceiling. Then, from host-test, the wasm instructions per request,
//! the module sizes, and each Envoy's resident memory, a row's set against another packaging
//! of the same policies where it names one (the one-VM gateway against the separate filters).
//!
//! `BENCH_QUICK=1`: one short round at `--concurrency 1`, a smoke check that the tool works
//! (its figures mean nothing). `BENCH_ONLY=ratelimit,jwt`: only those groups of rows (`jwt`,
//! `acl`, `ratelimit`, `chain`, and `host`: what a wasm filter pays Envoy per host call), the
//! ceiling always. `BENCH_PROFILE=<part of a row name>`: see [`profile`].
//! `BENCH_ROUNDS=<n>`: n rounds instead of 3. `BENCH_CANDIDATE=<name>`: the HS256 gateway rows once more with
//! `dist/portcullis-<name>.wasm` (a copy of another build of the gateway), set against the
//! gateway's own rows in the same rounds.
//!
//! The `ratelimit` group includes the cluster-wide policy: Portcullis `policy: redis` and
//! Envoy's native `ratelimit` filter, both through the project's rate limit service
//! (`portcullis-ratelimit`, beside this binary) and a Redis the bench starts on free ports
//! with its files in a scratch directory, and stops at the end. Both fail closed (a failed
//! call is a 500, flagged in the table), and the counters in Redis are checked against the
//! requests wrk completed, so a row that skipped the service cannot pass for a fast one.
//!
//! The `jwt` group includes `consumer_source` rows (#22), whose credential the filter looks
//! up in a portcullis-admin the bench starts on SQLite (beside this binary) and stops at the
//! end; below the tables, what a lookup costs the request that makes it and how soon a
//! credential created in the admin answers everywhere (see [`source`]).
//!
//! | module | holds |
//! |---|---|
//! | `rows` | the row catalogue, its groups and `BENCH_ONLY` |
//! | `filters` | the tokens and the native and Portcullis filter configurations the rows run |
//! | `cost` | the cost fixture's rows: what Envoy charges a wasm filter per host call |
//! | `envoy` | each row's Envoy: its config, start-up, memory, version |
//! | `wrk` | one wrk run and its figures |
//! | `load` | the rounds at one concurrency and their table |
//! | `service` | Redis and the rate limit service for the cluster-wide rows |
//! | `source` | portcullis-admin for the `consumer_source` rows, and their figures |
//! | `instructions` | host-test's wasm instructions per request |
//! | `perf` | `BENCH_PROFILE` |

use std::collections::BTreeMap;

use portcullis_tests::paths;

mod cost;
mod envoy;
mod filters;
mod instructions;
mod load;
mod perf;
mod rows;
mod service;
mod source;
mod wrk;

use load::Plan;
use rows::{candidate, rows_with, selected, Row, MODULES};
use service::Service;

fn main() {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let (concurrencies, plan): (&[u32], Plan) = if quick {
        let plan = Plan {
            rounds: 1,
            seconds: 1,
            warmup: 0,
        };
        (&[1], plan)
    } else {
        // `BENCH_ROUNDS=<n>`: more rounds, for rows whose difference is within what three
        // rounds can tell apart (a positive number; anything else is refused).
        let rounds = match std::env::var("BENCH_ROUNDS") {
            Err(_) => 3,
            Ok(n) => match n.parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    eprintln!("BENCH_ROUNDS: {n:?} is not a positive number of rounds");
                    std::process::exit(2);
                }
            },
        };
        let plan = Plan {
            rounds,
            seconds: 4,
            warmup: 2,
        };
        (&[1, 2], plan)
    };
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let candidate = match candidate(
        std::env::var("BENCH_CANDIDATE").ok().as_deref(),
        &paths::workspace_root().join("dist"),
    ) {
        Ok(candidate) => candidate,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Ok(pattern) = std::env::var("BENCH_PROFILE") {
        perf::profile(&pattern, candidate.as_deref());
        return;
    }
    // `BENCH_ROWS=<part of a name>|<part of another>`: only the rows whose names hold one of
    // them (and the ceiling), for a quick look at a change; `BENCH_CONCURRENCY=1`: only that.
    let names = std::env::var("BENCH_ROWS").unwrap_or_default();
    let concurrencies: Vec<u32> = match std::env::var("BENCH_CONCURRENCY").ok() {
        Some(c) => c.split(',').filter_map(|c| c.trim().parse().ok()).collect(),
        None => concurrencies.to_vec(),
    };
    let rows = match selected(rows_with(candidate.as_deref()), &only) {
        Ok(rows) if !names.is_empty() => rows
            .into_iter()
            .filter(|r| r.group == "ceiling" || names.split('|').any(|n| r.name.contains(n)))
            .collect(),
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let service = if rows.iter().any(|row| row.domain.is_some()) {
        match Service::start() {
            Ok(service) => Some(service),
            Err(e) => {
                eprintln!("starting Redis and the rate limit service: {e:#}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    let admin = if rows.iter().any(|row| row.source) {
        match source::Admin::start() {
            Ok(admin) => Some(admin),
            Err(e) => {
                eprintln!("starting portcullis-admin: {e:#}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let Plan {
        rounds,
        seconds,
        warmup,
    } = &plan;
    println!(
        "# Portcullis benchmark{}: Envoy {}, {cores} cores, wrk -t1 -c16, direct_response route (rate limiting rows: routed, fault 200), {rounds} round(s) of {seconds}s after {warmup}s warm-up{}",
        if quick { " (BENCH_QUICK: smoke only, figures meaningless)" } else { "" },
        envoy::version(),
        if only.is_empty() { String::new() } else { format!(", BENCH_ONLY={only}") },
    );
    let mut memory: BTreeMap<String, f64> = BTreeMap::new();
    for &concurrency in &concurrencies {
        memory.extend(load::measure(
            &rows,
            service.as_ref(),
            admin.as_ref(),
            concurrency,
            &plan,
        ));
    }
    drop(service);
    if let Some(admin) = admin {
        source::report(&admin, quick);
    }

    instructions::print(&rows);

    println!("\n## module sizes\n");
    for filter in MODULES {
        let size = std::fs::metadata(paths::wasm(filter)).map_or(0, |m| m.len());
        println!(
            "- portcullis-{filter}.wasm: {size} bytes ({:.0} KiB)",
            size as f64 / 1024.0
        );
    }

    println!("\n## Envoy resident memory (MiB, after the rounds)\n");
    for (name, mb) in &memory {
        println!("- {name}: {mb:.1}");
    }
    packagings(&rows, &memory, &concurrencies);
}

/// Each row's memory against its `memory_versus` row's, at each concurrency (the same
/// workers): both, the saving, and the saving's share of what the other holds over an Envoy
/// with no filter (the ceiling's): the other's VMs, one per worker and one on the main
/// thread for each of its modules.
fn packagings(rows: &[Row], memory: &BTreeMap<String, f64>, concurrencies: &[u32]) {
    let ceiling = rows.iter().find(|r| r.group == "ceiling");
    let pairs: Vec<(&str, &str)> = rows
        .iter()
        .filter_map(|r| Some((r.name.as_str(), r.memory_versus.as_deref()?)))
        .collect();
    if !pairs.is_empty() {
        println!("\n## Envoy resident memory, one packaging against another\n");
    }
    for (row, other) in &pairs {
        for c in concurrencies {
            let at = |name: &str| memory.get(&format!("{name} (c{c})")).copied();
            let (Some(mine), Some(theirs)) = (at(row), at(other)) else {
                continue;
            };
            let saved = theirs - mine;
            let over_none = ceiling
                .and_then(|r| at(&r.name))
                .filter(|none| theirs > *none)
                .map_or(String::new(), |none| {
                    format!(
                        "; {:.0}% of the {:.1} MiB the latter holds over no filter",
                        100.0 * saved / (theirs - none),
                        theirs - none
                    )
                });
            println!(
                "- {row} vs {other} (c{c}): {mine:.1} MiB vs {theirs:.1} MiB, {saved:.1} MiB \
                 saved{over_none}"
            );
        }
    }
}
