//! Identifiers and generated secrets: UUIDs (Kong's `id`s), random hex (Kong's generated
//! `key` and `secret`), all from the operating system's random source.

use std::fmt::Write as _;

/// Random bytes from the OS. Fails only if the OS has no random source, which the
/// service then reports as an internal error rather than generating something guessable.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no random source: {e}"))?;
    Ok(bytes)
}

/// A new random (version 4) UUID, lowercase, as Kong writes them.
pub fn new_uuid() -> Result<String, String> {
    let mut bytes = random_bytes::<16>()?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex(&bytes);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// `chars` random lowercase hex digits (`chars` even, at most 128): Kong generates a
/// credential's `key` and `secret` as 32 of them.
pub fn random_hex(chars: usize) -> Result<String, String> {
    let bytes = random_bytes::<64>()?;
    let mut text = hex(&bytes);
    text.truncate(chars);
    Ok(text)
}

fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// Whether `text` is a UUID in its canonical 8-4-4-4-12 form (either case), as Kong's
/// `is_valid_uuid` decides whether a path segment is an `id` or an endpoint key.
pub fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_uuids_are_version_4_and_distinct() {
        let a = new_uuid().unwrap();
        let b = new_uuid().unwrap();
        assert!(is_uuid(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(a.as_bytes()[14], b'4');
        assert!(matches!(a.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
    }

    #[test]
    fn tells_uuids_from_names() {
        assert!(is_uuid("7bce93e1-0a90-489c-c887-d385545f8f4b"));
        assert!(is_uuid("7BCE93E1-0A90-489C-C887-D385545F8F4B"));
        assert!(!is_uuid("bob"));
        assert!(!is_uuid("7bce93e1-0a90-489c-c887-d385545f8f4"));
        assert!(!is_uuid("7bce93e1x0a90-489c-c887-d385545f8f4b"));
    }

    #[test]
    fn random_hex_has_the_length_asked() {
        for chars in [32, 48, 64, 128] {
            let text = random_hex(chars).unwrap();
            assert_eq!(text.len(), chars);
            assert!(text.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
}
