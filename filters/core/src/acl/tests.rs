//! The acl rules, one table row per rule, and the configuration refusals.

use serde_json::{json, Value};

use super::*;

fn policy(config: Value) -> AclPolicySet {
    AclPolicySet::from_json(config.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("{config}: {e}"))
}

fn consumer(name: &str, groups: &[&str]) -> Identity {
    Identity {
        consumer_id: Some(name.into()),
        username: Some(name.into()),
        credential: Some(format!("{name}-key")),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..Identity::default()
    }
}

fn with_claim(mut identity: Identity, claim: &str, value: &str) -> Identity {
    identity.claims.insert(claim.into(), value.into());
    identity
}

fn allow(groups: &str) -> Decision {
    Decision::Allow {
        groups_header: (!groups.is_empty()).then(|| groups.to_owned()),
    }
}

fn not_in_allow(groups: &str) -> Decision {
    Decision::Deny {
        reason: DenyReason::NotInAllow {
            groups: groups.into(),
        },
    }
}

fn in_deny(group: &str) -> Decision {
    Decision::Deny {
        reason: DenyReason::InDeny {
            group: group.into(),
        },
    }
}

/// The demo's policy: payments for admins, orders for admins and for customers reading,
/// users for any consumer, login public, everything else denied to `banned`.
fn scenario() -> AclPolicySet {
    policy(json!({
        "deny": ["banned"],
        "routes": {
            "payments": {"allow": ["admins"]},
            "orders": {"allow": ["admins", {"group": "customers", "methods": ["GET", "HEAD"]}]},
            "users": {"any_consumer": true},
            "login": {"public": true},
            "audit": {"deny": [{"group": "customers", "methods": ["DELETE"]}]},
        }
    }))
}

#[test]
fn each_rule_decides_as_documented() {
    let admin = consumer("mobile-app", &["admins"]);
    let customer = consumer("web-app", &["customers"]);
    let grouped = consumer("ops-bot", &["customers", "ops"]);
    let groupless = consumer("loner", &[]);
    let banned = consumer("mallory", &["customers", "banned"]);
    let shouty = consumer("shouty", &["Admins"]);
    let anonymous = Identity {
        anonymous: true,
        ..consumer("anonymous", &["guests"])
    };
    let cases: [(&str, &str, &str, Option<&Identity>, Decision); 28] = [
        (
            "allow_admits_a_listed_group",
            "payments",
            "POST",
            Some(&admin),
            allow("admins"),
        ),
        (
            "allow_refuses_an_unlisted_group",
            "payments",
            "GET",
            Some(&customer),
            not_in_allow("customers"),
        ),
        (
            "allow_refuses_a_consumer_without_groups",
            "payments",
            "GET",
            Some(&groupless),
            not_in_allow(""),
        ),
        (
            "allow_is_case_sensitive",
            "payments",
            "GET",
            Some(&shouty),
            not_in_allow("Admins"),
        ),
        (
            "allow_admits_when_any_group_is_listed",
            "orders",
            "DELETE",
            Some(&consumer("both", &["customers", "admins"])),
            allow("customers, admins"),
        ),
        (
            "method_rule_admits_its_methods",
            "orders",
            "GET",
            Some(&customer),
            allow("customers"),
        ),
        (
            "method_rule_admits_each_listed_method",
            "orders",
            "HEAD",
            Some(&customer),
            allow("customers"),
        ),
        (
            "method_rule_refuses_other_methods",
            "orders",
            "DELETE",
            Some(&customer),
            not_in_allow("customers"),
        ),
        (
            "method_rule_matches_whatever_the_case_sent",
            "orders",
            "get",
            Some(&customer),
            allow("customers"),
        ),
        (
            "method_rule_refuses_other_methods_in_any_case",
            "orders",
            "delete",
            Some(&customer),
            not_in_allow("customers"),
        ),
        (
            "deny_method_rule_stops_the_method_in_any_case",
            "audit",
            "dElEtE",
            Some(&customer),
            in_deny("customers"),
        ),
        (
            "unscoped_rule_admits_every_method",
            "orders",
            "DELETE",
            Some(&admin),
            allow("admins"),
        ),
        (
            "deny_refuses_a_denied_group",
            "anything",
            "GET",
            Some(&banned),
            in_deny("banned"),
        ),
        (
            "deny_admits_other_groups",
            "anything",
            "GET",
            Some(&grouped),
            allow("customers, ops"),
        ),
        (
            "deny_admits_a_consumer_without_groups",
            "anything",
            "GET",
            Some(&groupless),
            allow(""),
        ),
        (
            "deny_method_rule_refuses_its_methods",
            "audit",
            "DELETE",
            Some(&customer),
            in_deny("customers"),
        ),
        (
            "deny_method_rule_admits_other_methods",
            "audit",
            "GET",
            Some(&customer),
            allow("customers"),
        ),
        (
            "unlisted_route_uses_the_default",
            "reports",
            "GET",
            Some(&banned),
            in_deny("banned"),
        ),
        (
            "route_policy_replaces_the_default",
            "payments",
            "GET",
            Some(&banned),
            not_in_allow("customers, banned"),
        ),
        (
            "any_consumer_admits_every_identity",
            "users",
            "DELETE",
            Some(&banned),
            allow("customers, banned"),
        ),
        (
            "any_consumer_admits_a_consumer_without_groups",
            "users",
            "GET",
            Some(&groupless),
            allow(""),
        ),
        (
            "anonymous_is_judged_by_its_groups",
            "payments",
            "GET",
            Some(&anonymous),
            not_in_allow("guests"),
        ),
        (
            "anonymous_passes_where_its_groups_may",
            "users",
            "GET",
            Some(&anonymous),
            allow("guests"),
        ),
        (
            "no_identity_is_unauthenticated_under_allow",
            "payments",
            "GET",
            None,
            Decision::Unauthenticated,
        ),
        (
            "no_identity_is_unauthenticated_under_deny",
            "anything",
            "GET",
            None,
            Decision::Unauthenticated,
        ),
        (
            "no_identity_is_unauthenticated_under_any_consumer",
            "users",
            "GET",
            None,
            Decision::Unauthenticated,
        ),
        (
            "public_admits_no_identity",
            "login",
            "POST",
            None,
            allow(""),
        ),
        (
            "public_still_tells_an_identitys_groups",
            "login",
            "POST",
            Some(&banned),
            allow("customers, banned"),
        ),
    ];
    let acl = scenario();
    for (rule, route, method, identity, expected) in cases {
        let (_, policy) = acl.route(Some(route));
        assert_eq!(
            acl.decide(policy, &RequestMethod::plain(method), identity),
            expected,
            "{rule}"
        );
    }
}

