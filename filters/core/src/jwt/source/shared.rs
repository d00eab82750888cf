//! What every worker of one Envoy shares about the consumer source, in shared data (keys
//! under `portcullis.jwt.source.`):
//!
//! - `head`: where the followed feed stands — the last log record (`seq`), the
//!   `generation` (bumped when everything must be dropped: a reset or another epoch),
//!   whether the revocations of this generation are `loaded`, when the admin last answered
//!   the poller (`last_ok_ms`), the admin event id `applied`, the admin's `epoch`. Read on
//!   every request that needs the source: a fixed 33-byte prefix, then the epoch.
//! - `log.<seq % RING>`: what each applied change means for the workers ([`Change`]): keys to
//!   drop, revocations added or removed. A worker more than [`RING`] records behind reloads.
//! - `revocations`: every revocation in force, as of a `seq` (what a worker starts from).
//! - `slot.<hash(key) % cache_size>`: one looked-up key per slot — a lookup under way, the
//!   admin's answer, or the key unknown — so one lookup serves every worker, and the table
//!   is bounded whatever keys clients send (a key evicts the one in its slot).
//! - `poller`: who polls (a worker id and a lease), `lookups`: lookups this second,
//!   `workers`: the counter that gives each worker its id.

use super::answer::Revocation;
use crate::shared::{SharedStore, StoreError, Written};

/// Log records kept: a worker further behind drops everything and reloads.
pub const RING: u64 = 512;

const PREFIX: &str = "portcullis.jwt.source";

pub fn head_key() -> String {
    format!("{PREFIX}.head")
}

fn log_key(seq: u64) -> String {
    format!("{PREFIX}.log.{}", seq % RING)
}

fn revocations_key() -> String {
    format!("{PREFIX}.revocations")
}

fn slot_key(index: usize) -> String {
    format!("{PREFIX}.slot.{index}")
}

/// Where the followed feed stands, for every worker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub generation: u64,
    pub last_ok_ms: u64,
    pub applied: u64,
    pub loaded: bool,
    pub epoch: String,
}

impl Head {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(33 + self.epoch.len());
        for n in [self.seq, self.generation, self.last_ok_ms, self.applied] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.push(u8::from(self.loaded));
        out.extend_from_slice(self.epoch.as_bytes());
        out
    }

    /// `None` for bytes this version did not write.
    pub fn decode(bytes: &[u8]) -> Option<Head> {
        let word = |i: usize| -> Option<u64> {
            let b: [u8; 8] = bytes.get(i * 8..i * 8 + 8)?.try_into().ok()?;
            Some(u64::from_le_bytes(b))
        };
        Some(Head {
            seq: word(0)?,
            generation: word(1)?,
            last_ok_ms: word(2)?,
            applied: word(3)?,
            loaded: *bytes.get(32)? == 1,
            epoch: String::from_utf8(bytes.get(33..)?.to_vec()).ok()?,
        })
    }

    /// The head and its CAS; the default (generation 0, nothing loaded) when never written.
    pub fn read(store: &dyn SharedStore) -> Result<(Head, u32), StoreError> {
        match store.get(&head_key())? {
            None => Ok((Head::default(), 0)),
            Some((bytes, cas)) => Head::decode(&bytes)
                .map(|head| (head, cas))
                .ok_or_else(|| StoreError("the source head does not decode".to_owned())),
        }
    }
}

/// What one applied change means for the workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// These keys' answers changed at admin event `event`: drop what was read before it
    /// (a later request looks them up again); an answer read at or after it already has
    /// the change and stays.
    Drop { event: u64, keys: Vec<String> },
    /// A revocation is (again) in force.
    Revoke(Revocation),
    /// A revocation was deleted or forgotten.
    Unrevoke(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub generation: u64,
    pub change: Change,
}

