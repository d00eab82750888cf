//! The host's serialized header map (proxy-wasm's count, length table, NUL-terminated
//! strings): `HeaderMap::from_serialized` never panics, and a map it accepts answers for
//! every name it holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::header_map::HeaderMap;

fuzz_target!(|data: &[u8]| {
    if let Ok(map) = HeaderMap::from_serialized(data.to_vec()) {
        assert_eq!(map.iter().count(), map.len());
        for name in map.names() {
            assert!(map.get(name).is_some());
        }
    }
});
