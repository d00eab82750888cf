//! `{{NAME}}` templates of Envoy YAML, filled in: the demo's config (`portcullis-services`)
//! and every config of the real-Envoy tests and the bench (`portcullis-tests`) go through
//! [`fill`], and quote their strings with [`quote`].

use std::collections::BTreeMap;

/// Replaces each `{{NAME}}` (upper-case letters, digits, `_`) with its value from `vars`.
/// When the placeholder starts its line, every later line of a multi-line value is indented
/// like the placeholder, so a YAML block drops in at the right depth. Other braces are left
/// alone. Errors name every placeholder that `vars` lacks.
pub fn fill(template: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut missing: Vec<&str> = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name = after.find("}}").map(|end| &after[..end]);
        match name.filter(|n| is_placeholder(n)) {
            Some(name) => {
                match vars.get(name) {
                    Some(value) => {
                        let indent = placeholder_indent(&out).to_owned();
                        out.push_str(&value.replace('\n', &format!("\n{indent}")));
                    }
                    None if missing.contains(&name) => {}
                    None => missing.push(name),
                }
                rest = &after[name.len() + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!("no value for {}", missing.join(", ")))
    }
}

fn is_placeholder(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The whitespace before a placeholder that starts its line, else nothing.
fn placeholder_indent(before: &str) -> &str {
    let line = before.rsplit('\n').next().unwrap_or("");
    if line.bytes().all(|b| b == b' ') {
        line
    } else {
        ""
    }
}

/// A YAML double-quoted scalar: a JSON string literal is one, escapes included.
pub fn quote(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fill_replaces_every_occurrence() {
        let out = fill("{{A}}-{{B}}-{{A}}", &vars(&[("A", "1"), ("B", "two")]));
        assert_eq!(out.as_deref(), Ok("1-two-1"));
    }

    #[test]
    fn fill_indents_a_block_like_its_placeholder() {
        let out = fill(
            "a:\n  {{B}}\nc: {{C}}\n",
            &vars(&[("B", "- x\n- y"), ("C", "1")]),
        );
        assert_eq!(out.as_deref(), Ok("a:\n  - x\n  - y\nc: 1\n"));
    }

    #[test]
    fn fill_leaves_a_block_at_column_zero_as_it_is() {
        let out = fill("a:\n{{B}}\n", &vars(&[("B", "  - x\n  - y")]));
        assert_eq!(out.as_deref(), Ok("a:\n  - x\n  - y\n"));
    }

    #[test]
    fn fill_names_every_missing_placeholder_once() {
        let out = fill("{{A}} {{B}} {{A}} {{C}}", &vars(&[("B", "b")]));
        assert_eq!(out, Err("no value for A, C".to_owned()));
    }

    #[test]
    fn fill_leaves_braces_that_are_not_placeholders() {
        let out = fill(r#"{"a":{}} value: "{{not a name}}" {{"#, &vars(&[]));
        assert_eq!(out.as_deref(), Ok(r#"{"a":{}} value: "{{not a name}}" {{"#));
    }

    #[test]
    fn fill_does_not_fill_what_a_value_brings() {
        let out = fill("{{A}}", &vars(&[("A", "{{B}}"), ("B", "no")]));
        assert_eq!(out.as_deref(), Ok("{{B}}"));
    }

    #[test]
    fn quote_escapes_a_json_plugin_config() {
        assert_eq!(quote(r#"{"a":"b\n"}"#), r#""{\"a\":\"b\\n\"}""#);
    }
}
