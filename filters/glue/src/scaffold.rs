//! A pass-through filter: the placeholder each filter crate registers until its real
//! implementation lands. It accepts an absent configuration or a JSON object and refuses
//! anything else, so even the placeholder fails closed on a broken configuration.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

/// Registers the pass-through root and HTTP contexts under the given filter name.
pub fn register(filter: &'static str) {
    crate::start(filter);
    let _ = FILTER.set(filter);
    proxy_wasm::set_root_context(|_| {
        Box::new(PassThroughRoot {
            filter: FILTER.get().copied().unwrap_or("scaffold"),
        })
    });
}

static FILTER: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

struct PassThroughRoot {
    filter: &'static str,
}

impl Context for PassThroughRoot {}

impl RootContext for PassThroughRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = crate::plugin_configuration() else {
            return true;
        };
        let is_object = bytes.first() == Some(&b'{') && bytes.last() == Some(&b'}');
        if !is_object {
            let _ = proxy_wasm::hostcalls::log(
                LogLevel::Error,
                &format!(
                    "portcullis-{}: configuration: expected a JSON object",
                    self.filter
                ),
            );
        }
        is_object
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(PassThrough))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct PassThrough;

impl Context for PassThrough {}
impl HttpContext for PassThrough {}
