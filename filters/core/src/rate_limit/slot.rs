//! What one shared-data slot holds, byte for byte, and the hash that names its owner.
//!
//! ```text
//! offset  size  field
//! 0       1     layout version (1)
//! 1       8     owner: hash of (table, policy, limit key), little-endian; 0 = never claimed
//! 9       8     expires: Unix seconds from which nothing in the slot matters any more
//! 17      24×n  per window of the owner's policy, shortest first:
//!               start (u64 Unix seconds), count (u64), previous window's count (u64)
//! ```
//! So a slot is 17 bytes unclaimed and at most 17 + 24 × 6 = 161 bytes.

use super::counter::WindowCount;

/// The layout version this build reads and writes.
pub const VERSION: u8 = 1;
/// Bytes before the per-window entries.
pub const HEADER_BYTES: usize = 17;
/// Bytes per window entry.
pub const ENTRY_BYTES: usize = 24;
/// At most one entry per period.
pub const MAX_WINDOWS: usize = 6;
/// The largest slot value.
pub const MAX_BYTES: usize = HEADER_BYTES + ENTRY_BYTES * MAX_WINDOWS;

/// One slot, decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    /// Who counts here; 0 for a slot never claimed.
    pub owner: u64,
    /// Unix seconds from which the slot may be reclaimed by anyone.
    pub expires: u64,
    pub windows: Vec<WindowCount>,
}

impl Slot {
    /// The value of a slot nobody has claimed yet.
    pub fn unclaimed() -> Vec<u8> {
        Slot::default().encode()
    }

    pub fn encode(&self) -> Vec<u8> {
        let windows = &self.windows[..self.windows.len().min(MAX_WINDOWS)];
        let mut out = Vec::with_capacity(HEADER_BYTES + ENTRY_BYTES * windows.len());
        out.push(VERSION);
        out.extend_from_slice(&self.owner.to_le_bytes());
        out.extend_from_slice(&self.expires.to_le_bytes());
        for w in windows {
            out.extend_from_slice(&w.start.to_le_bytes());
            out.extend_from_slice(&w.count.to_le_bytes());
            out.extend_from_slice(&w.previous.to_le_bytes());
        }
        out
    }

    /// `None` for bytes of another version or length: such a slot is treated as free.
    pub fn decode(bytes: &[u8]) -> Option<Slot> {
        let (&version, rest) = bytes.split_first()?;
        if version != VERSION || rest.len() < HEADER_BYTES - 1 {
            return None;
        }
        let entries = bytes.get(HEADER_BYTES..)?;
        if entries.len() % ENTRY_BYTES != 0 || entries.len() / ENTRY_BYTES > MAX_WINDOWS {
            return None;
        }
        let windows = entries
            .chunks_exact(ENTRY_BYTES)
            .map(|e| WindowCount {
                start: le(e, 0),
                count: le(e, 8),
                previous: le(e, 16),
            })
            .collect();
        Some(Slot {
            owner: le(bytes, 1),
            expires: le(bytes, 9),
            windows,
        })
    }

    /// Whether anyone may take this slot over at `now_secs`: never claimed, or everything
    /// in it has expired.
    pub fn reclaimable(&self, now_secs: u64) -> bool {
        self.owner == 0 || self.expires <= now_secs
    }
}

/// The u64 at `at` (little-endian); 0 if the bytes are short (callers checked lengths).
fn le(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// A 64-bit hash of byte strings, the same in every worker and every build: FNV-1a over
/// each part with its length (so `("ab","c")` and `("a","bc")` differ), then a
/// SplitMix64 finaliser so the low bits (the slot index) are as good as the high ones.
/// Never 0, which marks an unclaimed slot.
///
/// Not keyed: a client that picks its own limit key (`limit_by: header`) could aim keys at
/// one slot's neighbourhood. The worst it achieves is pushing keys into the shared
/// overflow counters, where they are limited early, never over-admitted.
pub fn hash(parts: &[&[u8]]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for part in parts {
        feed(&(part.len() as u64).to_le_bytes());
        feed(part);
    }
    let mut z = h;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    z.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_round_trips_with_up_to_six_windows() {
        for n in 0..=MAX_WINDOWS {
            let slot = Slot {
                owner: 0xdead_beef_0000_0001,
                expires: 1_767_225_660,
                windows: (0..n as u64)
                    .map(|i| WindowCount {
                        start: 1_767_225_600 + i,
                        count: u64::MAX - i,
                        previous: i * 7,
                    })
                    .collect(),
            };
            let bytes = slot.encode();
            assert_eq!(bytes.len(), HEADER_BYTES + ENTRY_BYTES * n);
            assert_eq!(Slot::decode(&bytes), Some(slot));
        }
        assert_eq!(Slot::unclaimed().len(), HEADER_BYTES);
        assert_eq!(MAX_BYTES, 161);
    }

    #[test]
    fn foreign_or_damaged_bytes_do_not_decode() {
        let good = Slot {
            owner: 5,
            expires: 6,
            windows: vec![WindowCount::default()],
        }
        .encode();
        let mut other_version = good.clone();
        other_version[0] = 2;
        let cases: [&[u8]; 5] = [
            b"",
            &good[..HEADER_BYTES - 1],
            &good[..good.len() - 1],
            &other_version,
            b"hello, world, this is not a slot",
        ];
        for bytes in cases {
            assert_eq!(Slot::decode(bytes), None, "{bytes:?}");
        }
        let seven = [good.clone(), vec![0; ENTRY_BYTES * 6]].concat();
        assert_eq!(Slot::decode(&seven), None);
    }

    #[test]
    fn an_unclaimed_or_expired_slot_is_reclaimable() {
        let slot = |owner, expires| Slot {
            owner,
            expires,
            windows: Vec::new(),
        };
        assert!(slot(0, u64::MAX).reclaimable(0));
        assert!(slot(9, 100).reclaimable(100));
        assert!(!slot(9, 101).reclaimable(100));
    }

    #[test]
    fn the_hash_separates_parts_and_is_never_zero() {
        assert_ne!(hash(&[b"ab", b"c"]), hash(&[b"a", b"bc"]));
        assert_ne!(hash(&[b"ip", b"1.2.3.4"]), hash(&[b"header", b"1.2.3.4"]));
        assert_eq!(hash(&[b"x"]), hash(&[b"x"]));
        assert_ne!(hash(&[]), 0);
    }

    #[test]
    fn the_hash_spreads_sequential_keys_over_slot_indexes() {
        let slots = 1_024u64;
        let mut used = vec![0u32; slots as usize];
        for i in 0..slots * 8 {
            let ip = format!("10.0.{}.{}", i / 256, i % 256);
            used[(hash(&[b"ip", ip.as_bytes()]) % slots) as usize] += 1;
        }
        let busiest = used.iter().max().copied().unwrap_or(0);
        assert!(
            busiest < 30,
            "uneven: one slot index drew {busiest} of 8 per slot"
        );
    }
}
