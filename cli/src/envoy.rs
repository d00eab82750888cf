//! Writing the Envoy bootstrap: one listener, Kong's routes in Kong's order, one cluster
//! per Kong service, and the Portcullis filters (jwt, acl, rate-limiting: those the input
//! uses) before the router, each loading `<wasm-dir>/portcullis-<filter>.wasm` as
//! `envoy-config/examples/*.yaml` do.
//!
//! | Kong service | Envoy cluster |
//! |---|---|
//! | `name` | `name` (unnamed: `service-<index>`) |
//! | `host` an IP / a name | `STATIC` / `STRICT_DNS` (IPv4, as Kong's default `dns_order` resolves A records) |
//! | `protocol` https, grpcs | TLS `transport_socket`, SNI the host, certificate not verified (Kong's default) |
//! | `protocol` grpc, grpcs | HTTP/2 to the upstream |
//! | `connect_timeout` | `connect_timeout` |
//! | `read_timeout`, `write_timeout` | the route's `idle_timeout` (the larger), no overall `timeout` |
//! | `retries` | the route's `retry_policy`: connect failures and resets before a response, not for POST, PATCH, LOCK (nginx's non-idempotent methods) |
//! | `preserve_host: false` | `host_rewrite_literal`: the host, with a non-default port |

use portcullis_core::identity;
use serde_json::Value as Json;
use serde_yaml_ng::{Mapping, Value as Y};

use crate::kong::model::{Config, Protocol, Service};
use crate::kong::plugins::{Policies, NO_ROUTE};
use crate::kong::routes::{self, EnvoyRoute, HeaderRegex, PathMatch};

/// The rate limit service's cluster (rate-limiting `policy: redis`).
pub const RATELIMIT_CLUSTER: &str = "portcullis_ratelimit";
/// portcullis-admin's data-plane cluster (jwt `consumer_source`).
pub const ADMIN_CLUSTER: &str = "portcullis_admin";
/// The listener's name (tests find its port by it).
pub const LISTENER: &str = "gateway";

/// The connection manager's early header mutation that removes every identity header a
/// client sent ([`identity::headers::ALL`]) before Envoy picks the route: the route the
/// filters judge is then one the client's copies cannot have chosen.
fn strip_identity_headers() -> Y {
    let removes = identity::headers::ALL
        .iter()
        .map(|name| m(vec![("remove", s(*name))]))
        .collect();
    m(vec![
        ("name", s("envoy.http.early_header_mutation.header_mutation")),
        (
            "typed_config",
            m(vec![
                ("@type", s("type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation")),
                ("mutations", Y::Sequence(removes)),
            ]),
        ),
    ])
}

/// A host and a port (an IP, or a name Envoy resolves).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// `HOST:PORT`, `[v6]:PORT`.
    pub fn parse(text: &str) -> Option<HostPort> {
        let (host, port) = text.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() || host.contains(['/', ' ']) {
            return None;
        }
        Some(HostPort {
            host: host.to_owned(),
            port,
        })
    }

    fn is_ip(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_ok()
    }
}

/// What the bootstrap needs besides the input.
#[derive(Clone, Debug)]
pub struct EnvoyOptions {
    pub listen: HostPort,
    pub admin: HostPort,
    pub wasm_dir: String,
    pub rate_limit_service: Option<HostPort>,
    pub admin_data_plane: Option<HostPort>,
}

fn s(text: impl Into<String>) -> Y {
    Y::String(text.into())
}

fn n(number: u64) -> Y {
    Y::Number(number.into())
}

fn m(entries: Vec<(&str, Y)>) -> Y {
    let mut map = Mapping::new();
    for (k, v) in entries {
        map.insert(s(k), v);
    }
    Y::Mapping(map)
}

fn socket(address: &HostPort) -> Y {
    m(vec![(
        "socket_address",
        m(vec![
            ("address", s(&address.host)),
            ("port_value", n(u64::from(address.port))),
        ]),
    )])
}

/// Seconds as Envoy's duration string (`60s`, `0.25s`).
fn duration(ms: u64) -> Y {
    if ms.is_multiple_of(1000) {
        s(format!("{}s", ms / 1000))
    } else {
        s(format!("{}.{:03}s", ms / 1000, ms % 1000))
    }
}

