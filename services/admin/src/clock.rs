//! The wall clock, read in one place: entity timestamps (Unix seconds, as Kong's
//! `created_at`), event times (milliseconds) and revocation expiry.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in whole Unix seconds.
pub fn now_secs() -> i64 {
    now_ms() / 1000
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
