//! Renders the demo's Envoy config (`envoy-config/demo.yaml.tmpl`): fills in the addresses,
//! the absolute path of each filter's `.wasm`, and each filter's policy from
//! `envoy-config/policies/<filter>.json`. `make run` and the demo's end-to-end test both
//! render through here, so they run the same config. Every config has the cluster
//! [`ADMIN_CLUSTER`], portcullis-admin's data plane, which the gateways follow. With a rate
//! limit service (`make run NODES=2`) it also adds that service's cluster and takes the
//! rate-limiting policy from `rate-limiting-redis.json`. With the demo's certificates
//! ([`crate::certs`]) the listener serves HTTPS and every cluster speaks TLS to its upstream,
//! checking the upstream's certificate against the demo CA and its name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use portcullis_template::{fill, quote};

use crate::certs::{self, Leaf};
use crate::service::Service;

/// The filters of the demo chain, in the order the template runs them.
pub const FILTERS: [&str; 4] = ["token-issuer", "jwt", "acl", "rate-limiting"];

/// How the demo packages the filters: the one-VM gateway module (`dist/portcullis-gateway.wasm`,
/// the default: one VM per worker instead of four, faster and smaller) or the four separate
/// filters, each in its own VM. The same stages, the same answers
/// (`filters/gateway/tests/differential.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Chain {
    #[default]
    Gateway,
    Filters,
}

impl Chain {
    /// `gateway` or `filters` (`make run CHAIN=…`).
    pub fn parse(text: &str) -> Result<Chain, String> {
        match text {
            "gateway" => Ok(Chain::Gateway),
            "filters" => Ok(Chain::Filters),
            other => Err(format!(
                "--chain {other:?}: `gateway` (one VM for the four stages) or `filters` (one VM each)"
            )),
        }
    }

    /// What [`Chain::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Chain::Gateway => "gateway",
            Chain::Filters => "filters",
        }
    }
}

/// Everything the template needs.
#[derive(Clone, Debug)]
pub struct Demo {
    /// The template: `{{NAME}}` placeholders, see [`Demo::vars`].
    pub template: PathBuf,
    /// `<filter>.json` for every filter in [`FILTERS`].
    pub policies: PathBuf,
    /// Where `make build` puts `portcullis-<filter>.wasm`.
    pub dist: PathBuf,
    /// The listener clients call.
    pub gateway: SocketAddr,
    /// Envoy's admin endpoint.
    pub admin: SocketAddr,
    /// Where each service listens; every one of [`Service::ALL`] must be there.
    pub services: Vec<(Service, SocketAddr)>,
    /// Where portcullis-admin's data plane (`--data-plane-listen`) listens: the address of
    /// the cluster [`ADMIN_CLUSTER`]. Not its Admin API, which only people and scripts call.
    pub portcullis_admin: SocketAddr,
    /// Where the rate limit service (`portcullis-ratelimit`) listens, for `policy: redis`:
    /// renders the HTTP/2 cluster [`RATELIMIT_CLUSTER`] at `RATELIMIT_CLUSTER` and takes the
    /// rate-limiting policy from [`REDIS_POLICY`] instead of `rate-limiting.json`. `None`:
    /// no such cluster, and the local policy.
    pub ratelimit: Option<SocketAddr>,
    /// Where `portcullis-services certs` wrote the demo's certificates: the listener serves
    /// HTTPS with `gateway.pem`, and every cluster speaks TLS, trusting only `ca.pem` and
    /// checking the upstream's name (sent as SNI). `None`: plain HTTP everywhere.
    pub tls: Option<PathBuf>,
    /// Where Envoy writes the JSON access log (`ACCESS_LOG_PATH`); `None`: `/dev/null`.
    pub access_log: Option<PathBuf>,
    /// The filters as one gateway module or as four (`HTTP_FILTERS`).
    pub chain: Chain,
}

