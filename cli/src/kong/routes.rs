//! Kong routes → Envoy routes: matching as Kong matches, in the order Kong's router tries
//! them (Envoy takes the first route that matches), and the upstream path Kong would send.
//!
//! | Kong | Envoy |
//! |---|---|
//! | `paths` prefix | `prefix` (both compare bytes: `/users` matches `/usersX`) |
//! | `paths` regex (3.0 `~…`, 1.1/2.1 any path with a regex character) | `safe_regex` `(?:R).*` (Kong anchors at the start only) |
//! | `methods` | `:method` header, `GET\|POST` |
//! | `hosts` (`*.example.com`, `example.*`) | `:authority` header, case-insensitive, any port |
//! | `headers` | one header matcher each, any listed value, case-insensitive; `~*` values as regex |
//! | `strip_path`, service `path`, `path_handling` | `regex_rewrite` (and an exact-path route where Kong's join differs) |
//!
//! **Order.** Each Kong path becomes its own Envoy route (all carrying the Kong route's
//! name), sorted by the key Kong's router sorts by, highest first; equal keys keep input
//! order. `_format_version` 3.0 (Kong 3's `traditional_compatible` router, priority per path):
//! (1) how many of `methods`, `hosts`, `headers`, `paths` the route uses, (2) hosts all
//! plain (no wildcard), (3) the number of headers, (4) a regex path, (5) `regex_priority`
//! (regex paths only), (6) the prefix's length. 1.1 and 2.1 (Kong 1.x/2.x's traditional
//! router, per route): (1) the same count, (2) which attributes (hosts, then headers, then
//! paths, then methods), (3) plain hosts only, then a regex path, (4) the number of headers,
//! (5) `regex_priority` (routes with a regex path), (6) the longest prefix of the route.

use super::model::{Config, Format, KongPath, PathHandling, Protocol, Route, Service};
use super::regex as re;
use crate::report::{Loc, Report};

/// How an Envoy route matches the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    /// Full match (Envoy's `safe_regex` must match the whole path).
    Regex(String),
}

/// A header that must match a regex (full match), as Envoy's `safe_regex` header matcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderRegex {
    pub name: String,
    pub regex: String,
}

/// Envoy's `regex_rewrite` (RE2 substitution: `\1` is a group, `\\` a backslash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrite {
    pub pattern: String,
    pub substitution: String,
}

/// One Envoy route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvoyRoute {
    /// The Kong route's name (`xds.route_name`, the key of the filters' per-route policies).
    pub name: String,
    /// Index into [`Config::routes`].
    pub route: usize,
    pub path: PathMatch,
    pub headers: Vec<HeaderRegex>,
    pub rewrite: Option<Rewrite>,
}

/// `:path` whose path part does not end with `/` (query aside).
const PATH_NOT_ENDING_IN_SLASH: &str = r"[^?]*[^/?](\?.*)?";
/// `:path` whose path part ends with `/`.
const PATH_ENDING_IN_SLASH: &str = r"[^?]*/(\?.*)?";

