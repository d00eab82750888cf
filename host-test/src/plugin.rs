//! A plugin: one VM instance of a module (one Envoy worker's copy) with its root context and
//! configuration, and the callbacks into it, metered in wasm instructions.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use wasmtime::{
    CallHook, ExternType, Instance, Linker, Memory, Store, TypedFunc, WasmParams, WasmResults,
};

use crate::abi::LogLevel;
use crate::host::{lock, GrpcOutcome, Host, HttpCallReply};
use crate::stream::StreamState;

/// Fuel handed to each callback: far more than any filter needs, small enough that a
/// runaway loop ends as a crash instead of a hung test.
const FUEL_PER_CALLBACK: u64 = 20_000_000_000;

static NEXT_INSTANCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Describes a plugin before it starts. From [`Host::plugin`].
pub struct PluginBuilder {
    host: Host,
    wasm: PathBuf,
    name: String,
    root_id: String,
    vm_id: String,
    vm_config: Vec<u8>,
    plugin_config: Vec<u8>,
    allow_on_headers_stop_iteration: bool,
}

/// Why a plugin did not start: the module did not load, a start-up callback returned false
/// (the host fails closed), or the module crashed. `logs` holds what the plugin logged.
#[derive(Debug)]
pub struct StartError {
    pub reason: String,
    pub logs: Vec<String>,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; logs: {:?}", self.reason, self.logs)
    }
}

impl std::error::Error for StartError {}

impl PluginBuilder {
    pub(crate) fn new(host: Host, wasm: PathBuf) -> Self {
        let name = wasm
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".into());
        Self {
            host,
            wasm,
            root_id: name.clone(),
            vm_id: name.clone(),
            name,
            vm_config: Vec::new(),
            plugin_config: Vec::new(),
            allow_on_headers_stop_iteration: false,
        }
    }

    /// The plugin name (Envoy's `config.name`); also names the plugin's log lines.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }
    pub fn root_id(mut self, root_id: &str) -> Self {
        self.root_id = root_id.to_string();
        self
    }
    pub fn vm_id(mut self, vm_id: &str) -> Self {
        self.vm_id = vm_id.to_string();
        self
    }
    /// `vm_config.configuration`, handed to `on_vm_start`.
    pub fn vm_config(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.vm_config = bytes.into();
        self
    }
    /// The plugin configuration, handed to `on_configure`.
    pub fn config(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.plugin_config = bytes.into();
        self
    }
    /// Envoy's `PluginConfig.allow_on_headers_stop_iteration` (Envoy >= 1.35; default false,
    /// as in Envoy). False: a Pause from `on_http_{request,response}_headers` stops the whole
    /// stream in that direction (proxy-wasm-cpp-host turns StopIteration into
    /// StopAllIterationAndWatermark) and the filter gets no body until it resumes itself.
    /// True: the headers are held, the body still comes to the filter, and the headers go on
    /// when a body (or trailers) callback answers Continue or the filter resumes.
    pub fn allow_on_headers_stop_iteration(mut self, allow: bool) -> Self {
        self.allow_on_headers_stop_iteration = allow;
        self
    }
    /// The plugin configuration as JSON.
    pub fn config_json(self, config: &serde_json::Value) -> Self {
        let bytes = config.to_string().into_bytes();
        self.config(bytes)
    }

