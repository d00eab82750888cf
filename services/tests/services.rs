//! The `portcullis-services` binary over real HTTP on loopback, without Envoy: what each
//! service answers, what it logs, and how the process starts and stops.

// Test code: clippy.toml lets #[test] functions panic, and these helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::gateway::DemoCerts;
use common::{Services, BINARY};
use portcullis_services::certs;
use portcullis_tests::client;

const ALL: [&str; 4] = ["--users", "--orders", "--payments", "--login"];

fn login(services: &Services, body: &str) -> portcullis_tests::Reply {
    client::send(
        "POST",
        &services.url("login-service", "/login"),
        &[("content-type", "application/json")],
        Some(body.as_bytes()),
    )
}

#[test]
fn each_service_names_itself_and_who_the_gateway_says_is_calling() {
    let services = Services::start(&ALL);
    let identity = [
        ("X-Consumer-Username", "mobile-app"),
        ("X-Consumer-ID", "8f1c"),
        ("X-Consumer-Custom-ID", "123"),
        ("X-Consumer-Groups", "admins"),
        ("X-Credential-Identifier", "mobile-key"),
        ("X-Anonymous-Consumer", "false"),
        ("X-Claim-Role", "admin"),
        ("X-Jwt-Sub", "123"),
        ("Authorization", "Bearer not-echoed"),
    ];
    for (service, path) in [
        ("user-service", "/users/7?expand=orders"),
        ("order-service", "/orders"),
        ("payment-service", "/payments/p-1"),
    ] {
        let reply = client::send("PUT", &services.url(service, path), &identity, Some(b"{}"));
        assert_eq!(reply.status, 200, "{service}: {}", reply.text());
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.header("x-service"), Some(service));
        assert_eq!(
            reply.json(),
            serde_json::json!({
                "service": service,
                "message": "Authorized access",
                "user": "mobile-app",
                "method": "PUT",
                "path": path,
                "tls": false,
                "identity": {
                    "x-consumer-username": "mobile-app",
                    "x-consumer-id": "8f1c",
                    "x-consumer-custom-id": "123",
                    "x-consumer-groups": "admins",
                    "x-credential-identifier": "mobile-key",
                    "x-anonymous-consumer": "false",
                    "x-claim-role": "admin",
                    "x-jwt-sub": "123",
                },
            })
        );
    }
    let anonymous = client::get(&services.url("user-service", "/users"), &[]);
    assert_eq!(anonymous.json()["identity"], serde_json::json!({}));
    assert_eq!(anonymous.json()["user"], serde_json::Value::Null);

    let lines = services.wait_for_lines("[user-service]", 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("[user-service] PUT /users/7?expand=orders -> 200 ")
            && lines[0].contains(r#"x-consumer-username="mobile-app""#)
            && lines[0].contains(r#"x-consumer-groups="admins""#)
            && !lines[0].contains("not-echoed"),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        "[user-service] GET /users -> 200 (no identity headers)"
    );
}

#[test]
fn login_answers_the_profile_or_401_or_400() {
    let services = Services::start(&["--login"]);

    let reply = login(&services, r#"{"username":"web-app","password":"web-demo"}"#);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-service"), Some("login-service"));
    assert_eq!(
        reply.json(),
        serde_json::json!({
            "sub": "456",
            "username": "web-app",
            "groups": ["customers"],
            "email": "web-app@example.com",
        })
    );

    let reply = login(
        &services,
        r#"{"username":"web-app","password":"mobile-demo"}"#,
    );
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.json(),
        serde_json::json!({"message": "Invalid credentials"})
    );

    let reply = login(&services, r#"{"username":"web-app""#);
    assert_eq!(reply.status, 400);

    let reply = client::get(&services.url("login-service", "/login"), &[]);
    assert_eq!((reply.status, reply.header("allow")), (405, Some("POST")));

    let huge = format!(r#"{{"username":"{}","password":"x"}}"#, "a".repeat(70_000));
    assert_eq!(login(&services, &huge).status, 413);

    let lines = services.wait_for_lines("[login-service]", 5);
    assert_eq!(
        lines[..3],
        [
            r#"[login-service] POST /login -> 200 user="web-app" logged in"#,
            r#"[login-service] POST /login -> 401 user="web-app" invalid credentials"#,
            "[login-service] POST /login -> 400 malformed body: EOF while parsing an object \
             at line 1 column 21",
        ]
    );
    assert!(
        lines.iter().all(|line| !line.contains("demo")),
        "a password was logged: {lines:?}"
    );
}

#[test]
fn login_users_come_from_the_file_given() {
    let dir =
        std::env::temp_dir().join(format!("portcullis-services-users-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("users.json");
    std::fs::write(
        &file,
        r#"{"users":[{"sub":"9","username":"ops","password":"ops-pw","groups":["admins"],"email":"ops@example.com"}]}"#,
    )
    .unwrap();
    let output = Command::new(BINARY)
        .args(["--login", "127.0.0.1:0", "--login-users"])
        .arg(dir.join("missing.json"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing.json"));

    let mut child = Command::new(BINARY)
        .args(["--login", "127.0.0.1:0", "--login-users"])
        .arg(&file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let port = first.trim().rsplit(':').next().unwrap();
    let url = format!("http://127.0.0.1:{port}/login");
    let ops = client::send(
        "POST",
        &url,
        &[],
        Some(br#"{"username":"ops","password":"ops-pw"}"#),
    );
    let mobile = client::send(
        "POST",
        &url,
        &[],
        Some(br#"{"username":"mobile-app","password":"mobile-demo"}"#),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(ops.status, 200, "{}", ops.text());
    assert_eq!(ops.json()["sub"], "9");
    assert_eq!(mobile.status, 401);
}

#[test]
fn a_port_in_use_stops_everything_and_names_the_port() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let output = Command::new(BINARY)
        .args(["--users", "127.0.0.1:0", "--orders"])
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("order-service: port {port} is already in use")),
        "{stderr}"
    );
    // The port check comes before any service starts.
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("listening"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn a_bad_command_line_is_exit_2_with_usage() {
    for args in [&[][..], &["--users", "18081"], &["--nope", "x"]] {
        let output = Command::new(BINARY).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("usage: portcullis-services"), "{stderr}");
    }
}

#[test]
fn sigint_and_sigterm_stop_the_services() {
    common::sigint_at_its_default();
    for signal in ["INT", "TERM"] {
        let mut services = Services::start(&ALL);
        let url = services.url("order-service", "/orders");
        assert_eq!(client::get(&url, &[]).status, 200);
        let pid = services.pid();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        let exit = loop {
            if let Some(exit) = services.try_wait() {
                break exit;
            }
            assert!(Instant::now() < deadline, "SIG{signal} did not stop it");
            std::thread::sleep(Duration::from_millis(10));
        };
        let expected = if signal == "INT" { 2 } else { 15 };
        assert_eq!(exit.signal(), Some(expected), "SIG{signal}: {exit}");
        assert!(client::try_send("GET", &url, &[], None).is_err());
    }
}

#[test]
fn with_a_certificate_every_service_answers_https_and_says_so() {
    let certs = DemoCerts::new();
    let flags = certs.flags(certs::SERVICES);
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let services = Services::start_with(&ALL, &args);
    assert!(services.tls(), "{:?}", services.lines());
    for (service, path) in [
        ("user-service", "/users"),
        ("order-service", "/orders"),
        ("payment-service", "/payments"),
    ] {
        let url = services.url(service, path);
        assert!(url.starts_with("https://"), "{url}");
        let reply = client::get(&url, &[("x-consumer-username", "web-app")]);
        assert_eq!(reply.status, 200, "{service}: {}", reply.text());
        let body = reply.json();
        assert_eq!(
            (body["service"].as_str(), body["tls"].as_bool()),
            (Some(service), Some(true))
        );
        assert_eq!(body["user"], "web-app");
    }
    let reply = login(&services, r#"{"username":"web-app","password":"web-demo"}"#);
    assert_eq!(reply.status, 200, "{}", reply.text());
    // Plain HTTP to an HTTPS service gets no HTTP answer, and the service keeps serving.
    let plain = services
        .url("user-service", "/users")
        .replacen("https", "http", 1);
    assert!(client::try_send("GET", &plain, &[], None).is_err());
    let reply = client::get(&services.url("user-service", "/users"), &[]);
    assert_eq!(reply.status, 200);
}

#[test]
fn tls_files_that_do_not_hold_up_stop_the_start_naming_the_flag() {
    let certs = DemoCerts::new();
    let dir = certs.dir();
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let missing = file("nope.pem");
    let (cert, key, other_key) = (
        file("services.pem"),
        file("services.key"),
        file("gateway.key"),
    );
    for (args, expected) in [
        (
            vec!["--tls-cert", missing.as_str(), "--tls-key", key.as_str()],
            format!("portcullis-services: --tls-cert {missing}: "),
        ),
        (
            vec!["--tls-cert", key.as_str(), "--tls-key", key.as_str()],
            format!("portcullis-services: --tls-cert {key}: no certificate in it"),
        ),
        (
            vec!["--tls-cert", cert.as_str(), "--tls-key", cert.as_str()],
            format!("portcullis-services: --tls-key {cert}: no private key in it"),
        ),
        // A key that is not the certificate's.
        (
            vec!["--tls-cert", cert.as_str(), "--tls-key", other_key.as_str()],
            "portcullis-services: user-service: --tls-cert / --tls-key: ".to_owned(),
        ),
    ] {
        let output = Command::new(BINARY)
            .args(["--users", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with(&expected), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: served anyway");
    }
}

#[test]
fn certs_writes_a_new_ca_and_every_certificate() {
    let first = DemoCerts::new();
    let output = Command::new(BINARY)
        .args(["certs", "--dir"])
        .arg(first.dir())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let written = String::from_utf8_lossy(&output.stdout);
    for name in [
        "ca.pem",
        "gateway.pem",
        "gateway.key",
        "services.pem",
        "services.key",
        "portcullis-admin.pem",
        "portcullis-admin.key",
        "ratelimit.pem",
        "ratelimit.key",
    ] {
        let line = format!("wrote {}", first.dir().join(name).display());
        assert!(
            written.lines().any(|l| l == line),
            "no {line:?} in {written}"
        );
    }
    assert_eq!(written.lines().count(), 9, "{written}");
    let output = Command::new(BINARY).args(["certs"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr)
        .starts_with("portcullis-services: certs needs --dir DIR"));
}
