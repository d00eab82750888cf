//! The tokens that guard the two listeners: the Admin API's (`Kong-Admin-Token`, as Kong
//! Enterprise's RBAC names it) and the data plane's (`Authorization: Bearer …`). Read from
//! a file or the environment, never from a flag (a flag shows in `ps`); compared in
//! constant time; never logged.

use std::fmt;
use std::path::Path;

/// The shortest token accepted: 16 bytes (`openssl rand -hex 16` gives 32).
pub const MIN_TOKEN_BYTES: usize = 16;

/// A token. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Vec<u8>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({} bytes)", self.0.len())
    }
}

impl Token {
    /// The token in `text` (from `source`, named in errors), a trailing newline removed:
    /// at least [`MIN_TOKEN_BYTES`] of visible ASCII, what a header carries unchanged.
    pub fn new(text: &str, source: &str) -> Result<Token, String> {
        let token = text.trim_end_matches(['\n', '\r']);
        if token.chars().any(|c| !c.is_ascii_graphic()) {
            return Err(format!(
                "{source}: the token holds a character that is not visible ASCII; use e.g. openssl rand -hex 32"
            ));
        }
        if token.len() < MIN_TOKEN_BYTES {
            return Err(format!(
                "{source}: the token is {} bytes, at least {MIN_TOKEN_BYTES} wanted",
                token.len()
            ));
        }
        Ok(Token(token.as_bytes().to_vec()))
    }

    /// Whether `given` is this token, in time that depends only on the token's length.
    pub fn admits(&self, given: Option<&[u8]>) -> bool {
        let Some(given) = given else {
            return false;
        };
        let mut diff = self.0.len() ^ given.len();
        for (i, byte) in self.0.iter().enumerate() {
            diff |= usize::from(byte ^ given.get(i).copied().unwrap_or(0));
        }
        std::hint::black_box(diff) == 0
    }
}

/// The token from `flag FILE` or the environment variable `env` (at most one), if any.
pub fn load(
    flag: &str,
    file: Option<&Path>,
    env: &str,
    from_env: Option<String>,
) -> Result<Option<Token>, String> {
    match (file, from_env) {
        (Some(_), Some(_)) => Err(format!("{flag}: {env} already holds a token; give it once")),
        (Some(path), None) => {
            let source = format!("{flag} {}", path.display());
            let text = std::fs::read_to_string(path).map_err(|e| format!("{source}: {e}"))?;
            Token::new(&text, &source).map(Some)
        }
        (None, Some(text)) => Token::new(&text, env).map(Some),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_only_the_token() {
        let token = Token::new("0123456789abcdef0123\n", "test").unwrap();
        assert!(token.admits(Some(b"0123456789abcdef0123")));
        assert!(!token.admits(Some(b"0123456789abcdef012")));
        assert!(!token.admits(Some(b"0123456789abcdef01234")));
        assert!(!token.admits(Some(b"")));
        assert!(!token.admits(None));
        assert_eq!(format!("{token:?}"), "Token(20 bytes)");
    }

    #[test]
    fn refuses_short_or_invisible_tokens() {
        assert_eq!(
            Token::new("short", "f"),
            Err("f: the token is 5 bytes, at least 16 wanted".to_owned())
        );
        assert!(Token::new("0123456789abcdef 0123", "f").is_err());
        assert_eq!(
            load(
                "--admin-token-file",
                Some(Path::new("/x")),
                "E",
                Some("y".into())
            ),
            Err("--admin-token-file: E already holds a token; give it once".to_owned())
        );
    }
}
