//! One HTTP stream through a chain of plugins, driven as Envoy's filter manager drives it:
//! request headers, body chunks and trailers through the filters in order, the upstream, then
//! the response back through them in reverse order; local responses, pauses and resumptions,
//! `http_call` answers delivered while a filter waits, then `on_log`, `on_done`, `on_delete`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::abi::{encode_pairs, Action, MapType};
use crate::host::lock;
use crate::plugin::{Plugin, VmState};

/// A header map: lower-case names, byte values, in order, repeats allowed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Headers {
    pub pairs: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// The first value of `name` (Envoy hands filters the first of repeated headers).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
    /// The first value of `name` as text (lossy).
    pub fn get_str(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
    /// Every value of `name`, in order.
    pub fn get_all(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }
    pub fn add(&mut self, name: &str, value: &[u8]) {
        self.pairs.push((name.to_ascii_lowercase(), value.to_vec()));
    }
    pub fn remove(&mut self, name: &str) {
        self.pairs.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
    /// Sets `name` to one value as Envoy's `setCopy` does: every occurrence is removed and
    /// the new value appended at the end.
    pub fn replace(&mut self, name: &str, value: &[u8]) {
        self.remove(name);
        self.add(name, value);
    }
    pub fn names(&self) -> Vec<&str> {
        self.pairs.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// A response a filter sent with `send_local_response`.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalResponse {
    pub status: u16,
    pub details: String,
    pub body: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub grpc_status: u32,
}

/// The state of one stream that host calls read and write.
#[derive(Default)]
pub(crate) struct StreamState {
    pub(crate) request_headers: Headers,
    pub(crate) request_trailers: Headers,
    pub(crate) response_headers: Headers,
    pub(crate) response_trailers: Headers,
    /// The request body buffered by the filter whose callback runs.
    pub(crate) request_body: Vec<u8>,
    pub(crate) response_body: Vec<u8>,
    /// Properties the test set, by raw path (segments joined by NUL).
    pub(crate) properties: HashMap<Vec<u8>, Vec<u8>>,
    /// Envoy's filter state: `set_property` writes `wasm.<path>`.
    pub(crate) filter_state: HashMap<String, Vec<u8>>,
    pub(crate) local_response: Option<LocalResponse>,
    pub(crate) continued_request: bool,
    pub(crate) continued_response: bool,
    pub(crate) reset: bool,
    /// The response headers have passed the last encoder: they are on their way to the
    /// client, and a local reply can no longer replace them (Envoy resets the stream).
    pub(crate) response_headers_sent: bool,
    pub(crate) contexts: Vec<(String, u32)>,
    pub(crate) source: String,
    pub(crate) destination: String,
    pub(crate) response_code: Option<u16>,
    /// Header maps a filter let go of by continuing (VM instance, context id, map): Envoy drops its
    /// pointer to a map once a callback returns Continue, so later calls cannot reach it.
    pub(crate) released: Vec<(u64, u32, MapType)>,
    /// `on_log` runs: a map that is gone reads as not found rather than a bad argument.
    pub(crate) access_log_phase: bool,
    /// When the client resets the stream if a filter still keeps it waiting (host clock, ns).
    pub(crate) client_reset_at: Option<u64>,
}

impl StreamState {
    pub(crate) fn map(&mut self, map: MapType) -> Option<&mut Headers> {
        match map {
            MapType::RequestHeaders => Some(&mut self.request_headers),
            MapType::RequestTrailers => Some(&mut self.request_trailers),
            MapType::ResponseHeaders => Some(&mut self.response_headers),
            MapType::ResponseTrailers => Some(&mut self.response_trailers),
            _ => None,
        }
    }

    pub(crate) fn context_of(&self, plugin: &str) -> Option<u32> {
        self.contexts
            .iter()
            .find(|(name, _)| name == plugin)
            .map(|(_, id)| *id)
    }
}

/// Reads a property as Envoy encodes it: strings as bytes, integers as 8 bytes little-endian,
/// maps as header pairs. `None` is `NotFound`.
pub(crate) fn get_property(vm: &VmState, path: &[u8]) -> Option<Vec<u8>> {
    let segments: Vec<&[u8]> = path.split(|b| *b == 0).filter(|s| !s.is_empty()).collect();
    let text: Vec<String> = segments
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    let parts: Vec<&str> = text.iter().map(String::as_str).collect();
    match parts.as_slice() {
        ["plugin_name"] => return Some(vm.plugin_name.clone().into_bytes()),
        ["plugin_root_id"] => return Some(vm.root_id.clone().into_bytes()),
        ["plugin_vm_id"] => return Some(vm.vm_id.clone().into_bytes()),
        _ => {}
    }
    let stream = vm.stream.as_ref()?;
    let s = lock(stream);
    let joined = segments.join(&0u8);
    if let Some(value) = s.properties.get(&joined) {
        return Some(value.clone());
    }
    let header = |name: &str| s.request_headers.get(name).map(<[u8]>::to_vec);
    let int = |v: i64| Some(v.to_le_bytes().to_vec());
    let (host, port) = split_address(&s.source);
    let (dhost, dport) = split_address(&s.destination);
    match parts.as_slice() {
        ["request", "path"] => header(":path"),
        ["request", "url_path"] => {
            let path = header(":path")?;
            let end = path.iter().position(|b| *b == b'?').unwrap_or(path.len());
            Some(path[..end].to_vec())
        }
        ["request", "query"] => {
            let path = header(":path")?;
            let at = path.iter().position(|b| *b == b'?')?;
            Some(path[at + 1..].to_vec())
        }
        ["request", "method"] => header(":method"),
        ["request", "host"] => header(":authority"),
        ["request", "scheme"] => header(":scheme"),
        ["request", "id"] => header("x-request-id"),
        ["request", "protocol"] => Some(b"HTTP/1.1".to_vec()),
        ["request", "useragent"] => header("user-agent"),
        ["request", "referer"] => header("referer"),
        ["request", "headers"] => Some(encode_pairs(&s.request_headers.pairs)),
        ["request", "headers", name] => header(name),
        ["source", "address"] => Some(s.source.clone().into_bytes()),
        ["source", "port"] => int(port?),
        ["destination", "address"] => Some(s.destination.clone().into_bytes()),
        ["destination", "port"] => int(dport?),
        ["response", "code"] => int(i64::from(s.response_code?)),
        ["response", "headers"] => {
            s.response_code?;
            Some(encode_pairs(&s.response_headers.pairs))
        }
        ["response", "headers", name] => s.response_headers.get(name).map(<[u8]>::to_vec),
        ["filter_state", key] => s.filter_state.get(*key).cloned(),
        [single] => s.filter_state.get(&format!("wasm.{single}")).cloned(),
        _ => {
            let _ = (host, dhost);
            None
        }
    }
}

fn split_address(address: &str) -> (Option<&str>, Option<i64>) {
    match address.rsplit_once(':') {
        Some((host, port)) => (Some(host), port.parse().ok()),
        None => (Some(address), None),
    }
}

/// A request as a client sends it, and how the upstream will answer it.
#[derive(Debug, Clone)]
pub struct Request {
    pub headers: Headers,
    pub body: Vec<Vec<u8>>,
    pub trailers: Headers,
    pub properties: Vec<(Vec<u8>, Vec<u8>)>,
    pub source: String,
    pub destination: String,
    pub response: UpstreamResponse,
    /// Envoy's `use_remote_address` (default false, as in Envoy): see [`Request::use_remote_address`].
    pub use_remote_address: bool,
    /// See [`Request::client_resets_after`].
    pub client_resets_after: Option<Duration>,
    /// The address Envoy appends to `x-forwarded-for` for a loopback peer: see
    /// [`Request::envoy_address`].
    pub envoy_address: String,
}

/// [`Request::envoy_address`] unless a test sets it: a documentation address standing for
/// the machine's own.
pub const DEFAULT_ENVOY_ADDRESS: &str = "192.0.2.254";

static NEXT_REQUEST_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Request {
    /// A request with the pseudo-headers; [`send`] appends what Envoy's connection manager
    /// adds before any filter runs (`x-forwarded-proto`, `x-request-id`).
    pub fn new(method: &str, path: &str) -> Self {
        let mut headers = Headers::default();
        headers.add(":authority", b"localhost");
        headers.add(":path", path.as_bytes());
        headers.add(":method", method.as_bytes());
        headers.add(":scheme", b"http");
        Self {
            headers,
            body: Vec::new(),
            trailers: Headers::default(),
            properties: Vec::new(),
            source: "127.0.0.1:40000".into(),
            destination: "127.0.0.1:10000".into(),
            response: UpstreamResponse::new(200),
            use_remote_address: false,
            client_resets_after: None,
            envoy_address: DEFAULT_ENVOY_ADDRESS.into(),
        }
    }
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }
    pub fn post(path: &str) -> Self {
        Self::new("POST", path)
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.add(name, value.as_bytes());
        self
    }
    pub fn header_bytes(mut self, name: &str, value: &[u8]) -> Self {
        self.headers.add(name, value);
        self
    }
    /// Sets `:authority`.
    pub fn authority(mut self, authority: &str) -> Self {
        self.headers.replace(":authority", authority.as_bytes());
        self
    }
    /// The whole body in one chunk (with `content-length`).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        self.headers
            .replace("content-length", body.len().to_string().as_bytes());
        self.body = vec![body];
        self
    }
    /// The body in several chunks, as a chunked transfer delivers it.
    pub fn chunks(mut self, chunks: Vec<Vec<u8>>) -> Self {
        self.headers.remove("content-length");
        self.headers.replace("transfer-encoding", b"chunked");
        self.body = chunks;
        self
    }
    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers.add(name, value.as_bytes());
        self
    }
    /// The Envoy route name the request matched (`xds.route_name`).
    pub fn route(self, name: &str) -> Self {
        self.property(&["xds", "route_name"], name.as_bytes())
    }
    /// The downstream address, `ip:port` (`source.address`).
    pub fn source(mut self, address: &str) -> Self {
        self.source = address.to_string();
        self
    }
    /// The connection manager's `use_remote_address`. With Envoy's default (false) a client's
    /// `x-forwarded-for` decides `source.address`; true makes it the peer address, and Envoy
    /// appends the peer's IP to `x-forwarded-for` (see [`Request::envoy_address`]), sets
    /// `x-envoy-external-address` to it and `x-forwarded-proto` to the connection's scheme,
    /// all before any filter runs.
    pub fn use_remote_address(mut self, on: bool) -> Self {
        self.use_remote_address = on;
        self
    }
    /// What Envoy appends to `x-forwarded-for` instead of a loopback peer (127.0.0.0/8,
    /// `::1`) with `use_remote_address`: its own address (`local_info`, the machine's first
    /// non-loopback IPv4 address; 127.0.0.1 on a machine with none). Default
    /// [`DEFAULT_ENVOY_ADDRESS`].
    pub fn envoy_address(mut self, ip: &str) -> Self {
        self.envoy_address = ip.to_string();
        self
    }

    /// Any property by path, as `get_property` will return it.
    pub fn property(mut self, path: &[&str], value: &[u8]) -> Self {
        self.properties
            .push((path.join("\0").into_bytes(), value.to_vec()));
        self
    }
    /// The client gives up `after` the request arrived if a filter still keeps it waiting
    /// then (an `http_call` not yet answered, a delayed refusal): the stream is reset as
    /// Envoy resets it when the downstream goes away. The filters get `on_log`, `on_done`
    /// and `on_delete`, the stream's own `http_call`s are cancelled, and the client gets
    /// nothing ([`Exchange::was_reset`]). What the root context started lives on.
    pub fn client_resets_after(mut self, after: Duration) -> Self {
        self.client_resets_after = Some(after);
        self
    }
    /// How the upstream answers if the request reaches it.
    pub fn respond(mut self, response: UpstreamResponse) -> Self {
        self.response = response;
        self
    }
}

