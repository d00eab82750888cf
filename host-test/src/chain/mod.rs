//! One HTTP stream through a chain of plugins, driven as Envoy's filter manager drives it:
//! request headers, body chunks and trailers through the filters in order, the upstream, then
//! the response back through them in reverse order; local responses, pauses and resumptions,
//! `http_call` answers delivered while a filter waits, then `on_log`, `on_done`, `on_delete`.
//!
//! | file | holds |
//! |------|-------|
//! | `mod.rs` | [`send`]: the stream from the connection manager to `on_delete` |
//! | `callbacks.rs` | one direction through the filters: headers, body, trailers |
//! | `wait.rs` | a paused filter waiting for answers, ticks or a client reset |
//! | `flow.rs` | where the stream stands after a callback, and which way it runs |

mod callbacks;
mod flow;
mod wait;

use std::sync::{Arc, Mutex};

use self::callbacks::{http1_frames, through_filters};
use self::flow::{Direction, Flow};
use crate::connection_manager::{connection_manager_headers, downstream_address};
use crate::exchange::{ClientResponse, Exchange};
use crate::headers::Headers;
use crate::host::lock;
use crate::plugin::Plugin;
use crate::request::Request;
use crate::stream::{LocalResponse, StreamState};
use crate::upstream::{UpstreamRequest, UpstreamResponse};

impl Plugin {
    /// Sends one request through this plugin alone.
    pub fn send(&mut self, request: Request) -> Exchange {
        send(&mut [self], request)
    }
}

/// Sends one request through a chain of plugins, in the order given (Envoy's filter order).
///
/// The phases, in Envoy's order: what the root contexts had due fires; the connection manager
/// opens the stream and each filter gets a context; the request is decoded through the
/// filters; if they let it go, it reaches the upstream and its response is encoded back
/// through them; a filter's local reply is encoded instead; the framing is checked, the client
/// answered, and every context ends with `on_log`, `on_done`, `on_delete`.
pub fn send(filters: &mut [&mut Plugin], request: Request) -> Exchange {
    let mut ex = Exchange::default();
    if let Some(dead) = fire_due_events(filters, &mut ex) {
        return crashed(ex, dead);
    }
    let stream = open_stream(filters, &request);
    let mut chain = match Chain::create_contexts(filters, stream) {
        Ok(chain) => chain,
        Err(e) => return crashed(ex, e),
    };
    let (mut flow, mut body) = chain.decode_request(&request);
    if let Flow::Continue = flow {
        chain.forward_upstream(&request, body, &mut ex);
        (flow, body) = chain.encode_upstream_response(&request.response, &mut ex);
    }
    if let Flow::Local(sender) = flow {
        (flow, body) = chain.encode_local_reply(sender, body, &mut ex);
    }
    let flow = chain.check_framing(flow, &body, &ex);
    chain.answer_client(flow, body, &mut ex);
    chain.end_stream(&mut ex);
    if let Some(crash) = ex.crash.clone() {
        return crashed(ex, crash);
    }
    ex
}

/// Before the request: what each root context has due now (ticks, `http_call` answers)
/// fires first. The crash of a VM that is dead, if one is.
fn fire_due_events(filters: &mut [&mut Plugin], ex: &mut Exchange) -> Option<String> {
    for f in filters.iter_mut() {
        if let Err(e) = f.run_due() {
            ex.crash = Some(e);
        }
    }
    filters.iter().find_map(|f| f.crashed().map(str::to_string))
}

/// The connection manager opens the stream: its headers, the downstream address, the
/// request's properties, and when the client will give up.
fn open_stream(filters: &[&mut Plugin], request: &Request) -> Arc<Mutex<StreamState>> {
    let request_headers = connection_manager_headers(request);
    let source = downstream_address(request, &request_headers);
    let client_reset_at = request.client_resets_after.and_then(|after| {
        let now = filters.first()?.host().now_nanos();
        Some(now + after.as_nanos() as u64)
    });
    Arc::new(Mutex::new(StreamState {
        request_headers,
        request_trailers: request.trailers.clone(),
        properties: request.properties.iter().cloned().collect(),
        source,
        destination: request.destination.clone(),
        client_reset_at,
        ..StreamState::default()
    }))
}

/// One stream and the filters it runs through, each with its context for the stream.
struct Chain<'a, 'p> {
    filters: &'a mut [&'p mut Plugin],
    contexts: Vec<u32>,
    stream: Arc<Mutex<StreamState>>,
}

