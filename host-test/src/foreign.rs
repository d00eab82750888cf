//! Envoy's crypto foreign functions `verify_signature` and `sign`, natively with OpenSSL as
//! Envoy runs them with BoringSSL (`Common::Crypto::Utility`, `foreign.cc`). Arguments and
//! results are the protobuf messages of Envoy's `verify_signature.proto` and `sign.proto`.
//! [`crate::Host::new`] registers both, as Envoy always does; a test removes them to act as a
//! host without them.

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::sign::{Signer, Verifier};
use prost::Message;

use crate::abi::Status;

pub use portcullis_core::envoy_foreign::{
    SignArguments, SignResult, VerifySignatureArguments, VerifySignatureResult,
};

/// The digests Envoy's crypto utility knows by name.
fn digest(name: &str) -> Option<MessageDigest> {
    Some(match name {
        "sha1" => MessageDigest::sha1(),
        "sha224" => MessageDigest::sha224(),
        "sha256" => MessageDigest::sha256(),
        "sha384" => MessageDigest::sha384(),
        "sha512" => MessageDigest::sha512(),
        _ => return None,
    })
}

/// Exactly one of DER and PEM, as Envoy's `importPublicKey` demands (otherwise
/// `BadArgument`). A key that does not parse is not refused there: like Envoy's, it fails
/// later as "Failed to initialize digest verify." (`None` here).
fn public_key(args: &VerifySignatureArguments) -> Result<Option<PKey<Public>>, Status> {
    Ok(
        match (args.public_key.is_empty(), args.public_key_pem.is_empty()) {
            (false, true) => PKey::public_key_from_der(&args.public_key),
            (true, false) => PKey::public_key_from_pem(args.public_key_pem.as_bytes()),
            _ => return Err(Status::BadArgument),
        }
        .ok(),
    )
}

fn private_key(args: &SignArguments) -> Result<Option<PKey<Private>>, Status> {
    Ok(
        match (args.private_key.is_empty(), args.private_key_pem.is_empty()) {
            (false, true) => PKey::private_key_from_der(&args.private_key),
            (true, false) => PKey::private_key_from_pem(args.private_key_pem.as_bytes()),
            _ => return Err(Status::BadArgument),
        }
        .ok(),
    )
}

/// `verify_signature`: a malformed message or key is `BadArgument`; a verification that
/// fails, for any reason, is `Ok` with `result: false` and the reason.
pub fn verify_signature(arguments: &[u8]) -> Result<Vec<u8>, Status> {
    let args = VerifySignatureArguments::decode(arguments).map_err(|_| Status::BadArgument)?;
    let key = public_key(&args)?;
    let outcome = match digest(&args.hash_function) {
        None => Err(format!("{} is not supported.", args.hash_function)),
        Some(md) => key
            .as_ref()
            .and_then(|key| Verifier::new(md, key).ok())
            .ok_or_else(|| "Failed to initialize digest verify.".to_string())
            .and_then(
                |mut v| match v.verify_oneshot(&args.signature, &args.text) {
                    Ok(true) => Ok(()),
                    _ => Err("Failed to verify digest. Error code: 0".to_string()),
                },
            ),
    };
    let result = VerifySignatureResult {
        result: outcome.is_ok(),
        error: outcome.err().unwrap_or_default(),
    };
    Ok(result.encode_to_vec())
}

/// `sign`: a malformed message or key is `BadArgument`; a signing failure is `Ok` with
/// `result: false` and the reason.
pub fn sign(arguments: &[u8]) -> Result<Vec<u8>, Status> {
    let args = SignArguments::decode(arguments).map_err(|_| Status::BadArgument)?;
    let key = private_key(&args)?;
    let outcome = match digest(&args.hash_function) {
        None => Err(format!("{} is not supported.", args.hash_function)),
        Some(md) => key
            .as_ref()
            .and_then(|key| Signer::new(md, key).ok())
            .ok_or_else(|| "Failed to initialize digest sign.".to_string())
            .and_then(|mut s| {
                s.sign_oneshot_to_vec(&args.text)
                    .map_err(|_| "Failed to sign digest.".to_string())
            }),
    };
    let result = match outcome {
        Ok(signature) => SignResult {
            result: true,
            signature,
            error: String::new(),
        },
        Err(error) => SignResult {
            result: false,
            signature: Vec::new(),
            error,
        },
    };
    Ok(result.encode_to_vec())
}