/// The upstream's answer.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub headers: Headers,
    pub body: Vec<Vec<u8>>,
    pub trailers: Headers,
}

impl UpstreamResponse {
    pub fn new(status: u16) -> Self {
        let mut headers = Headers::default();
        headers.add(":status", status.to_string().as_bytes());
        Self {
            headers,
            body: Vec::new(),
            trailers: Headers::default(),
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.add(name, value.as_bytes());
        self
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        self.headers
            .replace("content-length", body.len().to_string().as_bytes());
        self.body = vec![body];
        self
    }
    /// A JSON body with its content-type.
    pub fn json(self, value: &serde_json::Value) -> Self {
        self.header("content-type", "application/json")
            .body(value.to_string())
    }
    pub fn chunks(mut self, chunks: Vec<Vec<u8>>) -> Self {
        self.headers.remove("content-length");
        self.headers.replace("transfer-encoding", b"chunked");
        self.body = chunks;
        self
    }
    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers.add(name, value.as_bytes());
        self
    }
}

/// What reached the upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest {
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
}

impl UpstreamRequest {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get_str(name)
    }
}

/// What the client got.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientResponse {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
}

/// Instructions one callback of one plugin used.
#[derive(Debug, Clone, PartialEq)]
pub struct Metered {
    pub plugin: String,
    pub callback: String,
    pub instructions: u64,
    /// Calls into the host (proxy-wasm and WASI) the callback made.
    pub host_calls: u64,
    /// Times the host entered the VM again during those calls: one per value it returned
    /// (a header, a property, shared data), which it must allocate in the VM's memory.
    pub reentries: u64,
}

