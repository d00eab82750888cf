//! Reading a service: `url` or its parts, timeouts, retries, and what is not converted.

use super::super::fields::{self, Fields};
use super::super::input::Node;
use super::*;

impl<'a> Reader<'a, '_> {
    pub(super) fn service(&mut self, at: &Loc, node: &'a Node) -> Result<(), InputError> {
        let mut f = Fields::of(node, at)?;
        let name = self.name(&mut f)?;
        let id = f.string("id")?;
        let mut protocol_name = f.string("protocol")?.unwrap_or_else(|| "http".to_owned());
        let mut host = f.string("host")?;
        let mut port = f.int("port")?;
        let mut path = f.string("path")?;
        let port_at = f.loc("port");
        if let Some(url) = f.string("url")? {
            let url_at = f.loc("url");
            let parsed = url::Url::parse(&url)
                .map_err(|e| InputError::at(&url_at, format!("not a URL ({e}): {url:?}")))?;
            protocol_name = parsed.scheme().to_owned();
            host = Some(
                parsed
                    .host_str()
                    .ok_or_else(|| InputError::at(&url_at, format!("no host in {url:?}")))?
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
            );
            port = parsed.port().map(i128::from);
            let url_path = parsed.path();
            path = if url_path.is_empty() || (url_path == "/" && !url.ends_with('/')) {
                None
            } else {
                Some(url_path.to_owned())
            };
            if parsed.query().is_some() || parsed.fragment().is_some() {
                return Err(InputError::at(
                    &url_at,
                    "a service URL carries no query or fragment",
                ));
            }
        }
        let protocol_at = f.loc("protocol");
        let protocol = match protocol_name.as_str() {
            "http" => Some(Protocol::Http),
            "https" => Some(Protocol::Https),
            "grpc" => Some(Protocol::Grpc),
            "grpcs" => Some(Protocol::Grpcs),
            "tcp" | "tls" | "udp" | "tls_passthrough" | "ws" | "wss" => None,
            other => {
                return Err(InputError::at(
                    &protocol_at,
                    format!("unknown protocol {other:?}"),
                ))
            }
        };
        let host = host.ok_or_else(|| InputError::at(at, "no `host` and no `url`"))?;
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(InputError::at(
                &f.loc("host"),
                format!("not a host: {host:?}"),
            ));
        }
        let port = match port {
            None => protocol.map_or(80, |p| {
                // Kong's schema default is 80 whatever the protocol; the url shorthand
                // defaults by scheme.
                if f.has("url") {
                    p.default_port()
                } else {
                    80
                }
            }),
            Some(p) => u16::try_from(p)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| InputError::at(&port_at, format!("not a port: {p}")))?,
        };
        if let Some(p) = &path {
            if !p.starts_with('/') {
                return Err(InputError::at(
                    &f.loc("path"),
                    format!("must start with /: {p:?}"),
                ));
            }
        }
        let connect_timeout = self.millis(&mut f, "connect_timeout")?;
        let read_timeout = self.millis(&mut f, "read_timeout")?;
        let write_timeout = self.millis(&mut f, "write_timeout")?;
        if read_timeout != write_timeout {
            let (key, ms) = if read_timeout < write_timeout {
                ("read_timeout", read_timeout)
            } else {
                ("write_timeout", write_timeout)
            };
            self.report.add(
                &f.loc(key),
                format!("field {key} ({ms})"),
                format!(
                    "Envoy bounds a stream's idle time with one timeout: the larger, {} ms, is used for reads and writes",
                    read_timeout.max(write_timeout)
                ),
            );
        }
        let retries_at = f.loc("retries");
        let retries = match f.int("retries")? {
            None => 5,
            Some(r) => u64::try_from(r)
                .ok()
                .filter(|r| *r <= 32767)
                .ok_or_else(|| InputError::at(&retries_at, format!("not 0..=32767: {r}")))?,
        };
        let enabled = f.bool("enabled")?.unwrap_or(true);
        let index = self.config.services.len();
        let cluster = name.clone().unwrap_or_else(|| format!("service-{index}"));
        let label = name.clone().unwrap_or_else(|| cluster.clone());
        let mut carried = true;
        if !enabled {
            carried = false;
            self.report.add(
                &at.labelled(&label),
                "disabled service",
                "`enabled: false`: Kong serves none of its routes; neither its cluster nor its routes are written",
            );
        } else if protocol.is_none() {
            carried = false;
            self.report.add(
                &at.labelled(&label),
                format!("service with protocol {protocol_name}"),
                "stream and WebSocket services are not converted (the listener is HTTP); neither its cluster nor its routes are written",
            );
        }

        if carried && self.upstreams.contains(&host) {
            self.report.add(
                &f.loc(if f.has("url") { "url" } else { "host" }),
                format!("host {host:?}, an upstream"),
                "upstreams are not converted: the cluster resolves this name by DNS instead of balancing over the upstream's targets; list them as the cluster's endpoints",
            );
        }
        // Known fields that are not carried when set.
        if let Some(node) = f.get("client_certificate") {
            self.report.add(
                &f.loc("client_certificate"),
                format!("field client_certificate ({})", fields::show(node)),
                "certificates are not converted: give the cluster a transport_socket with the client certificate (Envoy's tls_certificates)",
            );
        }
        if f.bool("tls_verify")? == Some(true) {
            self.report.add(
                &f.loc("tls_verify"),
                "field tls_verify (true)",
                "upstream certificates are not verified (Kong's default): add a validation_context with the trusted CA to the cluster's transport_socket",
            );
        }
        for key in ["tls_verify_depth", "ca_certificates"] {
            if let Some(node) = f.get(key) {
                if !fields::is_empty(node) {
                    self.report.add(
                        &f.loc(key),
                        format!("field {key} ({})", fields::show(node)),
                        "upstream certificate verification is not converted (see tls_verify)",
                    );
                }
            }
        }
        let routes = f.list("routes")?;
        let plugins = f.list("plugins")?;
        self.rest(f, "service");

        self.config.services.push(Service {
            at: at.clone(),
            name,
            id,
            cluster,
            protocol: protocol.unwrap_or(Protocol::Http),
            host,
            port,
            path,
            connect_timeout,
            read_timeout,
            write_timeout,
            retries,
            carried,
        });
        for (at, node) in routes {
            self.pending_routes.push((at, node, Some(index)));
        }
        for (at, node) in plugins {
            self.pending_plugins.push((
                at,
                node,
                Scope {
                    service: Some(index),
                    ..Scope::default()
                },
            ));
        }
        Ok(())
    }
}
