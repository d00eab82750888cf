//! `portcullis kong import` as a user runs it: the binary on the fixtures, what it writes,
//! prints and exits with, and the written Envoy configuration through a real
//! `envoy --mode validate` (which loads each filter and runs its configuration check).
//! Needs `dist/*.wasm` (`make build`) and an Envoy (`$PORTCULLIS_ENVOY` or `.venv`).

mod common;

use std::fs;

use common::{fixture, import, json, read, route_names, run_with};
use portcullis_tests::paths::ScratchDir;

#[test]
fn the_seed_converts_the_same_from_every_format_and_envoy_takes_it() {
    let runs: Vec<(&str, common::Run)> = [
        "seed-3.0.yml",
        "seed-3.0.json",
        "seed-2.1.yml",
        "seed-1.1.yml",
    ]
    .into_iter()
    .map(|f| (f, import(f, &[])))
    .collect();
    for (name, run) in &runs {
        assert_eq!(run.code, 0, "{name}: {}{}", run.stdout, run.stderr);
        assert_eq!(read(&run.file("report.txt")), "", "{name}");
        assert_eq!(
            run.stdout.trim(),
            format!(
                "3 routes (3 Envoy routes), 3 services, 2 consumers, 4 plugins carried; 0 items reported; written to {}",
                run.out().display()
            ),
            "{name}"
        );
        assert_eq!(
            route_names(run),
            [
                "payment-route",
                "order-route",
                "user-route",
                "portcullis:no-route"
            ],
            "{name}: Kong's order, the longest prefix first"
        );
    }
    // The same gateway whatever the format: identical policies and bootstrap.
    let (_, first) = &runs[0];
    for (name, run) in &runs[1..] {
        for file in [
            "envoy.yaml",
            "policies/jwt.json",
            "policies/acl.json",
            "policies/rate-limiting.json",
        ] {
            assert_eq!(
                read(&run.file(file)),
                read(&first.file(file)),
                "{name}: {file}"
            );
        }
    }
    first.validate();

    // Client copies of the identity headers go before Envoy picks the route
    // (docs/architecture.md, routes and the identity headers).
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read(&first.file("envoy.yaml"))).expect("yaml");
    let hcm =
        &yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let early = &hcm["early_header_mutation_extensions"][0]["typed_config"]["mutations"];
    let removed: Vec<&str> = early
        .as_sequence()
        .expect("early_header_mutation_extensions")
        .iter()
        .filter_map(|m| m["remove"].as_str())
        .collect();
    assert_eq!(removed, portcullis_core::identity::headers::ALL);

    let jwt = json(&first.file("policies/jwt.json"));
    let consumers: Vec<(&str, &str, &str)> = jwt["consumers"]
        .as_array()
        .expect("consumers")
        .iter()
        .map(|c| {
            (
                c["username"].as_str().unwrap_or_default(),
                c["groups"][0].as_str().unwrap_or_default(),
                c["credentials"][0]["key"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        consumers,
        [
            ("mobile-app", "admins", "mobile-app-key"),
            ("web-app", "customers", "web-app-key")
        ]
    );
    // Kong's jwt: no leeway, exp only when listed, on every route.
    for route in ["user-route", "order-route", "payment-route"] {
        let r = &jwt["routes"][route];
        assert_eq!(
            (
                r["public"].clone(),
                r["leeway"].clone(),
                r["exp_required"].clone()
            ),
            (false.into(), 0.into(), false.into()),
            "{route}"
        );
    }
    assert_eq!(jwt["routes"]["portcullis:no-route"]["public"], true);

    let acl = json(&first.file("policies/acl.json"));
    assert_eq!(
        acl["routes"]["payment-route"]["allow"],
        serde_json::json!(["admins"])
    );
    assert_eq!(acl["routes"]["user-route"]["public"], true);

    let rl = json(&first.file("policies/rate-limiting.json"));
    assert_eq!(rl["minute"], 100, "the global limit at the top level");
    assert_eq!(rl["limit_by"], "consumer");
    let payments = &rl["routes"]["payment-route"];
    assert_eq!(
        (
            payments["minute"].clone(),
            payments["override_global"].clone()
        ),
        (20.into(), true.into())
    );
    assert!(
        rl["routes"].get("user-route").is_none(),
        "users keeps the global limit"
    );
}

#[test]
fn every_field_converts_in_every_format_with_exactly_the_expected_report() {
    for version in ["3.0", "2.1", "1.1"] {
        let run = import(&format!("every-field-{version}.yml"), &[]);
        assert_eq!(run.code, 0, "{version}: {}", run.stderr);
        let expected = read(&fixture(&format!("every-field-{version}.report.txt")));
        assert_eq!(read(&run.file("report.txt")), expected, "{version}");
        assert!(
            run.stdout.starts_with(&expected),
            "{version}: the report is printed too"
        );
        run.validate();

        let jwt = json(&run.file("policies/jwt.json"));
        // Credentials: base64 HMAC, RS256 and ES256 keys, by name, id and custom_id.
        let keys: Vec<String> = jwt["consumers"]
            .as_array()
            .expect("consumers")
            .iter()
            .flat_map(|c| c["credentials"].as_array().cloned().unwrap_or_default())
            .map(|k| {
                format!(
                    "{} {}",
                    k["key"].as_str().unwrap_or_default(),
                    k["algorithm"].as_str().unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                "mobile-app-key HS256",
                "mobile-app-es256 ES256",
                "web-app-rs256 RS256",
                "partner-key HS512"
            ],
            "{version}"
        );
        assert_eq!(
            jwt["consumers"][0]["id"],
            "0f2a5f6e-1d7e-4c1e-8b1a-2e3d4c5b6a70"
        );
        assert_eq!(jwt["consumers"][0]["custom_id"], "app-001");
        assert!(jwt["consumers"][0]["credentials"][0]["secret_base64"].is_string());
        assert_eq!(
            jwt["consumers"][2]["groups"],
            serde_json::json!(["partners"])
        );
        // The global jwt everywhere but on docs, whose route jwt has the anonymous guest.
        assert_eq!(
            jwt["routes"]["users-list"]["uri_param_names"],
            serde_json::json!(["token"])
        );
        assert_eq!(jwt["routes"]["users-list"]["maximum_expiration"], 3600);
        assert_eq!(jwt["routes"]["users-list"]["run_on_preflight"], false);
        assert_eq!(jwt["routes"]["docs"]["anonymous"], "guest");
        assert_eq!(
            jwt["routes"]["docs"]["header_names"],
            serde_json::json!(["authorization"])
        );

        let acl = json(&run.file("policies/acl.json"));
        assert_eq!(
            acl["routes"]["users-list"]["allow"],
            serde_json::json!(["admins", "customers", "partners"]),
            "route+service beats service"
        );
        assert_eq!(
            acl["routes"]["users-admin"]["allow"],
            serde_json::json!(["admins", "partners"])
        );
        assert_eq!(acl["routes"]["users-admin"]["hide_groups_header"], true);
        assert_eq!(
            acl["routes"]["orders-write"]["deny"],
            serde_json::json!(["suspended"])
        );
        assert_eq!(acl["routes"]["orders-read"]["public"], true);

        let rl = json(&run.file("policies/rate-limiting.json"));
        assert_eq!(rl["routes"]["users-2"]["limit_by"], "header");
        assert_eq!(rl["routes"]["users-2"]["error_code"], 503);
        assert_eq!(rl["routes"]["docs"]["path"], "/docs");
        assert_eq!(rl["routes"]["billing-rpc"]["limit_by"], "service");
        assert_eq!(rl["routes"]["orders-read"]["limit_by"], "credential");

        let mut names = route_names(&run);
        names.dedup();
        let expected = if version == "3.0" {
            // Kong 3: how many attributes, then (equal) input order; a regex path before
            // any prefix of its weight, longer prefixes first.
            [
                "orders-read",
                "orders-write",
                "users-list",
                "users-admin",
                "users-2",
                "billing-rpc",
                "docs",
                "portcullis:no-route",
            ]
        } else {
            [
                "orders-read",
                "users-admin",
                "orders-write",
                "users-list",
                "users-2",
                "billing-rpc",
                "docs",
                "portcullis:no-route",
            ]
        };
        assert_eq!(names, expected, "{version}");
    }
}

#[test]
fn kong_2_orders_routes_by_category_then_regex_then_length() {
    let run = import("every-field-2.1.yml", &[]);
    let mut names = route_names(&run);
    names.dedup();
    // Categories by how many attributes, then hosts > headers > paths > methods; within
    // one, a regex path first, then the longest prefix.
    assert_eq!(
        names,
        [
            "orders-read",
            "users-admin",
            "orders-write",
            "users-list",
            "users-2",
            "billing-rpc",
            "docs",
            "portcullis:no-route"
        ]
    );
}

#[test]
fn unsupported_input_gives_exactly_the_expected_report() {
    let run = import("unsupported-3.0.yml", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let expected = read(&fixture("unsupported-3.0.report.txt"));
    assert_eq!(read(&run.file("report.txt")), expected);
    assert_eq!(
        run.stdout,
        format!(
            "{expected}2 routes (2 Envoy routes), 2 services, 2 consumers, 4 plugins carried; 33 items reported; written to {}\n",
            run.out().display()
        )
    );
    run.validate();
}

#[test]
fn strict_refuses_a_non_empty_report_and_writes_nothing() {
    let run = import("unsupported-3.0.yml", &["--strict"]);
    assert_eq!(run.code, 1);
    assert!(run
        .stdout
        .starts_with(&read(&fixture("unsupported-3.0.report.txt"))));
    assert!(
        run.stderr
            .contains("--strict: 33 items not carried over (listed above); nothing written"),
        "{}",
        run.stderr
    );
    run.assert_nothing_written();
    // An empty report passes --strict.
    let clean = import("seed-3.0.yml", &["--strict"]);
    assert_eq!(clean.code, 0, "{}", clean.stderr);
}

#[test]
fn malformed_input_names_the_place_and_writes_nothing() {
    let cases = [
        ("bad-yaml.yml", "bad YAML: did not find expected ',' or ']' at line 8 column 1, while parsing a flow sequence at line 7 column 12"),
        ("bad-json.json", "bad JSON: trailing comma at line 5 column 3"),
        ("unknown-version.yml", "_format_version: unknown version \"4.0\": \"1.1\", \"2.1\" or \"3.0\""),
        ("no-version.yml", "_format_version: missing: Kong needs \"1.1\", \"2.1\" or \"3.0\""),
        ("duplicate-service.yml", "services[2]: duplicate service name \"users\" (also services[0])"),
        ("duplicate-route.yml", "routes[0]: duplicate route name \"api\" (also services[0].routes[0])"),
        ("duplicate-consumer.yml", "consumers[2]: duplicate consumer username \"mobile-app\" (also consumers[0])"),
        ("duplicate-key.yml", "bad YAML: services[0]: duplicate key \"url\" at line 3 column 3"),
        ("duplicate-jwt-key.yml", "consumers[1].jwt_secrets[0].key: duplicate key \"shared-key\" (also consumers[0].jwt_secrets[0])"),
        ("dangling-service.yml", "routes[1].service: no service named \"refunds\""),
        ("dangling-consumer.yml", "acls[1].consumer: no consumer named \"ghost-app\""),
        ("dangling-plugin-route.yml", "plugins[0].route: no route named \"user-route\""),
        ("wrong-type.yml", "services[0].routes[0].paths: expected a list of strings, found a string"),
        ("bad-plugin-config.yml", "plugins[0].config.hour: the limit for hour(50) cannot be lower than the limit for minute(100)"),
        (
            "redis-without-flag.yml",
            "services[0].routes[0].plugins[0].config.policy: policy redis (services[0].routes[0].plugins[0] (rate-limiting)) needs --rate-limit-service HOST:PORT: the rate limit service that keeps the counts in Redis (services/ratelimit)",
        ),
    ];
    for (file, message) in cases {
        let run = import(&format!("malformed/{file}"), &[]);
        assert_eq!(run.code, 2, "{file}: {}", run.stdout);
        let path = fixture(&format!("malformed/{file}"));
        assert_eq!(
            run.stderr,
            format!("{}: {message}\n", path.display()),
            "{file}"
        );
        run.assert_nothing_written();
    }
}

#[test]
fn bounds_hold_on_hostile_input() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "oversize",
            vec![b'#'; 16 * 1024 * 1024 + 1],
            "<stdin>: larger than the 16777216 bytes accepted",
        ),
        (
            "not utf-8",
            vec![0xff, 0xfe, b'a'],
            "<stdin>: not UTF-8 text (byte 0 is not part of a UTF-8 character)",
        ),
        ("empty", Vec::new(), "<stdin>: empty file"),
        (
            "a list",
            b"[1, 2]".to_vec(),
            "<stdin>: expected a mapping, found a list",
        ),
        (
            "alias bomb",
            {
                let mut text = String::from(
                    "_format_version: \"3.0\"\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n",
                );
                for i in 1..10 {
                    let p = i - 1;
                    text.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
                }
                text.into_bytes()
            },
            "<stdin>: bad YAML: ",
        ),
    ];
    for (name, bytes, message) in cases {
        let scratch = ScratchDir::new("kong-import").expect("scratch");
        let run = run_with("-", &[], scratch, Some(&bytes));
        assert_eq!(run.code, 2, "{name}: {}", run.stdout);
        assert!(run.stderr.starts_with(message), "{name}: {}", run.stderr);
        run.assert_nothing_written();
    }
}

#[test]
fn an_existing_output_needs_force_and_is_replaced_whole() {
    let scratch = ScratchDir::new("kong-import").expect("scratch");
    let out = scratch.path().join("out");
    fs::create_dir_all(&out).expect("mkdir");
    fs::write(out.join("stale.txt"), "old").expect("write");
    let input = fixture("seed-3.0.yml");
    let input = input.to_str().expect("utf-8");
    let refused = run_with(input, &[], scratch, None);
    assert_eq!(refused.code, 2);
    assert!(
        refused
            .stderr
            .contains("exists and is not empty: give --force to replace it"),
        "{}",
        refused.stderr
    );
    assert!(out.join("stale.txt").exists(), "untouched");
    let scratch = refused.scratch;
    let forced = run_with(input, &["--force"], scratch, None);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert!(!out.join("stale.txt").exists(), "replaced, not merged");
    assert!(out.join("envoy.yaml").exists());
    let left: Vec<String> = fs::read_dir(forced.scratch.path())
        .expect("read")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["out"], "no temporary directory left");
}