/// Everything that happened to one request.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    pub response: ClientResponse,
    /// The local response a filter sent, and which plugin sent it.
    pub local_response: Option<(String, LocalResponse)>,
    /// What reached the upstream; `None` when the request never got there.
    pub upstream: Option<UpstreamRequest>,
    /// Set when a filter paused and nothing could resume it: Envoy would hang until timeout.
    pub stalled: Option<String>,
    /// Set when a VM trapped (a panic): Envoy would answer 503 and the VM stays dead.
    pub crash: Option<String>,
    /// The stream was reset: a filter called `close_stream`, or sent a local response after
    /// the response headers had already gone to the client (Envoy can only reset then; the
    /// client sees the stream aborted, with no status and no body: `response` is empty).
    pub reset: bool,
    pub metering: Vec<Metered>,
    /// Filter state at the end of the request (`set_property` values by key).
    pub filter_state: HashMap<String, Vec<u8>>,
}

impl Exchange {
    pub fn status(&self) -> u16 {
        self.response.status
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.response.headers.get_str(name)
    }
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.response.body).into_owned()
    }
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.response.body).unwrap_or(serde_json::Value::Null)
    }
    /// Whether the client saw the stream reset instead of a response.
    pub fn was_reset(&self) -> bool {
        self.reset
    }
    pub fn reached_upstream(&self) -> bool {
        self.upstream.is_some()
    }
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.upstream.as_ref().and_then(|u| u.header(name))
    }
    /// Total wasm instructions the request cost across every plugin and callback.
    pub fn instructions(&self) -> u64 {
        self.metering.iter().map(|m| m.instructions).sum()
    }
    /// Calls into the host the request cost, across every plugin and callback.
    pub fn host_calls(&self) -> u64 {
        self.metering.iter().map(|m| m.host_calls).sum()
    }
    /// Times a host call made the host enter a VM again (one per value returned).
    pub fn reentries(&self) -> u64 {
        self.metering.iter().map(|m| m.reentries).sum()
    }
    /// Wasm instructions one plugin spent on the request.
    pub fn instructions_of(&self, plugin: &str) -> u64 {
        self.metering
            .iter()
            .filter(|m| m.plugin == plugin)
            .map(|m| m.instructions)
            .sum()
    }
}

