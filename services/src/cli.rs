//! The command line: serve some of the services, or render the demo's Envoy config.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::demo::{Chain, Demo};
use crate::service::Service;

pub const USAGE: &str = "\
usage: portcullis-services [--users ADDR] [--orders ADDR] [--payments ADDR] [--login ADDR]
                           [--login-users FILE] [--tls-cert FILE --tls-key FILE]
         serves each service given (at least one) until SIGINT or SIGTERM, logging one line
         per request; the login service checks FILE (default: the built-in
         services/fixtures/users.json); with --tls-cert and --tls-key (PEM), over HTTPS
       portcullis-services render --template FILE --policies DIR --dist DIR
                           --gateway ADDR --admin ADDR
                           --users ADDR --orders ADDR --payments ADDR --login ADDR
                           --portcullis-admin ADDR [--ratelimit ADDR] [--tls-dir DIR]
                           [--access-log FILE] [--chain gateway|filters]
         prints the demo's Envoy config (envoy-config/demo.yaml.tmpl filled in), with the
         cluster portcullis_admin at --portcullis-admin (portcullis-admin's data plane); with
         --ratelimit, rate-limiting policy redis: the rate limit service's cluster at ADDR
         and the policy from rate-limiting-redis.json; with --tls-dir (what `certs` wrote),
         HTTPS on the gateway listener and TLS to every upstream, each checked against
         DIR/ca.pem and its name; the JSON access log goes to FILE (default /dev/null: none);
         --chain filters: the four filters, each in its own VM, instead of the one-VM gateway
       portcullis-services certs --dir DIR
         writes a new demo CA (DIR/ca.pem, its key kept nowhere) and a certificate and key
         it signs for the gateway, the services, portcullis-admin and the rate limit service
ADDR is IP:PORT, such as 127.0.0.1:18081; port 0 takes any free port.";

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Help,
    Serve(Serve),
    Render(Demo),
    /// `certs --dir DIR`.
    Certs(PathBuf),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Serve {
    /// In command-line order.
    pub services: Vec<(Service, SocketAddr)>,
    pub login_users: Option<PathBuf>,
    /// `--tls-cert`, `--tls-key`: both or neither.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// Parses the arguments after the program name. The error says what is wrong, not how to
/// use the program: print [`USAGE`] after it.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter().peekable();
    if args.next_if(|first| first == "certs").is_some() {
        return certs(args);
    }
    let render = args.next_if(|first| first == "render").is_some();
    let mut services: Vec<(Service, SocketAddr)> = Vec::new();
    let mut paths: Vec<(String, PathBuf)> = Vec::new();
    let mut listeners: Vec<(String, SocketAddr)> = Vec::new();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(Command::Help);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let allowed: &[&str] = if render {
            &[
                "--template",
                "--policies",
                "--dist",
                "--gateway",
                "--admin",
                "--portcullis-admin",
                "--ratelimit",
                "--tls-dir",
                "--access-log",
                "--chain",
            ]
        } else {
            &["--login-users", "--tls-cert", "--tls-key"]
        };
        if let Some(service) = Service::from_flag(&flag) {
            if services.iter().any(|(s, _)| *s == service) {
                return Err(format!("{flag} given twice"));
            }
            services.push((service, address(&flag, &value)?));
        } else if !allowed.contains(&flag.as_str()) {
            return Err(format!("unknown argument {flag:?}"));
        } else if paths.iter().any(|(f, _)| *f == flag) || listeners.iter().any(|(f, _)| *f == flag)
        {
            return Err(format!("{flag} given twice"));
        } else if ["--gateway", "--admin", "--portcullis-admin", "--ratelimit"]
            .contains(&flag.as_str())
        {
            listeners.push((flag.clone(), address(&flag, &value)?));
        } else {
            paths.push((flag, PathBuf::from(value)));
        }
    }
    if render {
        let path = |flag: &str| {
            paths
                .iter()
                .find(|(f, _)| f == flag)
                .map(|(_, p)| p.clone())
                .ok_or_else(|| format!("render needs {flag}"))
        };
        let listener = |flag: &str| {
            listeners
                .iter()
                .find(|(f, _)| f == flag)
                .map(|(_, a)| *a)
                .ok_or_else(|| format!("render needs {flag}"))
        };
        if let Some(service) = Service::ALL
            .into_iter()
            .find(|s| !services.iter().any(|(given, _)| given == s))
        {
            return Err(format!("render needs {}", service.flag()));
        }
        let chain = match path("--chain") {
            Ok(chain) => Chain::parse(&chain.to_string_lossy())?,
            Err(_) => Chain::default(),
        };
        return Ok(Command::Render(Demo {
            template: path("--template")?,
            policies: path("--policies")?,
            dist: path("--dist")?,
            gateway: listener("--gateway")?,
            admin: listener("--admin")?,
            services,
            portcullis_admin: listener("--portcullis-admin")?,
            ratelimit: listener("--ratelimit").ok(),
            tls: path("--tls-dir").ok(),
            access_log: path("--access-log").ok(),
            chain,
        }));
    }
    if services.is_empty() {
        return Err(
            "no service to serve: give at least one of --users, --orders, --payments, --login"
                .into(),
        );
    }
    let mut take = |flag: &str| {
        paths
            .iter()
            .position(|(f, _)| f == flag)
            .map(|i| paths.remove(i).1)
    };
    let tls = match (take("--tls-cert"), take("--tls-key")) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => return Err("--tls-cert: needs --tls-key, its private key".into()),
        (None, Some(_)) => {
            return Err("--tls-key: needs --tls-cert, the certificate it belongs to".into())
        }
    };
    Ok(Command::Serve(Serve {
        services,
        login_users: take("--login-users"),
        tls,
    }))
}