/// The whole bootstrap as YAML, with a header comment.
pub fn bootstrap(
    config: &Config,
    envoy_routes: &[EnvoyRoute],
    policies: &Policies,
    options: &EnvoyOptions,
) -> Result<String, String> {
    let mut route_list: Vec<Y> = envoy_routes
        .iter()
        .map(|r| route(config, r))
        .collect::<Result<_, _>>()?;
    route_list.push(m(vec![
        ("name", s(NO_ROUTE)),
        ("match", m(vec![("prefix", s("/"))])),
        (
            "direct_response",
            m(vec![
                ("status", n(404)),
                (
                    "body",
                    m(vec![(
                        "inline_string",
                        s("{\"message\":\"no Route matched with those values\"}"),
                    )]),
                ),
            ]),
        ),
        (
            "response_headers_to_add",
            Y::Sequence(vec![m(vec![(
                "header",
                m(vec![
                    ("key", s("content-type")),
                    ("value", s("application/json; charset=utf-8")),
                ]),
            )])]),
        ),
    ]));

    let mut filters = Vec::new();
    for (name, policy) in [
        ("jwt", &policies.jwt),
        ("acl", &policies.acl),
        ("rate-limiting", &policies.rate_limiting),
    ] {
        if let Some(policy) = policy {
            filters.push(wasm_filter(name, policy, &options.wasm_dir)?);
        }
    }
    filters.push(m(vec![
        ("name", s("envoy.filters.http.router")),
        (
            "typed_config",
            m(vec![(
                "@type",
                s("type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"),
            )]),
        ),
    ]));

    let hcm = m(vec![
        ("@type", s("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager")),
        ("stat_prefix", s(LISTENER)),
        // The peer is the client (Kong's default without trusted_ips): its address is the
        // one rate-limiting counts by IP.
        ("use_remote_address", Y::Bool(true)),
        // Kong routes on the normalised path (percent-decoding, dot segments, slashes).
        ("normalize_path", Y::Bool(true)),
        ("merge_slashes", Y::Bool(true)),
        // Client copies of the identity headers go before Envoy picks the route, so a
        // client cannot pick the route the filters judge (docs/architecture.md).
        (
            "early_header_mutation_extensions",
            Y::Sequence(vec![strip_identity_headers()]),
        ),
        (
            "access_log",
            Y::Sequence(vec![m(vec![
                ("name", s("envoy.access_loggers.stdout")),
                (
                    "typed_config",
                    m(vec![
                        ("@type", s("type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog")),
                        (
                            "log_format",
                            m(vec![(
                                "text_format_source",
                                m(vec![(
                                    "inline_string",
                                    s("[envoy] %REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% -> %RESPONSE_CODE% route=%ROUTE_NAME% upstream=%UPSTREAM_CLUSTER% path=%REQ(:PATH)%\n"),
                                )]),
                            )]),
                        ),
                    ]),
                ),
            ])]),
        ),
        (
            "route_config",
            m(vec![
                ("name", s("kong")),
                (
                    "virtual_hosts",
                    Y::Sequence(vec![m(vec![
                        ("name", s("kong")),
                        ("domains", Y::Sequence(vec![s("*")])),
                        ("routes", Y::Sequence(route_list)),
                    ])]),
                ),
            ]),
        ),
        ("http_filters", Y::Sequence(filters)),
    ]);

    let mut clusters: Vec<Y> = config
        .services
        .iter()
        .filter(|s| s.carried)
        .map(cluster)
        .collect();
    if policies.uses_rate_limit_service {
        let rls = options
            .rate_limit_service
            .as_ref()
            .ok_or("policy redis needs --rate-limit-service")?;
        clusters.push(plain_cluster(RATELIMIT_CLUSTER, rls, true));
    }
    if let Some(dp) = &options.admin_data_plane {
        if policies
            .jwt
            .as_ref()
            .is_some_and(|j| j.get("consumer_source").is_some())
        {
            clusters.push(plain_cluster(ADMIN_CLUSTER, dp, false));
        }
    }

    let root = m(vec![
        ("admin", m(vec![("address", socket(&options.admin))])),
        (
            "layered_runtime",
            m(vec![(
                "layers",
                Y::Sequence(vec![m(vec![
                    ("name", s("static")),
                    (
                        "static_layer",
                        // Host and regex matchers of many alternatives outgrow RE2's default
                        // program size bound (100), which Envoy enforces.
                        m(vec![
                            ("re2.max_program_size.error_level", n(10_000)),
                            ("re2.max_program_size.warn_level", n(10_000)),
                        ]),
                    ),
                ])]),
            )]),
        ),
        (
            "overload_manager",
            m(vec![(
                "resource_monitors",
                Y::Sequence(vec![m(vec![
                    ("name", s("envoy.resource_monitors.global_downstream_max_connections")),
                    (
                        "typed_config",
                        m(vec![
                            ("@type", s("type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig")),
                            ("max_active_downstream_connections", n(50_000)),
                        ]),
                    ),
                ])]),
            )]),
        ),
        (
            "static_resources",
            m(vec![
                (
                    "listeners",
                    Y::Sequence(vec![m(vec![
                        ("name", s(LISTENER)),
                        ("address", socket(&options.listen)),
                        (
                            "filter_chains",
                            Y::Sequence(vec![m(vec![(
                                "filters",
                                Y::Sequence(vec![m(vec![
                                    ("name", s("envoy.filters.network.http_connection_manager")),
                                    ("typed_config", hcm),
                                ])]),
                            )])]),
                        ),
                    ])]),
                ),
                ("clusters", Y::Sequence(clusters)),
            ]),
        ),
    ]);
    let body = serde_yaml_ng::to_string(&root).map_err(|e| format!("writing YAML: {e}"))?;
    Ok(format!(
        "# Written by `portcullis kong import` from a Kong declarative configuration.\n\
         # Run: envoy -c envoy.yaml  (the filters load {}/portcullis-<filter>.wasm).\n\
         # Route names are the Kong routes' names: the filters' per-route policies\n\
         # (policies/*.json, inlined below) refer to them. What was not carried over is in\n\
         # report.txt.\n{body}",
        options.wasm_dir
    ))
}

