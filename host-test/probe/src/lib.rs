//! The probe: a host-test fixture that records what a proxy-wasm host shows a filter, so the
//! same requests can be run through host-test and through a real Envoy and the records
//! compared (`tests/tests/conformance.rs`).
//!
//! Every callback of a request carrying `x-probe-id: <id>` appends an event to a JSON array
//! in shared data under `probe.record.<id>`. `GET /probe/dump?id=<id>` answers that array.
//! Paths choose what the probe does besides recording:
//! - `/probe/local`: answers 418 locally with a body and extra headers;
//! - `/probe/call`: pauses, `dispatch_http_call`s the `probe_upstream` cluster, resumes;
//! - `/probe/buffer`: pauses the request body until its end, then replaces it;
//! - `/probe/grpc`: `dispatch_grpc_call`s a cluster (`x-probe-grpc-cluster`, default
//!   `probe_grpc`) with the message in `x-probe-grpc-message` and a timeout of
//!   `x-probe-grpc-timeout-ms` (default 1000), pauses until the answer, and echoes the outcome in
//!   `x-probe-grpc-*` response headers; `x-probe-grpc-wait: no` continues at once instead (the
//!   stream ends before the answer), `x-probe-grpc-cancel: yes` cancels the call right away;
//! - `/probe/grpc-stream`: opens a gRPC stream (a host call host-test does not implement);
//! - `/probe/hold-request`: pauses the request headers and its body until the body's end, then
//!   adds `x-probe-held: yes` to the (still held) request headers and continues;
//! - `/probe/hold-response`: the same for the response: pauses its headers, buffers its body,
//!   then sets `x-probe-held: yes`, replaces the body with `HELD` and fixes its length;
//! - `/probe/late-local`: lets the response headers go, then answers 502 locally from the
//!   response body (too late: the headers have left);
//! - `/probe/held-local`: pauses the response headers, then answers 502 locally from the
//!   response body's end;
//! - anything else: passes through, adding and changing headers both ways.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};
use serde_json::{json, Value};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| Box::new(ProbeRoot { passive: false, requests: 0, ticks: 0, queue_items: 0, queue: 0, grpc_answers: 0 }));
}}

struct ProbeRoot {
    passive: bool,
    requests: u32,
    ticks: u32,
    queue_items: u32,
    queue: u32,
    grpc_answers: u32,
}

impl Context for ProbeRoot {
    /// The answer to the root context's own gRPC call (config `grpc-root`): counted, and its
    /// outcome kept in shared data under `probe.grpc.root`.
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let _ = hostcalls::increment_metric(self.grpc_answers, 1);
        let body = self
            .get_grpc_call_response_body(0, response_size)
            .unwrap_or_default();
        let outcome = json!({
            "token": token_id,
            "status": status_code,
            "body": String::from_utf8_lossy(&body),
        });
        let bytes = serde_json::to_vec(&outcome).unwrap_or_default();
        let _ = hostcalls::set_shared_data("probe.grpc.root", Some(&bytes), None);
    }
}

