//! A token's header or payload: a JSON object checked as strictly as [`strict_json`] checks
//! a document, but kept as its text with the place of each top-level member, so that a
//! request reads the few members it needs (`alg`, `exp`, `iss`, …) without building a
//! [`Value`] for every member, key and string of the token.
//!
//! The reading is a small scanner over the text, not serde: it accepts exactly the objects
//! `strict_json` accepts (its tests hold it to that on generated documents), and when it
//! refuses one, `strict_json` reads the document again to say why.
//!
//! [`strict_json`]: crate::config::strict_json

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::ops::Range;

use serde_json::Value;

use crate::config::{strict_json, StrictError};

/// Why [`JsonObject::parse`] refused a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectError {
    /// Not JSON, or not one the strict reading accepts (see [`StrictError`]).
    Strict(StrictError),
    /// Valid JSON, but not an object.
    NotObject,
}

/// A strictly checked JSON object: no member name twice at any depth, UTF-8 with no lone
/// surrogate, no control character in a string, numbers within `f64`, nesting within
/// serde_json's limit — the objects [`strict_json`](crate::config::strict_json) accepts, and
/// no others.
#[derive(Clone, Debug)]
pub struct JsonObject {
    text: String,
    members: Vec<Member>,
}

#[derive(Clone, Debug)]
struct Member {
    name: Name,
    /// The member's value, as JSON text, in `text`.
    value: Range<usize>,
}

#[derive(Clone, Debug)]
enum Name {
    /// Written without escapes: the name is this part of `text`.
    Plain(Range<usize>),
    /// Written with escapes: the name they spell.
    Unescaped(Box<str>),
}

impl JsonObject {
    /// Reads `bytes` as a JSON object. A refusal says what [`strict_json`] says of the
    /// document (which, when it has several faults, names the first in reading order).
    ///
    /// [`strict_json`]: crate::config::strict_json
    pub fn parse(bytes: Vec<u8>) -> Result<JsonObject, ObjectError> {
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => return Err(refusal(e.as_bytes())),
        };
        let found = match Scanner::new(&text).document() {
            Ok(Some(found)) => found,
            Ok(None) => return Err(ObjectError::NotObject),
            Err(Refused) => return Err(refusal(text.as_bytes())),
        };
        let members = found
            .into_iter()
            .map(|(name, value)| Member {
                name: match name {
                    Cow::Borrowed(name) => Name::Plain(span(&text, name)),
                    Cow::Owned(name) => Name::Unescaped(name.into_boxed_str()),
                },
                value,
            })
            .collect();
        Ok(JsonObject { text, members })
    }

    /// The JSON text of member `name`'s value.
    pub fn raw(&self, name: &str) -> Option<&str> {
        let text = self.text.as_bytes();
        self.members
            .iter()
            .find(|m| match &m.name {
                Name::Plain(at) => {
                    at.len() == name.len() && text.get(at.clone()) == Some(name.as_bytes())
                }
                Name::Unescaped(spelled) => **spelled == *name,
            })
            .and_then(|m| self.text.get(m.value.clone()))
    }

    /// Whether the object has a member `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.raw(name).is_some()
    }

    /// Member `name`'s value, read now. The text was checked by [`parse`](Self::parse); were
    /// it ever not to read, the answer is `null` — present and of no use to any check (a
    /// claim that must be a number or a string is refused).
    pub fn get(&self, name: &str) -> Option<Value> {
        let raw = self.raw(name)?;
        Some(strict_json(raw.as_bytes()).unwrap_or(Value::Null))
    }

    /// Member `name` as a string: `None` when absent, `Some(None)` when not a string;
    /// borrowed from the text when written without escapes.
    pub fn get_str(&self, name: &str) -> Option<Option<Cow<'_, str>>> {
        let raw = self.raw(name)?;
        let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
            return Some(None);
        };
        if !inner.contains('\\') {
            return Some(Some(Cow::Borrowed(inner)));
        }
        Some(match strict_json(raw.as_bytes()) {
            Ok(Value::String(text)) => Some(Cow::Owned(text)),
            _ => None,
        })
    }

    /// Member `name` as a number: `None` when absent, `Some(None)` when not a number. An
    /// integer of up to 15 digits (every NumericDate until the year 31 million) is read
    /// here, exactly; any other number as serde_json reads it.
    pub fn get_f64(&self, name: &str) -> Option<Option<f64>> {
        let raw = self.raw(name)?;
        let digits = raw.strip_prefix('-').unwrap_or(raw);
        if !digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Some(raw.parse::<i64>().ok().map(|n| n as f64));
        }
        Some(match strict_json(raw.as_bytes()) {
            Ok(Value::Number(n)) => n.as_f64(),
            _ => None,
        })
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the object is `{}`.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// Where `part`, a slice of `text`, lies in it.
fn span(text: &str, part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
    start..start + part.len()
}

