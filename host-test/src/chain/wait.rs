//! A filter paused the stream: time passes, answers and ticks arrive, until it goes on.

use std::sync::{Arc, Mutex};

use super::flow::{stopped, Direction, Flow};
use crate::host::lock;
use crate::plugin::Plugin;
use crate::stream::StreamState;

/// Root-context ticks a waiting request may sit through before it counts as stalled.
const MAX_TICKS_WHILE_WAITING: u32 = 10_000;

/// A filter paused: deliver its `http_call` answers until it continues, answers locally, or
/// nothing is left that could resume it.
pub(super) fn wait(
    plugin: &mut Plugin,
    context: u32,
    stream: &Arc<Mutex<StreamState>>,
    filter: usize,
    dir: Direction,
) -> Flow {
    let mut ticks = 0u32;
    loop {
        if let Some(flow) = stopped(stream, filter) {
            return flow;
        }
        {
            let mut s = lock(stream);
            let continued = match dir {
                Direction::Request => std::mem::take(&mut s.continued_request),
                Direction::Response => std::mem::take(&mut s.continued_response),
            };
            if continued {
                return Flow::Continue;
            }
        }
        // Time passes while the request waits: the next of its own http_call answers, the
        // root context's answers and ticks, in time order (the root context may answer or
        // resume the stream through set_effective_context). Bounded, so a filter that never
        // resumes is a stall. A client that gives up first resets the stream.
        let reset_at = lock(stream).client_reset_at;
        if let Some(reset_at) = reset_at {
            if plugin
                .next_event_due(context)
                .is_none_or(|due| due > reset_at)
            {
                plugin.set_clock(reset_at);
                return Flow::Reset;
            }
        }
        ticks += 1;
        let next = if ticks > MAX_TICKS_WHILE_WAITING {
            Ok(false)
        } else {
            plugin.deliver_next_event(context, stream)
        };
        match next {
            Ok(true) => {}
            Ok(false) => {
                return Flow::Stalled(format!(
                    "{} paused the {} and nothing resumed it",
                    plugin.name(),
                    if dir == Direction::Request {
                        "request"
                    } else {
                        "response"
                    }
                ))
            }
            Err(e) => return Flow::Crashed(e),
        }
    }
}
