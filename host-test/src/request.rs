//! The request a test sends: a builder for what the client sends and how the upstream will
//! answer it.

use std::time::Duration;

use crate::headers::Headers;
use crate::upstream::UpstreamResponse;

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

impl Request {
    /// A request with the pseudo-headers; [`send`](crate::send) appends what Envoy's connection
    /// manager adds before any filter runs (`x-forwarded-proto`, `x-request-id`).
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
    /// nothing ([`Exchange::was_reset`](crate::Exchange::was_reset)). What the root context
    /// started lives on.
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
