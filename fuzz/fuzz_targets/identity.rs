//! The identity envelope jwt hands on in filter state and acl / rate-limiting read:
//! `Identity::decode` never panics, and what it accepts survives `encode` unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::identity::{DecodeError, Identity};

fuzz_target!(|data: &[u8]| {
    if let Ok(identity) = Identity::decode(data) {
        match Identity::decode(&identity.encode()) {
            Ok(again) => assert_eq!(again, identity),
            // `encode` writes `anonymous` even when the input left it out: an input at the
            // size limit may come back over it.
            Err(DecodeError::TooLarge(_)) => {}
            Err(e) => panic!("decode(encode(identity)) failed: {e}"),
        }
    }
});
