//! The host: what every VM of one harness shares, as Envoy's worker threads share it — the
//! clock, shared data, shared queues, metrics, logs, scripted upstreams for `http_call`, and
//! foreign functions. Cheap to clone; every clone is the same host.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use wasmtime::{Config, Engine, Module};

use crate::abi::{LogLevel, MetricType, Status};
use crate::plugin::{Plugin, PluginBuilder};

/// 2026-01-01T00:00:00Z: where every harness clock starts, so tests are reproducible.
pub const EPOCH_START_NANOS: u64 = 1_767_225_600_000_000_000;

/// One proxy-wasm host. Clone it freely: clones share everything.
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<HostState>,
}

pub(crate) struct HostState {
    pub(crate) engine: Engine,
    modules: Mutex<HashMap<PathBuf, Module>>,
    pub(crate) clock: Mutex<Clock>,
    pub(crate) shared: Mutex<SharedData>,
    pub(crate) queues: Mutex<Queues>,
    pub(crate) metrics: Mutex<Metrics>,
    pub(crate) logs: Mutex<Vec<LogEntry>>,
    pub(crate) upstreams: Mutex<HashMap<String, Upstream>>,
    pub(crate) grpc_services: Mutex<HashMap<String, GrpcService>>,
    pub(crate) grpc_calls: Mutex<Vec<GrpcRequest>>,
    pub(crate) foreign: Mutex<HashMap<String, ForeignFunction>>,
    pub(crate) rng: Mutex<u64>,
    pub(crate) log_level: Mutex<LogLevel>,
    pub(crate) echo_logs: bool,
    /// What `proxy_get_header_map_pairs` answers instead of the map, when set.
    pub(crate) header_map_fault: Mutex<Option<Status>>,
}

/// A foreign function (`proxy_call_foreign_function`): argument bytes in, result bytes out, or
/// a status code for the module.
pub type ForeignFunction = Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, Status> + Send + Sync>;

/// Answers the `http_call`s sent to one cluster.
pub type Upstream = Box<dyn FnMut(&HttpCallRequest) -> HttpCallReply + Send>;

/// Answers the unary gRPC calls sent to one cluster. `Fn` + `Send + Sync`: plugins on several
/// threads may call it at once; keep state behind a `Mutex` or an atomic inside the closure.
pub type GrpcService = Arc<dyn Fn(&GrpcRequest) -> GrpcAnswer + Send + Sync>;

/// The time the filters see: `proxy_get_current_time_nanoseconds` and WASI's realtime clock
/// read `realtime`; WASI's monotonic clock reads `monotonic`. Only the test moves them.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub realtime_nanos: u64,
    pub monotonic_nanos: u64,
}

/// Shared data as Envoy keeps it: one value and one CAS number per key, per VM id — plugins
/// with different `vm_id`s do not see each other's keys, every worker of one VM id does.
#[derive(Default)]
pub struct SharedData {
    pub(crate) entries: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
    /// Called after every successful `get_shared_data` with the key: the test's chance to act
    /// as another worker writing between this VM's read and its write.
    pub(crate) after_get: Option<SharedGetHook>,
}

/// A hook run after every successful `get_shared_data`.
pub type SharedGetHook = Box<dyn FnMut(&str, &mut SharedWriter) + Send>;

/// What an [`Host::on_shared_get`] hook may do to the shared data of the VM id that read.
pub struct SharedWriter<'a> {
    vm_id: &'a str,
    data: &'a mut HashMap<String, (Vec<u8>, u32)>,
    next_cas: &'a mut u32,
}

impl SharedWriter<'_> {
    /// Writes a value as another worker would, bumping the key's CAS.
    pub fn set(&mut self, key: &str, value: &[u8]) {
        let cas = bump(self.next_cas);
        self.data
            .insert(scoped(self.vm_id, key), (value.to_vec(), cas));
    }

    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.data
            .get(&scoped(self.vm_id, key))
            .map(|(v, _)| v.as_slice())
    }
}

/// Where a VM id's key lives in the one table: `vm_id`, NUL, key.
pub(crate) fn scoped(vm_id: &str, key: &str) -> String {
    format!("{vm_id}\0{key}")
}

fn bump(next: &mut u32) -> u32 {
    *next = next.wrapping_add(1);
    if *next == 0 {
        *next = 1;
    }
    *next
}