    /// [`start`](Self::start) for a test that needs the plugin running: a refusal fails
    /// the test, naming the plugin and its configuration, with the plugin's log.
    pub fn started(self) -> Plugin {
        let what = format!(
            "{} refused {}",
            self.name,
            String::from_utf8_lossy(&self.plugin_config)
        );
        self.start().unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Instantiates the module and runs its start-up as Envoy does: `_initialize`, the ABI
    /// version check, `proxy_on_context_create` for the root context, `proxy_on_vm_start`,
    /// `proxy_on_configure`. A `false` from either start callback is a [`StartError`].
    pub fn start(self) -> Result<Plugin, StartError> {
        let fail = |host: &Host, reason: String| StartError {
            reason,
            logs: host.log_messages(LogLevel::Trace),
        };
        let module = self
            .host
            .module(&self.wasm)
            .map_err(|e| fail(&self.host, format!("loading {}: {e}", self.wasm.display())))?;
        if module.get_export("proxy_abi_version_0_2_1").is_none() {
            return Err(fail(
                &self.host,
                "the module does not export proxy_abi_version_0_2_1 (ABI 0.2.1)".into(),
            ));
        }
        let state = VmState {
            host: self.host.clone(),
            plugin_name: self.name.clone(),
            root_id: self.root_id.clone(),
            vm_id: self.vm_id.clone(),
            instance_id: NEXT_INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            vm_config: self.vm_config,
            plugin_config: self.plugin_config,
            allow_on_headers_stop_iteration: self.allow_on_headers_stop_iteration,
            memory: None,
            alloc: None,
            stream: None,
            current_context: 0,
            root_context: 1,
            call_response: None,
            pending_calls: Vec::new(),
            next_token: 0,
            pending_grpc: Vec::new(),
            next_grpc_token: GRPC_CALL_TOKEN_TYPE,
            grpc_message: None,
            status: (0, String::new()),
            tick_period_ms: 0,
            next_tick_nanos: 0,
            meter: Vec::new(),
            calls: Calls::default(),
            done_requested: false,
        };
        let mut store = Store::new(&self.host.inner.engine, state);
        store.call_hook(|mut c, hook| {
            let calls = &mut c.data_mut().calls;
            match hook {
                CallHook::CallingHost => calls.host += 1,
                // Envoy enters the VM again for every value it returns (to allocate it).
                CallHook::CallingWasm if calls.host > calls.host_returned => calls.reentries += 1,
                CallHook::ReturningFromHost => calls.host_returned += 1,
                _ => {}
            }
            Ok(())
        });
        let instance = instantiate(&mut store, &module)
            .map_err(|e| fail(&self.host, format!("instantiating: {e}")))?;
        let memory = instance.get_memory(&mut store, "memory");
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut store, "proxy_on_memory_allocate")
            .or_else(|_| instance.get_typed_func::<i32, i32>(&mut store, "malloc"))
            .ok();
        store.data_mut().memory = memory;
        store.data_mut().alloc = alloc;
        let mut plugin = Plugin {
            host: self.host.clone(),
            store,
            instance,
            failed: None,
            next_context_id: 2,
        };
        for init in ["_initialize", "_start"] {
            if plugin.has_export(init) {
                plugin
                    .call::<(), ()>(init, ())
                    .map_err(|e| fail(&self.host, e))?;
                break;
            }
        }
        let root = plugin.store.data().root_context;
        plugin
            .call::<(i32, i32), ()>("proxy_on_context_create", (root as i32, 0))
            .map_err(|e| fail(&self.host, e))?;
        let vm_config_len = plugin.store.data().vm_config.len() as i32;
        let started = plugin
            .call::<(i32, i32), i32>("proxy_on_vm_start", (root as i32, vm_config_len))
            .map_err(|e| fail(&self.host, e))?;
        if started == 0 {
            return Err(fail(&self.host, "proxy_on_vm_start returned false".into()));
        }
        let config_len = plugin.store.data().plugin_config.len() as i32;
        let configured = plugin
            .call::<(i32, i32), i32>("proxy_on_configure", (root as i32, config_len))
            .map_err(|e| fail(&self.host, e))?;
        if configured == 0 {
            return Err(fail(&self.host, "proxy_on_configure returned false".into()));
        }
        plugin.store.data_mut().meter.clear();
        Ok(plugin)
    }
}