/// The Envoy cluster of portcullis-admin's data plane (plain HTTP/1.1), on every node: the
/// jwt policy's `consumer_source` names it.
pub const ADMIN_CLUSTER: &str = "portcullis_admin";

/// The Envoy cluster of the rate limit service; `rate-limiting-redis.json` names it.
pub const RATELIMIT_CLUSTER: &str = "ratelimit";

/// The rate-limiting policy of the demo with a rate limit service, in the policies folder.
pub const REDIS_POLICY: &str = "rate-limiting-redis.json";

impl Demo {
    /// The config, ready for Envoy. Errors name the file or placeholder at fault.
    pub fn render(&self) -> Result<String, String> {
        let template = std::fs::read_to_string(&self.template)
            .map_err(|e| format!("{}: {e}", self.template.display()))?;
        fill(&template, &self.vars()?).map_err(|e| format!("{}: {e}", self.template.display()))
    }

    /// The placeholders' values:
    /// - `GATEWAY_ADDRESS`, `GATEWAY_PORT`, `ADMIN_ADDRESS`, `ADMIN_PORT`, for each
    ///   service `USERS_ADDRESS`, `USERS_PORT`, `ORDERS_…`, `PAYMENTS_…`, `LOGIN_…`, and
    ///   `PORTCULLIS_ADMIN_ADDRESS`, `PORTCULLIS_ADMIN_PORT` ([`Demo::portcullis_admin`]); an
    ///   address is a YAML double-quoted string (`"127.0.0.1"`, `"::1"`), a port a number;
    /// - for each filter, `JWT_WASM` (`TOKEN_ISSUER_WASM`, …): the module's absolute path,
    ///   and `JWT_POLICY`: the text of `policies/jwt.json`, checked to be JSON. Both come
    ///   as YAML double-quoted strings;
    /// - `RATELIMIT_CLUSTER`: with [`Demo::ratelimit`], an entry of `clusters` (indented for
    ///   a list at two spaces, on lines of its own); without, nothing;
    /// - with [`Demo::tls`], `GATEWAY_TLS`: the listener's `transport_socket` (HTTPS), and
    ///   `USERS_TLS` (`ORDERS_TLS`, …, `PORTCULLIS_ADMIN_TLS`): each cluster's (TLS to the
    ///   upstream); YAML blocks for a placeholder alone on its line. Without, all empty.
    /// - `ACCESS_LOG_PATH`: [`Demo::access_log`] (else `/dev/null`), a YAML double-quoted
    ///   string.
    /// - `HTTP_FILTERS`: the Portcullis entries of `http_filters`, as [`Demo::chain`] says: the
    ///   gateway module with the four policies as its stages, or the four filters; a YAML
    ///   block for a placeholder alone on its line.
    pub fn vars(&self) -> Result<BTreeMap<String, String>, String> {
        let mut vars = BTreeMap::new();
        let mut address = |name: &str, addr: SocketAddr| {
            vars.insert(format!("{name}_ADDRESS"), quote(&addr.ip().to_string()));
            vars.insert(format!("{name}_PORT"), addr.port().to_string());
        };
        address("GATEWAY", self.gateway);
        address("ADMIN", self.admin);
        address("PORTCULLIS_ADMIN", self.portcullis_admin);
        for service in Service::ALL {
            let addr = self
                .services
                .iter()
                .find(|(s, _)| *s == service)
                .map(|(_, addr)| *addr)
                .ok_or_else(|| format!("no address for {} ({})", service.name(), service.flag()))?;
            address(&service.flag()[2..].to_ascii_uppercase(), addr);
        }
        let mut stages = Vec::new();
        for filter in FILTERS {
            let name = filter.replace('-', "_").to_ascii_uppercase();
            let (wasm, policy) = (self.wasm(filter)?, self.policy(filter)?);
            vars.insert(format!("{name}_WASM"), quote(&wasm));
            vars.insert(format!("{name}_POLICY"), quote(&policy));
            stages.push((filter, wasm, policy));
        }
        let http_filters = match self.chain {
            Chain::Filters => stages
                .iter()
                .map(|(filter, wasm, policy)| wasm_entry(filter, wasm, policy))
                .collect::<Vec<_>>()
                .join("\n"),
            Chain::Gateway => {
                let members: Vec<String> = stages
                    .iter()
                    .map(|(filter, _, policy)| {
                        format!("\"{}\": {policy}", filter.replace('-', "_"))
                    })
                    .collect();
                let config = format!("{{{}}}", members.join(", "));
                wasm_entry("gateway", &self.wasm("gateway")?, &config)
            }
        };
        vars.insert("HTTP_FILTERS".to_owned(), http_filters);
        let tls = match &self.tls {
            Some(dir) => Some(TlsFiles::find(dir)?),
            None => None,
        };
        let upstream = |name: &str, alpn: &str| {
            tls.as_ref()
                .map(|files| files.upstream(name, alpn))
                .unwrap_or_default()
        };
        let cluster = self
            .ratelimit
            .map(|addr| ratelimit_cluster(addr, &upstream(certs::RATELIMIT.names[0], "h2")))
            .unwrap_or_default();
        vars.insert("RATELIMIT_CLUSTER".to_owned(), cluster);
        for service in Service::ALL {
            let name = format!("{}_TLS", service.flag()[2..].to_ascii_uppercase());
            vars.insert(name, upstream(service.name(), ""));
        }
        vars.insert(
            "PORTCULLIS_ADMIN_TLS".to_owned(),
            upstream(certs::ADMIN.names[0], ""),
        );
        let gateway = tls.as_ref().map(TlsFiles::downstream).unwrap_or_default();
        vars.insert("GATEWAY_TLS".to_owned(), gateway);
        let access_log = self.access_log.as_ref().map_or_else(
            || "/dev/null".to_owned(),
            |p| p.to_string_lossy().into_owned(),
        );
        vars.insert("ACCESS_LOG_PATH".to_owned(), quote(&access_log));
        Ok(vars)
    }

