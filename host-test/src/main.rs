//! `host-test`: run one request through a filter module, no Envoy, and print what happened.
//!
//! ```text
//! host-test dist/portcullis-acl.wasm --config '{"allow":["admins"]}' \
//!     GET /payments -H 'authorization: Bearer …' --route payments
//! ```
//! Prints the exchange as JSON: the client's response, what reached the upstream, the local
//! response if a filter sent one, wasm instructions per callback, and the filter's logs.

use std::process::ExitCode;

use host_test::{Host, LogLevel, Request};
use serde_json::json;

const USAGE: &str =
    "usage: host-test <module.wasm> [--config JSON|@file] [--vm-config JSON|@file] \
[METHOD] PATH [-H 'name: value']... [--body TEXT] [--route NAME] [--source IP:PORT] [--repeat N]";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("host-test: {e}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}

fn value_of(arg: &str) -> Result<String, String> {
    match arg.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}")),
        None => Ok(arg.to_string()),
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut args = args.into_iter();
    let module = args.next().ok_or("missing module")?;
    let (mut config, mut vm_config) = (String::new(), String::new());
    let (mut positional, mut headers) = (Vec::new(), Vec::new());
    let (mut body, mut route, mut source, mut repeat) = (None, None, None, 1usize);
    while let Some(arg) = args.next() {
        let mut next = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--config" => config = value_of(&next()?)?,
            "--vm-config" => vm_config = value_of(&next()?)?,
            "-H" | "--header" => headers.push(next()?),
            "--body" => body = Some(next()?),
            "--route" => route = Some(next()?),
            "--source" => source = Some(next()?),
            "--repeat" => repeat = next()?.parse().map_err(|e| format!("--repeat: {e}"))?,
            "-h" | "--help" => return Err("help".into()),
            _ => positional.push(arg),
        }
    }
    let (method, path) = match positional.as_slice() {
        [path] => ("GET".to_string(), path.clone()),
        [method, path] => (method.clone(), path.clone()),
        _ => return Err("expected [METHOD] PATH".into()),
    };

    let host = Host::new();
    host.set_log_level(LogLevel::Debug);
    // The CLI runs real requests (real tokens): the clock starts at the wall clock.
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        host.set_unix_time(now.as_secs());
    }
    let mut plugin = host
        .plugin(&module)
        .config(config)
        .vm_config(vm_config)
        .start()
        .map_err(|e| e.to_string())?;
    let mut request = Request::new(&method, &path);
    for header in &headers {
        let (name, value) = header
            .split_once(':')
            .ok_or(format!("header {header:?} is not 'name: value'"))?;
        request = request.header(name.trim(), value.trim());
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    if let Some(route) = route {
        request = request.route(&route);
    }
    if let Some(source) = source {
        request = request.source(&source);
    }
    let mut exchange = plugin.send(request.clone());
    for _ in 1..repeat {
        exchange = plugin.send(request.clone());
    }
    let text = |pairs: &[(String, Vec<u8>)]| -> Vec<serde_json::Value> {
        pairs
            .iter()
            .map(|(k, v)| json!([k, String::from_utf8_lossy(v)]))
            .collect()
    };
    let report = json!({
        "status": exchange.status(),
        "headers": text(&exchange.response.headers.pairs),
        "body": exchange.body_text(),
        "local_response_by": exchange.local_response.as_ref().map(|(by, _)| by.clone()),
        "upstream": exchange.upstream.as_ref().map(|u| json!({
            "headers": text(&u.headers.pairs),
            "body": String::from_utf8_lossy(&u.body),
        })),
        "stalled": exchange.stalled,
        "crash": exchange.crash,
        "instructions": exchange.instructions(),
        "host_calls": exchange.host_calls(),
        "reentries": exchange.reentries(),
        "callbacks": exchange.metering.iter().map(|m| json!([m.callback, m.instructions, m.host_calls, m.reentries])).collect::<Vec<_>>(),
        "logs": host.logs().iter().map(|l| format!("{:?} {}", l.level, l.message)).collect::<Vec<_>>(),
        "metrics": host.metrics().iter().map(|m| json!([m.name, m.value])).collect::<Vec<_>>(),
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
    );
    Ok(())
}
