//! One worker's view of the consumer source: the credentials and unknown keys it has
//! decoded, the revocations, and where it stands in the shared log. The glue calls
//! [`Directory::sync`] before authenticating (one shared-data read when nothing changed),
//! the policy asks [`Directory::find`], and on [`Lookup::NotCached`] the glue calls
//! [`Directory::resolve`]: the shared slot has the answer, or a lookup is under way (wait),
//! or this worker claims it (dispatch it, then [`Directory::answered`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::answer::{read, CredentialAnswer};
use super::revocations::{Cutoff, RevocationSet, TokenFacts};
use super::settings::ConsumerSource;
use super::shared::{
    count_lookup, Change, Head, Record, Slot, SlotState, Slots, Snapshot, FAILURE_BACKOFF_MS, RING,
};
use crate::identity::{header_safe, Identity};
use crate::jwt::config::RawCredential;
use crate::jwt::keyring::{compile_credential, Credential};
use crate::shared::{SharedStore, StoreError, Written};

/// A credential the admin knows, ready to verify with.
#[derive(Clone, Debug)]
pub struct Found {
    /// The admin's `head` when it answered: a change of this key at a later event drops it.
    pub head: u64,
    pub credential: Credential,
    pub consumer_id: String,
    pub credential_id: String,
    pub consumer_cutoff: Option<Cutoff>,
    pub credential_cutoff: Option<Cutoff>,
}

impl Found {
    /// Reads a `found:true` answer: every value that becomes a header must be safe, the key
    /// the one asked for, the secret or public key usable.
    pub fn from_answer(asked: &str, answer: &CredentialAnswer) -> Result<Found, String> {
        let (Some(consumer), Some(credential)) = (&answer.consumer, &answer.credential) else {
            return Err("found without consumer or credential".to_owned());
        };
        if credential.key != asked {
            return Err(format!("answered for key {:?}", credential.key));
        }
        let safe = |what: &str, v: &str| {
            if v.is_empty() || !header_safe(v) {
                Err(format!("{what} is empty or has control characters"))
            } else {
                Ok(())
            }
        };
        safe("consumer.id", &consumer.id)?;
        safe("credential.key", &credential.key)?;
        for v in consumer.username.iter().chain(&consumer.custom_id) {
            safe("consumer.username/custom_id", v)?;
        }
        for g in &consumer.groups {
            safe("a group", g)?;
            if g.contains(',') {
                return Err("a group contains ','".to_owned());
            }
        }
        let raw = RawCredential {
            key: credential.key.clone(),
            algorithm: Some(credential.algorithm.clone()),
            secret: credential.secret.clone(),
            secret_base64: None,
            public_key: credential.rsa_public_key.clone(),
            jwk: None,
        };
        let identity = Identity {
            consumer_id: Some(consumer.id.clone()),
            username: consumer.username.clone(),
            custom_id: consumer.custom_id.clone(),
            groups: consumer.groups.clone(),
            ..Identity::default()
        };
        let compiled =
            compile_credential("credential", &raw, &identity).map_err(|e| e.to_string())?;
        Ok(Found {
            head: answer.head,
            credential: compiled,
            consumer_id: consumer.id.clone(),
            credential_id: credential.id.clone(),
            consumer_cutoff: consumer.cutoff.map(Cutoff::from),
            credential_cutoff: credential.cutoff.map(Cutoff::from),
        })
    }
}

/// What [`Directory::find`] knows of a key.
#[derive(Clone, Debug)]
pub enum Lookup {
    Found(Arc<Found>),
    /// The admin knows no credential with this key.
    Missing,
    /// Not in this worker's cache: [`Directory::resolve`] it.
    NotCached,
    /// The source cannot be trusted now: revocations not loaded, or the admin unreachable
    /// for longer than `stale_ttl`.
    Unavailable,
}

/// What [`Directory::resolve`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolve {
    /// The key is now cached: ask [`Directory::find`] again.
    Ready,
    /// Another worker (or this one) is looking it up: wait.
    Wait,
    /// This worker claimed the lookup: dispatch it.
    Claimed,
    /// Lookups per second are used up.
    Throttled,
    /// The last lookup of this key failed moments ago: refuse, do not retry yet.
    Failed,
}

/// How a lookup this worker dispatched ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answered {
    /// Stored for every worker (and this one).
    Stored,
    /// Not an answer (status, body, transport): nothing cached; waiting requests retry.
    Failed(String),
    /// Older than a change already applied, or from another epoch, or its slot was taken
    /// meanwhile: discarded; waiting requests look again.
    Discarded,
}

