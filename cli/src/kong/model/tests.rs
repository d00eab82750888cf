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
