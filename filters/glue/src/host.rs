//! Reading from and answering through the host, the way every Portcullis filter does it:
//! never with the SDK calls that panic on a status or on bytes that are not UTF-8.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType, MetricType};

use portcullis_core::decision::Record;
use portcullis_core::header_map::{HeaderMap, MalformedMap};
use portcullis_core::identity::{Identity, PROPERTY};

/// A request header as text; `None` when absent or not UTF-8 (a hostile header must not
/// panic the filter, which `get_http_request_header` would).
pub fn request_header(name: &str) -> Option<String> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// Every request header, read with one host call and kept in the host's buffer
/// ([`HeaderMap`]): no allocation per header, and no panic. The SDK's `get_map_bytes`
/// copies each name and value and panics on an unexpected status, a name that is not UTF-8
/// or a short buffer; an error here is for the filter to answer (fail closed).
pub fn request_header_map() -> Result<HeaderMap, MalformedMap> {
    HeaderMap::from_serialized(header_map_bytes(MapType::HttpRequestHeaders)?)
}

#[link(wasm_import_module = "env")]
extern "C" {
    // The SDK declares these too, with its own enums for the map type and the status (an
    // unknown value from the host would make them undefined), and `set_property` panics on
    // any status but `Ok`; the imports are the same. A status here is a number, 0 for `Ok`.
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
}

/// Sets the property `name`, a path of one segment (`portcullis.decision.jwt`), to `value`;
/// `false` when the host refused. Without the SDK's two allocations for the path, and
/// without its panic on a refusal.
fn set_property(name: &str, value: &[u8]) -> bool {
    // SAFETY: the host reads the bytes of `name` and `value`, which outlive the call.
    let status =
        unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    status == 0
}

fn header_map_bytes(map_type: MapType) -> Result<Vec<u8>, MalformedMap> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer and a size into the two locals. The buffer was
    // allocated in this module through the SDK's `proxy_on_memory_allocate` (a boxed
    // `[u8]` of exactly `size` bytes) and is handed over to the caller, as the SDK's own
    // `get_map_bytes` takes it.
    let status = unsafe { proxy_get_header_map_pairs(map_type as u32, &mut data, &mut size) };
    if status != 0 {
        return Err(MalformedMap);
    }
    if data.is_null() || size == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: see above; `data` is non-null and owns `size` initialised bytes.
    Ok(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// The answer to a `dispatch_http_call`, in `on_http_call_response`: its `:status` (`None`
/// when the call failed without one: reset, timeout) and its body.
pub fn http_call_response(body_size: usize) -> (Option<String>, Vec<u8>) {
    let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let body = hostcalls::get_buffer(
        proxy_wasm::types::BufferType::HttpCallResponseBody,
        0,
        body_size,
    )
    .ok()
    .flatten()
    .unwrap_or_default();
    (status, body)
}

/// Sets (or with `None` removes) a request header. The SDK traps on a refusal, and that is
/// kept: a forged identity header that could not be removed must not reach the upstream,
/// and a trapped VM answers every request with an error (fail closed).
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
/// through Envoy filter state, which a client cannot write (unlike a header).
///
/// A refusal (Envoy refuses only a read-only property of that name) traps the VM, as the
/// SDK's `set_property` does: a trapped VM answers every request with an error (fail
/// closed), where a request whose identity was not handed on would reach later filters as if
/// it had none (rate-limiting would count it by IP). Without the SDK's two allocations for
/// the path.
pub fn publish_identity(encoded: &[u8]) {
    if !set_property(PROPERTY, encoded) {
        let _ = hostcalls::log(
            LogLevel::Critical,
            "portcullis: the host refused the identity property; stopping this VM (fail closed)",
        );
        std::process::abort();
    }
}

/// Publishes this filter's decision for the request ([`Record::encode`]) as filter state
/// `portcullis.decision.<filter>`, for Envoy's access log
/// (`%FILTER_STATE(wasm.portcullis.decision.<filter>:PLAIN)%`). One host call; a later call
/// for the same request replaces the value. A refusal is ignored: the decision stands,
/// only its log field is missing. The record is written into one buffer the module keeps,
/// with no allocation once it has grown to the longest record.
pub fn publish_decision(record: &Record<'_>) {
    RECORD.with(|buffer| {
        // Never held across a call back into this code: only the host reads it meanwhile.
        let Ok(mut out) = buffer.try_borrow_mut() else {
            let _ = set_property(record.filter.property(), record.encode().as_bytes());
            return;
        };
        out.clear();
        record.encode_into(&mut out);
        let _ = set_property(record.filter.property(), &out);
    });
}

thread_local! {
    /// [`publish_decision`]'s buffer.
    static RECORD: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
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