/// Every Kong route's Envoy routes, in Kong's order. Paths RE2 cannot express are reported
/// and left out; a route left without paths is reported and not converted (it would match
/// every path).
pub fn envoy_routes(config: &Config, report: &mut Report) -> Vec<EnvoyRoute> {
    let mut keyed: Vec<(SortKey, (u32, usize), EnvoyRoute)> = Vec::new();
    for (index, route) in config.routes.iter().enumerate() {
        if !route.carried {
            continue;
        }
        let Some(service) = config.services.get(route.service) else {
            continue;
        };
        let headers = header_matchers(route);
        let mut paths: Vec<(usize, &Loc, Target)> = Vec::new();
        for (i, (at, path)) in route.paths.iter().enumerate() {
            match path {
                KongPath::Prefix(p) => paths.push((i, at, Target::Prefix(p.clone()))),
                KongPath::Regex(pcre) => match re::pcre_to_re2(pcre) {
                    Ok(re2) => paths.push((i, at, Target::Regex(re2))),
                    Err(why) => report.add(
                        at,
                        format!("regex path {pcre:?}"),
                        format!("{why}: Envoy's regexes are RE2; this path is not converted"),
                    ),
                },
            }
        }
        if !route.paths.is_empty() && paths.is_empty() {
            report.add(
                &route.at.labelled(&route.envoy_name),
                "route",
                "none of its paths could be converted: the route is not converted",
            );
            continue;
        }
        let route_key = traditional_key(route);
        let whole: Vec<(usize, Option<&Loc>, Target)> = if paths.is_empty() {
            vec![(0, None, Target::Prefix("/".to_owned()))]
        } else {
            paths
                .into_iter()
                .map(|(i, at, t)| (i, Some(at), t))
                .collect()
        };
        for (i, at, target) in whole {
            let key = match config.format {
                Format::V3_0 => compat_key(route, (!route.paths.is_empty()).then_some(&target)),
                Format::V1_1 | Format::V2_1 => route_key,
            };
            let variants = match rewrite_variants(route, service, &target) {
                Ok(v) => v,
                Err(why) => {
                    let at = at.unwrap_or(&route.at);
                    report.add(at, "path", format!("{why}: this path is not converted"));
                    continue;
                }
            };
            for variant in variants {
                let mut all_headers = headers.clone();
                all_headers.extend(variant.headers);
                keyed.push((
                    key,
                    (route.at.seq, i),
                    EnvoyRoute {
                        name: route.envoy_name.clone(),
                        route: index,
                        path: variant.path,
                        headers: all_headers,
                        rewrite: variant.rewrite,
                    },
                ));
            }
        }
    }
    // Highest key first; equal keys in input order (the sort is stable).
    keyed.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    keyed.into_iter().map(|(_, _, r)| r).collect()
}

/// What one Kong path matches.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Prefix(String),
    /// Translated to RE2.
    Regex(String),
}

type SortKey = [i128; 6];

