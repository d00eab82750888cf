use serde_json::json;

use super::*;
use crate::kong::input::parse;
use crate::kong::model::read;

fn convert(text: &str, options: &PolicyOptions) -> Result<(Policies, Report), InputError> {
    let (node, _) = parse(text.as_bytes()).map_err(InputError::root)?;
    let mut report = Report::new();
    let config = read(&node, &mut report)?;
    let policies = policies(&config, options, &mut report)?;
    Ok((policies, report))
}

fn ok(text: &str) -> (Policies, Report) {
    convert(text, &PolicyOptions::default()).unwrap()
}

const FOUR_ROUTES: &str = r#"
_format_version: "3.0"
services:
- name: s
  url: http://s.internal
  routes:
  - {name: r-global, paths: [/g]}
  - {name: r-service, paths: [/s]}
  - {name: r-route, paths: [/r]}
  - {name: r-both, paths: [/b]}
- name: other
  url: http://o.internal
  routes:
  - {name: o-global, paths: [/o]}
"#;

#[test]
fn the_most_specific_instance_wins_per_route() {
    let text = format!(
        "{FOUR_ROUTES}plugins:
- {{name: acl, config: {{allow: [global]}}}}
- {{name: acl, service: s, config: {{allow: [service]}}}}
- {{name: acl, route: r-route, config: {{allow: [route]}}}}
- {{name: acl, route: r-both, config: {{allow: [route-only]}}}}
- {{name: acl, route: r-both, service: s, config: {{allow: [route-and-service]}}}}
- {{name: acl, route: r-global, enabled: false, config: {{allow: [disabled]}}}}
consumers:
- username: c
  plugins:
  - {{name: acl, config: {{allow: [consumer]}}}}
"
    );
    let (p, report) = ok(&text);
    let acl = p.acl.unwrap();
    let allow = |route: &str| {
        acl["routes"][route]["allow"][0]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    // s has a service-level instance, so the global one reaches only `other`.
    assert_eq!(
        allow("r-global"),
        "service",
        "a disabled instance shadows nothing"
    );
    assert_eq!(allow("r-service"), "service");
    assert_eq!(allow("r-route"), "route");
    assert_eq!(allow("r-both"), "route-and-service");
    assert_eq!(allow("o-global"), "global");
    assert_eq!(
        acl["allow"][0], "global",
        "the global instance is the top level"
    );
    let lines = report.render();
    assert!(
        lines.contains("plugins[5] (acl): plugin acl — disabled (`enabled: false`): not converted"),
        "{lines}"
    );
    assert!(
        lines.contains("consumers[0].plugins[0] (acl): plugin acl — scoped to consumer c"),
        "{lines}"
    );
}

#[test]
fn routes_without_an_instance_are_public_and_filters_unused_are_absent() {
    let text = format!("{FOUR_ROUTES}plugins:\n- {{name: jwt, route: r-route}}\n");
    let (p, _) = ok(&text);
    let jwt = p.jwt.unwrap();
    assert_eq!(
        jwt["public"], true,
        "no global jwt: the top level is public"
    );
    assert_eq!(jwt["routes"]["r-route"]["public"], false);
    for route in ["r-global", "r-service", "r-both", "o-global", NO_ROUTE] {
        assert_eq!(jwt["routes"][route], json!({"public": true}), "{route}");
    }
    assert!(p.acl.is_none() && p.rate_limiting.is_none());
}

#[test]
fn jwt_writes_kongs_effective_values() {
    let (p, _) = ok("_format_version: \"3.0\"\nplugins:\n- name: jwt\n");
    let jwt = p.jwt.unwrap();
    let route = &jwt["routes"][NO_ROUTE];
    assert_eq!(route, &json!({"public": true}));
    for (key, value) in [
        ("uri_param_names", json!(["jwt"])),
        ("cookie_names", json!([])),
        ("header_names", json!(["authorization"])),
        ("key_claim_name", json!("iss")),
        ("claims_to_verify", json!([])),
        ("exp_required", json!(false)),
        ("leeway", json!(0)),
        ("maximum_expiration", json!(0)),
        ("run_on_preflight", json!(true)),
        ("hide_credentials", json!(false)),
        ("public", json!(false)),
    ] {
        assert_eq!(jwt[key], value, "{key}");
    }
    let (p, _) = ok("_format_version: \"3.0\"\nplugins:\n- {name: jwt, config: {claims_to_verify: [exp], maximum_expiration: 60}}\n");
    let jwt = p.jwt.unwrap();
    assert_eq!(
        (
            jwt["exp_required"].clone(),
            jwt["maximum_expiration"].clone()
        ),
        (json!(true), json!(60))
    );
    let e = convert(
        "_format_version: \"3.0\"\nplugins:\n- {name: jwt, config: {maximum_expiration: 60}}\n",
        &PolicyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "Kong needs \"exp\" in claims_to_verify for maximum_expiration"
    );
}

#[test]
fn credentials_the_filter_refuses_are_reported_with_its_reason() {
    let (p, report) = ok(r#"
_format_version: "3.0"
plugins:
- name: jwt
consumers:
- username: a
  jwt_secrets:
  - {key: short, secret: tooshort}
  - {key: hs384-short, algorithm: HS384, secret: 0123456789abcdef0123456789abcdef0123}
  - {key: fine, secret: 0123456789abcdef0123456789abcdef}
  - {key: es512, algorithm: ES512, rsa_public_key: x}
  - {key: bad-pem, algorithm: RS256, rsa_public_key: not a key}
"#);
    let jwt = p.jwt.unwrap();
    assert_eq!(
        jwt["consumers"][0]["credentials"],
        json!([{"key": "fine", "algorithm": "HS256", "secret": "0123456789abcdef0123456789abcdef"}])
    );
    let lines = report.render();
    assert!(lines.contains("consumers[0].jwt_secrets[0].secret: credential \"short\" (HS256) — 8 bytes, HS256 needs at least 32 (Kong accepts it; Portcullis refuses HMAC keys shorter than the hash): not converted"), "{lines}");
    assert!(lines.contains("consumers[0].jwt_secrets[1].secret: credential \"hs384-short\" (HS384) — 36 bytes, HS384 needs at least 48"), "{lines}");
    assert!(
        lines.contains("consumers[0].jwt_secrets[3].algorithm: algorithm ES512"),
        "{lines}"
    );
    assert!(
        lines.contains("consumers[0].jwt_secrets[4] (bad-pem): credential \"bad-pem\" (RS256) — "),
        "{lines}"
    );
    assert_eq!(report.len(), 4);
}

#[test]
fn secret_is_base64_is_one_decision_for_every_credential() {
    let (p, report) = ok(r#"
_format_version: "3.0"
services:
- {name: s, url: "http://s", routes: [{name: r, paths: [/r], plugins: [{name: jwt, config: {secret_is_base64: false}}]}]}
plugins:
- {name: jwt, config: {secret_is_base64: true}}
consumers:
- username: a
  jwt_secrets: [{key: k, secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=}]
"#);
    let jwt = p.jwt.unwrap();
    assert!(jwt["consumers"][0]["credentials"][0]["secret_base64"].is_string());
    assert_eq!(
            report.render(),
            "services[0].routes[0].plugins[0].config.secret_is_base64: field secret_is_base64 (false) — credentials are shared by every jwt instance in Portcullis: they are read as plugins[0] (jwt) says (secret_is_base64: true)\n"
        );
}

#[test]
fn acl_reads_allow_deny_and_kong_1_names() {
    let (p, _) = ok("_format_version: \"1.1\"\nplugins:\n- {name: acl, config: {blacklist: [banned], hide_groups_header: true}}\n");
    let acl = p.acl.unwrap();
    assert_eq!(
        (acl["deny"].clone(), acl["hide_groups_header"].clone()),
        (json!(["banned"]), json!(true))
    );
    for (config, message) in [
        (
            "{allow: [a], deny: [b]}",
            "allow and deny together: Kong takes one of them",
        ),
        (
            "{hide_groups_header: true}",
            "neither allow nor deny: Kong needs one of them",
        ),
    ] {
        let e = convert(
            &format!("_format_version: \"3.0\"\nplugins:\n- {{name: acl, config: {config}}}\n"),
            &PolicyOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("plugins[0].config", message)
        );
    }
    let (p, report) = ok("_format_version: \"3.0\"\nplugins:\n- {name: acl, config: {allow: ['a,b', ok], always_use_authenticated_groups: true}}\n");
    assert_eq!(p.acl.unwrap()["allow"], json!(["ok"]));
    assert_eq!(
            report.render(),
            "plugins[0].config.allow[0]: group \"a,b\" — holds a comma: Portcullis refuses such group names (X-Consumer-Groups is comma-separated); not converted\n\
             plugins[0].config.always_use_authenticated_groups: acl always_use_authenticated_groups (true) — groups come from the identity jwt hands on; there are no other authenticated groups\n"
        );
}

#[test]
fn rate_limiting_maps_every_field_and_overrides_the_global_only_when_there_is_one() {
    let text = format!(
            "{FOUR_ROUTES}plugins:
- {{name: rate-limiting, route: r-route, config: {{second: 1, minute: 2, hour: 3, day: 4, month: 5, year: 6, limit_by: header, header_name: x-key, fault_tolerant: false, hide_client_headers: true, error_code: 418, error_message: no}}}}
"
        );
    let (p, _) = ok(&text);
    let rl = p.rate_limiting.unwrap();
    assert_eq!(
        rl["routes"]["r-route"],
        json!({"second": 1, "minute": 2, "hour": 3, "day": 4, "month": 5, "year": 6,
                   "limit_by": "header", "header_name": "x-key", "algorithm": "fixed",
                   "xff_num_trusted_hops": 0, "ipv6_prefix_length": 128, "fault_tolerant": false,
                   "hide_client_headers": true, "error_code": 418, "error_message": "no"})
    );
    assert!(rl.get("minute").is_none(), "no global limit");
    assert_eq!(rl["policy"], "local");

    let text = format!(
        "{FOUR_ROUTES}plugins:
- {{name: rate-limiting, config: {{minute: 100}}}}
- {{name: rate-limiting, service: s, config: {{minute: 10}}}}
- {{name: rate-limiting, route: r-route, config: {{minute: 5}}}}
"
    );
    let (p, report) = ok(&text);
    let rl = p.rate_limiting.unwrap();
    assert_eq!(rl["minute"], 100);
    assert_eq!(rl["routes"]["r-route"]["minute"], 5);
    assert_eq!(rl["routes"]["r-route"]["override_global"], true);
    assert_eq!(rl["routes"]["r-both"]["minute"], 10);
    assert!(
        rl["routes"].get("o-global").is_none(),
        "the global instance stays global"
    );
    assert_eq!(
            report.render(),
            "plugins[1] (rate-limiting): plugin rate-limiting on a service — Kong counts one limit shared by the service's routes; Portcullis counts each route on its own (r-global, r-service, r-both): a client gets up to 3× the limit across them\n"
        );
}

#[test]
fn rate_limiting_values_portcullis_cannot_take_are_reported() {
    let (p, report) = ok("_format_version: \"2.1\"\nplugins:\n- {name: rate-limiting, config: {minute: 2.5, limit_by: consumer-group, error_code: 200, sync_rate: 5, redis_host: r}}\n");
    let rl = p.rate_limiting.unwrap();
    assert_eq!(
        (
            rl["minute"].clone(),
            rl["limit_by"].clone(),
            rl["error_code"].clone()
        ),
        (json!(2), json!("consumer"), json!(429))
    );
    assert_eq!(
            report.render(),
            // The policy is absent: reported at the config mapping's place, first.
            "plugins[0].config.policy: policy cluster (Kong's default before 3.0) — Kong's database counter is not available: counted per Envoy (policy local); give --rate-limit-service to share the count across Envoy nodes\n\
             plugins[0].config.minute: rate-limiting minute (2.5) — Portcullis counts whole requests: limited to 2\n\
             plugins[0].config.limit_by: rate-limiting limit_by (\"consumer-group\") — consumer groups are not converted: counted per consumer\n\
             plugins[0].config.error_code: rate-limiting error_code (200) — Portcullis answers refusals with a status in 400..=599: 429 instead\n\
             plugins[0].config.sync_rate: rate-limiting sync_rate (5) — not built: Portcullis counts every request where it is counted (shared data, or the rate limit service)\n"
        );
    for (config, path, message) in [
        (
            "{minute: 0}",
            "plugins[0].config.minute",
            "must be greater than 0: 0",
        ),
        (
            "{limit_by: ip}",
            "plugins[0].config",
            "no limit: Kong needs one of second, minute, hour, day, month, year",
        ),
        (
            "{minute: 1, limit_by: header}",
            "plugins[0].config.header_name",
            "limit_by header needs header_name",
        ),
        (
            "{minute: 1, limit_by: nobody}",
            "plugins[0].config.limit_by",
            "\"nobody\": not one of Kong's limit_by values",
        ),
    ] {
        let e = convert(
            &format!(
                "_format_version: \"3.0\"\nplugins:\n- {{name: rate-limiting, config: {config}}}\n"
            ),
            &PolicyOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            (path, message),
            "{config}"
        );
    }
}

#[test]
fn cluster_counts_through_the_rate_limit_service_when_there_is_one() {
    let options = PolicyOptions {
        rate_limit_service: true,
        admin_authority: None,
    };
    let (p, report) = convert(
        "_format_version: \"2.1\"\nplugins:\n- {name: rate-limiting, config: {minute: 5}}\n",
        &options,
    )
    .unwrap();
    assert!(p.uses_rate_limit_service);
    let rl = p.rate_limiting.unwrap();
    assert_eq!(rl["policy"], "redis");
    assert_eq!(rl["rate_limit_service"]["cluster"], "portcullis_ratelimit");
    assert!(report.render().contains("policy cluster — Kong's database counter is not available: counted by the rate limit service"));
}

#[test]
fn other_plugins_name_their_envoy_counterpart() {
    let (_, report) = ok("_format_version: \"3.0\"\nplugins:\n- name: cors\n- name: ip-restriction\n- name: my-custom\n");
    assert_eq!(
            report.render(),
            "plugins[0] (cors): plugin cors — not converted: use Envoy's envoy.filters.http.cors (and a cors policy on the virtual host)\n\
             plugins[1] (ip-restriction): plugin ip-restriction — not converted: use Envoy's envoy.filters.http.rbac (remote_ip / direct_remote_ip principals)\n\
             plugins[2] (my-custom): plugin my-custom — not converted: no Portcullis filter; the converter knows no Envoy counterpart\n"
        );
}

#[test]
fn a_route_matching_an_identity_header_is_not_converted_nor_its_plugins() {
    let (p, report) = ok(r#"
_format_version: "3.0"
services:
- name: s
  url: http://s.internal
  routes:
  - {name: admins, paths: [/payments], headers: {X-Consumer-Groups: [admins]}}
  - {name: payments, paths: [/payments]}
plugins:
- {name: acl, route: admins, config: {allow: [admins]}}
- {name: acl, route: payments, config: {allow: [admins]}}
"#);
    let acl = p.acl.unwrap();
    assert!(acl["routes"].get("admins").is_none(), "{acl}");
    assert_eq!(acl["routes"]["payments"]["allow"], json!(["admins"]));
    let lines = report.render();
    assert!(
        lines.contains("headers x-consumer-groups")
            && lines.contains("the route is not converted")
            && lines.contains("plugins[0] (acl): plugin acl — on a route that is not converted"),
        "{lines}"
    );
}
