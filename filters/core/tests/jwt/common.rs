//! Test helpers: key fixtures, token minting (jwt-simple, an independent implementation),
//! a standard configuration with one credential per algorithm, and a request runner.

use std::path::PathBuf;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{KeyInit, Mac};
use jwt_simple::prelude::*;
use portcullis_core::jose::{Algorithm, InModule, SignatureBackend};
use portcullis_core::jwt::{
    authenticate, Accepted, JwtPolicySet, KeyStore, Rejection, RoutePolicy, TokenCache,
    TokenSources, Verifier,
};
use portcullis_core::UnixTime;
use rsa::pkcs8::spki::{der::Decode, SubjectPublicKeyInfoRef};
use serde_json::{json, Value};

pub const NOW: UnixTime = UnixTime(1_700_000_000);
pub const HS256_SECRET: &str = "0123456789abcdef0123456789abcdef";
pub const HS384_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";
pub const HS512_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub fn fixture(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", name]
        .iter()
        .collect();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The credential key (and `iss`) used for `alg` in [`standard_config`].
pub fn key_for(alg: Algorithm) -> String {
    format!("{}-key", alg.name().to_lowercase())
}

/// The public key PEM fixture that verifies `alg` in the standard configuration.
pub fn public_pem(alg: Algorithm) -> Option<String> {
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Some(fixture("rsa2048.pub.pem")),
        ES256 => Some(fixture("p256.pub.pem")),
        ES384 => Some(fixture("p384.pub.pem")),
        EdDSA => Some(fixture("ed25519.pub.pem")),
        _ => None,
    }
}

pub fn secret_for(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS384 => HS384_SECRET,
        Algorithm::HS512 => HS512_SECRET,
        _ => HS256_SECRET,
    }
}

/// One consumer ("alice", groups admin and ops) with a credential for every algorithm, plus
/// the `anonymous` consumer, plus an inline-JWKS provider and a remote one.
pub fn standard_json() -> Value {
    let credentials: Vec<Value> = Algorithm::ALL
        .iter()
        .map(|alg| match public_pem(*alg) {
            Some(pem) => json!({"key": key_for(*alg), "algorithm": alg.name(), "public_key": pem}),
            None => {
                json!({"key": key_for(*alg), "algorithm": alg.name(), "secret": secret_for(*alg)})
            }
        })
        .collect();
    json!({
        "consumers": [
            {"username": "alice", "id": "c-alice", "custom_id": "ext-1", "groups": ["admin", "ops"],
             "credentials": credentials},
            {"username": "anonymous-user", "id": "c-anon"}
        ],
        "providers": [
            {"name": "idp", "issuer": "https://idp.example", "audiences": ["api"],
             "groups_claim": "roles", "jwks": inline_jwks()},
            {"name": "remote", "issuer": "https://remote.example",
             "remote_jwks": {"cluster": "jwks", "uri": "https://remote.example/.well-known/jwks.json"}}
        ],
        "claims_to_headers": {"sub": "x-jwt-sub"},
        "routes": {
            "public-route": {"public": true},
            "anon-route": {"anonymous": "anonymous-user"},
            "strict-route": {"leeway": 0, "required_claims": ["tenant"], "maximum_expiration": 3600}
        }
    })
}

pub fn standard() -> JwtPolicySet {
    JwtPolicySet::from_json(standard_json().to_string().as_bytes()).unwrap()
}

fn spki_raw(pem: &str) -> Vec<u8> {
    let (_, der) = rsa::pkcs8::der::pem::decode_vec(pem.as_bytes()).unwrap();
    let spki = SubjectPublicKeyInfoRef::from_der(&der).unwrap();
    spki.subject_public_key.raw_bytes().to_vec()
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWK for the RSA fixture (with `kid`, no `alg`).
pub fn rsa_jwk(pem_file: &str, kid: &str) -> Value {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::PublicKey::from_public_key_pem(&fixture(pem_file)).unwrap();
    json!({"kty": "RSA", "kid": kid, "use": "sig",
           "n": b64(key.n().to_be_bytes()), "e": b64(key.e().to_be_bytes())})
}

pub fn ec_jwk(pem_file: &str, crv: &str, kid: &str) -> Value {
    let raw = spki_raw(&fixture(pem_file));
    let half = (raw.len() - 1) / 2;
    json!({"kty": "EC", "crv": crv, "kid": kid, "x": b64(&raw[1..1 + half]), "y": b64(&raw[1 + half..])})
}

pub fn ed_jwk(kid: &str) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(spki_raw(&fixture("ed25519.pub.pem")))})
}