/// What the strict reading says of a document the scanner refused (refusals are rare, so
/// they may cost a second reading).
fn refusal(bytes: &[u8]) -> ObjectError {
    match strict_json(bytes) {
        Err(e) => ObjectError::Strict(e),
        Ok(Value::Object(_)) => ObjectError::Strict(StrictError::Syntax),
        Ok(_) => ObjectError::NotObject,
    }
}

/// The scanner found something `strict_json` would refuse.
#[derive(Debug)]
struct Refused;

/// An object's members: names (borrowed when written without escapes) and value spans.
type Members<'t> = Vec<(Cow<'t, str>, Range<usize>)>;

/// serde_json's recursion limit: a document may nest 127 arrays and objects, not 128.
const MAX_DEPTH: usize = 127;

/// Numbers this short, with no fraction or exponent, are finite as an `f64`; serde_json
/// reads longer ones, or ones with a fraction or exponent, as floats and refuses infinity.
const SHORT_INTEGER: usize = 300;

struct Scanner<'t> {
    text: &'t str,
    at: usize,
}

impl<'t> Scanner<'t> {
    fn new(text: &'t str) -> Self {
        Scanner { text, at: 0 }
    }

    /// A whole document: `Some` members of an object, `None` for any other value.
    fn document(mut self) -> Result<Option<Members<'t>>, Refused> {
        self.space();
        let members = if self.peek() == Some(b'{') {
            Some(self.object(1)?)
        } else {
            self.value(0)?;
            None
        };
        self.space();
        if self.at == self.text.len() {
            Ok(members)
        } else {
            Err(Refused)
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek();
        self.at += 1;
        byte
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), Refused> {
        if self.next() == Some(byte) {
            Ok(())
        } else {
            Err(Refused)
        }
    }

