//! The wasm instructions per request of each row with Portcullis filters, counted by
//! host-test: deterministic (the same tokens, see `filters::token`, at host-test's fixed
//! start clock), so a change to a filter shows its cost here to the instruction.

use host_test::{GrpcAnswer, Host, Request};
use portcullis_core::rate_limit::rls::{
    DescriptorStatus, ProtoDuration, RateLimitResponse, CODE_OK,
};
use portcullis_tests::paths;
use prost::Message;

use crate::filters::{SERVICE_CLUSTER, SERVICE_LIMIT_PER_MINUTE};
use crate::rows::Row;

/// Prints the table: each Portcullis row's first and repeated request, and the host calls
/// of the repeated one. A row whose chain does not start, or refuses the request, is
/// flagged.
pub fn print(rows: &[Row]) {
    println!("\n## wasm instructions per request (host-test)\n");
    println!("| row | first request | repeated request | host calls (values returned), repeated |");
    println!("|---|---:|---:|---:|");
    for row in rows.iter().filter(|r| !r.portcullis.is_empty()) {
        let host = Host::new();
        if row.domain.is_some() {
            host.grpc_service(SERVICE_CLUSTER, |_| {
                GrpcAnswer::ok(ok_answer(SERVICE_LIMIT_PER_MINUTE - 1))
            });
        }
        let plugins: Result<Vec<_>, _> = row
            .portcullis
            .iter()
            .map(|(filter, config)| {
                host.plugin(paths::wasm(filter))
                    .name(filter)
                    .config(config.clone())
                    .start()
            })
            .collect();
        let Ok(mut plugins) = plugins else {
            println!("| {} | (failed to start) | | |", row.name);
            continue;
        };
        let request = || {
            let mut r = Request::get("/").route("bench");
            if let Some(token) = &row.token {
                r = r.header("authorization", &format!("Bearer {token}"));
            }
            r
        };
        let mut chain: Vec<&mut host_test::Plugin> = plugins.iter_mut().collect();
        let first = host_test::send(&mut chain, request());
        let again = host_test::send(&mut chain, request());
        let ok = first.reached_upstream() && again.reached_upstream();
        println!(
            "| {}{} | {} | {} | {} ({}) |",
            row.name,
            if ok { "" } else { " (refused!)" },
            first.instructions(),
            again.instructions(),
            again.host_calls(),
            again.reentries()
        );
    }
}

/// The rate limit service's answer to a one-descriptor request under its limit, as the
/// filter decodes it: overall OK, and the descriptor OK with `limit_remaining` and a
/// minute's window. host-test's stand-in for the service.
fn ok_answer(limit_remaining: u32) -> Vec<u8> {
    RateLimitResponse {
        overall_code: CODE_OK,
        statuses: vec![DescriptorStatus {
            code: CODE_OK,
            current_limit: None,
            limit_remaining,
            duration_until_reset: Some(ProtoDuration {
                seconds: 60,
                nanos: 0,
            }),
        }],
    }
    .encode_to_vec()
}
