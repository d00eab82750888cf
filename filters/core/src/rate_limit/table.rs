//! The counter table in shared data: a fixed set of keys, created once, reused across
//! windows and clients, so memory is bounded however many clients come.
//!
//! - `slots` keys `prl:<table>:<index>`, each holding one [`Slot`]: one client of one
//!   policy, all of that policy's windows. A key's home index is its owner hash modulo
//!   `slots`; it may live in any of the [`PROBES`] slots from there. A lookup walks them:
//!   the first slot owned by the key is its own; else it claims the first one that is
//!   unclaimed or whose data has expired (a stale window). An unclaimed slot ends the walk:
//!   no key lives past one, since slots are only ever claimed in walk order and never go
//!   back to unclaimed.
//! - [`OVERFLOW_SLOTS`] keys per policy, `prl:<table>:o<policy>.<index>`: where a key counts
//!   when all its probe slots belong to other live keys. The keys that land on one overflow
//!   slot share its counters, so when the table is full they are limited together — early,
//!   never beyond their limit. A key that later gets a slot of its own starts from its
//!   overflow slot's counts, so moving out of the overflow never hands out a fresh allowance.
//! - `prl:<table>:ready`: written once every other key exists.
//!
//! Every key is created, with an unclaimed value, in `on_configure` before the worker counts
//! anything, and counts are only ever written with a CAS. That matters because the ABI has no
//! create-if-absent: a write to a key that does not exist succeeds whatever its CAS, so a
//! counter created on the request path could be overwritten by a second worker creating it
//! at the same moment.

use super::key::LimitKey;
use super::policy::Policy;
use super::slot::{self, hash, Slot};
use crate::decimal::Decimal;
use crate::shared::{SharedStore, StoreError, Written};

/// Default table size: 65536 slots, at most 3.9 MB of shared data when every policy counts
/// one window, 11.7 MB with all six (see [`Table::bound`]).
pub const DEFAULT_SLOTS: u32 = 65_536;
pub const MIN_SLOTS: u32 = 64;
pub const MAX_SLOTS: u32 = 1_048_576;
/// Slots a key may live in, from its home index on.
pub const PROBES: u32 = 8;
/// Overflow slots per policy.
pub const OVERFLOW_SLOTS: u32 = 16;

/// One filter's counter table: which keys it owns and how to find a client's slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// `prl:<8 hex digits of the namespace's hash>:`.
    prefix: String,
    /// Hash of the namespace: part of every owner, so two tables never share a counter.
    id: u64,
    slots: u32,
    policies: u32,
}

/// Where a key counts, as a lookup found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The shared-data key of the slot.
    pub key: String,
    /// Its CAS when read: the write must carry it.
    pub cas: u32,
    /// The owner to write: the client's, or the policy's overflow owner.
    pub owner: u64,
    /// The counts to continue from: the slot's own, or for a slot just claimed the overflow
    /// slot's (or none).
    pub stored: Option<Slot>,
    pub place: Place,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// The key's own slot.
    Owned,
    /// A free (or stale) slot the key will claim with its write.
    Claimed,
    /// The policy's shared overflow slot: every probe slot belongs to another live key.
    Overflow,
}

/// How big the table can get: keys and bytes of key plus value, as Envoy stores them (its
/// own per-entry bookkeeping, some 100 bytes, comes on top).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    pub keys: usize,
    pub bytes: usize,
}

impl Table {
    /// The table of the filter instance called `namespace` (Envoy's plugin name) with
    /// `slots` slots and `policies` policies. Instances sharing a VM id share shared data;
    /// their tables never collide.
    pub fn new(namespace: &str, slots: u32, policies: u32) -> Table {
        let id = hash(&[b"portcullis rate-limiting table", namespace.as_bytes()]);
        Table {
            prefix: format!("prl:{:08x}:", id >> 32),
            id,
            slots: slots.max(1),
            policies,
        }
    }

    pub fn slots(&self) -> u32 {
        self.slots
    }

    pub fn slot_key(&self, index: u32) -> String {
        let mut key = String::with_capacity(self.prefix.len() + 7);
        key.push_str(&self.prefix);
        key.push_str(&Decimal::new(u64::from(index)));
        key
    }