#[test]
fn routes_are_picked_by_exact_name_with_the_default_at_index_zero() {
    let acl = scenario();
    let names: Vec<Option<&str>> = acl.routes().map(RouteAcl::name).collect();
    assert_eq!(
        names,
        [
            None,
            Some("audit"),
            Some("login"),
            Some("orders"),
            Some("payments"),
            Some("users")
        ]
    );
    assert_eq!(acl.route(Some("payments")).0, 4);
    assert_eq!(acl.route(Some("payments")).1.name(), Some("payments"));
    for unmatched in [None, Some(""), Some("Payments"), Some("payments ")] {
        assert_eq!(acl.route(unmatched).0, 0, "{unmatched:?}");
    }
}

#[test]
fn groups_come_from_the_identity_claim_when_configured() {
    let acl = policy(json!({"allow": ["admins"], "groups_claim": "role"}));
    let (_, default) = acl.route(None);
    let cases: [(&str, Identity, Decision); 6] = [
        (
            "claim_string_is_one_group",
            with_claim(consumer("a", &[]), "role", "admins"),
            allow("admins"),
        ),
        (
            "claim_list_is_split_on_commas",
            with_claim(consumer("a", &[]), "role", "ops, admins"),
            allow("ops, admins"),
        ),
        (
            "claim_adds_to_consumer_groups",
            with_claim(consumer("a", &["ops"]), "role", "admins"),
            allow("ops, admins"),
        ),
        (
            "a_group_in_both_counts_once",
            with_claim(consumer("a", &["admins"]), "role", "admins"),
            allow("admins"),
        ),
        (
            "other_claims_count_for_nothing",
            with_claim(consumer("a", &[]), "groups", "admins"),
            not_in_allow(""),
        ),
        (
            "claim_matching_is_exact",
            with_claim(consumer("a", &[]), "role", "admin"),
            not_in_allow("admin"),
        ),
    ];
    for (rule, identity, expected) in cases {
        assert_eq!(
            acl.decide(default, &RequestMethod::plain("GET"), Some(&identity)),
            expected,
            "{rule}"
        );
    }

    let claim_only = policy(json!({
        "allow": ["admins"], "groups_claim": "role", "consumer_groups": false
    }));
    let (_, default) = claim_only.route(None);
    let configured_admin = consumer("a", &["admins"]);
    assert_eq!(
        claim_only.decide(
            default,
            &RequestMethod::plain("GET"),
            Some(&configured_admin)
        ),
        not_in_allow(""),
        "consumer_groups_false_ignores_configured_groups"
    );
}

