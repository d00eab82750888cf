//! What both listeners share: the request as the routers see it (decoded path segments,
//! the query as Kong reads it, the body read within its limit), the answer, the token
//! check, and the one log line per request.

use std::time::Instant;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::Value as Json;

use crate::failure::Failure;
use crate::input::{self, Input};
use crate::metrics::Metrics;
use crate::token::Token;

/// A request, its head read; the body still to be read (see [`Request::body`]).
pub struct Request {
    pub method: Method,
    pub path: String,
    /// The path's segments, percent-decoded; empty segments (a trailing `/`) dropped.
    pub segments: Vec<String>,
    /// The raw segments, as given (for the `next` links Kong builds from them).
    pub raw_segments: Vec<String>,
    pub query: Input,
    pub headers: HeaderMap,
    /// In a mutex only so that `&Request` is `Sync` (a body is `Send` only).
    body: std::sync::Mutex<Option<Body>>,
    max_body: usize,
    body_timeout: std::time::Duration,
}

impl Request {
    pub fn new(
        request: axum::extract::Request,
        max_body: usize,
        body_timeout: std::time::Duration,
    ) -> Result<Request, Failure> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path().to_owned();
        let raw_segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        // A NUL cannot be in any stored name: not found, before any database sees it.
        let segments = raw_segments
            .iter()
            .map(|s| {
                percent_decode(s)
                    .filter(|s| !s.contains('\0'))
                    .ok_or(Failure::NotFound)
            })
            .collect::<Result<Vec<String>, Failure>>()?;
        let query = input::form(parts.uri.query().unwrap_or("").as_bytes())?;
        Ok(Request {
            method: parts.method,
            path,
            segments,
            raw_segments,
            query,
            headers: parts.headers,
            body: std::sync::Mutex::new(Some(body)),
            max_body,
            body_timeout,
        })
    }

    /// The body as Kong reads it (JSON or form data), at most `--max-body-bytes`.
    pub async fn body(&mut self) -> Result<Input, Failure> {
        let limit = self.max_body;
        if let Some(length) = self
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if length > limit as u64 {
                return Err(Failure::TooLarge(limit));
            }
        }
        let body = self
            .body
            .get_mut()
            .ok()
            .and_then(Option::take)
            .unwrap_or_default();
        let bytes = tokio::time::timeout(self.body_timeout, axum::body::to_bytes(body, limit))
            .await
            .map_err(|_| Failure::Timeout(self.body_timeout))?
            .map_err(|_| Failure::TooLarge(limit))?;
        if self.headers.get_all(header::CONTENT_TYPE).iter().count() > 1 {
            return Err(Failure::BadRequest(
                "Multiple Content-Type headers not allowed".to_owned(),
            ));
        }
        let content_type = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        input::body(content_type, &bytes)
    }

    /// Whether the request carries `token` in `header` (constant-time compare), or no
    /// token is required.
    pub fn authorised(&self, token: Option<&Token>, header: &str, bearer: bool) -> bool {
        let Some(token) = token else {
            return true;
        };
        let given = self.headers.get(header).map(HeaderValue::as_bytes);
        let given = match (given, bearer) {
            (Some(value), true) => {
                let (scheme, rest) = value.split_at(value.len().min(7));
                if scheme.eq_ignore_ascii_case(b"bearer ") {
                    Some(rest)
                } else {
                    None
                }
            }
            (value, _) => value,
        };
        token.admits(given)
    }
}

