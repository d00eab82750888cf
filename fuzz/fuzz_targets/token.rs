//! The JWT as a client sends it: `Token::parse` never panics, and what it accepts it keeps
//! byte for byte (the signing input and payload segment are slices of it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::jwt::Token;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(token) = Token::parse(raw, 8192) {
        assert_eq!(token.raw(), raw);
        assert!(raw.as_bytes().starts_with(token.signing_input()));
        assert!(raw.contains(token.payload_segment()));
    }
});