/// Kong 3's `traditional_compatible` priority of one path (None: a route without paths).
fn compat_key(route: &Route, target: Option<&Target>) -> SortKey {
    let weight = [
        !route.methods.is_empty(),
        !route.hosts.is_empty(),
        !route.headers.is_empty(),
        target.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    let plain_hosts_only = !route.hosts.is_empty() && route.hosts.iter().all(|h| !h.contains('*'));
    let (regex, length) = match target {
        Some(Target::Regex(_)) => (true, 0),
        Some(Target::Prefix(p)) => (false, p.len()),
        None => (false, 0),
    };
    [
        weight as i128,
        i128::from(plain_hosts_only),
        route.headers.len().min(255) as i128,
        i128::from(regex),
        if regex {
            i128::from(route.regex_priority)
        } else {
            0
        },
        length as i128,
    ]
}

/// Kong 1.x/2.x's traditional router: category, then sub-category, per route.
fn traditional_key(route: &Route) -> SortKey {
    const HOST: i128 = 0x40;
    const HEADER: i128 = 0x20;
    const URI: i128 = 0x10;
    const METHOD: i128 = 0x08;
    const HAS_REGEX_URI: i128 = 0x01;
    const PLAIN_HOSTS_ONLY: i128 = 0x02;
    const HAS_WILDCARD_HOST_PORT: i128 = 0x04;
    let mut category = 0;
    let mut weight = 0;
    for (used, bit) in [
        (!route.hosts.is_empty(), HOST),
        (!route.headers.is_empty(), HEADER),
        (!route.paths.is_empty(), URI),
        (!route.methods.is_empty(), METHOD),
    ] {
        if used {
            category |= bit;
            weight += 1;
        }
    }
    let mut sub = 0;
    if !route.hosts.is_empty() && route.hosts.iter().all(|h| !h.contains('*')) {
        sub |= PLAIN_HOSTS_ONLY;
    }
    if route.hosts.iter().any(|h| {
        h.contains('*')
            && h.rsplit_once(':')
                .is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
    }) {
        sub |= HAS_WILDCARD_HOST_PORT;
    }
    let has_regex = route
        .paths
        .iter()
        .any(|(_, p)| matches!(p, KongPath::Regex(_)));
    if has_regex {
        sub |= HAS_REGEX_URI;
    }
    let longest = route
        .paths
        .iter()
        .filter_map(|(_, p)| match p {
            KongPath::Prefix(p) => Some(p.len()),
            KongPath::Regex(_) => None,
        })
        .max()
        .unwrap_or(0);
    [
        weight,
        category,
        sub,
        route.headers.len() as i128,
        if has_regex {
            i128::from(route.regex_priority)
        } else {
            0
        },
        longest as i128,
    ]
}

/// The matchers every Envoy route of a Kong route shares: methods, hosts, headers.
fn header_matchers(route: &Route) -> Vec<HeaderRegex> {
    let mut out = Vec::new();
    if !route.methods.is_empty() {
        let alternatives: Vec<String> = route.methods.iter().map(|m| re::escape(m)).collect();
        out.push(HeaderRegex {
            name: ":method".to_owned(),
            regex: alternatives.join("|"),
        });
    }
    if !route.hosts.is_empty() {
        let alternatives: Vec<String> = route.hosts.iter().map(|h| host_regex(h)).collect();
        out.push(HeaderRegex {
            name: ":authority".to_owned(),
            regex: format!("(?i)(?:{})", alternatives.join("|")),
        });
    }
    for (name, values) in &route.headers {
        let alternatives: Vec<String> = values
            .iter()
            .map(|v| match v.strip_prefix("~*") {
                // Kong searches the value (not anchored).
                Some(pattern) => match re::pcre_to_re2(pattern) {
                    Ok(p) => format!(".*(?:{p}).*"),
                    Err(_) => re::escape(v),
                },
                None => re::escape(v),
            })
            .collect();
        out.push(HeaderRegex {
            name: name.clone(),
            regex: format!("(?i)(?:{})", alternatives.join("|")),
        });
    }
    out
}

/// A Kong host as an `:authority` regex: `*.example.com` is any name ending in
/// `.example.com`, `example.*` any starting with `example.`; a host without a port matches
/// any port.
pub fn host_regex(host: &str) -> String {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => (n, Some(p)),
        _ => (host, None),
    };
    let body = if let Some(rest) = name.strip_prefix('*') {
        format!("[^:/]+{}", re::escape(rest))
    } else if let Some(rest) = name.strip_suffix('*') {
        format!("{}[^:/]+", re::escape(rest))
    } else {
        re::escape(name)
    };
    match port {
        Some(p) => format!("{body}:{p}"),
        None => format!("{body}(?::[0-9]+)?"),
    }
}

/// One Envoy route of a Kong path: what it matches and how it rewrites.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Variant {
    path: PathMatch,
    headers: Vec<HeaderRegex>,
    rewrite: Option<Rewrite>,
}