pub fn inline_jwks() -> Value {
    json!({"keys": [rsa_jwk("rsa2048.pub.pem", "rsa-1"), ec_jwk("p256.pub.pem", "P-256", "ec-1")]})
}

/// Mints a token with jwt-simple: `claims` verbatim (no automatic iat/exp/nbf).
pub fn mint(alg: Algorithm, claims: Value, kid: Option<&str>) -> String {
    mint_with(alg, claims, kid, None)
}

/// Like [`mint`], signing RS*/PS* with another RSA private key fixture.
pub fn mint_with(
    alg: Algorithm,
    claims: Value,
    kid: Option<&str>,
    rsa_key: Option<&str>,
) -> String {
    let mut c: JWTClaims<Value> = Claims::with_custom_claims(claims, Duration::from_secs(1));
    c.issued_at = None;
    c.expires_at = None;
    c.invalid_before = None;
    let rsa_pem = fixture(rsa_key.unwrap_or("rsa2048.key.pem"));
    macro_rules! sign {
        ($pair:expr) => {
            sign!($pair, sign)
        };
        ($pair:expr, $method:ident) => {{
            let pair = $pair;
            match kid {
                Some(kid) => pair.with_key_id(kid).$method(c),
                None => pair.$method(c),
            }
        }};
    }
    let signed = match alg {
        Algorithm::HS256 => sign!(HS256Key::from_bytes(HS256_SECRET.as_bytes()), authenticate),
        Algorithm::HS384 => sign!(HS384Key::from_bytes(HS384_SECRET.as_bytes()), authenticate),
        Algorithm::HS512 => sign!(HS512Key::from_bytes(HS512_SECRET.as_bytes()), authenticate),
        Algorithm::RS256 => sign!(RS256KeyPair::from_pem(&rsa_pem).unwrap()),
        Algorithm::RS384 => sign!(RS384KeyPair::from_pem(&rsa_pem).unwrap()),
        Algorithm::RS512 => sign!(RS512KeyPair::from_pem(&rsa_pem).unwrap()),
        Algorithm::PS256 => sign!(PS256KeyPair::from_pem(&rsa_pem).unwrap()),
        Algorithm::PS384 => sign!(PS384KeyPair::from_pem(&rsa_pem).unwrap()),
        Algorithm::PS512 => sign!(PS512KeyPair::from_pem(&rsa_pem).unwrap()),
        Algorithm::ES256 => sign!(ES256KeyPair::from_pem(&fixture("p256.key.pem")).unwrap()),
        Algorithm::ES384 => sign!(ES384KeyPair::from_pem(&fixture("p384.key.pem")).unwrap()),
        Algorithm::EdDSA => sign!(Ed25519KeyPair::from_pem(&fixture("ed25519.key.pem")).unwrap()),
    };
    signed.unwrap()
}

/// An HS256 token with any header at all, signed with `secret`.
pub fn hs256_raw(header: &str, claims: &str, secret: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(mac.finalize().into_bytes()))
}

/// Claims of a currently valid token issued under `iss`.
pub fn valid_claims(iss: &str) -> Value {
    json!({"iss": iss, "sub": "alice-sub", "iat": NOW.0 - 10, "exp": NOW.0 + 600})
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Runs one request through `authenticate` on `route` with the in-module backend.
pub fn run(set: &JwtPolicySet, route: Option<&str>, headers: &[(&str, &str)]) -> Outcome {
    run_full(set, route, headers, NOW, &InModule, &KeyStore::new(), None)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Public,
    Accepted(Accepted),
    Rejected(Rejection),
}

impl Outcome {
    pub fn accepted(self) -> Accepted {
        match self {
            Outcome::Accepted(a) => a,
            other => panic!("expected acceptance, got {other:?}"),
        }
    }

    pub fn rejection(self) -> Rejection {
        match self {
            Outcome::Rejected(r) => r,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }
}

pub fn run_full(
    set: &JwtPolicySet,
    route: Option<&str>,
    headers: &[(&str, &str)],
    now: UnixTime,
    backend: &dyn SignatureBackend,
    keys: &KeyStore,
    cache: Option<&mut TokenCache>,
) -> Outcome {
    let policy = match set.for_route(route) {
        RoutePolicy::Public => return Outcome::Public,
        RoutePolicy::Protected(p) => p,
    };
    let sources = TokenSources::from_headers(policy.locations(), headers.iter().copied());
    let mut verifier = Verifier {
        backend,
        remote_keys: keys,
        cache,
        source: None,
    };
    match authenticate(&sources, policy, now, &mut verifier) {
        Ok(a) => Outcome::Accepted(a),
        Err(r) => Outcome::Rejected(r),
    }
}
