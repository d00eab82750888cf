//! Proxy-wasm shared data, as the filters need it from the host: one value and one CAS
//! number per key, shared by every worker of a VM id. The rate limiter counts in it; the jwt
//! filter keeps its remote key sets and their refresh claims there. The glue implements
//! [`SharedStore`] once over `proxy_get_shared_data` / `proxy_set_shared_data`;
//! [`MemoryStore`] is the test double, with Envoy's exact CAS rules and a hook to write
//! between a read and its CAS.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

/// The host refused a shared-data call (a status other than Ok, NotFound, CasMismatch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shared data: {}", self.0)
    }
}

/// How a conditional write went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Ok,
    /// Someone wrote the key since the CAS was read: read again and retry.
    CasMismatch,
}

/// Shared data as proxy-wasm defines it (and Envoy implements it).
pub trait SharedStore {
    /// The value of `key` and its CAS, `None` if the key was never written.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;

    /// Writes `value` if the key's CAS is still `cas`. Envoy's rules, which the limiter
    /// relies on: a CAS of 0 always writes, and so does any write to a key that does not
    /// exist yet, whatever the CAS (there is no create-if-absent). Every write gets a new CAS.
    fn cas_set(&self, key: &str, value: &[u8], cas: u32) -> Result<Written, StoreError>;
}

/// A hook run after every successful [`MemoryStore::get`], with the key read and a writer:
/// how a test plays another worker writing between this read and its CAS.
pub type GetHook = Box<dyn FnMut(&str, &mut MemoryWriter<'_>) + Send>;

/// Shared data in memory, with Envoy's CAS rules. `Sync`: threads may share one.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    entries: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
    hook: Option<GetHook>,
    /// Calls left to fail, and how many calls were made.
    fail_gets: u32,
    fail_sets: u32,
    gets: u64,
    sets: u64,
}

/// What a [`GetHook`] may do to the store.
pub struct MemoryWriter<'a> {
    entries: &'a mut HashMap<String, (Vec<u8>, u32)>,
    next_cas: &'a mut u32,
}

impl MemoryWriter<'_> {
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries.get(key).map(|(v, _)| v.as_slice())
    }

    /// An unconditional write, as another worker's successful CAS would leave it.
    pub fn set(&mut self, key: &str, value: &[u8]) {
        let cas = bump(self.next_cas);
        self.entries.insert(key.to_owned(), (value.to_vec(), cas));
    }
}

fn bump(next: &mut u32) -> u32 {
    *next = next.wrapping_add(1).max(1);
    *next
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `hook` after every successful `get` (replacing any earlier hook).
    pub fn on_get(&self, hook: impl FnMut(&str, &mut MemoryWriter<'_>) + Send + 'static) {
        self.lock().hook = Some(Box::new(hook));
    }

    pub fn clear_hook(&self) {
        self.lock().hook = None;
    }

    /// The next `gets` reads and `sets` writes fail, as a host refusing shared data would.
    pub fn fail_next(&self, gets: u32, sets: u32) {
        let mut state = self.lock();
        state.fail_gets = gets;
        state.fail_sets = sets;
    }

    /// Number of keys (the ABI cannot delete one: this only grows).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of every key and value.
    pub fn bytes(&self) -> usize {
        self.lock()
            .entries
            .iter()
            .map(|(k, (v, _))| k.len() + v.len())
            .sum()
    }

    /// (gets, sets) made so far.
    pub fn calls(&self) -> (u64, u64) {
        let state = self.lock();
        (state.gets, state.sets)
    }

    /// A value, without running the hook.
    pub fn peek(&self, key: &str) -> Option<Vec<u8>> {
        self.lock().entries.get(key).map(|(v, _)| v.clone())
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        state.gets += 1;
        if state.fail_gets > 0 {
            state.fail_gets -= 1;
            return Err(StoreError("get refused (test)".into()));
        }
        let found = state.entries.get(key).cloned();
        if found.is_some() {
            if let Some(hook) = state.hook.as_mut() {
                let mut writer = MemoryWriter {
                    entries: &mut state.entries,
                    next_cas: &mut state.next_cas,
                };
                hook(key, &mut writer);
            }
        }
        Ok(found)
    }

    fn cas_set(&self, key: &str, value: &[u8], cas: u32) -> Result<Written, StoreError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        state.sets += 1;
        if state.fail_sets > 0 {
            state.fail_sets -= 1;
            return Err(StoreError("set refused (test)".into()));
        }
        if let Some((_, current)) = state.entries.get(key) {
            if cas != 0 && cas != *current {
                return Ok(Written::CasMismatch);
            }
        }
        let new_cas = bump(&mut state.next_cas);
        state
            .entries
            .insert(key.to_owned(), (value.to_vec(), new_cas));
        Ok(Written::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_envoys_cas_rules() {
        let store = MemoryStore::new();
        assert_eq!(store.get("k"), Ok(None));
        // Creating ignores the CAS: there is no create-if-absent.
        assert_eq!(store.cas_set("k", b"a", 77), Ok(Written::Ok));
        let Ok(Some((value, cas))) = store.get("k") else {
            panic!("k was written")
        };
        assert_eq!(value, b"a");
        assert_eq!(
            store.cas_set("k", b"b", cas.wrapping_add(1)),
            Ok(Written::CasMismatch)
        );
        assert_eq!(store.cas_set("k", b"b", cas), Ok(Written::Ok));
        assert_eq!(store.cas_set("k", b"c", cas), Ok(Written::CasMismatch));
        assert_eq!(
            store.cas_set("k", b"c", 0),
            Ok(Written::Ok),
            "0 always writes"
        );
        assert_eq!(store.peek("k").as_deref(), Some(&b"c"[..]));
    }

    #[test]
    fn a_hook_writes_between_a_read_and_its_cas() {
        let store = MemoryStore::new();
        store.cas_set("k", b"mine", 0).unwrap();
        store.on_get(|key, w| w.set(key, b"theirs"));
        let (_, cas) = store.get("k").unwrap().unwrap();
        assert_eq!(
            store.cas_set("k", b"mine again", cas),
            Ok(Written::CasMismatch)
        );
        store.clear_hook();
        assert_eq!(store.peek("k").as_deref(), Some(&b"theirs"[..]));
    }

    #[test]
    fn injected_failures_come_back_as_errors() {
        let store = MemoryStore::new();
        store.fail_next(1, 1);
        assert!(store.get("k").is_err());
        assert!(store.cas_set("k", b"v", 0).is_err());
        assert_eq!(store.get("k"), Ok(None));
        assert_eq!(store.calls(), (2, 1));
    }
}
