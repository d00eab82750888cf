//! The one poller per Envoy: whichever worker holds the lease in shared data reads the
//! admin's change feed every `poll_interval_ms` and writes, for every worker, what each
//! change means (the admin's contract, services/admin/README.md, items 1–3):
//!
//! 1. Nothing loaded (start, or after a reset): `GET /v1/revocations`, store the snapshot,
//!    and only then mark the head loaded (until then looked-up tokens are refused).
//! 2. Every poll: `GET /v1/changes?after=<applied>`; each event's `credentials` are dropped
//!    (their slots cleared, a log record for the workers); a revocation event's delta is
//!    fetched (`GET /v1/revocations/{id}`) and applied, all of a batch before any of it.
//! 3. `reset`, or another `epoch`: a new generation — every worker drops everything — and
//!    back to 1.
//!
//! The glue dispatches each [`Call`] from the root context and hands the answer back.

use std::collections::HashMap;

use super::answer::{read, ChangesAnswer, Event, Revocation, RevocationAnswer, RevocationsAnswer};
use super::revocations::RevocationSet;
use super::settings::{path_segment, ConsumerSource};
use super::shared::{lease, Change, Head, Record, Slots, Snapshot};
use crate::shared::{SharedStore, StoreError, Written};

/// Events read per poll; a full batch is followed at once by the next.
pub const BATCH: usize = 100;

/// A call to the admin's data plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Revocations,
    Changes { after: u64 },
    Revocation { id: String },
    Credential { key: String },
}

impl Call {
    pub fn path(&self) -> String {
        match self {
            Call::Revocations => "/v1/revocations".to_owned(),
            Call::Changes { after } => format!("/v1/changes?after={after}&limit={BATCH}"),
            Call::Revocation { id } => format!("/v1/revocations/{}", path_segment(id)),
            Call::Credential { key } => format!("/v1/credentials/{}", path_segment(key)),
        }
    }
}

/// What a poll achieved, for the log and the metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still waiting for answers of this poll.
    Pending,
    /// Revocations loaded: looked-up tokens are admitted from now on.
    Loaded { revocations: usize },
    /// Events applied (0: the feed had nothing new).
    Applied { events: usize },
    /// The feed was reset or its epoch changed: everything dropped, reloading.
    Reset,
    /// The admin did not answer usefully; nothing changed.
    Failed(String),
}

enum Flight {
    Loading,
    Changes,
    Deltas {
        epoch: String,
        events: Vec<Event>,
        wanted: usize,
        got: HashMap<String, Option<Revocation>>,
        grace: u64,
    },
}

/// The poller of one worker (polling only while it holds the lease).
pub struct Poller {
    source: ConsumerSource,
    slots: Slots,
    owner: u64,
    last_poll_ms: Option<u64>,
    flight: Option<(u64, Flight)>,
    /// The revocations in force, of a generation: the poller rewrites the snapshot from it.
    revocations: Option<(u64, RevocationSet)>,
}

impl Poller {
    /// `owner`: this worker's id ([`worker_id`](super::shared::worker_id)).
    pub fn new(source: ConsumerSource, owner: u64) -> Poller {
        Poller {
            slots: Slots {
                size: source.cache_size,
            },
            source,
            owner,
            last_poll_ms: None,
            flight: None,
            revocations: None,
        }
    }

    /// The calls to dispatch now, if a poll is due and this worker holds the lease.
    pub fn tick(&mut self, store: &dyn SharedStore, now_ms: u64) -> Result<Vec<Call>, StoreError> {
        let s = &self.source;
        if let Some((since, _)) = &self.flight {
            // Envoy answers every dispatched call (at worst with its timeout); one lost
            // anyway (a host quirk) must not stop the poller for good.
            if now_ms < since.saturating_add(2 * s.timeout_ms) {
                return Ok(Vec::new());
            }
            self.flight = None;
        }
        // Due a tenth early: the host's timer may fire a little before the interval, and
        // a tick missed by a millisecond would double the delay.
        let due_after = s.poll_interval_ms - s.poll_interval_ms / 10;
        if self
            .last_poll_ms
            .is_some_and(|last| now_ms < last.saturating_add(due_after))
        {
            return Ok(Vec::new());
        }
        let until = now_ms
            .saturating_add(2 * s.poll_interval_ms)
            .saturating_add(s.timeout_ms);
        if !lease(store, self.owner, now_ms, until)? {
            // Another worker polls; its copy is the one that counts.
            self.revocations = None;
            return Ok(Vec::new());
        }
        self.last_poll_ms = Some(now_ms);
        let (head, _) = Head::read(store)?;
        if head.loaded && self.copy(store, &head)? {
            self.flight = Some((now_ms, Flight::Changes));
            return Ok(vec![Call::Changes {
                after: head.applied,
            }]);
        }
        self.flight = Some((now_ms, Flight::Loading));
        Ok(vec![Call::Revocations])
    }

