//! The host's crypto, Envoy's two foreign functions (BoringSSL, 20-40x faster than RSA or
//! ECDSA inside the module): `verify_signature` checks the jwt filter's signatures
//! ([`HostCrypto`]), `sign` makes the token issuer's ([`HostSigner`]). Whether the host is
//! trusted with an algorithm is decided once at start by a probe (here [`probe`], for
//! `sign` the token issuer's own), never per request by trial and error; the rest stay with
//! `portcullis_core`'s in-module backends.

use prost::Message;
use proxy_wasm::hostcalls;

use portcullis_core::envoy_foreign::{
    SignArguments, SignResult, VerifySignatureArguments, VerifySignatureResult,
};
use portcullis_core::jose::crypto::{
    host_verify_input, Algorithm, AlgorithmSet, CryptoError, PreparedKey, SignatureBackend,
};
use portcullis_core::token_issuer::{SignError, SigningBackend, SigningKey};

const VERIFY: &str = "verify_signature";
const SIGN: &str = "sign";

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
    let result: VerifySignatureResult = foreign(VERIFY, arguments, CryptoError::Host)?;
    Ok(result.result)
}

/// The host's `sign`.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostSigner;

impl SigningBackend for HostSigner {
    // Inline: compiled only into the filters that sign. In the jwt filter's module, code
    // here (dead there) still changed how it was optimised: 8 wasm instructions more for
    // every signature checked on the host (host-test).
    #[inline]
    fn sign(&self, key: &SigningKey, input: &[u8]) -> Result<Vec<u8>, SignError> {
        let (hash, private_key) = key
            .host_arguments()
            .ok_or(SignError::Unsupported(key.alg()))?;
        let arguments = SignArguments {
            hash_function: hash.to_owned(),
            private_key: private_key.to_vec(),
            text: input.to_vec(),
            private_key_pem: String::new(),
        };
        let result: SignResult = foreign(SIGN, &arguments, SignError::Host)?;
        if !result.result {
            return Err(SignError::Host(result.error));
        }
        key.jws_signature_from_host(&result.signature)
            .ok_or_else(|| SignError::Host("the answer is not a signature of this key".into()))
    }
}

/// Calls the host's foreign function `name` with `arguments` and decodes its answer (none
/// reads as the empty message); a failure is said in words and made the caller's `error`.
fn foreign<A: Message, R: Message + Default, E>(
    name: &str,
    arguments: &A,
    error: impl Fn(String) -> E,
) -> Result<R, E> {
    let answer = hostcalls::call_foreign_function(name, Some(&arguments.encode_to_vec()))
        .map_err(|status| error(format!("{status:?}")))?
        .unwrap_or_default();
    R::decode(answer.as_slice()).map_err(|e| error(format!("result does not decode: {e}")))
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
