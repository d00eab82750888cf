//! Where tokens are signed, decided once at start: Envoy's `sign` foreign function
//! (BoringSSL, for RS256 and ES256; [`HostSigner`]) when a probe shows it answers correctly,
//! else the module's own RustCrypto signer. And the random bytes of each `jti`.

use crate::host_crypto::HostSigner;
use portcullis_core::jose::CryptoChoice;
use portcullis_core::token_issuer::{
    InModuleSigner, SignError, SigningBackend, SigningKey, TokenIssuer, PROBE_TEXT,
};

/// The backend chosen at start.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Host(HostSigner),
    InModule(InModuleSigner),
}

impl SigningBackend for Backend {
    fn sign(&self, key: &SigningKey, input: &[u8]) -> Result<Vec<u8>, SignError> {
        match self {
            Backend::Host(host) => host.sign(key, input),
            Backend::InModule(module) => module.sign(key, input),
        }
    }
}

/// Picks the backend for the active key and says why, for the log: the host only when
/// `crypto` allows it, the key is RS256 or ES256, and the host's signature of a fixed text
/// verifies in the module with the key's public half.
pub fn choose(issuer: &TokenIssuer) -> (Backend, String) {
    let key = issuer.active_key();
    let module = |why: String| (Backend::InModule(InModuleSigner), why);
    if issuer.crypto() == CryptoChoice::InModule {
        return module("in the module (crypto: in_module)".into());
    }
    if !key.host_capable() {
        return module("in the module (the host signs RS256 and ES256 only)".into());
    }
    match HostSigner.sign(key, PROBE_TEXT) {
        Ok(signature) if key.verifies(PROBE_TEXT, &signature) => (
            Backend::Host(HostSigner),
            "on the host (Envoy's sign)".into(),
        ),
        Ok(_) => module("in the module (the host's signature did not verify)".into()),
        Err(e) => module(format!("in the module (host sign unavailable: {e})")),
    }
}

/// 16 random bytes for a `jti`, from WASI's `random_get`; `None` without a random source.
pub fn jti() -> Option<[u8; 16]> {
    let mut bytes = [0u8; 16];
    fill(&mut bytes).then_some(bytes)
}

#[cfg(target_os = "wasi")]
fn fill(bytes: &mut [u8]) -> bool {
    getrandom::getrandom(bytes).is_ok()
}

#[cfg(not(target_os = "wasi"))]
fn fill(_bytes: &mut [u8]) -> bool {
    false
}
