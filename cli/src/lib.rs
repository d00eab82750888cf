//! `portcullis`, the command line. `portcullis kong import` turns a Kong declarative
//! configuration (`kong.yml`, decK's files; `_format_version` 1.1, 2.1, 3.0; YAML or JSON)
//! into a runnable Envoy bootstrap with the Portcullis filters, their policies, and a report
//! of everything not carried over. The conversion is plain Rust, tested without Envoy; only
//! `run` touches files, standard streams and the network.
//!
//! | module | holds |
//! |---|---|
//! | `kong::input` | reading the file: bounds, YAML or JSON, document order, duplicate keys |
//! | `kong::fields` | typed access to one mapping, each field with its path |
//! | `kong::model` | Kong's entities, flattened, references resolved, defaults per version |
//! | `kong::regex` | PCRE → RE2 |
//! | `kong::routes` | Kong routes → Envoy routes: matching, Kong's order, path joining |
//! | `kong::plugins` | jwt, acl, rate-limiting → the filters' policies, with Kong's precedence |
//! | `envoy` | the bootstrap |
//! | `report` | what was not carried over, and why |
//! | `admin` | `--admin-url`: consumers into portcullis-admin |
//! | `cli` | the arguments, the output directory, exit codes |

pub mod admin;
pub mod cli;
pub mod envoy;
pub mod kong;
pub mod report;

use std::fmt;

use report::{Loc, Report};

/// Malformed input: where (its path in the file; empty for the whole file) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    pub path: String,
    pub message: String,
}

impl InputError {
    pub fn at(at: &Loc, message: impl Into<String>) -> InputError {
        InputError {
            path: at.path.clone(),
            message: message.into(),
        }
    }

    pub fn root(message: impl Into<String>) -> InputError {
        InputError {
            path: String::new(),
            message: message.into(),
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Everything `convert` needs besides the input.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    pub envoy: envoy::EnvoyOptions,
    /// `--admin-url` given: consumers go to portcullis-admin.
    pub admin: bool,
}

/// The conversion's result, not yet written.
#[derive(Clone, Debug)]
pub struct Conversion {
    /// Relative path → content.
    pub files: Vec<(String, String)>,
    pub report: Report,
    /// The one-line summary.
    pub summary: String,
    /// What `--admin-url` loads.
    pub admin_load: Vec<kong::plugins::AdminConsumer>,
}

/// Converts a Kong declarative file (its bytes) into the output files.
pub fn convert(bytes: &[u8], options: &ConvertOptions) -> Result<Conversion, InputError> {
    let (root, _) = kong::input::parse(bytes).map_err(InputError::root)?;
    let mut report = Report::new();
    let config = kong::model::read(&root, &mut report)?;
    let envoy_routes = kong::routes::envoy_routes(&config, &mut report);
    let admin_authority = options.admin.then(|| {
        let dp = options.envoy.admin_data_plane.as_ref();
        match dp.map(|d| d.host.as_str()) {
            Some(h) if is_loopback(h) => "localhost".to_owned(),
            Some(h) => h.to_owned(),
            None => "localhost".to_owned(),
        }
    });
    let policy_options = kong::plugins::PolicyOptions {
        rate_limit_service: options.envoy.rate_limit_service.is_some(),
        admin_authority,
    };
    let policies = kong::plugins::policies(&config, &policy_options, &mut report)?;
    self_check(&policies)?;
    let yaml = envoy::bootstrap(&config, &envoy_routes, &policies, &options.envoy)
        .map_err(InputError::root)?;

    let mut files = vec![("envoy.yaml".to_owned(), yaml)];
    for (name, policy) in [
        ("jwt", &policies.jwt),
        ("acl", &policies.acl),
        ("rate-limiting", &policies.rate_limiting),
    ] {
        if let Some(p) = policy {
            let text =
                serde_json::to_string_pretty(p).map_err(|e| InputError::root(e.to_string()))?;
            files.push((format!("policies/{name}.json"), format!("{text}\n")));
        }
    }
    files.push(("report.txt".to_owned(), report.render()));

    let carried_routes = config.routes.iter().filter(|r| r.carried).count();
    let converted_routes = {
        let mut names: Vec<&str> = envoy_routes.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names.len()
    };
    let services = config.services.iter().filter(|s| s.carried).count();
    let consumers = match (&policies.jwt, options.admin) {
        (_, true) => policies.admin_load.len(),
        (Some(jwt), false) => jwt
            .get("consumers")
            .and_then(|c| c.as_array())
            .map_or(0, Vec::len),
        (None, false) => 0,
    };
    let _ = carried_routes;
    let summary = format!(
        "{converted_routes} routes ({} Envoy routes), {services} services, {consumers} consumers, {} plugins carried; {} items reported",
        envoy_routes.len(),
        policies.carried_plugins,
        report.len()
    );
    Ok(Conversion {
        files,
        report,
        summary,
        admin_load: policies.admin_load,
    })
}

/// The jwt and acl policies read back with the filters' own parsers (`portcullis_core`):
/// a value the converter let through that a filter would refuse stops the conversion here,
/// naming it, rather than stopping Envoy later.
fn self_check(policies: &kong::plugins::Policies) -> Result<(), InputError> {
    if let Some(jwt) = &policies.jwt {
        portcullis_core::jwt::JwtPolicySet::from_json(jwt.to_string().as_bytes()).map_err(|e| {
            InputError::root(format!(
                "the jwt policy would be refused by the filter: {e}"
            ))
        })?;
    }
    if let Some(acl) = &policies.acl {
        portcullis_core::acl::AclPolicySet::from_json(acl.to_string().as_bytes()).map_err(|e| {
            InputError::root(format!(
                "the acl policy would be refused by the filter: {e}"
            ))
        })?;
    }
    Ok(())
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
