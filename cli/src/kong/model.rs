//! Kong's declarative configuration, normalised: nested routes, plugins, credentials and
//! groups flattened into one list each, every reference (by name or id) resolved to an index,
//! Kong's defaults filled in for the file's `_format_version`. Malformed input (wrong types,
//! duplicate names, dangling references, values Kong's schema refuses) is an [`InputError`]
//! naming the place; what is well-formed but not carried over goes to the [`Report`].

use std::collections::HashMap;

use super::fields::{self, Fields, METADATA};
use super::input::{Node, Value};
use crate::report::{Loc, Report};
use crate::InputError;

/// `_format_version`: which Kong wrote the file, and so which defaults apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    /// Kong 1.x (and 2.0): the traditional router, `path_handling` v1, rate-limiting
    /// `policy: cluster` by default.
    V1_1,
    /// Kong 2.1 to 2.8: the traditional router, `path_handling` v0 by default.
    V2_1,
    /// Kong 3.x: the `traditional_compatible` router, `~` regex paths, `policy: local`.
    V3_0,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "1.1" => Some(Format::V1_1),
            "2.1" => Some(Format::V2_1),
            "3.0" => Some(Format::V3_0),
            _ => None,
        }
    }
}

/// Kong's `path_handling`: how the service path, the route path and the request path join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathHandling {
    V0,
    V1,
}

/// A service's protocol (the HTTP ones; others are reported).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
    Grpc,
    Grpcs,
}

impl Protocol {
    pub fn tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Grpcs)
    }
    pub fn http2(self) -> bool {
        matches!(self, Protocol::Grpc | Protocol::Grpcs)
    }
    fn default_port(self) -> u16 {
        if self.tls() {
            443
        } else {
            80
        }
    }
}

#[derive(Clone, Debug)]
pub struct Service {
    pub at: Loc,
    pub name: Option<String>,
    pub id: Option<String>,
    /// The Envoy cluster: the name, or `service-<index>` for an unnamed one.
    pub cluster: String,
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    /// Kong's `path` (None: `/`).
    pub path: Option<String>,
    pub connect_timeout: u64,
    pub read_timeout: u64,
    pub write_timeout: u64,
    pub retries: u64,
    /// Converted: false for a disabled service or one whose protocol is not HTTP.
    pub carried: bool,
}

/// One of a route's `paths`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KongPath {
    /// A plain prefix (Kong compares bytes: `/users` matches `/usersX`).
    Prefix(String),
    /// A PCRE regex, without its `~`, anchored at the start of the path by Kong.
    Regex(String),
}

#[derive(Clone, Debug)]
pub struct Route {
    pub at: Loc,
    pub name: Option<String>,
    pub id: Option<String>,
    /// The Envoy route name: the Kong name, or `<service>-<index>` (its index among the
    /// service's routes, in input order).
    pub envoy_name: String,
    pub service: usize,
    pub paths: Vec<(Loc, KongPath)>,
    pub methods: Vec<String>,
    pub hosts: Vec<String>,
    /// Header name (lower case) → values, in input order.
    pub headers: Vec<(String, Vec<String>)>,
    pub regex_priority: i64,
    pub strip_path: bool,
    pub preserve_host: bool,
    pub path_handling: PathHandling,
    /// Converted: false when its service is not, or its protocols are not HTTP (reported).
    pub carried: bool,
}

#[derive(Clone, Debug)]
pub struct Consumer {
    pub at: Loc,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    pub id: Option<String>,
}

impl Consumer {
    /// How the report names it: `consumers[0] (mobile-app)`.
    pub fn label(&self) -> String {
        self.username
            .clone()
            .or_else(|| self.custom_id.clone())
            .unwrap_or_else(|| "unnamed".to_owned())
    }
}

