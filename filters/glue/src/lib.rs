//! proxy-wasm glue shared by the Portcullis filters: what every filter does at start-up and
//! how it talks to the host, written once, and each filter's glue as a stage ([`stages`])
//! that both packagings run ([`chain`]): alone, as that filter's module, or with the others
//! in the one-VM gateway. Policy logic never lives here (see `portcullis-core`); this crate
//! only moves bytes between the host and that logic.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel};

pub mod alloc;
pub mod chain;
pub mod exchange;
pub mod host;
pub mod host_crypto;
pub mod scaffold;
pub mod shared;
pub mod stages;

/// Every module with the glue allocates through [`alloc::SingleThreaded`]: small blocks from
/// free lists by size class instead of dlmalloc.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: alloc::SingleThreaded = alloc::SingleThreaded::new();

/// Sets the SDK's log level and routes panics to the host's log at critical level, so the
/// one panic that slips through is at least visible in Envoy's log before the VM dies.
pub fn start(filter: &'static str) {
    proxy_wasm::set_log_level(LogLevel::Trace);
    std::panic::set_hook(Box::new(move |info| {
        // The hook must not panic itself: ignore a failing log call.
        let _ = hostcalls::log(LogLevel::Critical, &format!("portcullis-{filter}: {info}"));
    }));
}

/// The plugin configuration bytes handed to `on_configure`, or `None` when the host gave none.
pub fn plugin_configuration() -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
        .filter(|bytes| !bytes.is_empty())
}