enum Flow {
    Continue,
    Local(usize),
    Stalled(String),
    Crashed(String),
    Reset,
    /// A filter of a plugin with `allow_on_headers_stop_iteration` paused the headers at this
    /// position of the chain order: they are held there while the body still comes to it.
    Held(usize),
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    Request,
    Response,
}

impl Plugin {
    /// Sends one request through this plugin alone.
    pub fn send(&mut self, request: Request) -> Exchange {
        send(&mut [self], request)
    }
}

/// Sends one request through a chain of plugins, in the order given (Envoy's filter order).
pub fn send(filters: &mut [&mut Plugin], request: Request) -> Exchange {
    let mut ex = Exchange::default();
    for f in filters.iter_mut() {
        if let Err(e) = f.run_due() {
            ex.crash = Some(e);
        }
    }
    if let Some(dead) = filters.iter().find_map(|f| f.crashed().map(str::to_string)) {
        return crashed(ex, dead);
    }
    let request_headers = connection_manager_headers(&request);
    let source = downstream_address(&request, &request_headers);
    let client_reset_at = request.client_resets_after.and_then(|after| {
        let now = filters.first()?.host().now_nanos();
        Some(now + after.as_nanos() as u64)
    });
    let stream = Arc::new(Mutex::new(StreamState {
        request_headers,
        request_trailers: request.trailers.clone(),
        properties: request.properties.iter().cloned().collect(),
        source,
        destination: request.destination.clone(),
        client_reset_at,
        ..StreamState::default()
    }));
    let mut contexts = Vec::with_capacity(filters.len());
    for f in filters.iter_mut() {
        match f.new_context() {
            Ok(id) => contexts.push(id),
            Err(e) => return crashed(ex, e),
        }
        lock(&stream)
            .contexts
            .push((f.name().to_string(), *contexts.last().unwrap_or(&0)));
    }
    let order: Vec<usize> = (0..filters.len()).collect();
    let reverse: Vec<usize> = order.iter().rev().copied().collect();

    // The request, filter by filter.
    let has_body = !request.body.is_empty();
    let has_trailers = !request.trailers.pairs.is_empty();
    let mut flow = headers_phase(
        filters,
        &contexts,
        &stream,
        &order,
        Direction::Request,
        !has_body && !has_trailers,
    );
    let mut body = Vec::new();
    if matches!(flow, Flow::Continue | Flow::Held(_)) && has_body {
        let frames = http1_frames(&request.body, has_trailers);
        (flow, body) = body_phase(
            filters,
            &contexts,
            &stream,
            &order,
            &frames,
            Direction::Request,
            flow,
        );
    }
    if let Flow::Held(pos) = flow {
        flow = resume_held(filters, &contexts, &stream, &order, pos, Direction::Request);
    }
    if matches!(flow, Flow::Continue) && has_trailers {
        flow = trailers_phase(filters, &contexts, &stream, &order, Direction::Request);
    }

    // The upstream, or the local response.
    let mut encoders = reverse.clone();
    match flow {
        Flow::Continue => {
            let mut s = lock(&stream);
            ex.upstream = Some(UpstreamRequest {
                headers: s.request_headers.clone(),
                body,
                trailers: s.request_trailers.clone(),
            });
            s.response_headers = request.response.headers.clone();
            // Envoy's router adds this before the encoders run.
            s.response_headers
                .add("x-envoy-upstream-service-time", b"1");
            s.response_trailers = request.response.trailers.clone();
            s.response_code = status_of(&s.response_headers);
            drop(s);
            let trailers = !request.response.trailers.pairs.is_empty();
            let frames = if request.response.body.is_empty() {
                Vec::new()
            } else {
                http1_frames(&request.response.body, trailers)
            };
            let (f, out) =
                response_phases(filters, &contexts, &stream, &encoders, &frames, trailers);
            flow = f;
            body = out;
            if let Flow::Local(sender) = flow {
                // A local reply from an encoder callback: the response headers exist, so Envoy
                // never runs it through the filters (`FilterManager::sendLocalReply`).
                flow = late_local_reply(&stream, &mut ex, filters[sender].name(), &mut body);
            }
        }
        Flow::Local(_) => {}
        _ => {}
    }
    if let Flow::Local(sender) = flow {
        let local = lock(&stream).local_response.clone();
        if let Some(local) = local {
            ex.local_response = Some((filters[sender].name().to_string(), local.clone()));
            let mut s = lock(&stream);
            s.response_headers = local_response_headers(&local);
            s.response_code = Some(local.status);
            s.local_response = None;
            drop(s);
            // The local reply goes back through the filters that saw the request.
            encoders = reverse.iter().copied().filter(|i| *i <= sender).collect();
            // Envoy encodes a local reply's body in one frame that ends the stream.
            let frames = if local.body.is_empty() {
                Vec::new()
            } else {
                vec![(local.body.clone(), true)]
            };
            let (f, out) = response_phases(filters, &contexts, &stream, &encoders, &frames, false);
            body = out;
            flow = match f {
                // A second local response while answering the first is ignored by Envoy.
                Flow::Local(_) => Flow::Continue,
                other => other,
            };
        }
    }
    // A body changed without its content-length leaves a peer waiting for bytes that never
    // come (or reading garbage): Envoy does not fix the header, so neither does host-test.
    if let Some(up) = &ex.upstream {
        if let Some(why) = framing_error(&up.headers, up.body.len(), "the upstream") {
            flow = Flow::Stalled(why);
        }
    }
    if matches!(flow, Flow::Continue | Flow::Local(_)) {
        let s = lock(&stream);
        if let Some(why) = framing_error(&s.response_headers, body.len(), "the client") {
            flow = Flow::Stalled(why);
        }
    }
    match flow {
        Flow::Stalled(why) => ex.stalled = Some(why),
        Flow::Crashed(why) => ex.crash = Some(why),
        Flow::Reset => ex.reset = true,
        Flow::Held(_) => {
            ex.stalled = Some("a filter held the headers with nothing left to resume them".into())
        }
        Flow::Continue | Flow::Local(_) => {}
    }
    {
        let s = lock(&stream);
        ex.response = ClientResponse {
            status: status_of(&s.response_headers).unwrap_or(0),
            headers: s.response_headers.clone(),
            body,
            trailers: s.response_trailers.clone(),
        };
        ex.filter_state = s.filter_state.clone();
    }
    if ex.stalled.is_some() || ex.reset {
        ex.response = ClientResponse::default();
    }

    // The end of the stream: on_log, on_done, on_delete, for every context.
    lock(&stream).access_log_phase = true;
    for (i, f) in filters.iter_mut().enumerate() {
        let ctx = contexts[i] as i32;
        if f.crashed().is_none() {
            let end = f.with_stream(&stream, contexts[i], |p| {
                p.call_optional::<i32, ()>("proxy_on_log", ctx)?;
                p.call_optional::<i32, i32>("proxy_on_done", ctx)?;
                p.call_optional::<i32, ()>("proxy_on_delete", ctx)
            });
            if let Err(e) = end {
                ex.crash.get_or_insert(e);
            }
        }
        f.cancel_calls(contexts[i]);
        let name = f.name().to_string();
        ex.metering
            .extend(f.take_metering().into_iter().map(|m| Metered {
                plugin: name.clone(),
                callback: m.callback,
                instructions: m.instructions,
                host_calls: m.host_calls,
                reentries: m.reentries,
            }));
    }
    if let Some(crash) = ex.crash.clone() {
        return crashed(ex, crash);
    }
    ex
}