#[derive(Clone, Debug)]
pub struct JwtSecret {
    pub at: Loc,
    pub consumer: usize,
    pub key: Option<String>,
    pub algorithm: String,
    pub algorithm_at: Loc,
    pub secret: Option<String>,
    pub secret_at: Loc,
    pub rsa_public_key: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Acl {
    pub at: Loc,
    pub consumer: usize,
    pub group: String,
}

/// A plugin instance and its scope.
#[derive(Clone, Debug)]
pub struct Plugin {
    /// `services[1].plugins[0] (cors)`.
    pub at: Loc,
    /// The place of the instance without the label, for its fields (`…plugins[0].config`).
    pub base: Loc,
    pub name: String,
    pub enabled: bool,
    pub config: Option<Node>,
    pub protocols: Option<Vec<String>>,
    pub service: Option<usize>,
    pub route: Option<usize>,
    pub consumer: Option<usize>,
    /// Scoped to a consumer group (Kong 3.4+): reported, never applied.
    pub consumer_group: bool,
}

impl Plugin {
    pub fn config_loc(&self) -> Loc {
        self.base.field(
            "config",
            self.config.as_ref().map_or(self.base.seq, |n| n.seq),
        )
    }
}

/// The whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub format: Format,
    pub services: Vec<Service>,
    pub routes: Vec<Route>,
    pub consumers: Vec<Consumer>,
    pub jwt_secrets: Vec<JwtSecret>,
    pub acls: Vec<Acl>,
    pub plugins: Vec<Plugin>,
}

/// Kong's limit on names (`typedefs.utf8_name` is looser in 3.x; these are the characters
/// every version accepts, and the ones Envoy route and cluster names carry safely).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~'))
}

/// Kong 2.x's rule for a regex path, which decK's 3.0 migration applies too: any character
/// outside `[a-zA-Z0-9.\-_~/%]`.
pub fn looks_like_regex(path: &str) -> bool {
    !path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~' | '/' | '%'))
}

/// Top-level keys read by [`read`].
const TOP_LEVEL: [&str; 7] = [
    "_format_version",
    "services",
    "routes",
    "consumers",
    "plugins",
    "jwt_secrets",
    "acls",
];

/// Top-level keys that describe the file, not the gateway.
const TOP_LEVEL_METADATA: [&str; 5] = ["_transform", "_info", "_comment", "_konnect", "_ignore"];

/// Reads the whole file.
pub fn read(root: &Node, report: &mut Report) -> Result<Config, InputError> {
    let mut top = Fields::of(root, &Loc::root())?;
    let format_at = top.loc("_format_version");
    let format = match top.get("_format_version") {
        None => {
            return Err(InputError::at(
                &format_at,
                "missing: Kong needs \"1.1\", \"2.1\" or \"3.0\"",
            ))
        }
        Some(Node {
            value: Value::Str(s),
            ..
        }) => Format::parse(s).ok_or_else(|| {
            InputError::at(
                &format_at,
                format!("unknown version {s:?}: \"1.1\", \"2.1\" or \"3.0\""),
            )
        })?,
        Some(other) => {
            return Err(InputError::at(
                &format_at,
                format!(
                    "expected a string (\"1.1\", \"2.1\" or \"3.0\"), found {}",
                    other.value.kind()
                ),
            ))
        }
    };

    let mut reader = Reader {
        format,
        report,
        config: Config {
            format,
            services: Vec::new(),
            routes: Vec::new(),
            consumers: Vec::new(),
            jwt_secrets: Vec::new(),
            acls: Vec::new(),
            plugins: Vec::new(),
        },
        pending_routes: Vec::new(),
        pending_plugins: Vec::new(),
        pending_secrets: Vec::new(),
        pending_acls: Vec::new(),
    };

    for (at, node) in top.list("services")? {
        reader.service(&at, node)?;
    }
    for (at, node) in top.list("routes")? {
        reader.pending_routes.push((at, node, None));
    }
    for (at, node) in top.list("consumers")? {
        reader.consumer(&at, node)?;
    }
    for (at, node) in top.list("plugins")? {
        reader.pending_plugins.push((at, node, Scope::default()));
    }
    for (at, node) in top.list("jwt_secrets")? {
        reader.pending_secrets.push((at, node, None));
    }
    for (at, node) in top.list("acls")? {
        reader.pending_acls.push((at, node, None));
    }
    for (at, key, node) in top.rest() {
        if TOP_LEVEL.contains(&key) || TOP_LEVEL_METADATA.contains(&key) {
            continue;
        }
        reader.top_level_other(&at, key, node);
    }
    reader.resolve()?;
    Ok(reader.config)
}

