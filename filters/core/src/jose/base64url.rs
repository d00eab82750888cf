//! Strict unpadded base64url decoding (RFC 7515 §2, RFC 4648 §5) for the three segments of
//! every token.
//!
//! The `base64` crate's general-purpose engine spends 26-29 wasm instructions per input
//! character; a token's segments are ~500 characters, so decoding was a third of parsing.
//! This is a table lookup per character and one validity test per four. It accepts exactly
//! what `URL_SAFE_NO_PAD` accepts (a property test in this module compares the two): the
//! alphabet `A-Z a-z 0-9 - _`, no padding, no whitespace, no length of the form `4n + 1`,
//! and no set bits after the last whole byte (each byte string has one encoding).

/// Marks a byte outside the alphabet; its high bit is what [`decode`] tests.
const INVALID: u8 = 0x80;

/// The value (0-63) of each alphabet byte, [`INVALID`] for every other byte.
const SEXTETS: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 26 {
        table[b'A' as usize + i] = i as u8;
        table[b'a' as usize + i] = 26 + i as u8;
        i += 1;
    }
    let mut d = 0;
    while d < 10 {
        table[b'0' as usize + d] = 52 + d as u8;
        d += 1;
    }
    table[b'-' as usize] = 62;
    table[b'_' as usize] = 63;
    table
};

fn sextet(byte: u8) -> u32 {
    u32::from(SEXTETS[usize::from(byte)])
}

/// Decodes `text`, or `None` if it is not canonical unpadded base64url.
pub fn decode(text: &[u8]) -> Option<Vec<u8>> {
    let quads = text.chunks_exact(4);
    let tail = quads.remainder();
    let whole = text.len() / 4 * 3;
    // Written in place, three bytes at a time: pushing them cost twice the instructions.
    let mut out = vec![0; whole + tail.len().saturating_sub(1)];
    let (body, rest) = out.split_at_mut(whole);
    for (quad, bytes) in quads.zip(body.chunks_exact_mut(3)) {
        let (&[a, b, c, d], [x, y, z]) = (quad, bytes) else {
            return None;
        };
        let (a, b, c, d) = (sextet(a), sextet(b), sextet(c), sextet(d));
        if (a | b | c | d) & u32::from(INVALID) != 0 {
            return None;
        }
        let bits = a << 18 | b << 12 | c << 6 | d;
        (*x, *y, *z) = ((bits >> 16) as u8, (bits >> 8) as u8, bits as u8);
    }
    // Two characters carry one byte and four spare bits, three carry two and two spare;
    // the spare bits must be zero.
    match (tail, rest) {
        ([], []) => {}
        (&[a, b], [x]) => {
            let (a, b) = (sextet(a), sextet(b));
            if (a | b) & u32::from(INVALID) != 0 || b & 0x0f != 0 {
                return None;
            }
            *x = (a << 2 | b >> 4) as u8;
        }
        (&[a, b, c], [x, y]) => {
            let (a, b, c) = (sextet(a), sextet(b), sextet(c));
            if (a | b | c) & u32::from(INVALID) != 0 || c & 0x03 != 0 {
                return None;
            }
            let bits = a << 12 | b << 6 | c;
            (*x, *y) = ((bits >> 10) as u8, (bits >> 2) as u8);
        }
        _ => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use proptest::prelude::*;

    #[test]
    fn decodes_what_the_crate_encodes() {
        for len in 0..70 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = URL_SAFE_NO_PAD.encode(&bytes);
            assert_eq!(decode(text.as_bytes()), Some(bytes), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_canonical_unpadded_base64url() {
        for text in [
            "eyJ=", "eyJ", "e", "eyJhb", "ab+c", "ab/c", "ab c", "ab\nc", "abc=", "ab==",
            // Set bits after the last whole byte: "QR" and "QUF" are not canonical.
            "QR", "QUF", "é123",
        ] {
            let theirs = URL_SAFE_NO_PAD.decode(text).ok();
            assert_eq!(decode(text.as_bytes()), theirs, "{text:?}");
        }
        assert_eq!(decode(b"QR"), None);
        assert_eq!(decode(b"QUF"), None);
        assert_eq!(decode(b"QQ"), Some(b"A".to_vec()));
        assert_eq!(decode(b"QUE"), Some(b"AA".to_vec()));
    }

    proptest! {
        #[test]
        fn agrees_with_the_base64_crate(text in "[A-Za-z0-9_+/=. -]{0,40}") {
            prop_assert_eq!(decode(text.as_bytes()), URL_SAFE_NO_PAD.decode(&text).ok());
        }

        #[test]
        fn agrees_on_alphabet_only_input(text in "[A-Za-z0-9_-]{0,64}") {
            prop_assert_eq!(decode(text.as_bytes()), URL_SAFE_NO_PAD.decode(&text).ok());
        }

        #[test]
        fn agrees_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
            prop_assert_eq!(decode(&bytes), URL_SAFE_NO_PAD.decode(&bytes).ok());
        }
    }
}
