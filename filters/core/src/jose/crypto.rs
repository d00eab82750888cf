//! Signature verification: the JWS algorithms, keys prepared once at configure time, and the
//! backends (in-module pure Rust, or the host's `verify_signature`) that check a signature.

use std::borrow::Cow;
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::{der, DecodePublicKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, Pss, PublicKey as RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// A JWS `alg` this crate verifies. The names are RFC 7518's, matched case-sensitively.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// How an algorithm signs, which decides the kind of key it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Hmac,
    RsaPkcs1,
    RsaPss,
    Ecdsa,
    EdDsa,
}

impl Algorithm {
    /// Every algorithm, in a fixed order.
    pub const ALL: [Algorithm; 12] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// The algorithm named exactly `name` (RFC 7515: `alg` is case-sensitive).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The RFC 7518 name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The signature family, which decides the key type.
    pub fn family(self) -> Family {
        match self {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Family::Hmac,
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => Family::RsaPkcs1,
            Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512 => Family::RsaPss,
            Algorithm::ES256 | Algorithm::ES384 => Family::Ecdsa,
            Algorithm::EdDSA => Family::EdDsa,
        }
    }

    /// The hash by its host name (`sha256`, …), as Envoy's `verify_signature` wants it.
    /// EdDSA hashes internally and has none.
    pub fn hash_name(self) -> Option<&'static str> {
        match self {
            Algorithm::EdDSA => None,
            Algorithm::HS256 | Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256 => {
                Some("sha256")
            }
            Algorithm::HS384 | Algorithm::RS384 | Algorithm::PS384 | Algorithm::ES384 => {
                Some("sha384")
            }
            Algorithm::HS512 | Algorithm::RS512 | Algorithm::PS512 => Some("sha512"),
        }
    }

    /// Output length in bytes of the algorithm's hash; also the shortest HMAC secret accepted.
    pub fn hash_len(self) -> usize {
        match self {
            Algorithm::HS256 | Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256 => 32,
            Algorithm::HS384 | Algorithm::RS384 | Algorithm::PS384 | Algorithm::ES384 => 48,
            Algorithm::HS512 | Algorithm::RS512 | Algorithm::PS512 | Algorithm::EdDSA => 64,
        }
    }

    /// The exact signature length when the algorithm fixes it (RSA depends on the key).
    pub fn signature_len(self) -> Option<usize> {
        match self {
            Algorithm::HS256 => Some(32),
            Algorithm::HS384 => Some(48),
            Algorithm::HS512 | Algorithm::EdDSA => Some(64),
            Algorithm::ES256 => Some(64),
            Algorithm::ES384 => Some(96),
            _ => None,
        }
    }

    fn bit(self) -> u16 {
        let index = Algorithm::ALL.iter().position(|a| *a == self).unwrap_or(0);
        1 << index
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of algorithms, e.g. those a key may verify or those the host backend serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlgorithmSet(u16);

impl AlgorithmSet {
    /// No algorithm.
    pub const EMPTY: AlgorithmSet = AlgorithmSet(0);

    /// Exactly one algorithm.
    pub fn only(alg: Algorithm) -> AlgorithmSet {
        AlgorithmSet(alg.bit())
    }

    /// These algorithms.
    pub fn of(algs: &[Algorithm]) -> AlgorithmSet {
        algs.iter()
            .fold(AlgorithmSet::EMPTY, |set, alg| set.with(*alg))
    }

    /// This set plus `alg`.
    pub fn with(self, alg: Algorithm) -> AlgorithmSet {
        AlgorithmSet(self.0 | alg.bit())
    }

    /// Whether `alg` is in the set.
    pub fn contains(self, alg: Algorithm) -> bool {
        self.0 & alg.bit() != 0
    }

    /// The algorithms in the set, in [`Algorithm::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Algorithm> {
        Algorithm::ALL
            .into_iter()
            .filter(move |a| self.contains(*a))
    }
}

/// Why a key could not be prepared. Raised at configure time or when a JWKS is loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError(pub String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn key_error(message: impl Into<String>) -> KeyError {
    KeyError(message.into())
}

/// A stable digest of a key's material and algorithms: the verified-token cache remembers
/// which key verified a token by this, never by name or `kid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyFingerprint(pub [u8; 16]);

#[derive(Clone)]
enum HmacKey {
    Sha256(Hmac<Sha256>),
    Sha384(Hmac<Sha384>),
    Sha512(Hmac<Sha512>),
}