#[derive(Clone, Copy, Default)]
struct Scope {
    service: Option<usize>,
    route: Option<usize>,
    consumer: Option<usize>,
}

type Pending<'a, T> = Vec<(Loc, &'a Node, T)>;

struct Reader<'a, 'r> {
    format: Format,
    report: &'r mut Report,
    config: Config,
    /// Routes, plugins, credentials and groups are read once every service and consumer
    /// is known, so references may point forward.
    pending_routes: Pending<'a, Option<usize>>,
    pending_plugins: Pending<'a, Scope>,
    pending_secrets: Pending<'a, Option<usize>>,
    pending_acls: Pending<'a, Option<usize>>,
}

impl<'a> Reader<'a, '_> {
    fn service(&mut self, at: &Loc, node: &'a Node) -> Result<(), InputError> {
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

    fn millis(&mut self, f: &mut Fields, key: &str) -> Result<u64, InputError> {
        let at = f.loc(key);
        match f.int(key)? {
            None => Ok(60_000),
            Some(ms) => u64::try_from(ms)
                .ok()
                .filter(|ms| (1..=2_147_483_646).contains(ms))
                .ok_or_else(|| InputError::at(&at, format!("not 1..=2147483646 ms: {ms}"))),
        }
    }

    fn name(&mut self, f: &mut Fields) -> Result<Option<String>, InputError> {
        let name = f.string("name")?;
        if let Some(n) = &name {
            if !valid_name(n) {
                return Err(InputError::at(
                    &f.loc("name"),
                    format!("{n:?}: a name holds only letters, digits, '.', '-', '_' and '~'"),
                ));
            }
        }
        Ok(name)
    }

    fn consumer(&mut self, at: &Loc, node: &'a Node) -> Result<(), InputError> {
        let mut f = Fields::of(node, at)?;
        let username = f.string("username")?;
        let custom_id = f.string("custom_id")?;
        let id = f.string("id")?;
        if username.is_none() && custom_id.is_none() {
            return Err(InputError::at(
                at,
                "a consumer needs a username or a custom_id",
            ));
        }
        let index = self.config.consumers.len();
        for (at, node) in f.list("jwt_secrets")? {
            self.pending_secrets.push((at, node, Some(index)));
        }
        for (at, node) in f.list("acls")? {
            self.pending_acls.push((at, node, Some(index)));
        }
        for (at, node) in f.list("plugins")? {
            self.pending_plugins.push((
                at,
                node,
                Scope {
                    consumer: Some(index),
                    ..Scope::default()
                },
            ));
        }
        let consumer = Consumer {
            at: at.clone(),
            username,
            custom_id,
            id,
        };
        let label = consumer.label();
        for (at, key, node) in f.rest() {
            if METADATA.contains(&key) {
                continue;
            }
            let what = format!("field {key} ({})", fields::show(node));
            match key {
                "keyauth_credentials" | "basicauth_credentials" | "hmacauth_credentials"
                | "oauth2_credentials" | "mtls_auth_credentials" => self.report.add(
                    &at,
                    what,
                    format!("{key} of consumer {label}: only JWT credentials (jwt_secrets) are converted"),
                ),
                "groups" => self.report.add(
                    &at,
                    what,
                    "consumer groups are not converted (Portcullis has ACL groups only)",
                ),
                _ => self
                    .report
                    .add(&at, format!("unknown field {key}"), "not a consumer field: ignored"),
            }
        }
        self.config.consumers.push(consumer);
        Ok(())
    }

    fn top_level_other(&mut self, at: &Loc, key: &str, node: &Node) {
        let why = match key {
            "upstreams" | "targets" => "load-balancing upstreams are not converted: a service whose host names an upstream gets a DNS cluster for that name; list the targets as the cluster's endpoints (lb_policy for the algorithm, health_checks for the checks)",
            "certificates" | "snis" | "ca_certificates" => "TLS termination is not converted (the listener is plain HTTP): add a TLS transport_socket with these certificates to the listener's filter chain",
            "consumer_groups" => "consumer groups are not converted (Portcullis has ACL groups only)",
            "vaults" => "vaults are not converted: secrets must be in the file",
            "keyauth_credentials" | "basicauth_credentials" | "hmacauth_credentials"
            | "oauth2_credentials" | "mtls_auth_credentials" => {
                "only JWT credentials (jwt_secrets) are converted"
            }
            _ => "",
        };
        match &node.value {
            Value::Seq(items) if !why.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    let label = match &item.value {
                        Value::Map(entries) => entries
                            .iter()
                            .find(|(k, _)| k == "name" || k == "username" || k == "target")
                            .and_then(|(_, n)| match &n.value {
                                Value::Str(s) => Some(s.clone()),
                                _ => None,
                            }),
                        _ => None,
                    };
                    let item_at = at.index(i, item.seq);
                    let item_at = match label {
                        Some(l) => item_at.labelled(&l),
                        None => item_at,
                    };
                    self.report.add(&item_at, key.trim_end_matches('s'), why);
                }
            }
            _ if !why.is_empty() => self.report.add(at, key, why),
            _ => self.report.add(
                at,
                format!("unknown top-level key {key}"),
                "not part of Kong's declarative format: ignored",
            ),
        }
    }

    /// Reports the fields nobody read (metadata aside).
    fn rest(&mut self, f: Fields, entity: &str) {
        for (at, key, _) in f.rest() {
            if METADATA.contains(&key) {
                continue;
            }
            self.report.add(
                &at,
                format!("unknown field {key}"),
                format!("not a {entity} field: ignored"),
            );
        }
    }

    /// Reads what refers to services and consumers, now that all of them are known.
    fn resolve(&mut self) -> Result<(), InputError> {
        self.check_unique()?;
        let services_by = names(
            self.config
                .services
                .iter()
                .map(|s| (s.name.as_deref(), s.id.as_deref())),
        );
        let consumers_by = names(
            self.config
                .consumers
                .iter()
                .map(|c| (c.username.as_deref(), c.id.as_deref())),
        );
        let custom_ids: HashMap<String, usize> = self
            .config
            .consumers
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.custom_id.clone().map(|id| (id, i)))
            .collect();

        let pending = std::mem::take(&mut self.pending_routes);
        let mut route_plugins = Vec::new();
        let mut per_service: HashMap<usize, usize> = HashMap::new();
        for (at, node, parent) in pending {
            let mut f = Fields::of(node, &at)?;
            let service = match parent {
                Some(s) => {
                    if f.has("service") {
                        let _ = f.get("service");
                    }
                    Some(s)
                }
                None => match f.get("service") {
                    None => None,
                    Some(r) => Some(reference(r, &f.loc("service"), "service", &services_by)?),
                },
            };
            let Some(service) = service else {
                let label = f.string("name")?.unwrap_or_else(|| "unnamed".to_owned());
                self.report.add(
                    &at.labelled(&label),
                    "route without a service",
                    "Kong answers it with an error (no upstream): not converted",
                );
                for (p_at, node) in f.list("plugins")? {
                    let name =
                        match &node.value {
                            Value::Map(entries) => entries
                                .iter()
                                .find(|(k, _)| k == "name")
                                .and_then(|(_, n)| match &n.value {
                                    Value::Str(s) => Some(s.clone()),
                                    _ => None,
                                }),
                            _ => None,
                        }
                        .unwrap_or_else(|| "unnamed".to_owned());
                    self.report.add(
                        &p_at.labelled(&name),
                        format!("plugin {name}"),
                        "on a route that is not converted",
                    );
                }
                continue;
            };
            let index_in_service = per_service.entry(service).or_insert(0);
            let position = *index_in_service;
            *index_in_service += 1;
            if let Some(route) = self.route(&at, f, service, position, &mut route_plugins)? {
                self.config.routes.push(route);
            }
        }
        self.check_route_names()?;
        let routes_by = names(
            self.config
                .routes
                .iter()
                .map(|r| (r.name.as_deref(), r.id.as_deref())),
        );

        let consumer_ref = |node: &Node, at: &Loc| -> Result<usize, InputError> {
            if let Value::Str(s) = &node.value {
                if !consumers_by.contains_key(s.as_str()) {
                    if let Some(i) = custom_ids.get(s.as_str()) {
                        return Ok(*i);
                    }
                }
            }
            reference(node, at, "consumer", &consumers_by)
        };

        let secrets = std::mem::take(&mut self.pending_secrets);
        for (at, node, parent) in secrets {
            let mut f = Fields::of(node, &at)?;
            let consumer = match parent {
                Some(c) => {
                    let _ = f.get("consumer");
                    c
                }
                None => match f.get("consumer") {
                    Some(r) => consumer_ref(r, &f.loc("consumer"))?,
                    None => return Err(InputError::at(&at, "no `consumer`")),
                },
            };
            self.jwt_secret(&at, f, consumer)?;
        }
        let acls = std::mem::take(&mut self.pending_acls);
        for (at, node, parent) in acls {
            let mut f = Fields::of(node, &at)?;
            let consumer = match parent {
                Some(c) => {
                    let _ = f.get("consumer");
                    c
                }
                None => match f.get("consumer") {
                    Some(r) => consumer_ref(r, &f.loc("consumer"))?,
                    None => return Err(InputError::at(&at, "no `consumer`")),
                },
            };
            let group_at = f.loc("group");
            let group = f
                .string("group")?
                .ok_or_else(|| InputError::at(&group_at, "missing"))?;
            self.rest(f, "acl");
            if self
                .config
                .acls
                .iter()
                .any(|a| a.consumer == consumer && a.group == group)
            {
                return Err(InputError::at(
                    &at,
                    format!(
                        "consumer {} is already in group {group:?}",
                        self.consumer_label(consumer)
                    ),
                ));
            }
            self.config.acls.push(Acl {
                at,
                consumer,
                group,
            });
        }

        let mut plugins = std::mem::take(&mut self.pending_plugins);
        for (at, node, route) in route_plugins {
            plugins.push((
                at,
                node,
                Scope {
                    route: Some(route),
                    ..Scope::default()
                },
            ));
        }
        plugins.sort_by_key(|(at, _, _)| at.seq);
        for (at, node, mut scope) in plugins {
            let mut f = Fields::of(node, &at)?;
            let name_at = f.loc("name");
            let name = f
                .string("name")?
                .ok_or_else(|| InputError::at(&name_at, "missing"))?;
            for (key, slot, by) in [
                ("service", &mut scope.service, &services_by),
                ("route", &mut scope.route, &routes_by),
            ] {
                let key_at = f.loc(key);
                if let Some(r) = f.get(key) {
                    let found = reference(r, &key_at, key, by)?;
                    if slot.is_some_and(|s| s != found) {
                        return Err(InputError::at(
                            &key_at,
                            format!("names another {key} than the one it is nested in"),
                        ));
                    }
                    *slot = Some(found);
                }
            }
            let consumer_at = f.loc("consumer");
            if let Some(r) = f.get("consumer") {
                let found = consumer_ref(r, &consumer_at)?;
                if scope.consumer.is_some_and(|c| c != found) {
                    return Err(InputError::at(
                        &consumer_at,
                        "names another consumer than the one it is nested in",
                    ));
                }
                scope.consumer = Some(found);
            }
            let enabled = f.bool("enabled")?.unwrap_or(true);
            let config = f.get("config").cloned();
            if let Some(c) = &config {
                if !matches!(c.value, Value::Map(_)) {
                    return Err(InputError::at(
                        &f.loc("config"),
                        format!("expected a mapping, found {}", c.value.kind()),
                    ));
                }
            }
            let protocols = f.strings("protocols")?;
            let consumer_group = f.get("consumer_group").is_some();
            let _ = f.get("instance_name");
            let labelled = at.labelled(&name);
            if let Some(node) = f.get("ordering") {
                self.report.add(
                    &f.loc("ordering"),
                    format!("field ordering ({})", fields::show(node)),
                    "plugin ordering is fixed in the conversion: jwt, acl, rate-limiting, then the router",
                );
            }
            self.rest(f, "plugin");
            if let Some(dup) = self.config.plugins.iter().find(|p| {
                p.name == name
                    && p.service == scope.service
                    && p.route == scope.route
                    && p.consumer == scope.consumer
                    && !p.consumer_group
                    && !consumer_group
            }) {
                return Err(InputError::at(
                    &at,
                    format!(
                        "a second {name} plugin with the same scope as {} (Kong allows one)",
                        dup.base.path
                    ),
                ));
            }
            self.config.plugins.push(Plugin {
                at: labelled,
                base: at,
                name,
                enabled,
                config,
                protocols,
                service: scope.service,
                route: scope.route,
                consumer: scope.consumer,
                consumer_group,
            });
        }
        Ok(())
    }

    fn consumer_label(&self, index: usize) -> String {
        self.config
            .consumers
            .get(index)
            .map_or_else(|| "?".to_owned(), Consumer::label)
    }

    fn route(
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

    fn kong_path(&mut self, at: &Loc, path: String) -> Result<KongPath, InputError> {
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

    fn jwt_secret(&mut self, at: &Loc, mut f: Fields, consumer: usize) -> Result<(), InputError> {
        let key = f.string("key")?;
        let algorithm_at = f.loc("algorithm");
        let algorithm = f.string("algorithm")?.unwrap_or_else(|| "HS256".to_owned());
        const ALGORITHMS: [&str; 13] = [
            "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
            "PS256", "PS384", "PS512", "EdDSA",
        ];
        if !ALGORITHMS.contains(&algorithm.as_str()) {
            return Err(InputError::at(
                &algorithm_at,
                format!("{algorithm:?}: not one of Kong's algorithms"),
            ));
        }
        let secret_at = f.loc("secret");
        let secret = f.string("secret")?;
        let rsa_public_key = f.string("rsa_public_key")?;
        if !algorithm.starts_with("HS") && rsa_public_key.is_none() {
            return Err(InputError::at(
                &f.loc("rsa_public_key"),
                format!("missing: Kong requires it for {algorithm}"),
            ));
        }
        if let Some(k) = &key {
            if let Some(other) = self
                .config
                .jwt_secrets
                .iter()
                .find(|s| s.key.as_ref() == Some(k))
            {
                return Err(InputError::at(
                    &f.loc("key"),
                    format!("duplicate key {k:?} (also {})", other.at.path),
                ));
            }
        }
        self.rest(f, "jwt_secrets");
        self.config.jwt_secrets.push(JwtSecret {
            at: at.clone(),
            consumer,
            key,
            algorithm,
            algorithm_at,
            secret,
            secret_at,
            rsa_public_key,
        });
        Ok(())
    }

    /// Names, custom ids and ids Kong keeps unique.
    fn check_unique(&self) -> Result<(), InputError> {
        unique(
            self.config
                .services
                .iter()
                .map(|s| (s.name.as_deref(), &s.at)),
            "service name",
        )?;
        unique(
            self.config
                .services
                .iter()
                .map(|s| (s.id.as_deref(), &s.at)),
            "service id",
        )?;
        // An unnamed service's cluster must not take a named one's name.
        unique(
            self.config
                .services
                .iter()
                .map(|s| (Some(s.cluster.as_str()), &s.at)),
            "cluster name (unnamed services are service-<index>)",
        )?;
        unique(
            self.config
                .consumers
                .iter()
                .map(|c| (c.username.as_deref(), &c.at)),
            "consumer username",
        )?;
        unique(
            self.config
                .consumers
                .iter()
                .map(|c| (c.custom_id.as_deref(), &c.at)),
            "consumer custom_id",
        )?;
        unique(
            self.config
                .consumers
                .iter()
                .map(|c| (c.id.as_deref(), &c.at)),
            "consumer id",
        )?;
        Ok(())
    }

    fn check_route_names(&self) -> Result<(), InputError> {
        unique(
            self.config
                .routes
                .iter()
                .map(|r| (r.name.as_deref(), &r.at)),
            "route name",
        )?;
        unique(
            self.config.routes.iter().map(|r| (r.id.as_deref(), &r.at)),
            "route id",
        )?;
        unique(
            self.config
                .routes
                .iter()
                .map(|r| (Some(r.envoy_name.as_str()), &r.at)),
            "Envoy route name (unnamed routes are <service>-<index>)",
        )
    }
}

fn unique<'x>(
    items: impl Iterator<Item = (Option<&'x str>, &'x Loc)>,
    what: &str,
) -> Result<(), InputError> {
    let mut seen: HashMap<&str, &Loc> = HashMap::new();
    for (name, at) in items {
        let Some(name) = name else { continue };
        if let Some(first) = seen.insert(name, at) {
            return Err(InputError::at(
                at,
                format!("duplicate {what} {name:?} (also {})", first.path),
            ));
        }
    }
    Ok(())
}