fn instantiate(
    store: &mut Store<VmState>,
    module: &wasmtime::Module,
) -> wasmtime::Result<Instance> {
    let mut linker: Linker<VmState> = Linker::new(store.engine());
    crate::hostcalls::define(&mut linker)?;
    crate::wasi::define(&mut linker)?;
    // Every import the harness does not implement traps with its name when called, so a
    // missing host call is a loud test failure, never a silent success.
    for import in module.imports() {
        if let ExternType::Func(ty) = import.ty() {
            if linker.get_by_import(&mut *store, &import).is_none() {
                let name = format!("{}::{}", import.module(), import.name());
                linker.func_new(import.module(), import.name(), ty, move |_, _, _| {
                    Err(wasmtime::format_err!(
                        "host-test: host call {name} is not implemented"
                    ))
                })?;
            }
        }
    }
    linker.instantiate(&mut *store, module)
}

/// What one callback of one plugin cost: wasm instructions, calls into the host, and how
/// often the host entered the VM again meanwhile (to allocate what a call returns).
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

/// Running totals the call hook keeps.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Calls {
    host: u64,
    host_returned: u64,
    reentries: u64,
}

/// The VM's side of the store: what host calls read and write while a callback runs.
pub(crate) struct VmState {
    pub(crate) host: Host,
    pub(crate) plugin_name: String,
    pub(crate) root_id: String,
    pub(crate) vm_id: String,
    pub(crate) allow_on_headers_stop_iteration: bool,
    pub(crate) instance_id: u64,
    pub(crate) vm_config: Vec<u8>,
    pub(crate) plugin_config: Vec<u8>,
    pub(crate) memory: Option<Memory>,
    pub(crate) alloc: Option<TypedFunc<i32, i32>>,
    /// The HTTP stream whose callback is running, if any.
    pub(crate) stream: Option<Arc<Mutex<StreamState>>>,
    pub(crate) current_context: u32,
    pub(crate) root_context: u32,
    /// The answer being delivered by `proxy_on_http_call_response`.
    pub(crate) call_response: Option<HttpCallReply>,
    pub(crate) pending_calls: Vec<PendingCall>,
    pub(crate) next_token: u32,
    /// Unary gRPC calls on their way (`proxy_grpc_call`).
    pub(crate) pending_grpc: Vec<PendingGrpc>,
    /// The last gRPC call token handed out: Envoy's are 5, 9, 13, … (`token & 3 == 1`).
    pub(crate) next_grpc_token: u32,
    /// The response message while `proxy_on_grpc_receive` runs (`GrpcReceiveBuffer`).
    pub(crate) grpc_message: Option<Vec<u8>>,
    /// What `proxy_get_status` reads: the last gRPC close's code, and its message while
    /// `proxy_on_grpc_close` runs (Envoy keeps both on the root context).
    pub(crate) status: (u32, String),
    pub(crate) tick_period_ms: u32,
    pub(crate) next_tick_nanos: u64,
    /// What each callback cost since the last drain.
    pub(crate) meter: Vec<Metered>,
    /// Host calls so far, for the meter.
    pub(crate) calls: Calls,
    pub(crate) done_requested: bool,
}

/// An `http_call` on its way: answered at `due_nanos` on the harness clock.
pub(crate) struct PendingCall {
    pub(crate) token: u32,
    pub(crate) context_id: u32,
    pub(crate) due_nanos: u64,
    pub(crate) reply: HttpCallReply,
}

/// Envoy numbers callouts by kind in the low two bits: http calls 0, gRPC calls 1, gRPC
/// streams 2, each counter stepping by 4 (`Wasm::nextGrpcCallId` in proxy-wasm-cpp-host).
pub(crate) const GRPC_CALL_TOKEN_TYPE: u32 = 1;
pub(crate) const GRPC_STREAM_TOKEN_TYPE: u32 = 2;
pub(crate) const CALLOUT_TOKEN_STEP: u32 = 4;