    /// One value at `depth` containers deep.
    fn value(&mut self, depth: usize) -> Result<(), Refused> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1).map(drop),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(drop),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(Refused),
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), Refused> {
        let end = self.at + word.len();
        if self.text.get(self.at..end) == Some(word) {
            self.at = end;
            Ok(())
        } else {
            Err(Refused)
        }
    }

    /// The object starting here, the `depth`-th container; its names must differ.
    fn object(&mut self, depth: usize) -> Result<Members<'t>, Refused> {
        if depth > MAX_DEPTH {
            return Err(Refused);
        }
        self.expect(b'{')?;
        let mut members = Vec::new();
        self.space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(members);
        }
        loop {
            self.space();
            let name = self.string()?;
            self.space();
            self.expect(b':')?;
            self.space();
            let start = self.at;
            self.value(depth)?;
            members.push((name, start..self.at));
            self.space();
            match self.next() {
                Some(b',') => {}
                Some(b'}') => break,
                _ => return Err(Refused),
            }
        }
        if repeats(&members) {
            return Err(Refused);
        }
        Ok(members)
    }

    fn array(&mut self, depth: usize) -> Result<(), Refused> {
        if depth > MAX_DEPTH {
            return Err(Refused);
        }
        self.expect(b'[')?;
        self.space();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.space();
            self.value(depth)?;
            self.space();
            match self.next() {
                Some(b',') => {}
                Some(b']') => return Ok(()),
                _ => return Err(Refused),
            }
        }
    }

    /// A string: what it spells, borrowed when it has no escapes. No control characters;
    /// `\u` escapes must pair surrogates (the text is UTF-8 already, being a `str`).
    fn string(&mut self) -> Result<Cow<'t, str>, Refused> {
        self.expect(b'"')?;
        let start = self.at;
        loop {
            match self.next() {
                Some(b'"') => {
                    let inner = self.text.get(start..self.at - 1).ok_or(Refused)?;
                    return Ok(Cow::Borrowed(inner));
                }
                Some(b'\\') => {
                    self.at -= 1;
                    return self.escaped(start);
                }
                Some(0x00..=0x1f) | None => return Err(Refused),
                Some(_) => {}
            }
        }
    }

    /// The rest of a string that has escapes, from `start` (just after its quote), decoded.
    fn escaped(&mut self, start: usize) -> Result<Cow<'t, str>, Refused> {
        let mut out = String::from(self.text.get(start..self.at).ok_or(Refused)?);
        loop {
            let from = self.at;
            match self.next() {
                Some(b'"') => return Ok(Cow::Owned(out)),
                Some(b'\\') => {
                    let c = match self.next() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => self.unicode_escape()?,
                        _ => return Err(Refused),
                    };
                    out.push(c);
                }
                Some(0x00..=0x1f) | None => return Err(Refused),
                Some(_) => {
                    // Copy the whole character (the text is UTF-8; `from` starts one).
                    let mut end = self.at;
                    while !self.text.is_char_boundary(end) {
                        end += 1;
                    }
                    out.push_str(self.text.get(from..end).ok_or(Refused)?);
                    self.at = end;
                }
            }
        }
    }

    /// After `\u`: four hex digits, and for a leading surrogate a `\u` trailing one.
    fn unicode_escape(&mut self) -> Result<char, Refused> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                self.expect(b'\\')?;
                self.expect(b'u')?;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(Refused);
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(Refused),
            code => code,
        };
        char::from_u32(code).ok_or(Refused)
    }

    fn hex4(&mut self) -> Result<u32, Refused> {
        let digits = self.text.get(self.at..self.at + 4).ok_or(Refused)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Refused);
        }
        self.at += 4;
        u32::from_str_radix(digits, 16).map_err(|_| Refused)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, finite as an `f64`.
    fn number(&mut self) -> Result<(), Refused> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.next() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Refused),
        }
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.digit()?;
            self.digits();
            float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.digit()?;
            self.digits();
            float = true;
        }
        if float || self.at - start > SHORT_INTEGER {
            let text = self.text.get(start..self.at).ok_or(Refused)?;
            strict_json(text.as_bytes()).map_err(|_| Refused)?;
        }
        Ok(())
    }

    fn digit(&mut self) -> Result<(), Refused> {
        match self.next() {
            Some(b'0'..=b'9') => Ok(()),
            _ => Err(Refused),
        }
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }
}

