//! The cost fixture: a filter that does, per request, what its configuration asks and nothing
//! else, so the bench can price one host call or one allocation in a real Envoy by
//! comparing rows (`BENCH_ONLY=host`). Configuration: a JSON object of counts, all optional,
//! 0 by default — `header_reads` (`authorization`, one call each), `map_reads` (the whole
//! request header map), `property_reads` (`xds.route_name`), `header_writes`
//! (`x-cost-<i>`), `metric_incs` (one counter), `clock_reads`, `shared_reads`, `property_writes`
//! (`portcullis.cost.<i>`), `shared_writes` (`portcullis.cost`, without a CAS), `allocs`
//! (64-byte vectors allocated and freed), `foreign_calls` (of `foreign_function` with the bytes
//! of `foreign_argument`, in hex: a configuration without them is refused), `spin` (rounds of
//! arithmetic and a store into a 4 KiB buffer, no host call: wasm instructions without host
//! calls, about 31 a round), and on the response `response_header_writes` (`x-cost-<i>`;
//! Envoy enters every wasm filter's response callback whether the filter has work there or
//! not, so counting 0 costs nothing extra).

use std::hint::black_box;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(CostRoot::default()));
}}

#[derive(Clone, Copy, Default)]
struct Counts {
    header_reads: u64,
    map_reads: u64,
    property_reads: u64,
    header_writes: u64,
    metric_incs: u64,
    clock_reads: u64,
    shared_reads: u64,
    property_writes: u64,
    shared_writes: u64,
    allocs: u64,
    foreign_calls: u64,
    spin: u64,
    response_header_writes: u64,
}

#[derive(Default)]
struct CostRoot {
    counts: Counts,
    metric: u32,
    /// `foreign_function` and its argument (`foreign_argument`, hex).
    foreign: Option<Rc<(String, Vec<u8>)>>,
    names: Rc<Names>,
}

/// The names the writes use, made once at configure time: formatting them per request would
/// price `format!` with the host call (thousands of instructions over a floor's calls).
#[derive(Default)]
struct Names {
    /// `x-cost-<i>`, for the request's and the response's header writes.
    headers: Vec<String>,
    /// `portcullis.cost.<i>`.
    properties: Vec<String>,
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

impl Context for CostRoot {}

impl RootContext for CostRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(&config) else {
            return config.is_empty();
        };
        let get = |name: &str| map.get(name).and_then(|v| v.as_u64()).unwrap_or(0);
        self.counts = Counts {
            header_reads: get("header_reads"),
            map_reads: get("map_reads"),
            property_reads: get("property_reads"),
            header_writes: get("header_writes"),
            metric_incs: get("metric_incs"),
            clock_reads: get("clock_reads"),
            shared_reads: get("shared_reads"),
            property_writes: get("property_writes"),
            shared_writes: get("shared_writes"),
            allocs: get("allocs"),
            foreign_calls: get("foreign_calls"),
            spin: get("spin"),
            response_header_writes: get("response_header_writes"),
        };
        self.foreign = map
            .get("foreign_function")
            .and_then(|f| f.as_str())
            .zip(map.get("foreign_argument").and_then(|a| a.as_str()))
            .and_then(|(f, a)| Some((f.to_owned(), unhex(a)?)))
            .map(Rc::new);
        if self.counts.foreign_calls > 0 && self.foreign.is_none() {
            return false;
        }
        self.metric =
            hostcalls::define_metric(MetricType::Counter, "portcullis_cost_total").unwrap_or(0);
        let c = self.counts;
        self.names = Rc::new(Names {
            headers: (0..c.header_writes.max(c.response_header_writes))
                .map(|i| format!("x-cost-{i}"))
                .collect(),
            properties: (0..c.property_writes)
                .map(|i| format!("portcullis.cost.{i}"))
                .collect(),
        });
        true
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Cost {
            counts: self.counts,
            metric: self.metric,
            foreign: self.foreign.clone(),
            names: Rc::clone(&self.names),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// `rounds` of a linear congruential step, each stored into a 4 KiB buffer at a place the
/// value picks: work the compiler cannot drop or fold, touching memory as logic does.
fn spin(rounds: u64) {
    let mut buffer = [0u64; 512];
    let mut x = black_box(0x9e37_79b9_7f4a_7c15_u64);
    for _ in 0..rounds {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        buffer[(x >> 55) as usize] ^= x;
    }
    black_box(&buffer);
}

#[link(wasm_import_module = "env")]
extern "C" {
    // The SDK's imports, called without its copies: its `get_map_bytes` copies every name
    // and value into its own `String`, and its `set_property` serialises the path into a new
    // vector. The filters call these two as here (portcullis-glue's `host.rs`), so a floor
    // prices the call, not the SDK's way of making it.
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

/// The request's header map as the host serialises it, in the buffer the host allocated in
/// this module (freed when the vector drops).
fn request_header_map() -> Vec<u8> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer and a size into the two locals; the buffer was
    // allocated through the SDK's `proxy_on_memory_allocate` as a boxed `[u8]` of exactly
    // `size` bytes, which the SDK's own `get_map_bytes` takes over the same way.
    let status = unsafe {
        proxy_get_header_map_pairs(MapType::HttpRequestHeaders as u32, &mut data, &mut size)
    };
    if status != 0 || data.is_null() || size == 0 {
        return Vec::new();
    }
    // SAFETY: see above; `data` is non-null and owns `size` initialised bytes.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// Sets the one-segment property `name` to `value`; `false` if the host refused.
fn set_property(name: &str, value: &[u8]) -> bool {
    // SAFETY: the host only reads the two byte ranges, which outlive the call.
    unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) == 0 }
}

struct Cost {
    counts: Counts,
    metric: u32,
    foreign: Option<Rc<(String, Vec<u8>)>>,
    names: Rc<Names>,
}

impl Context for Cost {}

impl HttpContext for Cost {
    fn on_http_request_headers(&mut self, _headers: usize, _end: bool) -> Action {
        let c = self.counts;
        for _ in 0..c.header_reads {
            black_box(hostcalls::get_map_value(MapType::HttpRequestHeaders, "authorization").ok());
        }
        for _ in 0..c.map_reads {
            black_box(request_header_map());
        }
        for _ in 0..c.property_reads {
            black_box(hostcalls::get_property(vec!["xds", "route_name"]).ok());
        }
        for name in self.names.headers.iter().take(c.header_writes as usize) {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some("v"));
        }
        for _ in 0..c.metric_incs {
            let _ = hostcalls::increment_metric(self.metric, 1);
        }
        for _ in 0..c.clock_reads {
            black_box(
                hostcalls::get_current_time()
                    .ok()
                    .map(|t| t.duration_since(UNIX_EPOCH)),
            );
        }
        for _ in 0..c.shared_reads {
            black_box(hostcalls::get_shared_data("portcullis.cost").ok());
        }
        for name in &self.names.properties {
            black_box(set_property(name, b"value"));
        }
        for _ in 0..c.shared_writes {
            let _ = hostcalls::set_shared_data("portcullis.cost", Some(b"value"), None);
        }
        if let Some(foreign) = &self.foreign {
            for _ in 0..c.foreign_calls {
                black_box(hostcalls::call_foreign_function(&foreign.0, Some(&foreign.1)).ok());
            }
        }
        for _ in 0..c.allocs {
            black_box(vec![0u8; black_box(64)]);
        }
        if c.spin > 0 {
            spin(c.spin);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end: bool) -> Action {
        let writes = self.counts.response_header_writes as usize;
        for name in self.names.headers.iter().take(writes) {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some("v"));
        }
        Action::Continue
    }
}
