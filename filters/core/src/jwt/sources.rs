//! Where a token may be in a request (headers, query parameters, cookies), finding every
//! copy of it, and removing it again for `hide_credentials`.

use std::borrow::Cow;

use crate::header_map::HeaderMap;

/// Where a policy looks for tokens. Names are stored lowercase (headers) or as configured
/// (query parameters and cookies, which are case-sensitive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenLocations {
    pub header_names: Vec<String>,
    pub uri_param_names: Vec<String>,
    pub cookie_names: Vec<String>,
}

impl TokenLocations {
    /// The request headers to read, so the glue fetches only these: the configured header
    /// names, `:path` when query parameters are searched, `cookie` when cookies are.
    pub fn wanted_headers(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.header_names.iter().map(String::as_str).collect();
        if !self.uri_param_names.is_empty() {
            names.push(":path");
        }
        if !self.cookie_names.is_empty() && !names.contains(&"cookie") {
            names.push("cookie");
        }
        names
    }
}

/// One place a token was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenLocation {
    /// In this request header (lowercase name).
    Header(String),
    /// In this query parameter of `:path`.
    Query(String),
    /// In this cookie of the `cookie` header.
    Cookie(String),
}

/// Every token candidate of one request, each with where it was found: borrowed from the
/// request's headers and the policy's locations (a query parameter's value, once decoded, is
/// the only copy).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenSources<'a> {
    found: Vec<(Place<'a>, Cow<'a, str>)>,
}

/// A [`TokenLocation`] as found, its name borrowed from the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place<'a> {
    Header(&'a str),
    Query(&'a str),
    Cookie(&'a str),
}

impl Place<'_> {
    fn owned(self) -> TokenLocation {
        match self {
            Place::Header(name) => TokenLocation::Header(name.to_owned()),
            Place::Query(name) => TokenLocation::Query(name.to_owned()),
            Place::Cookie(name) => TokenLocation::Cookie(name.to_owned()),
        }
    }
}

/// A request that carries two different tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeveralTokens;

impl<'a> TokenSources<'a> {
    /// Looks through `headers` (name, value pairs; names matched case-insensitively, repeated
    /// headers all seen) for tokens in the places `locations` names.
    ///
    /// `authorization` counts only with the `Bearer` scheme (any letter case); other
    /// configured headers take `Bearer <token>` or a bare token.
    pub fn from_headers(
        locations: &'a TokenLocations,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> TokenSources<'a> {
        let mut sources = TokenSources::default();
        for (name, value) in headers {
            if let Some(wanted) = locations
                .header_names
                .iter()
                .find(|n| n.eq_ignore_ascii_case(name))
            {
                // Envoy joins a repeated header into one value with ',' (as RFC 9110 allows),
                // and a JWS never holds a comma: when every part is a token, each counts.
                let joined = value.contains(',')
                    && value.split(',').all(|p| header_token(wanted, p).is_some());
                if joined {
                    for token in value.split(',').filter_map(|p| header_token(wanted, p)) {
                        sources.push(Place::Header(wanted), Cow::Borrowed(token));
                    }
                } else if let Some(token) = header_token(wanted, value) {
                    sources.push(Place::Header(wanted), Cow::Borrowed(token));
                }
            }
            if name == ":path" {
                for param in &locations.uri_param_names {
                    for value in query_values(value, param) {
                        sources.push(Place::Query(param), value);
                    }
                }
            }
            if name.eq_ignore_ascii_case("cookie") {
                for cookie in &locations.cookie_names {
                    for value in cookie_values(value, cookie) {
                        sources.push(Place::Cookie(cookie), Cow::Borrowed(value));
                    }
                }
            }
        }
        sources
    }

    fn push(&mut self, place: Place<'a>, token: Cow<'a, str>) {
        if !token.is_empty() {
            self.found.push((place, token));
        }
    }

    /// Whether no token was found anywhere.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// The distinct token strings (the same token in two places counts once): what the
    /// tests read; a request needs only [`only`](Self::only).
    #[cfg(test)]
    fn distinct(&self) -> Vec<&str> {
        let mut tokens: Vec<&str> = Vec::new();
        for (_, token) in &self.found {
            if !tokens.contains(&&**token) {
                tokens.push(token);
            }
        }
        tokens
    }

    /// The request's token: `None` without one, the same token in several places once,
    /// [`SeveralTokens`] for two different ones.
    pub fn only(&self) -> Result<Option<&str>, SeveralTokens> {
        let mut tokens = self.found.iter().map(|(_, token)| &**token);
        let Some(first) = tokens.next() else {
            return Ok(None);
        };
        match tokens.all(|token| token == first) {
            true => Ok(Some(first)),
            false => Err(SeveralTokens),
        }
    }

    /// Every place a token was found.
    pub fn locations(&self) -> Vec<TokenLocation> {
        self.found.iter().map(|(place, _)| place.owned()).collect()
    }
}

fn header_token<'v>(header: &str, value: &'v str) -> Option<&'v str> {
    let value = value.trim_matches([' ', '\t']);
    let bearer = value
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
        .and_then(|_| value.get(7..))
        .map(|rest| rest.trim_start_matches([' ', '\t']));
    match bearer {
        Some(token) => Some(token),
        None if header == "authorization" => None,
        None => Some(value),
    }
}

