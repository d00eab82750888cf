//! Which proxy-wasm ABI versions a module speaks, read from its exports.
//!
//! A proxy-wasm module announces each ABI version it implements by exporting a function named
//! `proxy_abi_version_<major>_<minor>_<patch>`; the host picks its ABI from that name. The
//! runtime config's `abiVersions` says the same thing, so it is read from the module rather
//! than written by hand: a module that exports none is not a proxy-wasm filter and is refused.

use anyhow::{bail, Context};
use wasmparser::{Parser, Payload};

const PREFIX: &str = "proxy_abi_version_";

/// The ABI versions `wasm` exports, as `v<major>.<minor>.<patch>`, sorted.
pub fn proxy_abi_versions(wasm: &[u8]) -> anyhow::Result<Vec<String>> {
    let mut versions = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::ExportSection(exports) = payload.context("not a Wasm module")? {
            for export in exports {
                let export = export.context("reading the export section")?;
                if let Some(version) = export.name.strip_prefix(PREFIX) {
                    versions.push(format!("v{}", version.replace('_', ".")));
                }
            }
        }
    }
    if versions.is_empty() {
        bail!("exports no {PREFIX}*: not a proxy-wasm module");
    }
    versions.sort();
    versions.dedup();
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module exporting one function under each of `names` (hand-assembled binary format).
    fn module_exporting(names: &[&str]) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        // type section: one type, () -> ()
        m.extend([1, 4, 1, 0x60, 0, 0]);
        // function section: one function of type 0
        m.extend([3, 2, 1, 0]);
        // export section
        let mut body = vec![names.len() as u8];
        for name in names {
            body.push(name.len() as u8);
            body.extend(name.as_bytes());
            body.extend([0, 0]); // func index 0
        }
        m.push(7);
        m.push(body.len() as u8);
        m.extend(body);
        // code section: one empty body
        m.extend([10, 4, 1, 2, 0, 0x0b]);
        m
    }

    #[test]
    fn reads_the_version_from_the_export_name() {
        let wasm = module_exporting(&["proxy_abi_version_0_2_1", "proxy_on_memory_allocate"]);
        assert_eq!(proxy_abi_versions(&wasm).unwrap(), ["v0.2.1"]);
    }

    #[test]
    fn lists_every_version_a_module_exports() {
        let wasm = module_exporting(&["proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0"]);
        assert_eq!(proxy_abi_versions(&wasm).unwrap(), ["v0.2.0", "v0.2.1"]);
    }

    #[test]
    fn refuses_a_module_that_is_not_proxy_wasm() {
        let err = proxy_abi_versions(&module_exporting(&["_start"])).unwrap_err();
        assert!(err.to_string().contains("not a proxy-wasm module"), "{err}");
    }

    #[test]
    fn refuses_bytes_that_are_not_wasm() {
        assert!(proxy_abi_versions(b"#!/bin/sh\n").is_err());
    }
}
