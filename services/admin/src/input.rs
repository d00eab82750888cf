//! What a request carries, read as Kong reads it: a JSON object or form data
//! (`application/x-www-form-urlencoded`, where `tags[]=a&tags[]=b`, `tags=a&tags=b` and
//! `consumer.id=…` / `consumer[id]=…` build arrays and objects, and an empty value is
//! `null`), then typed field by field with Kong's messages.

use serde_json::{Map, Value};

use crate::failure::{Failure, Violations};

/// A request body or query string, as a JSON object.
pub type Input = Map<String, Value>;

/// Reads a POST/PUT/PATCH body by its `Content-Type`.
pub fn body(content_type: Option<&str>, bytes: &[u8]) -> Result<Input, Failure> {
    let Some(content_type) = content_type else {
        // No Content-Type: fine without a body (Kong: `curl -X POST …/jwt`), else 415.
        return if bytes.is_empty() {
            Ok(Input::new())
        } else {
            Err(Failure::UnsupportedMediaType)
        };
    };
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/json" => match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(Failure::BadRequest("Cannot parse JSON body".to_owned())),
        },
        "application/x-www-form-urlencoded" => form(bytes),
        _ => Err(Failure::UnsupportedMediaType),
    }
}

/// Form data (or a query string) as Kong's `normalize_nested_params` makes it. A name
/// given both as a plain value and as an object (`username=bob&username.x=1`) is a 400,
/// and so is a NUL byte anywhere (no database stores one in text).
pub fn form(bytes: &[u8]) -> Result<Input, Failure> {
    let mut input = Input::new();
    for (name, value) in form_urlencoded::parse(bytes) {
        if name.contains('\0') || value.contains('\0') {
            return Err(Failure::BadRequest(format!(
                "{}: a NUL byte is not allowed",
                name.replace('\0', "%00")
            )));
        }
        let value = if value.is_empty() {
            Value::Null
        } else {
            Value::String(value.into_owned())
        };
        let (field, sub) = split_name(&name);
        let both = || Failure::BadRequest(format!("{field} given as both a value and an object"));
        match sub {
            // `tags[]=a`, `tags[1]=a`: an array element.
            Some(index) if index.is_empty() || index.bytes().all(|b| b.is_ascii_digit()) => {
                push(&mut input, field, value);
            }
            // `consumer.id=x`, `consumer[id]=x`: a member of an object.
            Some(member) => {
                let entry = input
                    .entry(field.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                let Value::Object(map) = entry else {
                    return Err(both());
                };
                map.insert(member.to_owned(), value);
            }
            // A repeated plain name builds an array, as Kong's `combine_arg`.
            None => match input.get_mut(field) {
                Some(Value::Object(_)) => return Err(both()),
                Some(Value::Array(items)) => items.push(value),
                Some(existing) => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, value]);
                }
                None => {
                    input.insert(field.to_owned(), value);
                }
            },
        }
    }
    Ok(input)
}

fn push(input: &mut Input, field: &str, value: Value) {
    match input.get_mut(field) {
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            input.insert(field.to_owned(), Value::Array(vec![value]));
        }
    }
}

/// `a[b]` → (`a`, `b`); `a.b` → (`a`, `b`); `a[]` → (`a`, ``); `a` → (`a`, none).
fn split_name(name: &str) -> (&str, Option<&str>) {
    if let Some((field, rest)) = name.split_once('[') {
        if let Some(inner) = rest.strip_suffix(']') {
            return (field, Some(inner));
        }
    }
    match name.split_once('.') {
        Some((field, member)) => (field, Some(member)),
        None => (name, None),
    }
}

/// A field of an update: absent (keep what is stored), `null` (clear it), or a value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Field<T> {
    #[default]
    Absent,
    Null,
    Set(T),
}

impl<T> Field<T> {
    /// The value after applying this field to `current`.
    pub fn apply(self, current: Option<T>) -> Option<T> {
        match self {
            Field::Absent => current,
            Field::Null => None,
            Field::Set(value) => Some(value),
        }
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Field::Absent)
    }
}

/// Reads the fields of one entity's input, collecting every violation.
pub struct Reader<'a> {
    input: &'a Input,
    pub violations: Violations,
}