impl Record {
    pub fn write(&self, store: &dyn SharedStore) -> Result<(), StoreError> {
        let mut w = Writer::default();
        w.u64(self.seq);
        w.u64(self.generation);
        match &self.change {
            Change::Drop { event, keys } => {
                w.byte(1);
                w.u64(*event);
                w.u64(keys.len() as u64);
                for key in keys {
                    w.str(key);
                }
            }
            Change::Revoke(entry) => {
                w.byte(2);
                w.revocation(entry);
            }
            Change::Unrevoke(id) => {
                w.byte(3);
                w.str(id);
            }
        }
        store.cas_set(&log_key(self.seq), &w.0, 0).map(drop)
    }

    /// Record `seq` of `generation`, `None` when the ring holds another one (overwritten).
    pub fn read(
        store: &dyn SharedStore,
        seq: u64,
        generation: u64,
    ) -> Result<Option<Record>, StoreError> {
        let Some((bytes, _)) = store.get(&log_key(seq))? else {
            return Ok(None);
        };
        Ok(Record::decode(&bytes).filter(|r| r.seq == seq && r.generation == generation))
    }

    fn decode(bytes: &[u8]) -> Option<Record> {
        let mut r = Reader { bytes, at: 0 };
        let (seq, generation) = (r.u64()?, r.u64()?);
        let change = match r.byte()? {
            1 => {
                let event = r.u64()?;
                let count = r.u64()?;
                let mut keys = Vec::new();
                for _ in 0..count {
                    keys.push(r.str()?);
                }
                Change::Drop { event, keys }
            }
            2 => Change::Revoke(r.revocation()?),
            3 => Change::Unrevoke(r.str()?),
            _ => return None,
        };
        Some(Record {
            seq,
            generation,
            change,
        })
    }
}

/// Every revocation in force as of log record `seq` of `generation`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub generation: u64,
    pub seq: u64,
    pub grace: u64,
    pub entries: Vec<Revocation>,
}

impl Snapshot {
    pub fn write(&self, store: &dyn SharedStore) -> Result<(), StoreError> {
        let mut w = Writer::default();
        w.u64(self.generation);
        w.u64(self.seq);
        w.u64(self.grace);
        w.u64(self.entries.len() as u64);
        for entry in &self.entries {
            w.revocation(entry);
        }
        store.cas_set(&revocations_key(), &w.0, 0).map(drop)
    }

    /// The snapshot of `generation`, if that is the one stored.
    pub fn read(store: &dyn SharedStore, generation: u64) -> Result<Option<Snapshot>, StoreError> {
        let Some((bytes, _)) = store.get(&revocations_key())? else {
            return Ok(None);
        };
        Ok(Snapshot::decode(&bytes).filter(|s| s.generation == generation))
    }

    fn decode(bytes: &[u8]) -> Option<Snapshot> {
        let mut r = Reader { bytes, at: 0 };
        let (generation, seq, grace, count) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let mut entries = Vec::new();
        for _ in 0..count {
            entries.push(r.revocation()?);
        }
        Some(Snapshot {
            generation,
            seq,
            grace,
            entries,
        })
    }
}

/// The shared records' encoding: little-endian numbers, length-prefixed text, a flag byte
/// before what may be absent. (serde_json would do, at kilobytes of module size.)
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn byte(&mut self, b: u8) {
        self.0.push(b);
    }

    fn u64(&mut self, n: u64) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.byte(1);
                self.str(s);
            }
            None => self.byte(0),
        }
    }

    fn opt_i64(&mut self, n: Option<i64>) {
        match n {
            Some(n) => {
                self.byte(1);
                self.0.extend_from_slice(&n.to_le_bytes());
            }
            None => self.byte(0),
        }
    }

    fn revocation(&mut self, r: &Revocation) {
        self.str(&r.id);
        self.opt_i64(r.expires_at);
        for field in [&r.jti, &r.consumer_id, &r.credential_id, &r.key] {
            self.opt_str(field.as_deref());
        }
        self.opt_i64(r.issued_before);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let taken = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(taken)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<String> {
        let len = usize::try_from(self.u64()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    fn opt_str(&mut self) -> Option<Option<String>> {
        match self.byte()? {
            0 => Some(None),
            1 => self.str().map(Some),
            _ => None,
        }
    }

    fn opt_i64(&mut self) -> Option<Option<i64>> {
        match self.byte()? {
            0 => Some(None),
            1 => Some(Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))),
            _ => None,
        }
    }

    fn revocation(&mut self) -> Option<Revocation> {
        Some(Revocation {
            id: self.str()?,
            expires_at: self.opt_i64()?,
            jti: self.opt_str()?,
            consumer_id: self.opt_str()?,
            credential_id: self.opt_str()?,
            key: self.opt_str()?,
            issued_before: self.opt_i64()?,
        })
    }
}

