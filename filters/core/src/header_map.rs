//! A header map as a proxy-wasm host hands it over (`proxy_get_header_map_pairs`), read in
//! place: the host's one buffer becomes the text, plus one span per header.
//!
//! The SDK's `get_map_bytes` copies every name and value into its own allocation (two per
//! header, ~15 on an ordinary request, then converted to text by the jwt filter), and panics
//! on a status it does not expect, on a name that is not UTF-8 and on a buffer shorter than
//! its table says. This keeps the buffer, and answers every one of those with
//! [`MalformedMap`] or a readable value instead.
//!
//! The format (proxy-wasm ABI 0.2.1, little-endian): a `u32` count; a (`u32` name length,
//! `u32` value length) pair per header; then each name and each value, each followed by a
//! NUL byte.

use std::fmt;

/// Headers through which clients ask an upstream (Rails, Laravel, Express's
/// method-override, ASP.NET, …) to treat a request as another method: acl judges them, the
/// token-issuer refuses them on a login that names its methods.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Whether `name` is one of [`METHOD_OVERRIDE_HEADERS`], in any letter case.
pub fn is_method_override(name: &str) -> bool {
    METHOD_OVERRIDE_HEADERS
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

/// The host's buffer does not hold what its table says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MalformedMap;

impl fmt::Display for MalformedMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the host's header map is malformed")
    }
}

/// Where one header's name and value sit in [`HeaderMap::text`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    name: (usize, usize),
    value: (usize, usize),
}

/// Headers in the host's order, repeated names kept, names and values as text. A byte that
/// is not UTF-8 (obs-text is legal in an HTTP/1.1 value, and Envoy passes it) reads as `?`:
/// the header is still seen, so a forged identity header is still stripped and a token in it
/// still counts as present, and bad.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderMap {
    text: String,
    spans: Vec<Span>,
}

const U32: usize = 4;

fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
    let word = bytes.get(at..at.checked_add(U32)?)?;
    let word: [u8; U32] = word.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(word)).ok()
}

impl HeaderMap {
    /// Reads the host's serialized map. An empty buffer is an empty map (a host passes no
    /// buffer for no headers).
    pub fn from_serialized(mut bytes: Vec<u8>) -> Result<HeaderMap, MalformedMap> {
        if bytes.is_empty() {
            return Ok(HeaderMap::default());
        }
        let count = u32_at(&bytes, 0).ok_or(MalformedMap)?;
        let table = count
            .checked_mul(2 * U32)
            .and_then(|t| t.checked_add(U32))
            .filter(|t| *t <= bytes.len())
            .ok_or(MalformedMap)?;
        let mut spans = Vec::with_capacity(count);
        // Offsets into the text, which starts where the table ends.
        let text_len = bytes.len() - table;
        let mut at = 0usize;
        let mut next = |len: usize| -> Result<(usize, usize), MalformedMap> {
            let start = at;
            let end = start.checked_add(len).ok_or(MalformedMap)?;
            // Each string is followed by its NUL.
            at = end
                .checked_add(1)
                .filter(|a| *a <= text_len)
                .ok_or(MalformedMap)?;
            Ok((start, end))
        };
        for i in 0..count {
            let entry = U32 + i * 2 * U32;
            let name_len = u32_at(&bytes, entry).ok_or(MalformedMap)?;
            let value_len = u32_at(&bytes, entry + U32).ok_or(MalformedMap)?;
            let name = next(name_len)?;
            let value = next(value_len)?;
            spans.push(Span { name, value });
        }
        bytes.drain(..table);
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                String::from_utf8(question_marks(e.into_bytes())).map_err(|_| MalformedMap)?
            }
        };
        let on_boundary = |(start, end): (usize, usize)| {
            text.is_char_boundary(start) && text.is_char_boundary(end)
        };
        if !spans
            .iter()
            .all(|s| on_boundary(s.name) && on_boundary(s.value))
        {
            return Err(MalformedMap);
        }
        Ok(HeaderMap { text, spans })
    }

    /// Every header as (name, value), in the host's order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let piece = |(start, end): (usize, usize)| self.text.get(start..end).unwrap_or_default();
        self.spans
            .iter()
            .map(move |s| (piece(s.name), piece(s.value)))
    }

    /// Every header's name, in the host's order (repeated names repeated).
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.spans
            .iter()
            .map(|s| self.text.get(s.name.0..s.name.1).unwrap_or_default())
    }

    /// The first value of `name` (compared without regard to ASCII case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// Every byte of an invalid UTF-8 sequence becomes `?`, so offsets stay where they were.