/// The Envoy routes for one Kong path: the general one, and before it the exact cases where
/// Kong's join of the service path differs from the general rewrite (a request that is the
/// route path itself; `/`).
fn rewrite_variants(
    route: &Route,
    service: &Service,
    target: &Target,
) -> Result<Vec<Variant>, String> {
    let base = service.path.clone().unwrap_or_else(|| "/".to_owned());
    let handling = route.path_handling;
    let strip = route.strip_path;
    let (general_match, prefix_pattern, groups) = match target {
        Target::Prefix(p) => (PathMatch::Prefix(p.clone()), re::escape(p), 0),
        Target::Regex(r) => (
            PathMatch::Regex(format!("(?:{r}).*")),
            format!("(?:{r})"),
            re::capture_groups(r),
        ),
    };
    let general = general_rewrite(handling, strip, &base, &prefix_pattern, groups)?;
    let mut variants = Vec::new();
    let literal = |path: String| Rewrite {
        pattern: "^.*$".to_owned(),
        substitution: escape_substitution(&path),
    };
    match target {
        Target::Prefix(p) => {
            // The request that is exactly the route path: postfix empty.
            let kong = kong_upstream_path(handling, strip, &base, p, p);
            if apply(general.as_ref(), p) != kong {
                variants.push(Variant {
                    path: PathMatch::Exact(p.clone()),
                    headers: Vec::new(),
                    rewrite: Some(literal(kong)),
                });
            }
        }
        Target::Regex(r) => {
            if re::full_match(r, "/") {
                let kong = kong_upstream_path(handling, strip, &base, "/", "/");
                if apply(general.as_ref(), "/") != kong {
                    variants.push(Variant {
                        path: PathMatch::Exact("/".to_owned()),
                        headers: Vec::new(),
                        rewrite: Some(literal(kong)),
                    });
                }
            }
            if strip {
                // The regex took the whole path: Kong's answer depends only on whether the
                // path ends with a slash. The general rewrite gives the same for every
                // whole-path match, computed here on a stand-in path.
                let general_empty = general
                    .as_ref()
                    .map(|g| unescape_substitution(&g.substitution, groups + 1));
                for (stand_in, header) in [
                    ("/x", PATH_NOT_ENDING_IN_SLASH),
                    ("/x/", PATH_ENDING_IN_SLASH),
                ] {
                    let kong = kong_upstream_path(handling, strip, &base, stand_in, stand_in);
                    let ours = general_empty.clone().unwrap_or_else(|| stand_in.to_owned());
                    if ours != kong {
                        variants.push(Variant {
                            path: PathMatch::Regex(format!("(?:{r})")),
                            headers: vec![HeaderRegex {
                                name: ":path".to_owned(),
                                regex: header.to_owned(),
                            }],
                            rewrite: Some(literal(kong)),
                        });
                    }
                }
            }
        }
    }
    variants.push(Variant {
        path: general_match,
        headers: Vec::new(),
        rewrite: general,
    });
    Ok(variants)
}

/// The rewrite for every request whose postfix (what follows the matched prefix) is not
/// empty; None when the path goes upstream unchanged.
fn general_rewrite(
    handling: PathHandling,
    strip: bool,
    base: &str,
    prefix_pattern: &str,
    groups: usize,
) -> Result<Option<Rewrite>, String> {
    let group = groups + 1;
    if strip && group > 9 {
        return Err(
            "a regex with more than 8 groups cannot be stripped by Envoy's rewrite".to_owned(),
        );
    }
    let trimmed = base.strip_suffix('/').unwrap_or(base);
    let rewrite = |pattern: String, substitution: String| {
        Some(Rewrite {
            pattern,
            substitution,
        })
    };
    Ok(match (strip, handling) {
        // Postfix "/x" or "x": the service path, one slash, x.
        (true, PathHandling::V0) => rewrite(
            format!("^{prefix_pattern}/?(.*)$"),
            format!("{}/\\{group}", escape_substitution(trimmed)),
        ),
        (true, PathHandling::V1) if base.ends_with('/') => rewrite(
            format!("^{prefix_pattern}/?(.*)$"),
            format!("{}/\\{group}", escape_substitution(trimmed)),
        ),
        (true, PathHandling::V1) => rewrite(
            format!("^{prefix_pattern}(.*)$"),
            format!("{}\\{group}", escape_substitution(base)),
        ),
        // Not stripped: the service path in front of the request path.
        (false, _) if base == "/" => None,
        (false, PathHandling::V0) if !base.ends_with('/') => rewrite(
            "^(.*)$".to_owned(),
            format!("{}\\1", escape_substitution(base)),
        ),
        (false, _) => rewrite(
            "^/(.*)$".to_owned(),
            format!("{}\\1", escape_substitution(base)),
        ),
    })
}