fn framing_error(headers: &Headers, body: usize, peer: &str) -> Option<String> {
    let declared = headers.get_str("content-length")?;
    match declared.trim().parse::<usize>() {
        Ok(n) if n == body => None,
        _ => Some(format!(
            "content-length says {declared} but {body} body bytes reached {peer}: \
             a filter changed the body without fixing content-length"
        )),
    }
}

/// Envoy's "inline" request headers: a repeated one arrives as one header, its values joined
/// with `,` (seen by the probe conformance test for `authorization`, `user-agent` and
/// `x-forwarded-for`; `cookie` and other headers stay repeated).
const COALESCED: [&str; 8] = [
    "authorization",
    "user-agent",
    "x-forwarded-for",
    "content-type",
    "via",
    "te",
    "x-request-id",
    "x-forwarded-host",
];

/// What Envoy's connection manager does to a request before the filters see it: repeated
/// inline headers joined; with `use_remote_address`, the peer appended to
/// `x-forwarded-for` and `x-forwarded-proto` and `x-envoy-external-address` set (each in
/// place when the client sent it, else added in that order); `x-request-id` added last.
fn connection_manager_headers(request: &Request) -> Headers {
    let mut joined = Headers::default();
    for (name, value) in request.headers.pairs.iter().cloned() {
        let inline = COALESCED.contains(&name.as_str());
        match joined.pairs.iter_mut().find(|(k, _)| inline && *k == name) {
            Some((_, existing)) => {
                existing.push(b',');
                existing.extend_from_slice(&value);
            }
            None => joined.pairs.push((name, value)),
        }
    }
    let mut headers = joined;
    if request.use_remote_address {
        let peer = address_ip(&request.source);
        let appended = if is_loopback(peer) {
            request.envoy_address.as_str()
        } else {
            peer
        };
        match headers
            .pairs
            .iter_mut()
            .find(|(k, _)| k == "x-forwarded-for")
        {
            Some((_, xff)) => {
                // An empty header gets the address alone (measured).
                if !xff.is_empty() {
                    xff.push(b',');
                }
                xff.extend_from_slice(appended.as_bytes());
            }
            None => headers.add("x-forwarded-for", appended.as_bytes()),
        }
        set_in_place(&mut headers, "x-forwarded-proto", b"http");
        set_in_place(&mut headers, "x-envoy-external-address", peer.as_bytes());
    } else if headers.get("x-forwarded-proto").is_none() {
        headers.add("x-forwarded-proto", b"http");
    }
    if headers.get("x-request-id").is_none() {
        let id = NEXT_REQUEST_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        headers.add(
            "x-request-id",
            format!("00000000-0000-4000-8000-{id:012}").as_bytes(),
        );
    }
    headers
}