impl SharedData {
    pub(crate) fn get(&mut self, vm_id: &str, key: &str) -> Option<(Vec<u8>, u32)> {
        let found = self.entries.get(&scoped(vm_id, key)).cloned();
        if found.is_some() {
            if let Some(hook) = self.after_get.as_mut() {
                let mut writer = SharedWriter {
                    vm_id,
                    data: &mut self.entries,
                    next_cas: &mut self.next_cas,
                };
                hook(key, &mut writer);
            }
        }
        found
    }

    /// Envoy's rule: a non-zero CAS must match the key's current CAS when the key exists; a
    /// zero CAS always writes. Every write gets a fresh CAS.
    pub(crate) fn set(&mut self, vm_id: &str, key: &str, value: &[u8], cas: u32) -> Status {
        let key = scoped(vm_id, key);
        if let Some((_, current)) = self.entries.get(&key) {
            if cas != 0 && cas != *current {
                return Status::CasMismatch;
            }
        }
        let new_cas = bump(&mut self.next_cas);
        self.entries.insert(key, (value.to_vec(), new_cas));
        Status::Ok
    }
}

/// Shared queues: registered by name per VM id, resolved by any VM.
#[derive(Default)]
pub struct Queues {
    pub(crate) by_name: HashMap<(String, String), u32>,
    pub(crate) queues: HashMap<u32, SharedQueue>,
    next_id: u32,
}

pub(crate) struct SharedQueue {
    pub(crate) items: VecDeque<Vec<u8>>,
    /// The VM instance and root context that registered it, told by `on_queue_ready`.
    pub(crate) owner: (u64, u32),
}

impl Queues {
    pub(crate) fn register(&mut self, vm_id: &str, name: &str, owner: (u64, u32)) -> u32 {
        let key = (vm_id.to_string(), name.to_string());
        if let Some(id) = self.by_name.get(&key) {
            return *id;
        }
        self.next_id += 1;
        let id = self.next_id;
        self.by_name.insert(key, id);
        self.queues.insert(
            id,
            SharedQueue {
                items: VecDeque::new(),
                owner,
            },
        );
        id
    }
}

/// Metrics by name, shared by every VM as Envoy's stats are.
#[derive(Default)]
pub struct Metrics {
    pub(crate) ids: HashMap<String, u32>,
    pub(crate) by_id: Vec<(String, MetricType, i64, Vec<u64>)>,
}

/// One metric as a test reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub kind: MetricType,
    /// Counter or gauge value; for a histogram the number of recorded values.
    pub value: i64,
    /// Every value recorded into a histogram.
    pub recorded: Vec<u64>,
}

/// One `proxy_log` call (or a line a module wrote to stdout/stderr, as Envoy logs those).
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub level: LogLevel,
    /// The plugin name of the VM that logged.
    pub plugin: String,
    pub message: String,
}

/// What a filter asked of an upstream through `dispatch_http_call`.
#[derive(Debug, Clone)]
pub struct HttpCallRequest {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    pub timeout: Duration,
}

impl HttpCallRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How a scripted upstream answers an `http_call`.
#[derive(Debug, Clone)]
pub struct HttpCallReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// How long the answer takes on the harness clock. Longer than the call's timeout means
    /// the call times out, which the filter sees as a failed call.
    pub delay: Duration,
    /// A connection failure: the filter's callback gets no headers and no body, as in Envoy.
    pub fail: bool,
}

