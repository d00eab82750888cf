//! Signing keys: HMAC secrets and PEM private keys checked and parsed once at configure
//! time, the in-module signer (RustCrypto), what the host's `sign` needs, and each key's
//! public JWK.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{der, DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, PrivateKey as RsaPrivateKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::jose::crypto::{Algorithm, InModule, PreparedKey, SignatureBackend, MIN_RSA_BITS};

/// The algorithms the issuer signs with.
pub const SIGNING_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// RSA keys above this many bits are refused: each signature's cost grows with the cube of
/// the size, and in-module signing must stay in the request budget.
pub const MAX_RSA_BITS: usize = 8192;

/// HMAC secrets with fewer distinct byte values than this are refused as weak.
pub const MIN_DISTINCT_SECRET_BYTES: usize = 8;

// PKCS#8 v1 of an Ed25519 key (RFC 8410): this prefix, then the 32-byte seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Why a key was refused at configure time.
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

enum Material {
    Hmac(Vec<u8>),
    /// The key and its modulus length in bytes, computed once: `size()` is a constant-time
    /// loop over the modulus (~10,000 wasm instructions), too dear for every signature.
    Rsa {
        key: Box<RsaPrivateKey>,
        bytes: usize,
    },
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_compact::KeyPair),
}

/// One configured signing key: its `kid`, its one algorithm, the parsed private key, and what
/// the host and the JWKS need from it, all prepared at configure time.
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    material: Material,
    /// PKCS#8 DER of an asymmetric key, as Envoy's `sign` takes it.
    pkcs8_der: Option<Vec<u8>>,
    /// The public half as the jwt filter verifies with it (asymmetric keys only).
    public: Option<PreparedKey>,
}

impl fmt::Debug for SigningKey {
    // Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({} {})", self.kid, self.alg)
    }
}