#[test]
fn hide_groups_header_applies_at_the_top_and_per_route() {
    let acl = policy(json!({
        "allow": ["admins"],
        "hide_groups_header": true,
        "routes": {
            "shown": {"allow": ["admins"], "hide_groups_header": false},
            "inherits": {"any_consumer": true},
        }
    }));
    let admin = consumer("a", &["admins"]);
    for (route, expected) in [
        (None, allow("")),
        (Some("shown"), allow("admins")),
        (Some("inherits"), allow("")),
    ] {
        let (_, policy) = acl.route(route);
        assert_eq!(
            acl.decide(policy, &RequestMethod::plain("GET"), Some(&admin)),
            expected,
            "{route:?}"
        );
    }
}

#[test]
fn groups_that_cannot_travel_in_a_header_are_dropped() {
    let acl = policy(json!({"any_consumer": true, "groups_claim": "role"}));
    let identity = with_claim(
        consumer("a", &["ok", "bad\r\nx-admin: 1", "a,b", ""]),
        "role",
        " spaced , ,ok",
    );
    assert_eq!(acl.groups(&identity), ["ok", "spaced"]);
    assert_eq!(
        acl.decide(
            acl.route(None).1,
            &RequestMethod::plain("GET"),
            Some(&identity)
        ),
        allow("ok, spaced")
    );
}

#[test]
fn many_groups_are_each_kept_once_in_order() {
    let acl = policy(json!({"allow": ["g999"]}));
    let mut names: Vec<String> = (0..1000).map(|i| format!("g{i}")).collect();
    names.extend(names.clone());
    names.insert(5, "g999".into());
    let identity = Identity {
        groups: names,
        ..consumer("many", &[])
    };
    let got = acl.groups(&identity);
    let mut expected: Vec<String> = (0..5).map(|i| format!("g{i}")).collect();
    expected.push("g999".into());
    expected.extend((5..1000).filter(|i| *i != 999).map(|i| format!("g{i}")));
    assert_eq!(got, expected);
    assert!(matches!(
        acl.decide(
            acl.route(None).1,
            &RequestMethod::plain("GET"),
            Some(&identity)
        ),
        Decision::Allow { .. }
    ));
}

#[test]
fn each_decision_shows_as_kong_does() {
    let forbidden = r#"{"message":"You cannot consume this service"}"#;
    let cases: [(Decision, u16, &str, &str, &str); 5] = [
        (allow("admins"), 200, "", "allowed", "allowed"),
        (
            Decision::Unauthenticated,
            401,
            r#"{"message":"Unauthorized"}"#,
            "unauthenticated",
            "no authenticated identity",
        ),
        (
            not_in_allow("customers"),
            403,
            forbidden,
            "not_in_allow",
            "no allow rule for this method matches groups [customers]",
        ),
        (
            in_deny("banned"),
            403,
            forbidden,
            "in_deny",
            r#"group "banned" is denied"#,
        ),
        (
            Decision::Deny {
                reason: DenyReason::MethodOverride,
            },
            403,
            forbidden,
            "method_override",
            "a method-override header on a route with method rules",
        ),
    ];
    for (decision, status, body, label, reason) in cases {
        assert_eq!(decision.status(), status, "{decision:?}");
        assert_eq!(decision.body(), body, "{decision:?}");
        assert_eq!(decision.metric_label(), label, "{decision:?}");
        assert_eq!(decision.log_reason(), reason, "{decision:?}");
    }
}