/// A unary gRPC call on its way: ends at `due_nanos` on the harness clock with `outcome`.
pub(crate) struct PendingGrpc {
    pub(crate) token: u32,
    /// The context whose callback dispatched it (the root context, or a stream's).
    pub(crate) origin: u32,
    /// The stream that dispatched it has ended. Envoy keeps the call (it belongs to the root
    /// context) and still delivers its answer, which the SDK then drops.
    pub(crate) orphaned: bool,
    pub(crate) due_nanos: u64,
    pub(crate) outcome: GrpcOutcome,
}

/// One running plugin: a VM instance with its root context. Several plugins of one [`Host`]
/// are several Envoy workers (or several filters) sharing shared data, metrics and the clock.
pub struct Plugin {
    pub(crate) host: Host,
    pub(crate) store: Store<VmState>,
    instance: Instance,
    pub(crate) failed: Option<String>,
    pub(crate) next_context_id: u32,
}

impl Plugin {
    pub fn host(&self) -> &Host {
        &self.host
    }

    pub(crate) fn instance_id(&self) -> u64 {
        self.store.data().instance_id
    }

    pub fn name(&self) -> &str {
        &self.store.data().plugin_name
    }

    /// Whether this plugin runs with Envoy's `allow_on_headers_stop_iteration`.
    pub fn allows_on_headers_stop_iteration(&self) -> bool {
        self.store.data().allow_on_headers_stop_iteration
    }

    /// The crash that killed this VM, if one did; a dead VM answers every request with 503.
    pub fn crashed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The tick period the plugin asked for with `set_tick_period_milliseconds` (0: none).
    pub fn tick_period_ms(&self) -> u32 {
        self.store.data().tick_period_ms
    }

    /// `http_call`s dispatched and not answered yet.
    pub fn pending_http_calls(&self) -> usize {
        self.store.data().pending_calls.len()
    }

    /// Unary gRPC calls dispatched and not answered (or cancelled) yet, including those of
    /// streams that have ended (Envoy still answers them).
    pub fn pending_grpc_calls(&self) -> usize {
        self.store.data().pending_grpc.len()
    }

    /// What the callbacks cost since the last call of this method (or of a request).
    pub fn take_metering(&mut self) -> Vec<Metered> {
        std::mem::take(&mut self.store.data_mut().meter)
    }

    fn has_export(&mut self, name: &str) -> bool {
        self.instance.get_func(&mut self.store, name).is_some()
    }