#[derive(Clone)]
enum Material {
    Hmac(HmacKey),
    /// The key and its modulus length in bytes (the signature length). Computing that is a
    /// constant-time loop over the modulus, ~10,000 wasm instructions: once, not per request.
    Rsa {
        key: RsaPublicKey,
        bytes: usize,
    },
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_compact::PublicKey),
}

/// A verification key, checked and parsed once at configure time, pinned to the algorithms
/// it may verify, holding what every backend needs ready: the parsed key for the in-module
/// backend and the SPKI DER for the host.
#[derive(Clone)]
pub struct PreparedKey {
    algorithms: AlgorithmSet,
    material: Material,
    spki_der: Option<Vec<u8>>,
    fingerprint: KeyFingerprint,
}

/// RSA moduli below this many bits are refused.
pub const MIN_RSA_BITS: usize = 2048;

const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

impl PreparedKey {
    /// An HMAC secret for one HS algorithm. Secrets shorter than the hash output are refused
    /// (RFC 7518 §3.2).
    pub fn hmac(alg: Algorithm, secret: &[u8]) -> Result<PreparedKey, KeyError> {
        if alg.family() != Family::Hmac {
            return Err(key_error(format!("{alg} does not use a shared secret")));
        }
        if secret.len() < alg.hash_len() {
            return Err(key_error(format!(
                "{} bytes, {alg} needs at least {}",
                secret.len(),
                alg.hash_len()
            )));
        }
        let bad = || key_error("unusable HMAC secret");
        let state = match alg {
            Algorithm::HS256 => HmacKey::Sha256(Hmac::new_from_slice(secret).map_err(|_| bad())?),
            Algorithm::HS384 => HmacKey::Sha384(Hmac::new_from_slice(secret).map_err(|_| bad())?),
            _ => HmacKey::Sha512(Hmac::new_from_slice(secret).map_err(|_| bad())?),
        };
        Ok(PreparedKey {
            algorithms: AlgorithmSet::only(alg),
            fingerprint: fingerprint(AlgorithmSet::only(alg), b"oct", secret),
            material: Material::Hmac(state),
            spki_der: None,
        })
    }

