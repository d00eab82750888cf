//! The rate-limiting filter's configuration as the host hands it to `on_configure`:
//! `RateLimitPolicySet::from_json` refuses or compiles it, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::rate_limit::RateLimitPolicySet;

fuzz_target!(|data: &[u8]| {
    let _ = RateLimitPolicySet::from_json(data);
});