fn wasm_filter(name: &str, policy: &Json, wasm_dir: &str) -> Result<Y, String> {
    let value = serde_json::to_string(policy).map_err(|e| format!("{name} policy: {e}"))?;
    let dir = wasm_dir.trim_end_matches('/');
    let dir = if dir.is_empty() { "/" } else { dir };
    Ok(m(vec![
        ("name", s(format!("portcullis.{name}"))),
        (
            "typed_config",
            m(vec![
                (
                    "@type",
                    s("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"),
                ),
                (
                    "config",
                    m(vec![
                        ("name", s(name)),
                        ("root_id", s(name)),
                        (
                            "vm_config",
                            m(vec![
                                ("vm_id", s(name)),
                                ("runtime", s("envoy.wasm.runtime.v8")),
                                (
                                    "code",
                                    m(vec![(
                                        "local",
                                        m(vec![(
                                            "filename",
                                            s(format!("{dir}/portcullis-{name}.wasm")),
                                        )]),
                                    )]),
                                ),
                            ]),
                        ),
                        (
                            "configuration",
                            m(vec![
                                (
                                    "@type",
                                    s("type.googleapis.com/google.protobuf.StringValue"),
                                ),
                                ("value", s(value)),
                            ]),
                        ),
                        // A configuration the filter refuses stops Envoy: fail closed.
                        ("fail_open", Y::Bool(false)),
                    ]),
                ),
            ]),
        ),
    ]))
}

fn regex_matcher(regex: &str) -> Y {
    m(vec![("safe_regex", m(vec![("regex", s(regex))]))])
}

fn header(h: &HeaderRegex) -> Y {
    m(vec![
        ("name", s(&h.name)),
        ("string_match", regex_matcher(&h.regex)),
    ])
}

fn route(config: &Config, r: &EnvoyRoute) -> Result<Y, String> {
    let kong = config.routes.get(r.route).ok_or("route index")?;
    let service = config.services.get(kong.service).ok_or("service index")?;
    let mut matcher = vec![match &r.path {
        PathMatch::Prefix(p) => ("prefix", s(p)),
        PathMatch::Exact(p) => ("path", s(p)),
        PathMatch::Regex(re) => ("safe_regex", m(vec![("regex", s(re))])),
    }];
    if !r.headers.is_empty() {
        matcher.push((
            "headers",
            Y::Sequence(r.headers.iter().map(header).collect()),
        ));
    }
    let mut action = vec![("cluster", s(&service.cluster))];
    if let Some(rw) = &r.rewrite {
        action.push((
            "regex_rewrite",
            m(vec![
                ("pattern", m(vec![("regex", s(&rw.pattern))])),
                ("substitution", s(&rw.substitution)),
            ]),
        ));
    }
    if !kong.preserve_host {
        action.push(("host_rewrite_literal", s(routes::upstream_host(service))));
    }
    // Kong has no overall response timeout; its read and write timeouts bound the time
    // between two reads or writes, which is the stream's idle timeout.
    action.push(("timeout", s("0s")));
    action.push((
        "idle_timeout",
        duration(service.read_timeout.max(service.write_timeout)),
    ));
    if service.retries > 0 {
        action.push((
            "retry_policy",
            m(vec![
                ("retry_on", s("connect-failure,reset")),
                ("num_retries", n(service.retries)),
                (
                    "retriable_request_headers",
                    Y::Sequence(vec![m(vec![
                        ("name", s(":method")),
                        ("string_match", regex_matcher("POST|PATCH|LOCK")),
                        ("invert_match", Y::Bool(true)),
                    ])]),
                ),
            ]),
        ));
    }
    Ok(m(vec![
        ("name", s(&r.name)),
        ("match", m(matcher)),
        ("route", m(action)),
    ]))
}