    /// A public key in PEM for one asymmetric algorithm: `PUBLIC KEY` (SPKI) for every
    /// family, or `RSA PUBLIC KEY` (PKCS#1) for RS/PS. The key type and curve must fit `alg`.
    pub fn from_pem(alg: Algorithm, pem: &str) -> Result<PreparedKey, KeyError> {
        let (label, der) = der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|e| key_error(format!("malformed PEM: {e}")))?;
        match (label, alg.family()) {
            ("PUBLIC KEY", _) => PreparedKey::from_spki_der(alg, &der),
            ("RSA PUBLIC KEY", Family::RsaPkcs1 | Family::RsaPss) => {
                let key = RsaPublicKey::from_pkcs1_der(&der)
                    .map_err(|e| key_error(format!("malformed RSA public key: {e}")))?;
                PreparedKey::rsa(AlgorithmSet::only(alg), key)
            }
            (other, _) => Err(key_error(format!(
                "PEM label {other:?}: expected \"PUBLIC KEY\" (a private key or certificate is refused)"
            ))),
        }
    }

    /// A public key as SPKI DER for one asymmetric algorithm.
    pub fn from_spki_der(alg: Algorithm, der: &[u8]) -> Result<PreparedKey, KeyError> {
        let algs = AlgorithmSet::only(alg);
        match alg {
            Algorithm::ES256 => p256::ecdsa::VerifyingKey::from_public_key_der(der)
                .map_err(|_| key_error("not a P-256 public key, as ES256 needs"))
                .and_then(|k| PreparedKey::p256(algs, k)),
            Algorithm::ES384 => p384::ecdsa::VerifyingKey::from_public_key_der(der)
                .map_err(|_| key_error("not a P-384 public key, as ES384 needs"))
                .and_then(|k| PreparedKey::p384(algs, k)),
            Algorithm::EdDSA => {
                let raw = der
                    .strip_prefix(&ED25519_SPKI_PREFIX[..])
                    .ok_or_else(|| key_error("not an Ed25519 public key, as EdDSA needs"))?;
                PreparedKey::ed25519(raw)
            }
            _ if matches!(alg.family(), Family::RsaPkcs1 | Family::RsaPss) => {
                let key = RsaPublicKey::from_public_key_der(der)
                    .map_err(|_| key_error(format!("not an RSA public key, as {alg} needs")))?;
                PreparedKey::rsa(algs, key)
            }
            _ => Err(key_error(format!(
                "{alg} uses a shared secret, not a public key"
            ))),
        }
    }

    pub(crate) fn rsa(
        algorithms: AlgorithmSet,
        key: RsaPublicKey,
    ) -> Result<PreparedKey, KeyError> {
        let bytes = key.size();
        let bits = bytes.saturating_mul(8);
        if bits < MIN_RSA_BITS {
            return Err(key_error(format!(
                "RSA key of {bits} bits, at least {MIN_RSA_BITS} needed"
            )));
        }
        let der = key
            .to_public_key_der()
            .map_err(|e| key_error(format!("RSA key cannot be encoded: {e}")))?
            .into_vec();
        Ok(PreparedKey::asymmetric(
            algorithms,
            Material::Rsa { key, bytes },
            der,
        ))
    }

    pub(crate) fn p256(
        algorithms: AlgorithmSet,
        key: p256::ecdsa::VerifyingKey,
    ) -> Result<PreparedKey, KeyError> {
        let der = key
            .to_public_key_der()
            .map_err(|e| key_error(format!("P-256 key cannot be encoded: {e}")))?
            .into_vec();
        Ok(PreparedKey::asymmetric(
            algorithms,
            Material::P256(key),
            der,
        ))
    }

    pub(crate) fn p384(
        algorithms: AlgorithmSet,
        key: p384::ecdsa::VerifyingKey,
    ) -> Result<PreparedKey, KeyError> {
        let der = key
            .to_public_key_der()
            .map_err(|e| key_error(format!("P-384 key cannot be encoded: {e}")))?
            .into_vec();
        Ok(PreparedKey::asymmetric(
            algorithms,
            Material::P384(key),
            der,
        ))
    }

    pub(crate) fn ed25519(raw: &[u8]) -> Result<PreparedKey, KeyError> {
        let key = ed25519_compact::PublicKey::from_slice(raw)
            .map_err(|_| key_error("Ed25519 public key must be 32 bytes"))?;
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(raw);
        let algs = AlgorithmSet::only(Algorithm::EdDSA);
        Ok(PreparedKey::asymmetric(algs, Material::Ed25519(key), der))
    }

    fn asymmetric(algorithms: AlgorithmSet, material: Material, der: Vec<u8>) -> PreparedKey {
        PreparedKey {
            algorithms,
            fingerprint: fingerprint(algorithms, b"spki", &der),
            material,
            spki_der: Some(der),
        }
    }

    /// The algorithms this key may verify; any other `alg` is refused (no key confusion).
    pub fn algorithms(&self) -> AlgorithmSet {
        self.algorithms
    }

    /// Whether this key may verify `alg`.
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(alg)
    }

    /// The public key as SPKI DER, for the host backend; `None` for HMAC secrets.
    pub fn spki_der(&self) -> Option<&[u8]> {
        self.spki_der.as_deref()
    }

    /// The key's fingerprint (see [`KeyFingerprint`]).
    pub fn fingerprint(&self) -> KeyFingerprint {
        self.fingerprint
    }

    fn kind(&self) -> &'static str {
        match self.material {
            Material::Hmac(_) => "oct",
            Material::Rsa { .. } => "RSA",
            Material::P256(_) => "EC P-256",
            Material::P384(_) => "EC P-384",
            Material::Ed25519(_) => "OKP Ed25519",
        }
    }
}

impl fmt::Debug for PreparedKey {
    // Never prints key material: HMAC secrets must not reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algs: Vec<&str> = self.algorithms.iter().map(Algorithm::name).collect();
        write!(f, "PreparedKey({} for {})", self.kind(), algs.join("/"))
    }
}

fn fingerprint(algorithms: AlgorithmSet, kind: &[u8], material: &[u8]) -> KeyFingerprint {
    let digest = Sha256::new()
        .chain_update(algorithms.0.to_be_bytes())
        .chain_update(kind)
        .chain_update(material)
        .finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(digest.get(..16).unwrap_or(&[0u8; 16]));
    KeyFingerprint(out)
}