fn query_values<'p>(path: &'p str, name: &'p str) -> impl Iterator<Item = Cow<'p, str>> + 'p {
    let query = path.split_once('?').map_or("", |(_, q)| q);
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query.split('&').filter_map(move |pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

fn cookie_values<'c>(header: &'c str, name: &'c str) -> impl Iterator<Item = &'c str> + 'c {
    header.split(';').filter_map(move |pair| {
        let (key, value) = pair.split_once('=')?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        (key.trim() == name).then_some(value)
    })
}

/// Decodes `%XX` escapes; an invalid escape or non-UTF-8 result leaves the input as is.
fn percent_decode(text: &str) -> Cow<'_, str> {
    if !text.contains('%') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b, hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_or(Cow::Borrowed(text), Cow::Owned)
}

/// What removing the token from everywhere it was found takes (Kong's `hide_credentials`):
/// the request headers to change, in order, each with its new value or `None` to remove it.
/// Each change builds on the last, so a token under two parameter or cookie names loses both
/// copies; cookies split over several `cookie` headers are joined, so no other cookie is lost.
pub fn hide<'l>(
    locations: &'l [TokenLocation],
    headers: &HeaderMap,
) -> Vec<(&'l str, Option<String>)> {
    let mut edits = Vec::new();
    let mut path: Option<String> = None;
    let mut cookie: Option<Option<String>> = None;
    for location in locations {
        match location {
            TokenLocation::Header(name) => edits.push((name.as_str(), None)),
            TokenLocation::Query(param) => {
                let current = path
                    .take()
                    .or_else(|| headers.get(":path").map(str::to_owned));
                path = current.map(|p| strip_query_param(&p, param));
            }
            TokenLocation::Cookie(name) => {
                let current = cookie.take().unwrap_or_else(|| {
                    let all: Vec<&str> = headers
                        .iter()
                        .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
                        .map(|(_, v)| v)
                        .collect();
                    (!all.is_empty()).then(|| all.join("; "))
                });
                cookie = Some(current.and_then(|c| strip_cookie(&c, name)));
            }
        }
    }
    if let Some(path) = path {
        edits.push((":path", Some(path)));
    }
    if let Some(cookie) = cookie {
        edits.push(("cookie", cookie));
    }
    edits
}

/// `path` without any `name=` query parameter (for `hide_credentials`).
pub fn strip_query_param(path: &str, name: &str) -> String {
    let Some((base, query)) = path.split_once('?') else {
        return path.to_owned();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !pair.is_empty() && percent_decode(key) != name
        })
        .collect();
    let mut out = base.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// The `cookie` header without the cookie `name`; `None` when nothing else is left, so the