impl<'a, 'p> Chain<'a, 'p> {
    /// Each filter creates its context for the stream, in chain order.
    fn create_contexts(
        filters: &'a mut [&'p mut Plugin],
        stream: Arc<Mutex<StreamState>>,
    ) -> Result<Self, String> {
        let mut contexts = Vec::with_capacity(filters.len());
        for f in filters.iter_mut() {
            contexts.push(f.new_context()?);
            lock(&stream)
                .contexts
                .push((f.name().to_string(), *contexts.last().unwrap_or(&0)));
        }
        Ok(Self {
            filters,
            contexts,
            stream,
        })
    }

    /// One direction through the filters of `order` (see [`callbacks::through_filters`]).
    fn through_filters(
        &mut self,
        order: &[usize],
        frames: &[(Vec<u8>, bool)],
        trailers: bool,
        dir: Direction,
    ) -> (Flow, Vec<u8>) {
        let (filters, contexts, stream) = (&mut *self.filters, &self.contexts, &self.stream);
        through_filters(filters, contexts, stream, order, frames, trailers, dir)
    }

    /// Filter indices in chain order: the decoders.
    fn order(&self) -> Vec<usize> {
        (0..self.filters.len()).collect()
    }

    /// Filter indices in reverse chain order: the encoders.
    fn reverse(&self) -> Vec<usize> {
        self.order().iter().rev().copied().collect()
    }

    /// The request, filter by filter: headers, body, trailers. Returns the body that left
    /// the last filter.
    fn decode_request(&mut self, request: &Request) -> (Flow, Vec<u8>) {
        let trailers = !request.trailers.pairs.is_empty();
        let frames = http1_frames(&request.body, trailers);
        self.through_filters(&self.order(), &frames, trailers, Direction::Request)
    }

    /// The router forwards the request as the filters left it, and the upstream's response
    /// comes back.
    fn forward_upstream(&self, request: &Request, body: Vec<u8>, ex: &mut Exchange) {
        let mut s = lock(&self.stream);
        ex.upstream = Some(UpstreamRequest {
            headers: s.request_headers.clone(),
            body,
            trailers: s.request_trailers.clone(),
        });
        s.response_headers = request.response.headers.clone();
        // Envoy's router adds this before the encoders run.
        s.response_headers
            .add("x-envoy-upstream-service-time", b"1");
        s.response_trailers = request.response.trailers.clone();
        s.response_code = status_of(&s.response_headers);
    }

    /// The upstream's response through every filter, in reverse order. Returns the body that
    /// left the first filter.
    fn encode_upstream_response(
        &mut self,
        response: &UpstreamResponse,
        ex: &mut Exchange,
    ) -> (Flow, Vec<u8>) {
        let encoders = self.reverse();
        let trailers = !response.trailers.pairs.is_empty();
        let frames = http1_frames(&response.body, trailers);
        let (mut flow, mut body) =
            self.through_filters(&encoders, &frames, trailers, Direction::Response);
        if let Flow::Local(sender) = flow {
            // A local reply from an encoder callback: the response headers exist, so Envoy
            // never runs it through the filters (`FilterManager::sendLocalReply`).
            flow = late_local_reply(&self.stream, ex, self.filters[sender].name(), &mut body);
        }
        (flow, body)
    }

    /// A filter at `sender` answered the request itself: its local reply goes back through
    /// the filters that saw the request. `body` comes back unchanged if there is no reply.
    fn encode_local_reply(
        &mut self,
        sender: usize,
        mut body: Vec<u8>,
        ex: &mut Exchange,
    ) -> (Flow, Vec<u8>) {
        let mut flow = Flow::Local(sender);
        let local = lock(&self.stream).local_response.clone();
        if let Some(local) = local {
            ex.local_response = Some((self.filters[sender].name().to_string(), local.clone()));
            let mut s = lock(&self.stream);
            s.response_headers = local_response_headers(&local);
            s.response_code = Some(local.status);
            s.local_response = None;
            drop(s);
            // The local reply goes back through the filters that saw the request.
            let encoders: Vec<usize> = self
                .reverse()
                .iter()
                .copied()
                .filter(|i| *i <= sender)
                .collect();
            // Envoy encodes a local reply's body in one frame that ends the stream.
            let frames = if local.body.is_empty() {
                Vec::new()
            } else {
                vec![(local.body.clone(), true)]
            };
            let (f, out) = self.through_filters(&encoders, &frames, false, Direction::Response);
            body = out;
            flow = match f {
                // A second local response while answering the first is ignored by Envoy.
                Flow::Local(_) => Flow::Continue,
                other => other,
            };
        }
        (flow, body)
    }

    /// A body changed without its content-length leaves a peer waiting for bytes that never
    /// come (or reading garbage): Envoy does not fix the header, so neither does host-test.
    fn check_framing(&self, mut flow: Flow, body: &[u8], ex: &Exchange) -> Flow {
        if let Some(up) = &ex.upstream {
            if let Some(why) = framing_error(&up.headers, up.body.len(), "the upstream") {
                flow = Flow::Stalled(why);
            }
        }
        if matches!(flow, Flow::Continue | Flow::Local(_)) {
            let s = lock(&self.stream);
            if let Some(why) = framing_error(&s.response_headers, body.len(), "the client") {
                flow = Flow::Stalled(why);
            }
        }
        flow
    }

    /// What the client gets: the response as it left the filters, or nothing when the
    /// stream stalled or was reset.
    fn answer_client(&self, flow: Flow, body: Vec<u8>, ex: &mut Exchange) {
        match flow {
            Flow::Stalled(why) => ex.stalled = Some(why),
            Flow::Crashed(why) => ex.crash = Some(why),
            Flow::Reset => ex.reset = true,
            Flow::Held(_) => {
                ex.stalled =
                    Some("a filter held the headers with nothing left to resume them".into())
            }
            Flow::Continue | Flow::Local(_) => {}
        }
        {
            let s = lock(&self.stream);
            ex.response = ClientResponse {
                status: status_of(&s.response_headers).unwrap_or(0),
                headers: s.response_headers.clone(),
                body,
                trailers: s.response_trailers.clone(),
            };
            ex.filter_state = s.filter_state.clone();
        }
        if ex.stalled.is_some() || ex.reset {
            ex.response = ClientResponse::default();
        }
    }

    /// The end of the stream: on_log, on_done, on_delete, for every context; its
    /// `http_call`s cancelled, and what each filter's callbacks cost collected.
    fn end_stream(&mut self, ex: &mut Exchange) {
        let stream = &self.stream;
        lock(stream).access_log_phase = true;
        for (i, f) in self.filters.iter_mut().enumerate() {
            let ctx = self.contexts[i] as i32;
            if f.crashed().is_none() {
                let end = f.with_stream(stream, self.contexts[i], |p| {
                    p.call_optional::<i32, ()>("proxy_on_log", ctx)?;
                    p.call_optional::<i32, i32>("proxy_on_done", ctx)?;
                    p.call_optional::<i32, ()>("proxy_on_delete", ctx)
                });
                if let Err(e) = end {
                    ex.crash.get_or_insert(e);
                }
            }
            f.cancel_calls(self.contexts[i]);
            ex.metering.extend(f.take_metering());
        }
    }
}

