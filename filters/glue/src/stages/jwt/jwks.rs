//! Remote JWKS for the providers that have one: one copy in shared data for every worker
//! (`portcullis.jwt.jwks.<provider>`: 8-byte generation, then the document), fetched by one
//! worker at a time (`portcullis.jwt.refresh.<provider>`, a CAS-guarded `RefreshState`),
//! refreshed on the tick and on an unknown `kid`, never more often than the floor, always
//! dispatched by the worker's root context. A failed or garbage fetch keeps the last good set,
//! and so does shared data the host refuses: nothing is claimed, nothing panics.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, Status};

use crate::host::log;
use crate::shared::HostStore;
use portcullis_core::jose::jwks::parse_jwks;
use portcullis_core::jwt::keyring::{KeyStore, RemoteJwks};
use portcullis_core::jwt::refresh::{RefreshState, Trigger};
use portcullis_core::shared::{SharedStore, Written};
use portcullis_core::UnixTime;

fn jwks_key(provider: &str) -> String {
    format!("portcullis.jwt.jwks.{provider}")
}

fn refresh_key(provider: &str) -> String {
    format!("portcullis.jwt.refresh.{provider}")
}

/// Installs the shared copy of `provider`'s keys when it is newer than this worker's.
/// `true` when the worker's keys changed.
pub fn sync(store: &mut KeyStore, provider: &str) -> bool {
    let Ok(Some((bytes, _))) = HostStore.get(&jwks_key(provider)) else {
        return false;
    };
    let (Some(generation), Some(document)) = (bytes.get(..8), bytes.get(8..)) else {
        return false;
    };
    let mut word = [0u8; 8];
    word.copy_from_slice(generation);
    let generation = u64::from_le_bytes(word);
    if store
        .generation(provider)
        .is_some_and(|have| have >= generation)
    {
        return false;
    }
    match parse_jwks(document) {
        Ok(parsed) => {
            store.install(provider, generation, parsed.set);
            true
        }
        Err(_) => false,
    }
}

/// Claims the right to fetch now if one is due; the caller then dispatches [`fetch`].
pub fn claim(remote: &RemoteJwks, now: UnixTime, trigger: Trigger) -> bool {
    let key = refresh_key(&remote.provider);
    // A host error claims nothing. A CAS of 0 would make the claim's write unconditional:
    // such an entry counts as absent.
    let Ok(mut entry) = HostStore.get(&key) else {
        return false;
    };
    if entry.as_ref().is_none_or(|(_, cas)| *cas == 0) {
        // The ABI has no create-if-absent: a write without a CAS always succeeds, so two
        // workers could both claim a key that does not exist yet. Create it (unclaimed)
        // first, then claim with the CAS that creation gave. (Only a worker creating it
        // while another has just claimed can still overwrite that claim: one extra fetch,
        // once, at start.)
        if !RefreshState::default().due(remote, now, trigger) {
            return false;
        }
        if HostStore
            .cas_set(&key, &RefreshState::default().encode(), 0)
            .is_err()
        {
            return false;
        }
        entry = HostStore.get(&key).ok().flatten();
    }
    let Some((bytes, cas)) = entry.filter(|(_, cas)| *cas != 0) else {
        return false;
    };
    let state = RefreshState::decode(&bytes);
    if !state.due(remote, now, trigger) {
        return false;
    }
    let started = state.started(now).encode();
    // A CAS mismatch means another worker claimed it first.
    matches!(HostStore.cas_set(&key, &started, cas), Ok(Written::Ok))
}

/// Dispatches the fetch; the answer comes to the calling context's `on_http_call_response`.
/// Only the root context calls it: a stream's call dies with the stream (a client's reset
/// would cancel it and leave the claim standing until it expires).
pub fn fetch(remote: &RemoteJwks) -> Result<u32, Status> {
    hostcalls::dispatch_http_call(
        &remote.cluster,
        vec![
            (":method", "GET"),
            (":path", &remote.path),
            (":authority", &remote.authority),
            ("accept", "application/json"),
        ],
        None,
        vec![],
        Duration::from_millis(remote.timeout_ms),
    )
}

/// Handles a fetch's answer: a 200 with a usable key set becomes the new shared copy and
/// this worker's keys; anything else is logged and the last good set stays. Records the
/// outcome in the refresh state either way. `true` when new keys were installed.
pub fn answered(
    store: &mut KeyStore,
    remote: &RemoteJwks,
    now: UnixTime,
    body_size: usize,
) -> bool {
    let (status, body) = crate::host::http_call_response(body_size);
    let installed = match (status.as_deref(), parse_jwks(&body)) {
        (Some("200"), Ok(parsed)) => {
            let generation = store
                .generation(&remote.provider)
                .unwrap_or(0)
                .max(shared_generation(&remote.provider))
                + 1;
            let mut value = generation.to_le_bytes().to_vec();
            value.extend_from_slice(&body);
            if let Err(e) = HostStore.cas_set(&jwks_key(&remote.provider), &value, 0) {
                log(
                    LogLevel::Warn,
                    &format!(
                        "portcullis-jwt: JWKS of {}: not shared with the other workers: {e}",
                        remote.provider
                    ),
                );
            }
            if !parsed.skipped.is_empty() {
                log(
                    LogLevel::Warn,
                    &format!(
                        "portcullis-jwt: JWKS of {}: skipped keys: {}",
                        remote.provider,
                        parsed.skipped.join("; ")
                    ),
                );
            }
            store.install(&remote.provider, generation, parsed.set);
            true
        }
        (status, parsed) => {
            let why = match (status, parsed) {
                (None, _) => "fetch failed (no answer)".to_string(),
                (Some("200"), Err(e)) => format!("unusable document: {e}"),
                (Some(code), _) => format!("status {code}"),
            };
            log(
                LogLevel::Warn,
                &format!(
                    "portcullis-jwt: JWKS of {} not refreshed, keeping the last good set: {why}",
                    remote.provider
                ),
            );
            false
        }
    };
    finish(remote, now, installed);
    installed
}

/// Releases a claim whose fetch could not be dispatched: the next try waits for the floor.
pub fn release(remote: &RemoteJwks, now: UnixTime) {
    finish(remote, now, false);
}

/// Records in the shared refresh state that this worker's fetch ended. When the host
/// refuses the state, the claim stands until it expires.
fn finish(remote: &RemoteJwks, now: UnixTime, installed: bool) {
    let key = refresh_key(&remote.provider);
    let written = HostStore.get(&key).and_then(|entry| {
        let bytes = entry.map(|(bytes, _)| bytes).unwrap_or_default();
        let state = RefreshState::decode(&bytes).finished(now, installed);
        HostStore.cas_set(&key, &state.encode(), 0)
    });
    if let Err(e) = written {
        log(
            LogLevel::Warn,
            &format!(
                "portcullis-jwt: JWKS of {}: refresh state not recorded: {e}",
                remote.provider
            ),
        );
    }
}

fn shared_generation(provider: &str) -> u64 {
    match HostStore.get(&jwks_key(provider)) {
        Ok(Some((bytes, _))) => bytes.get(..8).map_or(0, |g| {
            let mut word = [0u8; 8];
            word.copy_from_slice(g);
            u64::from_le_bytes(word)
        }),
        _ => 0,
    }
}