/// Whether `authority` (`host[:port]`, as in `Host` or an origin) names this machine by
/// loopback: `127.0.0.1`, `[::1]` or `localhost`, any port.
pub fn is_loopback_authority(authority: &str) -> bool {
    let host = if authority.starts_with('[') {
        authority.split_inclusive(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    let port_ok = authority.get(host.len()..).is_some_and(|rest| {
        rest.is_empty()
            || rest
                .strip_prefix(':')
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    port_ok && (host == "127.0.0.1" || host == "[::1]" || host.eq_ignore_ascii_case("localhost"))
}

/// The refusal of a `Host` that is not loopback.
pub const FOREIGN_HOST: &str = "the Host header must name 127.0.0.1, [::1] or localhost";

/// Why a browser may not have sent this request on its user's behalf, if so: a `Host` that
/// is not loopback (DNS rebinding: a page of `evil.example` resolving to 127.0.0.1), an
/// `Origin` that is not loopback, or `Sec-Fetch-Site: cross-site` (a cross-site form
/// POST). Checked when a listener has no token: then loopback is its only guard, and a
/// browser on the same machine is the one way past it.
pub fn browser_refusal(headers: &HeaderMap) -> Option<&'static str> {
    let host = headers.get(header::HOST).map(HeaderValue::as_bytes);
    let host_ok = host
        .and_then(|h| std::str::from_utf8(h).ok())
        .is_some_and(is_loopback_authority);
    if !host_ok || headers.get_all(header::HOST).iter().count() > 1 {
        return Some(FOREIGN_HOST);
    }
    for origin in headers.get_all(header::ORIGIN) {
        let loopback = origin.to_str().ok().is_some_and(|origin| {
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            authority.is_some_and(is_loopback_authority)
        });
        if !loopback {
            return Some("a request from another origin");
        }
    }
    let cross_site = headers
        .get_all("sec-fetch-site")
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    if cross_site {
        return Some("a cross-site request");
    }
    None
}

/// `%xx` sequences decoded; `None` if the result is not UTF-8 or a sequence is broken.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A successful answer.
pub enum Reply {
    Json(u16, Json),
    NoContent,
    Text(u16, &'static str, String),
}

/// Turns an outcome into the response, counts it and logs one line (never a body: bodies
/// hold secrets).
pub fn finish(
    api: &'static str,
    metrics: &Metrics,
    method: &Method,
    path: &str,
    started: Instant,
    outcome: Result<Reply, Failure>,
) -> Response {
    let (status, content_type, body) = match outcome {
        Ok(Reply::Json(status, json)) => {
            (status, "application/json; charset=utf-8", json.to_string())
        }
        Ok(Reply::NoContent) => (204, "", String::new()),
        Ok(Reply::Text(status, content_type, text)) => (status, content_type, text),
        Err(failure) => {
            if let Failure::Internal(why) | Failure::Unavailable(why) = &failure {
                eprintln!(
                    "portcullis-admin: level=error api={api} method={method} path={path:?} status={} error={why:?}",
                    failure.status()
                );
            }
            metrics.failed(&failure);
            (
                failure.status(),
                "application/json; charset=utf-8",
                failure.body().to_string(),
            )
        }
    };
    metrics.request(api, method.as_str(), status);
    eprintln!(
        "portcullis-admin: level=info api={api} method={method} path={path:?} status={status} ms={:.1}",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    if !content_type.is_empty() {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    headers.insert(
        header::SERVER,
        HeaderValue::from_static(concat!("portcullis-admin/", env!("CARGO_PKG_VERSION"))),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_loopback_hosts() {
        for yes in [
            "127.0.0.1",
            "127.0.0.1:8001",
            "[::1]",
            "[::1]:1",
            "localhost",
            "LOCALHOST:80",
        ] {
            assert!(is_loopback_authority(yes), "{yes}");
        }
        for no in [
            "evil.example",
            "127.0.0.1.evil.example",
            "localhost.evil.example:80",
            "[::1]x",
            "127.0.0.1:",
            "127.0.0.1:80x",
            "",
            "10.0.0.1:8001",
        ] {
            assert!(!is_loopback_authority(no), "{no}");
        }
    }

    #[test]
    fn refuses_what_a_browser_sends_cross_site() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.append(*name, HeaderValue::from_static(value));
            }
            map
        };
        let rows: [(&[(&str, &str)], bool); 9] = [
            (&[("host", "127.0.0.1:8001")], true),
            (
                &[
                    ("host", "localhost:8001"),
                    ("origin", "http://localhost:3000"),
                ],
                true,
            ),
            (
                &[("host", "[::1]:8001"), ("sec-fetch-site", "same-origin")],
                true,
            ),
            (&[], false),
            (&[("host", "evil.example:8001")], false),
            (
                &[
                    ("host", "127.0.0.1:8001"),
                    ("origin", "https://evil.example"),
                ],
                false,
            ),
            (&[("host", "127.0.0.1:8001"), ("origin", "null")], false),
            (
                &[("host", "127.0.0.1:8001"), ("sec-fetch-site", "cross-site")],
                false,
            ),
            (
                &[("host", "127.0.0.1:8001"), ("host", "evil.example")],
                false,
            ),
        ];
        for (pairs, admitted) in rows {
            assert_eq!(
                browser_refusal(&headers(pairs)).is_none(),
                admitted,
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("%E5%86%86").as_deref(), Some("円"));
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("a+b").as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%e5"), None);
        assert_eq!(percent_decode("50%"), None);
    }
}
