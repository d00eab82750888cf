//! The row catalogue: every configuration the bench loads, its group, and what it is
//! compared with.

use crate::cost::{
    cost_filter, cost_filter_in, host_verify_calls, with_spin, with_verify, ACL_ALLOW_HOST_CALLS,
    CHAIN_ONE_VM_HOST_CALLS, CHAIN_ONE_VM_NO_RECORDS_HOST_CALLS, HOST_COSTS, JWT_HIT_HOST_CALLS,
    RATE_LIMIT_HOST_CALLS,
};
use crate::filters::{
    gateway_config, native_jwt, native_jwt_with_headers, native_rate_limit,
    native_service_rate_limit, portcullis_jwt_config, redis_rate_limit, token, without_records,
    ACL, ALGORITHMS, NATIVE_DOMAIN, NATIVE_RBAC, PORTCULLIS_DOMAIN, RATE_LIMIT, RATE_LIMIT_IP,
};
use crate::source;
use portcullis_tests::config;

/// One configuration under load.
pub struct Row {
    pub name: String,
    /// What `BENCH_ONLY` selects it by: `ceiling`, `jwt`, `acl`, `ratelimit`, `chain`.
    pub group: &'static str,
    /// The native row this one is compared with.
    pub native: Option<String>,
    /// Other rows this one is compared with, below the table.
    pub versus: Vec<String>,
    /// The row whose Envoy's resident memory this one's is set against, below the tables:
    /// the same policies packaged otherwise.
    pub memory_versus: Option<String>,
    /// Answered by Envoy's fault filter on a route with a cluster (see `envoy::FAULT_200`),
    /// not by a `direct_response`.
    pub routed: bool,
    /// The rate limit service domain it counts under, when it calls the service: its Envoy
    /// gets the `ratelimit` cluster, and its counters are checked in Redis.
    pub domain: Option<&'static str>,
    /// Looks its consumers up in portcullis-admin (jwt `consumer_source`): its Envoy gets the
    /// admin's data-plane cluster, and it is warmed until the lookup is done.
    pub source: bool,
    /// Its HTTP filters before the router, YAML at column 0 (empty: none).
    pub filters: String,
    /// The bearer token every request carries.
    pub token: Option<String>,
    /// The Portcullis filters and their configurations, in chain order, for host-test's
    /// instruction counts.
    pub portcullis: Vec<(String, String)>,
}

impl Row {
    pub fn new(name: &str, group: &'static str, filters: String, token: Option<String>) -> Row {
        Row {
            name: name.into(),
            group,
            native: None,
            versus: Vec::new(),
            memory_versus: None,
            domain: None,
            routed: false,
            source: false,
            filters,
            token,
            portcullis: Vec::new(),
        }
    }

    fn native(mut self, native: &str) -> Row {
        self.native = Some(native.into());
        self
    }

    fn versus(mut self, other: &str) -> Row {
        self.versus.push(other.into());
        self
    }

    fn memory_versus(mut self, other: &str) -> Row {
        self.memory_versus = Some(other.into());
        self
    }

    fn routed(mut self) -> Row {
        self.routed = true;
        self
    }

    pub fn source(mut self) -> Row {
        self.source = true;
        self
    }

    fn domain(mut self, domain: &'static str) -> Row {
        self.domain = Some(domain);
        self
    }

    fn portcullis(mut self, filters: &[(&str, &str)]) -> Row {
        self.portcullis = filters
            .iter()
            .map(|(f, c)| (f.to_string(), c.to_string()))
            .collect();
        self
    }
}