    pub fn overflow_key(&self, policy: u32, index: u32) -> String {
        format!("{}o{policy}.{index}", self.prefix)
    }

    pub fn ready_key(&self) -> String {
        format!("{}ready", self.prefix)
    }

    /// Every key of the table but `ready`.
    pub fn keys(&self) -> impl Iterator<Item = String> + '_ {
        let slots = (0..self.slots).map(|i| self.slot_key(i));
        let overflow = (0..self.policies)
            .flat_map(move |p| (0..OVERFLOW_SLOTS).map(move |i| self.overflow_key(p, i)));
        slots.chain(overflow)
    }

    /// The most keys and bytes the table ever holds when no policy counts more than
    /// `max_windows` windows: every key with its largest value, plus `ready`.
    pub fn bound(&self, max_windows: usize) -> Bound {
        let value = slot::HEADER_BYTES + slot::ENTRY_BYTES * max_windows.min(slot::MAX_WINDOWS);
        let (keys, key_bytes) = self
            .keys()
            .fold((0, 0), |(n, bytes), key| (n + 1, bytes + key.len()));
        Bound {
            keys: keys + 1,
            bytes: key_bytes + keys * value + self.ready_key().len() + self.ready_value().len(),
        }
    }

    /// What `ready` holds: the table's shape, so a configuration with more slots or policies
    /// creates the keys it adds.
    fn ready_value(&self) -> Vec<u8> {
        format!("{}/{}", self.slots, self.policies).into_bytes()
    }

    /// Creates every key that does not exist yet with an unclaimed value, then `ready`.
    /// Cheap when another worker already did (one read). Returns how many keys it created.
    pub fn initialise(&self, store: &dyn SharedStore) -> Result<usize, StoreError> {
        if let Some((value, _)) = store.get(&self.ready_key())? {
            if value == self.ready_value() {
                return Ok(0);
            }
        }
        let unclaimed = Slot::unclaimed();
        let mut created = 0;
        for key in self.keys() {
            if store.get(&key)?.is_none() {
                store.cas_set(&key, &unclaimed, 0)?;
                created += 1;
            }
        }
        store.cas_set(&self.ready_key(), &self.ready_value(), 0)?;
        Ok(created)
    }

    /// Who counts for `key` under `policy`.
    pub fn owner(&self, policy: &Policy, key: &LimitKey) -> u64 {
        hash(&[
            &self.id.to_le_bytes(),
            &policy.fingerprint.to_le_bytes(),
            key.kind.tag().as_bytes(),
            key.value.as_bytes(),
        ])
    }

    fn overflow_owner(&self, policy: &Policy) -> u64 {
        hash(&[
            &self.id.to_le_bytes(),
            &policy.fingerprint.to_le_bytes(),
            b"overflow",
        ])
    }

    /// Finds where `owner` counts for `policy` at `now_secs` (see the module docs).
    pub fn locate(
        &self,
        store: &dyn SharedStore,
        policy: &Policy,
        owner: u64,
        now_secs: u64,
    ) -> Result<Located, StoreError> {
        let home = owner % u64::from(self.slots);
        let mut claim: Option<(String, u32)> = None;
        for i in 0..u64::from(PROBES.min(self.slots)) {
            let index = u32::try_from((home + i) % u64::from(self.slots)).unwrap_or(0);
            let key = self.slot_key(index);
            let Some((bytes, cas)) = read_or_create(store, &key)? else {
                continue;
            };
            match Slot::decode(&bytes) {
                Some(slot) if slot.owner == owner => {
                    return Ok(Located {
                        key,
                        cas,
                        owner,
                        stored: Some(slot),
                        place: Place::Owned,
                    })
                }
                Some(slot) if slot.owner == 0 => {
                    claim.get_or_insert((key, cas));
                    break;
                }
                Some(slot) if !slot.reclaimable(now_secs) => {}
                // Expired, or bytes this build cannot read: free to take.
                _ => {
                    claim.get_or_insert((key, cas));
                }
            }
        }
        let (overflow_key, overflow_cas, overflow) = self.overflow(store, policy, owner)?;
        Ok(match claim {
            Some((key, cas)) => Located {
                key,
                cas,
                owner,
                stored: overflow,
                place: Place::Claimed,
            },
            None => Located {
                key: overflow_key,
                cas: overflow_cas,
                owner: self.overflow_owner(policy),
                stored: overflow,
                place: Place::Overflow,
            },
        })
    }

    /// The overflow slot `owner` falls in for `policy`, with its counts if they are this
    /// policy's.
    fn overflow(
        &self,
        store: &dyn SharedStore,
        policy: &Policy,
        owner: u64,
    ) -> Result<(String, u32, Option<Slot>), StoreError> {
        let index = u32::try_from(owner % u64::from(OVERFLOW_SLOTS)).unwrap_or(0);
        let key = self.overflow_key(policy.index, index);
        let expected = self.overflow_owner(policy);
        let Some((bytes, cas)) = read_or_create(store, &key)? else {
            return Ok((key, 0, None));
        };
        let slot = Slot::decode(&bytes).filter(|s| s.owner == expected);
        Ok((key, cas, slot))
    }
}

