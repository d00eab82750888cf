//! When to fetch a provider's remote JWKS: on a period, on an unknown `kid` or missing keys
//! (never more often than a floor), never twice at once. The glue keeps one state per
//! provider in shared data (encoded with [`RefreshState::encode`]) and claims a fetch with
//! a CAS, so one worker fetches for all.

use super::keyring::RemoteJwks;
use crate::UnixTime;

/// Why the glue asks whether a fetch is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The periodic tick.
    Tick,
    /// A token named a `kid` the current set lacks (key rotation).
    UnknownKid,
    /// A request found no keys at all for the provider.
    NoKeys,
}

/// The fetch history of one provider's JWKS, in seconds since the epoch (0 = never).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefreshState {
    /// When the last fetch started.
    pub last_attempt: u64,
    /// When the last good key set was installed.
    pub last_success: u64,
    /// Whether a fetch is under way (started at `last_attempt`).
    pub in_flight: bool,
}

impl RefreshState {
    /// Whether a fetch should start now. A fetch in flight longer than twice its timeout is
    /// presumed lost (the worker that started it may be gone).
    pub fn due(&self, remote: &RemoteJwks, now: UnixTime, trigger: Trigger) -> bool {
        let now = now.secs();
        let since_attempt = now.saturating_sub(self.last_attempt);
        if self.in_flight
            && since_attempt
                < (remote.timeout_ms / 1000)
                    .saturating_add(1)
                    .saturating_mul(2)
        {
            return false;
        }
        if self.last_attempt == 0 {
            return true;
        }
        let floor_passed = since_attempt >= remote.min_refresh_interval;
        match trigger {
            Trigger::Tick => {
                let stale = self.last_success == 0
                    || now.saturating_sub(self.last_success) >= remote.refresh_interval;
                stale && floor_passed
            }
            Trigger::UnknownKid | Trigger::NoKeys => floor_passed,
        }
    }

    /// The state once a fetch starts at `now`.
    pub fn started(self, now: UnixTime) -> RefreshState {
        RefreshState {
            last_attempt: now.secs(),
            in_flight: true,
            ..self
        }
    }

    /// The state once a fetch ends. `installed`: a good key set was parsed and stored; on a
    /// failure or garbage the previous set stays and only the floor delays the next try.
    pub fn finished(self, now: UnixTime, installed: bool) -> RefreshState {
        RefreshState {
            last_success: if installed {
                now.secs()
            } else {
                self.last_success
            },
            in_flight: false,
            ..self
        }
    }

    /// 17 bytes for shared data: both times little-endian, then the in-flight flag.
    pub fn encode(&self) -> [u8; 17] {
        let mut out = [0u8; 17];
        for (slot, byte) in out.iter_mut().zip(
            self.last_attempt
                .to_le_bytes()
                .into_iter()
                .chain(self.last_success.to_le_bytes())
                .chain([u8::from(self.in_flight)]),
        ) {
            *slot = byte;
        }
        out
    }

    /// Reads [`RefreshState::encode`]'s bytes; anything else (absent, torn) reads as never
    /// fetched, which only makes a fetch due.
    pub fn decode(bytes: &[u8]) -> RefreshState {
        let word = |range: std::ops::Range<usize>| {
            bytes
                .get(range)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_le_bytes)
        };
        match bytes.len() {
            17 => RefreshState {
                last_attempt: word(0..8),
                last_success: word(8..16),
                in_flight: bytes.get(16) == Some(&1),
            },
            _ => RefreshState::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote() -> RemoteJwks {
        RemoteJwks {
            provider: "p".into(),
            cluster: "c".into(),
            authority: "a".into(),
            path: "/".into(),
            timeout_ms: 5000,
            refresh_interval: 600,
            min_refresh_interval: 30,
        }
    }

    const T: u64 = 1_700_000_000;

    #[test]
    fn fetches_at_once_when_never_fetched() {
        assert!(RefreshState::default().due(&remote(), UnixTime(T), Trigger::Tick));
    }

    #[test]
    fn never_fetches_twice_at_once_unless_the_fetch_was_lost() {
        let slow = RemoteJwks {
            timeout_ms: 60_000,
            ..remote()
        };
        let s = RefreshState::default().started(UnixTime(T));
        assert!(!s.due(&slow, UnixTime(T + 30), Trigger::NoKeys));
        assert!(s.due(&slow, UnixTime(T + 122), Trigger::NoKeys));
    }

    #[test]
    fn refreshes_on_the_period() {
        let s = RefreshState::default()
            .started(UnixTime(T))
            .finished(UnixTime(T), true);
        assert!(!s.due(&remote(), UnixTime(T + 599), Trigger::Tick));
        assert!(s.due(&remote(), UnixTime(T + 600), Trigger::Tick));
    }

    #[test]
    fn unknown_kid_refetches_but_not_more_often_than_the_floor() {
        let s = RefreshState::default()
            .started(UnixTime(T))
            .finished(UnixTime(T), true);
        assert!(!s.due(&remote(), UnixTime(T + 29), Trigger::UnknownKid));
        assert!(s.due(&remote(), UnixTime(T + 30), Trigger::UnknownKid));
    }

    #[test]
    fn a_failed_fetch_is_retried_at_the_floor_and_keeps_the_last_success() {
        let good = RefreshState::default()
            .started(UnixTime(T))
            .finished(UnixTime(T), true);
        let failed = good
            .started(UnixTime(T + 600))
            .finished(UnixTime(T + 601), false);
        assert_eq!(failed.last_success, T);
        assert!(!failed.due(&remote(), UnixTime(T + 620), Trigger::Tick));
        assert!(failed.due(&remote(), UnixTime(T + 630), Trigger::Tick));
    }

    #[test]
    fn round_trips_through_shared_data_bytes() {
        let s = RefreshState {
            last_attempt: T,
            last_success: T - 5,
            in_flight: true,
        };
        assert_eq!(RefreshState::decode(&s.encode()), s);
        assert_eq!(RefreshState::decode(b"torn"), RefreshState::default());
    }
}