fn framing_error(headers: &Headers, body: usize, peer: &str) -> Option<String> {
    let declared = headers.get_str("content-length")?;
    match declared.trim().parse::<usize>() {
        Ok(n) if n == body => None,
        _ => Some(format!(
            "content-length says {declared} but {body} body bytes reached {peer}: \
             a filter changed the body without fixing content-length"
        )),
    }
}

fn crashed(mut ex: Exchange, why: String) -> Exchange {
    // Envoy's fail-closed answer for a dead VM.
    ex.crash = Some(why);
    ex.upstream = None;
    ex.response = ClientResponse {
        status: 503,
        ..ClientResponse::default()
    };
    ex
}

fn status_of(headers: &Headers) -> Option<u16> {
    headers.get_str(":status")?.parse().ok()
}

/// The headers Envoy gives a local reply (seen by the probe conformance test): status, the
/// filter's headers, the length, and `content-type: text/plain` for a body the filter gave
/// no type.
fn local_response_headers(local: &LocalResponse) -> Headers {
    let mut headers = Headers::default();
    headers.add(":status", local.status.to_string().as_bytes());
    for (k, v) in &local.headers {
        headers.add(k, v);
    }
    if !local.body.is_empty() {
        headers.replace("content-length", local.body.len().to_string().as_bytes());
        if headers.get("content-type").is_none() {
            headers.add("content-type", b"text/plain");
        }
    }
    headers
}

/// A filter sent a local response from an encoder callback. Envoy's
/// `FilterManager::sendLocalReply`: while the response headers have not reached the codec,
/// the reply goes straight to the client, bypassing the filters (`sendDirectLocalReply`);
/// once they have, "Prior headers have already been sent" and the stream is reset.
fn late_local_reply(
    stream: &Arc<Mutex<StreamState>>,
    ex: &mut Exchange,
    sender: &str,
    body: &mut Vec<u8>,
) -> Flow {
    let mut s = lock(stream);
    let Some(local) = s.local_response.take() else {
        return Flow::Continue;
    };
    ex.local_response = Some((sender.to_string(), local.clone()));
    if s.response_headers_sent {
        return Flow::Reset;
    }
    s.response_headers = local_response_headers(&local);
    s.response_trailers = Headers::default();
    s.response_code = Some(local.status);
    s.response_headers_sent = true;
    *body = local.body;
    Flow::Continue
}