#[test]
fn policy_redis_counts_through_the_rate_limit_service() {
    let run = import(
        "malformed/redis-without-flag.yml",
        &["--rate-limit-service", "127.0.0.1:8081"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        read(&run.file("report.txt")),
        "services[0].routes[0].plugins[0].config.redis_host: rate-limiting redis_host (\"redis.internal\") — the rate limit service's own setting (its Redis), not the gateway's: configure services/ratelimit with it\n"
    );
    let rl = json(&run.file("policies/rate-limiting.json"));
    assert_eq!(rl["policy"], "redis");
    assert_eq!(rl["rate_limit_service"]["cluster"], "portcullis_ratelimit");
    let yaml = read(&run.file("envoy.yaml"));
    assert!(yaml.contains("- name: portcullis_ratelimit"), "{yaml}");
    assert!(yaml.contains("http2_protocol_options"));
    run.validate();
}

#[test]
fn usage_errors_exit_2_and_write_nothing() {
    let scratch = ScratchDir::new("kong-import").expect("scratch");
    let run = run_with("missing.yml", &[], scratch, None);
    assert_eq!(run.code, 2);
    assert!(run.stderr.starts_with("missing.yml: "), "{}", run.stderr);
    run.assert_nothing_written();
    let scratch = ScratchDir::new("kong-import").expect("scratch");
    let run = run_with(
        fixture("seed-3.0.yml").to_str().expect("utf-8"),
        &["--listen", "everywhere"],
        scratch,
        None,
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("--listen everywhere: expected an IP address and port"),
        "{}",
        run.stderr
    );
    run.assert_nothing_written();
}
