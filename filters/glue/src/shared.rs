//! Shared data through the raw proxy-wasm calls, as `portcullis_core::shared::SharedStore`.
//!
//! The SDK's `hostcalls::get_shared_data` and `set_shared_data` panic on any status other
//! than the few they expect, and a panic kills the VM for every later request on the worker.
//! These return every other status as an error instead, for the caller to fail closed: the
//! rate limiter turns it into a counting fault that `fault_tolerant` decides; the jwt
//! filter's JWKS refresh claims nothing and keeps the keys it has.

use std::ptr::{null, null_mut};

use portcullis_core::shared::{SharedStore, StoreError, Written};

// The statuses of the proxy-wasm ABI that matter here.
const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;

#[link(wasm_import_module = "env")]
extern "C" {
    // Declared with a plain u32 result: a status outside the SDK's `Status` enum must not
    // become an invalid enum value.
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;

    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
}

/// The host's shared data (scoped by Envoy to this VM id).
pub struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        let mut cas: u32 = 0;
        // SAFETY: the pointers are to live locals; on Ok the host has written `data` with a
        // buffer it allocated through this module's `proxy_on_memory_allocate` (the SDK's,
        // a `Vec<u8>` of capacity `size`), which we now own, exactly as the SDK does it.
        let status = unsafe {
            proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
        };
        match status {
            OK if data.is_null() => Ok(Some((Vec::new(), cas))),
            OK => {
                // SAFETY: see above.
                let value = unsafe { Vec::from_raw_parts(data, size, size) };
                Ok(Some((value, cas)))
            }
            NOT_FOUND => Ok(None),
            other => Err(StoreError(format!("get {key:?}: status {other}"))),
        }
    }

    fn cas_set(&self, key: &str, value: &[u8], cas: u32) -> Result<Written, StoreError> {
        let value_ptr = if value.is_empty() {
            null()
        } else {
            value.as_ptr()
        };
        // SAFETY: both slices outlive the call; the host only reads them.
        let status =
            unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value_ptr, value.len(), cas) };
        match status {
            OK => Ok(Written::Ok),
            CAS_MISMATCH => Ok(Written::CasMismatch),
            other => Err(StoreError(format!("set {key:?}: status {other}"))),
        }
    }
}
