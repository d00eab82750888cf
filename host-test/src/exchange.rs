//! Everything that happened to one request: what the client got, what reached the upstream,
//! a filter's local response, a stall, crash or reset, and what each callback cost.

use std::collections::HashMap;

use crate::headers::Headers;
use crate::plugin::Metered;
use crate::stream::LocalResponse;
use crate::upstream::UpstreamRequest;

/// What the client got.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientResponse {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
}

/// Everything that happened to one request.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    pub response: ClientResponse,
    /// The local response a filter sent, and which plugin sent it.
    pub local_response: Option<(String, LocalResponse)>,
    /// What reached the upstream; `None` when the request never got there.
    pub upstream: Option<UpstreamRequest>,
    /// Set when a filter paused and nothing could resume it: Envoy would hang until timeout.
    pub stalled: Option<String>,
    /// Set when a VM trapped (a panic): Envoy would answer 503 and the VM stays dead.
    pub crash: Option<String>,
    /// The stream was reset: a filter called `close_stream`, or sent a local response after
    /// the response headers had already gone to the client (Envoy can only reset then; the
    /// client sees the stream aborted, with no status and no body: `response` is empty).
    pub reset: bool,
    pub metering: Vec<Metered>,
    /// Filter state at the end of the request (`set_property` values by key).
    pub filter_state: HashMap<String, Vec<u8>>,
}

impl Exchange {
    pub fn status(&self) -> u16 {
        self.response.status
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.response.headers.get_str(name)
    }
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.response.body).into_owned()
    }
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.response.body).unwrap_or(serde_json::Value::Null)
    }
    /// Whether the client saw the stream reset instead of a response.
    pub fn was_reset(&self) -> bool {
        self.reset
    }
    pub fn reached_upstream(&self) -> bool {
        self.upstream.is_some()
    }
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.upstream.as_ref().and_then(|u| u.header(name))
    }
    /// Total wasm instructions the request cost across every plugin and callback.
    pub fn instructions(&self) -> u64 {
        self.metering.iter().map(|m| m.instructions).sum()
    }
    /// Calls into the host the request cost, across every plugin and callback.
    pub fn host_calls(&self) -> u64 {
        self.metering.iter().map(|m| m.host_calls).sum()
    }
    /// Times a host call made the host enter a VM again (one per value returned).
    pub fn reentries(&self) -> u64 {
        self.metering.iter().map(|m| m.reentries).sum()
    }
    /// Wasm instructions one plugin spent on the request.
    pub fn instructions_of(&self, plugin: &str) -> u64 {
        self.metering
            .iter()
            .filter(|m| m.plugin == plugin)
            .map(|m| m.instructions)
            .sum()
    }
}