/// What Kong sends upstream for request path `request` that matched `matched` (the part of
/// the path the route's prefix or regex took), Kong's `get_upstream_uri` for v0 and the
/// v1 join, from Kong's router source.
pub fn kong_upstream_path(
    handling: PathHandling,
    strip: bool,
    base: &str,
    matched: &str,
    request: &str,
) -> String {
    let postfix = sanitize_postfix(request.get(matched.len()..).unwrap_or(""));
    let without_first = request.get(1..).unwrap_or("");
    let trimmed = base.strip_suffix('/').unwrap_or(base);
    match handling {
        PathHandling::V1 => {
            if strip {
                if base.ends_with('/') && postfix.starts_with('/') {
                    format!("{trimmed}{postfix}")
                } else {
                    format!("{base}{postfix}")
                }
            } else {
                format!("{base}{without_first}")
            }
        }
        PathHandling::V0 => {
            if base.ends_with('/') {
                if !strip {
                    format!("{base}{without_first}")
                } else if postfix.is_empty() {
                    if base == "/" {
                        "/".to_owned()
                    } else if request.ends_with('/') {
                        base.to_owned()
                    } else {
                        trimmed.to_owned()
                    }
                } else if postfix.starts_with('/') {
                    format!("{trimmed}{postfix}")
                } else {
                    format!("{base}{postfix}")
                }
            } else if !strip {
                if request == "/" {
                    base.to_owned()
                } else {
                    format!("{base}{request}")
                }
            } else if postfix.is_empty() {
                if request.len() > 1 && request.ends_with('/') {
                    format!("{base}/")
                } else {
                    base.to_owned()
                }
            } else if postfix.starts_with('/') {
                format!("{base}{postfix}")
            } else {
                format!("{base}/{postfix}")
            }
        }
    }
}

/// Kong's `sanitize_uri_postfix`.
fn sanitize_postfix(postfix: &str) -> &str {
    if postfix == "." || postfix == ".." {
        return "";
    }
    postfix
        .strip_prefix("./")
        .or_else(|| postfix.strip_prefix("../"))
        .unwrap_or(postfix)
}

fn escape_substitution(text: &str) -> String {
    text.replace('\\', "\\\\")
}

/// A substitution with group `group` empty, as a plain string.
fn unescape_substitution(substitution: &str, group: usize) -> String {
    substitution
        .replace(&format!("\\{group}"), "")
        .replace("\\\\", "\\")
}

/// What Envoy's `regex_rewrite` makes of `path` (RE2's substitution rules, through the
/// regex crate).
pub fn apply(rewrite: Option<&Rewrite>, path: &str) -> String {
    let Some(rw) = rewrite else {
        return path.to_owned();
    };
    let Ok(re) = regex::Regex::new(&rw.pattern) else {
        return path.to_owned();
    };
    // RE2's \N and \\ → the regex crate's ${N} and a plain backslash.
    let mut replacement = String::new();
    let mut chars = rw.substitution.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(d) if d.is_ascii_digit() => replacement.push_str(&format!("${{{d}}}")),
                Some(other) => replacement.push(other),
                None => {}
            }
        } else if c == '$' {
            replacement.push_str("$$");
        } else {
            replacement.push(c);
        }
    }
    re.replace_all(path, replacement.as_str()).into_owned()
}