/// Why a backend could not decide. A wrong signature is never an error: it is `Ok(false)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CryptoError {
    /// The key is not pinned to this algorithm.
    KeyMismatch(Algorithm),
    /// This backend does not implement the algorithm.
    Unsupported(Algorithm),
    /// The host's signature function failed (bad argument, missing function, …).
    Host(String),
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::KeyMismatch(alg) => write!(f, "key is not pinned to {alg}"),
            CryptoError::Unsupported(alg) => write!(f, "backend does not implement {alg}"),
            CryptoError::Host(message) => write!(f, "host verify_signature failed: {message}"),
        }
    }
}

/// The one verification interface. `Ok(true)`: the signature is valid for `signing_input`
/// under `key`; `Ok(false)`: it is not (wrong, truncated, out-of-range, …); `Err`: the
/// backend could not decide, and the request must fail closed.
pub trait SignatureBackend {
    fn verify(
        &self,
        alg: Algorithm,
        key: &PreparedKey,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<bool, CryptoError>;
}

/// Verifies every algorithm inside the module with pure-Rust crates.
#[derive(Clone, Copy, Debug, Default)]
pub struct InModule;

impl SignatureBackend for InModule {
    fn verify(
        &self,
        alg: Algorithm,
        key: &PreparedKey,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<bool, CryptoError> {
        use p256::ecdsa::signature::Verifier;
        if !key.allows(alg) {
            return Err(CryptoError::KeyMismatch(alg));
        }
        let valid = match (&key.material, alg) {
            (Material::Hmac(HmacKey::Sha256(mac)), Algorithm::HS256) => mac
                .clone()
                .chain_update(signing_input)
                .verify_slice(signature)
                .is_ok(),
            (Material::Hmac(HmacKey::Sha384(mac)), Algorithm::HS384) => mac
                .clone()
                .chain_update(signing_input)
                .verify_slice(signature)
                .is_ok(),
            (Material::Hmac(HmacKey::Sha512(mac)), Algorithm::HS512) => mac
                .clone()
                .chain_update(signing_input)
                .verify_slice(signature)
                .is_ok(),
            (Material::Rsa { key, .. }, _) => verify_rsa(key, alg, signing_input, signature)?,
            (Material::P256(vk), Algorithm::ES256) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| vk.verify(signing_input, &sig).is_ok()),
            (Material::P384(vk), Algorithm::ES384) => p384::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| vk.verify(signing_input, &sig).is_ok()),
            (Material::Ed25519(pk), Algorithm::EdDSA) => {
                ed25519_compact::Signature::from_slice(signature)
                    .is_ok_and(|sig| pk.verify(signing_input, &sig).is_ok())
            }
            _ => return Err(CryptoError::KeyMismatch(alg)),
        };
        Ok(valid)
    }
}

fn verify_rsa(
    key: &RsaPublicKey,
    alg: Algorithm,
    input: &[u8],
    signature: &[u8],
) -> Result<bool, CryptoError> {
    let result = match alg {
        Algorithm::RS256 => key.verify(
            Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(input),
            signature,
        ),
        Algorithm::RS384 => key.verify(
            Pkcs1v15Sign::new::<Sha384>(),
            &Sha384::digest(input),
            signature,
        ),
        Algorithm::RS512 => key.verify(
            Pkcs1v15Sign::new::<Sha512>(),
            &Sha512::digest(input),
            signature,
        ),
        Algorithm::PS256 => key.verify(Pss::<Sha256>::new(), &Sha256::digest(input), signature),
        Algorithm::PS384 => key.verify(Pss::<Sha384>::new(), &Sha384::digest(input), signature),
        Algorithm::PS512 => key.verify(Pss::<Sha512>::new(), &Sha512::digest(input), signature),
        _ => return Err(CryptoError::KeyMismatch(alg)),
    };
    Ok(result.is_ok())
}

/// The algorithms Envoy's `verify_signature` can check: it runs `EVP_DigestVerify` with the
/// key's default padding and a named hash, so RSASSA-PKCS1-v1_5 and ECDSA only. HMAC, PSS
/// and EdDSA stay in the module.
pub fn host_capable() -> AlgorithmSet {
    AlgorithmSet::of(&[
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::ES256,
        Algorithm::ES384,
    ])
}

/// The fields of Envoy's `VerifySignatureArguments` message, ready to encode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostVerifyInput<'a> {
    /// `hash_function`: `sha256`, `sha384` or `sha512`.
    pub hash_function: &'static str,
    /// `public_key`: SPKI DER.
    pub public_key: &'a [u8],
    /// `signature`: RSA as is; ECDSA converted from the JWS `r||s` to DER.
    pub signature: Cow<'a, [u8]>,
    /// `text`: the JWS signing input, `header.payload`.
    pub text: &'a [u8],
}

