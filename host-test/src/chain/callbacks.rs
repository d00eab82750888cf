//! One direction through the filters: the headers, body and trailers callbacks in chain
//! order, with pauses, held headers and buffered body.

use std::sync::{Arc, Mutex};

use super::flow::{clear_continue, stopped, Direction, Flow};
use super::wait::wait;
use crate::abi::{Action, MapType};
use crate::host::lock;
use crate::plugin::Plugin;
use crate::stream::StreamState;

/// One direction through the filters of `order`: headers, body, trailers. `frames` is the
/// body as it arrives (empty: none). Returns the body that left the last of them.
pub(super) fn through_filters(
    filters: &mut [&mut Plugin],
    contexts: &[u32],
    stream: &Arc<Mutex<StreamState>>,
    order: &[usize],
    frames: &[(Vec<u8>, bool)],
    trailers: bool,
    dir: Direction,
) -> (Flow, Vec<u8>) {
    let mut flow = headers_phase(
        filters,
        contexts,
        stream,
        order,
        dir,
        frames.is_empty() && !trailers,
    );
    let mut body = Vec::new();
    if matches!(flow, Flow::Continue | Flow::Held(_)) && !frames.is_empty() {
        (flow, body) = body_phase(filters, contexts, stream, order, frames, dir, flow);
    }
    if let Flow::Held(pos) = flow {
        flow = resume_held(filters, contexts, stream, order, pos, dir);
    }
    if matches!(flow, Flow::Continue) && trailers {
        flow = trailers_phase(filters, contexts, stream, order, dir);
    }
    (flow, body)
}

fn callback_name(dir: Direction, part: &str) -> String {
    match dir {
        Direction::Request => format!("proxy_on_request_{part}"),
        Direction::Response => format!("proxy_on_response_{part}"),
    }
}

fn headers_phase(
    filters: &mut [&mut Plugin],
    contexts: &[u32],
    stream: &Arc<Mutex<StreamState>>,
    order: &[usize],
    dir: Direction,
    end_of_stream: bool,
) -> Flow {
    let name = callback_name(dir, "headers");
    for (pos, &i) in order.iter().enumerate() {
        let count = {
            let s = lock(stream);
            match dir {
                Direction::Request => s.request_headers.pairs.len(),
                Direction::Response => s.response_headers.pairs.len(),
            }
        };
        clear_continue(stream, dir);
        let ctx = contexts[i];
        let result = filters[i].with_stream(stream, ctx, |p| {
            p.call_optional::<(i32, i32, i32), i32>(
                &name,
                (ctx as i32, count as i32, end_of_stream as i32),
            )
        });
        let action = match result {
            Ok(a) => Action::from_i32(a),
            Err(e) => return Flow::Crashed(e),
        };
        if let Some(flow) = stopped(stream, i) {
            return flow;
        }
        if action == Action::Pause {
            // proxy-wasm-cpp-host (`convertVmCallResultToFilterHeadersStatus`) passes
            // StopIteration on only with Envoy's flag; otherwise it becomes
            // StopAllIterationAndWatermark: no body until the filter resumes itself.
            if !end_of_stream && filters[i].allows_on_headers_stop_iteration() {
                return Flow::Held(pos);
            }
            match wait(filters[i], ctx, stream, i, dir) {
                Flow::Continue => {}
                other => return other,
            }
        } else {
            release(stream, filters[i], ctx, dir, false);
        }
    }
    if dir == Direction::Response {
        lock(stream).response_headers_sent = true;
    }
    Flow::Continue
}

/// Headers held at `order[pos]` go on: the filter continued its body (or the body ended).
/// The later filters get them with `end_of_stream` false, as body follows; one of them may
/// hold them again (the position returned is in `order`).
fn resume_held(
    filters: &mut [&mut Plugin],
    contexts: &[u32],
    stream: &Arc<Mutex<StreamState>>,
    order: &[usize],
    pos: usize,
    dir: Direction,
) -> Flow {
    let rest = order.get(pos + 1..).unwrap_or_default();
    match headers_phase(filters, contexts, stream, rest, dir, false) {
        Flow::Held(p) => Flow::Held(pos + 1 + p),
        other => other,
    }
}

/// Envoy forgets a filter's header (or trailer) map once its callback answers Continue.
fn release(
    stream: &Arc<Mutex<StreamState>>,
    plugin: &Plugin,
    context: u32,
    dir: Direction,
    trailers: bool,
) {
    let map = match (dir, trailers) {
        (Direction::Request, false) => MapType::RequestHeaders,
        (Direction::Request, true) => MapType::RequestTrailers,
        (Direction::Response, false) => MapType::ResponseHeaders,
        (Direction::Response, true) => MapType::ResponseTrailers,
    };
    lock(stream)
        .released
        .push((plugin.instance_id(), context, map));
}