/// `certs --dir DIR`: nothing else.
fn certs(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    match (args.next().as_deref(), args.next(), args.next()) {
        (Some("-h" | "--help"), None, None) => Ok(Command::Help),
        (Some("--dir"), Some(dir), None) => Ok(Command::Certs(PathBuf::from(dir))),
        (Some("--dir"), None, None) => Err("--dir needs a value".into()),
        (None, _, _) => Err("certs needs --dir DIR".into()),
        (Some("--dir"), Some(_), Some(extra)) => Err(format!("unknown argument {extra:?}")),
        (Some(other), _, _) => Err(format!("unknown argument {other:?}")),
    }
}

fn address(flag: &str, value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: expected IP:PORT such as 127.0.0.1:18081, got {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Command, String> {
        parse(line.split_whitespace().map(str::to_owned))
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn serve_takes_any_subset_of_services_in_order() {
        let Ok(Command::Serve(serve)) =
            parse_line("--payments 127.0.0.1:18083 --users 127.0.0.1:0 --login-users u.json")
        else {
            panic!("not a serve command");
        };
        assert_eq!(
            serve,
            Serve {
                services: vec![
                    (Service::Payments, addr("127.0.0.1:18083")),
                    (Service::Users, addr("127.0.0.1:0")),
                ],
                login_users: Some(PathBuf::from("u.json")),
                tls: None,
            }
        );
        let Ok(Command::Serve(serve)) =
            parse_line("--users 127.0.0.1:0 --tls-key k.pem --tls-cert c.pem")
        else {
            panic!("not a serve command");
        };
        assert_eq!(
            serve.tls,
            Some((PathBuf::from("c.pem"), PathBuf::from("k.pem")))
        );
        assert_eq!(serve.login_users, None);
    }

    #[test]
    fn certs_takes_a_directory_and_nothing_else() {
        let Ok(Command::Certs(dir)) = parse_line("certs --dir .run/tls") else {
            panic!("not a certs command");
        };
        assert_eq!(dir, PathBuf::from(".run/tls"));
        for (line, expected) in [
            ("certs", "certs needs --dir DIR"),
            ("certs --dir", "--dir needs a value"),
            ("certs --dir a b", "unknown argument \"b\""),
            ("certs --out a", "unknown argument \"--out\""),
        ] {
            assert_eq!(parse_line(line).unwrap_err(), expected, "{line}");
        }
    }

    #[test]
    fn render_needs_every_address_and_path() {
        let full = "render --template t --policies p --dist d --gateway 127.0.0.1:8080 \
                    --admin 127.0.0.1:9901 --users 127.0.0.1:1 --orders 127.0.0.1:2 \
                    --payments 127.0.0.1:3 --login 127.0.0.1:4 --portcullis-admin 127.0.0.1:8005";
        let Ok(Command::Render(demo)) = parse_line(full) else {
            panic!("not a render command");
        };
        assert_eq!(demo.gateway, addr("127.0.0.1:8080"));
        assert_eq!(demo.services.len(), 4);
        assert_eq!(demo.dist, PathBuf::from("d"));
        assert_eq!(demo.portcullis_admin, addr("127.0.0.1:8005"));
        assert_eq!(demo.ratelimit, None);
        assert_eq!(demo.tls, None);
        let Ok(Command::Render(demo)) = parse_line(&format!("{full} --tls-dir .run/tls")) else {
            panic!("not a render command");
        };
        assert_eq!(demo.tls, Some(PathBuf::from(".run/tls")));
        let Ok(Command::Render(demo)) = parse_line(&format!("{full} --ratelimit 127.0.0.1:5"))
        else {
            panic!("not a render command");
        };
        assert_eq!(demo.ratelimit, Some(addr("127.0.0.1:5")));
        assert_eq!(demo.access_log, None);
        let Ok(Command::Render(demo)) = parse_line(&format!("{full} --access-log .run/a.log"))
        else {
            panic!("not a render command");
        };
        assert_eq!(demo.access_log, Some(PathBuf::from(".run/a.log")));
        assert_eq!(
            parse_line("--users 127.0.0.1:1 --access-log x").unwrap_err(),
            "unknown argument \"--access-log\""
        );
        let without_login = full.replace(" --login 127.0.0.1:4", "");
        assert_eq!(
            parse_line(&without_login).unwrap_err(),
            "render needs --login"
        );
        let without_admin = full.replace(" --portcullis-admin 127.0.0.1:8005", "");
        assert_eq!(
            parse_line(&without_admin).unwrap_err(),
            "render needs --portcullis-admin"
        );
        let without_dist = full.replace(" --dist d", "");
        assert_eq!(
            parse_line(&without_dist).unwrap_err(),
            "render needs --dist"
        );
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("", "no service to serve"),
            ("--users", "--users needs a value"),
            ("--users 18081", "--users: expected IP:PORT"),
            ("--users localhost:18081", "--users: expected IP:PORT"),
            (
                "--users 127.0.0.1:1 --users 127.0.0.1:2",
                "--users given twice",
            ),
            ("--user 127.0.0.1:1", "unknown argument \"--user\""),
            ("--gateway 127.0.0.1:1", "unknown argument \"--gateway\""),
            (
                "render --login-users f",
                "unknown argument \"--login-users\"",
            ),
            ("render --dist a --dist b", "--dist given twice"),
            (
                "--ratelimit 127.0.0.1:1",
                "unknown argument \"--ratelimit\"",
            ),
            ("render --ratelimit 6379", "--ratelimit: expected IP:PORT"),
            (
                "--users 127.0.0.1:1 --tls-cert c.pem",
                "--tls-cert: needs --tls-key",
            ),
            (
                "--users 127.0.0.1:1 --tls-key k.pem",
                "--tls-key: needs --tls-cert",
            ),
            ("render --tls-cert c.pem", "unknown argument \"--tls-cert\""),
            ("--tls-dir d", "unknown argument \"--tls-dir\""),
        ];
        for (line, expected) in cases {
            let error = parse_line(line).unwrap_err();
            assert!(error.starts_with(expected), "{line:?}: {error}");
        }
        assert!(matches!(parse_line("--help"), Ok(Command::Help)));
    }
}