    /// The absolute path of `portcullis-<filter>.wasm`: Envoy resolves a relative one
    /// against its own working directory.
    fn wasm(&self, filter: &str) -> Result<String, String> {
        let path = self.dist.join(format!("portcullis-{filter}.wasm"));
        let absolute = path
            .canonicalize()
            .map_err(|e| format!("{}: {e} (run `make build`)", path.display()))?;
        Ok(absolute.to_string_lossy().into_owned())
    }

    /// The policy file's text, as written: the filter parses it, with its own error messages.
    fn policy(&self, filter: &str) -> Result<String, String> {
        let path = match self.ratelimit {
            Some(_) if filter == "rate-limiting" => self.policies.join(REDIS_POLICY),
            _ => self.policies.join(format!("{filter}.json")),
        };
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
        Ok(text.trim().to_owned())
    }
}

/// What each entry does, said above it in the rendered config.
fn purpose(filter: &str) -> &'static str {
    match filter {
        "token-issuer" => "Turns the login service's 200 into a signed JWT.",
        "jwt" => "Validates the JWT and hands the consumer on (Kong's jwt plugin).",
        "acl" => "Allows or denies by consumer group (Kong's acl plugin).",
        "rate-limiting" => "Counts requests per consumer and route (Kong's rate-limiting plugin).",
        _ => {
            "token-issuer, jwt, acl and rate-limiting as stages of one filter, in one VM \
             (make run CHAIN=filters: four filters, four VMs)."
        }
    }
}