/// Sets `name` where the client put it (its later copies removed), or at the end.
fn set_in_place(headers: &mut Headers, name: &str, value: &[u8]) {
    match headers.pairs.iter().position(|(k, _)| k == name) {
        Some(at) => {
            let mut index = 0;
            headers.pairs.retain(|(k, _)| {
                index += 1;
                index - 1 == at || k != name
            });
            if let Some((_, v)) = headers.pairs.get_mut(at) {
                *v = value.to_vec();
            }
        }
        None => headers.add(name, value),
    }
}

/// The IP of an `ip:port` / `[ip]:port` address, as text.
fn address_ip(address: &str) -> &str {
    match address.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(ip, _)| ip),
        None => address.rsplit_once(':').map_or(address, |(ip, _)| ip),
    }
}

/// Envoy's `isLoopbackAddress`: 127.0.0.0/8 and `::1`.
fn is_loopback(ip: &str) -> bool {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(std::net::IpAddr::V6(v6)) => v6.is_loopback(),
        Err(_) => false,
    }
}

/// `source.address` as Envoy's connection manager decides it: with its default
/// `use_remote_address: false`, the last `x-forwarded-for` entry when it is an IP (written
/// `ip:0` / `[ip]:0`), which the client controls; the peer address otherwise (no header, an
/// entry that is not an IP, an empty last entry).
fn downstream_address(request: &Request, headers: &Headers) -> String {
    if request.use_remote_address {
        return request.source.clone();
    }
    headers
        .get_str("x-forwarded-for")
        .and_then(|xff| xff.rsplit(',').next().and_then(forwarded_address))
        .unwrap_or_else(|| request.source.clone())
}

/// An `x-forwarded-for` entry as Envoy writes it into `source.address`, or `None` when Envoy
/// would not take it: not an IP, a port given, or a zone id by interface name (Envoy
/// resolves one of its machine's interface names to the index, `%eth0` → `%4`; host-test
/// knows no interfaces).
fn forwarded_address(entry: &str) -> Option<String> {
    let entry = entry.trim();
    let (ip, zone) = match entry.split_once('%') {
        Some((ip, zone)) => (ip, Some(zone)),
        None => (entry, None),
    };
    match (ip.parse::<std::net::IpAddr>().ok()?, zone) {
        (std::net::IpAddr::V4(v4), None) => Some(format!("{v4}:0")),
        (std::net::IpAddr::V6(v6), None) => Some(format!("[{v6}]:0")),
        (std::net::IpAddr::V6(v6), Some(zone))
            if !zone.is_empty() && zone.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(format!("[{v6}%{zone}]:0"))
        }
        _ => None,
    }
}

fn crashed(mut ex: Exchange, why: String) -> Exchange {
    // Envoy's fail-closed answer for a dead VM.
    ex.crash = Some(why);
    ex.upstream = None;
    ex.response = ClientResponse {
        status: 503,
        ..ClientResponse::default()
    };
    ex
}

fn status_of(headers: &Headers) -> Option<u16> {
    headers.get_str(":status")?.parse().ok()
}

/// The headers Envoy gives a local reply (seen by the probe conformance test): status, the
/// filter's headers, the length, and `content-type: text/plain` for a body the filter gave
/// no type.
fn local_response_headers(local: &LocalResponse) -> Headers {
    let mut headers = Headers::default();
    headers.add(":status", local.status.to_string().as_bytes());
    for (k, v) in &local.headers {
        headers.add(k, v);
    }
    if !local.body.is_empty() {
        headers.replace("content-length", local.body.len().to_string().as_bytes());
        if headers.get("content-type").is_none() {
            headers.add("content-type", b"text/plain");
        }
    }
    headers
}

/// The response through the encoders: `frames` is the body as it arrives (empty: none).
fn response_phases(
    filters: &mut [&mut Plugin],
    contexts: &[u32],
    stream: &Arc<Mutex<StreamState>>,
    order: &[usize],
    frames: &[(Vec<u8>, bool)],
    trailers: bool,
) -> (Flow, Vec<u8>) {
    let mut flow = headers_phase(
        filters,
        contexts,
        stream,
        order,
        Direction::Response,
        frames.is_empty() && !trailers,
    );
    let mut body = Vec::new();
    if matches!(flow, Flow::Continue | Flow::Held(_)) && !frames.is_empty() {
        (flow, body) = body_phase(
            filters,
            contexts,
            stream,
            order,
            frames,
            Direction::Response,
            flow,
        );
    }
    if let Flow::Held(pos) = flow {
        flow = resume_held(filters, contexts, stream, order, pos, Direction::Response);
    }
    if matches!(flow, Flow::Continue) && trailers {
        flow = trailers_phase(filters, contexts, stream, order, Direction::Response);
    }
    (flow, body)
}

/// After a callback: did the filter answer locally or reset the stream?
fn stopped(stream: &Arc<Mutex<StreamState>>, filter: usize) -> Option<Flow> {
    let s = lock(stream);
    if s.reset {
        Some(Flow::Reset)
    } else if s.local_response.is_some() {
        Some(Flow::Local(filter))
    } else {
        None
    }
}

fn clear_continue(stream: &Arc<Mutex<StreamState>>, dir: Direction) {
    let mut s = lock(stream);
    match dir {
        Direction::Request => s.continued_request = false,
        Direction::Response => s.continued_response = false,
    }
}

/// Root-context ticks a waiting request may sit through before it counts as stalled.
const MAX_TICKS_WHILE_WAITING: u32 = 10_000;

