//! The token-issuer filter's configuration as the host hands it to `on_configure`:
//! `TokenIssuer::from_json` refuses or compiles it, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::token_issuer::TokenIssuer;

fuzz_target!(|data: &[u8]| {
    let _ = TokenIssuer::from_json(data);
});
