//! The cost fixture: a filter that does, per request, what its configuration asks and nothing
//! else, so the bench can price one host call or one loop iteration in a real Envoy by
//! comparing rows (`BENCH_ONLY=host`). Configuration: a JSON object of counts, all optional,
//! 0 by default — `header_reads` (`authorization`, one call each), `map_reads` (the whole
//! request header map), `property_reads` (`xds.route_name`), `header_writes`
//! (`x-cost-<i>`), `metric_incs` (one counter), `clock_reads`, `shared_reads`, `property_writes`
//! (`portcullis.cost.<i>`), `logs` (at debug level, which Envoy drops), `copies` (64-byte
//! copies of a length the compiler cannot see: `memory.copy`), `allocs` (64-byte vectors
//! allocated and freed), `burn`
//! (iterations of a small arithmetic loop, a few wasm instructions each).

use std::hint::black_box;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};

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
    logs: u64,
    copies: u64,
    allocs: u64,
    burn: u64,
}

#[derive(Default)]
struct CostRoot {
    counts: Counts,
    metric: u32,
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
            logs: get("logs"),
            copies: get("copies"),
            allocs: get("allocs"),
            burn: get("burn"),
        };
        self.metric =
            hostcalls::define_metric(MetricType::Counter, "portcullis_cost_total").unwrap_or(0);
        true
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Cost {
            counts: self.counts,
            metric: self.metric,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Cost {
    counts: Counts,
    metric: u32,
}

impl Context for Cost {}

impl HttpContext for Cost {
    fn on_http_request_headers(&mut self, _headers: usize, _end: bool) -> Action {
        let c = self.counts;
        for _ in 0..c.header_reads {
            black_box(hostcalls::get_map_value(MapType::HttpRequestHeaders, "authorization").ok());
        }
        for _ in 0..c.map_reads {
            black_box(hostcalls::get_map_bytes(MapType::HttpRequestHeaders).ok());
        }
        for _ in 0..c.property_reads {
            black_box(hostcalls::get_property(vec!["xds", "route_name"]).ok());
        }
        for i in 0..c.header_writes {
            let name = format!("x-cost-{i}");
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, &name, Some("v"));
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
        for i in 0..c.property_writes {
            let name = format!("portcullis.cost.{i}");
            let _ = hostcalls::set_property(vec![name.as_str()], Some(b"value"));
        }
        for _ in 0..c.logs {
            let _ = hostcalls::log(LogLevel::Debug, "portcullis-cost: a log line");
        }
        let source = [7u8; 256];
        let mut target = [0u8; 256];
        for _ in 0..c.copies {
            let n = black_box(64usize);
            target[..n].copy_from_slice(&source[..n]);
            black_box(&mut target);
        }
        for _ in 0..c.allocs {
            black_box(vec![0u8; black_box(64)]);
        }
        let mut x = black_box(1u64);
        for i in 0..c.burn {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        black_box(x);
        Action::Continue
    }
}
