//! `BENCH_PROFILE`: where Envoy's cycles go for a row, by `perf`.

use std::process::Command;

use crate::envoy::{start, Backends};
use crate::rows::rows_with;
use crate::source::{self, Admin};
use crate::wrk::wrk;

/// `BENCH_PROFILE=<part of a row name>`: each matching row (no rate limit service rows; a
/// `consumer_source` row with its own portcullis-admin, warmed up) alone under
/// wrk at `--concurrency 1`, sampled by `perf` for 5 s after a 2 s warm-up; prints where
/// Envoy's cycles went by object — `[JIT]`/anonymous memory is V8's compiled wasm (and its
/// stubs), `envoy` the host (host calls included), the kernel the network — and the top
/// symbols, so a change can be judged by what it moves, not by req/s alone.
/// `BENCH_PROFILE_KEEP=1` keeps each row's `perf` data and prints its path, for comparing
/// two rows function by function.
pub fn profile(pattern: &str, candidate: Option<&str>) {
    for row in rows_with(candidate)
        .into_iter()
        .filter(|r| r.name.contains(pattern) && r.domain.is_none())
    {
        let admin = row
            .source
            .then(Admin::start)
            .transpose()
            .unwrap_or_else(|e| {
                panic!("starting portcullis-admin: {e:#}");
            });
        let backends = Backends {
            admin: admin.as_ref().map(Admin::port),
            ..Backends::default()
        };
        let envoy = start(&row, backends, 1);
        if row.source {
            source::warm(&row, &envoy);
        }
        let url = envoy.url("/");
        wrk(&url, row.token.as_deref(), 2);
        let data = std::env::temp_dir().join(format!("portcullis-perf-{}.data", envoy.pid()));
        let perf = Command::new("perf")
            .args([
                "record",
                "-q",
                "-F",
                "4999",
                "-p",
                &envoy.pid().to_string(),
                "-o",
            ])
            .arg(&data)
            .args(["--", "sleep", "5"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let run = wrk(&url, row.token.as_deref(), 5);
        let Ok(mut perf) = perf else {
            eprintln!("perf is not installed");
            return;
        };
        let _ = perf.wait();
        // Samples at 4999 Hz of CPU time: samples / 4999 / requests is CPU time per request.
        println!(
            "\n## {}: {:.0} req/s under perf; CPU µs per request = samples / {:.1}\n",
            row.name,
            run.rps,
            4999.0 * run.requests.max(1) as f64 / 1e6
        );
        for sort in ["dso", "dso,sym"] {
            let report = Command::new("perf")
                .args([
                    "report",
                    "--stdio",
                    "-q",
                    "-n",
                    "--percent-limit",
                    "1",
                    "--sort",
                    sort,
                    "-i",
                ])
                .arg(&data)
                .output();
            if let Ok(report) = report {
                println!("{}", String::from_utf8_lossy(&report.stdout).trim_end());
            }
        }
        if std::env::var_os("BENCH_PROFILE_KEEP").is_none() {
            let _ = std::fs::remove_file(&data);
        } else {
            println!("kept {}", data.display());
        }
    }
}