/// One `http_filters` entry running `portcullis-<name>.wasm` (its absolute path) with
/// `policy` (JSON), failing closed; YAML at column 0.
fn wasm_entry(name: &str, wasm: &str, policy: &str) -> String {
    format!(
        "# {purpose}
- name: envoy.filters.http.wasm
  typed_config:
    \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    config:
      name: {name}
      root_id: {name}
      vm_config:
        vm_id: {name}
        runtime: envoy.wasm.runtime.v8
        code: {{ local: {{ filename: {wasm} }} }}
      configuration:
        \"@type\": type.googleapis.com/google.protobuf.StringValue
        value: {policy}
      fail_open: false",
        purpose = purpose(name),
        wasm = quote(wasm),
        policy = quote(policy),
    )
}

/// The demo's certificate files, by absolute path (Envoy resolves a relative one against its
/// own working directory).
struct TlsFiles {
    ca: String,
    dir: PathBuf,
}

impl TlsFiles {
    /// `dir` as `certs` left it: every file there, or an error naming the one missing.
    fn find(dir: &std::path::Path) -> Result<TlsFiles, String> {
        let missing = |path: PathBuf| {
            move |e: std::io::Error| {
                format!(
                    "{}: {e} (`portcullis-services certs --dir {}` writes it)",
                    path.display(),
                    dir.display()
                )
            }
        };
        let ca = dir.join(certs::CA_FILE);
        let ca = ca.canonicalize().map_err(missing(ca))?;
        for leaf in certs::LEAVES {
            for path in [leaf.cert(dir), leaf.key(dir)] {
                std::fs::metadata(&path).map_err(missing(path.clone()))?;
            }
        }
        let dir = ca.parent().map(PathBuf::from).unwrap_or_default();
        Ok(TlsFiles {
            ca: ca.to_string_lossy().into_owned(),
            dir,
        })
    }

    fn path(&self, file: PathBuf) -> String {
        quote(&file.to_string_lossy())
    }

    /// The listener's `transport_socket`: HTTPS with the gateway's certificate; HTTP/2 or
    /// HTTP/1.1 as the client offers (ALPN).
    fn downstream(&self) -> String {
        let leaf: Leaf = certs::GATEWAY;
        format!(
            "transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
    common_tls_context:
      alpn_protocols: [h2, http/1.1]
      tls_certificates:
      - certificate_chain: {{ filename: {} }}
        private_key: {{ filename: {} }}",
            self.path(leaf.cert(&self.dir)),
            self.path(leaf.key(&self.dir)),
        )
    }

    /// A cluster's `transport_socket`: TLS to the upstream called `name` (sent as SNI, and
    /// the name its certificate must hold), trusting the demo CA only; `alpn` (`h2`) when
    /// the cluster speaks HTTP/2.
    fn upstream(&self, name: &str, alpn: &str) -> String {
        let alpn = if alpn.is_empty() {
            String::new()
        } else {
            format!("\n      alpn_protocols: [{alpn}]")
        };
        format!(
            "transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
    sni: {name}
    common_tls_context:{alpn}
      validation_context:
        trusted_ca: {{ filename: {} }}
        match_typed_subject_alt_names:
        - san_type: DNS
          matcher: {{ exact: {name} }}",
            quote(&self.ca)
        )
    }
}