#[test]
fn configurations_are_accepted_or_refused_naming_the_field() {
    const GOOD: &str = "";
    const NONE_SET: &str = "set exactly one of `allow`, `deny`, `any_consumer: true` and \
        `public: true` (the default policy, for routes not under `routes`): none is set";
    const SEVERAL_SET: &str = "set exactly one of `allow`, `deny`, `any_consumer: true` and \
        `public: true` (the default policy, for routes not under `routes`): several are set";
    // (name, configuration, what the refusal starts with; GOOD: accepted)
    let cases: [(&str, &str, &str); 33] = [
        ("allow_alone", r#"{"allow": ["admins"]}"#, GOOD),
        ("deny_alone", r#"{"deny": ["banned"]}"#, GOOD),
        ("any_consumer_alone", r#"{"any_consumer": true}"#, GOOD),
        ("public_alone", r#"{"public": true}"#, GOOD),
        (
            "false_flags_beside_allow",
            r#"{"allow": ["a"], "public": false, "any_consumer": false}"#,
            GOOD,
        ),
        (
            "method_rules",
            r#"{"allow": [{"group": "a", "methods": ["GET", "PURGE"]}]}"#,
            GOOD,
        ),
        (
            "claim_only",
            r#"{"allow": ["a"], "groups_claim": "role", "consumer_groups": false}"#,
            GOOD,
        ),
        (
            "both_allow_and_deny",
            r#"{"allow": ["a"], "deny": ["b"]}"#,
            SEVERAL_SET,
        ),
        (
            "neither_allow_nor_deny",
            r#"{"hide_groups_header": true}"#,
            NONE_SET,
        ),
        ("nothing_at_all", r#"{}"#, NONE_SET),
        ("only_false_flags", r#"{"public": false}"#, NONE_SET),
        (
            "route_with_both",
            r#"{"public": true, "routes": {"payments": {"allow": ["a"], "public": true}}}"#,
            r#"routes.payments: set exactly one of `allow`, `deny`, `any_consumer: true` and `public: true`: several are set"#,
        ),
        (
            "route_with_neither",
            r#"{"public": true, "routes": {"payments": {"hide_groups_header": true}}}"#,
            r#"routes.payments: set exactly one of `allow`, `deny`, `any_consumer: true` and `public: true`: none is set"#,
        ),
        (
            "empty_allow",
            r#"{"allow": []}"#,
            r#"allow: must not be empty"#,
        ),
        (
            "empty_route_allow",
            r#"{"public": true, "routes": {"payments": {"allow": []}}}"#,
            r#"routes.payments.allow: must not be empty"#,
        ),
        (
            "empty_route_deny",
            r#"{"public": true, "routes": {"payments": {"deny": []}}}"#,
            r#"routes.payments.deny: must not be empty"#,
        ),
        (
            "empty_methods",
            r#"{"allow": [{"group": "a", "methods": []}]}"#,
            r#"allow[0].methods: must not be empty"#,
        ),
        (
            "lower_case_method",
            r#"{"public": true, "routes": {"orders": {"allow": ["a", {"group": "c", "methods": ["GET", "delete"]}]}}}"#,
            r#"routes.orders.allow[1].methods[1]: "delete" is not a method token in upper case"#,
        ),
        (
            "method_with_a_space",
            r#"{"allow": [{"group": "a", "methods": ["GET POST"]}]}"#,
            r#"allow[0].methods[0]: "GET POST" is not a method"#,
        ),
        (
            "rule_without_methods_key",
            r#"{"allow": [{"group": "a"}]}"#,
            r#"allow[0]: missing field `methods`"#,
        ),
        (
            "rule_with_unknown_key",
            r#"{"allow": [{"group": "a", "methods": ["GET"], "paths": ["/"]}]}"#,
            r#"allow[0].paths: unknown field `paths`, expected `group` or `methods`"#,
        ),
        (
            "rule_of_wrong_type",
            r#"{"deny": [7]}"#,
            r#"deny[0]: invalid type: integer `7`, expected a group name"#,
        ),
        (
            "empty_group",
            r#"{"allow": ["admins", ""]}"#,
            r#"allow[1]: "": empty group name"#,
        ),
        (
            "group_with_comma",
            r#"{"deny": ["a,b"]}"#,
            r#"deny[0]: "a,b": a group name cannot contain ','"#,
        ),
        (
            "group_with_newline",
            r#"{"deny": ["a\nb"]}"#,
            r#"deny[0]: "a\nb": a group name cannot contain control characters"#,
        ),
        (
            "group_with_padding",
            r#"{"deny": [" admins"]}"#,
            r#"deny[0]: " admins": a group name cannot start or end with whitespace"#,
        ),
        (
            "unknown_top_field",
            r#"{"allow": ["a"], "whitelist": ["a"]}"#,
            r#"whitelist: unknown field `whitelist`, expected one of"#,
        ),
        (
            "unknown_route_field",
            r#"{"allow": ["a"], "routes": {"payments": {"allow": ["a"], "groups_claim": "x"}}}"#,
            r#"routes.payments.groups_claim: unknown field `groups_claim`"#,
        ),
        (
            "wrong_type",
            r#"{"allow": "admins"}"#,
            r#"allow: invalid type: string "admins", expected a sequence"#,
        ),
        (
            "empty_route_name",
            r#"{"allow": ["a"], "routes": {"": {"allow": ["a"]}}}"#,
            r#"routes: empty route name"#,
        ),
        (
            "empty_groups_claim",
            r#"{"allow": ["a"], "groups_claim": ""}"#,
            r#"groups_claim: must not be empty"#,
        ),
        (
            "no_source_of_groups",
            r#"{"allow": ["a"], "consumer_groups": false}"#,
            r#"consumer_groups: false leaves no source of groups: set groups_claim"#,
        ),
        ("not_an_object", r#"["allow"]"#, r#"not a JSON object"#),
    ];
    for (name, config, expected) in cases {
        match AclPolicySet::from_json(config.as_bytes()) {
            Ok(_) => assert!(expected.is_empty(), "{name}: accepted, wanted {expected:?}"),
            Err(e) => {
                let text = e.to_string();
                assert!(!expected.is_empty(), "{name}: refused with {text:?}");
                assert!(
                    text.starts_with(expected),
                    "{name}: {text:?}, wanted {expected:?}"
                );
            }
        }
    }
}

#[test]
fn text_that_is_not_one_json_object_is_refused() {
    for (bytes, expected) in [
        (&b"not json"[..], "not JSON"),
        (b"", "not JSON"),
        (
            br#"{"allow": ["a"], "allow": ["b"]}"#,
            "a member name repeats",
        ),
        (
            br#"{"allow": ["a"], "routes": {"p": {"deny": ["x"], "deny": ["y"]}}}"#,
            "a member name repeats",
        ),
        (b"null", "not a JSON object"),
    ] {
        let err = AclPolicySet::from_json(bytes).unwrap_err().to_string();
        assert_eq!(err, expected, "{:?}", String::from_utf8_lossy(bytes));
    }
}

/// What lets the glue skip host calls: the route name only matters with routes, the method
/// only on routes whose rules name methods — and there, no method changes any decision.
#[test]
fn route_name_and_method_are_needed_only_where_rules_use_them() {
    assert!(scenario().needs_route_name());
    assert!(!policy(json!({"allow": ["admins"]})).needs_route_name());
    let set = scenario();
    let uses: Vec<(Option<&str>, bool)> =
        set.routes().map(|r| (r.name(), r.uses_methods())).collect();
    assert_eq!(
        uses,
        [
            (None, false),
            (Some("audit"), true),
            (Some("login"), false),
            (Some("orders"), true),
            (Some("payments"), false),
            (Some("users"), false),
        ]
    );
    let people = [
        consumer("mobile-app", &["admins"]),
        consumer("web-app", &["customers"]),
        consumer("mallory", &["customers", "banned"]),
        consumer("loner", &[]),
    ];
    for route in set.routes().filter(|r| !r.uses_methods()) {
        for who in people.iter().map(Some).chain([None]) {
            let without = set.decide(route, &RequestMethod::default(), who);
            for method in ["GET", "DELETE", "OPTIONS", "get"] {
                let overridden = RequestMethod {
                    method,
                    overrides: vec!["DELETE"],
                };
                assert_eq!(
                    set.decide(route, &overridden, who),
                    without,
                    "{:?} {method} overridden",
                    route.name()
                );
                assert_eq!(
                    set.decide(route, &RequestMethod::plain(method), who),
                    without,
                    "{:?} {method}",
                    route.name()
                );
            }
        }
    }
}

#[test]
fn a_method_override_header_is_judged_as_every_method_it_names() {
    let acl = scenario();
    let customer = consumer("web-app", &["customers"]);
    let admin = consumer("mobile-app", &["admins"]);
    let request = |method, overrides: &[&'static str]| RequestMethod {
        method,
        overrides: overrides.to_vec(),
    };
    let (_, orders) = acl.route(Some("orders"));
    let (_, audit) = acl.route(Some("audit"));
    let cases = [
        // (route, who, request, expected)
        (
            orders,
            &customer,
            request("GET", &["DELETE"]),
            not_in_allow("customers"),
        ),
        (
            orders,
            &customer,
            request("GET", &["delete"]),
            not_in_allow("customers"),
        ),
        (
            orders,
            &customer,
            request("GET", &["HEAD"]),
            allow("customers"),
        ),
        (
            orders,
            &customer,
            request("GET", &["GET, DELETE"]),
            not_in_allow("customers"),
        ),
        (
            orders,
            &customer,
            request("GET", &["HEAD", "PUT"]),
            not_in_allow("customers"),
        ),
        (
            orders,
            &customer,
            request("GET", &[""]),
            not_in_allow("customers"),
        ),
        (orders, &admin, request("GET", &["DELETE"]), allow("admins")),
        (
            audit,
            &customer,
            request("POST", &["DELETE"]),
            in_deny("customers"),
        ),
        (
            audit,
            &customer,
            request("POST", &[" delete "]),
            in_deny("customers"),
        ),
        (
            audit,
            &customer,
            request("POST", &["PATCH"]),
            allow("customers"),
        ),
    ];
    for (route, who, method, expected) in cases {
        assert_eq!(
            acl.decide(route, &method, Some(who)),
            expected,
            "{:?} {method:?}",
            route.name()
        );
    }
}

#[test]
fn refuse_method_override_refuses_any_override_on_routes_with_method_rules() {
    let acl = policy(json!({
        "refuse_method_override": true,
        "allow": ["admins", {"group": "customers", "methods": ["GET"]}],
        "routes": {
            "payments": {"allow": ["admins"]},
            "audit": {"deny": [{"group": "customers", "methods": ["DELETE"]}],
                      "refuse_method_override": false},
        }
    }));
    let customer = consumer("web-app", &["customers"]);
    let admin = consumer("mobile-app", &["admins"]);
    let overridden = RequestMethod {
        method: "GET",
        overrides: vec!["GET"],
    };
    let refused = Decision::Deny {
        reason: DenyReason::MethodOverride,
    };
    let (_, default) = acl.route(None);
    assert_eq!(acl.decide(default, &overridden, Some(&customer)), refused);
    assert_eq!(acl.decide(default, &overridden, Some(&admin)), refused);
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.metric_label(), "method_override");
    // A route without method rules does not look at methods at all.
    let (_, payments) = acl.route(Some("payments"));
    assert_eq!(
        acl.decide(payments, &overridden, Some(&admin)),
        allow("admins")
    );
    // A route that turns it off judges the override instead.
    let (_, audit) = acl.route(Some("audit"));
    let delete = RequestMethod {
        method: "POST",
        overrides: vec!["DELETE"],
    };
    assert_eq!(
        acl.decide(audit, &delete, Some(&customer)),
        in_deny("customers")
    );
}

#[test]
fn the_override_headers_are_read_in_any_letter_case_and_every_copy() {
    let headers = [
        (":method", "POST"),
        (":path", "/orders"),
        ("x-http-method-override", "DELETE"),
        ("X-HTTP-Method", "PUT"),
        ("x-method-override", "PATCH"),
        ("x-http-method-override", "GET"),
        ("x-other", "DELETE"),
    ];
    let read = RequestMethod::from_headers(headers.into_iter());
    assert_eq!(read.method, "POST");
    assert_eq!(read.overrides, ["DELETE", "PUT", "PATCH", "GET"]);
}

#[test]
fn more_than_a_handful_of_override_methods_is_refused_not_judged_one_by_one() {
    let acl = scenario();
    let admin = consumer("mobile-app", &["admins"]);
    let (_, orders) = acl.route(Some("orders"));
    let many = vec!["GET"; 20_000].join(",");
    let flood = RequestMethod {
        method: "GET",
        overrides: vec![many.as_str()],
    };
    assert_eq!(
        acl.decide(orders, &flood, Some(&admin)),
        Decision::Deny {
            reason: DenyReason::MethodOverride
        }
    );
    let eight = ["GET"; MAX_OVERRIDE_METHODS].join(",");
    let within = RequestMethod {
        method: "GET",
        overrides: vec![eight.as_str()],
    };
    assert_eq!(acl.decide(orders, &within, Some(&admin)), allow("admins"));
}
