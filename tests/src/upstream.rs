//! A recording upstream: a real HTTP/1.1 server on a free loopback port that remembers every
//! request Envoy forwards to it and answers with a response the test chooses.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{chunked, headers};

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
        headers::first(&self.headers, name)
    }

    /// Every value of the header `name` (any case), in arrival order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        headers::all(&self.headers, name)
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
    /// Sent with `transfer-encoding: chunked` (in chunks of at most 16 KiB) instead of
    /// `content-length`.
    pub chunked: bool,
    /// How long the upstream takes before it answers (a slow server).
    pub delay: Duration,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            chunked: false,
            delay: Duration::ZERO,
        }
    }

    /// Answers only `delay` after the request arrived.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sends the body chunked, without `content-length`.
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
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
///
/// Each connection is served by its own thread, keep-alive and all, so however many
/// connections Envoy opens to it (a load test through `--concurrency 2`), none waits on
/// another.
pub struct Upstream {
    name: String,
    port: u16,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Starts serving at once on a port the kernel picks. `name` is the cluster name the
    /// config templates use for it and appears in the default response.
    pub fn start(name: &str) -> Self {
        let listener = match TcpListener::bind("127.0.0.1:0") {
            Ok(listener) => listener,
            Err(e) => panic!("upstream {name}: cannot listen on 127.0.0.1:0: {e}"),
        };
        let port = match listener.local_addr() {
            Ok(addr) => addr.port(),
            Err(e) => panic!("upstream {name}: no local address: {e}"),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            arrived: Condvar::new(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (shared, stop) = (shared.clone(), stop.clone());
            let name = name.to_owned();
            std::thread::spawn(move || accept(&name, &listener, &shared, &stop))
        };
        Self {
            name: name.to_owned(),
            port,
            shared,
            stop,
            acceptor: Some(acceptor),
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
        // Wake the acceptor, blocked in accept().
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Longest request head (request line and headers) read, in bytes.
const MAX_HEAD: usize = 64 * 1024;
/// How often an idle connection looks at the stop flag.
const IDLE_POLL: Duration = Duration::from_millis(200);

fn accept(name: &str, listener: &TcpListener, shared: &Arc<Shared>, stop: &Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let (name, shared, stop) = (name.to_owned(), shared.clone(), stop.clone());
        std::thread::spawn(move || {
            let _ = serve_connection(&name, stream, &shared, &stop);
        });
    }
}

/// Serves one connection's requests in turn until the client closes it, asks to, or the
/// upstream stops.
fn serve_connection(
    name: &str,
    stream: TcpStream,
    shared: &Shared,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE_POLL))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some((recorded, close)) = read_request(&mut reader, stop)? else {
            return Ok(());
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
        if !response.delay.is_zero() {
            std::thread::sleep(response.delay);
        }
        writer.write_all(&encode(name, &response, close))?;
        if close {
            return Ok(());
        }
    }
}

/// Reads one request; `None` when the connection ends (or the upstream stops) before one
/// begins. The flag says the client asked to close after it.
fn read_request(
    reader: &mut BufReader<TcpStream>,
    stop: &AtomicBool,
) -> std::io::Result<Option<(Recorded, bool)>> {
    let mut head: Vec<String> = Vec::new();
    let mut size = 0;
    loop {
        let mut line = Vec::new();
        match read_line(reader, &mut line, stop, head.is_empty()) {
            Ok(0) => return Ok(None),
            Ok(n) => size += n,
            Err(e) => return Err(e),
        }
        if size > MAX_HEAD {
            return Err(invalid("request head too long"));
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_owned();
        if text.is_empty() {
            if head.is_empty() {
                continue; // a stray CRLF between requests
            }
            break;
        }
        head.push(text);
    }
    let mut request_line = head.first().map(|l| l.split(' ')).into_iter().flatten();
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let version = request_line.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = head
        .iter()
        .skip(1)
        .filter_map(|l| headers::parse_line(l))
        .collect();
    let value = |name: &str| headers::first(&headers, name).map(str::to_ascii_lowercase);
    let chunked = value("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let body = if chunked {
        chunked::decode(&mut Patient(reader))?
    } else {
        let length = value("content-length")
            .map(|v| {
                v.parse::<usize>()
                    .map_err(|_| invalid("bad content-length"))
            })
            .transpose()?
            .unwrap_or(0);
        let mut body = vec![0; length];
        Patient(reader).read_exact(&mut body)?;
        body
    };
    let close = match value("connection") {
        Some(v) if v.contains("close") => true,
        Some(v) if v.contains("keep-alive") => false,
        _ => version != "HTTP/1.1",
    };
    let recorded = Recorded {
        method,
        path,
        headers,
        body,
    };
    Ok(Some((recorded, close)))
}

/// One line, `\n` included; waits across read timeouts while `idle` (between requests)
/// unless the upstream stops, and treats them as errors mid-request only after a while.
fn read_line(
    reader: &mut BufReader<TcpStream>,
    line: &mut Vec<u8>,
    stop: &AtomicBool,
    idle: bool,
) -> std::io::Result<usize> {
    let mut waited = Duration::ZERO;
    loop {
        match reader.read_until(b'\n', line) {
            Ok(n) => return Ok(n),
            Err(e) if is_timeout(&e) => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(0);
                }
                waited += IDLE_POLL;
                if !idle && waited > Duration::from_secs(30) {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The connection as a body is read from it: each read waits out the poll timeouts the
/// socket has (so an idle connection can see the stop flag) for up to 30 s of silence, then
/// fails, as a client stuck mid-request would make it.
struct Patient<'a>(&'a mut BufReader<TcpStream>);

impl BufRead for Patient<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        let mut waited = Duration::ZERO;
        while self.0.buffer().is_empty() {
            match self.0.fill_buf() {
                Ok(_) => break,
                Err(e) if is_timeout(&e) && waited < Duration::from_secs(30) => waited += IDLE_POLL,
                Err(e) => return Err(e),
            }
        }
        // Buffered now (or at the end of the stream): no further wait.
        self.0.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.0.consume(amount);
    }
}

impl Read for Patient<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        if let (Some(to), Some(from)) = (buf.get_mut(..n), available.get(..n)) {
            to.copy_from_slice(from);
        }
        self.consume(n);
        Ok(n)
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
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

/// The response on the wire: the test's headers, `x-upstream`, and `content-length`.
fn encode(name: &str, response: &Response, close: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    let named = std::iter::once(("x-upstream", name));
    let chosen = response
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()));
    for (n, v) in named.chain(chosen) {
        if n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("connection") {
            continue;
        }
        if n.bytes().chain(v.bytes()).any(|b| b == b'\r' || b == b'\n') {
            continue;
        }
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if response.chunked {
        out.push_str("transfer-encoding: chunked\r\n");
    } else {
        out.push_str(&format!("content-length: {}\r\n", response.body.len()));
    }
    if close {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if response.chunked {
        for chunk in response.body.chunks(16 * 1024) {
            bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            bytes.extend_from_slice(chunk);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
    } else {
        bytes.extend_from_slice(&response.body);
    }
    bytes
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
