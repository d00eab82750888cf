//! JSON Web Keys (RFC 7517/7518): one JWK or a whole JWKS document into prepared keys.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine};
use rsa::{BoxedUint, PublicKey as RsaPublicKey};
use serde_json::{Map, Value};

use super::crypto::{Algorithm, AlgorithmSet, Family, KeyError, PreparedKey};
use crate::config::strict_json;

/// A JWKS document larger than this is refused whole.
pub const MAX_JWKS_BYTES: usize = 512 * 1024;
/// Keys past this many in one document are skipped (and reported).
pub const MAX_JWKS_KEYS: usize = 100;

// JWK members are base64url without padding (RFC 7515 §2), but some issuers pad: accept
// either, still refusing the standard alphabet and whitespace.
const JWK_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One usable key of a set.
#[derive(Clone, Debug)]
pub struct Jwk {
    /// The JWK's `kid`, matched against a token's `kid` header.
    pub kid: Option<String>,
    /// The prepared key, pinned to the JWK's `alg` (or its key type's algorithms without one).
    pub key: Arc<PreparedKey>,
}

/// The usable keys of one JWKS document.
#[derive(Clone, Debug, Default)]
pub struct JwkSet {
    keys: Vec<Jwk>,
}

/// A parsed JWKS: the usable keys, and one line per key that was skipped.
#[derive(Clone, Debug)]
pub struct ParsedJwks {
    pub set: JwkSet,
    pub skipped: Vec<String>,
}

/// Why a JWKS document was refused whole (the glue keeps the last good set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksError {
    TooLarge(usize),
    NotJson,
    NoKeysArray,
    /// Not one key was usable; the reasons of each are attached.
    NoUsableKey(Vec<String>),
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::TooLarge(len) => write!(f, "JWKS of {len} bytes, limit {MAX_JWKS_BYTES}"),
            JwksError::NotJson => f.write_str("JWKS is not a JSON object (or repeats a member)"),
            JwksError::NoKeysArray => f.write_str("JWKS has no \"keys\" array"),
            JwksError::NoUsableKey(skipped) => {
                write!(f, "JWKS has no usable key: {}", skipped.join("; "))
            }
        }
    }
}

impl JwkSet {
    /// Builds a set from keys already prepared (inline configuration).
    pub fn from_keys(keys: Vec<Jwk>) -> JwkSet {
        JwkSet { keys }
    }

    /// The keys that may verify a token with this `kid` and `alg`: those with that `kid` when
    /// the token names one, every key otherwise, and always only keys pinned to `alg`.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys.iter().filter(move |jwk| {
            jwk.key.allows(alg) && kid.is_none_or(|kid| jwk.kid.as_deref() == Some(kid))
        })
    }

    /// Whether any key carries this `kid`, whatever its algorithm.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|jwk| jwk.kid.as_deref() == Some(kid))
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// All keys.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }
}

/// Parses a JWKS document. Bad keys are skipped and reported; a document that is not a JWKS,
/// or has no usable key, is an error.
pub fn parse_jwks(bytes: &[u8]) -> Result<ParsedJwks, JwksError> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge(bytes.len()));
    }
    let Ok(Value::Object(doc)) = strict_json(bytes) else {
        return Err(JwksError::NotJson);
    };
    let Some(Value::Array(entries)) = doc.get("keys") else {
        return Err(JwksError::NoKeysArray);
    };
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if i >= MAX_JWKS_KEYS {
            skipped.push(format!("keys[{i}..]: more than {MAX_JWKS_KEYS} keys"));
            break;
        }
        let prepared = match entry {
            Value::Object(jwk) => prepare_jwk(jwk, None).map(|(kid, key)| Jwk {
                kid,
                key: Arc::new(key),
            }),
            _ => Err(KeyError("not a JSON object".into())),
        };
        match prepared {
            Ok(jwk) => keys.push(jwk),
            Err(e) => skipped.push(format!("keys[{i}]: {e}")),
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey(skipped));
    }
    Ok(ParsedJwks {
        set: JwkSet { keys },
        skipped,
    })
}