/// Whether a name occurs twice: pairwise for the few members a token has, in a set for many
/// (a hostile token of thousands of members costs n log n, not n²).
fn repeats(members: &Members<'_>) -> bool {
    if members.len() <= 8 {
        return members.iter().enumerate().any(|(i, (a, _))| {
            members
                .get(i + 1..)
                .unwrap_or_default()
                .iter()
                .any(|(b, _)| a == b)
        });
    }
    let mut names = BTreeSet::new();
    !members.iter().all(|(name, _)| names.insert(name.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Result<JsonObject, ObjectError> {
        JsonObject::parse(text.as_bytes().to_vec())
    }

    /// `JsonObject::parse` says what `strict_json` says: the same objects with the same
    /// members, the same refusals.
    fn agrees(bytes: &[u8]) {
        let ours = JsonObject::parse(bytes.to_vec());
        match (strict_json(bytes), ours) {
            (Ok(Value::Object(map)), Ok(object)) => {
                assert_eq!(object.len(), map.len(), "{bytes:?}");
                for (name, value) in &map {
                    assert_eq!(
                        object.get(name).as_ref(),
                        Some(value),
                        "{name} in {bytes:?}"
                    );
                    assert_eq!(
                        object.get_str(name).flatten().as_deref(),
                        value.as_str(),
                        "{name} in {bytes:?}"
                    );
                    assert_eq!(
                        object.get_str(name).map(|s| s.is_some()),
                        Some(value.is_string()),
                        "{name} in {bytes:?}"
                    );
                    assert_eq!(
                        object.get_f64(name),
                        Some(value.as_f64()),
                        "{name} in {bytes:?}"
                    );
                }
            }
            (Ok(Value::Object(_)), Err(e)) => panic!("{bytes:?}: strict accepts, we say {e:?}"),
            (Ok(_), ours) => assert_eq!(ours.err(), Some(ObjectError::NotObject), "{bytes:?}"),
            (Err(e), ours) => assert_eq!(ours.err(), Some(ObjectError::Strict(e)), "{bytes:?}"),
        }
    }

    #[test]
    fn reads_members_without_escapes_in_place_and_with_escapes_decoded() {
        let o = parse(r#" { "iss" : "a" , "exp":1700000000, "n\u0061me":"x\"y", "aud":["b"] } "#)
            .unwrap();
        assert_eq!(o.len(), 4);
        assert_eq!(o.get_str("iss").flatten().as_deref(), Some("a"));
        assert!(matches!(o.get_str("iss"), Some(Some(Cow::Borrowed(_)))));
        assert_eq!(o.get("exp"), Some(json!(1700000000)));
        assert_eq!(o.get_f64("exp"), Some(Some(1_700_000_000.0)));
        assert_eq!(o.get_f64("iss"), Some(None));
        assert_eq!(o.get_f64("sub"), None);
        assert_eq!(o.get_str("exp"), Some(None));
        assert_eq!(o.get_str("sub"), None);
        assert_eq!(o.get_str("name").flatten().as_deref(), Some("x\"y"));
        assert_eq!(o.raw("aud"), Some(r#"["b"]"#));
        assert_eq!(o.get("aud"), Some(json!(["b"])));
        assert!(o.contains_key("aud") && !o.contains_key("sub") && o.get("sub").is_none());
        assert!(parse("{}").unwrap().is_empty());
    }

    #[test]
    fn refuses_what_strict_json_refuses_for_the_same_reason() {
        let dup = ObjectError::Strict(StrictError::Duplicate);
        let syntax = ObjectError::Strict(StrictError::Syntax);
        let cases = [
            (r#"{"a":1,"a":2}"#, dup),
            (r#"{"a\u0062":1,"ab":2}"#, dup),
            (r#"{"x":{"y":1,"y":2}}"#, dup),
            (r#"{"x":[{"y":1,"y":2}]}"#, dup),
            (r#"[{"y":1,"y":2}]"#, dup),
            (r#"{"x":{"y":1,"y":2,}}"#, dup),
            (r#"{"a":"\ud800"}"#, syntax),
            (r#"{"\ud800":1}"#, syntax),
            (r#"{"a":1e400}"#, syntax),
            (r#"{"a":1,}"#, syntax),
            (r#"{"a":1} x"#, syntax),
            ("{\"a\":\"\u{1}\"}", syntax),
            ("", syntax),
            ("[1]", ObjectError::NotObject),
            ("\"a\"", ObjectError::NotObject),
            ("null", ObjectError::NotObject),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).err(), Some(expected), "{text}");
            agrees(text.as_bytes());
        }
        assert_eq!(
            JsonObject::parse(b"{\"a\":\"\xff\"}".to_vec()).err(),
            Some(syntax)
        );
        let deep = "{\"a\":".to_owned() + &"[".repeat(10_000) + &"]".repeat(10_000) + "}";
        assert_eq!(parse(&deep).err(), Some(syntax));
    }

    #[test]
    fn many_members_are_checked_for_repeats_in_a_set() {
        let members: Vec<String> = (0..2000).map(|i| format!("\"m{i}\":{i}")).collect();
        let unique = format!("{{{}}}", members.join(","));
        assert_eq!(parse(&unique).map(|o| o.len()), Ok(2000));
        let repeated = format!("{{{},\"m1000\":0}}", members.join(","));
        assert_eq!(
            parse(&repeated).err(),
            Some(ObjectError::Strict(StrictError::Duplicate))
        );
        agrees(unique.as_bytes());
        agrees(repeated.as_bytes());
    }

    #[test]
    fn agrees_at_the_edges_of_nesting_numbers_escapes_and_literals() {
        for depth in 120..=130 {
            let arrays = "[".repeat(depth) + &"]".repeat(depth);
            agrees(arrays.as_bytes());
            agrees(format!("{{\"a\":{arrays}}}").as_bytes());
            let objects = "{\"a\":".repeat(depth) + "1" + &"}".repeat(depth);
            agrees(objects.as_bytes());
        }
        let long = "9".repeat(SHORT_INTEGER + 20);
        let numbers = [
            "0",
            "-0",
            "1.",
            ".5",
            "1e",
            "1e+",
            "+1",
            "-",
            "--1",
            "1.5e-3",
            "2E+2",
            "00",
            "1e308",
            "1.8e308",
            "-1.8e308",
            "18446744073709551616",
            "-9223372036854775809",
            "1e-400",
            &long,
        ];
        for n in numbers {
            agrees(format!("{{\"n\":{n}}}").as_bytes());
            agrees(format!("{{\"n\":[{n}]}}").as_bytes());
        }
        let strings = [
            r#""\ud83d\ude00""#,
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800\u0041""#,
            r#""\ud800\n""#,
            r#""\u00e9é\n\/\b\f\r\t\\\"""#,
            r#""\u12""#,
            r#""\uzzzz""#,
            r#""\a""#,
            "\"\u{7f}\"",
            "\"\t\"",
            r#""é""#,
        ];
        for text in strings {
            agrees(format!("{{\"s\":{text}}}").as_bytes());
            agrees(format!("{{{text}:1}}").as_bytes());
            agrees(format!("{{{text}:1,\"x\":{{{text}:1,{text}:2}}}}").as_bytes());
        }
        for literal in ["true", "false", "null", "tru", "nul", "falsey", "True"] {
            agrees(format!("{{\"l\":{literal}}}").as_bytes());
        }
        let o = parse(r#"{"\ud83d\ude00":1,"a\nb":2}"#).unwrap();
        assert_eq!(o.get("\u{1f600}"), Some(json!(1)));
        assert_eq!(o.get("a\nb"), Some(json!(2)));
    }

    mod agrees_with_strict_json {
        use super::*;
        use proptest::prelude::*;

        /// Pieces of JSON, good and bad, that claims are made of.
        fn fragment() -> impl Strategy<Value = String> {
            let leaf = proptest::sample::select(vec![
                "1",
                "-0",
                "1.5e3",
                "1e400",
                "12345678901234567890",
                "true",
                "null",
                "\"a\"",
                "\"b\"",
                "\"\\u0061\"",
                "\"\\ud800\"",
                "\"\\ud83d\\ude00\"",
                "\"\\n\"",
                "\"é\"",
                "[]",
                "{}",
                "[1,]",
                "{\"a\":1,\"a\":2}",
                "\"",
                "01",
                "\"\\x\"",
            ])
            .prop_map(str::to_owned);
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4)
                        .prop_map(|items| format!("[{}]", items.join(","))),
                    proptest::collection::vec(
                        (
                            proptest::sample::select(vec!["a", "b", "\\u0061", "é"]),
                            inner
                        ),
                        0..4
                    )
                    .prop_map(|members| {
                        let members: Vec<String> = members
                            .into_iter()
                            .map(|(name, value)| format!("\"{name}\":{value}"))
                            .collect();
                        format!("{{{}}}", members.join(","))
                    }),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]

            #[test]
            fn on_objects_made_of_claims(
                members in proptest::collection::vec(
                    (proptest::sample::select(vec![
                        "iss", "exp", "sub", "a\\u0062", "ab", "x", "\\ud83d\\ude00", "\u{1f600}",
                        "\\ud800", "\\n", "\n", "é\\u00e9",
                    ]),
                     fragment()),
                    0..6,
                ),
                space in proptest::sample::select(vec!["", " ", "\n\t"]),
            ) {
                let members: Vec<String> = members
                    .iter()
                    .map(|(name, value)| format!("{space}\"{name}\"{space}:{space}{value}"))
                    .collect();
                agrees(format!("{{{}}}", members.join(",")).as_bytes());
            }

            #[test]
            fn on_json_shaped_text(text in "[{}\\[\\]\",:a-e0-9\\\\u. -]{0,60}") {
                agrees(text.as_bytes());
            }

            #[test]
            fn on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
                agrees(&bytes);
            }
        }
    }
}