fn trailers_phase(
    filters: &mut [&mut Plugin],
    contexts: &[u32],
    stream: &Arc<Mutex<StreamState>>,
    order: &[usize],
    dir: Direction,
) -> Flow {
    let name = callback_name(dir, "trailers");
    for &i in order {
        let count = {
            let s = lock(stream);
            match dir {
                Direction::Request => s.request_trailers.pairs.len(),
                Direction::Response => s.response_trailers.pairs.len(),
            }
        };
        clear_continue(stream, dir);
        let ctx = contexts[i];
        let result = filters[i].with_stream(stream, ctx, |p| {
            p.call_optional::<(i32, i32), i32>(&name, (ctx as i32, count as i32))
        });
        let action = match result {
            Ok(a) => Action::from_i32(a),
            Err(e) => return Flow::Crashed(e),
        };
        if let Some(flow) = stopped(stream, i) {
            return flow;
        }
        if action == Action::Pause {
            match wait(filters[i], ctx, stream, i, dir) {
                Flow::Continue => {}
                other => return other,
            }
        } else {
            release(stream, filters[i], ctx, dir, true);
        }
    }
    Flow::Continue
}

/// How Envoy's HTTP/1 codec frames a body: every chunk as it arrives, not yet the end, then
/// an empty frame that ends the stream (unless trailers end it). No chunks, no frames: the
/// headers (or the trailers) end the stream.
pub(super) fn http1_frames(chunks: &[Vec<u8>], trailers: bool) -> Vec<(Vec<u8>, bool)> {
    if chunks.is_empty() {
        return Vec::new();
    }
    let mut frames: Vec<(Vec<u8>, bool)> = chunks.iter().map(|c| (c.clone(), false)).collect();
    if !trailers {
        frames.push((Vec::new(), true));
    }
    frames
}

/// Body chunks through the filters. A filter that pauses before the end of the stream buffers:
/// its next callback sees everything buffered so far, as with Envoy's
/// `StopIterationAndBuffer`. Returns what left the last filter.
fn body_phase(
    filters: &mut [&mut Plugin],
    contexts: &[u32],
    stream: &Arc<Mutex<StreamState>>,
    order: &[usize],
    frames: &[(Vec<u8>, bool)],
    dir: Direction,
    headers: Flow,
) -> (Flow, Vec<u8>) {
    let name = callback_name(dir, "body");
    // Where the headers are held, if they are: data goes no further until they go on.
    let mut held = match headers {
        Flow::Held(pos) => Some(pos),
        _ => None,
    };
    let mut pending: Vec<Vec<u8>> = vec![Vec::new(); order.len()];
    let mut out = Vec::new();
    let swap = |s: &mut StreamState, data: &mut Vec<u8>| match dir {
        Direction::Request => std::mem::swap(&mut s.request_body, data),
        Direction::Response => std::mem::swap(&mut s.response_body, data),
    };
    for (chunk, end_of_stream) in frames {
        let end_of_stream = *end_of_stream;
        let mut data = chunk.clone();
        let mut reached_end = true;
        for (pos, &i) in order.iter().enumerate() {
            pending[pos].extend_from_slice(&data);
            let size = pending[pos].len();
            swap(&mut lock(stream), &mut pending[pos]);
            clear_continue(stream, dir);
            let ctx = contexts[i];
            let result = filters[i].with_stream(stream, ctx, |p| {
                p.call_optional::<(i32, i32, i32), i32>(
                    &name,
                    (ctx as i32, size as i32, end_of_stream as i32),
                )
            });
            let action = match result {
                Ok(a) => Action::from_i32(a),
                Err(e) => return (Flow::Crashed(e), out),
            };
            if let Some(flow) = stopped(stream, i) {
                return (flow, out);
            }
            if action == Action::Pause {
                if !end_of_stream {
                    swap(&mut lock(stream), &mut pending[pos]);
                    reached_end = false;
                    break;
                }
                match wait(filters[i], ctx, stream, i, dir) {
                    Flow::Continue => {}
                    other => return (other, out),
                }
            }
            swap(&mut lock(stream), &mut pending[pos]);
            if held == Some(pos) {
                // Continue from the body of a filter holding the headers: they go on first.
                held = None;
                match resume_held(filters, contexts, stream, order, pos, dir) {
                    Flow::Continue => {}
                    Flow::Held(p) => held = Some(p),
                    other => return (other, out),
                }
            }
            data = std::mem::take(&mut pending[pos]);
        }
        if reached_end {
            out.extend_from_slice(&data);
        }
    }
    // Data still buffered when trailers follow is released with them.
    for rest in pending {
        out.extend_from_slice(&rest);
    }
    match held {
        Some(pos) => (Flow::Held(pos), out),
        None => (Flow::Continue, out),
    }
}