/// Reads a table key; one that does not exist (the table was not initialised: shared data
/// refused at start-up) is created unclaimed first, then read, so the count that follows is
/// still a CAS write. `None` only if it is still missing after that.
fn read_or_create(
    store: &dyn SharedStore,
    key: &str,
) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
    if let Some(found) = store.get(key)? {
        return Ok(Some(found));
    }
    match store.cas_set(key, &Slot::unclaimed(), 0)? {
        Written::Ok | Written::CasMismatch => store.get(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::counter::{Algorithm, WindowCount};
    use crate::rate_limit::key::{ClientIpRule, KeyKind, LimitBy};
    use crate::rate_limit::window::Period;
    use crate::shared::MemoryStore;

    const NOW: u64 = 1_767_225_600;

    fn policy() -> Policy {
        Policy::new(
            "global".into(),
            0,
            vec![(Period::Minute, 10)],
            LimitBy::Ip,
            Algorithm::Fixed,
            ClientIpRule::default(),
        )
    }

    fn ip(n: u32) -> LimitKey {
        LimitKey::new(
            KeyKind::Ip,
            format!("10.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255),
        )
    }

    fn claim(store: &MemoryStore, at: &Located, expires: u64) {
        let slot = Slot {
            owner: at.owner,
            expires,
            windows: vec![WindowCount {
                start: NOW,
                count: 1,
                previous: 0,
            }],
        };
        assert_eq!(
            store.cas_set(&at.key, &slot.encode(), at.cas),
            Ok(Written::Ok)
        );
    }

    #[test]
    fn initialise_creates_every_key_once_and_is_cheap_the_second_time() {
        let store = MemoryStore::new();
        let table = Table::new("rl", 64, 2);
        assert_eq!(table.initialise(&store), Ok(64 + 2 * 16));
        assert_eq!(store.len(), 64 + 32 + 1);
        let (gets, _) = store.calls();
        assert_eq!(table.initialise(&store), Ok(0));
        assert_eq!(store.calls().0, gets + 1, "one read of `ready`");
        // A bigger table adds only the keys it lacks.
        let bigger = Table::new("rl", 128, 2);
        assert_eq!(bigger.initialise(&store), Ok(64));
        let more_policies = Table::new("rl", 128, 3);
        assert_eq!(more_policies.initialise(&store), Ok(16));
    }

    #[test]
    fn tables_of_two_filter_instances_never_share_keys_or_owners() {
        let (a, b) = (
            Table::new("rate-limiting", 64, 1),
            Table::new("other", 64, 1),
        );
        assert_ne!(a.slot_key(0), b.slot_key(0));
        assert_ne!(a.owner(&policy(), &ip(1)), b.owner(&policy(), &ip(1)));
    }

    #[test]
    fn a_key_claims_its_home_slot_then_finds_it_again() {
        let store = MemoryStore::new();
        let table = Table::new("rl", 64, 1);
        table.initialise(&store).unwrap();
        let owner = table.owner(&policy(), &ip(1));
        let (gets, _) = store.calls();
        let first = table.locate(&store, &policy(), owner, NOW).unwrap();
        assert_eq!(first.place, Place::Claimed);
        assert_eq!(first.key, table.slot_key((owner % 64) as u32));
        assert_eq!(
            store.calls().0,
            gets + 2,
            "the home slot, then the overflow's counts"
        );
        claim(&store, &first, NOW + 60);
        let (gets, _) = store.calls();
        let again = table.locate(&store, &policy(), owner, NOW + 1).unwrap();
        assert_eq!(again.place, Place::Owned);
        assert_eq!(again.key, first.key);
        assert_eq!(store.calls().0, gets + 1, "found at home in one read");
    }

    #[test]
    fn a_full_neighbourhood_sends_a_key_to_the_overflow_slot() {
        let store = MemoryStore::new();
        let table = Table::new("rl", 64, 1);
        table.initialise(&store).unwrap();
        // Fill every slot with live keys.
        let unclaimed = || {
            (0..64).any(|i| {
                store.peek(&table.slot_key(i)).map(|v| v.len()) == Some(slot::HEADER_BYTES)
            })
        };
        let mut n = 0;
        while unclaimed() && n < 100_000 {
            let owner = table.owner(&policy(), &ip(n));
            let at = table.locate(&store, &policy(), owner, NOW).unwrap();
            if at.place == Place::Claimed {
                claim(&store, &at, NOW + 60);
            }
            n += 1;
        }
        assert!(!unclaimed());
        let newcomer = table.owner(&policy(), &ip(1_000_000));
        let at = table.locate(&store, &policy(), newcomer, NOW).unwrap();
        assert_eq!(at.place, Place::Overflow);
        assert!(at.key.contains(":o0."), "{}", at.key);
        // Once those keys' windows have expired, the newcomer gets a slot of its own, and
        // starts from what its overflow slot had counted.
        claim(&store, &at, NOW + 60);
        let later = table.locate(&store, &policy(), newcomer, NOW + 60).unwrap();
        assert_eq!(later.place, Place::Claimed);
        assert_eq!(later.stored.map(|s| s.windows[0].count), Some(1));
    }

    #[test]
    fn the_walk_passes_stale_slots_to_find_the_keys_own() {
        let store = MemoryStore::new();
        let table = Table::new("rl", 64, 1);
        table.initialise(&store).unwrap();
        // Two keys with the same home: the second lives one slot further.
        let owners: Vec<u64> = (0..10_000)
            .map(|n| table.owner(&policy(), &ip(n)))
            .filter(|o| o % 64 == 5)
            .take(2)
            .collect();
        let first = table.locate(&store, &policy(), owners[0], NOW).unwrap();
        claim(&store, &first, NOW + 60);
        let second = table.locate(&store, &policy(), owners[1], NOW).unwrap();
        assert_eq!(second.key, table.slot_key(6));
        claim(&store, &second, NOW + 3_600);
        // The first key's data expires; the second is still found past it, not duplicated.
        let found = table
            .locate(&store, &policy(), owners[1], NOW + 120)
            .unwrap();
        assert_eq!((found.place, found.key), (Place::Owned, table.slot_key(6)));
        // And a newcomer with that home takes the stale slot.
        let third = (10_000..20_000)
            .map(|n| table.owner(&policy(), &ip(n)))
            .find(|o| o % 64 == 5)
            .unwrap();
        let at = table.locate(&store, &policy(), third, NOW + 120).unwrap();
        assert_eq!((at.place, at.key), (Place::Claimed, table.slot_key(5)));
    }

    #[test]
    fn missing_keys_are_created_unclaimed_before_anything_counts() {
        let store = MemoryStore::new();
        let table = Table::new("rl", 64, 1);
        let owner = table.owner(&policy(), &ip(1));
        let at = table.locate(&store, &policy(), owner, NOW).unwrap();
        assert_eq!(at.place, Place::Claimed);
        assert_ne!(at.cas, 0, "the count will be a real CAS write");
    }

    #[test]
    fn the_documented_bound_matches_the_default_table() {
        let table = Table::new("rate-limiting", DEFAULT_SLOTS, 2);
        let one = table.bound(1);
        let six = table.bound(6);
        assert_eq!(one.keys, 65_536 + 32 + 1);
        assert!(one.bytes < 3_900_000, "{}", one.bytes);
        assert!(six.bytes < 11_800_000, "{}", six.bytes);
    }
}
