//! Kong's declarative configuration, normalised: nested routes, plugins, credentials and
//! groups flattened into one list each, every reference (by name or id) resolved to an index,
//! Kong's defaults filled in for the file's `_format_version`. Malformed input (wrong types,
//! duplicate names, dangling references, values Kong's schema refuses) is an [`InputError`]
//! naming the place; what is well-formed but not carried over goes to the [`Report`].

mod consumer;
mod resolve;
mod route;
mod service;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use super::fields::{Fields, METADATA};
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
        upstreams: Vec::new(),
    };

    reader.upstreams = upstream_names(root);
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
    /// Names of the file's `upstreams` (not converted): a service host naming one is
    /// reported.
    upstreams: Vec<String>,
}

impl<'a> Reader<'a, '_> {
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

    fn consumer_label(&self, index: usize) -> String {
        self.config
            .consumers
            .get(index)
            .map_or_else(|| "?".to_owned(), Consumer::label)
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

/// The `name` of each entry of the top-level `upstreams`.
fn upstream_names(root: &Node) -> Vec<String> {
    let Value::Map(top) = &root.value else {
        return Vec::new();
    };
    let Some((
        _,
        Node {
            value: Value::Seq(items),
            ..
        },
    )) = top.iter().find(|(k, _)| k == "upstreams")
    else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match &item.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k == "name")
                .and_then(|(_, n)| match &n.value {
                    Value::Str(s) => Some(s.clone()),
                    _ => None,
                }),
            _ => None,
        })
        .collect()
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
