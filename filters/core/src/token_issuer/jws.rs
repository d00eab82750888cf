//! JWS compact serialization (RFC 7515 §7.1) of an issued token, and the JWKS document that
//! publishes the public halves of the asymmetric keys.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};

use super::keys::{SignError, SigningBackend, SigningKey};

/// `header.payload.signature`, each base64url without padding; the header names the key's
/// `alg`, `typ: JWT` and its `kid`.
pub fn compact(
    key: &SigningKey,
    claims: &Map<String, Value>,
    backend: &dyn SigningBackend,
) -> Result<String, SignError> {
    let header = json!({"alg": key.alg().name(), "typ": "JWT", "kid": key.kid()});
    let payload = Value::Object(claims.clone());
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload.to_string()));
    let signature = backend.sign(key, token.as_bytes())?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(token)
}

/// `{"keys": [...]}` with the public JWK of every asymmetric key, active or not (tokens signed
/// before a rotation still verify); `None` when there is no asymmetric key. HMAC secrets are
/// never published.
pub fn jwks_document<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> Option<String> {
    let jwks: Vec<Value> = keys
        .into_iter()
        .filter_map(SigningKey::public_jwk)
        .collect();
    if jwks.is_empty() {
        None
    } else {
        Some(json!({ "keys": jwks }).to_string())
    }
}