/// A filter paused: deliver its `http_call` answers until it continues, answers locally, or
/// nothing is left that could resume it.
fn wait(
    plugin: &mut Plugin,
    context: u32,
    stream: &Arc<Mutex<StreamState>>,
    filter: usize,
    dir: Direction,
) -> Flow {
    let mut ticks = 0u32;
    loop {
        if let Some(flow) = stopped(stream, filter) {
            return flow;
        }
        {
            let mut s = lock(stream);
            let continued = match dir {
                Direction::Request => std::mem::take(&mut s.continued_request),
                Direction::Response => std::mem::take(&mut s.continued_response),
            };
            if continued {
                return Flow::Continue;
            }
        }
        // Time passes while the request waits: the next of its own http_call answers, the
        // root context's answers and ticks, in time order (the root context may answer or
        // resume the stream through set_effective_context). Bounded, so a filter that never
        // resumes is a stall. A client that gives up first resets the stream.
        let reset_at = lock(stream).client_reset_at;
        if let Some(reset_at) = reset_at {
            if plugin
                .next_event_due(context)
                .is_none_or(|due| due > reset_at)
            {
                plugin.set_clock(reset_at);
                return Flow::Reset;
            }
        }
        ticks += 1;
        let next = if ticks > MAX_TICKS_WHILE_WAITING {
            Ok(false)
        } else {
            plugin.deliver_next_event(context, stream)
        };
        match next {
            Ok(true) => {}
            Ok(false) => {
                return Flow::Stalled(format!(
                    "{} paused the {} and nothing resumed it",
                    plugin.name(),
                    if dir == Direction::Request {
                        "request"
                    } else {
                        "response"
                    }
                ))
            }
            Err(e) => return Flow::Crashed(e),
        }
    }
}

fn callback_name(dir: Direction, part: &str) -> String {
    match dir {
        Direction::Request => format!("proxy_on_request_{part}"),
        Direction::Response => format!("proxy_on_response_{part}"),
    }
}

fn headers_phase(
    filters: &mut [&mut Plugin],
    contexts: &[u32],
    stream: &Arc<Mutex<StreamState>>,
    order: &[usize],
    dir: Direction,
    end_of_stream: bool,
) -> Flow {
    let name = callback_name(dir, "headers");
    for (pos, &i) in order.iter().enumerate() {
        let count = {
            let s = lock(stream);
            match dir {
                Direction::Request => s.request_headers.pairs.len(),
                Direction::Response => s.response_headers.pairs.len(),
            }
        };
        clear_continue(stream, dir);
        let ctx = contexts[i];
        let result = filters[i].with_stream(stream, ctx, |p| {
            p.call_optional::<(i32, i32, i32), i32>(
                &name,
                (ctx as i32, count as i32, end_of_stream as i32),
            )
        });
        let action = match result {
            Ok(a) => Action::from_i32(a),
            Err(e) => return Flow::Crashed(e),
        };
        if let Some(flow) = stopped(stream, i) {
            return flow;
        }
        if action == Action::Pause {
            // proxy-wasm-cpp-host (`convertVmCallResultToFilterHeadersStatus`) passes
            // StopIteration on only with Envoy's flag; otherwise it becomes
            // StopAllIterationAndWatermark: no body until the filter resumes itself.
            if !end_of_stream && filters[i].allows_on_headers_stop_iteration() {
                return Flow::Held(pos);
            }
            match wait(filters[i], ctx, stream, i, dir) {
                Flow::Continue => {}
                other => return other,
            }
        } else {
            release(stream, filters[i], ctx, dir, false);
        }
    }
    if dir == Direction::Response {
        lock(stream).response_headers_sent = true;
    }
    Flow::Continue
}

/// Headers held at `order[pos]` go on: the filter continued its body (or the body ended).
/// The later filters get them with `end_of_stream` false, as body follows; one of them may
/// hold them again (the position returned is in `order`).
fn resume_held(
    filters: &mut [&mut Plugin],
    contexts: &[u32],
    stream: &Arc<Mutex<StreamState>>,
    order: &[usize],
    pos: usize,
    dir: Direction,
) -> Flow {
    let rest = order.get(pos + 1..).unwrap_or_default();
    match headers_phase(filters, contexts, stream, rest, dir, false) {
        Flow::Held(p) => Flow::Held(pos + 1 + p),
        other => other,
    }
}

/// A filter sent a local response from an encoder callback. Envoy's
/// `FilterManager::sendLocalReply`: while the response headers have not reached the codec,
/// the reply goes straight to the client, bypassing the filters (`sendDirectLocalReply`);
/// once they have, "Prior headers have already been sent" and the stream is reset.
fn late_local_reply(
    stream: &Arc<Mutex<StreamState>>,
    ex: &mut Exchange,
    sender: &str,
    body: &mut Vec<u8>,
) -> Flow {
    let mut s = lock(stream);
    let Some(local) = s.local_response.take() else {
        return Flow::Continue;
    };
    ex.local_response = Some((sender.to_string(), local.clone()));
    if s.response_headers_sent {
        return Flow::Reset;
    }
    s.response_headers = local_response_headers(&local);
    s.response_trailers = Headers::default();
    s.response_code = Some(local.status);
    s.response_headers_sent = true;
    *body = local.body;
    Flow::Continue
}