/// A key the admin knew no credential for, at event `head`, remembered until `until`.
#[derive(Clone, Copy, Debug)]
struct Missing {
    until: u64,
    head: u64,
}

/// One worker's view.
#[derive(Debug)]
pub struct Directory {
    source: ConsumerSource,
    slots: Slots,
    synced: bool,
    head: Head,
    revocations: RevocationSet,
    found: HashMap<String, Arc<Found>>,
    missing: HashMap<String, Missing>,
    /// Keys this worker looks up without a slot (another key's credential holds it).
    unshared: HashSet<String>,
    /// Keys whose unshared lookup failed, until when they are refused without a new one.
    failed: HashMap<String, u64>,
}

impl Directory {
    pub fn new(source: ConsumerSource) -> Directory {
        Directory {
            slots: Slots {
                size: source.cache_size,
            },
            source,
            synced: false,
            head: Head::default(),
            revocations: RevocationSet::default(),
            found: HashMap::new(),
            missing: HashMap::new(),
            unshared: HashSet::new(),
            failed: HashMap::new(),
        }
    }

    pub fn source(&self) -> &ConsumerSource {
        &self.source
    }

    /// Entries cached by this worker: credentials, unknown keys, revocations.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.found.len(), self.missing.len(), self.revocations.len())
    }

    /// Catches up with the shared log: drops what changed, applies revocations; reloads
    /// from the shared snapshot after a reset or when too far behind.
    pub fn sync(&mut self, store: &dyn SharedStore) -> Result<(), StoreError> {
        let (head, _) = Head::read(store)?;
        let behind = head.seq.wrapping_sub(self.head.seq);
        if !self.synced
            || head.generation != self.head.generation
            || head.loaded != self.head.loaded
            || head.seq < self.head.seq
            || behind >= RING
        {
            return self.reload(store, head);
        }
        for seq in self.head.seq + 1..=head.seq {
            match Record::read(store, seq, head.generation)? {
                Some(record) => self.apply(record.change),
                None => return self.reload(store, head),
            }
        }
        self.head = head;
        Ok(())
    }

    fn reload(&mut self, store: &dyn SharedStore, head: Head) -> Result<(), StoreError> {
        self.found.clear();
        self.missing.clear();
        self.revocations = RevocationSet::default();
        self.synced = true;
        let mut head = head;
        if head.loaded {
            match Snapshot::read(store, head.generation)? {
                Some(snapshot) => {
                    self.revocations = RevocationSet::of(snapshot.grace, snapshot.entries);
                    for seq in snapshot.seq + 1..=head.seq {
                        match Record::read(store, seq, head.generation)? {
                            Some(record) => self.apply(record.change),
                            None => head.loaded = false,
                        }
                    }
                    head.seq = head.seq.max(snapshot.seq);
                }
                None => head.loaded = false,
            }
        }
        // Not loaded: every looked-up token is refused until a later sync loads.
        if !head.loaded {
            head.seq = 0;
            self.synced = false;
        }
        self.head = head;
        Ok(())
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Drop { event, keys } => {
                for key in keys {
                    if self.found.get(&key).is_some_and(|f| f.head < event) {
                        self.found.remove(&key);
                    }
                    if self.missing.get(&key).is_some_and(|m| m.head < event) {
                        self.missing.remove(&key);
                    }
                }
            }
            Change::Revoke(entry) => self.revocations.insert(entry),
            Change::Unrevoke(id) => self.revocations.remove(&id),
        }
    }

    /// Forgets revocations past `expires_at + grace` and unknown keys past `negative_ttl`.
    pub fn expire(&mut self, now_ms: u64) {
        self.revocations.expire(now_ms / 1000);
        self.missing.retain(|_, missing| missing.until > now_ms);
    }

    /// Whether the revocations are loaded (looked-up tokens can be admitted).
    pub fn loaded(&self) -> bool {
        self.head.loaded
    }

    /// Whether the admin missed the last poll: cached entries serve on, for `stale_ttl`.
    pub fn stale(&self, now_ms: u64) -> bool {
        let s = &self.source;
        now_ms
            > self
                .head
                .last_ok_ms
                .saturating_add(s.poll_interval_ms)
                .saturating_add(s.timeout_ms)
    }

    /// Whether the admin answered the poller recently enough for cached entries to serve.
    fn fresh(&self, now_ms: u64) -> bool {
        let s = &self.source;
        now_ms
            <= self
                .head
                .last_ok_ms
                .saturating_add(s.poll_interval_ms)
                .saturating_add(s.timeout_ms)
                .saturating_add(s.stale_ttl_ms)
    }

    /// What this worker knows of `key` at `now_ms`.
    pub fn find(&self, key: &str, now_ms: u64) -> Lookup {
        if !self.head.loaded || !self.fresh(now_ms) {
            return Lookup::Unavailable;
        }
        if let Some(found) = self.found.get(key) {
            return Lookup::Found(Arc::clone(found));
        }
        match self.missing.get(key) {
            Some(missing) if missing.until > now_ms => Lookup::Missing,
            _ => Lookup::NotCached,
        }
    }

    /// Whether a token verified by `found` (or, for `found: None`, by anything else) is
    /// revoked at `now` (seconds).
    pub fn revoked(&self, found: &Found, jti: Option<&str>, iat: Option<f64>, now: u64) -> bool {
        let grace = self.revocations.grace();
        let facts = TokenFacts {
            jti,
            iat,
            key: Some(&found.credential.key),
            consumer_id: Some(&found.consumer_id),
            credential_id: Some(&found.credential_id),
        };
        self.revocations.revokes(&facts, now)
            || found
                .consumer_cutoff
                .is_some_and(|c| c.revokes(iat, now, grace))
            || found
                .credential_cutoff
                .is_some_and(|c| c.revokes(iat, now, grace))
    }

    /// Finds `key`'s answer in shared data, or claims its lookup.
    pub fn resolve(
        &mut self,
        store: &dyn SharedStore,
        key: &str,
        now_ms: u64,
    ) -> Result<Resolve, StoreError> {
        if self.unshared.contains(key) {
            return Ok(Resolve::Wait);
        }
        if self.failed.get(key).is_some_and(|until| now_ms < *until) {
            return Ok(Resolve::Failed);
        }
        let (slot, cas) = self.slots.read(store, key)?;
        let slot = slot.filter(|s| s.generation == self.head.generation);
        // Another key's credential holds the slot: it is not evicted (a client's random key
        // must not push a real consumer out); this key is looked up for this worker alone.
        let occupied = slot
            .as_ref()
            .is_some_and(|s| s.key != key && matches!(s.state, SlotState::Found(_)));
        if let Some(slot) = slot.filter(|s| s.key == key) {
            match &slot.state {
                SlotState::Found(body) => {
                    if let Ok(found) = decode(key, body) {
                        self.remember_found(key, found);
                        return Ok(Resolve::Ready);
                    }
                }
                SlotState::Missing => {
                    let until = slot.at_ms.saturating_add(self.source.negative_ttl_ms);
                    if until > now_ms {
                        self.remember_missing(key, until, slot.head);
                        return Ok(Resolve::Ready);
                    }
                }
                SlotState::Failed => {
                    if now_ms < slot.at_ms.saturating_add(FAILURE_BACKOFF_MS) {
                        return Ok(Resolve::Failed);
                    }
                }
                SlotState::Pending => {
                    // A lookup lives at most its timeout; past twice that its worker is
                    // presumed gone and the lookup may be claimed again.
                    if now_ms < slot.at_ms.saturating_add(2 * self.source.timeout_ms) {
                        return Ok(Resolve::Wait);
                    }
                }
            }
        }
        if !count_lookup(store, now_ms, self.source.max_lookups_per_second)? {
            return Ok(Resolve::Throttled);
        }
        if occupied {
            if self.unshared.len() >= self.source.cache_size {
                return Ok(Resolve::Throttled);
            }
            self.unshared.insert(key.to_owned());
            return Ok(Resolve::Claimed);
        }
        let pending = Slot {
            generation: self.head.generation,
            at_ms: now_ms,
            head: 0,
            key: key.to_owned(),
            state: SlotState::Pending,
        };
        Ok(match self.slots.write(store, &pending, cas)? {
            Written::Ok => Resolve::Claimed,
            Written::CasMismatch => Resolve::Wait,
        })
    }

    /// Stores the answer of the lookup of `key` this worker dispatched (`status`: the
    /// `:status` of the answer, `None` when there was none).
    pub fn answered(
        &mut self,
        store: &dyn SharedStore,
        key: &str,
        status: Option<&str>,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Answered, StoreError> {
        if self.unshared.remove(key) {
            return self.answered_alone(store, key, status, body, now_ms);
        }
        let (slot, cas) = self.slots.read(store, key)?;
        let ours = slot.as_ref().is_some_and(|s| {
            s.key == key && s.state == SlotState::Pending && s.generation == self.head.generation
        });
        let release = |this: &Directory| -> Result<(), StoreError> {
            if ours {
                this.slots.clear(store, key, u64::MAX)?;
            }
            Ok(())
        };
        let answer: CredentialAnswer = match read(status, body) {
            Ok(answer) => answer,
            Err(why) => {
                if ours {
                    self.store_slot(store, key, SlotState::Failed, 0, now_ms, cas)?;
                }
                return Ok(Answered::Failed(why));
            }
        };
        if !ours || self.outdated(store, &answer)? {
            release(self)?;
            return Ok(Answered::Discarded);
        }
        let state = if answer.found {
            match Found::from_answer(key, &answer) {
                Ok(found) => {
                    let state = SlotState::Found(body.to_vec());
                    let written = self.store_slot(store, key, state, answer.head, now_ms, cas)?;
                    if written {
                        self.remember_found(key, found);
                    }
                    return Ok(if written {
                        Answered::Stored
                    } else {
                        Answered::Discarded
                    });
                }
                Err(why) => {
                    if ours {
                        self.store_slot(store, key, SlotState::Failed, 0, now_ms, cas)?;
                    }
                    return Ok(Answered::Failed(format!("unusable credential: {why}")));
                }
            }
        } else {
            SlotState::Missing
        };
        if self.store_slot(store, key, state, answer.head, now_ms, cas)? {
            let until = now_ms.saturating_add(self.source.negative_ttl_ms);
            self.remember_missing(key, until, answer.head);
            Ok(Answered::Stored)
        } else {
            Ok(Answered::Discarded)
        }
    }

    /// Whether a lookup's answer is from another feed, older than a change already applied,
    /// or read before everything was dropped: it must not be cached.
    fn outdated(
        &self,
        store: &dyn SharedStore,
        answer: &CredentialAnswer,
    ) -> Result<bool, StoreError> {
        let (head, _) = Head::read(store)?;
        Ok(answer.epoch != head.epoch
            || answer.head < head.applied
            || head.generation != self.head.generation)
    }

    /// The answer of a lookup made without a slot: cached by this worker only.
    fn answered_alone(
        &mut self,
        store: &dyn SharedStore,
        key: &str,
        status: Option<&str>,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Answered, StoreError> {
        let backoff = now_ms.saturating_add(FAILURE_BACKOFF_MS);
        let answer: CredentialAnswer = match read(status, body) {
            Ok(answer) => answer,
            Err(why) => {
                self.remember_failed(key, backoff);
                return Ok(Answered::Failed(why));
            }
        };
        if self.outdated(store, &answer)? {
            return Ok(Answered::Discarded);
        }
        if !answer.found {
            let until = now_ms.saturating_add(self.source.negative_ttl_ms);
            self.remember_missing(key, until, answer.head);
            return Ok(Answered::Stored);
        }
        match Found::from_answer(key, &answer) {
            Ok(found) => {
                self.remember_found(key, found);
                Ok(Answered::Stored)
            }
            Err(why) => {
                self.remember_failed(key, backoff);
                Ok(Answered::Failed(format!("unusable credential: {why}")))
            }
        }
    }

    fn remember_failed(&mut self, key: &str, until_ms: u64) {
        if self.failed.len() >= self.source.cache_size {
            self.failed.clear();
        }
        self.failed.insert(key.to_owned(), until_ms);
    }

    fn store_slot(
        &self,
        store: &dyn SharedStore,
        key: &str,
        state: SlotState,
        head: u64,
        now_ms: u64,
        cas: u32,
    ) -> Result<bool, StoreError> {
        let slot = Slot {
            generation: self.head.generation,
            at_ms: now_ms,
            head,
            key: key.to_owned(),
            state,
        };
        Ok(self.slots.write(store, &slot, cas)? == Written::Ok)
    }

    fn remember_found(&mut self, key: &str, found: Found) {
        // Only real credentials land here (a client cannot make one up), so this table
        // fills with the admin's credentials, never with a client's random keys.
        if self.found.len() >= self.source.cache_size {
            if let Some(evicted) = self.found.keys().next().cloned() {
                self.found.remove(&evicted);
            }
        }
        self.missing.remove(key);
        self.found.insert(key.to_owned(), Arc::new(found));
    }

    fn remember_missing(&mut self, key: &str, until_ms: u64, head: u64) {
        if self.missing.len() >= self.source.cache_size {
            if let Some(evicted) = self.missing.keys().next().cloned() {
                self.missing.remove(&evicted);
            }
        }
        self.missing.insert(
            key.to_owned(),
            Missing {
                until: until_ms,
                head,
            },
        );
    }
}

fn decode(key: &str, body: &[u8]) -> Result<Found, String> {
    let answer: CredentialAnswer = read(Some("200"), body)?;
    Found::from_answer(key, &answer)
}