impl HttpCallReply {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
            fail: false,
        }
    }
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self::new(200).body(body)
    }
    pub fn failure() -> Self {
        Self {
            fail: true,
            ..Self::new(503)
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// What a filter asked of a gRPC service through `dispatch_grpc_call` (`proxy_grpc_call`).
#[derive(Debug, Clone, PartialEq)]
pub struct GrpcRequest {
    /// The plugin (its name) that made the call.
    pub plugin: String,
    /// The cluster the call went to.
    pub cluster: String,
    /// The fully qualified service, e.g. `envoy.service.ratelimit.v3.RateLimitService`.
    pub service: String,
    pub method: String,
    /// The initial metadata the filter gave (Envoy adds these to the call's HTTP/2 headers).
    pub initial_metadata: Vec<(String, Vec<u8>)>,
    /// The request message, serialized (without gRPC framing).
    pub message: Vec<u8>,
    /// The call's timeout; zero means none, as in Envoy.
    pub timeout: Duration,
}

impl GrpcRequest {
    /// The first initial metadata value named `name`, as text.
    pub fn metadata(&self, name: &str) -> Option<String> {
        self.initial_metadata
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// How a scripted gRPC service answers a unary call.
#[derive(Debug, Clone, PartialEq)]
pub struct GrpcAnswer {
    pub outcome: GrpcOutcome,
    /// How long the answer takes on the harness clock. Longer than the call's (non-zero)
    /// timeout: at the timeout the filter gets what Envoy 1.40 gives, `proxy_on_grpc_close`
    /// with UNAVAILABLE (14) and "upstream request timeout{response_timeout}".
    pub delay: Duration,
}

/// What a unary gRPC call ends with.
#[derive(Debug, Clone, PartialEq)]
pub enum GrpcOutcome {
    /// `grpc-status: 0` with one response message (serialized, unframed): the filter gets
    /// `proxy_on_grpc_receive` with it in `GrpcReceiveBuffer`.
    Ok(Vec<u8>),
    /// A gRPC status and message: the filter gets `proxy_on_grpc_close` with the code, and the
    /// message through `proxy_get_status`. Status 0 here is "OK without a response message",
    /// which Envoy turns into INTERNAL (13).
    Status(u32, String),
}

impl GrpcAnswer {
    /// Success with a response message.
    pub fn ok(message: impl Into<Vec<u8>>) -> Self {
        Self {
            outcome: GrpcOutcome::Ok(message.into()),
            delay: Duration::ZERO,
        }
    }
    /// A gRPC error status (`grpc::Code` numbers: 14 UNAVAILABLE, 8 RESOURCE_EXHAUSTED, …).
    pub fn status(code: u32, message: &str) -> Self {
        Self {
            outcome: GrpcOutcome::Status(code, message.to_string()),
            delay: Duration::ZERO,
        }
    }
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

impl Default for Host {
    fn default() -> Self {
        Self::new()
    }
}

impl Host {
    /// A host whose clock stands at [`EPOCH_START_NANOS`]. Logs are echoed to stderr when
    /// `HOST_TEST_LOG` is set; `HOST_TEST_PERFMAP` writes a perf map of the compiled wasm.
    pub fn new() -> Self {
        let mut config = Config::new();
        config.consume_fuel(true);
        // `HOST_TEST_PERFMAP`: name each compiled wasm function in /tmp/perf-<pid>.map, so
        // `perf record` of a test or of `host-test --repeat` shows where a module's
        // instructions go (a module keeps its names if built with `strip = false`).
        if std::env::var_os("HOST_TEST_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        // Envoy's V8 grows memory on demand; wasmtime's defaults are fine for filters.
        let engine = match Engine::new(&config) {
            Ok(engine) => engine,
            // Only an unsupported platform gets here; nothing can run without an engine.
            Err(e) => unreachable_engine(e),
        };
        let host = Host {
            inner: Arc::new(HostState {
                engine,
                modules: Mutex::new(HashMap::new()),
                clock: Mutex::new(Clock {
                    realtime_nanos: EPOCH_START_NANOS,
                    monotonic_nanos: 1_000_000_000,
                }),
                shared: Mutex::new(SharedData::default()),
                queues: Mutex::new(Queues::default()),
                metrics: Mutex::new(Metrics::default()),
                logs: Mutex::new(Vec::new()),
                upstreams: Mutex::new(HashMap::new()),
                grpc_services: Mutex::new(HashMap::new()),
                grpc_calls: Mutex::new(Vec::new()),
                foreign: Mutex::new(HashMap::new()),
                rng: Mutex::new(0x853c_49e6_748f_ea9b),
                log_level: Mutex::new(LogLevel::Info),
                echo_logs: std::env::var_os("HOST_TEST_LOG").is_some(),
                header_map_fault: Mutex::new(None),
            }),
        };
        // Envoy registers its crypto foreign functions for every VM.
        host.foreign_function("verify_signature", crate::foreign::verify_signature);
        host.foreign_function("sign", crate::foreign::sign);
        host
    }

    /// Starts describing a plugin (one VM instance of a module with its configuration).
    pub fn plugin(&self, wasm: impl AsRef<Path>) -> PluginBuilder {
        PluginBuilder::new(self.clone(), wasm.as_ref().to_path_buf())
    }

    /// Starts describing the filter `dist/portcullis-<filter>.wasm` as plugin `<filter>`,
    /// for a start that needs more than a configuration (a VM id, a flag) or is refused.
    pub fn filter(&self, filter: &str) -> PluginBuilder {
        self.plugin(crate::dist(filter)).name(filter)
    }

    /// Starts the filter `dist/portcullis-<filter>.wasm` as plugin `<filter>` with `config`,
    /// or fails the test with the refusal and the plugin's log: how a filter test begins.
    ///
    /// With `PORTCULLIS_PACKAGING=gateway` the plugin is the one-VM gateway module running
    /// that filter's stage alone (`{"<stage>": config}`), still named `<filter>` with the
    /// filter's VM id: a filter's suite then runs against the stage as the gateway packages
    /// it (`make test-packaging`).
    pub fn start(&self, filter: &str, config: &serde_json::Value) -> Plugin {
        if std::env::var("PORTCULLIS_PACKAGING").is_ok_and(|p| p == "gateway") {
            let stage = filter.replace('-', "_");
            // The filter's own VM id, so its shared data is where its tests look.
            return self
                .plugin(crate::dist("gateway"))
                .name(filter)
                .vm_id(&format!("portcullis-{filter}"))
                .config_json(&serde_json::json!({ stage: config }))
                .started();
        }
        self.filter(filter).config_json(config).started()
    }

    /// Compiles a module once per host; later plugins of the same file reuse it.
    pub(crate) fn module(&self, path: &Path) -> wasmtime::Result<Module> {
        let mut modules = lock(&self.inner.modules);
        if let Some(module) = modules.get(path) {
            return Ok(module.clone());
        }
        let bytes = std::fs::read(path)
            .map_err(|e| wasmtime::format_err!("reading {}: {e}", path.display()))?;
        let module = Module::new(&self.inner.engine, bytes)?;
        modules.insert(path.to_path_buf(), module.clone());
        Ok(module)
    }

    // ---- clock ----

    /// Unix time in nanoseconds as the filters see it.
    pub fn now_nanos(&self) -> u64 {
        lock(&self.inner.clock).realtime_nanos
    }

    /// Moves both clocks forward. Plugins fire their due ticks and deliver due `http_call`
    /// answers on [`crate::Plugin::run_due`] or their next request.
    pub fn advance(&self, by: Duration) {
        let mut clock = lock(&self.inner.clock);
        clock.realtime_nanos += by.as_nanos() as u64;
        clock.monotonic_nanos += by.as_nanos() as u64;
    }

    /// Sets the wall clock (Unix seconds), as a clock step would; the monotonic clock keeps going.
    pub fn set_unix_time(&self, secs: u64) {
        lock(&self.inner.clock).realtime_nanos = secs * 1_000_000_000;
    }

    // ---- shared data ----

    /// A key of the shared data of VM id `vm_id`, with its CAS.
    pub fn shared_data(&self, vm_id: &str, key: &str) -> Option<(Vec<u8>, u32)> {
        lock(&self.inner.shared)
            .entries
            .get(&scoped(vm_id, key))
            .cloned()
    }

    /// Writes a key of VM id `vm_id`'s shared data, as an unconditional write would.
    pub fn set_shared_data(&self, vm_id: &str, key: &str, value: &[u8]) {
        lock(&self.inner.shared).set(vm_id, key, value, 0);
    }

    /// Number of keys in shared data, all VM ids (the ABI cannot delete keys: this only grows).
    pub fn shared_data_len(&self) -> usize {
        lock(&self.inner.shared).entries.len()
    }

    /// Total bytes of keys and values in shared data, all VM ids.
    pub fn shared_data_bytes(&self) -> usize {
        lock(&self.inner.shared)
            .entries
            .iter()
            .map(|(k, (v, _))| k.len() + v.len())
            .sum()
    }

    /// Runs `hook` after every successful `get_shared_data` of any VM, with the key read and a
    /// writer: how a test makes another worker write between a read and its CAS write.
    pub fn on_shared_get(&self, hook: impl FnMut(&str, &mut SharedWriter) + Send + 'static) {
        lock(&self.inner.shared).after_get = Some(Box::new(hook));
    }

    pub fn clear_shared_get_hook(&self) {
        lock(&self.inner.shared).after_get = None;
    }

    // ---- upstreams for http_call ----

    /// Declares a cluster the filters may `dispatch_http_call` to, and how it answers. A call
    /// to an undeclared cluster is refused with `BadArgument`, as Envoy refuses unknown clusters.
    pub fn upstream(
        &self,
        cluster: &str,
        answer: impl FnMut(&HttpCallRequest) -> HttpCallReply + Send + 'static,
    ) {
        lock(&self.inner.upstreams).insert(cluster.to_string(), Box::new(answer));
    }

    // ---- gRPC services for dispatch_grpc_call ----

    /// Declares a cluster the filters may `dispatch_grpc_call` to, and how its service answers.
    /// A call to an undeclared cluster is refused with `ParseFailure` at dispatch, as Envoy
    /// refuses a cluster name it does not know.
    pub fn grpc_service(
        &self,
        cluster: &str,
        answer: impl Fn(&GrpcRequest) -> GrpcAnswer + Send + Sync + 'static,
    ) {
        lock(&self.inner.grpc_services).insert(cluster.to_string(), Arc::new(answer));
    }

    /// Every gRPC call any plugin of this host dispatched, in order (refused ones excluded).
    pub fn grpc_calls(&self) -> Vec<GrpcRequest> {
        lock(&self.inner.grpc_calls).clone()
    }

    // ---- foreign functions ----

    /// Registers a foreign function under `name`; unknown names answer `NotFound`, as in Envoy.
    pub fn foreign_function(
        &self,
        name: &str,
        function: impl Fn(&[u8]) -> Result<Vec<u8>, Status> + Send + Sync + 'static,
    ) {
        lock(&self.inner.foreign).insert(name.to_string(), Arc::new(function));
    }

    /// Removes a foreign function, to act as a host that lacks it (any host but Envoy).
    pub fn remove_foreign_function(&self, name: &str) {
        lock(&self.inner.foreign).remove(name);
    }

    // ---- metrics ----

    pub fn metric(&self, name: &str) -> Option<Metric> {
        let metrics = lock(&self.inner.metrics);
        let id = metrics.ids.get(name)?;
        metrics
            .by_id
            .get(*id as usize)
            .map(|(name, kind, value, recorded)| Metric {
                name: name.clone(),
                kind: *kind,
                value: *value,
                recorded: recorded.clone(),
            })
    }

    /// A counter's or gauge's value; 0 for a metric never defined.
    pub fn metric_value(&self, name: &str) -> i64 {
        self.metric(name).map(|m| m.value).unwrap_or(0)
    }

    pub fn metrics(&self) -> Vec<Metric> {
        let metrics = lock(&self.inner.metrics);
        metrics
            .by_id
            .iter()
            .map(|(name, kind, value, recorded)| Metric {
                name: name.clone(),
                kind: *kind,
                value: *value,
                recorded: recorded.clone(),
            })
            .collect()
    }

    // ---- faults ----

    /// Makes every `proxy_get_header_map_pairs` answer `status` (with no map) until `None`:
    /// a host that cannot give a map, for testing that a filter fails closed.
    pub fn fail_header_maps(&self, status: Option<Status>) {
        *lock(&self.inner.header_map_fault) = status;
    }

    // ---- logs ----

    /// The level `proxy_get_log_level` reports (Envoy's default is info).
    pub fn set_log_level(&self, level: LogLevel) {
        *lock(&self.inner.log_level) = level;
    }

    pub fn logs(&self) -> Vec<LogEntry> {
        lock(&self.inner.logs).clone()
    }

    /// Messages logged at `level` or above.
    pub fn log_messages(&self, level: LogLevel) -> Vec<String> {
        lock(&self.inner.logs)
            .iter()
            .filter(|e| e.level >= level)
            .map(|e| e.message.clone())
            .collect()
    }

    /// True when some message at `level` or above contains `needle`.
    pub fn logged(&self, level: LogLevel, needle: &str) -> bool {
        self.log_messages(level).iter().any(|m| m.contains(needle))
    }

    pub fn clear_logs(&self) {
        lock(&self.inner.logs).clear();
    }

    pub(crate) fn log(&self, level: LogLevel, plugin: &str, message: String) {
        if self.inner.echo_logs {
            eprintln!("[host-test {level:?} {plugin}] {message}");
        }
        lock(&self.inner.logs).push(LogEntry {
            level,
            plugin: plugin.to_string(),
            message,
        });
    }

    // ---- randomness ----

    /// Seeds the bytes WASI's `random_get` returns, for reproducible tests.
    pub fn seed_random(&self, seed: u64) {
        *lock(&self.inner.rng) = seed | 1;
    }

    pub(crate) fn random_bytes(&self, out: &mut [u8]) {
        let mut state = lock(&self.inner.rng);
        for chunk in out.chunks_mut(8) {
            // splitmix64: fine for tests; the real host uses BoringSSL's RAND_bytes.
            *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = *state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

#[cold]
fn unreachable_engine(e: wasmtime::Error) -> Engine {
    // A harness that cannot build an engine cannot do anything useful; say why loudly.
    eprintln!("host-test: cannot create a wasmtime engine: {e}");
    std::process::abort()
}

/// Locks a mutex, recovering from a poisoned one (a test that panicked must not hide the
/// state from the next assertion).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
