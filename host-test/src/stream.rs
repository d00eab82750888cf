//! The state of one HTTP stream that host calls read and write while a filter's callback
//! runs, and the local response a filter sends into it.

use std::collections::HashMap;

use crate::abi::MapType;
use crate::headers::Headers;

/// A response a filter sent with `send_local_response`.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalResponse {
    pub status: u16,
    pub details: String,
    pub body: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub grpc_status: u32,
}

/// The state of one stream that host calls read and write.
#[derive(Default)]
pub(crate) struct StreamState {
    pub(crate) request_headers: Headers,
    pub(crate) request_trailers: Headers,
    pub(crate) response_headers: Headers,
    pub(crate) response_trailers: Headers,
    /// The request body buffered by the filter whose callback runs.
    pub(crate) request_body: Vec<u8>,
    pub(crate) response_body: Vec<u8>,
    /// Properties the test set, by raw path (segments joined by NUL).
    pub(crate) properties: HashMap<Vec<u8>, Vec<u8>>,
    /// Envoy's filter state: `set_property` writes `wasm.<path>`.
    pub(crate) filter_state: HashMap<String, Vec<u8>>,
    pub(crate) local_response: Option<LocalResponse>,
    pub(crate) continued_request: bool,
    pub(crate) continued_response: bool,
    pub(crate) reset: bool,
    /// The response headers have passed the last encoder: they are on their way to the
    /// client, and a local reply can no longer replace them (Envoy resets the stream).
    pub(crate) response_headers_sent: bool,
    pub(crate) contexts: Vec<(String, u32)>,
    pub(crate) source: String,
    pub(crate) destination: String,
    pub(crate) response_code: Option<u16>,
    /// Header maps a filter let go of by continuing (VM instance, context id, map): Envoy drops its
    /// pointer to a map once a callback returns Continue, so later calls cannot reach it.
    pub(crate) released: Vec<(u64, u32, MapType)>,
    /// `on_log` runs: a map that is gone reads as not found rather than a bad argument.
    pub(crate) access_log_phase: bool,
    /// When the client resets the stream if a filter still keeps it waiting (host clock, ns).
    pub(crate) client_reset_at: Option<u64>,
}

impl StreamState {
    pub(crate) fn map(&mut self, map: MapType) -> Option<&mut Headers> {
        match map {
            MapType::RequestHeaders => Some(&mut self.request_headers),
            MapType::RequestTrailers => Some(&mut self.request_trailers),
            MapType::ResponseHeaders => Some(&mut self.response_headers),
            MapType::ResponseTrailers => Some(&mut self.response_trailers),
            _ => None,
        }
    }

    pub(crate) fn context_of(&self, plugin: &str) -> Option<u32> {
        self.contexts
            .iter()
            .find(|(name, _)| name == plugin)
            .map(|(_, id)| *id)
    }
}
