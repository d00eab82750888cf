//! The jwt filter's configuration as the host hands it to `on_configure`:
//! `JwtPolicySet::from_json` refuses or compiles it, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::jwt::JwtPolicySet;

fuzz_target!(|data: &[u8]| {
    let _ = JwtPolicySet::from_json(data);
});