/// Every row, and with `candidate` (from [`candidate`]) the HS256 gateway rows once more in
/// `dist/portcullis-<candidate>.wasm`.
pub fn rows_with(candidate: Option<&str>) -> Vec<Row> {
    let mut rows = vec![Row::new(
        "no filter (ceiling)",
        "ceiling",
        String::new(),
        None,
    )];
    for alg in ALGORITHMS {
        let native = format!("native jwt_authn {alg}");
        rows.push(Row::new(
            &native,
            "jwt",
            native_jwt(alg, false),
            Some(token(alg)),
        ));
        rows.push(Row::new(
            &format!("{native} +cache"),
            "jwt",
            native_jwt(alg, true),
            Some(token(alg)),
        ));
        let variants: &[(&str, bool, bool)] = if alg == "HS256" || alg == "EdDSA" {
            &[("", false, false), (" +cache", true, false)]
        } else {
            &[
                (" host", false, false),
                (" in-module", false, true),
                (" host +cache", true, false),
            ]
        };
        for (suffix, cache, in_module) in variants {
            let config = portcullis_jwt_config(alg, *cache, *in_module);
            rows.push(
                Row::new(
                    &format!("portcullis jwt {alg}{suffix}"),
                    "jwt",
                    config::portcullis_filter("jwt", Some(&config)),
                    Some(token(alg)),
                )
                .native(&native)
                .portcullis(&[("jwt", &config)]),
            );
        }
        // The same with the credential looked up in portcullis-admin (#22: ≥ 0.95x the
        // static row with the cache), set against the static rows in the same run.
        if alg == "HS256" {
            for (suffix, cache) in [("", false), (" +cache", true)] {
                let config = source::jwt_config(cache);
                rows.push(
                    Row::new(
                        &format!("portcullis jwt {alg}{suffix}, consumer_source"),
                        "jwt",
                        config::portcullis_filter("jwt", Some(&config)),
                        Some(source::token()),
                    )
                    .native(&native)
                    .versus(&format!("portcullis jwt {alg}{suffix}"))
                    .source(),
                );
            }
        }
    }
    // What Envoy charges a wasm filter: the cost fixture doing nothing, then one kind of
    // host call (or allocation) a number of times per request.
    let empty = "wasm: empty filter";
    // Each sends the token of the native row it is set against (Envoy's codec and the
    // header map read price the token's bytes: an RS256 token is ~530, an HS256 one ~200).
    let cost_row = |what: &str, config: &str, alg: &str| {
        Row::new(
            &format!("wasm: {what}"),
            "host",
            cost_filter(config),
            Some(token(alg)),
        )
    };
    rows.push(cost_row("empty filter", "{}", "HS256"));
    for (what, config) in HOST_COSTS {
        rows.push(cost_row(what, config, "HS256").versus(empty));
    }
    // Floors: the host calls any jwt filter that hands on Kong's headers and the identity
    // makes, with no logic, next to the native filter it is measured against.
    rows.push(
        cost_row(
            "the host calls of a jwt cache hit",
            JWT_HIT_HOST_CALLS,
            "HS256",
        )
        .versus(empty)
        .versus("native jwt_authn HS256")
        .versus("native jwt_authn HS256 +cache"),
    );
    // The jwt stage alone in the one-VM gateway's module, against the jwt filter: what the
    // packaging (a larger module, the stages' dispatch) costs a stage (#23).
    let jwt_stage = format!(
        r#"{{"jwt":{}}}"#,
        portcullis_jwt_config("HS256", true, false)
    );
    rows.push(
        Row::new(
            "portcullis jwt HS256 +cache, the gateway's only stage",
            "jwt",
            config::portcullis_filter("gateway", Some(&jwt_stage)),
            Some(token("HS256")),
        )
        .native("native jwt_authn HS256")
        .versus("portcullis jwt HS256 +cache")
        .versus("wasm: the host calls of a jwt cache hit")
        .portcullis(&[("gateway", &jwt_stage)]),
    );
    for (family, alg) in [("rsa", "RS256"), ("ec", "ES256")] {
        rows.push(
            cost_row(
                &format!("the host calls of a jwt {alg} check on the host"),
                &host_verify_calls(family),
                alg,
            )
            .versus(empty)
            .versus(&format!("native jwt_authn {alg}")),
        );
    }
    // rate-limiting, acl, and the three chained, with HS256 tokens.
    let jwt_native = native_jwt("HS256", false);
    let jwt_portcullis = portcullis_jwt_config("HS256", true, false);
    let chain = |filters: &[String]| filters.join("\n");
    let hs256 = || Some(token("HS256"));
    let local_rl = "portcullis rate-limiting (by ip)";
    let native_rls = "native ratelimit + service";
    let rate_limit_floor = "wasm: the host calls of rate-limiting (by ip)";
    let rate_limit_stage = format!(r#"{{"rate_limiting":{RATE_LIMIT_IP}}}"#);
    // The rate limiting rows are routed (see FAULT_200): Envoy's ratelimit filter needs it,
    // and all of them are, so their ratios compare like with like.
    rows.extend([
        Row::new(
            "no filter, routed (fault 200)",
            "ratelimit",
            String::new(),
            None,
        )
        .routed(),
        Row::new(
            "native local_ratelimit",
            "ratelimit",
            native_rate_limit(false),
            hs256(),
        )
        .routed(),
        // A floor: a wasm filter that does nothing, where local_ratelimit is measured.
        Row::new(
            "wasm: empty filter, routed",
            "ratelimit",
            cost_filter("{}"),
            hs256(),
        )
        .routed()
        .versus("native local_ratelimit"),
        Row::new(
            local_rl,
            "ratelimit",
            config::portcullis_filter("rate-limiting", Some(RATE_LIMIT_IP)),
            hs256(),
        )
        .routed()
        .native("native local_ratelimit")
        // rate-limiting's own cost: #23 asks for half of the 2026-11-25 run's ~13 µs.
        .versus("wasm: empty filter, routed")
        .versus(rate_limit_floor)
        .portcullis(&[("rate-limiting", RATE_LIMIT_IP)]),
        // The same stage alone in the one-VM gateway's module (#23).
        Row::new(
            "portcullis rate-limiting (by ip), the gateway's only stage",
            "ratelimit",
            config::portcullis_filter("gateway", Some(&rate_limit_stage)),
            hs256(),
        )
        .routed()
        .native("native local_ratelimit")
        .versus(local_rl)
        .versus(rate_limit_floor)
        .portcullis(&[("gateway", &rate_limit_stage)]),
        // Its floor: the host calls it makes counting an IP, with no logic. Over the empty
        // filter, what any filter counting in shared data and answering Kong's headers pays.
        Row::new(
            rate_limit_floor,
            "ratelimit",
            cost_filter(RATE_LIMIT_HOST_CALLS),
            hs256(),
        )
        .routed()
        .versus("wasm: empty filter, routed"),
        Row::new(
            native_rls,
            "ratelimit",
            native_service_rate_limit(),
            hs256(),
        )
        .routed()
        .domain(NATIVE_DOMAIN),
        Row::new(
            "portcullis rate-limiting (by ip, policy redis)",
            "ratelimit",
            config::portcullis_filter("rate-limiting", Some(&redis_rate_limit())),
            hs256(),
        )
        .routed()
        .native(native_rls)
        .versus(local_rl)
        .domain(PORTCULLIS_DOMAIN)
        .portcullis(&[("rate-limiting", &redis_rate_limit())]),
        Row::new(
            "native jwt_authn + rbac",
            "acl",
            chain(&[jwt_native.clone(), NATIVE_RBAC.into()]),
            hs256(),
        ),
        Row::new(
            "portcullis jwt + acl",
            "acl",
            chain(&[
                config::portcullis_filter("jwt", Some(&jwt_portcullis)),
                config::portcullis_filter("acl", Some(ACL)),
            ]),
            hs256(),
        )
        .native("native jwt_authn + rbac")
        .portcullis(&[("jwt", &jwt_portcullis), ("acl", ACL)]),
        Row::new(
            "native chain (jwt_authn + rbac + local_ratelimit)",
            "chain",
            chain(&[jwt_native, NATIVE_RBAC.into(), native_rate_limit(false)]),
            hs256(),
        ),
        Row::new(
            "portcullis chain (jwt + acl + rate-limiting)",
            "chain",
            chain(&[
                config::portcullis_filter("jwt", Some(&jwt_portcullis)),
                config::portcullis_filter("acl", Some(ACL)),
                config::portcullis_filter("rate-limiting", Some(RATE_LIMIT)),
            ]),
            hs256(),
        )
        .native("native chain (jwt_authn + rbac + local_ratelimit)")
        .portcullis(&[
            ("jwt", &jwt_portcullis),
            ("acl", ACL),
            ("rate-limiting", RATE_LIMIT),
        ]),
    ]);
    // The chain's floors: the host calls its three filters make on a repeated request (a
    // token cache hit, an allowed group, a local count), with no logic, first from three
    // VMs as the separate filters make them, then from one, as a single module running the
    // three in one HTTP context can (the one-VM gateway issue's floor).
    let native_chain = "native chain (jwt_authn + rbac + local_ratelimit)";
    let three_vms = "wasm: the host calls of the chain, in three VMs";
    rows.extend([
        Row::new(
            three_vms,
            "chain",
            chain(&[
                cost_filter_in("cost-jwt", JWT_HIT_HOST_CALLS),
                cost_filter_in("cost-acl", ACL_ALLOW_HOST_CALLS),
                cost_filter_in("cost-rate-limiting", RATE_LIMIT_HOST_CALLS),
            ]),
            hs256(),
        )
        .versus(native_chain),
        Row::new(
            "wasm: the host calls of the chain, in one VM",
            "chain",
            cost_filter(CHAIN_ONE_VM_HOST_CALLS),
            hs256(),
        )
        .versus(native_chain)
        .versus(three_vms),
        // The same, plus wasm instructions without host calls, as many as the gateway's
        // cache hit executed over the floor on 2026-12-03 (host-test: 20.7k -> 39.8k, the
        // gateway 37.8k then, 31.2k since): what the gateway's logic would cost if
        // instructions were what it pays for.
        Row::new(
            "wasm: the host calls of the chain, in one VM, + 19k wasm instructions",
            "chain",
            cost_filter(&with_spin(CHAIN_ONE_VM_HOST_CALLS, 610)),
            hs256(),
        )
        .versus(native_chain)
        .versus("wasm: the host calls of the chain, in one VM"),
    ]);
    // The one-VM gateway (#23): the chain's three configurations as they are, in one module,
    // one VM and one HTTP context per request; with the token cache (a repeated token) and
    // without, and RS256 checked on the host with no cache in either row. Each is set against
    // the native chain of its algorithm and its floor (the one-VM host calls, and one
    // `verify_signature` for RS256); the cached one against the three separate filters too,
    // in req/s and in Envoy's resident memory.
    let one_vm = "wasm: the host calls of the chain, in one VM";
    let separate = "portcullis chain (jwt + acl + rate-limiting)";
    let native_rs256 = "native chain RS256 (jwt_authn + rbac + local_ratelimit)";
    let one_vm_rs256 = "wasm: the host calls of the chain, in one VM, + an RS256 check on the host";
    let gateway_row = |module: &str, variant: &str, alg: &str, config: String| {
        Row::new(
            &format!("portcullis {module} (jwt + acl + rate-limiting, one VM) {variant}"),
            "chain",
            config::portcullis_filter(module, Some(&config)),
            Some(token(alg)),
        )
        .portcullis(&[(module, &config)])
    };
    let gateway_in = |module: &str, variant: &str, alg: &str, cache: bool| {
        let config = gateway_config(&portcullis_jwt_config(alg, cache, false), ACL, RATE_LIMIT);
        gateway_row(module, variant, alg, config)
    };
    // The same with every stage's `decision_records: false`: nothing written per request
    // but the identity, as the native chain writes jwt_authn's payload and nothing else.
    let unrecorded = |variant: &str, cache: bool| {
        let config = gateway_config(
            &without_records(&portcullis_jwt_config("HS256", cache, false)),
            &without_records(ACL),
            &without_records(RATE_LIMIT),
        );
        gateway_row("gateway", variant, "HS256", config)
    };
    let gateway =
        |variant: &str, alg: &str, cache: bool| gateway_in("gateway", variant, alg, cache);
    let one_vm_unrecorded =
        "wasm: the host calls of the chain, in one VM, without decision records";
    // `BENCH_CANDIDATE=<name>`: the HS256 gateway rows again with `dist/portcullis-<name>.wasm`,
    // another build of the gateway, in the same rounds: a change measured against what it
    // changes, not against another run.
    if let Some(candidate) = candidate {
        rows.extend([
            gateway_in(candidate, "HS256 +cache", "HS256", true)
                .native(native_chain)
                .versus(one_vm)
                .versus("portcullis gateway (jwt + acl + rate-limiting, one VM) HS256 +cache"),
            gateway_in(candidate, "HS256", "HS256", false)
                .native(native_chain)
                .versus(one_vm)
                .versus("portcullis gateway (jwt + acl + rate-limiting, one VM) HS256"),
        ]);
    }
    // The native chain doing what it can of the gateway's work besides deciding: the
    // token's claims handed on as four request headers, and rate-limit headers on every
    // response (three, where Kong answers five). Not what #23's targets are set against (the
    // chain above): a like-for-like reading beside them. It still counts in one bucket for
    // everyone, where the gateway counts per consumer (local_ratelimit has no bucket per
    // value of a descriptor it was not configured with).
    let native_with_headers =
        "native chain with headers (jwt_authn claim_to_headers + rbac + local_ratelimit headers)";
    rows.extend([
        Row::new(
            native_with_headers,
            "chain",
            chain(&[
                native_jwt_with_headers("HS256"),
                NATIVE_RBAC.into(),
                native_rate_limit(true),
            ]),
            hs256(),
        )
        .versus(native_chain),
        gateway("HS256 +cache", "HS256", true)
            .native(native_chain)
            .versus(one_vm)
            .versus(native_with_headers)
            .versus(separate)
            .memory_versus(separate),
        gateway("HS256", "HS256", false)
            .native(native_chain)
            .versus(one_vm)
            .versus(native_with_headers),
        Row::new(
            one_vm_unrecorded,
            "chain",
            cost_filter(CHAIN_ONE_VM_NO_RECORDS_HOST_CALLS),
            hs256(),
        )
        .versus(native_chain)
        .versus(one_vm),
        unrecorded("HS256 +cache, no decision records", true)
            .native(native_chain)
            .versus(one_vm_unrecorded)
            .versus("portcullis gateway (jwt + acl + rate-limiting, one VM) HS256 +cache"),
        unrecorded("HS256, no decision records", false)
            .native(native_chain)
            .versus(one_vm_unrecorded)
            .versus("portcullis gateway (jwt + acl + rate-limiting, one VM) HS256"),
        Row::new(
            native_rs256,
            "chain",
            chain(&[
                native_jwt("RS256", false),
                NATIVE_RBAC.into(),
                native_rate_limit(false),
            ]),
            Some(token("RS256")),
        ),
        Row::new(
            one_vm_rs256,
            "chain",
            cost_filter(&with_verify(CHAIN_ONE_VM_HOST_CALLS, "rsa")),
            Some(token("RS256")),
        )
        .versus(native_rs256)
        .versus(one_vm),
        gateway("RS256 host", "RS256", false)
            .native(native_rs256)
            .versus(one_vm_rs256),
    ]);
    rows
}

/// The modules `make build` writes to `dist/portcullis-<module>.wasm`. A candidate may not
/// be named after one: its rows would take the names of the gateway's own (or a filter's
/// module would run as a gateway).
pub const MODULES: [&str; 5] = ["jwt", "acl", "rate-limiting", "token-issuer", "gateway"];

/// `BENCH_CANDIDATE` as given (`None` when unset or empty): a name of letters, digits, `-`
/// and `_` that is not one of the modules, whose `dist/portcullis-<name>.wasm` exists.
pub fn candidate(value: Option<&str>, dist: &std::path::Path) -> Result<Option<String>, String> {
    let Some(name) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "BENCH_CANDIDATE: {name:?} is not a module name (letters, digits, - and _)"
        ));
    }
    if MODULES.contains(&name) {
        return Err(format!(
            "BENCH_CANDIDATE: {name:?} is one of the modules themselves; copy the build to \
             measure to dist/portcullis-<another name>.wasm (say, before) and name that"
        ));
    }
    let path = dist.join(format!("portcullis-{name}.wasm"));
    if !path.is_file() {
        return Err(format!(
            "BENCH_CANDIDATE: {} does not exist",
            path.display()
        ));
    }
    Ok(Some(name.to_string()))
}