/// What a slot says about its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// A worker is looking the key up (since `at_ms`).
    Pending,
    /// The admin's answer: the credential (the answer's JSON).
    Found(Vec<u8>),
    /// The admin knows no credential with this key (as of `at_ms`).
    Missing,
    /// The last lookup failed at `at_ms` (no answer, a status other than 200, garbage):
    /// requests for the key are refused until [`FAILURE_BACKOFF_MS`] has passed, so a
    /// failing admin gets one lookup per key per backoff, not one per request.
    Failed,
}

/// How long a failed lookup stands before the key may be looked up again.
pub const FAILURE_BACKOFF_MS: u64 = 1000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub generation: u64,
    pub at_ms: u64,
    /// The admin's `head` when it answered (0 while pending or failed).
    pub head: u64,
    pub key: String,
    pub state: SlotState,
}

impl Slot {
    pub fn encode(&self) -> Vec<u8> {
        let (tag, body): (u8, &[u8]) = match &self.state {
            SlotState::Pending => (1, &[]),
            SlotState::Found(body) => (2, body),
            SlotState::Missing => (3, &[]),
            SlotState::Failed => (4, &[]),
        };
        let mut out = Vec::with_capacity(29 + self.key.len() + body.len());
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.at_ms.to_le_bytes());
        out.extend_from_slice(&self.head.to_le_bytes());
        out.push(tag);
        out.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(body);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Slot> {
        let word = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        let len = u32::from_le_bytes(bytes.get(25..29)?.try_into().ok()?) as usize;
        let key = String::from_utf8(bytes.get(29..29usize.checked_add(len)?)?.to_vec()).ok()?;
        let body = bytes.get(29 + len..)?;
        let state = match bytes.get(24)? {
            1 => SlotState::Pending,
            2 => SlotState::Found(body.to_vec()),
            3 => SlotState::Missing,
            4 => SlotState::Failed,
            _ => return None,
        };
        Some(Slot {
            generation: word(0)?,
            at_ms: word(8)?,
            head: word(16)?,
            key,
            state,
        })
    }
}

/// The slot table: `size` slots, a key's place chosen by a hash of it.
#[derive(Clone, Copy, Debug)]
pub struct Slots {
    pub size: usize,
}

impl Slots {
    /// The shared-data key of `key`'s slot.
    pub fn key_of(&self, key: &str) -> String {
        slot_key(self.index(key))
    }

    pub fn index(&self, key: &str) -> usize {
        // FNV-1a: stable across workers and builds (the std hasher is seeded per process).
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        (hash % self.size.max(1) as u64) as usize
    }

    /// The slot of `key` and its CAS (0 when never written). A slot that does not decode
    /// reads as empty.
    pub fn read(
        &self,
        store: &dyn SharedStore,
        key: &str,
    ) -> Result<(Option<Slot>, u32), StoreError> {
        match store.get(&slot_key(self.index(key)))? {
            None => Ok((None, 0)),
            Some((bytes, cas)) => Ok((Slot::decode(&bytes), cas)),
        }
    }

