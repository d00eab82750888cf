//! Where a stream stands after a filter's callback, and which way it runs.

use std::sync::{Arc, Mutex};

use crate::host::lock;
use crate::stream::StreamState;

pub(super) enum Flow {
    Continue,
    Local(usize),
    Stalled(String),
    Crashed(String),
    Reset,
    /// A filter of a plugin with `allow_on_headers_stop_iteration` paused the headers at this
    /// position of the chain order: they are held there while the body still comes to it.
    Held(usize),
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Direction {
    Request,
    Response,
}

/// After a callback: did the filter answer locally or reset the stream?
pub(super) fn stopped(stream: &Arc<Mutex<StreamState>>, filter: usize) -> Option<Flow> {
    let s = lock(stream);
    if s.reset {
        Some(Flow::Reset)
    } else if s.local_response.is_some() {
        Some(Flow::Local(filter))
    } else {
        None
    }
}

pub(super) fn clear_continue(stream: &Arc<Mutex<StreamState>>, dir: Direction) {
    let mut s = lock(stream);
    match dir {
        Direction::Request => s.continued_request = false,
        Direction::Response => s.continued_response = false,
    }
}
