//! The skeleton of every Envoy config here, tests and bench alike: listeners on `127.0.0.1`
//! whose one network filter is the HTTP connection manager (virtual hosts, HTTP filters,
//! the router last), and the bootstrap that holds them with their clusters.

use std::collections::BTreeMap;

use super::{fill, quote};

/// The admin endpoint on a kernel-chosen port: [`crate::Envoy`] adds it to a config that
/// has none, and finds its port through `--admin-address-path`.
pub const ADMIN: &str = "admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: 0 }
";

/// What [`Listener::access_log`] writes to Envoy's log for each request.
const ACCESS_LOG: &str = r#"access_log:
- name: envoy.access_loggers.stdout
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
    log_format:
      text_format_source:
        inline_string: "[access] %REQ(:METHOD)% %REQ(:PATH)% route=%ROUTE_NAME% status=%RESPONSE_CODE% details=%RESPONSE_CODE_DETAILS% flags=%RESPONSE_FLAGS% upstream=%UPSTREAM_CLUSTER%\n""#;

const LISTENER: &str = r#"- name: {{NAME}}
  address:
    socket_address: { address: 127.0.0.1, port_value: {{PORT}} }
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: {{STAT_PREFIX}}
        use_remote_address: {{USE_REMOTE_ADDRESS}}
        {{EARLY_HEADER_MUTATION}}
        {{ACCESS_LOG}}
        route_config:
          name: {{STAT_PREFIX}}
          virtual_hosts:
            {{VIRTUAL_HOSTS}}
        http_filters:
        {{FILTERS}}
        - name: envoy.filters.http.router
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"#;

const BOOTSTRAP: &str = "static_resources:
  listeners:
    {{LISTENERS}}
  clusters:
    {{CLUSTERS}}
";

/// One listener with Envoy's HTTP connection manager; [`bootstrap`] puts it in a config.
#[derive(Clone, Debug)]
pub struct Listener {
    name: String,
    port: u16,
    stat_prefix: String,
    use_remote_address: bool,
    access_log: bool,
    /// An `access_log:` block of one's own, in place of [`ACCESS_LOG`].
    access_log_yaml: Option<String>,
    /// Request headers removed before Envoy picks the route.
    strip_early: Vec<String>,
    virtual_hosts: Vec<String>,
    filters: Vec<String>,
}

