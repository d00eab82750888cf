//! Tokens for tests, signed here with OpenSSL — an implementation independent of the
//! filters' — with any header and claims, so a test can make a good token of every
//! algorithm and every kind of bad one. Keys are the fixtures in `filters/core/tests/fixtures`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use serde_json::{json, Value};

/// A PEM file from `filters/core/tests/fixtures`.
pub fn fixture(name: &str) -> String {
    let path = crate::paths::workspace_root()
        .join("filters/core/tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The public key PEM that verifies [`sign`]'s tokens of `alg`.
pub fn public_pem(alg: &str) -> String {
    fixture(match alg {
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => "rsa2048.pub.pem",
        "ES256" => "p256.pub.pem",
        "ES384" => "p384.pub.pem",
        "EdDSA" => "ed25519.pub.pem",
        other => panic!("no public key for {other}"),
    })
}

fn private_key(alg: &str) -> PKey<Private> {
    let pem = fixture(match alg {
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => "rsa2048.key.pem",
        "ES256" => "p256.key.pem",
        "ES384" => "p384.key.pem",
        "EdDSA" => "ed25519.key.pem",
        other => panic!("no private key for {other}"),
    });
    PKey::private_key_from_pem(pem.as_bytes()).expect("fixture key parses")
}

/// Seconds since the epoch, from the system clock (what Envoy's clock says).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact JWS of `header` and `claims` (both as given: nothing is added), signed per the
/// header's `alg` with the fixture key, or with `secret` for HS*.
pub fn sign_raw(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let alg = header["alg"].as_str().unwrap_or("none");
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let signature = signature(alg, input.as_bytes(), secret);
    format!("{input}.{}", b64(signature))
}

fn signature(alg: &str, input: &[u8], secret: &[u8]) -> Vec<u8> {
    let md = |bits: &str| match bits {
        "256" => MessageDigest::sha256(),
        "384" => MessageDigest::sha384(),
        _ => MessageDigest::sha512(),
    };
    let (family, bits) = alg.split_at(2.min(alg.len()));
    match family {
        "HS" => {
            let key = PKey::hmac(secret).expect("hmac key");
            let mut signer = Signer::new(md(bits), &key).expect("signer");
            signer.sign_oneshot_to_vec(input).expect("hmac")
        }
        "RS" | "PS" => {
            let key = private_key(alg);
            let mut signer = Signer::new(md(bits), &key).expect("signer");
            if family == "PS" {
                signer
                    .set_rsa_padding(openssl::rsa::Padding::PKCS1_PSS)
                    .expect("pss");
                signer
                    .set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::DIGEST_LENGTH)
                    .expect("salt");
            }
            signer.sign_oneshot_to_vec(input).expect("rsa")
        }
        "ES" => {
            let key = private_key(alg);
            let mut signer = Signer::new(md(bits), &key).expect("signer");
            let der = signer.sign_oneshot_to_vec(input).expect("ecdsa");
            // JWS wants r||s, each the curve's size.
            let sig = EcdsaSig::from_der(&der).expect("der");
            let size = if bits == "256" { 32 } else { 48 };
            let mut raw = sig.r().to_vec_padded(size).expect("r");
            raw.extend(sig.s().to_vec_padded(size).expect("s"));
            raw
        }
        "Ed" => {
            let key = private_key(alg);
            let mut signer = Signer::new_without_digest(&key).expect("signer");
            signer.sign_oneshot_to_vec(input).expect("ed25519")
        }
        _ => Vec::new(),
    }
}

/// A good token: `alg` (with `kid` if given), `iss`, `sub`, `iat` now and `exp` in an hour,
/// plus `extra` claims (which may override those).
pub fn token(alg: &str, iss: &str, kid: Option<&str>, extra: Value, secret: &[u8]) -> String {
    let now = now();
    let mut claims = json!({ "iss": iss, "sub": iss, "iat": now, "exp": now + 3600 });
    if let (Some(map), Value::Object(more)) = (claims.as_object_mut(), extra) {
        map.extend(more);
    }
    let mut header = json!({ "alg": alg, "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    sign_raw(&header, &claims, secret)
}

/// An HS256 token of Kong's consumer credential `key` (found by `iss`).
pub fn hs256(key: &str, secret: &[u8]) -> String {
    token("HS256", key, None, json!({}), secret)
}

/// The public JWK (with `kid` and `alg`) that verifies [`sign_raw`]'s tokens of `alg`; for
/// HS* the `oct` key of `secret`.
pub fn jwk(alg: &str, kid: &str, secret: &[u8]) -> Value {
    if alg.starts_with("HS") {
        return json!({ "kty": "oct", "kid": kid, "alg": alg, "k": b64(secret) });
    }
    let key = PKey::public_key_from_pem(public_pem(alg).as_bytes()).expect("fixture key");
    match key.id() {
        openssl::pkey::Id::RSA => {
            let rsa = key.rsa().expect("rsa");
            json!({ "kty": "RSA", "kid": kid, "alg": alg, "use": "sig",
                    "n": b64(rsa.n().to_vec()), "e": b64(rsa.e().to_vec()) })
        }
        openssl::pkey::Id::EC => {
            let ec = key.ec_key().expect("ec");
            let mut ctx = openssl::bn::BigNumContext::new().expect("ctx");
            let (mut x, mut y) = (
                openssl::bn::BigNum::new().expect("bn"),
                openssl::bn::BigNum::new().expect("bn"),
            );
            ec.public_key()
                .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
                .expect("coordinates");
            let (crv, size) = if alg == "ES256" {
                ("P-256", 32)
            } else {
                ("P-384", 48)
            };
            json!({ "kty": "EC", "kid": kid, "alg": alg, "crv": crv, "use": "sig",
                    "x": b64(x.to_vec_padded(size).expect("x")),
                    "y": b64(y.to_vec_padded(size).expect("y")) })
        }
        _ => json!({ "kty": "OKP", "kid": kid, "alg": "EdDSA", "crv": "Ed25519", "use": "sig",
                     "x": b64(key.raw_public_key().expect("raw")) }),
    }
}
