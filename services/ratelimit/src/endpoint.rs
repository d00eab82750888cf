//! The operators' HTTP endpoint (`--metrics-listen ADDR:PORT`, off unless given), beside
//! the gRPC port and apart from it:
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | 200, the Prometheus text exposition ([`crate::metrics`]) |
//! | `GET /healthz` | 200 while the process serves (liveness) |
//! | `GET /readyz` | 200 when Redis answers a `PING` within `--redis-timeout-ms`, else 503 with the reason (readiness); 503 once a stop signal came |
//!
//! `HEAD` as `GET` without the body; any other method on these paths 405 with `Allow`; any
//! other path 404. HTTP/1.1 over cleartext, at most [`MAX_CONNECTIONS`] open at once, and a
//! client has [`HEADER_TIMEOUT`] to send a request's head: a slow or idle scraper cannot
//! hold the service. It runs on the same runtime as the gRPC server, shares nothing with
//! it but the atomics and the Redis connection, and a scrape takes no lock the gRPC path
//! waits on.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::metrics::Metrics;
use crate::store::Store;

/// The most connections open at once; the next one waits in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a client may take to send a request's head; an idle keep-alive connection is
/// closed after it too.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The Prometheus text format's content type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const JSON: &str = "application/json";

/// What the endpoint answers from.
pub struct Endpoint {
    metrics: Arc<Metrics>,
    store: Arc<Store>,
    /// Set once a stop signal came: not ready any more, so a load balancer stops sending.
    stopping: Arc<AtomicBool>,
}

impl Endpoint {
    pub fn new(metrics: Arc<Metrics>, store: Arc<Store>, stopping: Arc<AtomicBool>) -> Endpoint {
        Endpoint {
            metrics,
            store,
            stopping,
        }
    }

    /// The answer to `method path` (the query, if any, already cut off).
    pub async fn answer(&self, method: &Method, path: &str) -> Response<String> {
        let known = matches!(path, "/metrics" | "/healthz" | "/readyz");
        if !known {
            return json(
                StatusCode::NOT_FOUND,
                serde_json::json!({
                    "message": "not found: this endpoint serves /metrics, /healthz and /readyz"
                }),
            );
        }
        if method != Method::GET && method != Method::HEAD {
            let mut answer = json(
                StatusCode::METHOD_NOT_ALLOWED,
                serde_json::json!({
                    "message": format!("{path} answers GET and HEAD only, not {method}")
                }),
            );
            answer
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return answer;
        }
        match path {
            "/metrics" => {
                let mut answer = Response::new(self.metrics.render());
                answer
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
                no_store(answer)
            }
            "/healthz" => json(StatusCode::OK, serde_json::json!({ "status": "alive" })),
            _ => self.readiness().await,
        }
    }

    async fn readiness(&self) -> Response<String> {
        if self.stopping.load(Ordering::Relaxed) {
            return not_ready("stopping: a stop signal came");
        }
        match self.store.ping().await {
            Ok(()) => json(StatusCode::OK, serde_json::json!({ "status": "ready" })),
            Err(failure) => not_ready(&failure.to_string()),
        }
    }
}

fn not_ready(reason: &str) -> Response<String> {
    json(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({ "status": "not ready", "reason": reason }),
    )
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<String> {
    let mut answer = Response::new(format!("{body}\n"));
    *answer.status_mut() = status;
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    no_store(answer)
}

/// Every answer is the state of now: no cache may keep it.
fn no_store(mut answer: Response<String>) -> Response<String> {
    answer
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    answer
}

/// Accepts connections on `listener` (at most [`MAX_CONNECTIONS`] open at once) and
/// answers each with `endpoint`, until the task is dropped.
pub async fn serve(listener: TcpListener, endpoint: Arc<Endpoint>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // A slot first: past the cap, connections wait in the accept queue.
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like: wait a little rather than spin.
                eprintln!("portcullis-ratelimit: --metrics-listen: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let endpoint = Arc::clone(&endpoint);
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request: Request<Incoming>| {
                let endpoint = Arc::clone(&endpoint);
                async move {
                    Ok::<_, Infallible>(
                        endpoint
                            .answer(request.method(), request.uri().path())
                            .await,
                    )
                }
            });
            // A client that breaks the connection or the protocol only ends its own
            // connection (hyper answers a malformed request 400 itself).
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Target;
    use std::time::SystemTime;

    /// An endpoint whose Redis is a port nothing listens on (1: privileged, never bound).
    fn endpoint(stopping: bool) -> Endpoint {
        let metrics = Arc::new(Metrics::new(SystemTime::now()));
        let store = Store::new(
            &Target::Server("redis://127.0.0.1:1/0".to_owned()),
            Duration::from_millis(100),
            Arc::clone(&metrics),
        )
        .unwrap();
        Endpoint::new(
            metrics,
            Arc::new(store),
            Arc::new(AtomicBool::new(stopping)),
        )
    }

    #[tokio::test]
    async fn not_ready_says_why_and_a_stop_signal_wins() {
        let unreachable = endpoint(false).answer(&Method::GET, "/readyz").await;
        assert_eq!(unreachable.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = serde_json::from_str(unreachable.body()).unwrap();
        assert_eq!(body["status"], "not ready");
        assert!(
            body["reason"]
                .as_str()
                .unwrap()
                .starts_with("rate limit store unavailable: cannot connect to Redis"),
            "{body}"
        );
        let stopping = endpoint(true).answer(&Method::GET, "/readyz").await;
        assert_eq!(stopping.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            stopping.body(),
            "{\"reason\":\"stopping: a stop signal came\",\"status\":\"not ready\"}\n"
        );
        // Liveness does not depend on Redis.
        let alive = endpoint(true).answer(&Method::HEAD, "/healthz").await;
        assert_eq!(alive.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn only_three_paths_and_two_methods() {
        let endpoint = endpoint(false);
        let rows = [
            (Method::GET, "/metrics", StatusCode::OK),
            (Method::HEAD, "/metrics", StatusCode::OK),
            (Method::OPTIONS, "/metrics", StatusCode::METHOD_NOT_ALLOWED),
            (Method::POST, "/healthz", StatusCode::METHOD_NOT_ALLOWED),
            (Method::POST, "/nope", StatusCode::NOT_FOUND),
            (Method::GET, "*", StatusCode::NOT_FOUND),
            (Method::GET, "/METRICS", StatusCode::NOT_FOUND),
        ];
        for (method, path, status) in rows {
            let answer = endpoint.answer(&method, path).await;
            assert_eq!(answer.status(), status, "{method} {path}");
            assert_eq!(
                answer.headers().get(CACHE_CONTROL).unwrap(),
                "no-store",
                "{method} {path}"
            );
            assert_eq!(
                answer.headers().get(ALLOW).is_some(),
                status == StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
        }
    }
}