    /// Calls an export with fresh fuel, metering what it used. A trap marks the VM dead, as
    /// Envoy marks a VM failed after a crash.
    pub(crate) fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        export: &str,
        params: P,
    ) -> Result<R, String> {
        if let Some(failed) = &self.failed {
            return Err(format!("VM is dead: {failed}"));
        }
        let func = self
            .instance
            .get_typed_func::<P, R>(&mut self.store, export)
            .map_err(|e| format!("export {export}: {e}"))?;
        if self.store.set_fuel(FUEL_PER_CALLBACK).is_err() {
            return Err("fuel metering is off".into());
        }
        let before = self.store.data().calls;
        let result = func.call(&mut self.store, params);
        let used = FUEL_PER_CALLBACK - self.store.get_fuel().unwrap_or(0);
        let after = self.store.data().calls;
        let plugin = self.store.data().plugin_name.clone();
        self.store.data_mut().meter.push(Metered {
            plugin,
            callback: export.to_string(),
            instructions: used,
            host_calls: after.host - before.host,
            reentries: after.reentries - before.reentries,
        });
        result.map_err(|e| {
            let message = format!("{export} trapped: {e:#}");
            let name = self.store.data().plugin_name.clone();
            self.host.log(LogLevel::Critical, &name, message.clone());
            self.failed = Some(message.clone());
            message
        })
    }

    /// Calls an optional export: a module that does not export it gets the default, as Envoy
    /// skips callbacks a module does not have.
    pub(crate) fn call_optional<P: WasmParams, R: WasmResults + Default>(
        &mut self,
        export: &str,
        params: P,
    ) -> Result<R, String> {
        if !self.has_export(export) {
            return Ok(R::default());
        }
        self.call(export, params)
    }

    pub(crate) fn new_context(&mut self) -> Result<u32, String> {
        let id = self.next_context_id;
        self.next_context_id += 1;
        let root = self.store.data().root_context;
        self.call::<(i32, i32), ()>("proxy_on_context_create", (id as i32, root as i32))?;
        Ok(id)
    }

    /// Runs a callback with `stream` attached, so header, body and property calls reach it.
    pub(crate) fn with_stream<T>(
        &mut self,
        stream: &Arc<Mutex<StreamState>>,
        context: u32,
        f: impl FnOnce(&mut Self) -> T,
    ) -> T {
        self.store.data_mut().stream = Some(stream.clone());
        self.store.data_mut().current_context = context;
        let out = f(self);
        self.store.data_mut().stream = None;
        self.store.data_mut().current_context = self.store.data().root_context;
        out
    }

    /// Fires what is due now: ticks, `http_call` answers and `on_queue_ready` for the root
    /// context. Same as `advance(Duration::ZERO)`.
    pub fn run_due(&mut self) -> Result<(), String> {
        self.advance(std::time::Duration::ZERO)
    }

    /// Moves the host clock forward by `by`, firing this plugin's ticks and root-context
    /// `http_call` answers in time order, each with the clock standing at its due time.
    pub fn advance(&mut self, by: std::time::Duration) -> Result<(), String> {
        let target = self.host.now_nanos() + by.as_nanos() as u64;
        let root = self.store.data().root_context;
        self.deliver_queue_ready()?;
        loop {
            let tick_due = (self.store.data().tick_period_ms > 0)
                .then_some(self.store.data().next_tick_nanos)
                .filter(|due| *due <= target);
            let call_due = self
                .store
                .data()
                .pending_calls
                .iter()
                .filter(|c| c.context_id == root && c.due_nanos <= target)
                .map(|c| c.due_nanos)
                .min();
            let grpc_due = self
                .store
                .data()
                .pending_grpc
                .iter()
                .filter(|g| (g.origin == root || g.orphaned) && g.due_nanos <= target)
                .map(|g| g.due_nanos)
                .min();
            // The earliest gRPC answer goes first when it is not later than the other events.
            if let Some(g) = grpc_due {
                if tick_due.is_none_or(|t| g <= t) && call_due.is_none_or(|c| g <= c) {
                    self.deliver_next_grpc(|p| p.origin == root || p.orphaned, None)?;
                    continue;
                }
            }
            let next = match (tick_due, call_due) {
                (None, None) => break,
                (Some(t), None) => (t, true),
                (None, Some(c)) => (c, false),
                (Some(t), Some(c)) => (t.min(c), t < c),
            };
            self.set_clock(next.0);
            if next.1 {
                let period = u64::from(self.store.data().tick_period_ms) * 1_000_000;
                self.store.data_mut().next_tick_nanos = next.0 + period;
                self.call::<i32, ()>("proxy_on_tick", root as i32)?;
            } else {
                self.deliver_next_call(root, None)?;
            }
        }
        self.set_clock(target.max(self.host.now_nanos()));
        Ok(())
    }

    pub(crate) fn set_clock(&self, realtime: u64) {
        let mut clock = lock(&self.host.inner.clock);
        if realtime > clock.realtime_nanos {
            clock.monotonic_nanos += realtime - clock.realtime_nanos;
            clock.realtime_nanos = realtime;
        }
    }

    /// The earliest `http_call` answer a waiting stream can get: its own, or the root
    /// context's (Envoy delivers those whenever they come): due time and context.
    fn next_call_while_waiting(&self, context: u32) -> Option<(u64, u32)> {
        let root = self.store.data().root_context;
        self.store
            .data()
            .pending_calls
            .iter()
            .filter(|c| c.context_id == context || c.context_id == root)
            .map(|c| (c.due_nanos, c.context_id))
            .min()
    }

    fn next_tick(&self) -> Option<u64> {
        (self.store.data().tick_period_ms > 0).then_some(self.store.data().next_tick_nanos)
    }

    fn next_grpc_while_waiting(&self, context: u32) -> Option<u64> {
        self.store
            .data()
            .pending_grpc
            .iter()
            .filter(|g| g.origin == context && !g.orphaned)
            .map(|g| g.due_nanos)
            .min()
    }

    /// When the next event a stream waiting in `context` could see is due (host clock, ns).
    pub(crate) fn next_event_due(&self, context: u32) -> Option<u64> {
        [
            self.next_call_while_waiting(context).map(|(due, _)| due),
            self.next_tick(),
            self.next_grpc_while_waiting(context),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// While a stream waits: fires whichever comes first, the stream's next `http_call`
    /// answer, the root context's next `http_call` answer or its next tick (run with the
    /// stream reachable, so the root context can act on it through `set_effective_context`).
    /// `false` when none can happen.
    pub(crate) fn deliver_next_event(
        &mut self,
        context: u32,
        stream: &Arc<Mutex<StreamState>>,
    ) -> Result<bool, String> {
        let call = self.next_call_while_waiting(context);
        let call_due = call.map(|(due, _)| due);
        let tick_due = self.next_tick();
        if let Some(g) = self.next_grpc_while_waiting(context) {
            if tick_due.is_none_or(|t| g <= t) && call_due.is_none_or(|c| g <= c) {
                return self
                    .deliver_next_grpc(|p| p.origin == context && !p.orphaned, Some(stream));
            }
        }
        match (call, tick_due) {
            (Some((due, _)), Some(tick)) if tick < due => {
                self.tick_with(stream, tick).map(|_| true)
            }
            (Some((_, owner)), _) => self.deliver_next_call(owner, Some(stream)),
            (None, Some(tick)) => self.tick_with(stream, tick).map(|_| true),
            (None, None) => Ok(false),
        }
    }

    /// Fires the root context's tick due at `due` with `stream` reachable.
    fn tick_with(&mut self, stream: &Arc<Mutex<StreamState>>, due: u64) -> Result<(), String> {
        self.set_clock(due);
        let period = u64::from(self.store.data().tick_period_ms) * 1_000_000;
        self.store.data_mut().next_tick_nanos = due + period;
        let root = self.store.data().root_context;
        self.store.data_mut().stream = Some(stream.clone());
        let result = self.call::<i32, ()>("proxy_on_tick", root as i32);
        self.store.data_mut().stream = None;
        self.store.data_mut().current_context = root;
        result
    }

    /// Delivers the earliest pending `http_call` answer for `context`, moving the clock to its
    /// due time (time passes while a request waits). `false` when none is pending.
    pub(crate) fn deliver_next_call(
        &mut self,
        context: u32,
        stream: Option<&Arc<Mutex<StreamState>>>,
    ) -> Result<bool, String> {
        let calls = &mut self.store.data_mut().pending_calls;
        let Some(index) = calls
            .iter()
            .enumerate()
            .filter(|(_, c)| c.context_id == context)
            .min_by_key(|(_, c)| c.due_nanos)
            .map(|(i, _)| i)
        else {
            return Ok(false);
        };
        let call = calls.remove(index);
        self.set_clock(call.due_nanos);
        let (headers, body, trailers) = if call.reply.fail {
            (0, 0, 0)
        } else {
            (call.reply.headers.len() + 1, call.reply.body.len(), 0)
        };
        self.store.data_mut().call_response = Some(call.reply);
        let args = (
            context as i32,
            call.token as i32,
            headers as i32,
            body as i32,
            trailers,
        );
        let result = match stream {
            Some(stream) => self.with_stream(stream, context, |p| {
                p.call::<(i32, i32, i32, i32, i32), ()>("proxy_on_http_call_response", args)
            }),
            None => self.call::<(i32, i32, i32, i32, i32), ()>("proxy_on_http_call_response", args),
        };
        self.store.data_mut().call_response = None;
        result.map(|_| true)
    }

    /// Delivers the earliest pending gRPC answer among those `which` selects, as Envoy does for
    /// a unary call: `proxy_on_grpc_receive(root, token, size)` with the message in
    /// `GrpcReceiveBuffer` on success, else `proxy_on_grpc_close(root, token, status)`; no
    /// metadata callbacks. The first argument is the root context, as Envoy makes every call on
    /// it; the SDK finds the dispatching context by the token. `false` when none is pending.
    pub(crate) fn deliver_next_grpc(
        &mut self,
        which: impl Fn(&PendingGrpc) -> bool,
        stream: Option<&Arc<Mutex<StreamState>>>,
    ) -> Result<bool, String> {
        let calls = &mut self.store.data_mut().pending_grpc;
        let Some(index) = calls
            .iter()
            .enumerate()
            .filter(|(_, c)| which(c))
            .min_by_key(|(_, c)| c.due_nanos)
            .map(|(i, _)| i)
        else {
            return Ok(false);
        };
        let call = calls.remove(index);
        self.set_clock(call.due_nanos);
        let root = self.store.data().root_context as i32;
        let (export, last) = match call.outcome {
            GrpcOutcome::Ok(message) => {
                let size = message.len() as i32;
                self.store.data_mut().grpc_message = Some(message);
                ("proxy_on_grpc_receive", size)
            }
            GrpcOutcome::Status(code, message) => {
                self.store.data_mut().status = (code, message);
                ("proxy_on_grpc_close", code as i32)
            }
        };
        let args = (root, call.token as i32, last);
        let context = call.origin;
        let result = match stream {
            Some(stream) => self.with_stream(stream, context, |p| {
                p.call_optional::<(i32, i32, i32), ()>(export, args)
            }),
            None => self.call_optional::<(i32, i32, i32), ()>(export, args),
        };
        // Envoy drops the buffer and the status message once the callback returns.
        self.store.data_mut().grpc_message = None;
        self.store.data_mut().status.1.clear();
        result.map(|_| true)
    }

    /// Tells the root context about each queue it registered that holds items, once per call.
    fn deliver_queue_ready(&mut self) -> Result<(), String> {
        let me = self.store.data().instance_id;
        let ready: Vec<u32> = {
            let queues = lock(&self.host.inner.queues);
            let mut ids: Vec<u32> = queues
                .queues
                .iter()
                .filter(|(_, q)| q.owner.0 == me && !q.items.is_empty())
                .map(|(id, _)| *id)
                .collect();
            ids.sort_unstable();
            ids
        };
        let root = self.store.data().root_context;
        for queue in ready {
            self.call::<(i32, i32), ()>("proxy_on_queue_ready", (root as i32, queue as i32))?;
        }
        Ok(())
    }

    /// Drops the `http_call`s of a finished stream. Its gRPC calls live on, as in Envoy (they
    /// belong to the root context): their answers come with `advance`/`run_due`.
    pub(crate) fn cancel_calls(&mut self, context: u32) {
        let state = self.store.data_mut();
        state.pending_calls.retain(|c| c.context_id != context);
        for call in state.pending_grpc.iter_mut() {
            if call.origin == context {
                call.orphaned = true;
            }
        }
    }

    /// Ends the VM as Envoy does when a plugin is removed: `proxy_on_done` on the root context
    /// (the module may answer false and finish later with `proxy_done`), then `proxy_on_delete`.
    pub fn shutdown(mut self) -> Result<bool, String> {
        let root = self.store.data().root_context as i32;
        let done = self.call_optional::<i32, i32>("proxy_on_done", root)? != 0;
        let done = done || self.store.data().done_requested;
        self.call_optional::<i32, ()>("proxy_on_delete", root)?;
        Ok(done)
    }
}
