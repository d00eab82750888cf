//! `portcullis-admin bench`: the figures issue 21 asks for, printed (not asserted).
//!
//! 1. Fills the database with `--consumers` consumers (each with one HS256 credential and
//!    one group), by multi-row inserts, 500 rows a statement.
//! 2. Serves the data plane in-process on a free loopback port and hammers
//!    `GET /v1/credentials/{random key}` from `--concurrency` keep-alive connections for
//!    `--seconds`: credential lookups per second, and latency p50/p99.
//! 3. Change-to-event latency: 200 times, a write through the Admin API (PATCH a
//!    consumer), then `GET /v1/changes?after=<head>` until its event is there; prints the
//!    write's p50/p99 and the time until the event is readable.
//!
//! With the default `--db` it uses a scratch SQLite file; a given database must be empty.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::cli::{BenchOptions, Options};
use crate::db::{self, migrations, Access, Database, Target, Tx, Value};
use crate::failure::Failure;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::{server, App};

const BATCH: usize = 500;

pub async fn run(bench: BenchOptions) -> Result<(), String> {
    let scratch =
        std::env::temp_dir().join(format!("portcullis-admin-bench-{}", std::process::id()));
    let mut options = bench.options.clone();
    if options.db == Options::default().db {
        std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
        options.db = Target::Sqlite(scratch.join("bench.db"));
    }
    options.pool.connections = options.pool.connections.max(bench.concurrency);
    let result = measure(&bench, &options).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn measure(bench: &BenchOptions, options: &Options) -> Result<(), String> {
    let db: Arc<dyn Database> = Arc::from(options.db.open(&options.pool)?);
    let started = Instant::now();
    let filled = Arc::clone(&db);
    let consumers = bench.consumers;
    // The PostgreSQL client blocks: never on a runtime thread.
    tokio::task::spawn_blocking(move || {
        migrations::apply(&*filled)?;
        fill(&*filled, consumers)
    })
    .await
    .map_err(|e| e.to_string())??;
    println!(
        "bench: {} — {} consumers, each with 1 credential and 1 group, inserted in {:.1} s",
        db.describe(),
        bench.consumers,
        started.elapsed().as_secs_f64()
    );

    let app = Arc::new(App {
        database: db.describe(),
        store: Store::new(db, Arc::new(Metrics::new())),
        admin_token: None,
        data_plane_token: None,
        max_body: options.max_body_bytes,
        limits: options.limits,
        revocations: options.revocations,
        tls: None,
        client_certificates: false,
        started: Instant::now(),
    });
    let data = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let admin = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let data_address = data.local_addr().map_err(|e| e.to_string())?;
    let admin_address = admin.local_addr().map_err(|e| e.to_string())?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(server::serve(
        Arc::clone(&app),
        admin,
        data,
        Duration::from_secs(3600),
        stopped,
    ));

    // Lookups.
    let deadline = Instant::now() + Duration::from_secs(bench.seconds);
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for worker in 0..bench.concurrency {
        let (done, count, n) = (Arc::clone(&done), Arc::clone(&count), bench.consumers);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut client = Client::connect(data_address).await?;
            let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (worker as u64 + 1);
            while !done.load(Ordering::Relaxed) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let key = format!("bench-key-{}", state % n);
                let t = Instant::now();
                let (status, _) = client
                    .call("GET", &format!("/v1/credentials/{key}"), "")
                    .await?;
                latencies.push(t.elapsed());
                if status != 200 {
                    return Err(format!("lookup of {key}: status {status}"));
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, String>(latencies)
        }));
    }
    tokio::time::sleep_until(deadline.into()).await;
    done.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.map_err(|e| e.to_string())??);
    }
    let lookups = count.load(Ordering::Relaxed);
    println!(
        "bench: credential lookups over the data plane: {:.0}/s ({lookups} in {} s, {} connections), latency p50 {}, p99 {}",
        lookups as f64 / bench.seconds as f64,
        bench.seconds,
        bench.concurrency,
        pct(&mut latencies, 50),
        pct(&mut latencies, 99),
    );

    // Change-to-event latency.
    let mut admin_client = Client::connect(admin_address).await?;
    let mut feed = Client::connect(data_address).await?;
    let (mut writes, mut visible) = (Vec::new(), Vec::new());
    for trial in 0..200u64 {
        let (_, body) = feed.call("GET", "/v1/changes?after=0&limit=1", "").await?;
        let head = head_of(&body)?;
        let t0 = Instant::now();
        let (status, body) = admin_client
            .call(
                "PATCH",
                &format!("/consumers/bench-{}", trial % bench.consumers),
                &format!("{{\"custom_id\":\"bench-custom-{trial}\"}}"),
            )
            .await?;
        if status != 200 {
            return Err(format!("PATCH: {status} {body}"));
        }
        writes.push(t0.elapsed());
        loop {
            let (_, body) = feed
                .call("GET", &format!("/v1/changes?after={head}"), "")
                .await?;
            if body.contains("\"op\":\"update\"") {
                break;
            }
        }
        visible.push(t0.elapsed());
    }
    println!(
        "bench: change to event: a write through the Admin API answers in p50 {}, p99 {}; its event is readable in the feed p50 {}, p99 {} after the write began",
        pct(&mut writes, 50),
        pct(&mut writes, 99),
        pct(&mut visible, 50),
        pct(&mut visible, 99),
    );
    let _ = stop.send(true);
    let _ = serving.await;
    Ok(())
}