/// The rate limit service's cluster at `addr`: gRPC, so HTTP/2 to the upstream; `tls`, its
/// `transport_socket` (or nothing).
fn ratelimit_cluster(addr: SocketAddr, tls: &str) -> String {
    let tls = if tls.is_empty() {
        String::new()
    } else {
        format!("\n    {}", tls.replace('\n', "\n    "))
    };
    format!(
        "  - name: {RATELIMIT_CLUSTER}
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: {RATELIMIT_CLUSTER}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: {}, port_value: {} }}{tls}",
        quote(&addr.ip().to_string()),
        addr.port()
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A scratch copy of `policies/` and `dist/`, to break one file at a time.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(label: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!(
                "portcullis-services-{label}-{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            for sub in ["policies", "dist"] {
                std::fs::create_dir_all(dir.join(sub)).unwrap();
            }
            std::fs::write(
                dir.join("policies").join(REDIS_POLICY),
                "{\"policy\":\"redis\"}",
            )
            .unwrap();
            for filter in FILTERS {
                std::fs::write(dir.join(format!("policies/{filter}.json")), "{}\n").unwrap();
                std::fs::write(dir.join(format!("dist/portcullis-{filter}.wasm")), "").unwrap();
            }
            std::fs::write(dir.join("dist/portcullis-gateway.wasm"), "").unwrap();
            Scratch(dir)
        }

        fn demo(&self, template: &str) -> Demo {
            let path = self.0.join("demo.yaml.tmpl");
            std::fs::write(&path, template).unwrap();
            let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
            Demo {
                template: path,
                policies: self.0.join("policies"),
                dist: self.0.join("dist"),
                gateway: addr(8080),
                admin: addr(9901),
                services: Service::ALL
                    .iter()
                    .zip(18081..)
                    .map(|(s, port)| (*s, addr(port)))
                    .collect(),
                portcullis_admin: addr(8005),
                ratelimit: None,
                tls: None,
                access_log: None,
                chain: Chain::default(),
            }
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn render_fills_ports_wasm_paths_and_policies() {
        let scratch = Scratch::new("render");
        std::fs::write(
            scratch.0.join("policies/acl.json"),
            "{\n  \"allow\": [\"admins\"]\n}\n",
        )
        .unwrap();
        let demo = scratch.demo(
            "listen: {{GATEWAY_ADDRESS}}:{{GATEWAY_PORT}} admin: {{ADMIN_PORT}}\n\
             login: {{LOGIN_ADDRESS}}:{{LOGIN_PORT}} payments: {{PAYMENTS_PORT}}\n\
             data plane: {{PORTCULLIS_ADMIN_ADDRESS}}:{{PORTCULLIS_ADMIN_PORT}}\n\
             wasm: {{RATE_LIMITING_WASM}}\n\
             policy: {{ACL_POLICY}}\n",
        );
        let wasm = scratch
            .0
            .join("dist/portcullis-rate-limiting.wasm")
            .canonicalize()
            .unwrap();
        assert_eq!(
            demo.render(),
            Ok(format!(
                "listen: \"127.0.0.1\":8080 admin: 9901\n\
                 login: \"127.0.0.1\":18084 payments: 18083\n\
                 data plane: \"127.0.0.1\":8005\n\
                 wasm: {}\n\
                 policy: \"{{\\n  \\\"allow\\\": [\\\"admins\\\"]\\n}}\"\n",
                quote(&wasm.to_string_lossy())
            ))
        );
    }

    #[test]
    fn render_errors_name_the_file_at_fault() {
        let scratch = Scratch::new("errors");
        let demo = scratch.demo("{{JWT_POLICY}} {{NOPE}}");
        let error = demo.render().unwrap_err();
        assert!(
            error.ends_with("demo.yaml.tmpl: no value for NOPE"),
            "{error}"
        );

        std::fs::write(scratch.0.join("policies/jwt.json"), "{\"secret\": }").unwrap();
        let error = demo.render().unwrap_err();
        assert!(error.contains("policies/jwt.json: not JSON"), "{error}");
        std::fs::write(scratch.0.join("policies/jwt.json"), "{}").unwrap();

        std::fs::remove_file(scratch.0.join("dist/portcullis-acl.wasm")).unwrap();
        let error = demo.render().unwrap_err();
        assert!(
            error.contains("portcullis-acl.wasm") && error.contains("make build"),
            "{error}"
        );

        let mut partial = scratch.demo("");
        partial.services.retain(|(s, _)| *s != Service::Login);
        let error = partial.render().unwrap_err();
        assert_eq!(error, "no address for login-service (--login)");
    }

    #[test]
    fn a_rate_limit_service_adds_its_cluster_and_the_redis_policy() {
        let scratch = Scratch::new("ratelimit");
        let template = "clusters:\n  - name: users\n{{RATELIMIT_CLUSTER}}\n\
                        rl: {{RATELIMIT_CLUSTER}}|{{RATE_LIMITING_POLICY}}\n";
        let local = scratch.demo(template);
        assert_eq!(
            local.render(),
            Ok("clusters:\n  - name: users\n\nrl: |\"{}\"\n".to_owned())
        );
        let redis = Demo {
            ratelimit: Some(SocketAddr::from(([127, 0, 0, 1], 18085))),
            ..local
        };
        let config = redis.render().unwrap();
        assert!(
            config
                .starts_with("clusters:\n  - name: users\n  - name: ratelimit\n    type: STATIC\n"),
            "{config}"
        );
        assert!(
            config.contains("socket_address: { address: \"127.0.0.1\", port_value: 18085 }"),
            "{config}"
        );
        assert!(config.contains("http2_protocol_options"), "{config}");
        assert!(
            config.ends_with("|\"{\\\"policy\\\":\\\"redis\\\"}\"\n"),
            "{config}"
        );
    }

    /// `rate-limiting-redis.json` is `rate-limiting.json` counted by the rate limit service:
    /// the same limits, so the two-node demo shows the one-node demo's numbers.
    #[test]
    fn the_demo_redis_policy_is_the_local_one_plus_the_service() {
        let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../envoy-config/policies");
        let read = |name: &str| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(policies.join(name)).unwrap()).unwrap()
        };
        let mut redis = read(REDIS_POLICY);
        assert_eq!(redis["policy"], "redis");
        assert_eq!(
            redis["rate_limit_service"]["cluster"], RATELIMIT_CLUSTER,
            "{redis}"
        );
        let object = redis.as_object_mut().unwrap();
        object.remove("policy");
        object.remove("rate_limit_service");
        assert_eq!(redis, read("rate-limiting.json"));
    }

    /// The demo's jwt policy follows portcullis-admin through [`ADMIN_CLUSTER`], with a
    /// loopback authority: without a data-plane token the admin answers only a loopback
    /// `Host`, and the cluster's name (the default authority) is not one.
    #[test]
    fn the_demo_jwt_policy_follows_the_admin_cluster_with_a_loopback_authority() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../envoy-config/policies/jwt.json");
        let policy: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let source = &policy["consumer_source"];
        assert_eq!(source["cluster"], ADMIN_CLUSTER, "{policy}");
        assert_eq!(source["authority"], "localhost", "{policy}");
    }

    #[test]
    fn with_the_demo_certificates_the_listener_and_every_cluster_speak_tls() {
        let scratch = Scratch::new("tls");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let plain = Demo {
            template: root.join("envoy-config/demo.yaml.tmpl"),
            ratelimit: Some(SocketAddr::from(([127, 0, 0, 1], 18085))),
            ..scratch.demo("")
        };
        let config = plain.render().unwrap();
        assert!(!config.contains("envoy.transport_sockets.tls"), "{config}");

        let dir = scratch.0.join("tls");
        let missing = Demo {
            tls: Some(dir.clone()),
            ..plain.clone()
        };
        let error = missing.render().unwrap_err();
        assert!(
            error.contains("ca.pem") && error.contains("portcullis-services certs --dir"),
            "{error}"
        );
        certs::generate(&dir).unwrap();
        let config = missing.render().unwrap();
        let ca = quote(&dir.join("ca.pem").canonicalize().unwrap().to_string_lossy());
        // The listener: HTTPS with the gateway's certificate.
        let (listener, clusters) = config.split_once("  clusters:").unwrap();
        assert_eq!(
            listener.matches("DownstreamTlsContext").count(),
            1,
            "{config}"
        );
        assert!(listener.contains("gateway.pem"), "{listener}");
        assert!(listener.contains("gateway.key"), "{listener}");
        // Each cluster: TLS, its own name as SNI and in the certificate, the demo CA only.
        let clusters: Vec<&str> = clusters.split("\n  - name: ").skip(1).collect();
        let names: Vec<&str> = clusters.iter().map(|c| c.lines().next().unwrap()).collect();
        assert_eq!(
            names,
            [
                "user-service",
                "order-service",
                "payment-service",
                "login-service",
                "portcullis_admin",
                "ratelimit"
            ]
        );
        for (cluster, sni) in clusters.iter().zip([
            "user-service",
            "order-service",
            "payment-service",
            "login-service",
            "portcullis-admin",
            "ratelimit",
        ]) {
            assert!(cluster.contains("UpstreamTlsContext"), "{cluster}");
            assert!(cluster.contains(&format!("sni: {sni}\n")), "{cluster}");
            assert!(
                cluster.contains(&format!("matcher: {{ exact: {sni} }}")),
                "{cluster}"
            );
            assert!(
                cluster.contains(&format!("trusted_ca: {{ filename: {ca} }}")),
                "{cluster}"
            );
        }
        // gRPC over TLS: HTTP/2 by ALPN.
        assert!(
            clusters[5].contains("alpn_protocols: [h2]"),
            "{}",
            clusters[5]
        );
        assert!(!clusters[0].contains("alpn_protocols"), "{}", clusters[0]);
    }

    #[test]
    fn the_access_log_goes_to_the_file_given_else_nowhere() {
        let scratch = Scratch::new("access-log");
        let none = scratch.demo("path: {{ACCESS_LOG_PATH}}\n");
        assert_eq!(none.render(), Ok("path: \"/dev/null\"\n".to_owned()));
        let file = Demo {
            access_log: Some(PathBuf::from("/run dir/access.log")),
            ..none
        };
        assert_eq!(
            file.render(),
            Ok("path: \"/run dir/access.log\"\n".to_owned())
        );
    }

    #[test]
    fn a_chain_reads_back_from_its_name_and_nothing_else_is_one() {
        for chain in [Chain::Gateway, Chain::Filters] {
            assert_eq!(Chain::parse(chain.name()), Ok(chain));
        }
        assert!(Chain::parse("both").unwrap_err().contains("`gateway`"));
    }

    #[test]
    fn the_demo_template_needs_nothing_but_the_demo_values() {
        let scratch = Scratch::new("template");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let template = root.join("envoy-config/demo.yaml.tmpl");
        let demo = Demo {
            template,
            ..scratch.demo("")
        };
        // The four filters, each in its own VM; or the gateway with the four as its stages.
        let filters = Demo {
            chain: Chain::Filters,
            ..demo.clone()
        }
        .render()
        .unwrap();
        // Each module as a filename (a quoted path), not as a comment names it.
        let module = |name: &str| format!("portcullis-{name}.wasm\"");
        for filter in FILTERS {
            assert!(filters.contains(&module(filter)), "{filter}");
        }
        assert!(!filters.contains(&module("gateway")), "{filters}");
        let config = demo.render().unwrap();
        assert!(config.contains(&module("gateway")), "{config}");
        for filter in FILTERS {
            assert!(!config.contains(&module(filter)), "{config}");
            let stage = filter.replace('-', "_");
            assert!(
                config.contains(&format!("\\\"{stage}\\\": {{}}")),
                "{stage}: {config}"
            );
        }
        assert!(!config.contains("{{"), "{config}");
        assert!(!config.contains("name: ratelimit"), "{config}");
        let admin = config
            .split_once(&format!("  - name: {ADMIN_CLUSTER}\n"))
            .map(|(_, rest)| rest)
            .unwrap_or_else(|| panic!("no cluster {ADMIN_CLUSTER}: {config}"));
        assert!(
            admin.contains("socket_address: { address: \"127.0.0.1\", port_value: 8005 }"),
            "{config}"
        );
        let with_service = Demo {
            ratelimit: Some(SocketAddr::from(([127, 0, 0, 1], 18085))),
            ..demo
        }
        .render()
        .unwrap();
        assert!(with_service.contains("name: ratelimit"), "{with_service}");
    }
}