impl<'a> Reader<'a> {
    /// A reader over `input` that already flags every field not in `known`.
    pub fn new(input: &'a Input, known: &[&str]) -> Reader<'a> {
        let mut violations = Violations::default();
        for name in input.keys() {
            if !known.contains(&name.as_str()) {
                violations.field(name, "unknown field");
            }
        }
        Reader { input, violations }
    }

    /// A string field: Kong's `expected a string`, `length must be at least 1`; and,
    /// beyond Kong, no control characters (these values become HTTP headers at the
    /// gateway: `X-Consumer-Username`, `X-Credential-Identifier`, `X-Consumer-Groups`) and
    /// at most `max` bytes.
    pub fn string(&mut self, name: &str, max: usize) -> Field<String> {
        match self.input.get(name) {
            None => Field::Absent,
            Some(Value::Null) => Field::Null,
            Some(Value::String(text)) => match text_problem(text, max) {
                Some(problem) => {
                    self.violations.field(name, problem);
                    Field::Absent
                }
                None => Field::Set(text.clone()),
            },
            Some(_) => {
                self.violations.field(name, "expected a string");
                Field::Absent
            }
        }
    }

    /// A multi-line string field (a PEM): like [`Reader::string`] but CR and LF allowed.
    pub fn text(&mut self, name: &str, max: usize) -> Field<String> {
        match self.input.get(name) {
            None => Field::Absent,
            Some(Value::Null) => Field::Null,
            Some(Value::String(text)) if text.is_empty() => {
                self.violations.field(name, "length must be at least 1");
                Field::Absent
            }
            Some(Value::String(text)) if text.len() > max => {
                self.violations
                    .field(name, format!("length must be at most {max}"));
                Field::Absent
            }
            Some(Value::String(text)) if text.contains('\0') => {
                self.violations
                    .field(name, "invalid value: a NUL byte is not allowed");
                Field::Absent
            }
            Some(Value::String(text))
                if text
                    .chars()
                    .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) =>
            {
                self.violations.field(
                    name,
                    "invalid value: control characters other than CR, LF and tab are not allowed",
                );
                Field::Absent
            }
            Some(Value::String(text)) => Field::Set(text.clone()),
            Some(_) => {
                self.violations.field(name, "expected a string");
                Field::Absent
            }
        }
    }

    /// An integer field (Unix seconds); form data gives it as text.
    pub fn integer(&mut self, name: &str, min: i64, max: i64) -> Field<i64> {
        let number = match self.input.get(name) {
            None => return Field::Absent,
            Some(Value::Null) => return Field::Null,
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(text)) => text.trim().parse::<i64>().ok(),
            Some(_) => None,
        };
        match number {
            Some(n) if (min..=max).contains(&n) => Field::Set(n),
            Some(_) => {
                self.violations
                    .field(name, format!("value should be between {min} and {max}"));
                Field::Absent
            }
            None => {
                self.violations.field(name, "expected an integer");
                Field::Absent
            }
        }
    }

    /// A UUID field such as `id` (lowercased).
    pub fn uuid(&mut self, name: &str) -> Field<String> {
        match self.input.get(name) {
            None => Field::Absent,
            Some(Value::Null) => Field::Null,
            Some(Value::String(text)) if crate::ids::is_uuid(text) => {
                Field::Set(text.to_ascii_lowercase())
            }
            Some(_) => {
                self.violations.field(name, "expected a valid UUID");
                Field::Absent
            }
        }
    }

    /// Kong's `tags`: a set of strings, each printable ASCII but `,` and `/`, or UTF-8.
    pub fn tags(&mut self) -> Field<Vec<String>> {
        let items = match self.input.get("tags") {
            None => return Field::Absent,
            Some(Value::Null) => return Field::Null,
            Some(Value::Array(items)) => items,
            // Form data with one `tags=a` gives a string: Kong makes it a one-element set.
            Some(Value::String(text)) => return self.tag_list(&[Value::String(text.clone())]),
            Some(_) => {
                self.violations.field("tags", "expected a set");
                return Field::Absent;
            }
        };
        let items = items.clone();
        self.tag_list(&items)
    }

    fn tag_list(&mut self, items: &[Value]) -> Field<Vec<String>> {
        let mut tags: Vec<String> = Vec::with_capacity(items.len());
        for item in items {
            let Value::String(tag) = item else {
                self.violations.field("tags", "expected a string");
                return Field::Absent;
            };
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && tag.chars().all(|c| {
                    (c == ' ' || c.is_ascii_graphic() || !c.is_ascii()) && c != ',' && c != '/'
                });
            if !valid {
                self.violations.field(
                    "tags",
                    format!("invalid tag '{tag}': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"),
                );
                return Field::Absent;
            }
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
        Field::Set(tags)
    }

    /// A `consumer` reference (`{"id": "…"}`), as `/jwts` and `/acls` take it.
    pub fn consumer(&mut self) -> Field<String> {
        match self.input.get("consumer") {
            None => Field::Absent,
            Some(Value::Null) => Field::Null,
            Some(Value::Object(map)) => match map.get("id") {
                Some(Value::String(id)) if crate::ids::is_uuid(id) => {
                    Field::Set(id.to_ascii_lowercase())
                }
                _ => {
                    let mut sub = Map::new();
                    sub.insert(
                        "id".to_owned(),
                        Value::String("expected a valid UUID".to_owned()),
                    );
                    self.violations
                        .fields
                        .insert("consumer".to_owned(), Value::Object(sub));
                    Field::Absent
                }
            },
            Some(_) => {
                self.violations.field("consumer", "expected a record");
                Field::Absent
            }
        }
    }
}