impl SigningKey {
    /// An HMAC secret for HS256/384/512. Refused when shorter than the hash (RFC 7518 §3.2),
    /// with fewer than [`MIN_DISTINCT_SECRET_BYTES`] distinct bytes, or a short unit repeated
    /// (`abcabcabc…`): secrets a person typed, not ones a generator made.
    pub fn hmac(kid: &str, alg: Algorithm, secret: &[u8]) -> Result<SigningKey, KeyError> {
        if !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(key_error(format!(
                "{alg} does not sign with a shared secret"
            )));
        }
        weak_secret(alg, secret)?;
        Ok(SigningKey {
            kid: kid.to_owned(),
            alg,
            material: Material::Hmac(secret.to_vec()),
            pkcs8_der: None,
            public: None,
        })
    }

    /// A PEM private key for RS256 (`PRIVATE KEY` or `RSA PRIVATE KEY`, at least 2048 bits),
    /// ES256 (`PRIVATE KEY` or `EC PRIVATE KEY` on P-256) or EdDSA (`PRIVATE KEY`, Ed25519).
    pub fn from_pem(kid: &str, alg: Algorithm, pem: &str) -> Result<SigningKey, KeyError> {
        let (label, der) = der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|e| key_error(format!("malformed PEM: {e}")))?;
        let material = match (alg, label) {
            (Algorithm::RS256, "PRIVATE KEY") => rsa_key(RsaPrivateKey::from_pkcs8_der(&der))?,
            (Algorithm::RS256, "RSA PRIVATE KEY") => rsa_key(RsaPrivateKey::from_pkcs1_der(&der))?,
            (Algorithm::ES256, "PRIVATE KEY") => Material::P256(
                p256::ecdsa::SigningKey::from_pkcs8_der(&der)
                    .map_err(|_| key_error("not a P-256 private key, as ES256 needs"))?,
            ),
            (Algorithm::ES256, "EC PRIVATE KEY") => Material::P256(
                p256::SecretKey::from_sec1_der(&der)
                    .map(p256::ecdsa::SigningKey::from)
                    .map_err(|_| key_error("not a P-256 private key, as ES256 needs"))?,
            ),
            (Algorithm::EdDSA, "PRIVATE KEY") => {
                let seed = der
                    .strip_prefix(&ED25519_PKCS8_PREFIX[..])
                    .filter(|seed| seed.len() == 32)
                    .ok_or_else(|| key_error("not an Ed25519 private key, as EdDSA needs"))?;
                let seed = ed25519_compact::Seed::from_slice(seed)
                    .map_err(|_| key_error("not an Ed25519 private key, as EdDSA needs"))?;
                Material::Ed25519(ed25519_compact::KeyPair::from_seed(seed))
            }
            (Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA, other) => {
                return Err(key_error(format!(
                    "PEM label {other:?}: expected an unencrypted private key (\"PRIVATE KEY\")"
                )))
            }
            (alg, _) => {
                return Err(key_error(format!(
                    "{alg} signs with a `secret`, not a PEM key"
                )))
            }
        };
        let (pkcs8_der, spki_der) = match &material {
            Material::Rsa { key, .. } => (
                key.to_pkcs8_der().map(|d| d.as_bytes().to_vec()),
                key.to_public_key()
                    .to_public_key_der()
                    .map(|d| d.into_vec()),
            ),
            Material::P256(key) => (
                key.to_pkcs8_der().map(|d| d.as_bytes().to_vec()),
                key.verifying_key()
                    .to_public_key_der()
                    .map(|d| d.into_vec()),
            ),
            Material::Ed25519(pair) => {
                let mut pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
                pkcs8.extend_from_slice(pair.sk.seed().as_ref());
                let mut spki = ED25519_SPKI_PREFIX.to_vec();
                spki.extend_from_slice(pair.pk.as_ref());
                (Ok(pkcs8), Ok(spki))
            }
            Material::Hmac(_) => return Err(key_error("not an asymmetric key")),
        };
        let pkcs8_der = pkcs8_der.map_err(|e| key_error(format!("cannot encode the key: {e}")))?;
        let spki_der = spki_der.map_err(|e| key_error(format!("cannot encode the key: {e}")))?;
        let public = PreparedKey::from_spki_der(alg, &spki_der)
            .map_err(|e| key_error(format!("public half refused: {e}")))?;
        Ok(SigningKey {
            kid: kid.to_owned(),
            alg,
            material,
            pkcs8_der: Some(pkcs8_der),
            public: Some(public),
        })
    }

    /// The `kid` the token header carries.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm this key signs.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// Whether the host's `sign` can serve this key: Envoy signs with a named hash and the
    /// key's default padding, so RS256 and ES256; HMAC and EdDSA stay in the module.
    pub fn host_capable(&self) -> bool {
        matches!(self.alg, Algorithm::RS256 | Algorithm::ES256)
    }

    /// What Envoy's `sign` needs for this key: the hash name and the PKCS#8 DER private key.
    /// `None` for keys the host cannot sign with (see [`host_capable`](Self::host_capable)).
    pub fn host_arguments(&self) -> Option<(&'static str, &[u8])> {
        if !self.host_capable() {
            return None;
        }
        Some((self.alg.hash_name()?, self.pkcs8_der.as_deref()?))
    }

    /// A signature from the host turned into its JWS form: RSA as is (exactly the modulus
    /// length), ECDSA from DER to the fixed `r||s`. `None` when it is not a well-formed
    /// signature of this key's algorithm.
    pub fn jws_signature_from_host(&self, signature: &[u8]) -> Option<Vec<u8>> {
        match &self.material {
            Material::Rsa { bytes, .. } if signature.len() == *bytes => Some(signature.to_vec()),
            Material::P256(_) => p256::ecdsa::Signature::from_der(signature)
                .ok()
                .map(|sig| sig.to_bytes().to_vec()),
            _ => None,
        }
    }

    /// Checks `signature` over `input` in the module with the public half, as the jwt filter
    /// would: how the start-up probe trusts (or not) the host's `sign`.
    pub fn verifies(&self, input: &[u8], signature: &[u8]) -> bool {
        match (&self.material, &self.public) {
            (Material::Hmac(secret), _) => sign_hmac(self.alg, secret, input)
                .is_some_and(|expected| expected.as_slice() == signature),
            (_, Some(public)) => InModule
                .verify(self.alg, public, input, signature)
                .unwrap_or(false),
            (_, None) => false,
        }
    }

    /// The public JWK (`kid`, `alg`, `use: sig`) of an asymmetric key; `None` for an HMAC
    /// secret, which must never be published.
    pub fn public_jwk(&self) -> Option<Value> {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let mut jwk = match &self.material {
            Material::Hmac(_) => return None,
            Material::Rsa { key, .. } => json!({
                "kty": "RSA",
                "n": b64(&key.n_bytes()),
                "e": b64(&key.e_bytes()),
            }),
            Material::P256(key) => {
                let point = key.verifying_key().to_sec1_point(false);
                let (x, y) = (point.x()?, point.y()?);
                json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)})
            }
            Material::Ed25519(pair) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.pk.as_ref())})
            }
        };
        let map = jwk.as_object_mut()?;
        map.insert("kid".into(), Value::from(self.kid.as_str()));
        map.insert("alg".into(), Value::from(self.alg.name()));
        map.insert("use".into(), Value::from("sig"));
        Some(jwk)
    }
}

const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

