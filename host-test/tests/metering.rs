//! What host-test meters per request: wasm instructions, calls into the host, and the host's
//! re-entries into the VM to allocate each value it returns — the figures `make bench`
//! prints, driven through the cost fixture (`host-test/cost`), which makes exactly the calls
//! its configuration asks for.

use host_test::{fixture, Exchange, Host, Request};
use portcullis_core::envoy_foreign::VerifySignatureArguments;
use prost::Message;

fn send(config: &str, request: Request) -> Exchange {
    let host = Host::new();
    let mut cost = host
        .plugin(fixture("cost"))
        .name("cost")
        .config(config)
        .start()
        .expect("the cost fixture starts");
    cost.send(request)
}

#[test]
fn an_empty_filter_makes_no_host_call() {
    let ex = send("{}", Request::get("/"));
    assert_eq!(ex.status(), 200);
    assert_eq!((ex.host_calls(), ex.reentries()), (0, 0));
    assert!(ex.instructions() > 0);
}

#[test]
fn every_value_returned_costs_a_reentry() {
    let present = send(
        r#"{"header_reads":3,"property_reads":2}"#,
        Request::get("/")
            .route("r")
            .header("authorization", "Bearer x"),
    );
    assert_eq!((present.host_calls(), present.reentries()), (5, 5));
    // An absent header returns nothing, so the host has nothing to allocate.
    let absent = send(r#"{"header_reads":3}"#, Request::get("/"));
    assert_eq!((absent.host_calls(), absent.reentries()), (3, 0));
}

#[test]
fn calls_that_return_no_value_do_not_reenter() {
    let ex = send(
        r#"{"header_writes":4,"metric_incs":2,"clock_reads":1,"property_writes":1,"shared_reads":2}"#,
        Request::get("/"),
    );
    assert_eq!((ex.host_calls(), ex.reentries()), (10, 0));
    assert_eq!(ex.upstream_header("x-cost-3").as_deref(), Some("v"));
}

#[test]
fn instructions_grow_with_the_work_and_not_the_calls() {
    let idle = send("{}", Request::get("/")).instructions();
    let busy = send(r#"{"allocs":100}"#, Request::get("/"));
    assert_eq!(busy.host_calls(), 0);
    assert!(
        busy.instructions() > idle + 100 * 100,
        "{} vs {idle}",
        busy.instructions()
    );
}

/// `spin` is instructions alone: the bench's row of the one-VM floor plus the gateway's
/// count of instructions relies on ~31 a round and no host call.
#[test]
fn spin_adds_instructions_without_host_calls() {
    let idle = send("{}", Request::get("/")).instructions();
    let spun = send(r#"{"spin":1000}"#, Request::get("/"));
    assert_eq!((spun.host_calls(), spun.reentries()), (0, 0));
    let added = spun.instructions() - idle;
    assert!((25_000..40_000).contains(&added), "{added}");
}

#[test]
fn a_foreign_function_answer_is_a_value_returned() {
    let vector = |name: &str| {
        std::fs::read(format!(
            "{}/../filters/glue/vectors/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("the glue's probe vectors")
    };
    let argument = VerifySignatureArguments {
        hash_function: "sha256".into(),
        public_key: vector("rsa.pub.der"),
        public_key_pem: String::new(),
        signature: vector("rsa.sig"),
        text: vector("text"),
    }
    .encode_to_vec();
    let hex: String = argument.iter().map(|b| format!("{b:02x}")).collect();
    let config = serde_json::json!({
        "foreign_calls": 2, "foreign_function": "verify_signature", "foreign_argument": hex,
    });
    let ex = send(&config.to_string(), Request::get("/"));
    assert_eq!(ex.status(), 200);
    assert_eq!((ex.host_calls(), ex.reentries()), (2, 2));
}

#[test]
fn foreign_calls_without_a_function_are_refused() {
    let host = Host::new();
    let started = host
        .plugin(fixture("cost"))
        .config(r#"{"foreign_calls":1}"#)
        .start();
    assert!(started.is_err());
}