/// Envoy forgets a filter's header (or trailer) map once its callback answers Continue.
fn release(
    stream: &Arc<Mutex<StreamState>>,
    plugin: &Plugin,
    context: u32,
    dir: Direction,
    trailers: bool,
) {
    let map = match (dir, trailers) {
        (Direction::Request, false) => MapType::RequestHeaders,
        (Direction::Request, true) => MapType::RequestTrailers,
        (Direction::Response, false) => MapType::ResponseHeaders,
        (Direction::Response, true) => MapType::ResponseTrailers,
    };
    lock(stream)
        .released
        .push((plugin.instance_id(), context, map));
}

fn trailers_phase(
    filters: &mut [&mut Plugin],
    contexts: &[u32],
    stream: &Arc<Mutex<StreamState>>,
    order: &[usize],
    dir: Direction,
) -> Flow {
    let name = callback_name(dir, "trailers");
    for &i in order {
        let count = {
            let s = lock(stream);
            match dir {
                Direction::Request => s.request_trailers.pairs.len(),
                Direction::Response => s.response_trailers.pairs.len(),
            }
        };
        clear_continue(stream, dir);
        let ctx = contexts[i];
        let result = filters[i].with_stream(stream, ctx, |p| {
            p.call_optional::<(i32, i32), i32>(&name, (ctx as i32, count as i32))
        });
        let action = match result {
            Ok(a) => Action::from_i32(a),
            Err(e) => return Flow::Crashed(e),
        };
        if let Some(flow) = stopped(stream, i) {
            return flow;
        }
        if action == Action::Pause {
            match wait(filters[i], ctx, stream, i, dir) {
                Flow::Continue => {}
                other => return other,
            }
        } else {
            release(stream, filters[i], ctx, dir, true);
        }
    }
    Flow::Continue
}

/// How Envoy's HTTP/1 codec frames a body: every chunk as it arrives, not yet the end, then
/// an empty frame that ends the stream (unless trailers end it).
fn http1_frames(chunks: &[Vec<u8>], trailers: bool) -> Vec<(Vec<u8>, bool)> {
    let mut frames: Vec<(Vec<u8>, bool)> = chunks.iter().map(|c| (c.clone(), false)).collect();
    if !trailers {
        frames.push((Vec::new(), true));
    }
    frames
}

/// Body chunks through the filters. A filter that pauses before the end of the stream buffers:
/// its next callback sees everything buffered so far, as with Envoy's
/// `StopIterationAndBuffer`. Returns what left the last filter.
fn body_phase(
    filters: &mut [&mut Plugin],
    contexts: &[u32],
    stream: &Arc<Mutex<StreamState>>,
    order: &[usize],
    frames: &[(Vec<u8>, bool)],
    dir: Direction,
    headers: Flow,
) -> (Flow, Vec<u8>) {
    let name = callback_name(dir, "body");
    // Where the headers are held, if they are: data goes no further until they go on.
    let mut held = match headers {
        Flow::Held(pos) => Some(pos),
        _ => None,
    };
    let mut pending: Vec<Vec<u8>> = vec![Vec::new(); order.len()];
    let mut out = Vec::new();
    let swap = |s: &mut StreamState, data: &mut Vec<u8>| match dir {
        Direction::Request => std::mem::swap(&mut s.request_body, data),
        Direction::Response => std::mem::swap(&mut s.response_body, data),
    };
    for (chunk, end_of_stream) in frames {
        let end_of_stream = *end_of_stream;
        let mut data = chunk.clone();
        let mut reached_end = true;
        for (pos, &i) in order.iter().enumerate() {
            pending[pos].extend_from_slice(&data);
            let size = pending[pos].len();
            swap(&mut lock(stream), &mut pending[pos]);
            clear_continue(stream, dir);
            let ctx = contexts[i];
            let result = filters[i].with_stream(stream, ctx, |p| {
                p.call_optional::<(i32, i32, i32), i32>(
                    &name,
                    (ctx as i32, size as i32, end_of_stream as i32),
                )
            });
            let action = match result {
                Ok(a) => Action::from_i32(a),
                Err(e) => return (Flow::Crashed(e), out),
            };
            if let Some(flow) = stopped(stream, i) {
                return (flow, out);
            }
            if action == Action::Pause {
                if !end_of_stream {
                    swap(&mut lock(stream), &mut pending[pos]);
                    reached_end = false;
                    break;
                }
                match wait(filters[i], ctx, stream, i, dir) {
                    Flow::Continue => {}
                    other => return (other, out),
                }
            }
            swap(&mut lock(stream), &mut pending[pos]);
            if held == Some(pos) {
                // Continue from the body of a filter holding the headers: they go on first.
                held = None;
                match resume_held(filters, contexts, stream, order, pos, dir) {
                    Flow::Continue => {}
                    Flow::Held(p) => held = Some(p),
                    other => return (other, out),
                }
            }
            data = std::mem::take(&mut pending[pos]);
        }
        if reached_end {
            out.extend_from_slice(&data);
        }
    }
    // Data still buffered when trailers follow is released with them.
    for rest in pending {
        out.extend_from_slice(&rest);
    }
    match held {
        Some(pos) => (Flow::Held(pos), out),
        None => (Flow::Continue, out),
    }
}