/// Why `text` is not an acceptable one-line value, if it is not.
pub fn text_problem(text: &str, max: usize) -> Option<String> {
    if text.is_empty() {
        return Some("length must be at least 1".to_owned());
    }
    if text.len() > max {
        return Some(format!("length must be at most {max}"));
    }
    if text.chars().any(char::is_control) {
        return Some("invalid value: control characters are not allowed".to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_form_data_as_kong_does() {
        let input =
            form(b"username=bob&custom_id=&tags[]=a&tags[]=b&consumer.id=x&group=admins&group=ops")
                .unwrap();
        assert_eq!(
            Value::Object(input),
            json!({
                "username": "bob",
                "custom_id": null,
                "tags": ["a", "b"],
                "consumer": { "id": "x" },
                "group": ["admins", "ops"],
            })
        );
        assert_eq!(
            Value::Object(form(b"consumer%5Bid%5D=y&tags=one").unwrap()),
            json!({ "consumer": { "id": "y" }, "tags": "one" })
        );
    }

    #[test]
    fn refuses_a_name_both_plain_and_nested() {
        for body in [
            &b"username=bob&username.x=1"[..],
            b"username.x=1&username=bob",
            b"consumer=x&consumer[id]=y",
        ] {
            let refused = form(body);
            assert!(
                matches!(&refused, Err(Failure::BadRequest(m)) if m.ends_with("given as both a value and an object")),
                "{:?}: {refused:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn refuses_nul_bytes_in_every_text() {
        assert!(form(b"secret=a%00b").is_err());
        assert!(form(b"a%00=b").is_err());
        let Value::Object(input) = json!({ "secret": "0123456789abcdef0123456789abcdef\0" }) else {
            unreachable!()
        };
        let mut reader = Reader::new(&input, &["secret"]);
        assert_eq!(reader.text("secret", 100), Field::Absent);
        assert_eq!(
            reader.violations.fields["secret"],
            "invalid value: a NUL byte is not allowed"
        );
    }

    #[test]
    fn refuses_what_is_neither_json_nor_form() {
        assert_eq!(body(None, b""), Ok(Input::new()));
        assert_eq!(body(None, b"x"), Err(Failure::UnsupportedMediaType));
        assert_eq!(
            body(Some("text/plain"), b"x"),
            Err(Failure::UnsupportedMediaType)
        );
        assert_eq!(
            body(Some("application/json"), b""),
            Err(Failure::BadRequest("Cannot parse JSON body".to_owned()))
        );
        assert_eq!(
            body(Some("application/json"), b"[1]"),
            Err(Failure::BadRequest("Cannot parse JSON body".to_owned()))
        );
        assert_eq!(
            body(Some("Application/JSON; charset=utf-8"), br#"{"a":1}"#).map(|m| m.len()),
            Ok(1)
        );
    }

    #[test]
    fn names_each_bad_field() {
        let input = json!({"username": 5, "custom_id": "", "x": 1, "tags": ["a,b"], "id": "nope"});
        let Value::Object(input) = input else {
            unreachable!()
        };
        let mut reader = Reader::new(&input, &["username", "custom_id", "tags", "id"]);
        assert_eq!(reader.string("username", 10), Field::Absent);
        assert_eq!(reader.string("custom_id", 10), Field::Absent);
        assert_eq!(reader.tags(), Field::Absent);
        assert_eq!(reader.uuid("id"), Field::Absent);
        assert_eq!(
            Value::Object(reader.violations.fields.into_iter().collect()),
            json!({
                "username": "expected a string",
                "custom_id": "length must be at least 1",
                "x": "unknown field",
                "tags": "invalid tag 'a,b': expected printable ascii (except `,` and `/`) or valid utf-8 sequences",
                "id": "expected a valid UUID",
            })
        );
    }

    #[test]
    fn refuses_header_breaking_characters() {
        assert_eq!(
            text_problem("bob\r\nX-Evil: 1", 100),
            Some("invalid value: control characters are not allowed".to_owned())
        );
        assert_eq!(text_problem("bob'; DROP TABLE consumers;--", 100), None);
    }
}
