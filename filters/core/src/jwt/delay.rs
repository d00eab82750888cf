//! Refusals held back by `failure_delay_ms` (Pingap's `delay`), per worker: answered by the
//! root context's tick once due, so a refusal takes as long whatever its reason. Bounded: at
//! most [`MAX_DELAYED`] streams wait at once, counting only streams still open, and past that
//! a refusal is answered at once; a tick with nothing due costs one look however many wait.

use std::collections::{BinaryHeap, HashSet};

use super::policy::Refusal;

/// At most this many refusals wait per worker, counting only streams still open (a client
/// that leaves frees its place); past it a refusal is answered at once, so a flood of bad
/// tokens cannot hold memory (or streams) without bound.
pub const MAX_DELAYED: usize = 1024;
/// The heap is compacted (entries of streams that ended dropped) when it reaches this size.
const MAX_ENTRIES: usize = 4 * MAX_DELAYED;

/// The refusals waiting for their time, soonest on top.
#[derive(Debug, Default)]
pub struct DelayedRefusals {
    heap: BinaryHeap<Entry>,
    /// The streams whose refusal waits in `heap` and that are still open: a stream that ends
    /// leaves this set at once, its heap entry when due or compacted.
    live: HashSet<u32>,
}

/// A refusal to send on stream `context` once `due_ms` (host clock) has passed.
#[derive(Debug)]
struct Entry {
    due_ms: u64,
    context: u32,
    refusal: Refusal,
}

/// Ordered by due time, soonest greatest, for the max-heap [`BinaryHeap`].
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.due_ms.cmp(&self.due_ms)
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.due_ms == other.due_ms
    }
}

impl Eq for Entry {}

impl DelayedRefusals {
    pub fn new() -> DelayedRefusals {
        DelayedRefusals::default()
    }

    /// Holds `refusal` for stream `context` until `due_ms`; gives it back to be answered at
    /// once when [`MAX_DELAYED`] open streams already wait.
    pub fn hold(&mut self, context: u32, due_ms: u64, refusal: Refusal) -> Result<(), Refusal> {
        if self.live.len() >= MAX_DELAYED {
            return Err(refusal);
        }
        self.heap.push(Entry {
            due_ms,
            context,
            refusal,
        });
        self.live.insert(context);
        if self.heap.len() >= MAX_ENTRIES {
            // At most MAX_DELAYED of them are live: this drops at least three quarters.
            let live = &self.live;
            self.heap.retain(|entry| live.contains(&entry.context));
        }
        Ok(())
    }

    /// The refusals due at `now_ms` whose stream is still open, soonest first, each with its
    /// stream; they no longer wait.
    pub fn due(&mut self, now_ms: u64) -> Vec<(u32, Refusal)> {
        let mut due = Vec::new();
        while self.heap.peek().is_some_and(|entry| entry.due_ms <= now_ms) {
            if let Some(entry) = self.heap.pop() {
                if self.live.remove(&entry.context) {
                    due.push((entry.context, entry.refusal));
                }
            }
        }
        due
    }

    /// Stream `context` ended (its client left): its place is free at once.
    pub fn ended(&mut self, context: u32) {
        self.live.remove(&context);
    }

    /// Whether nothing is held (the root context can tick slowly again).
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// How many open streams wait.
    pub fn waiting(&self) -> usize {
        self.live.len()
    }

    /// How many entries the heap holds, those of ended streams included.
    pub fn entries(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(status: u16) -> Refusal {
        Refusal {
            status,
            body: String::new(),
            www_authenticate: String::new(),
            delay_ms: 500,
        }
    }

    #[test]
    fn due_refusals_come_out_soonest_first_and_only_once_due() {
        let mut delayed = DelayedRefusals::new();
        assert_eq!(delayed.hold(1, 300, refusal(401)), Ok(()));
        assert_eq!(delayed.hold(2, 100, refusal(403)), Ok(()));
        assert_eq!(delayed.hold(3, 200, refusal(401)), Ok(()));
        assert!(delayed.due(99).is_empty());
        let due: Vec<u32> = delayed.due(200).into_iter().map(|(c, _)| c).collect();
        assert_eq!(due, vec![2, 3]);
        assert_eq!(delayed.waiting(), 1);
        assert_eq!(delayed.due(1000), vec![(1, refusal(401))]);
        assert!(delayed.is_empty());
    }

    #[test]
    fn past_the_bound_a_refusal_is_given_back_to_be_answered_at_once() {
        let mut delayed = DelayedRefusals::new();
        for context in 0..MAX_DELAYED as u32 {
            assert_eq!(delayed.hold(context, 1000, refusal(401)), Ok(()));
        }
        assert_eq!(delayed.waiting(), MAX_DELAYED);
        assert_eq!(delayed.hold(5000, 1000, refusal(401)), Err(refusal(401)));
        // A client that leaves frees its place at once.
        delayed.ended(7);
        assert_eq!(delayed.hold(5000, 1000, refusal(403)), Ok(()));
        assert_eq!(delayed.hold(5001, 1000, refusal(401)), Err(refusal(401)));
        let due = delayed.due(1000);
        assert_eq!(due.len(), MAX_DELAYED, "the ended stream gets nothing");
        assert!(due.iter().all(|(context, _)| *context != 7));
        assert!(due.contains(&(5000, refusal(403))));
    }

    #[test]
    fn clients_that_leave_cannot_grow_the_heap_past_its_bound() {
        // A flood of bad tokens whose clients reset at once: every stream ends right after
        // its refusal is held, so the bound on open streams never bites, but the heap must.
        let mut delayed = DelayedRefusals::new();
        for context in 0..100_000u32 {
            assert_eq!(delayed.hold(context, 1_000_000, refusal(401)), Ok(()));
            delayed.ended(context);
            assert!(delayed.entries() < MAX_ENTRIES, "{}", delayed.entries());
        }
        assert_eq!(delayed.waiting(), 0);
        assert!(
            delayed.due(1_000_000).is_empty(),
            "ended streams get nothing"
        );
        assert!(delayed.is_empty());
    }

    #[test]
    fn a_tick_with_nothing_due_leaves_everything_waiting() {
        let mut delayed = DelayedRefusals::new();
        for context in 0..MAX_DELAYED as u32 {
            assert_eq!(
                delayed.hold(context, 10_000 + u64::from(context), refusal(401)),
                Ok(())
            );
        }
        assert!(delayed.due(9_999).is_empty());
        assert_eq!(delayed.entries(), MAX_DELAYED);
        assert_eq!(delayed.due(10_000), vec![(0, refusal(401))]);
    }
}