/// The `Host` Kong sends upstream when `preserve_host` is false: the service host, with
/// its port unless it is the protocol's default.
pub fn upstream_host(service: &Service) -> String {
    let default = match service.protocol {
        Protocol::Http | Protocol::Grpc => 80,
        Protocol::Https | Protocol::Grpcs => 443,
    };
    let host = if service.host.contains(':') {
        format!("[{}]", service.host)
    } else {
        service.host.clone()
    };
    if service.port == default {
        host
    } else {
        format!("{host}:{}", service.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kong::input::parse;
    use crate::kong::model::read;

    fn config(text: &str) -> (Config, Report) {
        let (node, _) = parse(text.as_bytes()).unwrap();
        let mut report = Report::new();
        let c = read(&node, &mut report).unwrap();
        (c, report)
    }

    /// Which Envoy route a request takes (first match), and the path it sends upstream.
    fn route_for(
        routes: &[EnvoyRoute],
        method: &str,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Option<(String, String)> {
        let path_only = path.split('?').next().unwrap_or(path);
        for r in routes {
            let path_ok = match &r.path {
                PathMatch::Prefix(p) => path_only.starts_with(p.as_str()),
                PathMatch::Exact(p) => path_only == p,
                PathMatch::Regex(re) => re::full_match(re, path_only),
            };
            let headers_ok = r.headers.iter().all(|h| {
                let value = match h.name.as_str() {
                    ":method" => Some(method),
                    ":authority" => Some(authority),
                    ":path" => Some(path),
                    other => headers.iter().find(|(n, _)| *n == other).map(|(_, v)| *v),
                };
                value.is_some_and(|v| re::full_match(&h.regex, v))
            });
            if path_ok && headers_ok {
                return Some((r.name.clone(), apply(r.rewrite.as_ref(), path_only)));
            }
        }
        None
    }

    #[test]
    fn kong_join_table_v0() {
        // Kong's documented table (v0): service path, route path, strip, request → upstream.
        let rows = [
            ("/s", "/fv0", false, "/fv0req", "/s/fv0req"),
            ("/s", "/fv0", true, "/fv0req", "/s/req"),
            ("/s", "/fv0/", true, "/fv0/req", "/s/req"),
            ("/s/", "/fv0", true, "/fv0req", "/s/req"),
            ("/s/", "/fv0", false, "/fv0/req", "/s/fv0/req"),
            ("/s/", "/fv0/", true, "/fv0/", "/s/"),
            ("/s", "/fv0", true, "/fv0", "/s"),
            ("/", "/users", true, "/users/7", "/7"),
            ("/", "/users", true, "/users", "/"),
            ("/", "/users", false, "/users/7", "/users/7"),
        ];
        for (base, route, strip, request, want) in rows {
            assert_eq!(
                kong_upstream_path(PathHandling::V0, strip, base, route, request),
                want,
                "{base} {route} {strip} {request}"
            );
        }
    }

    #[test]
    fn kong_join_table_v1() {
        let rows = [
            ("/s", "/fv1", false, "/fv1req", "/sfv1req"),
            ("/s", "/fv1", true, "/fv1req", "/sreq"),
            ("/s", "/fv1", true, "/fv1/req", "/s/req"),
            ("/s/", "/fv1", true, "/fv1req", "/s/req"),
            ("/s/", "/fv1", false, "/fv1/req", "/s/fv1/req"),
        ];
        for (base, route, strip, request, want) in rows {
            assert_eq!(
                kong_upstream_path(PathHandling::V1, strip, base, route, request),
                want,
                "{base} {route} {strip} {request}"
            );
        }
    }

    /// Every combination of service path, route path, strip_path and path_handling: the
    /// Envoy routes send upstream exactly what Kong's join gives, for many request paths.
    #[test]
    fn envoy_rewrites_agree_with_kong_for_prefix_paths() {
        let bases = ["/", "/s", "/s/", "/a/b"];
        let prefixes = ["/", "/users", "/users/", "/v1/users"];
        let suffixes = ["", "/", "/7", "7", "/7/", "/a/b/c", "x/y"];
        for handling in [PathHandling::V0, PathHandling::V1] {
            for base in bases {
                for prefix in prefixes {
                    for strip in [true, false] {
                        let text = format!(
                            "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://s.internal{}\n  routes:\n  - name: r\n    paths: [\"{prefix}\"]\n    strip_path: {strip}\n    path_handling: {}\n",
                            if base == "/" { "/".to_owned() } else { base.to_owned() },
                            if handling == PathHandling::V0 { "v0" } else { "v1" },
                        );
                        let (c, _) = config(&text);
                        let mut report = Report::new();
                        let routes = envoy_routes(&c, &mut report);
                        for suffix in suffixes {
                            let request = format!("{prefix}{suffix}");
                            if request.contains("//") {
                                continue; // Envoy merges slashes before routing.
                            }
                            let want = kong_upstream_path(handling, strip, base, prefix, &request);
                            let got = route_for(&routes, "GET", "gw", &request, &[]);
                            assert_eq!(
                                got,
                                Some(("r".to_owned(), want.clone())),
                                "{handling:?} base={base} prefix={prefix} strip={strip} request={request}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn envoy_rewrites_agree_with_kong_for_regex_paths() {
        let bases = ["/", "/s", "/s/"];
        let requests = [
            "/orders/12",
            "/orders/12/",
            "/orders/12/items",
            "/orders/12x",
        ];
        for base in bases {
            for strip in [true, false] {
                let text = format!(
                    "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://s.internal{base}\n  routes:\n  - name: r\n    paths: [\"~/orders/(\\\\d+)\"]\n    strip_path: {strip}\n"
                );
                let (c, _) = config(&text);
                let routes = envoy_routes(&c, &mut Report::new());
                for request in requests {
                    // What Kong's regex took: /orders/ and its digits.
                    let digits = request["/orders/".len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_digit())
                        .count();
                    let matched = &request[..("/orders/".len() + digits)];
                    let want = kong_upstream_path(PathHandling::V0, strip, base, matched, request);
                    let got = route_for(&routes, "GET", "gw", request, &[]);
                    assert_eq!(
                        got,
                        Some(("r".to_owned(), want)),
                        "base={base} strip={strip} {request}"
                    );
                }
            }
        }
    }

    #[test]
    fn order_follows_kong_3_priorities() {
        let (c, _) = config(
            r#"
_format_version: "3.0"
services:
- name: s
  url: http://s.internal
  routes:
  - {name: short, paths: [/api]}
  - {name: long, paths: [/api/v1]}
  - {name: regex-low, paths: ["~/api/v1/\\d+$"], regex_priority: 1}
  - {name: regex-high, paths: ["~/api/v1/7$"], regex_priority: 5}
  - {name: with-method, paths: [/api], methods: [POST]}
  - {name: with-host, paths: [/api], hosts: [api.example.com]}
  - {name: wildcard-host, paths: [/api], hosts: ["*.example.com"]}
  - {name: with-header, paths: [/api], headers: {x-version: [v2]}}
"#,
        );
        let routes = envoy_routes(&c, &mut Report::new());
        let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "with-host",
                "with-header",
                "with-method",
                "wildcard-host",
                "regex-high",
                "regex-low",
                "long",
                "short"
            ]
        );
        let take = |method: &str, authority: &str, path: &str, h: &[(&str, &str)]| {
            route_for(&routes, method, authority, path, h).map(|(n, _)| n)
        };
        assert_eq!(
            take("GET", "gw", "/api/v1/7", &[]).as_deref(),
            Some("regex-high")
        );
        assert_eq!(
            take("GET", "gw", "/api/v1/8", &[]).as_deref(),
            Some("regex-low")
        );
        assert_eq!(take("GET", "gw", "/api/v1/x", &[]).as_deref(), Some("long"));
        assert_eq!(take("GET", "gw", "/apix", &[]).as_deref(), Some("short"));
        assert_eq!(
            take("POST", "gw", "/api", &[]).as_deref(),
            Some("with-method")
        );
        assert_eq!(
            take("GET", "API.example.com:8000", "/api", &[]).as_deref(),
            Some("with-host")
        );
        assert_eq!(
            take("GET", "x.y.example.com", "/api", &[]).as_deref(),
            Some("wildcard-host")
        );
        assert_eq!(
            take("GET", "gw", "/api", &[("x-version", "V2")]).as_deref(),
            Some("with-header")
        );
        assert_eq!(take("GET", "gw", "/other", &[]), None);
    }

    #[test]
    fn order_follows_kong_2_categories() {
        // 2.x: per route; a regex path outranks a longer prefix in the same category, and
        // regex_priority orders regexes.
        let (c, _) = config(
            r#"
_format_version: "2.1"
services:
- name: s
  url: http://s.internal
  routes:
  - {name: prefix-long, paths: [/users/list/all]}
  - {name: regex, paths: ['/users/\d+'], regex_priority: 0}
  - {name: regex-first, paths: ['/users/1\d*'], regex_priority: 3}
  - {name: method-only, methods: [DELETE]}
  - {name: host-and-path, hosts: [a.example.com], paths: [/users]}
"#,
        );
        let routes = envoy_routes(&c, &mut Report::new());
        let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "host-and-path",
                "regex-first",
                "regex",
                "prefix-long",
                "method-only"
            ]
        );
    }

    #[test]
    fn several_paths_each_take_their_own_place_in_kong_3() {
        let (c, _) = config(
            r#"
_format_version: "3.0"
services:
- name: s
  url: http://s.internal
  routes:
  - {name: both, paths: [/a, /a/b/c/d]}
  - {name: middle, paths: [/a/b]}
"#,
        );
        let routes = envoy_routes(&c, &mut Report::new());
        let order: Vec<(String, PathMatch)> = routes
            .iter()
            .map(|r| (r.name.clone(), r.path.clone()))
            .collect();
        assert_eq!(
            order,
            [
                ("both".to_owned(), PathMatch::Prefix("/a/b/c/d".to_owned())),
                ("middle".to_owned(), PathMatch::Prefix("/a/b".to_owned())),
                ("both".to_owned(), PathMatch::Prefix("/a".to_owned())),
            ]
        );
    }

    #[test]
    fn unconvertible_regexes_are_reported_and_routes_without_paths_dropped() {
        let (c, _) = config(
            r#"
_format_version: "3.0"
services:
- name: s
  url: http://s.internal
  routes:
  - {name: lookahead, paths: ["~/a(?=b)"]}
  - {name: mixed, paths: ["~/x(?!y)", /ok]}
"#,
        );
        let mut report = Report::new();
        let routes = envoy_routes(&c, &mut report);
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].name, "mixed");
        assert_eq!(
            report.render(),
            "services[0].routes[0] (lookahead): route — none of its paths could be converted: the route is not converted\n\
             services[0].routes[0].paths[0]: regex path \"/a(?=b)\" — lookahead (?=…) / (?!…): Envoy's regexes are RE2; this path is not converted\n\
             services[0].routes[1].paths[0]: regex path \"/x(?!y)\" — lookahead (?=…) / (?!…): Envoy's regexes are RE2; this path is not converted\n"
        );
    }

    #[test]
    fn upstream_host_keeps_non_default_ports() {
        let (c, _) = config(
            "_format_version: \"3.0\"\nservices:\n- {name: a, url: 'http://a.internal:3001'}\n- {name: b, url: 'https://b.internal'}\n- {name: c, protocol: https, host: c.internal, port: 80}\n",
        );
        let hosts: Vec<String> = c.services.iter().map(upstream_host).collect();
        assert_eq!(hosts, ["a.internal:3001", "b.internal", "c.internal:80"]);
    }

    #[test]
    fn host_patterns() {
        assert!(re::full_match(
            &host_regex("*.example.com"),
            "a.b.example.com"
        ));
        assert!(!re::full_match(&host_regex("*.example.com"), "example.com"));
        assert!(re::full_match(&host_regex("example.*"), "example.org:8080"));
        assert!(re::full_match(
            &host_regex("api.example.com:8443"),
            "api.example.com:8443"
        ));
        assert!(!re::full_match(
            &host_regex("api.example.com:8443"),
            "api.example.com"
        ));
    }
}
