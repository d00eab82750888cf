//! The `host` group and the floors: the cost fixture (`host-test/cost`) doing one kind of
//! host call a number of times per request, so a row prices what Envoy charges a wasm filter.

use portcullis_core::envoy_foreign::VerifySignatureArguments;
use portcullis_tests::{config, paths};
use prost::Message;
use serde_json::json;

/// The `host` group: what the cost fixture does per request in each row.
pub const HOST_COSTS: [(&str, &str); 8] = [
    ("20 header reads", r#"{"header_reads":20}"#),
    ("20 header map reads", r#"{"map_reads":20}"#),
    ("20 property reads", r#"{"property_reads":20}"#),
    ("20 header writes", r#"{"header_writes":20}"#),
    ("20 metric increments", r#"{"metric_incs":20}"#),
    (
        "20 shared data reads (key absent: no value)",
        r#"{"shared_reads":20}"#,
    ),
    ("20 property writes", r#"{"property_writes":20}"#),
    ("1000 allocations of 64 bytes", r#"{"allocs":1000}"#),
];

/// The argument of one `verify_signature` call Envoy answers `true` (the glue's probe
/// vectors: `rsa` or `ec`), in hex for the cost fixture.
pub fn verify_argument(family: &str) -> String {
    let vector = |name: &str| {
        std::fs::read(paths::workspace_root().join(format!("filters/glue/vectors/{name}")))
            .unwrap_or_else(|e| panic!("filters/glue/vectors/{name}: {e}"))
    };
    let message = VerifySignatureArguments {
        hash_function: "sha256".into(),
        public_key: vector(&format!("{family}.pub.der")),
        public_key_pem: String::new(),
        signature: vector(&format!("{family}.sig")),
        text: vector("text"),
    };
    message
        .encode_to_vec()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The host calls of a jwt check whose signature Envoy verifies (`rsa` or `ec`): a cache
/// hit's, and one `verify_signature`.
pub fn host_verify_calls(family: &str) -> String {
    with_verify(JWT_HIT_HOST_CALLS, family)
}

/// The cost fixture's configuration `calls` with `counts` set (added, or replacing).
fn with_counts(calls: &str, counts: &[(&str, serde_json::Value)]) -> String {
    let mut config: serde_json::Value = serde_json::from_str(calls).unwrap_or_default();
    for (key, value) in counts {
        config[*key] = value.clone();
    }
    config.to_string()
}

/// The cost fixture's configuration `calls` plus one `verify_signature` that Envoy answers
/// `true` (`rsa` or `ec`).
pub fn with_verify(calls: &str, family: &str) -> String {
    with_counts(
        calls,
        &[
            ("foreign_calls", json!(1)),
            ("foreign_function", json!("verify_signature")),
            ("foreign_argument", json!(verify_argument(family))),
        ],
    )
}

/// The cost fixture's configuration `calls` plus `rounds` of its `spin`: wasm instructions
/// without host calls (~31 a round).
pub fn with_spin(calls: &str, rounds: u64) -> String {
    with_counts(calls, &[("spin", json!(rounds))])
}

/// The host calls a Portcullis jwt cache hit makes (host-test counts them): the header map,
/// the clock, Kong's four headers, the identity and the decision record, two counters — and
/// nothing else.
pub const JWT_HIT_HOST_CALLS: &str =
    r#"{"map_reads":1,"clock_reads":1,"header_writes":4,"property_writes":2,"metric_incs":2}"#;

/// The host calls of the chain's acl on a request it allows (the default policy, no
/// methods): the identity, the groups header, the decision record, two counters.
pub const ACL_ALLOW_HOST_CALLS: &str =
    r#"{"property_reads":1,"header_writes":1,"property_writes":1,"metric_incs":2}"#;

/// The host calls of the chain's rate-limiting counting a consumer locally in a minute
/// window: the clock, the counter's slot read and written back, the identity, the decision
/// record, one counter, and Kong's five headers on the response.
pub const RATE_LIMIT_HOST_CALLS: &str = r#"{"clock_reads":1,"shared_reads":1,"shared_writes":1,"property_reads":1,"property_writes":1,"metric_incs":1,"response_header_writes":5}"#;

/// The same three filters' host calls made from one VM: the header map and the clock read
/// once, the identity kept in memory instead of read back, acl's `x-consumer-groups` not
/// written again with jwt's value, so what is left is Kong's four headers, the identity
/// published once and the three decision records (the access log reads one per filter), the
/// five counters, the slot, and the response headers.
pub const CHAIN_ONE_VM_HOST_CALLS: &str = r#"{"map_reads":1,"clock_reads":1,"header_writes":4,"property_writes":4,"metric_incs":5,"shared_reads":1,"shared_writes":1,"response_header_writes":5}"#;

/// The same with every stage's `decision_records: false`: the identity is the one property
/// written.
pub const CHAIN_ONE_VM_NO_RECORDS_HOST_CALLS: &str = r#"{"map_reads":1,"clock_reads":1,"header_writes":4,"property_writes":1,"metric_incs":5,"shared_reads":1,"shared_writes":1,"response_header_writes":5}"#;

pub fn cost_filter(config: &str) -> String {
    cost_filter_in("cost", config)
}

/// The cost fixture in VM `vm_id`: filters with distinct VM ids get a VM each, as the
/// Portcullis filters do.
pub fn cost_filter_in(vm_id: &str, config: &str) -> String {
    config::wasm_filter(vm_id, vm_id, "cost", &paths::fixture("cost"), Some(config))
}
