//! The minimal per-filter examples in `envoy-config/examples/` are real Envoy configuration:
//! `envoy --mode validate` accepts each one, which also loads the filter and runs its
//! `on_configure` on the example's policy. `jwt-tls.yaml` reads its certificates from files,
//! which validation loads too: the test makes a CA and a certificate for it.

use std::collections::BTreeMap;

use portcullis_tests::certs::Authority;
use portcullis_tests::config::fill;
use portcullis_tests::{paths, Envoy};

#[test]
fn every_filter_example_validates_in_envoy() {
    let dir = paths::workspace_root().join("envoy-config/examples");
    let dist = paths::workspace_root().join("dist");
    let ca = Authority::new("examples-tls").unwrap();
    let gateway = ca.server("gateway").unwrap();
    let tls = ca.cert().parent().unwrap();
    assert_eq!(gateway.cert, tls.join("gateway.pem"));
    let vars = BTreeMap::from([
        ("DIST".to_owned(), dist.to_string_lossy().into_owned()),
        ("TLS".to_owned(), tls.to_string_lossy().into_owned()),
    ]);
    let mut seen = Vec::new();
    for (filter, example) in [
        ("jwt", "jwt"),
        ("jwt", "jwt-tls"),
        ("acl", "acl"),
        ("rate-limiting", "rate-limiting"),
        ("rate-limiting", "rate-limiting-redis"),
        ("token-issuer", "token-issuer"),
    ] {
        paths::wasm(filter); // a clear message when `make build` has not run
        let path = dir.join(format!("{example}.yaml"));
        let template =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let config = fill(&template, &vars).unwrap_or_else(|e| panic!("{filter}: {e}"));
        if let Err(log) = Envoy::validate(&config) {
            panic!("envoy --mode validate refused {}:\n{log}", path.display());
        }
        seen.push(example);
    }
    // Every example in the folder, none forgotten.
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".yaml").map(str::to_owned)
        })
        .collect();
    files.sort();
    seen.sort();
    assert_eq!(files, seen);
}

#[test]
fn a_broken_policy_in_an_example_is_refused_by_validate() {
    let path = paths::workspace_root().join("envoy-config/examples/acl.yaml");
    let dist = paths::workspace_root().join("dist");
    let vars = BTreeMap::from([("DIST".to_owned(), dist.to_string_lossy().into_owned())]);
    let config = fill(&std::fs::read_to_string(path).unwrap(), &vars).unwrap();
    let broken = config.replace("any_consumer", "any_consumr");
    assert_ne!(broken, config);
    let log = Envoy::validate(&broken).expect_err("a misspelt field must be refused");
    assert!(log.contains("any_consumr"), "{log}");
}