    /// Writes `slot` in its key's place if its CAS is still `cas`.
    pub fn write(
        &self,
        store: &dyn SharedStore,
        slot: &Slot,
        cas: u32,
    ) -> Result<Written, StoreError> {
        store.cas_set(&slot_key(self.index(&slot.key)), &slot.encode(), cas)
    }

    /// Empties `key`'s place if `key` holds it with an answer read before admin event
    /// `before`, or a lookup under way (which then cannot store its answer: its CAS no
    /// longer matches), or a failure.
    pub fn clear(&self, store: &dyn SharedStore, key: &str, before: u64) -> Result<(), StoreError> {
        let (slot, cas) = self.read(store, key)?;
        let stale = |s: &Slot| match s.state {
            SlotState::Found(_) | SlotState::Missing => s.head < before,
            SlotState::Pending | SlotState::Failed => true,
        };
        if slot.is_some_and(|s| s.key == key && stale(&s)) {
            store.cas_set(&slot_key(self.index(key)), &[], cas)?;
        }
        Ok(())
    }
}

/// Counts a lookup against the per-second cap; `false` when this second's are used up (or
/// the count lost a race more than a few times: refuse rather than exceed).
pub fn count_lookup(store: &dyn SharedStore, now_ms: u64, cap: u32) -> Result<bool, StoreError> {
    let key = format!("{PREFIX}.lookups");
    let second = now_ms / 1000;
    for _ in 0..4 {
        let (count, cas) = match store.get(&key)? {
            Some((bytes, cas)) if bytes.len() == 12 => {
                let at = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
                let n = u32::from_le_bytes(bytes[8..].try_into().unwrap_or_default());
                (if at == second { n } else { 0 }, cas)
            }
            Some((_, cas)) => (0, cas),
            None => (0, 0),
        };
        if count >= cap {
            return Ok(false);
        }
        let mut value = second.to_le_bytes().to_vec();
        value.extend_from_slice(&(count + 1).to_le_bytes());
        // A key never written has CAS 0, which writes unconditionally: a race there
        // costs at most one lookup over the cap, once.
        if store.cas_set(&key, &value, cas)? == Written::Ok {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A number no other worker of this Envoy has (for the poller's lease).
pub fn worker_id(store: &dyn SharedStore) -> Result<u64, StoreError> {
    let key = format!("{PREFIX}.workers");
    loop {
        let (n, cas) = match store.get(&key)? {
            Some((bytes, cas)) => (
                bytes
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u64::from_le_bytes),
                cas,
            ),
            None => (0, 0),
        };
        if store.cas_set(&key, &(n + 1).to_le_bytes(), cas)? == Written::Ok {
            return Ok(n + 1);
        }
    }
}

/// Takes or renews the poller's lease for `owner` until `until_ms`; `false` when another
/// worker holds it.
pub fn lease(
    store: &dyn SharedStore,
    owner: u64,
    now_ms: u64,
    until_ms: u64,
) -> Result<bool, StoreError> {
    let key = format!("{PREFIX}.poller");
    let (holder, expires, cas) = match store.get(&key)? {
        Some((bytes, cas)) if bytes.len() == 16 => (
            u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default()),
            u64::from_le_bytes(bytes[8..].try_into().unwrap_or_default()),
            cas,
        ),
        Some((_, cas)) => (0, 0, cas),
        None => (0, 0, 0),
    };
    if holder != owner && expires > now_ms {
        return Ok(false);
    }
    let mut value = owner.to_le_bytes().to_vec();
    value.extend_from_slice(&until_ms.to_le_bytes());
    Ok(store.cas_set(&key, &value, cas)? == Written::Ok)
}

#[cfg(test)]
mod tests {
    use super::super::answer::Revocation;
    use super::*;
    use crate::shared::MemoryStore;

    #[test]
    fn head_and_slot_round_trip() {
        let head = Head {
            seq: 9,
            generation: 2,
            last_ok_ms: 77,
            applied: 41,
            loaded: true,
            epoch: "0b7c".into(),
        };
        assert_eq!(Head::decode(&head.encode()), Some(head));
        assert_eq!(Head::decode(b"short"), None);
        let slot = Slot {
            generation: 1,
            at_ms: 5,
            head: 9,
            key: "mobile".into(),
            state: SlotState::Found(b"{}".to_vec()),
        };
        assert_eq!(Slot::decode(&slot.encode()), Some(slot));
        assert_eq!(Slot::decode(&[0; 28]), None);
    }

    #[test]
    fn the_ring_forgets_overwritten_records() {
        let store = MemoryStore::default();
        let record = |seq| Record {
            seq,
            generation: 1,
            change: Change::Unrevoke(format!("r{seq}")),
        };
        record(3).write(&store).unwrap();
        assert_eq!(Record::read(&store, 3, 1).unwrap(), Some(record(3)));
        assert_eq!(
            Record::read(&store, 3, 2).unwrap(),
            None,
            "another generation"
        );
        record(3 + RING).write(&store).unwrap();
        assert_eq!(Record::read(&store, 3, 1).unwrap(), None, "overwritten");
    }

    #[test]
    fn records_and_snapshots_round_trip() {
        let store = MemoryStore::default();
        let entry = Revocation {
            id: "r1".into(),
            expires_at: Some(-5),
            jti: Some("é".into()),
            consumer_id: None,
            credential_id: Some("c".into()),
            key: Some("k".into()),
            issued_before: None,
        };
        for (seq, change) in [
            (
                1,
                Change::Drop {
                    event: 7,
                    keys: vec!["a".into(), String::new()],
                },
            ),
            (2, Change::Revoke(entry.clone())),
        ] {
            let record = Record {
                seq,
                generation: 3,
                change,
            };
            record.write(&store).unwrap();
            assert_eq!(Record::read(&store, seq, 3).unwrap(), Some(record));
        }
        let snapshot = Snapshot {
            generation: 3,
            seq: 2,
            grace: 60,
            entries: vec![entry],
        };
        snapshot.write(&store).unwrap();
        assert_eq!(Snapshot::read(&store, 3).unwrap(), Some(snapshot));
        assert_eq!(Record::decode(&[1; 16]), None, "truncated");
    }

    #[test]
    fn lookups_are_capped_per_second() {
        let store = MemoryStore::default();
        let allowed = (0..5)
            .filter(|_| count_lookup(&store, 1_000, 3).unwrap())
            .count();
        assert_eq!(allowed, 3);
        assert!(count_lookup(&store, 2_000, 3).unwrap(), "a new second");
    }

    #[test]
    fn one_lease_holder_until_it_expires() {
        let store = MemoryStore::default();
        assert!(lease(&store, 1, 0, 100).unwrap());
        assert!(!lease(&store, 2, 50, 150).unwrap());
        assert!(lease(&store, 1, 50, 150).unwrap(), "renewed");
        assert!(
            lease(&store, 2, 151, 250).unwrap(),
            "taken over once expired"
        );
        let a = worker_id(&store).unwrap();
        assert_ne!(a, worker_id(&store).unwrap());
    }

    #[test]
    fn clearing_a_slot_defeats_a_pending_write() {
        let store = MemoryStore::default();
        let slots = Slots { size: 16 };
        let pending = Slot {
            generation: 1,
            at_ms: 1,
            head: 0,
            key: "k".into(),
            state: SlotState::Pending,
        };
        slots.write(&store, &pending, 0).unwrap();
        let (_, cas) = slots.read(&store, "k").unwrap();
        slots.clear(&store, "k", 1).unwrap();
        let found = Slot {
            state: SlotState::Missing,
            ..pending
        };
        assert_eq!(
            slots.write(&store, &found, cas).unwrap(),
            Written::CasMismatch
        );
        assert_eq!(slots.read(&store, "k").unwrap().0, None);
    }
}
