//! The acl filter's configuration as the host hands it to `on_configure`:
//! `AclPolicySet::from_json` refuses or compiles it, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::acl::AclPolicySet;

fuzz_target!(|data: &[u8]| {
    let _ = AclPolicySet::from_json(data);
});
