//! The form a request path is compared in where its spelling must not matter: rate
//! limiting's `limit_by: path` (no other spelling of the path escapes its counter) and the
//! token-issuer's auth paths (no other spelling of the login passes through unsigned). It is
//! the form most upstreams go on to serve.
//!
//! Envoy 1.40 hands a filter `:path` as the client sent it (`//payments`, `/%70ayments`,
//! `/x/../payments`, `/payments;x=1`, `/payments/`: measured with the probe filter, the
//! connection manager's `normalize_path` and `merge_slashes` off, their defaults). Kong's
//! rate-limiting compares `kong.request.get_path()`, which decodes percent-escapes, resolves
//! `.` and `..` and merges slashes. This does that, and also ignores what common upstreams
//! ignore: `;` parameters of a segment (Tomcat, Spring), a trailing slash (Express, and most
//! frameworks' default routing), a backslash for a slash (IIS; Envoy's `normalize_path`).
//! Each of these can only make more requests count under the path, never fewer: a spelling
//! the upstream serves as another resource is refused early at worst, never admitted past
//! the path's limit.

/// `path` (from `:path`; the query and a fragment are cut off) as it is compared: decoded
/// once, `\` read as `/`, each segment's `;` parameters dropped, empty and `.` segments
/// dropped, `..` taking the segment before it back (never above the root), no trailing
/// slash; `/` for the root. Linear in the path's length, which Envoy bounds (60 KiB of
/// headers by default).
pub fn normalise(path: &str) -> Vec<u8> {
    let raw = path.split(['?', '#']).next().unwrap_or_default().as_bytes();
    let decoded = percent_decoded(raw);
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in decoded.split(|b| *b == b'/' || *b == b'\\') {
        let segment = segment.split(|b| *b == b';').next().unwrap_or_default();
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            name => segments.push(name),
        }
    }
    let mut out = Vec::with_capacity(decoded.len().max(1));
    for segment in segments {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// Whether the request path `path` is `normal` (a path [`normalise`] gave).
pub fn is(path: &str, normal: &str) -> bool {
    // Nearly every request is spelled plainly: no work for those.
    let plain = path.split(['?', '#']).next().unwrap_or_default();
    plain == normal || normalise(path) == normal.as_bytes()
}

/// `%XX` decoded once (a `%` not followed by two hex digits stays as it is, as servers
/// that do not refuse it read it).
fn percent_decoded(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some((&byte, after)) = rest.split_first() {
        if byte == b'%' {
            if let Some((hi, lo)) = after.first().zip(after.get(1)) {
                if let (Some(hi), Some(lo)) = (hex(*hi), hex(*lo)) {
                    out.push(hi << 4 | lo);
                    rest = after.get(2..).unwrap_or_default();
                    continue;
                }
            }
        }
        out.push(byte);
        rest = after;
    }
    out
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(path: &str) -> String {
        String::from_utf8(normalise(path)).unwrap()
    }

    #[test]
    fn every_spelling_an_upstream_serves_as_the_path_is_the_path() {
        for spelled in [
            "/payments",
            "/payments?x=1",
            "/payments#top",
            "//payments",
            "///payments//",
            "/payments/",
            "/%70ayments",
            "/%70%61%79ments",
            "/%50ayments/../payments",
            "/payments;jsessionid=1",
            "/payments;",
            "/payments/;x",
            "/./payments",
            "/payments/.",
            "/x/../payments",
            "/public/..;/payments",
            "/%2e%2e/payments",
            "/..%2fpayments",
            "/payments%2F",
            "\\payments",
            "/..\\..\\payments",
        ] {
            assert!(is(spelled, "/payments"), "{spelled}: {}", normal(spelled));
        }
    }

    #[test]
    fn other_paths_are_not_the_path() {
        for other in [
            "/payments/1",
            "/Payments",
            "/paymentsx",
            "/pay",
            "/payments/..",
            "/%2570ayments",
            "/pay%ments",
            "/payments%",
            "/pay%2Fments",
            "/payments/../users",
            "/?/payments",
            "/users;/payments",
        ] {
            assert!(!is(other, "/payments"), "{other}: {}", normal(other));
        }
    }

    #[test]
    fn normalises_to_one_form() {
        let cases = [
            ("/", "/"),
            ("", "/"),
            ("//", "/"),
            ("/..", "/"),
            ("/a/b/../../..", "/"),
            ("/a/./b/", "/a/b"),
            ("/a;x/b;y=1;z", "/a/b"),
            ("/a%2fb", "/a/b"),
            ("/%zz", "/%zz"),
            ("/%4", "/%4"),
            ("*", "/*"),
        ];
        for (path, expected) in cases {
            assert_eq!(normal(path), expected, "{path}");
        }
        // Bytes that are not UTF-8 once decoded stay bytes: compared as such.
        assert_eq!(normalise("/%ff"), b"/\xff");
    }

    #[test]
    fn a_long_hostile_path_is_linear_work() {
        let path = format!("{}payments", "/.%2e/".repeat(20_000));
        assert!(is(&path, "/payments"));
        let path = format!("/{}", "%".repeat(60_000));
        assert!(!is(&path, "/payments"));
    }
}
