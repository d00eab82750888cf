//! Typed access to one mapping of the input, field by field, with the path of each field for
//! errors and the report. Whatever a reader does not take is left for [`Fields::rest`], so
//! unknown fields always reach the report.

use super::input::{Node, Value};
use crate::report::Loc;
use crate::InputError;

/// Fields Kong keeps about an entity that do not change what a request gets: ignored
/// (documented in the README), never reported.
pub const METADATA: [&str; 4] = ["id", "tags", "created_at", "updated_at"];

/// The fields of one mapping. `null` counts as absent, as Kong reads it.
pub struct Fields<'a> {
    pub at: Loc,
    entries: &'a [(String, Node)],
    used: Vec<bool>,
}

impl<'a> Fields<'a> {
    /// `node` must be a mapping.
    pub fn of(node: &'a Node, at: &Loc) -> Result<Fields<'a>, InputError> {
        match &node.value {
            Value::Map(entries) => Ok(Fields {
                at: at.clone(),
                entries,
                used: vec![false; entries.len()],
            }),
            other => Err(InputError::at(
                at,
                format!("expected a mapping, found {}", other.kind()),
            )),
        }
    }

    /// The place of field `key` (its own `seq` when present, else the mapping's).
    pub fn loc(&self, key: &str) -> Loc {
        let seq = self
            .entries
            .iter()
            .find(|(k, _)| k == key)
            .map_or(self.at.seq, |(_, n)| n.seq);
        self.at.field(key, seq)
    }

    /// Field `key`, unless absent or null; marks it read.
    pub fn get(&mut self, key: &str) -> Option<&'a Node> {
        let entries = self.entries;
        let i = entries.iter().position(|(k, _)| k == key)?;
        if let Some(used) = self.used.get_mut(i) {
            *used = true;
        }
        let node = &entries.get(i)?.1;
        match node.value {
            Value::Null => None,
            _ => Some(node),
        }
    }

    /// Whether field `key` is present and not null (does not mark it read).
    pub fn has(&self, key: &str) -> bool {
        self.entries
            .iter()
            .any(|(k, n)| k == key && n.value != Value::Null)
    }

    pub fn string(&mut self, key: &str) -> Result<Option<String>, InputError> {
        match self.get(key) {
            None => Ok(None),
            Some(Node {
                value: Value::Str(s),
                ..
            }) => Ok(Some(s.clone())),
            Some(other) => Err(self.wrong(key, "a string", other)),
        }
    }

    pub fn bool(&mut self, key: &str) -> Result<Option<bool>, InputError> {
        match self.get(key) {
            None => Ok(None),
            Some(Node {
                value: Value::Bool(b),
                ..
            }) => Ok(Some(*b)),
            Some(other) => Err(self.wrong(key, "true or false", other)),
        }
    }

    /// A whole number (a float with no fraction counts, as Kong's Lua numbers do).
    pub fn int(&mut self, key: &str) -> Result<Option<i128>, InputError> {
        match self.get(key) {
            None => Ok(None),
            Some(node) => match as_int(node) {
                Some(i) => Ok(Some(i)),
                None => Err(self.wrong(key, "a whole number", node)),
            },
        }
    }

    /// Any number.
    pub fn number(&mut self, key: &str) -> Result<Option<f64>, InputError> {
        match self.get(key) {
            None => Ok(None),
            Some(Node {
                value: Value::Int(i),
                ..
            }) => Ok(Some(*i as f64)),
            Some(Node {
                value: Value::Float(f),
                ..
            }) => Ok(Some(*f)),
            Some(other) => Err(self.wrong(key, "a number", other)),
        }
    }

    /// A list of strings.
    pub fn strings(&mut self, key: &str) -> Result<Option<Vec<String>>, InputError> {
        let at = self.loc(key);
        match self.get(key) {
            None => Ok(None),
            Some(node) => strings(node, &at).map(Some),
        }
    }

    /// A list of anything: each item with its place.
    pub fn list(&mut self, key: &str) -> Result<Vec<(Loc, &'a Node)>, InputError> {
        let at = self.loc(key);
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Node {
                value: Value::Seq(items),
                ..
            }) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, n)| (at.index(i, n.seq), n))
                .collect()),
            Some(other) => Err(InputError::at(
                &at,
                format!("expected a list, found {}", other.value.kind()),
            )),
        }
    }

    /// The fields nobody took (null ones included: a null is "unset", never reported).
    pub fn rest(self) -> Vec<(Loc, &'a str, &'a Node)> {
        let at = self.at;
        self.entries
            .iter()
            .zip(self.used)
            .filter(|((_, n), used)| !used && n.value != Value::Null)
            .map(|((k, n), _)| (at.field(k, n.seq), k.as_str(), n))
            .collect()
    }

    fn wrong(&self, key: &str, expected: &str, found: &Node) -> InputError {
        InputError::at(
            &self.loc(key),
            format!("expected {expected}, found {}", found.value.kind()),
        )
    }
}

/// A whole number, from an integer or a float without fraction.
pub fn as_int(node: &Node) -> Option<i128> {
    match node.value {
        Value::Int(i) => Some(i),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e18 => Some(f as i128),
        _ => None,
    }
}

/// A list of strings at `at`.
pub fn strings(node: &Node, at: &Loc) -> Result<Vec<String>, InputError> {
    match &node.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| match &n.value {
                Value::Str(s) => Ok(s.clone()),
                other => Err(InputError::at(
                    &at.index(i, n.seq),
                    format!("expected a string, found {}", other.kind()),
                )),
            })
            .collect(),
        other => Err(InputError::at(
            at,
            format!("expected a list of strings, found {}", other.kind()),
        )),
    }
}

/// A short rendering of a value for the report (`true`, `"x"`, `[a, b]`).
pub fn show(node: &Node) -> String {
    match &node.value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Str(s) => {
            let mut s = format!("{s:?}");
            if s.len() > 60 {
                let cut = (0..=57).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                s.truncate(cut);
                s.push_str("…\"");
            }
            s
        }
        Value::Seq(items) if items.is_empty() => "[]".to_owned(),
        Value::Seq(items) => format!("a list of {}", items.len()),
        Value::Map(entries) if entries.is_empty() => "{}".to_owned(),
        Value::Map(_) => "a mapping".to_owned(),
    }
}

/// Whether a value is "empty" the way Kong's defaults are: null, `[]`, `{}`.
pub fn is_empty(node: &Node) -> bool {
    match &node.value {
        Value::Null => true,
        Value::Seq(items) => items.is_empty(),
        Value::Map(entries) => entries.is_empty(),
        _ => false,
    }
}
