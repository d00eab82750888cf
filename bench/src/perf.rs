//! `BENCH_PROFILE`: where Envoy's cycles go for a row, by `perf`.

use std::process::Command;

use crate::envoy::{start, Backends};
use crate::rows::rows_with;
use crate::source::{self, Admin};
use crate::wrk::wrk;

/// `BENCH_PROFILE=<part of a row name>`: each matching row (no rate limit service rows; a
/// `consumer_source` row with its own portcullis-admin, warmed up) alone under
/// wrk at `--concurrency 1`, sampled by `perf` (with call stacks) for 5 s after a 2 s
/// warm-up; prints Envoy's CPU time per request by where its stack was (compiled wasm, a host
/// call made from wasm, Envoy's own work with no wasm on the stack, the kernel), then where
/// its cycles went by object — `[JIT]`/anonymous memory is V8's compiled wasm (and its
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
                "-g",
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
        let per_request = 4999.0 * run.requests.max(1) as f64 / 1e6;
        println!(
            "\n## {}: {:.0} req/s under perf; CPU µs per request = samples / {per_request:.1}\n",
            row.name, run.rps,
        );
        print_split(&data, per_request);
        for sort in ["dso", "dso,sym"] {
            let report = Command::new("perf")
                .args([
                    "report",
                    "--stdio",
                    "-q",
                    "-n",
                    "--no-children",
                    "-g",
                    "none",
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

/// Where a sample was, by its call stack (Envoy and V8's compiled wasm keep frame pointers).
#[derive(Clone, Copy)]
enum Place {
    /// Compiled wasm at the leaf (V8's code, anonymous memory: `perf` names it after
    /// `/tmp/perf-<pid>.map` or `[JIT]`).
    Wasm,
    /// A host call made from wasm: compiled wasm below the leaf (the kernel's work under it
    /// included).
    HostCall,
    /// No wasm on the stack: Envoy's own work (libc included), then the kernel's.
    Envoy,
    Kernel,
    /// A leaf in no object `perf` knows (code it never saw mapped: it may be wasm).
    Unknown,
}

impl Place {
    const ALL: [(Place, &'static str); 5] = [
        (Place::Wasm, "compiled wasm"),
        (
            Place::HostCall,
            "host calls made from wasm (the kernel under them included)",
        ),
        (Place::Envoy, "Envoy, no wasm on the stack"),
        (Place::Kernel, "the kernel, no wasm on the stack"),
        (Place::Unknown, "no known object (unmapped code)"),
    ];
}

/// Prints CPU µs per request by [`Place`], from `perf script`'s stacks (`dso` of each frame).
fn print_split(data: &std::path::Path, per_request: f64) {
    let Ok(script) = Command::new("perf")
        .args(["script", "-F", "ip,dso", "-i"])
        .arg(data)
        .stderr(std::process::Stdio::null())
        .output()
    else {
        return;
    };
    let text = String::from_utf8_lossy(&script.stdout);
    let wasm = |frame: &&str| frame.contains("/perf-") || frame.contains("[JIT]");
    let mut counts = [0u64; Place::ALL.len()];
    // A sample is its frames, leaf first, each line indented; any other line ends one.
    let mut frames: Vec<&str> = Vec::new();
    for line in text.lines().chain(std::iter::once("")) {
        if line.starts_with(char::is_whitespace) && !line.trim().is_empty() {
            frames.push(line);
            continue;
        }
        let Some(leaf) = frames.first() else {
            continue;
        };
        let place = if wasm(leaf) {
            Place::Wasm
        } else if leaf.contains("[unknown]") {
            Place::Unknown
        } else if frames.iter().any(wasm) {
            Place::HostCall
        } else if leaf.contains("kernel") {
            Place::Kernel
        } else {
            Place::Envoy
        };
        counts[place as usize] += 1;
        frames.clear();
    }
    println!("| where (by call stack) | CPU µs per request |\n|---|---:|");
    for (place, name) in Place::ALL {
        println!(
            "| {name} | {:.2} |",
            counts[place as usize] as f64 / per_request
        );
    }
    println!();
}