/// Prepares one JWK. `pinned` is the algorithm a consumer credential fixes: the JWK's own
/// `alg`, when present, must then agree with it. Returns the `kid` and the key.
pub fn prepare_jwk(
    jwk: &Map<String, Value>,
    pinned: Option<Algorithm>,
) -> Result<(Option<String>, PreparedKey), KeyError> {
    let text = |name: &str| -> Result<Option<&str>, KeyError> {
        match jwk.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(KeyError(format!("\"{name}\" is not a string"))),
        }
    };
    let kid = text("kid")?.map(str::to_owned);
    let kty = text("kty")?.ok_or_else(|| KeyError("no \"kty\"".into()))?;
    if text("use")?.is_some_and(|u| u != "sig") {
        return Err(KeyError("\"use\" is not \"sig\"".into()));
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return Err(KeyError("\"key_ops\" does not include \"verify\"".into()));
        }
    }
    if jwk.contains_key("d") || (kty != "oct" && jwk.contains_key("k")) {
        return Err(KeyError(
            "private key material in a verification key".into(),
        ));
    }
    let declared = match text("alg")? {
        None => None,
        Some(name) => Some(
            Algorithm::from_name(name)
                .ok_or_else(|| KeyError(format!("unsupported \"alg\" {name:?}")))?,
        ),
    };
    let alg = match (pinned, declared) {
        (Some(p), Some(d)) if p != d => {
            return Err(KeyError(format!(
                "JWK \"alg\" {d} but the credential pins {p}"
            )))
        }
        (p, d) => p.or(d),
    };
    let member = |name: &str| -> Result<Vec<u8>, KeyError> {
        let value = text(name)?.ok_or_else(|| KeyError(format!("no \"{name}\"")))?;
        JWK_B64
            .decode(value)
            .map_err(|_| KeyError(format!("\"{name}\" is not base64url")))
    };
    let key = match kty {
        "RSA" => {
            let algs = family_algorithms(alg, &[Family::RsaPkcs1, Family::RsaPss], kty)?;
            let (n, e) = (member("n")?, member("e")?);
            let n = uint(&n).ok_or_else(|| KeyError("\"n\" is not a modulus".into()))?;
            let e = uint(&e).ok_or_else(|| KeyError("\"e\" is not an exponent".into()))?;
            let rsa = RsaPublicKey::new(n, e).map_err(|e| KeyError(format!("bad RSA key: {e}")))?;
            PreparedKey::rsa(algs, rsa)?
        }
        "EC" => {
            let (x, y) = (member("x")?, member("y")?);
            match text("crv")? {
                Some("P-256") => {
                    let algs = curve_algorithm(alg, Algorithm::ES256)?;
                    let point = sec1_point(&x, &y, 32)?;
                    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                        .map_err(|_| KeyError("point is not on P-256".into()))?;
                    PreparedKey::p256(algs, vk)?
                }
                Some("P-384") => {
                    let algs = curve_algorithm(alg, Algorithm::ES384)?;
                    let point = sec1_point(&x, &y, 48)?;
                    let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                        .map_err(|_| KeyError("point is not on P-384".into()))?;
                    PreparedKey::p384(algs, vk)?
                }
                other => return Err(KeyError(format!("unsupported EC \"crv\" {other:?}"))),
            }
        }
        "OKP" => {
            if text("crv")? != Some("Ed25519") {
                return Err(KeyError("OKP key whose \"crv\" is not Ed25519".into()));
            }
            curve_algorithm(alg, Algorithm::EdDSA)?;
            PreparedKey::ed25519(&member("x")?)?
        }
        "oct" => {
            // A shared secret has no algorithm of its own: it must be named, else one secret
            // would verify HS256 and HS512 alike.
            let alg = alg.ok_or_else(|| KeyError("\"oct\" key without \"alg\"".into()))?;
            PreparedKey::hmac(alg, &member("k")?)?
        }
        other => return Err(KeyError(format!("unsupported \"kty\" {other:?}"))),
    };
    Ok((kid, key))
}

fn family_algorithms(
    alg: Option<Algorithm>,
    families: &[Family],
    kty: &str,
) -> Result<AlgorithmSet, KeyError> {
    match alg {
        Some(alg) if families.contains(&alg.family()) => Ok(AlgorithmSet::only(alg)),
        Some(alg) => Err(KeyError(format!(
            "\"alg\" {alg} does not fit \"kty\" {kty}"
        ))),
        None => Ok(Algorithm::ALL
            .into_iter()
            .filter(|a| families.contains(&a.family()))
            .fold(AlgorithmSet::EMPTY, AlgorithmSet::with)),
    }
}

fn curve_algorithm(alg: Option<Algorithm>, only: Algorithm) -> Result<AlgorithmSet, KeyError> {
    match alg {
        Some(alg) if alg != only => Err(KeyError(format!("\"alg\" {alg} does not fit the curve"))),
        _ => Ok(AlgorithmSet::only(only)),
    }
}

/// A big-endian unsigned integer, leading zero bytes (which some encoders emit) ignored.
fn uint(bytes: &[u8]) -> Option<BoxedUint> {
    let first = bytes.iter().position(|b| *b != 0)?;
    let digits = bytes.get(first..)?;
    let bits = u32::try_from(digits.len().checked_mul(8)?).ok()?;
    BoxedUint::from_be_slice(digits, bits).ok()
}

/// The uncompressed SEC1 encoding `04 || x || y`, each coordinate exactly `len` bytes.
fn sec1_point(x: &[u8], y: &[u8], len: usize) -> Result<Vec<u8>, KeyError> {
    for (name, coordinate) in [("x", x), ("y", y)] {
        if coordinate.len() != len {
            let got = coordinate.len();
            return Err(KeyError(format!("\"{name}\" is {got} bytes, not {len}")));
        }
    }
    Ok([&[0x04][..], x, y].concat())
}
