//! Reading from and answering through the host, the way every Portcullis filter does it:
//! never with the SDK calls that panic on a status or on bytes that are not UTF-8.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType, MetricType};

use portcullis_core::identity::{Identity, PROPERTY};

/// A request header as text; `None` when absent or not UTF-8 (a hostile header must not
/// panic the filter, which `get_http_request_header` would).
pub fn request_header(name: &str) -> Option<String> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// Every request header as text pairs; values that are not UTF-8 are left out.
pub fn request_headers() -> Vec<(String, String)> {
    hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, value)| String::from_utf8(value).ok().map(|v| (name, v)))
        .collect()
}

pub fn set_request_header(name: &str, value: Option<&str>) {
    let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
}

pub fn set_response_header(name: &str, value: Option<&str>) {
    let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, value);
}

/// A text property (`["xds", "route_name"]`, `["request", "method"]`, …).
pub fn property_text(path: &[&str]) -> Option<String> {
    hostcalls::get_property(path.to_vec())
        .ok()
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// The Envoy route name the request matched, which picks per-route policies.
pub fn route_name() -> Option<String> {
    property_text(&["xds", "route_name"])
}

/// [`route_name`] when `needed` (a policy can depend on it), else `None` without asking:
/// each value a host call returns costs Envoy a re-entry into the VM.
pub fn route_name_if(needed: bool) -> Option<String> {
    needed.then(route_name).flatten()
}

/// Hands the authenticated identity, encoded ([`Identity::encode`]), to later filters
/// through Envoy filter state, which a client cannot write (unlike a header). `false` when
/// the host refused it.
pub fn publish_identity(encoded: &[u8]) -> bool {
    hostcalls::set_property(vec![PROPERTY], Some(encoded)).is_ok()
}

/// What the jwt filter published for this request, if anything. An identity that does not
/// decode is treated as absent: the caller fails closed.
pub fn received_identity() -> Result<Option<Identity>, String> {
    match hostcalls::get_property(vec![PROPERTY]) {
        Ok(Some(bytes)) => Identity::decode(&bytes)
            .map(Some)
            .map_err(|e| format!("identity in filter state does not decode: {e}")),
        Ok(None) => Ok(None),
        Err(status) => Err(format!("reading the identity: {status:?}")),
    }
}

/// Answers the client now with a JSON body (Kong's error shape), plus extra headers.
pub fn respond_json(status: u32, body: &str, headers: &[(&str, &str)]) {
    let mut all: Vec<(&str, &str)> = vec![("content-type", "application/json; charset=utf-8")];
    all.extend_from_slice(headers);
    let _ = hostcalls::send_http_response(status, all, Some(body.as_bytes()));
}

/// Logs through the host; a failing log call is ignored (nothing better to do with it).
pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// A counter defined once at configure time and bumped per request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counter(Option<u32>);

impl Counter {
    /// Defines `name` (Envoy shows it under `wasmcustom.`); a refusal leaves a no-op counter.
    pub fn define(name: &str) -> Self {
        Counter(hostcalls::define_metric(MetricType::Counter, name).ok())
    }

    pub fn inc(self) {
        if let Some(id) = self.0 {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}

/// Current time from the host clock, in Unix seconds.
pub fn now_secs() -> u64 {
    now_millis() / 1000
}

/// Current time from the host clock, in Unix milliseconds.
pub fn now_millis() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The answer of a `dispatch_grpc_call`, read in `on_grpc_call_response`: `None` when
/// there is none (size 0) or the host refuses (the SDK's own getter panics then).
pub fn grpc_call_response(size: usize) -> Option<Vec<u8>> {
    if size == 0 {
        return None;
    }
    proxy_wasm::hostcalls::get_buffer(proxy_wasm::types::BufferType::GrpcReceiveBuffer, 0, size)
        .ok()
        .flatten()
}