fn endpoints(name: &str, address: &HostPort) -> Y {
    m(vec![
        ("cluster_name", s(name)),
        (
            "endpoints",
            Y::Sequence(vec![m(vec![(
                "lb_endpoints",
                Y::Sequence(vec![m(vec![(
                    "endpoint",
                    m(vec![("address", socket(address))]),
                )])]),
            )])]),
        ),
    ])
}

fn http2() -> Y {
    m(vec![(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        m(vec![
            (
                "@type",
                s("type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"),
            ),
            (
                "explicit_http_config",
                m(vec![("http2_protocol_options", m(vec![]))]),
            ),
        ]),
    )])
}

fn cluster(service: &Service) -> Y {
    let address = HostPort {
        host: service.host.clone(),
        port: service.port,
    };
    let mut c = vec![
        ("name", s(&service.cluster)),
        (
            "type",
            s(if address.is_ip() {
                "STATIC"
            } else {
                "STRICT_DNS"
            }),
        ),
    ];
    if !address.is_ip() {
        c.push(("dns_lookup_family", s("V4_ONLY")));
    }
    c.push(("connect_timeout", duration(service.connect_timeout)));
    // Kong bounds neither connections nor retries per upstream; Envoy's defaults (1024
    // connections, 3 concurrent retries) would turn load into 503s.
    c.push((
        "circuit_breakers",
        m(vec![(
            "thresholds",
            Y::Sequence(vec![m(vec![
                ("max_connections", n(100_000)),
                ("max_pending_requests", n(100_000)),
                ("max_requests", n(100_000)),
                ("max_retries", n(100_000)),
            ])]),
        )]),
    ));
    if service.protocol.http2() {
        c.push(("typed_extension_protocol_options", http2()));
    }
    c.push(("load_assignment", endpoints(&service.cluster, &address)));
    if service.protocol.tls() {
        let mut tls = vec![(
            "@type",
            s("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"),
        )];
        if !address.is_ip() {
            tls.push(("sni", s(&service.host)));
        }
        if service.protocol == Protocol::Grpcs {
            tls.push((
                "common_tls_context",
                m(vec![("alpn_protocols", Y::Sequence(vec![s("h2")]))]),
            ));
        }
        c.push((
            "transport_socket",
            m(vec![
                ("name", s("envoy.transport_sockets.tls")),
                ("typed_config", m(tls)),
            ]),
        ));
    }
    m(c)
}

/// The rate limit service (gRPC, so HTTP/2) or portcullis-admin's data plane.
fn plain_cluster(name: &str, address: &HostPort, grpc: bool) -> Y {
    let mut c = vec![
        ("name", s(name)),
        (
            "type",
            s(if address.is_ip() {
                "STATIC"
            } else {
                "STRICT_DNS"
            }),
        ),
        ("connect_timeout", s("1s")),
    ];
    if grpc {
        c.push(("typed_extension_protocol_options", http2()));
    }
    c.push(("load_assignment", endpoints(name, address)));
    m(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_and_durations() {
        assert_eq!(
            HostPort::parse("0.0.0.0:8000"),
            Some(HostPort {
                host: "0.0.0.0".into(),
                port: 8000
            })
        );
        assert_eq!(
            HostPort::parse("[::1]:9901"),
            Some(HostPort {
                host: "::1".into(),
                port: 9901
            })
        );
        assert_eq!(
            HostPort::parse("ratelimit.internal:8081"),
            Some(HostPort {
                host: "ratelimit.internal".into(),
                port: 8081
            })
        );
        assert_eq!(HostPort::parse("nope"), None);
        assert_eq!(HostPort::parse("a:99999"), None);
        assert_eq!(duration(60_000), s("60s"));
        assert_eq!(duration(1_500), s("1.500s"));
    }
}