/// The groups `BENCH_ONLY` may name.
const GROUPS: [&str; 5] = ["jwt", "acl", "ratelimit", "chain", "host"];

/// The rows `BENCH_ONLY` (comma-separated groups) selects, the ceiling always; all rows when
/// it is unset or empty.
pub fn selected(rows: Vec<Row>, only: &str) -> Result<Vec<Row>, String> {
    let groups: Vec<&str> = only
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .collect();
    if let Some(unknown) = groups.iter().find(|g| !GROUPS.contains(g)) {
        return Err(format!(
            "BENCH_ONLY: unknown group {unknown:?}; the groups are {}",
            GROUPS.join(", ")
        ));
    }
    Ok(rows
        .into_iter()
        .filter(|row| groups.is_empty() || row.group == "ceiling" || groups.contains(&row.group))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_tests::paths;

    fn rows() -> Vec<Row> {
        rows_with(None)
    }

    /// A comparison names its row exactly, or its note and ratio silently go missing; the
    /// `chain` group's are in the group, so `BENCH_ONLY=chain` prints them all.
    #[test]
    fn every_compared_row_is_there() {
        let rows = rows();
        for (i, row) in rows.iter().enumerate() {
            assert!(
                rows[..i].iter().all(|r| r.name != row.name),
                "two rows named {:?}",
                row.name
            );
            let compared = row
                .native
                .iter()
                .chain(&row.versus)
                .chain(&row.memory_versus);
            for other in compared {
                let Some(other) = rows.iter().find(|r| &r.name == other) else {
                    panic!("{:?} is compared with {other:?}, which no row is", row.name);
                };
                if row.group == "chain" {
                    assert_eq!(other.group, "chain", "{:?} vs {:?}", row.name, other.name);
                }
            }
        }
    }

    /// A candidate's rows are named apart from every other row, and compared with rows that
    /// are there; a candidate named after a module, or without a file, is refused.
    #[test]
    fn a_candidate_adds_rows_of_its_own_and_a_bad_one_is_refused() {
        let plain = rows().len();
        // A candidate's file is resolved when its rows are built: a copy of the gateway,
        // under a name of this test's own, removed after.
        let name = format!("candidate-test-{}", std::process::id());
        let copy = paths::wasm("gateway").with_file_name(format!("portcullis-{name}.wasm"));
        std::fs::copy(paths::wasm("gateway"), &copy).unwrap();
        let with = rows_with(Some(&name));
        std::fs::remove_file(&copy).unwrap();
        assert_eq!(with.len(), plain + 2);
        for (i, row) in with.iter().enumerate() {
            assert!(with[..i].iter().all(|r| r.name != row.name), "{}", row.name);
            for other in row.native.iter().chain(&row.versus) {
                assert!(with.iter().any(|r| &r.name == other), "{other}");
            }
        }
        let dist = std::env::temp_dir().join(format!("bench-candidate-{}", std::process::id()));
        std::fs::create_dir_all(&dist).unwrap();
        std::fs::write(dist.join("portcullis-before.wasm"), b"\0asm").unwrap();
        let check = |v: Option<&str>| candidate(v, &dist);
        assert_eq!(check(None), Ok(None));
        assert_eq!(check(Some("")), Ok(None));
        assert_eq!(check(Some("before")), Ok(Some("before".into())));
        for bad in ["gateway", "jwt", "../gateway", "a b", "missing"] {
            let e = check(Some(bad)).unwrap_err();
            assert!(e.starts_with("BENCH_CANDIDATE: "), "{bad}: {e}");
        }
        assert!(check(Some("missing"))
            .unwrap_err()
            .contains("does not exist"));
        std::fs::remove_dir_all(&dist).unwrap();
    }

    /// The gateway rows run the gateway module alone, with a configuration it takes naming
    /// the three stages, each row against a native chain and a one-VM floor; the rows
    /// without decision records turn every stage's off, the others none.
    #[test]
    fn the_gateway_rows_are_set_against_a_native_chain_and_a_floor() {
        let rows = rows();
        let gateways: Vec<&Row> = rows
            .iter()
            .filter(|r| r.name.starts_with("portcullis gateway"))
            .collect();
        assert_eq!(gateways.len(), 5);
        for row in gateways {
            assert_eq!(row.portcullis.len(), 1, "{}", row.name);
            let (module, config) = &row.portcullis[0];
            assert_eq!(module, "gateway", "{}", row.name);
            let config = portcullis_core::gateway::GatewayConfig::from_json(config.as_bytes())
                .unwrap_or_else(|e| panic!("{}: {e}", row.name));
            assert_eq!(
                config.stages(),
                ["jwt", "acl", "rate_limiting"],
                "{}",
                row.name
            );
            let records = !row.name.ends_with("no decision records");
            let switches = [
                config.jwt.as_ref().map(|s| s.decision_records()),
                config.acl.as_ref().map(|s| s.decision_records()),
                config.rate_limiting.as_ref().map(|s| s.decision_records()),
            ];
            assert_eq!(switches, [Some(records); 3], "{}", row.name);
            let native = row.native.as_deref().unwrap_or_default();
            assert!(native.starts_with("native chain"), "{}", row.name);
            assert!(
                row.versus
                    .iter()
                    .any(|v| v.starts_with("wasm: the host calls of the chain, in one VM")),
                "{}",
                row.name
            );
        }
    }
}
