//! `--admin-url`: consumers, credentials and groups loaded into a real portcullis-admin
//! (SQLite) through its Admin API, the jwt policy following it (`consumer_source`), a rerun
//! changing nothing, and failures naming the entity with nothing written. Needs the
//! portcullis-admin binary (`cargo build -p portcullis-admin`, or `make build`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{fixture, import, json, read, run_with};
use portcullis_tests::admin_service::{admin_binary, AdminService};
use portcullis_tests::paths::ScratchDir;
use serde_json::{json, Value};

fn admin_args(admin: &AdminService) -> Vec<String> {
    vec![
        "--admin-url".to_owned(),
        admin.admin_url(""),
        "--admin-data-plane".to_owned(),
        admin.data_plane_address().to_string(),
    ]
}

fn get(admin: &AdminService, path: &str) -> Value {
    let reply = admin.request("GET", path, &[]);
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
    reply.json()
}

fn data(admin: &AdminService, key: &str) -> Value {
    let reply = admin.data(&format!("/v1/credentials/{key}"));
    assert_eq!(reply.status, 200, "{key}: {}", reply.text());
    reply.json()
}

#[test]
fn consumers_go_to_portcullis_admin_and_a_rerun_changes_nothing() {
    let admin = AdminService::sqlite().unwrap();
    let args = admin_args(&admin);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = import("every-field-3.0.yml", &args);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&format!(
            "portcullis-admin at {}: 4 consumers, 4 credentials, 4 groups loaded",
            admin.admin_url("")
        )),
        "{}",
        run.stdout
    );
    assert_eq!(
        read(&run.file("report.txt")),
        read(&fixture("every-field-3.0.report.txt"))
    );

    // The jwt filter looks consumers up; only the anonymous one stays static.
    let jwt = json(&run.file("policies/jwt.json"));
    assert_eq!(
        jwt["consumer_source"],
        json!({"cluster": "portcullis_admin", "authority": "localhost"})
    );
    assert_eq!(
        jwt["consumers"],
        json!([{"username": "guest", "groups": ["guests"], "credentials": []}])
    );
    let yaml = read(&run.file("envoy.yaml"));
    assert!(yaml.contains("- name: portcullis_admin"));
    assert!(yaml.contains(&format!(
        "port_value: {}",
        admin.data_plane_address().port()
    )));
    run.validate();

    // What a gateway will find: the HS256 secret decoded from base64, the groups, the
    // public keys.
    let mobile = data(&admin, "mobile-app-key");
    assert_eq!(mobile["found"], true);
    assert_eq!(mobile["consumer"]["username"], "mobile-app");
    assert_eq!(mobile["consumer"]["custom_id"], "app-001");
    assert_eq!(mobile["consumer"]["groups"], json!(["admins"]));
    assert_eq!(
        mobile["credential"]["secret"],
        "mobile-app-secret-0123456789abcdef"
    );
    assert_eq!(
        data(&admin, "mobile-app-es256")["credential"]["algorithm"],
        "ES256"
    );
    let web = data(&admin, "web-app-rs256");
    assert_eq!(web["credential"]["algorithm"], "RS256");
    assert!(web["credential"]["rsa_public_key"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    assert_eq!(
        data(&admin, "partner-key")["consumer"]["groups"],
        json!(["partners"])
    );

    // Again: upserts, nothing added, the same answers.
    let id = get(&admin, "/consumers/mobile-app")["id"].clone();
    let key_id = get(&admin, "/consumers/mobile-app/jwt/mobile-app-key")["id"].clone();
    let again = import("every-field-3.0.yml", &args);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        get(&admin, "/consumers")["data"].as_array().unwrap().len(),
        4
    );
    assert_eq!(
        get(&admin, "/consumers/mobile-app/jwt")["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        get(&admin, "/consumers/mobile-app/acls")["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        data(&admin, "mobile-app-key")["consumer"]["groups"],
        json!(["admins"])
    );
    // The same entities, updated in place (a delete and a create would change the ids).
    assert_eq!(get(&admin, "/consumers/mobile-app")["id"], id);
    assert_eq!(
        get(&admin, "/consumers/mobile-app/jwt/mobile-app-key")["id"],
        key_id
    );
}

#[test]
fn a_consumer_with_only_a_custom_id_is_created_once() {
    let admin = AdminService::sqlite().unwrap();
    let args = admin_args(&admin);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for _ in 0..2 {
        let run = import("unsupported-3.0.yml", &args);
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        // In static mode it is reported; with the admin it is loaded.
        assert!(!read(&run.file("report.txt")).contains("consumer without a username"));
    }
    let found = get(&admin, "/consumers?custom_id=no-username");
    assert_eq!(found["data"].as_array().unwrap().len(), 1, "{found}");
    let custom = data(&admin, "custom-key");
    assert_eq!(custom["consumer"]["custom_id"], "no-username");
    assert_eq!(custom["consumer"]["username"], Value::Null);
    // What the filter would refuse is not loaded either.
    assert_eq!(data(&admin, "short-key")["found"], false);
}

#[test]
fn admin_failures_name_the_entity_and_write_nothing() {
    let token = "a-test-admin-token-0123456789";
    let db_dir = ScratchDir::new("admin-db").unwrap();
    let admin = AdminService::start_with(
        &admin_binary(),
        &format!("sqlite:{}", db_dir.path().join("a.db").display()),
        &[],
        &[("PORTCULLIS_ADMIN_TOKEN", token)],
    )
    .unwrap();
    let args = admin_args(&admin);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let refused = import("seed-3.0.yml", &args);
    assert_eq!(refused.code, 2, "{}", refused.stdout);
    assert!(
        refused.stderr.starts_with(&format!(
            "portcullis-admin: consumers[0] (mobile-app): PUT {}/consumers/mobile-app: 401 ",
            admin.admin_url("")
        )),
        "{}",
        refused.stderr
    );
    assert!(refused
        .stderr
        .contains("nothing written; the loads are upserts: run again once this is fixed"));
    refused.assert_nothing_written();

    args.extend(["--admin-token", token]);
    let loaded = import("seed-3.0.yml", &args);
    assert_eq!(loaded.code, 0, "{}", loaded.stderr);
    assert_eq!(
        data(&admin, "web-app-key")["consumer"]["groups"],
        json!(["customers"])
    );

    // The admin gone: refused, nothing written.
    drop(admin);
    let scratch = ScratchDir::new("kong-import").unwrap();
    let seed = fixture("seed-3.0.yml");
    let gone = run_with(seed.to_str().unwrap(), &args, scratch, None);
    assert_eq!(gone.code, 2);
    assert!(
        gone.stderr
            .starts_with("portcullis-admin: consumers[0] (mobile-app): PUT "),
        "{}",
        gone.stderr
    );
    gone.assert_nothing_written();
}
