//! What every filter's configuration reading shares: the error that names the JSON path it
//! is about, the strict JSON reading (no repeated member names, at any depth), and the
//! range check of a number.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// A refused configuration: the JSON path and what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A refusal of the value at `path`.
pub(crate) fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

/// `value` when it lies in `min..=max`, else a refusal of the value at `path`.
pub(crate) fn bounded(path: &str, value: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(err(path, format!("{value} is outside {min}..={max}")))
    }
}

/// Reads a whole configuration: strict JSON ([`strict_json`]), an object, then `T`'s fields.
pub(crate) fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    let value = strict_json(bytes).map_err(|e| match e {
        StrictError::Syntax => err("", "not JSON"),
        StrictError::Duplicate => err("", "a member name repeats"),
    })?;
    if !value.is_object() {
        return Err(err("", "not a JSON object"));
    }
    typed("", value)
}

/// `value` as a `T`; a refusal names the path inside `value`, below `path`.
pub(crate) fn typed<T: DeserializeOwned>(path: &str, value: Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let full = match (path.is_empty(), inner.as_str()) {
            (true, _) => inner.clone(),
            (false, ".") => path.to_owned(),
            (false, _) if inner.starts_with('[') => format!("{path}{inner}"),
            (false, _) => format!("{path}.{inner}"),
        };
        err(
            if full == "." { String::new() } else { full },
            e.into_inner().to_string(),
        )
    })
}

/// A byte of an HTTP token (RFC 9110 `tchar`): what header and cookie names are made of.
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Why [`strict_json`] refused a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrictError {
    /// Not JSON, not UTF-8, trailing data, or nested too deep.
    Syntax,
    /// An object names the same member twice (serde_json would silently keep the last).
    Duplicate,
}

/// Parses JSON like `serde_json::from_slice`, but refuses duplicate member names at any depth.
pub fn strict_json(bytes: &[u8]) -> Result<Value, StrictError> {
    match serde_json::from_slice::<Strict>(bytes) {
        Ok(Strict(value)) => Ok(value),
        // The visitor's only custom error is the duplicate; everything else is syntax.
        Err(e) if e.classify() == serde_json::error::Category::Data => Err(StrictError::Duplicate),
        Err(_) => Err(StrictError::Syntax),
    }
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                return Err(de::Error::custom("duplicate member name"));
            }
            let Strict(value) = map.next_value()?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_json_refuses_deep_nesting_without_overflowing() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert_eq!(strict_json(deep.as_bytes()), Err(StrictError::Syntax));
    }
}
