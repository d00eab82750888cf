//! Signatures checked by the host: Envoy's `verify_signature` foreign function (BoringSSL,
//! 20-40x faster than RSA or ECDSA inside the module). Which algorithms go to the host is
//! decided once at start by [`probe`], never per request by trial and error; the rest stay
//! with `portcullis_core`'s in-module backend.

use prost::Message;
use proxy_wasm::hostcalls;

use portcullis_core::envoy_foreign::{VerifySignatureArguments, VerifySignatureResult};
use portcullis_core::jose::crypto::{
    host_verify_input, Algorithm, AlgorithmSet, CryptoError, PreparedKey, SignatureBackend,
};

const FUNCTION: &str = "verify_signature";

/// The host's `verify_signature`.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostCrypto;

impl SignatureBackend for HostCrypto {
    fn verify(
        &self,
        alg: Algorithm,
        key: &PreparedKey,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<bool, CryptoError> {
        let Some(input) = host_verify_input(alg, key, signing_input, signature)? else {
            // Cannot be valid (wrong length, ECDSA r or s out of range): no host call.
            return Ok(false);
        };
        let arguments = VerifySignatureArguments {
            hash_function: input.hash_function.to_string(),
            public_key: input.public_key.to_vec(),
            public_key_pem: String::new(),
            signature: input.signature.into_owned(),
            text: input.text.to_vec(),
        };
        call(&arguments)
    }
}

fn call(arguments: &VerifySignatureArguments) -> Result<bool, CryptoError> {
    let answer = hostcalls::call_foreign_function(FUNCTION, Some(&arguments.encode_to_vec()))
        .map_err(|status| CryptoError::Host(format!("{status:?}")))?
        .unwrap_or_default();
    let result = VerifySignatureResult::decode(answer.as_slice())
        .map_err(|e| CryptoError::Host(format!("result does not decode: {e}")))?;
    Ok(result.result)
}

const TEXT: &[u8] = include_bytes!("../vectors/text");
const RSA_KEY: &[u8] = include_bytes!("../vectors/rsa.pub.der");
const RSA_SIG: &[u8] = include_bytes!("../vectors/rsa.sig");
const EC_KEY: &[u8] = include_bytes!("../vectors/ec.pub.der");
const EC_SIG: &[u8] = include_bytes!("../vectors/ec.sig");

/// Asks the host which algorithm families it verifies correctly: each known-good vector
/// must pass and the same vector with one bit flipped must fail. A host without the
/// function (any host but Envoy) gets the empty set.
pub fn probe() -> AlgorithmSet {
    let answers = |key: &[u8], sig: &[u8]| -> bool {
        let good = VerifySignatureArguments {
            hash_function: "sha256".into(),
            public_key: key.to_vec(),
            public_key_pem: String::new(),
            signature: sig.to_vec(),
            text: TEXT.to_vec(),
        };
        let mut bad = good.clone();
        if let Some(last) = bad.text.last_mut() {
            *last ^= 1;
        }
        matches!((call(&good), call(&bad)), (Ok(true), Ok(false)))
    };
    let mut set = AlgorithmSet::default();
    if answers(RSA_KEY, RSA_SIG) {
        set = set
            .with(Algorithm::RS256)
            .with(Algorithm::RS384)
            .with(Algorithm::RS512);
    }
    if answers(EC_KEY, EC_SIG) {
        set = set.with(Algorithm::ES256).with(Algorithm::ES384);
    }
    set
}