/// glue removes the header.
pub fn strip_cookie(header: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|pair| {
            !pair.is_empty() && pair.split_once('=').map_or(*pair, |(k, _)| k.trim()) != name
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header_map::tests::map;

    fn locations() -> TokenLocations {
        TokenLocations {
            header_names: vec!["authorization".into(), "x-token".into()],
            uri_param_names: vec!["jwt".into()],
            cookie_names: vec!["session".into()],
        }
    }

    fn found<'a>(headers: &[(&'a str, &'a str)]) -> TokenSources<'a> {
        let locations: &'static TokenLocations = Box::leak(Box::new(locations()));
        TokenSources::from_headers(locations, headers.iter().copied())
    }

    #[test]
    fn finds_bearer_tokens_with_any_scheme_case() {
        for value in ["Bearer abc", "bearer abc", "BEARER   abc", "  Bearer abc  "] {
            assert_eq!(
                found(&[("Authorization", value)]).distinct(),
                vec!["abc"],
                "{value}"
            );
        }
    }

    #[test]
    fn ignores_other_authorization_schemes() {
        for value in ["Basic YWxhZGRpbjpvcGVuc2VzYW1l", "abc", "Bearer", "Bearer "] {
            assert!(found(&[("authorization", value)]).is_empty(), "{value}");
        }
    }

    #[test]
    fn custom_headers_take_bare_or_bearer_tokens() {
        assert_eq!(found(&[("x-token", "abc")]).distinct(), vec!["abc"]);
        assert_eq!(found(&[("X-Token", "Bearer abc")]).distinct(), vec!["abc"]);
    }

    #[test]
    fn finds_tokens_in_query_and_cookies() {
        let s = found(&[
            (":path", "/a?x=1&jwt=q.q.q&y"),
            ("cookie", "a=1; session=\"c.c.c\""),
        ]);
        assert_eq!(s.distinct(), vec!["q.q.q", "c.c.c"]);
        assert_eq!(
            s.locations(),
            vec![
                TokenLocation::Query("jwt".into()),
                TokenLocation::Cookie("session".into())
            ]
        );
        assert_eq!(
            found(&[(":path", "/a?jwt=a%2Eb.c")]).distinct(),
            vec!["a.b.c"]
        );
    }

    #[test]
    fn the_same_token_in_two_places_counts_once() {
        let s = found(&[("authorization", "Bearer t"), (":path", "/?jwt=t")]);
        assert_eq!(s.distinct(), vec!["t"]);
        assert_eq!(s.locations().len(), 2);
    }

    #[test]
    fn repeated_headers_and_params_are_all_seen() {
        let s = found(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(s.distinct(), vec!["a", "b"]);
        assert_eq!(
            found(&[(":path", "/?jwt=a&jwt=b")]).distinct(),
            vec!["a", "b"]
        );
    }

    #[test]
    fn a_repeated_header_joined_by_the_host_is_every_token_it_holds() {
        let s = found(&[("authorization", "Bearer a,Bearer b")]);
        assert_eq!(s.distinct(), vec!["a", "b"]);
        assert_eq!(
            found(&[("authorization", "bearer a, Bearer a")]).distinct(),
            vec!["a"]
        );
        assert_eq!(found(&[("x-token", "a,b")]).distinct(), vec!["a", "b"]);
        // A part that is no token leaves the value whole, to be refused as malformed.
        assert_eq!(
            found(&[("authorization", "Bearer a,junk")]).distinct(),
            vec!["a,junk"]
        );
    }

    #[test]
    fn empty_values_are_no_token() {
        assert!(found(&[
            (":path", "/?jwt="),
            ("cookie", "session="),
            ("x-token", " ")
        ])
        .is_empty());
    }

    #[test]
    fn wanted_headers_lists_what_to_read() {
        assert_eq!(
            locations().wanted_headers(),
            vec!["authorization", "x-token", ":path", "cookie"]
        );
    }

    #[test]
    fn strips_the_token_query_parameter() {
        let cases = [
            ("/a?jwt=t", "/a"),
            ("/a?x=1&jwt=t&y=2", "/a?x=1&y=2"),
            ("/a?jwt=t&jwt=u#frag", "/a#frag"),
            ("/a", "/a"),
            ("/a?jwtx=1", "/a?jwtx=1"),
        ];
        for (path, expected) in cases {
            assert_eq!(strip_query_param(path, "jwt"), expected, "{path}");
        }
    }

    #[test]
    fn strips_the_token_cookie() {
        assert_eq!(
            strip_cookie("a=1; session=t; b=2", "session").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(strip_cookie("session=t", "session"), None);
    }

    /// `hide` on a request with `headers`, for tokens found at `locations`.
    fn hidden(
        locations: &[TokenLocation],
        headers: &[(&str, &str)],
    ) -> Vec<(String, Option<String>)> {
        hide(locations, &map(headers))
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect()
    }

    fn edit(name: &str, value: Option<&str>) -> (String, Option<String>) {
        (name.to_owned(), value.map(str::to_owned))
    }

    #[test]
    fn hides_nothing_when_no_token_was_found() {
        assert_eq!(hidden(&[], &[(":path", "/orders?jwt=t")]), vec![]);
    }

    #[test]
    fn removes_a_token_header_whole() {
        let at = [TokenLocation::Header("x-token".into())];
        assert_eq!(
            hidden(&at, &[("x-token", "t")]),
            vec![edit("x-token", None)]
        );
    }

    #[test]
    fn removes_the_token_parameter_and_keeps_the_rest_of_the_path() {
        let at = [TokenLocation::Query("jwt".into())];
        let headers = [(":path", "/orders?page=2&jwt=t#top")];
        assert_eq!(
            hidden(&at, &headers),
            vec![edit(":path", Some("/orders?page=2#top"))]
        );
    }

    #[test]
    fn a_token_under_two_parameter_names_loses_both_in_one_change() {
        let at = [
            TokenLocation::Query("jwt".into()),
            TokenLocation::Query("token".into()),
        ];
        let headers = [(":path", "/orders?jwt=t&a=1&token=t")];
        assert_eq!(
            hidden(&at, &headers),
            vec![edit(":path", Some("/orders?a=1"))]
        );
    }

    #[test]
    fn joins_cookie_headers_so_no_other_cookie_is_lost() {
        let at = [TokenLocation::Cookie("session".into())];
        let headers = [("cookie", "a=1; session=t"), ("Cookie", "b=2")];
        assert_eq!(
            hidden(&at, &headers),
            vec![edit("cookie", Some("a=1; b=2"))]
        );
    }

    #[test]
    fn removes_the_cookie_header_when_the_token_was_its_only_cookie() {
        let at = [
            TokenLocation::Cookie("session".into()),
            TokenLocation::Cookie("jwt".into()),
        ];
        let headers = [("cookie", "session=t; jwt=t")];
        assert_eq!(hidden(&at, &headers), vec![edit("cookie", None)]);
    }

    #[test]
    fn headers_go_first_then_the_path_then_the_cookies() {
        let at = [
            TokenLocation::Cookie("session".into()),
            TokenLocation::Query("jwt".into()),
            TokenLocation::Header("authorization".into()),
        ];
        let headers = [
            (":path", "/orders?jwt=t"),
            ("authorization", "Bearer t"),
            ("cookie", "session=t; theme=dark"),
        ];
        assert_eq!(
            hidden(&at, &headers),
            vec![
                edit("authorization", None),
                edit(":path", Some("/orders")),
                edit("cookie", Some("theme=dark")),
            ]
        );
    }
}