fn rsa_key(parsed: Result<RsaPrivateKey, impl fmt::Display>) -> Result<Material, KeyError> {
    let key =
        parsed.map_err(|e| key_error(format!("not an RSA private key, as RS256 needs: {e}")))?;
    key.validate()
        .map_err(|e| key_error(format!("inconsistent RSA private key: {e}")))?;
    let bytes = key.size();
    let bits = bytes.saturating_mul(8);
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(key_error(format!(
            "RSA key of {bits} bits, {MIN_RSA_BITS} to {MAX_RSA_BITS} accepted"
        )));
    }
    Ok(Material::Rsa {
        key: Box::new(key),
        bytes,
    })
}

/// Decodes `secret_base64`: the standard or the url alphabet, padded or not.
pub fn decode_secret_base64(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim_end_matches('=');
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .ok()
}

fn weak_secret(alg: Algorithm, secret: &[u8]) -> Result<(), KeyError> {
    let need = alg.hash_len();
    if secret.len() < need {
        return Err(key_error(format!(
            "{} bytes, {alg} needs at least {need} (RFC 7518 §3.2)",
            secret.len()
        )));
    }
    let mut seen = [false; 256];
    for byte in secret {
        if let Some(slot) = seen.get_mut(usize::from(*byte)) {
            *slot = true;
        }
    }
    let distinct = seen.iter().filter(|s| **s).count();
    if distinct < MIN_DISTINCT_SECRET_BYTES {
        return Err(key_error(format!(
            "weak secret: only {distinct} distinct bytes (at least {MIN_DISTINCT_SECRET_BYTES}); \
             generate one, e.g. `openssl rand -base64 {need}`"
        )));
    }
    // Units up to 64 bytes: enough for anything typed, and bounded work for any length.
    let longest = (secret.len() / 2).min(64);
    let periodic = (1..=longest).any(|period| {
        secret.len().is_multiple_of(period)
            && secret
                .iter()
                .zip(secret.iter().skip(period))
                .all(|(a, b)| a == b)
    });
    if periodic {
        return Err(key_error(format!(
            "weak secret: a shorter string repeated; generate one, e.g. `openssl rand -base64 {need}`"
        )));
    }
    Ok(())
}

fn sign_hmac(alg: Algorithm, secret: &[u8], input: &[u8]) -> Option<Vec<u8>> {
    let tag = match alg {
        Algorithm::HS256 => Hmac::<Sha256>::new_from_slice(secret)
            .ok()?
            .chain_update(input)
            .finalize()
            .into_bytes()
            .to_vec(),
        Algorithm::HS384 => Hmac::<Sha384>::new_from_slice(secret)
            .ok()?
            .chain_update(input)
            .finalize()
            .into_bytes()
            .to_vec(),
        Algorithm::HS512 => Hmac::<Sha512>::new_from_slice(secret)
            .ok()?
            .chain_update(input)
            .finalize()
            .into_bytes()
            .to_vec(),
        _ => return None,
    };
    Some(tag)
}

/// Why a signature could not be made. The response is then refused (502), never sent unsigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignError {
    /// This backend cannot sign with this key's algorithm.
    Unsupported(Algorithm),
    /// The crypto library failed.
    Failed(String),
    /// The host's `sign` failed or answered something that is not a signature.
    Host(String),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::Unsupported(alg) => write!(f, "backend cannot sign {alg}"),
            SignError::Failed(why) => write!(f, "signing failed: {why}"),
            SignError::Host(why) => write!(f, "host sign failed: {why}"),
        }
    }
}

/// The one signing interface: the JWS signature of `input` under `key`.
pub trait SigningBackend {
    fn sign(&self, key: &SigningKey, input: &[u8]) -> Result<Vec<u8>, SignError>;
}

/// Signs every algorithm inside the module: HMAC (hmac/sha2), RSASSA-PKCS1-v1_5 (rsa),
/// deterministic ECDSA (p256, RFC 6979, `r||s`), Ed25519 (ed25519-compact).
#[derive(Clone, Copy, Debug, Default)]
pub struct InModuleSigner;

impl SigningBackend for InModuleSigner {
    fn sign(&self, key: &SigningKey, input: &[u8]) -> Result<Vec<u8>, SignError> {
        use p256::ecdsa::signature::Signer;
        match &key.material {
            Material::Hmac(secret) => {
                sign_hmac(key.alg, secret, input).ok_or(SignError::Unsupported(key.alg))
            }
            Material::Rsa { key: rsa, .. } => rsa
                .sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input))
                .map_err(|e| SignError::Failed(e.to_string())),
            Material::P256(signing) => {
                let signature: p256::ecdsa::Signature = signing
                    .try_sign(input)
                    .map_err(|e| SignError::Failed(e.to_string()))?;
                Ok(signature.to_bytes().to_vec())
            }
            Material::Ed25519(pair) => Ok(pair.sk.sign(input, None).as_ref().to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HS384_SECRET: &[u8] = b"nHVuPkh87+YUbPI0CLkbGLhnMniDVg17zEpRDhci7SnQPOEt";

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap()
    }