impl Listener {
    /// A listener called `name` ([`crate::Envoy::listener_port`] finds it by that name) on a
    /// kernel-chosen port, its statistics under `http.<name>.`, no access log, no virtual
    /// host yet.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            port: 0,
            stat_prefix: name.to_owned(),
            use_remote_address: false,
            access_log: false,
            access_log_yaml: None,
            strip_early: Vec::new(),
            virtual_hosts: Vec::new(),
            filters: Vec::new(),
        }
    }

    /// Listens on `port`, for a config that must know its own port (a cluster pointing back
    /// at the listener).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Statistics under `http.<prefix>.` instead of the listener's name.
    pub fn stat_prefix(mut self, prefix: &str) -> Self {
        self.stat_prefix = prefix.to_owned();
        self
    }

    /// The connection manager's `use_remote_address` (Envoy's default is false): the peer
    /// becomes `source.address` and is appended to `X-Forwarded-For` before any filter runs.
    pub fn use_remote_address(mut self, on: bool) -> Self {
        self.use_remote_address = on;
        self
    }

    /// Logs every request to Envoy's log: `[access] GET /path route=… status=… details=…
    /// flags=… upstream=…`. Off by default (the bench measures without it).
    pub fn access_log(mut self) -> Self {
        self.access_log = true;
        self
    }

    /// Logs every request as `yaml` says: an `access_log:` key at column 0 and its list
    /// (such as `envoy-config/access-log/envoy.yaml`), in place of [`Listener::access_log`]'s.
    pub fn access_log_yaml(mut self, yaml: impl Into<String>) -> Self {
        self.access_log_yaml = Some(yaml.into());
        self
    }

    /// Removes request headers `names` before Envoy picks the route (the connection
    /// manager's `early_header_mutation_extensions`), as the configurations Portcullis ships
    /// do with the identity headers.
    pub fn strip_early(mut self, names: &[impl AsRef<str>]) -> Self {
        self.strip_early = names.iter().map(|n| n.as_ref().to_owned()).collect();
        self
    }

    /// Appends a `virtual_hosts` entry (or several), YAML at column 0, such as
    /// [`virtual_host`] renders.
    pub fn virtual_host(mut self, yaml: impl Into<String>) -> Self {
        self.virtual_hosts.push(yaml.into());
        self
    }

    /// Appends an `http_filters` entry (or several), YAML at column 0; filters run in the
    /// order added, all before the router.
    pub fn filter(mut self, http_filter: impl Into<String>) -> Self {
        self.filters.push(http_filter.into());
        self
    }

    /// The `listeners` entry, YAML at column 0. Placeholders in the parts are kept for a
    /// later [`fill`] (such as [`crate::EnvoyBuilder::var`] makes).
    pub fn render(&self) -> String {
        let access_log = match &self.access_log_yaml {
            Some(yaml) => yaml.as_str(),
            None if self.access_log => ACCESS_LOG,
            None => "",
        };
        let vars = BTreeMap::from([
            ("NAME".to_owned(), quote(&self.name)),
            ("PORT".to_owned(), self.port.to_string()),
            ("STAT_PREFIX".to_owned(), quote(&self.stat_prefix)),
            (
                "USE_REMOTE_ADDRESS".to_owned(),
                self.use_remote_address.to_string(),
            ),
            ("ACCESS_LOG".to_owned(), access_log.to_owned()),
            (
                "EARLY_HEADER_MUTATION".to_owned(),
                early_header_mutation(&self.strip_early),
            ),
            ("VIRTUAL_HOSTS".to_owned(), block(&self.virtual_hosts)),
            ("FILTERS".to_owned(), self.filters.join("\n")),
        ]);
        // A part left out takes its line with it.
        let absent = |line: &&str| match line.trim() {
            "{{ACCESS_LOG}}" => !self.access_log,
            "{{FILTERS}}" => self.filters.is_empty(),
            "{{EARLY_HEADER_MUTATION}}" => self.strip_early.is_empty(),
            _ => false,
        };
        let template: Vec<&str> = LISTENER.lines().filter(|l| !absent(l)).collect();
        // The template's only placeholders are the ones above.
        fill(&template.join("\n"), &vars).unwrap_or_else(|e| unreachable!("listener template: {e}"))
    }
}

/// An `early_header_mutation_extensions:` block at column 0 removing `names`.
fn early_header_mutation(names: &[String]) -> String {
    let removes: Vec<String> = names
        .iter()
        .map(|n| format!("    - remove: {}", quote(n)))
        .collect();
    format!(
        "early_header_mutation_extensions:\n\
         - name: envoy.http.early_header_mutation.header_mutation\n  \
           typed_config:\n    \
             \"@type\": type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation\n    \
             mutations:\n{}",
        removes.join("\n")
    )
}

/// The `static_resources` of a config: `listeners` and their `clusters` (YAML blocks at
/// column 0, such as [`crate::config::cluster`] renders). No admin: [`crate::Envoy`] adds
/// one.
pub fn bootstrap(listeners: &[Listener], clusters: &[String]) -> String {
    let listeners: Vec<String> = listeners.iter().map(Listener::render).collect();
    let vars = BTreeMap::from([
        ("LISTENERS".to_owned(), block(&listeners)),
        ("CLUSTERS".to_owned(), block(clusters)),
    ]);
    fill(BOOTSTRAP, &vars).unwrap_or_else(|e| unreachable!("bootstrap template: {e}"))
}

/// A `virtual_hosts` entry answering for `domains` (`["*"]`: any) through `routes` (YAML
/// blocks at column 0, such as [`route`] and [`direct_response`] render), tried in order.
pub fn virtual_host(name: &str, domains: &[&str], routes: &[String]) -> String {
    let domains: Vec<String> = domains.iter().map(|d| quote(d)).collect();
    let vars = BTreeMap::from([("ROUTES".to_owned(), block(routes))]);
    let template = format!(
        "- name: {}\n  domains: [{}]\n  routes:\n    {{{{ROUTES}}}}",
        quote(name),
        domains.join(", ")
    );
    fill(&template, &vars).unwrap_or_else(|e| unreachable!("virtual host template: {e}"))
}