    /// Whether this poller has the revocations of `head`'s generation (from the shared
    /// snapshot, when it took over from another worker).
    fn copy(&mut self, store: &dyn SharedStore, head: &Head) -> Result<bool, StoreError> {
        if self
            .revocations
            .as_ref()
            .is_some_and(|(g, _)| *g == head.generation)
        {
            return Ok(true);
        }
        let Some(snapshot) = Snapshot::read(store, head.generation)? else {
            return Ok(false);
        };
        let mut set = RevocationSet::of(snapshot.grace, snapshot.entries);
        for seq in snapshot.seq + 1..=head.seq {
            match Record::read(store, seq, head.generation)?.map(|r| r.change) {
                Some(Change::Revoke(entry)) => set.insert(entry),
                Some(Change::Unrevoke(id)) => set.remove(&id),
                Some(Change::Drop { .. }) => {}
                // Overwritten: reload instead.
                None => return Ok(false),
            }
        }
        self.revocations = Some((head.generation, set));
        Ok(true)
    }

    /// Takes the answer to `call`; returns further calls to dispatch and what the poll
    /// achieved.
    pub fn answered(
        &mut self,
        store: &dyn SharedStore,
        call: &Call,
        status: Option<&str>,
        body: &[u8],
        now_ms: u64,
    ) -> Result<(Vec<Call>, Outcome), StoreError> {
        let Some((since, flight)) = self.flight.take() else {
            return Ok((
                Vec::new(),
                Outcome::Failed("an answer nobody waits for".into()),
            ));
        };
        match (call, flight) {
            (Call::Revocations, Flight::Loading) => match read::<RevocationsAnswer>(status, body) {
                Ok(answer) => self.load(store, answer, now_ms).map(|o| (Vec::new(), o)),
                Err(why) => Ok((Vec::new(), Outcome::Failed(why))),
            },
            (Call::Changes { .. }, Flight::Changes) => match read::<ChangesAnswer>(status, body) {
                Ok(answer) => self.changes(store, answer, since, now_ms),
                Err(why) => Ok((Vec::new(), Outcome::Failed(why))),
            },
            (
                Call::Revocation { id },
                Flight::Deltas {
                    epoch,
                    events,
                    wanted,
                    mut got,
                    grace,
                },
            ) => {
                let answer = match read::<RevocationAnswer>(status, body) {
                    Ok(answer) if answer.epoch == epoch => answer,
                    // The rest of the batch's answers find no flight and are ignored; the
                    // next poll starts over from the last event applied.
                    Ok(_) => return Ok((Vec::new(), Outcome::Failed("epoch changed".into()))),
                    Err(why) => return Ok((Vec::new(), Outcome::Failed(why))),
                };
                let entry = answer.revocation.filter(|_| answer.found);
                if entry.as_ref().is_some_and(|e| e.id != *id) {
                    return Ok((Vec::new(), Outcome::Failed("delta of another id".into())));
                }
                got.insert(id.clone(), entry);
                let grace = grace.max(answer.grace);
                if got.len() < wanted {
                    self.flight = Some((
                        since,
                        Flight::Deltas {
                            epoch,
                            events,
                            wanted,
                            got,
                            grace,
                        },
                    ));
                    return Ok((Vec::new(), Outcome::Pending));
                }
                self.publish(store, &events, &got, grace, now_ms)
                    .map(|o| (Vec::new(), o))
            }
            (_, flight) => {
                self.flight = Some((since, flight));
                Ok((Vec::new(), Outcome::Pending))
            }
        }
    }

    fn load(
        &mut self,
        store: &dyn SharedStore,
        answer: RevocationsAnswer,
        now_ms: u64,
    ) -> Result<Outcome, StoreError> {
        let (head, cas) = Head::read(store)?;
        // Loading while loaded (a poller without a usable copy) starts a new generation:
        // what the workers hold may predate this list.
        let generation = head.generation + u64::from(head.loaded);
        let RevocationsAnswer {
            epoch,
            head: answer_head,
            grace,
            jtis,
            consumers,
            credentials,
        } = answer;
        let mut set =
            RevocationSet::of(grace, jtis.into_iter().chain(consumers).chain(credentials));
        set.expire(now_ms / 1000);
        Snapshot {
            generation,
            seq: head.seq,
            grace,
            entries: set.entries().cloned().collect(),
        }
        .write(store)?;
        let loaded = Head {
            seq: head.seq,
            generation,
            last_ok_ms: now_ms,
            applied: answer_head,
            loaded: true,
            epoch,
        };
        if store.cas_set(&super::shared::head_key(), &loaded.encode(), cas)? != Written::Ok {
            return Ok(Outcome::Failed("another poller wrote the head".into()));
        }
        let revocations = set.len();
        self.revocations = Some((generation, set));
        Ok(Outcome::Loaded { revocations })
    }