fn head_of(body: &str) -> Result<i64, String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["head"].as_i64())
        .ok_or_else(|| format!("no head in {body}"))
}

fn pct(samples: &mut [Duration], p: usize) -> String {
    if samples.is_empty() {
        return "-".to_owned();
    }
    samples.sort();
    let i = (samples.len() * p / 100).min(samples.len() - 1);
    let d = samples.get(i).copied().unwrap_or_default();
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Inserts `n` consumers `bench-{i}`, credentials `bench-key-{i}` and groups, 500 a statement.
fn fill(db: &dyn Database, n: u64) -> Result<(), String> {
    let now = crate::clock::now_secs();
    let mut i = 0u64;
    while i < n {
        let end = (i + 50 * BATCH as u64).min(n);
        db::run(
            db,
            Access::Write,
            |tx: &mut dyn Tx| -> Result<(), Failure> {
                let existing = tx.query("SELECT COUNT(*) FROM consumers", &[])?;
                if i == 0 && existing.first().map(|r| r.int(0)).transpose()?.unwrap_or(0) > 0 {
                    return Err(Failure::BadRequest(
                        "bench wants an empty database".to_owned(),
                    ));
                }
                let mut start = i;
                while start < end {
                    let stop = (start + BATCH as u64).min(end);
                    insert_rows(tx, start, stop, now)?;
                    start = stop;
                }
                Ok(())
            },
        )
        .map_err(|f| {
            f.body()["message"]
                .as_str()
                .unwrap_or("bench fill failed")
                .to_owned()
        })?;
        i = end;
    }
    Ok(())
}

fn insert_rows(tx: &mut dyn Tx, start: u64, stop: u64, now: i64) -> Result<(), Failure> {
    let ids: Vec<(String, String, String)> = (start..stop)
        .map(|_| -> Result<_, Failure> {
            Ok((
                crate::ops::new_id()?,
                crate::ops::new_id()?,
                crate::ops::new_id()?,
            ))
        })
        .collect::<Result<_, _>>()?;
    let rows = |width: usize| -> String {
        (0..ids.len())
            .map(|r| {
                let cells: Vec<String> =
                    (1..=width).map(|c| format!("${}", r * width + c)).collect();
                format!("({})", cells.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut params = Vec::new();
    for (k, (consumer, _, _)) in ids.iter().enumerate() {
        let i = start + k as u64;
        params.extend([
            Value::from(consumer),
            Value::Int(now),
            Value::Int(now),
            Value::from(format!("bench-{i}")),
        ]);
    }
    tx.execute(
        &format!(
            "INSERT INTO consumers (id, created_at, updated_at, username) VALUES {}",
            rows(4)
        ),
        &params,
    )?;
    params.clear();
    for (k, (consumer, jwt, _)) in ids.iter().enumerate() {
        let i = start + k as u64;
        params.extend([
            Value::from(jwt),
            Value::Int(now),
            Value::from(consumer),
            Value::from(format!("bench-key-{i}")),
            Value::from(format!("bench-secret-{i:0>20}-0123456789")),
            Value::from("HS256"),
        ]);
    }
    tx.execute(
        &format!("INSERT INTO jwt_secrets (id, created_at, consumer_id, key, secret, algorithm) VALUES {}", rows(6)),
        &params,
    )?;
    params.clear();
    for (k, (consumer, _, acl)) in ids.iter().enumerate() {
        params.extend([
            Value::from(acl),
            Value::Int(now),
            Value::from(consumer),
            Value::from(format!("group-{}", (start + k as u64) % 10)),
        ]);
    }
    tx.execute(
        &format!(
            "INSERT INTO acls (id, created_at, consumer_id, grp) VALUES {}",
            rows(4)
        ),
        &params,
    )?;
    Ok(())
}

/// A minimal keep-alive HTTP/1.1 client (bodies with Content-Length only, as axum answers).
struct Client {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Client {
    async fn connect(address: std::net::SocketAddr) -> Result<Client, String> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Client {
            stream,
            buffer: Vec::new(),
        })
    }

    async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<(u16, String), String> {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buffer[..end]).to_string();
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("bad answer: {head}"))?;
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_owned())
                    })
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if self.buffer.len() >= end + 4 + length {
                    let body = String::from_utf8_lossy(&self.buffer[end + 4..end + 4 + length])
                        .to_string();
                    self.buffer.drain(..end + 4 + length);
                    return Ok((status, body));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".to_owned());
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
