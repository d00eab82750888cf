//! Renders the demo's Envoy config (`envoy-config/demo.yaml.tmpl`): fills in the addresses,
//! the absolute path of each filter's `.wasm`, and each filter's policy from
//! `envoy-config/policies/<filter>.json`. `make run` and the demo's end-to-end test both
//! render through here, so they run the same config.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::service::Service;

/// The filters of the demo chain, in the order the template runs them.
pub const FILTERS: [&str; 4] = ["token-issuer", "jwt", "acl", "rate-limiting"];

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
}

impl Demo {
    /// The config, ready for Envoy. Errors name the file or placeholder at fault.
    pub fn render(&self) -> Result<String, String> {
        let template = std::fs::read_to_string(&self.template)
            .map_err(|e| format!("{}: {e}", self.template.display()))?;
        fill(&template, &self.vars()?).map_err(|e| format!("{}: {e}", self.template.display()))
    }

    /// The placeholders' values:
    /// - `GATEWAY_ADDRESS`, `GATEWAY_PORT`, `ADMIN_ADDRESS`, `ADMIN_PORT`, and for each
    ///   service `USERS_ADDRESS`, `USERS_PORT`, `ORDERS_…`, `PAYMENTS_…`, `LOGIN_…`; an
    ///   address is a YAML double-quoted string (`"127.0.0.1"`, `"::1"`), a port a number;
    /// - for each filter, `JWT_WASM` (`TOKEN_ISSUER_WASM`, …): the module's absolute path,
    ///   and `JWT_POLICY`: the text of `policies/jwt.json`, checked to be JSON. Both come
    ///   as YAML double-quoted strings.
    pub fn vars(&self) -> Result<BTreeMap<String, String>, String> {
        let mut vars = BTreeMap::new();
        let mut address = |name: &str, addr: SocketAddr| {
            vars.insert(format!("{name}_ADDRESS"), quote(&addr.ip().to_string()));
            vars.insert(format!("{name}_PORT"), addr.port().to_string());
        };
        address("GATEWAY", self.gateway);
        address("ADMIN", self.admin);
        for service in Service::ALL {
            let addr = self
                .services
                .iter()
                .find(|(s, _)| *s == service)
                .map(|(_, addr)| *addr)
                .ok_or_else(|| format!("no address for {} ({})", service.name(), service.flag()))?;
            address(&service.flag()[2..].to_ascii_uppercase(), addr);
        }
        for filter in FILTERS {
            let name = filter.replace('-', "_").to_ascii_uppercase();
            vars.insert(format!("{name}_WASM"), quote(&self.wasm(filter)?));
            vars.insert(format!("{name}_POLICY"), quote(&self.policy(filter)?));
        }
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
        let path = self.policies.join(format!("{filter}.json"));
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
        Ok(text.trim().to_owned())
    }
}

/// A YAML double-quoted scalar: a JSON string literal is one, escapes included.
pub fn quote(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// Replaces each `{{NAME}}` (upper-case letters, digits, `_`) with its value; the error names
/// every placeholder `vars` lacks. Other braces are left alone.
pub fn fill(template: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut missing: Vec<&str> = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let (before, after) = rest.split_at(start);
        out.push_str(before);
        let inner = &after[2..];
        let name = inner.find("}}").map(|end| &inner[..end]).filter(|name| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        });
        match name {
            Some(name) => {
                match vars.get(name) {
                    Some(value) => out.push_str(value),
                    None if missing.contains(&name) => {}
                    None => missing.push(name),
                }
                rest = &inner[name.len() + 2..];
            }
            None => {
                out.push_str("{{");
                rest = inner;
            }
        }
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!("no value for {}", missing.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

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
            for filter in FILTERS {
                std::fs::write(dir.join(format!("policies/{filter}.json")), "{}\n").unwrap();
                std::fs::write(dir.join(format!("dist/portcullis-{filter}.wasm")), "").unwrap();
            }
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
            }
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn fill_replaces_placeholders_and_names_every_missing_one() {
        let values = vars(&[("A", "1"), ("B", "two")]);
        assert_eq!(fill("{{A}}-{{B}}-{{A}}", &values), Ok("1-two-1".to_owned()));
        assert_eq!(
            fill("{{A}} {{C}} {{D}} {{C}}", &values),
            Err("no value for C, D".to_owned())
        );
        assert_eq!(
            fill(r#"{"a":{}} {{ not }} {{"#, &values),
            Ok(r#"{"a":{}} {{ not }} {{"#.to_owned())
        );
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
    fn the_demo_template_needs_nothing_but_the_demo_values() {
        let scratch = Scratch::new("template");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let template = root.join("envoy-config/demo.yaml.tmpl");
        let demo = Demo {
            template,
            ..scratch.demo("")
        };
        let config = demo.render().unwrap();
        for filter in FILTERS {
            assert!(
                config.contains(&format!("portcullis-{filter}.wasm")),
                "{filter}"
            );
        }
        assert!(!config.contains("{{"), "{config}");
    }
}