/// A route called `name` (what a filter reads as `xds.route_name`) sending paths that start
/// with `prefix` to `cluster`.
pub fn route(name: &str, prefix: &str, cluster: &str) -> String {
    format!(
        "- name: {}\n  match: {{ prefix: {} }}\n  route: {{ cluster: {} }}",
        quote(name),
        quote(prefix),
        quote(cluster)
    )
}

/// A route called `name` sending paths that start with `prefix` and carrying request header
/// `header` with exactly `value` to `cluster`.
pub fn route_with_header(
    name: &str,
    prefix: &str,
    (header, value): (&str, &str),
    cluster: &str,
) -> String {
    format!(
        "- name: {}\n  match:\n    prefix: {}\n    headers:\n    - name: {}\n      \
         string_match: {{ exact: {} }}\n  route: {{ cluster: {} }}",
        quote(name),
        quote(prefix),
        quote(header),
        quote(value),
        quote(cluster)
    )
}

/// A route called `name` answering paths that start with `prefix` from Envoy itself.
pub fn direct_response(name: &str, prefix: &str, status: u16, body: &str) -> String {
    format!(
        "- name: {}\n  match: {{ prefix: {} }}\n  direct_response:\
         \n    status: {status}\n    body: {{ inline_string: {} }}",
        quote(name),
        quote(prefix),
        quote(body)
    )
}

/// A YAML sequence of blocks, or `[]` when there is none (an empty key would be null). Its
/// placeholder sits deeper than its key: `[]` at the key's own depth is not YAML.
fn block(items: &[String]) -> String {
    if items.is_empty() {
        "[]".to_owned()
    } else {
        items.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_drops_its_parts_in_at_their_depth() {
        let listener = Listener::new("main")
            .virtual_host(virtual_host(
                "all",
                &["*"],
                &[direct_response("ok", "/", 200, "{{BODY}}")],
            ))
            .filter("- name: first\n  typed_config: {}")
            .render();
        assert!(listener.starts_with("- name: \"main\"\n"), "{listener}");
        assert!(
            listener.contains(
                "\n          virtual_hosts:\
                 \n            - name: \"all\"\
                 \n              domains: [\"*\"]\
                 \n              routes:\
                 \n                - name: \"ok\"\
                 \n                  match: { prefix: \"/\" }\
                 \n                  direct_response:\
                 \n                    status: 200\
                 \n                    body: { inline_string: \"{{BODY}}\" }\n"
            ),
            "{listener}"
        );
        assert!(
            listener.contains(
                "\n        http_filters:\
                 \n        - name: first\
                 \n          typed_config: {}\
                 \n        - name: envoy.filters.http.router\n"
            ),
            "{listener}"
        );
        assert!(!listener.contains("access_log"), "{listener}");
        assert!(!listener.lines().any(|l| l.trim().is_empty()), "{listener}");
    }

    #[test]
    fn the_access_log_sits_in_the_connection_manager() {
        let listener = Listener::new("main").stat_prefix("gateway").access_log();
        assert!(
            listener.render().contains(
                "\n        stat_prefix: \"gateway\"\
                 \n        use_remote_address: false\
                 \n        access_log:\
                 \n        - name: envoy.access_loggers.stdout\n"
            ),
            "{}",
            listener.render()
        );
    }

    #[test]
    fn the_bootstrap_holds_listeners_and_clusters_below_their_keys() {
        let config = bootstrap(&[Listener::new("a"), Listener::new("b")], &[]);
        assert!(
            config.starts_with("static_resources:\n  listeners:\n    - name: \"a\"\n"),
            "{config}"
        );
        assert!(config.contains("\n    - name: \"b\"\n"), "{config}");
        assert!(config.ends_with("\n  clusters:\n    []\n"), "{config}");
    }
}
