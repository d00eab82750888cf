//! JOSE, as every filter that reads or writes a JWT needs it: the JWS algorithms, keys
//! prepared once at configure time, the backends that check a signature, strict base64url,
//! and JSON Web Keys. The jwt filter verifies with these; the token issuer signs with keys
//! of the same algorithms and publishes them as a JWKS.
//!
//! | module | holds |
//! |---|---|
//! | [`crypto`] | algorithms, prepared keys, signature backends (in-module, host, split), where crypto runs |
//! | [`base64url`] | strict unpadded base64url decoding, fast |
//! | [`jwks`] | one JWK or a whole JWKS document into prepared keys |

pub mod base64url;
pub mod crypto;
pub mod jwks;

pub use crypto::{Algorithm, CryptoChoice, InModule, PreparedKey, SignatureBackend};