    fn changes(
        &mut self,
        store: &dyn SharedStore,
        answer: ChangesAnswer,
        since: u64,
        now_ms: u64,
    ) -> Result<(Vec<Call>, Outcome), StoreError> {
        let (head, cas) = Head::read(store)?;
        if answer.reset || answer.epoch != head.epoch {
            let reset = Head {
                seq: head.seq,
                generation: head.generation + 1,
                last_ok_ms: now_ms,
                applied: 0,
                loaded: false,
                epoch: String::new(),
            };
            if store.cas_set(&super::shared::head_key(), &reset.encode(), cas)? != Written::Ok {
                return Ok((
                    Vec::new(),
                    Outcome::Failed("another poller wrote the head".into()),
                ));
            }
            self.revocations = None;
            self.flight = Some((now_ms, Flight::Loading));
            return Ok((vec![Call::Revocations], Outcome::Reset));
        }
        let mut events: Vec<Event> = answer
            .events
            .into_iter()
            .filter(|e| e.id > head.applied)
            .collect();
        events.sort_by_key(|e| e.id);
        if events.len() >= BATCH {
            // More to read: poll again at the next tick.
            self.last_poll_ms = None;
        }
        let mut ids: Vec<String> = events
            .iter()
            .filter_map(|e| e.revocation().map(str::to_owned))
            .collect();
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return self
                .publish(store, &events, &HashMap::new(), 0, now_ms)
                .map(|o| (Vec::new(), o));
        }
        let calls = ids
            .iter()
            .map(|id| Call::Revocation { id: id.clone() })
            .collect();
        self.flight = Some((
            since,
            Flight::Deltas {
                epoch: answer.epoch,
                events,
                wanted: ids.len(),
                got: HashMap::new(),
                grace: 0,
            },
        ));
        Ok((calls, Outcome::Pending))
    }

    /// Writes what `events` mean for the workers — slots cleared, log records, the
    /// snapshot when revocations changed — then the head that makes them visible.
    fn publish(
        &mut self,
        store: &dyn SharedStore,
        events: &[Event],
        deltas: &HashMap<String, Option<Revocation>>,
        grace: u64,
        now_ms: u64,
    ) -> Result<Outcome, StoreError> {
        let (head, cas) = Head::read(store)?;
        let Some((generation, mut set)) = self.revocations.take() else {
            return Ok(Outcome::Failed("no revocations copy".into()));
        };
        if generation != head.generation || !head.loaded {
            return Ok(Outcome::Failed("the generation changed".into()));
        }
        let mut seq = head.seq;
        let mut record = |change: Change| -> Result<(), StoreError> {
            seq += 1;
            Record {
                seq,
                generation,
                change,
            }
            .write(store)
        };
        let mut revocations_changed = false;
        for event in events {
            if !event.credentials.is_empty() {
                for key in &event.credentials {
                    self.slots.clear(store, key, event.id)?;
                }
                record(Change::Drop {
                    event: event.id,
                    keys: event.credentials.clone(),
                })?;
            }
            if let Some(id) = event.revocation() {
                revocations_changed = true;
                match deltas.get(id) {
                    Some(Some(entry)) => {
                        set.insert(entry.clone());
                        record(Change::Revoke(entry.clone()))?;
                    }
                    _ => {
                        set.remove(id);
                        record(Change::Unrevoke(id.to_owned()))?;
                    }
                }
            }
        }
        if grace > set.grace() {
            set.set_grace(grace);
        }
        if revocations_changed {
            set.expire(now_ms / 1000);
            Snapshot {
                generation,
                seq,
                grace: set.grace(),
                entries: set.entries().cloned().collect(),
            }
            .write(store)?;
        }
        let applied = events.last().map_or(head.applied, |e| e.id);
        let next = Head {
            seq,
            last_ok_ms: now_ms,
            applied,
            ..head
        };
        if store.cas_set(&super::shared::head_key(), &next.encode(), cas)? != Written::Ok {
            return Ok(Outcome::Failed("another poller wrote the head".into()));
        }
        self.revocations = Some((generation, set));
        Ok(Outcome::Applied {
            events: events.len(),
        })
    }
}
