//! Reading a route: its matching fields, Kong's defaults for the format version, and what
//! is not converted.

use super::super::fields::{self, Fields};
use super::super::input::{Node, Value};
use super::*;
use portcullis_core::identity;

impl<'a> Reader<'a, '_> {
    pub(super) fn route(
        &mut self,
        at: &Loc,
        mut f: Fields<'a>,
        service: usize,
        position: usize,
        plugins: &mut Vec<(Loc, &'a Node, usize)>,
    ) -> Result<Option<Route>, InputError> {
        let name = self.name(&mut f)?;
        let id = f.string("id")?;
        let service_cluster = self
            .config
            .services
            .get(service)
            .map_or_else(String::new, |s| s.cluster.clone());
        let service_carried = self.config.services.get(service).is_some_and(|s| s.carried);
        let envoy_name = name
            .clone()
            .unwrap_or_else(|| format!("{service_cluster}-{position}"));
        let label = envoy_name.clone();

        let protocols = f.strings("protocols")?;
        let mut paths = Vec::new();
        let paths_at = f.loc("paths");
        if let Some(list) = f.strings("paths")? {
            let seqs: Vec<u32> = match f.get("paths") {
                Some(Node {
                    value: Value::Seq(items),
                    ..
                }) => items.iter().map(|n| n.seq).collect(),
                _ => Vec::new(),
            };
            for (i, p) in list.into_iter().enumerate() {
                let p_at = paths_at.index(i, seqs.get(i).copied().unwrap_or(paths_at.seq));
                paths.push((p_at.clone(), self.kong_path(&p_at, p)?));
            }
        }
        let methods = f.strings("methods")?.unwrap_or_default();
        for (i, m) in methods.iter().enumerate() {
            if m.is_empty() || !m.chars().all(|c| c.is_ascii_uppercase()) {
                return Err(InputError::at(
                    &f.loc("methods").index(i, f.loc("methods").seq),
                    format!("{m:?}: a method is upper-case letters only"),
                ));
            }
        }
        let hosts = f.strings("hosts")?.unwrap_or_default();
        for (i, h) in hosts.iter().enumerate() {
            let stars = h.matches('*').count();
            let ok = !h.is_empty()
                && (stars == 0 || (stars == 1 && (h.starts_with("*.") || h.ends_with(".*"))))
                && !h.chars().any(|c| c.is_whitespace() || c == '/');
            if !ok {
                return Err(InputError::at(
                    &f.loc("hosts").index(i, f.loc("hosts").seq),
                    format!("{h:?}: not a host (one wildcard at most, `*.` first or `.*` last)"),
                ));
            }
        }
        let headers_at = f.loc("headers");
        let mut headers = Vec::new();
        if let Some(node) = f.get("headers") {
            let mut hf = Fields::of(node, &headers_at)?;
            let keys: Vec<String> = match &node.value {
                Value::Map(entries) => entries.iter().map(|(k, _)| k.clone()).collect(),
                _ => Vec::new(),
            };
            for key in keys {
                let values = hf.strings(&key)?.unwrap_or_default();
                let lower = key.to_ascii_lowercase();
                if lower == "host" {
                    return Err(InputError::at(
                        &hf.loc(&key),
                        "use `hosts` to match the Host header",
                    ));
                }
                if values.is_empty() {
                    return Err(InputError::at(&hf.loc(&key), "no values"));
                }
                headers.push((lower, values));
            }
        }
        let regex_priority_at = f.loc("regex_priority");
        let regex_priority = match f.int("regex_priority")? {
            None => 0,
            Some(p) => i64::try_from(p)
                .map_err(|_| InputError::at(&regex_priority_at, format!("out of range: {p}")))?,
        };
        let strip_path = f.bool("strip_path")?.unwrap_or(true);
        let preserve_host = f.bool("preserve_host")?.unwrap_or(false);
        let handling_at = f.loc("path_handling");
        let path_handling = match f.string("path_handling")?.as_deref() {
            None => {
                if self.format == Format::V1_1 {
                    PathHandling::V1
                } else {
                    PathHandling::V0
                }
            }
            Some("v0") => PathHandling::V0,
            Some("v1") => PathHandling::V1,
            Some(other) => {
                return Err(InputError::at(
                    &handling_at,
                    format!("{other:?}: \"v0\" or \"v1\""),
                ))
            }
        };
        if paths.is_empty() && methods.is_empty() && hosts.is_empty() && headers.is_empty() {
            let has_stream_match = ["snis", "sources", "destinations", "expression"]
                .iter()
                .any(|k| f.has(k));
            if !has_stream_match {
                return Err(InputError::at(
                    at,
                    "a route needs at least one of paths, methods, hosts, headers",
                ));
            }
        }

        let mut carried = service_carried;
        if !service_carried {
            self.report.add(
                &at.labelled(&label),
                "route",
                "its service is not converted",
            );
        }
        let protocols_at = f.loc("protocols");
        if let Some(list) = &protocols {
            let http: Vec<&String> = list
                .iter()
                .filter(|p| matches!(p.as_str(), "http" | "https" | "grpc" | "grpcs"))
                .collect();
            if http.is_empty() {
                if carried {
                    self.report.add(
                        &at.labelled(&label),
                        format!("route with protocols {}", list.join(", ")),
                        "stream and WebSocket routes are not converted (the listener is HTTP)",
                    );
                }
                carried = false;
            } else if carried && !list.iter().any(|p| p == "http" || p == "grpc") {
                self.report.add(
                    &protocols_at,
                    format!("protocols {}", list.join(", ")),
                    "Kong answers plain-HTTP requests on this route with 426 (https_redirect_status_code); the converted listener is plain HTTP and serves it: terminate TLS in front of Envoy, or give the listener a TLS transport_socket",
                );
            }
        }
        for key in ["snis", "sources", "destinations"] {
            if let Some(node) = f.get(key) {
                if !fields::is_empty(node) && carried {
                    self.report.add(
                        &f.loc(key),
                        format!("field {key} ({})", fields::show(node)),
                        "not converted: the Envoy route matches on paths, methods, hosts and headers only (so it matches more requests than Kong's)",
                    );
                }
            }
        }
        if let Some((name, _)) = headers
            .iter()
            .find(|(name, _)| identity::headers::ALL.contains(&name.as_str()))
        {
            if carried {
                self.report.add(
                    &headers_at,
                    format!("headers {name}"),
                    "the Portcullis filters remove and set this header on every request, and \
                     Envoy matches the route again after they do: a request could be judged on \
                     one route and sent down another (docs/architecture.md, routes and the \
                     identity headers); the route is not converted",
                );
            }
            carried = false;
        }
        if let Some(node) = f.get("expression") {
            if carried {
                self.report.add(
                    &f.loc("expression"),
                    format!("field expression ({})", fields::show(node)),
                    "expressions-router routes are not converted",
                );
            }
            carried = false;
        }
        if let Some(node) = f.get("priority") {
            if carried {
                self.report.add(
                    &f.loc("priority"),
                    format!("field priority ({})", fields::show(node)),
                    "the expressions router's priority is not converted: routes are ordered by Kong's traditional rule",
                );
            }
        }
        for (key, default) in [("request_buffering", true), ("response_buffering", true)] {
            if let Some(v) = f.bool(key)? {
                if v != default && carried {
                    self.report.add(
                        &f.loc(key),
                        format!("field {key} (false)"),
                        "Envoy streams bodies whatever this says; nothing to convert, noted because Kong would stream only this route",
                    );
                }
            }
        }
        let _ = f.get("https_redirect_status_code");
        for (p_at, node) in f.list("plugins")? {
            plugins.push((p_at, node, self.config.routes.len()));
        }
        self.rest(f, "route");
        Ok(Some(Route {
            at: at.clone(),
            name,
            id,
            envoy_name,
            service,
            paths,
            methods,
            hosts,
            headers,
            regex_priority,
            strip_path,
            preserve_host,
            path_handling,
            carried,
        }))
    }

    pub(super) fn kong_path(&mut self, at: &Loc, path: String) -> Result<KongPath, InputError> {
        if self.format == Format::V3_0 {
            if let Some(regex) = path.strip_prefix('~') {
                return Ok(KongPath::Regex(regex.to_owned()));
            }
            if !path.starts_with('/') {
                return Err(InputError::at(
                    at,
                    format!("{path:?}: a path starts with / (or ~ for a regex)"),
                ));
            }
            return Ok(KongPath::Prefix(path));
        }
        if !path.starts_with('/') {
            return Err(InputError::at(
                at,
                format!("{path:?}: a path starts with /"),
            ));
        }
        if looks_like_regex(&path) {
            Ok(KongPath::Regex(path))
        } else {
            Ok(KongPath::Prefix(path))
        }
    }
}