impl RootContext for ProbeRoot {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        // Refuse a configuration that says so: the conformance test of a refused start.
        let config = self.get_plugin_configuration().unwrap_or_default();
        if config.starts_with(b"refuse") {
            log::error!(
                "probe: configuration refused: {}",
                String::from_utf8_lossy(&config)
            );
            return false;
        }
        self.requests =
            hostcalls::define_metric(MetricType::Counter, "probe_requests").unwrap_or(0);
        self.ticks = hostcalls::define_metric(MetricType::Counter, "probe_ticks").unwrap_or(0);
        self.queue_items =
            hostcalls::define_metric(MetricType::Counter, "probe_queue_items").unwrap_or(0);
        self.queue = hostcalls::register_shared_queue("probe_queue").unwrap_or(0);
        self.grpc_answers =
            hostcalls::define_metric(MetricType::Counter, "probe_grpc_root_answers").unwrap_or(0);
        if config.starts_with(b"grpc-root") {
            // A call from the root context, answered on the harness clock.
            let dispatched = self.dispatch_grpc_call(
                "probe_grpc",
                "probe.Root",
                "Hello",
                vec![("x-root", b"yes")],
                Some(b"from root"),
                Duration::from_secs(5),
            );
            log::info!("probe: root grpc call {dispatched:?}");
        }
        // A passive probe only records: in a chain, another probe acts.
        self.passive = config.starts_with(b"passive");
        if config.starts_with(b"tick") {
            let _ = hostcalls::set_tick_period(Duration::from_secs(1));
        }
        true
    }

    fn on_tick(&mut self) {
        let _ = hostcalls::increment_metric(self.ticks, 1);
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        while let Ok(Some(_)) = hostcalls::dequeue_shared_queue(queue_id) {
            let _ = hostcalls::increment_metric(self.queue_items, 1);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe {
            id: None,
            path: String::new(),
            requests_metric: self.requests,
            passive: self.passive,
            function: String::new(),
            grpc: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    id: Option<String>,
    path: String,
    requests_metric: u32,
    passive: bool,
    function: String,
    /// What the `/probe/grpc` call came to, echoed in the response headers.
    grpc: Vec<(&'static str, String)>,
}

impl Probe {
    fn grpc_call(&mut self) -> Action {
        let header = |p: &Self, name: &str| p.get_http_request_header(name);
        let cluster = header(self, "x-probe-grpc-cluster").unwrap_or_else(|| "probe_grpc".into());
        let message = header(self, "x-probe-grpc-message").unwrap_or_default();
        let timeout = header(self, "x-probe-grpc-timeout-ms")
            .and_then(|t| t.parse().ok())
            .unwrap_or(1000u64);
        let wait = header(self, "x-probe-grpc-wait").as_deref() != Some("no");
        let cancel = header(self, "x-probe-grpc-cancel").as_deref() == Some("yes");
        let dispatched = self.dispatch_grpc_call(
            &cluster,
            "probe.Echo",
            "Say",
            vec![("x-probe-meta", b"m1")],
            Some(message.as_bytes()),
            Duration::from_millis(timeout),
        );
        let outcome = match dispatched {
            Ok(_) => "Ok".to_string(),
            Err(status) => format!("{status:?}"),
        };
        self.record(json!({ "event": "grpc_dispatch", "result": outcome }));
        self.grpc.push(("x-probe-grpc-dispatch", outcome));
        let Ok(token) = dispatched else {
            return Action::Continue;
        };
        if cancel {
            let first = hostcalls::cancel_grpc_call(token);
            let again = hostcalls::cancel_grpc_call(token);
            self.grpc
                .push(("x-probe-grpc-cancel", format!("{first:?} then {again:?}")));
            return Action::Continue;
        }
        if wait {
            Action::Pause
        } else {
            Action::Continue
        }
    }
    fn record(&self, event: Value) {
        let Some(id) = &self.id else { return };
        let key = format!("probe.record.{id}");
        // Read-modify-write with CAS: every worker may append to the same record. A missing
        // key has no CAS to hold, so the first write is blind: tests that race workers seed
        // the record first.
        for _ in 0..100 {
            let (current, cas) = hostcalls::get_shared_data(&key).unwrap_or((None, None));
            let mut events: Vec<Value> = current
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            events.push(event.clone());
            let bytes = serde_json::to_vec(&events).unwrap_or_default();
            match hostcalls::set_shared_data(&key, Some(&bytes), cas) {
                Ok(()) => return,
                Err(Status::CasMismatch) => continue,
                Err(_) => return,
            }
        }
    }

    fn text(bytes: Option<Vec<u8>>) -> Value {
        match bytes {
            Some(b) => Value::String(String::from_utf8_lossy(&b).into_owned()),
            None => Value::Null,
        }
    }

    fn property(&self, path: &[&str]) -> Value {
        Self::text(self.get_property(path.to_vec()))
    }

    fn int_property(&self, path: &[&str]) -> Value {
        match self.get_property(path.to_vec()) {
            Some(b) if b.len() == 8 => {
                let mut word = [0u8; 8];
                word.copy_from_slice(&b);
                json!(i64::from_le_bytes(word))
            }
            Some(b) => json!({ "unexpected_len": b.len() }),
            None => Value::Null,
        }
    }

    fn pairs(pairs: Vec<(String, String)>) -> Value {
        Value::Array(pairs.into_iter().map(|(k, v)| json!([k, v])).collect())
    }

    fn shared_data_checks(&self) -> Value {
        let key = format!("probe.cas.{}", self.id.clone().unwrap_or_default());
        let missing = hostcalls::get_shared_data("probe.never.written");
        let first = hostcalls::set_shared_data(&key, Some(b"one"), None);
        let (value, cas) = hostcalls::get_shared_data(&key).unwrap_or((None, None));
        let with_cas = hostcalls::set_shared_data(&key, Some(b"two"), cas);
        let stale = hostcalls::set_shared_data(&key, Some(b"three"), cas);
        let (after, _) = hostcalls::get_shared_data(&key).unwrap_or((None, None));
        json!({
            "missing": format!("{missing:?}"),
            "first_write": format!("{first:?}"),
            "read": Self::text(value),
            "cas_is_nonzero": cas.map(|c| c != 0),
            "write_with_cas": format!("{with_cas:?}"),
            "write_with_stale_cas": format!("{stale:?}"),
            "after": Self::text(after),
        })
    }
}

impl Context for Probe {
    fn on_grpc_call_response(&mut self, _token_id: u32, status_code: u32, response_size: usize) {
        let body = self
            .get_grpc_call_response_body(0, response_size)
            .unwrap_or_default();
        let (code, message) = hostcalls::get_grpc_status().unwrap_or((u32::MAX, None));
        let body = String::from_utf8_lossy(&body).into_owned();
        self.record(json!({
            "event": "grpc_response",
            "status": status_code,
            "size": response_size,
            "body": body,
        }));
        self.grpc
            .push(("x-probe-grpc-status", status_code.to_string()));
        self.grpc.push(("x-probe-grpc-body", body));
        if status_code != 0 {
            self.grpc.push(("x-probe-grpc-code", code.to_string()));
            self.grpc
                .push(("x-probe-grpc-message", message.unwrap_or_default()));
        }
        self.resume_http_request();
    }

    fn on_http_call_response(
        &mut self,
        _token: u32,
        headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let status = self.get_http_call_response_header(":status");
        let body = self.get_http_call_response_body(0, body_size);
        self.record(json!({
            "event": "http_call_response",
            "num_headers_nonzero": headers > 0,
            "status": status,
            "body": Self::text(body),
        }));
        self.set_http_request_header("x-probe-call-status", status.as_deref());
        self.resume_http_request();
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        self.path = self.get_http_request_header(":path").unwrap_or_default();
        if let Some(id) = self.path.strip_prefix("/probe/dump?id=") {
            let key = format!("probe.record.{id}");
            let body = hostcalls::get_shared_data(&key)
                .ok()
                .and_then(|(v, _)| v)
                .unwrap_or_else(|| b"[]".to_vec());
            self.send_http_response(200, vec![("content-type", "application/json")], Some(&body));
            return Action::Pause;
        }
        self.id = self.get_http_request_header("x-probe-id");
        self.function = self
            .get_http_request_header("x-probe-function")
            .unwrap_or_default();
        let _ = hostcalls::increment_metric(self.requests_metric, 1);
        log::info!("probe: request {}", self.path);

        let headers = self.get_http_request_headers();
        let _ = hostcalls::set_property(vec!["probe.state"], Some(b"set-by-probe"));
        let foreign_unknown = hostcalls::call_foreign_function("no_such_function", Some(b"x"));
        self.record(json!({
            "event": "request_headers",
            "num_headers": num_headers,
            "headers_len_matches": headers.len() == num_headers,
            "end_of_stream": end_of_stream,
            "headers": Self::pairs(headers),
            "dup_first": self.get_http_request_header("x-probe-dup"),
            "empty_value": self.get_http_request_header("x-probe-empty"),
            "missing": self.get_http_request_header("x-probe-missing"),
            "properties": {
                "request.path": self.property(&["request", "path"]),
                "request.url_path": self.property(&["request", "url_path"]),
                "request.query": self.property(&["request", "query"]),
                "request.method": self.property(&["request", "method"]),
                "request.host": self.property(&["request", "host"]),
                "request.scheme": self.property(&["request", "scheme"]),
                "request.protocol": self.property(&["request", "protocol"]),
                "request.headers.x-probe-id": self.property(&["request", "headers", "x-probe-id"]),
                "xds.route_name": self.property(&["xds", "route_name"]),
                "plugin_name": self.property(&["plugin_name"]),
                "plugin_root_id": self.property(&["plugin_root_id"]),
                "plugin_vm_id": self.property(&["plugin_vm_id"]),
                "source.address.host": self.property(&["source", "address"]).as_str().map(|a| a.rsplit_once(':').map_or(a, |(h, _)| h).to_string()),
                "source.address.has_port": self.property(&["source", "address"]).as_str().map(|a| a.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok_and(|p| p > 0))),
                "source.address.is_loopback": self.property(&["source", "address"]).as_str().map(|a| a.starts_with("127.0.0.1:")),
                "source.port.positive": self.int_property(&["source", "port"]).as_i64().map(|p| p > 0),
                "probe.state": self.property(&["probe.state"]),
                "filter_state.wasm.probe.state": self.property(&["filter_state", "wasm.probe.state"]),
                "no.such.property": self.property(&["no", "such", "property"]),
            },
            "shared_data": self.shared_data_checks(),
            "foreign_unknown": format!("{:?}", foreign_unknown.map(|_| ())),
        }));

        if self.path == "/probe/buffer" && !self.passive {
            // The body will change: its length with it.
            self.set_http_request_header("content-length", None);
        }
        self.add_http_request_header("x-probe-added", "1");
        self.set_http_request_header("x-probe-replace", Some("new"));
        self.set_http_request_header("x-probe-remove", None);

        if self.passive {
            return Action::Continue;
        }
        match self.path.as_str() {
            "/probe/time" => {
                let wasi = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let abi = self
                    .get_current_time()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                self.set_http_request_header("x-probe-time", Some(&abi.to_string()));
                self.set_http_request_header(
                    "x-probe-clocks-agree",
                    Some(&(wasi.abs_diff(abi) <= 1).to_string()),
                );
                Action::Continue
            }
            "/probe/enqueue" => {
                let queue = hostcalls::resolve_shared_queue("probe", "probe_queue");
                if let Ok(Some(queue)) = queue {
                    let _ = hostcalls::enqueue_shared_queue(queue, Some(b"item"));
                }
                Action::Continue
            }
            "/probe/grpc" => self.grpc_call(),
            "/probe/grpc-stream" => {
                let _ = hostcalls::open_grpc_stream("probe_grpc", "svc", "Method", vec![]);
                Action::Continue
            }
            "/probe/panic" => panic!("probe: panic requested by {}", self.path),
            "/probe/hold-request" if !end_of_stream => Action::Pause,
            "/probe/local" => {
                self.send_http_response(
                    418,
                    vec![("x-probe-local", "1"), ("content-type", "application/json")],
                    Some(b"{\"probe\":\"teapot\"}"),
                );
                Action::Pause
            }
            "/probe/call" => {
                let dispatched = self.dispatch_http_call(
                    "probe_upstream",
                    vec![
                        (":method", "GET"),
                        (":path", "/callee"),
                        (":authority", "probe-upstream"),
                    ],
                    None,
                    vec![],
                    Duration::from_secs(5),
                );
                self.record(json!({ "event": "dispatch", "ok": dispatched.is_ok() }));
                if dispatched.is_ok() {
                    Action::Pause
                } else {
                    Action::Continue
                }
            }
            _ => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.path == "/probe/foreign" && !self.passive {
            if !end_of_stream {
                return Action::Pause;
            }
            // The body is a foreign function's argument bytes; the header named the function
            // (headers are gone by now: Envoy drops them once their callback continues).
            let function = self.function.clone();
            let arguments = self.get_http_request_body(0, body_size).unwrap_or_default();
            let result = hostcalls::call_foreign_function(&function, Some(&arguments));
            let (status, bytes) = match result {
                Ok(bytes) => ("Ok".to_string(), bytes.unwrap_or_default()),
                Err(status) => (format!("{status:?}"), Vec::new()),
            };
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            self.record(json!({
                "event": "foreign",
                "function": function,
                "status": status,
                "result_hex": hex,
            }));
            return Action::Continue;
        }
        if self.path == "/probe/hold-request" && !self.passive {
            if !end_of_stream {
                return Action::Pause;
            }
            self.set_http_request_header("x-probe-held", Some("yes"));
            return Action::Continue;
        }
        let buffering = self.path == "/probe/buffer" && !self.passive;
        if buffering && !end_of_stream {
            self.record(json!({ "event": "request_body", "buffering": true }));
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size);
        self.record(json!({
            "event": "request_body",
            "end_of_stream": end_of_stream,
            "body": Self::text(body),
        }));
        if buffering {
            self.set_http_request_body(0, body_size, b"REPLACED");
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _num: usize) -> Action {
        self.record(json!({ "event": "request_trailers", "trailers": Self::pairs(self.get_http_request_trailers()) }));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num: usize, end_of_stream: bool) -> Action {
        if !self.passive
            && !end_of_stream
            && matches!(
                self.path.as_str(),
                "/probe/hold-response" | "/probe/held-local"
            )
        {
            return Action::Pause;
        }
        for (name, value) in std::mem::take(&mut self.grpc) {
            self.add_http_response_header(name, &value);
        }
        if self.id.is_none() {
            return Action::Continue;
        }
        self.record(json!({
            "event": "response_headers",
            "end_of_stream": end_of_stream,
            "headers": Self::pairs(self.get_http_response_headers()),
            "response.code": self.int_property(&["response", "code"]),
        }));
        self.add_http_response_header("x-probe-response", "1");
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.passive {
            match self.path.as_str() {
                "/probe/late-local" => {
                    self.send_http_response(502, vec![], Some(b"late"));
                    return Action::Pause;
                }
                "/probe/hold-response" | "/probe/held-local" if !end_of_stream => {
                    return Action::Pause;
                }
                "/probe/held-local" => {
                    self.send_http_response(502, vec![], Some(b"held"));
                    return Action::Pause;
                }
                "/probe/hold-response" => {
                    self.set_http_response_header("x-probe-held", Some("yes"));
                    self.set_http_response_header("content-length", Some("4"));
                    self.set_http_response_body(0, body_size, b"HELD");
                    return Action::Continue;
                }
                _ => {}
            }
        }
        if self.id.is_none() {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_response_body(0, body_size);
        self.record(json!({ "event": "response_body", "body": Self::text(body) }));
        Action::Continue
    }

    fn on_log(&mut self) {
        self.record(json!({ "event": "log" }));
    }
}
