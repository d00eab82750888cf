//! The upstream's side of a stream: how it answers, and what reached it.

use crate::headers::Headers;

/// The upstream's answer.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub headers: Headers,
    pub body: Vec<Vec<u8>>,
    pub trailers: Headers,
}

impl UpstreamResponse {
    pub fn new(status: u16) -> Self {
        let mut headers = Headers::default();
        headers.add(":status", status.to_string().as_bytes());
        Self {
            headers,
            body: Vec::new(),
            trailers: Headers::default(),
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.add(name, value.as_bytes());
        self
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        self.headers
            .replace("content-length", body.len().to_string().as_bytes());
        self.body = vec![body];
        self
    }
    /// A JSON body with its content-type.
    pub fn json(self, value: &serde_json::Value) -> Self {
        self.header("content-type", "application/json")
            .body(value.to_string())
    }
    pub fn chunks(mut self, chunks: Vec<Vec<u8>>) -> Self {
        self.headers.remove("content-length");
        self.headers.replace("transfer-encoding", b"chunked");
        self.body = chunks;
        self
    }
    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers.add(name, value.as_bytes());
        self
    }
}

/// What reached the upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest {
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
}

impl UpstreamRequest {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get_str(name)
    }
}
