//! Reading a Kong declarative file: the size bound, YAML or JSON, into an ordered tree of
//! [`Node`]s. The tree keeps document order (the report lists items in input order), refuses
//! repeated keys (Kong's YAML reader would silently keep one of them), and is bounded: at most
//! [`MAX_INPUT_BYTES`] of text, [`MAX_NODES`] values once YAML aliases are expanded (a
//! "billion laughs" file stops there instead of filling memory) and [`MAX_DEPTH`] levels.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// The largest input accepted, in bytes. Kong's own declarative files for thousands of
/// routes stay well under it.
pub const MAX_INPUT_BYTES: usize = 16 * 1024 * 1024;
/// The most values a file may hold once aliases are expanded.
pub const MAX_NODES: usize = 2_000_000;
/// The deepest nesting accepted (Kong's schema needs fewer than 10 levels).
pub const MAX_DEPTH: usize = 64;

/// One value of the input and its position in document order (`seq`): report items are
/// sorted by the `seq` of what they are about.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub seq: u32,
}

/// A YAML or JSON value, mappings in document order.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Value {
    /// What the value is, for messages: "a string", "a list", ...
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Which syntax the file is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    Json,
    Yaml,
}

/// Reads `bytes` (a whole file, already bounded by the caller's read) into a tree.
/// The error is one line: what is wrong and, for a syntax error, its line and column.
pub fn parse(bytes: &[u8]) -> Result<(Node, Syntax), String> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(format!(
            "{} bytes, more than the {MAX_INPUT_BYTES} accepted",
            bytes.len()
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (byte {} is not part of a UTF-8 character)",
            e.valid_up_to()
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err("empty file".to_owned());
    }
    let state = State::default();
    let syntax = match text.trim_start().as_bytes().first() {
        Some(b'{') | Some(b'[') => Syntax::Json,
        _ => Syntax::Yaml,
    };
    let node = match syntax {
        Syntax::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            let node = NodeSeed::new(&state, 0)
                .deserialize(&mut de)
                .map_err(|e| format!("bad JSON: {e}"))?;
            de.end().map_err(|e| format!("bad JSON: {e}"))?;
            node
        }
        Syntax::Yaml => {
            let mut documents = serde_yaml_ng::Deserializer::from_str(text);
            let Some(first) = documents.next() else {
                return Err("empty file".to_owned());
            };
            let node = NodeSeed::new(&state, 0)
                .deserialize(first)
                .map_err(|e| format!("bad YAML: {e}"))?;
            if documents.next().is_some() {
                return Err("bad YAML: more than one document (`---`) in the file".to_owned());
            }
            node
        }
    };
    Ok((node, syntax))
}

#[derive(Default)]
struct State {
    seq: Cell<u32>,
    nodes: Cell<usize>,
}

impl State {
    fn next(&self) -> Result<u32, String> {
        let nodes = self.nodes.get() + 1;
        if nodes > MAX_NODES {
            return Err(format!(
                "more than {MAX_NODES} values once YAML aliases are expanded"
            ));
        }
        self.nodes.set(nodes);
        let seq = self.seq.get();
        self.seq.set(seq.saturating_add(1));
        Ok(seq)
    }
}

struct NodeSeed<'s> {
    state: &'s State,
    depth: usize,
}

impl<'s> NodeSeed<'s> {
    fn new(state: &'s State, depth: usize) -> Self {
        NodeSeed { state, depth }
    }
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = Node;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(de::Error::custom(format!(
                "nested more than {MAX_DEPTH} levels deep"
            )));
        }
        let seq = self.state.next().map_err(de::Error::custom)?;
        let value = deserializer.deserialize_any(ValueVisitor {
            state: self.state,
            depth: self.depth,
        })?;
        Ok(Node { value, seq })
    }
}

struct ValueVisitor<'s> {
    state: &'s State,
    depth: usize,
}

impl<'de> Visitor<'de> for ValueVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(v)))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        i128::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom("a number out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Value, E> {
        Err(E::custom("binary values are not accepted"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(NodeSeed::new(self.state, self.depth + 1))? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format!("duplicate key \"{key}\"")));
            }
            let value = map.next_value_seed(NodeSeed::new(self.state, self.depth + 1))?;
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

/// Mapping keys: strings, or scalars written as keys (`200:`), taken as their text.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping key that is a string")
    }
    fn visit_str<E>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_string<E>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_bool<E>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(node: &Node) -> &[(String, Node)] {
        match &node.value {
            Value::Map(m) => m,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn keeps_document_order_and_sequence_numbers() {
        let (node, syntax) = parse(b"b: 1\na: [x, y]\nc: {d: true}\n").unwrap();
        assert_eq!(syntax, Syntax::Yaml);
        let m = map(&node);
        let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "c"]);
        assert!(m[0].1.seq < m[1].1.seq && m[1].1.seq < m[2].1.seq);
    }

    #[test]
    fn json_is_read_as_json_in_order() {
        let (node, syntax) = parse(br#"  {"z": 1, "a": null, "m": 2.5}"#).unwrap();
        assert_eq!(syntax, Syntax::Json);
        let keys: Vec<&str> = map(&node).iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }

    #[test]
    fn refuses_repeated_keys_with_their_place() {
        let err = parse(b"services:\n- name: a\n  name: b\n").unwrap_err();
        assert!(err.contains("duplicate key \"name\""), "{err}");
        // serde_yaml_ng places it at the mapping holding the key, with its path.
        assert_eq!(
            err,
            "bad YAML: services[0]: duplicate key \"name\" at line 2 column 3"
        );
        let err = parse(br#"{"a": 1, "a": 2}"#).unwrap_err();
        assert!(err.contains("duplicate key \"a\""), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn bad_yaml_names_line_and_column() {
        let err = parse(b"services:\n  - name: a\n   bad: [\n").unwrap_err();
        assert!(err.starts_with("bad YAML: "), "{err}");
        assert!(err.contains("line"), "{err}");
        assert!(err.contains("column"), "{err}");
    }

    #[test]
    fn alias_bombs_stop_at_the_node_bound() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let err = parse(text.as_bytes()).unwrap_err();
        assert!(
            err.contains("values once YAML aliases are expanded")
                || err.contains("repetition limit"),
            "{err}"
        );
    }

    #[test]
    fn refuses_deep_nesting_oversize_and_non_utf8() {
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(parse(deep.as_bytes()).is_err());
        let big = vec![b' '; MAX_INPUT_BYTES + 1];
        assert!(parse(&big).unwrap_err().contains("more than"));
        assert!(parse(&[0xff, 0xfe, 0x00]).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn refuses_several_documents_and_empty_files() {
        assert!(parse(b"a: 1\n---\nb: 2\n")
            .unwrap_err()
            .contains("more than one document"));
        assert!(parse(b"").is_err());
    }
}