    #[test]
    fn weak_secrets_are_refused_at_load() {
        let cases: [(&str, Algorithm, &[u8], Option<&str>); 7] = [
            (
                "generated",
                Algorithm::HS256,
                b"q7Vx2LmP9sKd4RtZw8NbYc3HfJ6GaUe1",
                None,
            ),
            (
                "short",
                Algorithm::HS256,
                b"q7Vx2LmP9sKd4RtZw8NbYc3HfJ6GaUe",
                Some("31 bytes"),
            ),
            (
                "short for HS512",
                Algorithm::HS512,
                b"q7Vx2LmP9sKd4RtZw8NbYc3HfJ6GaUe1q7Vx2LmP9sKd4RtZ",
                Some("HS512 needs at least 64"),
            ),
            ("one byte", Algorithm::HS256, &[b'a'; 40], Some("distinct")),
            (
                "few bytes",
                Algorithm::HS256,
                b"abcdabcdabcdabcdabcdabcdabcdabcdabcd",
                Some("distinct"),
            ),
            (
                "repeated",
                Algorithm::HS256,
                b"0123456789abcdef0123456789abcdef",
                Some("repeated"),
            ),
            (
                "unit repeated with a tail",
                Algorithm::HS256,
                b"0123456789abcdef0123456789abcdef0",
                None,
            ),
        ];
        for (name, alg, secret, expected) in cases {
            let result = SigningKey::hmac("k", alg, secret);
            match expected {
                None => assert!(result.is_ok(), "{name}: {result:?}"),
                Some(needle) => {
                    let error = result.unwrap_err().0;
                    assert!(error.contains(needle), "{name}: {error}");
                }
            }
        }
    }

    #[test]
    fn private_keys_must_fit_the_algorithm() {
        let rsa = fixture("rsa2048.key.pem");
        let ec = fixture("p256.key.pem");
        let ed = fixture("ed25519.key.pem");
        let p384 = fixture("p384.key.pem");
        assert!(SigningKey::from_pem("k", Algorithm::RS256, &rsa).is_ok());
        assert!(SigningKey::from_pem("k", Algorithm::ES256, &ec).is_ok());
        assert!(SigningKey::from_pem("k", Algorithm::EdDSA, &ed).is_ok());
        for (alg, pem) in [
            (Algorithm::RS256, &ec),
            (Algorithm::ES256, &rsa),
            (Algorithm::ES256, &p384),
            (Algorithm::EdDSA, &ec),
        ] {
            let error = SigningKey::from_pem("k", alg, pem).unwrap_err().0;
            assert!(
                error.contains("not a") || error.contains("not an"),
                "{alg}: {error}"
            );
        }
        let public = fixture("rsa2048.pub.pem");
        let error = SigningKey::from_pem("k", Algorithm::RS256, &public)
            .unwrap_err()
            .0;
        assert!(error.contains("\"PUBLIC KEY\""), "{error}");
        let error = SigningKey::from_pem("k", Algorithm::HS256, &rsa)
            .unwrap_err()
            .0;
        assert!(error.contains("secret"), "{error}");
    }

    #[test]
    fn every_key_verifies_what_it_signs_and_nothing_else() {
        let keys = [
            SigningKey::hmac("h", Algorithm::HS384, HS384_SECRET).unwrap(),
            SigningKey::from_pem("r", Algorithm::RS256, &fixture("rsa2048.key.pem")).unwrap(),
            SigningKey::from_pem("e", Algorithm::ES256, &fixture("p256.key.pem")).unwrap(),
            SigningKey::from_pem("d", Algorithm::EdDSA, &fixture("ed25519.key.pem")).unwrap(),
        ];
        for key in &keys {
            let signature = InModuleSigner.sign(key, b"header.payload").unwrap();
            assert!(key.verifies(b"header.payload", &signature), "{key:?}");
            assert!(!key.verifies(b"header.payload!", &signature), "{key:?}");
        }
    }

    #[test]
    fn host_arguments_exist_only_for_rs256_and_es256() {
        let rsa = SigningKey::from_pem("r", Algorithm::RS256, &fixture("rsa2048.key.pem")).unwrap();
        let ed = SigningKey::from_pem("d", Algorithm::EdDSA, &fixture("ed25519.key.pem")).unwrap();
        let (hash, der) = rsa.host_arguments().unwrap();
        assert_eq!(hash, "sha256");
        assert!(RsaPrivateKey::from_pkcs8_der(der).is_ok());
        assert!(ed.host_arguments().is_none());
    }
}