/// What the host needs to check `signature`. `Ok(None)`: the signature cannot be valid
/// (wrong length, ECDSA `r` or `s` zero or not below the curve order), so the verdict is
/// `false` without a host call. `Err`: the host cannot do this algorithm or key.
pub fn host_verify_input<'a>(
    alg: Algorithm,
    key: &'a PreparedKey,
    signing_input: &'a [u8],
    signature: &'a [u8],
) -> Result<Option<HostVerifyInput<'a>>, CryptoError> {
    if !key.allows(alg) {
        return Err(CryptoError::KeyMismatch(alg));
    }
    let (Some(hash_function), Some(public_key), true) = (
        alg.hash_name(),
        key.spki_der(),
        host_capable().contains(alg),
    ) else {
        return Err(CryptoError::Unsupported(alg));
    };
    let signature = match &key.material {
        Material::Rsa { bytes, .. } if signature.len() == *bytes => Cow::Borrowed(signature),
        Material::P256(_) | Material::P384(_) => match ecdsa_der(alg, signature) {
            Some(der) => Cow::Owned(der),
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    Ok(Some(HostVerifyInput {
        hash_function,
        public_key,
        signature,
        text: signing_input,
    }))
}

/// Checks a JWS ECDSA signature (`r||s`, fixed length, both in `[1, n)`) and encodes it as
/// the DER `SEQUENCE { INTEGER r, INTEGER s }` that BoringSSL verifies.
pub fn ecdsa_der(alg: Algorithm, raw: &[u8]) -> Option<Vec<u8>> {
    if !ecdsa_in_range(alg, raw) {
        return None;
    }
    let half = raw.len() / 2;
    let (r, s) = raw.split_at(half);
    let (r, s) = (der_integer(r), der_integer(s));
    let body_len = r.len() + s.len();
    let mut out = Vec::with_capacity(body_len + 3);
    out.push(0x30);
    push_der_len(&mut out, body_len);
    out.extend_from_slice(&r);
    out.extend_from_slice(&s);
    Some(out)
}

/// Whether `raw` is a well-formed JWS ECDSA signature for `alg`: exact length, `r` and `s`
/// non-zero and below the curve order.
pub fn ecdsa_in_range(alg: Algorithm, raw: &[u8]) -> bool {
    match alg {
        Algorithm::ES256 => p256::ecdsa::Signature::from_slice(raw).is_ok(),
        Algorithm::ES384 => p384::ecdsa::Signature::from_slice(raw).is_ok(),
        _ => false,
    }
}

fn der_integer(magnitude: &[u8]) -> Vec<u8> {
    let first = magnitude
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(magnitude.len());
    let digits = magnitude.get(first..).unwrap_or(&[]);
    let pad = digits.first().is_none_or(|b| b & 0x80 != 0);
    let len = digits.len() + usize::from(pad);
    let mut out = Vec::with_capacity(len + 3);
    out.push(0x02);
    push_der_len(&mut out, len);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(digits);
    out
}

fn push_der_len(out: &mut Vec<u8>, len: usize) {
    // ECDSA integers for P-256/P-384 stay far below 256 bytes.
    if len < 0x80 {
        out.push(len as u8);
    } else {
        out.push(0x81);
        out.push(len.min(255) as u8);
    }
}

/// Sends the algorithms in `host_algorithms` to `host` and every other to [`InModule`]. The
/// split is decided once at start (after probing the host), never per request.
#[derive(Clone, Debug)]
pub struct SplitBackend<H> {
    pub host: H,
    pub host_algorithms: AlgorithmSet,
}

impl<H: SignatureBackend> SignatureBackend for SplitBackend<H> {
    fn verify(
        &self,
        alg: Algorithm,
        key: &PreparedKey,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<bool, CryptoError> {
        if self.host_algorithms.contains(alg) {
            self.host.verify(alg, key, signing_input, signature)
        } else {
            InModule.verify(alg, key, signing_input, signature)
        }
    }
}

/// Where signatures are checked and made, as the jwt and token-issuer configurations write
/// it (`crypto`): `auto` lets the host do what it does correctly, `in_module` keeps it all
/// in the module.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CryptoChoice {
    #[default]
    Auto,
    InModule,
}
