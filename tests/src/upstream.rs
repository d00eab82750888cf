//! A recording upstream: a real HTTP/1.1 server on a free loopback port that remembers every
//! request Envoy forwards to it and answers with a response the test chooses.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request as the upstream received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// The request target: path and query, as sent (`/users?id=1`).
    pub path: String,
    /// Every header in arrival order, names lowercased, duplicates kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first value of the header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    /// Every value of the header `name` (any case), in arrival order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The answer an upstream gives instead of its default echo; see [`Upstream::set_response`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A response with a JSON body and `content-type: application/json`.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self::new(status)
            .header("content-type", "application/json")
            .body(body.to_string())
    }
}

/// Header prefixes the default response echoes back: the identity Kong (and so our filters)
/// hands to the upstream, so a test can read it from the client side too.
const ECHOED_PREFIXES: [&str; 4] = [
    "x-consumer-",
    "x-credential-",
    "x-anonymous-",
    "x-authenticated-",
];

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    response: Option<Response>,
}

struct Shared {
    state: Mutex<State>,
    arrived: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide what the upstream recorded.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A recording HTTP/1.1 upstream on `127.0.0.1:<free port>`; stops when dropped.
pub struct Upstream {
    name: String,
    port: u16,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl Upstream {
    /// Starts serving at once on a port the kernel picks. `name` is the cluster name the
    /// config templates use for it and appears in the default response.
    pub fn start(name: &str) -> Self {
        let server = match tiny_http::Server::http("127.0.0.1:0") {
            Ok(server) => Arc::new(server),
            Err(e) => panic!("upstream {name}: cannot listen on 127.0.0.1:0: {e}"),
        };
        let port = server
            .server_addr()
            .to_ip()
            .map(|addr| addr.port())
            .unwrap_or_else(|| panic!("upstream {name}: not listening on an IP address"));
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            arrived: Condvar::new(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        // tiny_http reads each connection on its own thread; these two only answer, so one
        // slow answer (a test-chosen body) does not hold up the other connections.
        let workers = (0..2)
            .map(|_| {
                let (server, shared, stop) = (server.clone(), shared.clone(), stop.clone());
                let name = name.to_owned();
                std::thread::spawn(move || serve(&name, &server, &shared, &stop))
            })
            .collect();
        Self {
            name: name.to_owned(),
            port,
            shared,
            stop,
            workers,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    pub fn count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// Waits until at least `n` requests have arrived and returns all of them; panics with
    /// how many did arrive if `timeout` passes first.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while state.requests.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "upstream {}: {} of {n} requests arrived within {timeout:?}",
                    self.name,
                    state.requests.len()
                );
            }
            state = match self.shared.arrived.wait_timeout(state, left) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
        state.requests.clone()
    }

    /// Answers every later request with `response` instead of the default echo.
    pub fn set_response(&self, response: Response) {
        self.shared.lock().response = Some(response);
    }

    /// Goes back to the default echo response.
    pub fn reset_response(&self) {
        self.shared.lock().response = None;
    }

    /// Forgets the requests recorded so far.
    pub fn clear(&self) {
        self.shared.lock().requests.clear();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn serve(name: &str, server: &tiny_http::Server, shared: &Shared, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let mut request = match server.recv_timeout(Duration::from_millis(50)) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(_) => break,
        };
        let mut body = Vec::new();
        let _ = request.as_reader().read_to_end(&mut body);
        let recorded = Recorded {
            method: request.method().as_str().to_owned(),
            path: request.url().to_owned(),
            headers: request
                .headers()
                .iter()
                .map(|h| {
                    let name = h.field.as_str().as_str().to_ascii_lowercase();
                    (name, h.value.as_str().to_owned())
                })
                .collect(),
            body,
        };
        let response = {
            let mut state = shared.lock();
            let response = state
                .response
                .clone()
                .unwrap_or_else(|| echo(name, &recorded));
            state.requests.push(recorded);
            shared.arrived.notify_all();
            response
        };
        let _ = request.respond(into_tiny(name, response));
    }
}

/// The default answer: 200 with a small JSON body naming the upstream and the request, and
/// echoing the identity headers it received.
fn echo(name: &str, request: &Recorded) -> Response {
    let identity: serde_json::Map<String, serde_json::Value> = request
        .headers
        .iter()
        .filter(|(n, _)| ECHOED_PREFIXES.iter().any(|p| n.starts_with(p)))
        .map(|(n, v)| (n.clone(), serde_json::Value::from(v.as_str())))
        .collect();
    Response::json(
        200,
        &serde_json::json!({
            "upstream": name,
            "method": request.method,
            "path": request.path,
            "headers": identity,
        }),
    )
}

fn into_tiny(name: &str, response: Response) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut out = tiny_http::Response::from_data(response.body).with_status_code(response.status);
    let named = std::iter::once(("x-upstream".to_owned(), name.to_owned()));
    for (n, v) in named.chain(response.headers) {
        if let Ok(header) = tiny_http::Header::from_bytes(n.as_bytes(), v.as_bytes()) {
            out.add_header(header);
        }
    }
    out
}
