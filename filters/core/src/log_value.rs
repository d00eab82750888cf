//! Values that come from a request (a token's `kid`, a consumer name taken from a claim)
//! written into a log line: quoted, escaped and cut short, so a client can neither start a
//! line of its own in Envoy's log (CR, LF) nor flood it with one value.

/// How many characters of one value a log line keeps.
pub const MAX_CHARS: usize = 64;

/// `value` in double quotes, with `"`, `\`, control characters and other non-printing ones
/// escaped as Rust escapes them (`\r`, `\n`, `\u{1b}`), cut after [`MAX_CHARS`] characters
/// with `…` after the closing quote.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_CHARS) + 2);
    out.push('"');
    let mut chars = value.chars();
    for c in chars.by_ref().take(MAX_CHARS) {
        out.extend(c.escape_debug());
    }
    out.push('"');
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_and_control_characters_are_escaped() {
        let cases = [
            ("k1", r#""k1""#),
            ("a\r\nfake log line", r#""a\r\nfake log line""#),
            ("quote\" and \\", r#""quote\" and \\""#),
            ("esc\u{1b}[31m", r#""esc\u{1b}[31m""#),
            ("nul\0", r#""nul\0""#),
            ("é ✓", r#""é ✓""#),
            ("", r#""""#),
        ];
        for (value, expected) in cases {
            assert_eq!(quote(value), expected, "{value:?}");
            assert!(!quote(value).contains(['\r', '\n']));
        }
    }

    #[test]
    fn a_long_value_is_cut_after_max_chars() {
        let long = "x".repeat(10_000);
        let quoted = quote(&long);
        assert_eq!(quoted, format!("\"{}\"…", "x".repeat(MAX_CHARS)));
        let exact = "y".repeat(MAX_CHARS);
        assert_eq!(quote(&exact), format!("\"{exact}\""));
        // Characters, not bytes: a multi-byte character is never split.
        let wide = "✓".repeat(MAX_CHARS + 1);
        assert_eq!(quote(&wide), format!("\"{}\"…", "✓".repeat(MAX_CHARS)));
    }
}