/// Name → index and id → index.
fn names<'x>(
    items: impl Iterator<Item = (Option<&'x str>, Option<&'x str>)>,
) -> HashMap<String, usize> {
    let mut map = HashMap::new();
    for (i, (name, id)) in items.enumerate() {
        if let Some(id) = id {
            map.entry(id.to_owned()).or_insert(i);
        }
        if let Some(name) = name {
            map.insert(name.to_owned(), i);
        }
    }
    map
}

/// A reference: `name-or-id`, or `{id: …}` / `{name: …}` (`{username: …}` for consumers).
fn reference(
    node: &Node,
    at: &Loc,
    what: &str,
    by: &HashMap<String, usize>,
) -> Result<usize, InputError> {
    let key = match &node.value {
        Value::Str(s) => s.clone(),
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k == "id" || k == "name" || k == "username")
            .and_then(|(_, n)| match &n.value {
                Value::Str(s) => Some(s.clone()),
                _ => None,
            })
            .ok_or_else(|| {
                InputError::at(at, format!("a {what} reference needs a name or an id"))
            })?,
        other => {
            return Err(InputError::at(
                at,
                format!("expected a {what} name or id, found {}", other.kind()),
            ))
        }
    };
    by.get(&key)
        .copied()
        .ok_or_else(|| InputError::at(at, format!("no {what} named {key:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kong::input::parse;

    fn read_str(text: &str) -> Result<(Config, Report), InputError> {
        let (node, _) = parse(text.as_bytes()).map_err(InputError::root)?;
        let mut report = Report::new();
        let config = read(&node, &mut report)?;
        Ok((config, report))
    }

    #[test]
    fn references_may_point_forward_but_not_nowhere() {
        let e = read_str(
            "_format_version: \"3.0\"\nroutes:\n- {name: r, service: orders, paths: [/o]}\nservices:\n- {name: users, url: 'http://u'}\n",
        )
        .unwrap_err();
        assert_eq!(e.path, "routes[0].service");
        assert_eq!(e.message, "no service named \"orders\"");
        let (c, _) = read_str(
            "_format_version: \"3.0\"\nroutes:\n- {name: r, service: users, paths: [/o]}\nservices:\n- {name: users, url: 'http://u'}\n",
        )
        .unwrap();
        assert_eq!(c.routes[0].service, 0);
    }

    #[test]
    fn reads_references_defaults_and_names() {
        let (c, report) = read_str(
            r#"
_format_version: "3.0"
services:
- name: users
  url: https://users.internal/api
  routes:
  - name: users-route
    paths: [/users]
    plugins: [{name: jwt}]
- name: orders
  host: 10.0.0.7
  port: 3002
routes:
- service: {name: orders}
  hosts: [example.com]
  paths: ["~/orders/\\d+$"]
plugins:
- name: rate-limiting
  service: users
  config: {minute: 5}
consumers:
- username: mobile-app
  jwt_secrets: [{key: k1, secret: s}]
acls:
- consumer: mobile-app
  group: ops
"#,
        )
        .unwrap();
        assert!(report.is_empty(), "{}", report.render());
        assert_eq!(c.services[0].protocol, Protocol::Https);
        assert_eq!(c.services[0].port, 443);
        assert_eq!(c.services[0].path.as_deref(), Some("/api"));
        assert_eq!(c.services[1].port, 3002);
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[1].envoy_name, "orders-0");
        assert_eq!(
            c.routes[1].paths[0].1,
            KongPath::Regex("/orders/\\d+$".to_owned())
        );
        assert!(c.routes[0].strip_path);
        assert_eq!(c.routes[0].path_handling, PathHandling::V0);
        assert_eq!(c.plugins.len(), 2);
        // Sorted in input order: the route's jwt comes first.
        assert_eq!(c.plugins[0].name, "jwt");
        assert_eq!(c.plugins[0].route, Some(0));
        assert_eq!(c.plugins[1].service, Some(0));
        assert_eq!(c.acls[0].consumer, 0);
        assert_eq!(c.jwt_secrets[0].algorithm, "HS256");
    }

    #[test]
    fn regex_paths_by_format() {
        let two = read_str(
            "_format_version: \"2.1\"\nservices:\n- {name: s, url: 'http://s'}\nroutes:\n- {name: r, service: s, paths: ['/a/\\d+', '/plain-path_1.0~%20']}\n",
        )
        .unwrap()
        .0;
        assert!(matches!(two.routes[0].paths[0].1, KongPath::Regex(_)));
        assert!(matches!(two.routes[0].paths[1].1, KongPath::Prefix(_)));
        let one = read_str("_format_version: \"1.1\"\nservices:\n- {name: s, url: 'http://s', routes: [{paths: [/a]}]}\n")
            .unwrap()
            .0;
        assert_eq!(one.routes[0].path_handling, PathHandling::V1);
        assert_eq!(one.routes[0].envoy_name, "s-0");
    }

    #[test]
    fn malformed_inputs_name_their_place() {
        let cases = [
            (
                "services: []\n",
                "_format_version",
                "missing: Kong needs \"1.1\", \"2.1\" or \"3.0\"",
            ),
            (
                "_format_version: \"4.0\"\n",
                "_format_version",
                "unknown version \"4.0\": \"1.1\", \"2.1\" or \"3.0\"",
            ),
            (
                "_format_version: \"3.0\"\nservices:\n- {name: a, url: 'http://a'}\n- {name: a, url: 'http://b'}\n",
                "services[1]",
                "duplicate service name \"a\" (also services[0])",
            ),
            (
                "_format_version: \"3.0\"\nservices:\n- name: a\n  url: http://a\n  routes:\n  - {name: r, paths: [/x]}\n  - {name: r, paths: [/y]}\n",
                "services[0].routes[1]",
                "duplicate route name \"r\" (also services[0].routes[0])",
            ),
            (
                "_format_version: \"3.0\"\nplugins:\n- {name: acl, route: nope}\n",
                "plugins[0].route",
                "no route named \"nope\"",
            ),
            (
                "_format_version: \"3.0\"\njwt_secrets:\n- {consumer: ghost, key: k}\n",
                "jwt_secrets[0].consumer",
                "no consumer named \"ghost\"",
            ),
            (
                "_format_version: \"3.0\"\nservices:\n- {name: a, url: 'http://a', routes: [{paths: [users]}]}\n",
                "services[0].routes[0].paths[0]",
                "\"users\": a path starts with / (or ~ for a regex)",
            ),
            (
                "_format_version: \"3.0\"\nservices:\n- {name: a, port: 99999, host: a}\n",
                "services[0].port",
                "not a port: 99999",
            ),
            (
                "_format_version: \"3.0\"\nservices:\n- {name: 'a b', host: a}\n",
                "services[0].name",
                "\"a b\": a name holds only letters, digits, '.', '-', '_' and '~'",
            ),
            (
                "_format_version: \"3.0\"\nservices:\n- name: a\n  host: a\n  plugins: [{name: jwt}, {name: jwt}]\n",
                "services[0].plugins[1]",
                "a second jwt plugin with the same scope as services[0].plugins[0] (Kong allows one)",
            ),
        ];
        for (text, path, message) in cases {
            let e = read_str(text).unwrap_err();
            assert_eq!(
                (e.path.as_str(), e.message.as_str()),
                (path, message),
                "{text}"
            );
        }
    }

    #[test]
    fn reports_unknown_fields_and_entities_but_not_metadata() {
        let (_, report) = read_str(
            r#"
_format_version: "3.0"
_transform: true
services:
- name: a
  url: http://a
  id: 0b7e3f0e-7f0e-4b7e-9f0e-0b7e3f0e7f0e
  tags: [x]
  created_at: 1
  colour: blue
upstreams:
- name: a-up
certificates:
- cert: x
"#,
        )
        .unwrap();
        assert_eq!(
            report.render(),
            "services[0].colour: unknown field colour — not a service field: ignored\n\
             upstreams[0] (a-up): upstream — load-balancing upstreams are not converted: a service whose host names an upstream gets a DNS cluster for that name; list the targets as the cluster's endpoints (lb_policy for the algorithm, health_checks for the checks)\n\
             certificates[0]: certificate — TLS termination is not converted (the listener is plain HTTP): add a TLS transport_socket with these certificates to the listener's filter chain\n"
        );
    }
}