/// A NUL is valid UTF-8, so the separators between strings are never touched.
fn question_marks(mut bytes: Vec<u8>) -> Vec<u8> {
    let mut from = 0;
    while let Some(rest) = bytes.get(from..) {
        let Err(e) = std::str::from_utf8(rest) else {
            break;
        };
        let bad = from + e.valid_up_to();
        let len = e.error_len().unwrap_or(bytes.len() - bad);
        for byte in bytes.iter_mut().skip(bad).take(len) {
            *byte = b'?';
        }
        from = bad + len;
    }
    bytes
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Serializes `pairs` the way a proxy-wasm host does (host-test has its own, on purpose:
    /// the harness stays independent of what it tests).
    fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
        for (name, value) in pairs {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        }
        for (name, value) in pairs {
            out.extend_from_slice(name);
            out.push(0);
            out.extend_from_slice(value);
            out.push(0);
        }
        out
    }

    /// The map a host would hand over for `pairs`.
    pub(crate) fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let bytes: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        HeaderMap::from_serialized(serialize(&bytes)).unwrap()
    }

    #[test]
    fn reads_every_header_in_order_with_repeats() {
        let pairs = [
            (":method", "GET"),
            (":path", "/orders?jwt=a.b.c"),
            ("authorization", "Bearer a.b.c"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("x-empty", ""),
        ];
        let headers = map(&pairs);
        assert_eq!(headers.iter().collect::<Vec<_>>(), pairs.to_vec());
        assert!(headers.names().eq(pairs.iter().map(|(n, _)| *n)));
        assert_eq!(headers.get("Authorization"), Some("Bearer a.b.c"));
        assert_eq!(headers.get("cookie"), Some("a=1"));
        assert_eq!(headers.get("x-empty"), Some(""));
        assert_eq!(headers.get("x-consumer-id"), None);
        assert_eq!(headers.len(), 6);
    }

    #[test]
    fn no_buffer_and_no_headers_are_empty() {
        assert!(HeaderMap::from_serialized(Vec::new()).unwrap().is_empty());
        assert!(HeaderMap::from_serialized(serialize(&[]))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn bytes_that_are_not_utf8_read_as_question_marks_in_place() {
        let bytes = serialize(&[
            (b"x-obs", b"caf\xe9 \xff\xfe"),
            (b"x-\xc3", b"ok"),
            (b"authorization", b"Bearer \xe2\x82"),
        ]);
        let headers = HeaderMap::from_serialized(bytes).unwrap();
        assert_eq!(
            headers.iter().collect::<Vec<_>>(),
            vec![
                ("x-obs", "caf? ??"),
                ("x-?", "ok"),
                ("authorization", "Bearer ??")
            ]
        );
    }

    #[test]
    fn a_buffer_shorter_than_its_table_says_is_malformed() {
        let good = serialize(&[(b"a", b"bc"), (b"d", b"")]);
        for len in 1..good.len() {
            let cut = good.get(..len).unwrap().to_vec();
            assert_eq!(HeaderMap::from_serialized(cut), Err(MalformedMap), "{len}");
        }
        // A count far beyond the buffer, and lengths that overflow.
        let mut huge = good.clone();
        huge.splice(..4, u32::MAX.to_le_bytes());
        assert_eq!(HeaderMap::from_serialized(huge), Err(MalformedMap));
        let mut long = good;
        long.splice(4..8, u32::MAX.to_le_bytes());
        assert_eq!(HeaderMap::from_serialized(long), Err(MalformedMap));
    }

    proptest! {
        #[test]
        fn round_trips(pairs in proptest::collection::vec(("[a-z:-]{0,12}", "[ -~]{0,40}"), 0..12)) {
            let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let headers = map(&borrowed);
            prop_assert_eq!(headers.iter().collect::<Vec<_>>(), borrowed);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(headers) = HeaderMap::from_serialized(bytes) {
                for (name, value) in headers.iter() {
                    prop_assert!(name.len() + value.len() < 64);
                }
            }
        }

        #[test]
        fn never_panics_on_a_well_formed_table_with_any_text(
            lens in proptest::collection::vec((0u32..6, 0u32..6), 0..5),
            text in proptest::collection::vec(any::<u8>(), 0..48),
        ) {
            let mut bytes = (lens.len() as u32).to_le_bytes().to_vec();
            for (n, v) in &lens {
                bytes.extend_from_slice(&n.to_le_bytes());
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            bytes.extend_from_slice(&text);
            let _ = HeaderMap::from_serialized(bytes);
        }
    }
}
