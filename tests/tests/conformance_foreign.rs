//! Conformance of host-test's native `verify_signature` and `sign` with Envoy's: the probe
//! calls the foreign function named by `x-probe-function` with the request body as argument
//! bytes and records the status and result; both hosts must answer alike. Signatures are made
//! in the test with OpenSSL; ECDSA signing is randomised, so `sign` answers are compared by
//! checking the signature, not its bytes. Envoy 1.36 answers otherwise in a few cases,
//! listed in [`release_difference`].

use std::time::{Duration, Instant};

use host_test::foreign::{
    SignArguments, SignResult, VerifySignatureArguments, VerifySignatureResult,
};
use host_test::{Host, Request};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::{Signer, Verifier};
use portcullis_tests::client;
use portcullis_tests::config::{wasm_filter, Gateway};
use portcullis_tests::envoy::Envoy;
use portcullis_tests::paths;
use portcullis_tests::release::{self, Release};
use portcullis_tests::upstream::Upstream;
use prost::Message;
use serde_json::Value;

struct Case {
    id: String,
    function: &'static str,
    arguments: Vec<u8>,
    /// For `sign`: the key that must verify the signature, and the digest.
    check: Option<(PKey<Private>, MessageDigest)>,
}

const TEXT: &[u8] = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtb2JpbGUtYXBwIn0";

fn sign_with(key: &PKey<Private>, md: MessageDigest, text: &[u8]) -> Vec<u8> {
    let mut signer = Signer::new(md, key).unwrap();
    signer.sign_oneshot_to_vec(text).unwrap()
}

fn verify_case(id: &str, hash: &str, key: &PKey<Private>, pem: bool, signature: Vec<u8>) -> Case {
    let mut args = VerifySignatureArguments {
        hash_function: hash.into(),
        signature,
        text: TEXT.to_vec(),
        ..Default::default()
    };
    if pem {
        args.public_key_pem = String::from_utf8(key.public_key_to_pem().unwrap()).unwrap();
    } else {
        args.public_key = key.public_key_to_der().unwrap();
    }
    Case {
        id: id.into(),
        function: "verify_signature",
        arguments: args.encode_to_vec(),
        check: None,
    }
}

fn cases() -> Vec<Case> {
    let rsa = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let ec = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let ed = PKey::generate_ed25519().unwrap();
    let rsa_sig = sign_with(&rsa, MessageDigest::sha256(), TEXT);
    let mut flipped = rsa_sig.clone();
    flipped[10] ^= 1;
    let ec_der = sign_with(&ec, MessageDigest::sha256(), TEXT);
    let ed_sig = {
        let mut signer = Signer::new_without_digest(&ed).unwrap();
        signer.sign_oneshot_to_vec(TEXT).unwrap()
    };
    let mut both = VerifySignatureArguments::decode(
        verify_case("x", "sha256", &rsa, false, rsa_sig.clone())
            .arguments
            .as_slice(),
    )
    .unwrap();
    both.public_key_pem = String::from_utf8(rsa.public_key_to_pem().unwrap()).unwrap();
    let sign_case = |id: &str, key: &PKey<Private>, pem: bool, hash: &str, md| {
        let mut args = SignArguments {
            hash_function: hash.into(),
            text: TEXT.to_vec(),
            ..Default::default()
        };
        if pem {
            args.private_key_pem =
                String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        } else {
            args.private_key = key.private_key_to_pkcs8().unwrap();
        }
        Case {
            id: id.into(),
            function: "sign",
            arguments: args.encode_to_vec(),
            check: Some((key.clone(), md)),
        }
    };
    vec![
        verify_case("rs256-der-good", "sha256", &rsa, false, rsa_sig.clone()),
        verify_case("rs256-pem-good", "sha256", &rsa, true, rsa_sig.clone()),
        verify_case("rs256-flipped-bit", "sha256", &rsa, false, flipped),
        verify_case("rs256-wrong-hash", "sha384", &rsa, false, rsa_sig.clone()),
        verify_case("rs256-unknown-hash", "md4", &rsa, false, rsa_sig.clone()),
        verify_case(
            "rs256-truncated",
            "sha256",
            &rsa,
            false,
            rsa_sig[..100].to_vec(),
        ),
        verify_case("es256-der-good", "sha256", &ec, false, ec_der.clone()),
        verify_case("es256-raw-rs", "sha256", &ec, false, vec![1u8; 64]),
        verify_case("ed25519-sha256", "sha256", &ed, false, ed_sig),
        verify_case("rs256-key-mismatch", "sha256", &ec, false, rsa_sig),
        Case {
            id: "verify-both-key-forms".into(),
            function: "verify_signature",
            arguments: both.encode_to_vec(),
            check: None,
        },
        Case {
            id: "verify-malformed".into(),
            function: "verify_signature",
            arguments: vec![0xff, 0xff, 0xff],
            check: None,
        },
        Case {
            id: "verify-garbage-key".into(),
            function: "verify_signature",
            arguments: VerifySignatureArguments {
                hash_function: "sha256".into(),
                public_key: b"not a key".to_vec(),
                ..Default::default()
            }
            .encode_to_vec(),
            check: None,
        },
        sign_case(
            "sign-rs256-der",
            &rsa,
            false,
            "sha256",
            MessageDigest::sha256(),
        ),
        sign_case(
            "sign-es256-pem",
            &ec,
            true,
            "sha256",
            MessageDigest::sha256(),
        ),
        sign_case(
            "sign-rs512-pem",
            &rsa,
            true,
            "sha512",
            MessageDigest::sha512(),
        ),
        Case {
            id: "sign-malformed".into(),
            function: "sign",
            arguments: vec![0x0a, 0xff],
            check: None,
        },
        Case {
            id: "unknown-function".into(),
            function: "no_such_function",
            arguments: vec![1, 2, 3],
            check: None,
        },
    ]
}

/// What a case's answer means, comparable across hosts.
fn meaning(case: &Case, status: &str, result_hex: &str) -> Value {
    let bytes: Vec<u8> = (0..result_hex.len() / 2)
        .map(|i| u8::from_str_radix(&result_hex[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    let result = match (case.function, &case.check) {
        ("verify_signature", _) if status == "Ok" => {
            let r = VerifySignatureResult::decode(bytes.as_slice()).unwrap_or_default();
            serde_json::json!({ "result": r.result, "error": r.error })
        }
        ("sign", None) if status == "Ok" => {
            let r = SignResult::decode(bytes.as_slice()).unwrap_or_default();
            serde_json::json!({ "result": r.result, "signature_len": r.signature.len(), "error": r.error })
        }
        ("sign", Some((key, md))) if status == "Ok" => {
            let r = SignResult::decode(bytes.as_slice()).unwrap_or_default();
            let mut verifier = Verifier::new(*md, key).unwrap();
            let valid = verifier.verify_oneshot(&r.signature, TEXT).unwrap_or(false);
            serde_json::json!({ "result": r.result, "signature_verifies": valid, "error": r.error })
        }
        _ => Value::Null,
    };
    serde_json::json!({ "status": status, "result": result })
}

fn foreign_event(events: &[Value]) -> (String, String) {
    let event = events
        .iter()
        .find(|e| e["event"] == "foreign")
        .cloned()
        .unwrap_or_default();
    (
        event["status"].as_str().unwrap_or("(no event)").to_string(),
        event["result_hex"].as_str().unwrap_or("").to_string(),
    )
}

/// What Envoy `release` answers to `case` where it is known to differ from host-test, which
/// answers as Envoy 1.37 and later do; `None` where it must answer as host-test does. Envoy
/// 1.36 has no `sign` (NotFound), and its `verify_signature` has no `public_key_pem` field
/// (an unknown protobuf field, skipped): a PEM key alone leaves it no key, and with both
/// forms it checks the DER one instead of refusing the pair. Neither touches the filters,
/// which give the host DER keys only and probe `sign` at start (docs/envoy-releases.md).
fn release_difference(release: Release, case: &Case) -> Option<Value> {
    if case.function == "sign" && !release.has_sign() {
        return Some(serde_json::json!({ "status": "NotFound", "result": null }));
    }
    if release.at_least(1, 37) {
        return None;
    }
    match case.id.as_str() {
        "rs256-pem-good" => Some(serde_json::json!({
            "status": "Ok",
            "result": { "result": false, "error": "Failed to initialize digest verify." }
        })),
        "verify-both-key-forms" => Some(serde_json::json!({
            "status": "Ok",
            "result": { "result": true, "error": "" }
        })),
        _ => None,
    }
}

#[test]
fn crypto_foreign_functions_match_between_host_test_and_envoy() {
    let cases = cases();

    let host = Host::new();
    let mut probe = host
        .plugin(paths::fixture("probe"))
        .name("probe")
        .start()
        .unwrap();
    let harness: Vec<Value> = cases
        .iter()
        .map(|case| {
            let ex = probe.send(
                Request::post("/probe/foreign")
                    .header("x-probe-id", &case.id)
                    .header("x-probe-function", case.function)
                    .body(case.arguments.clone()),
            );
            assert!(ex.crash.is_none() && ex.stalled.is_none(), "{ex:?}");
            let (bytes, _) = host
                .shared_data("probe", &format!("probe.record.{}", case.id))
                .unwrap_or_default();
            let events: Vec<Value> = serde_json::from_slice(&bytes).unwrap_or_default();
            let (status, hex) = foreign_event(&events);
            meaning(case, &status, &hex)
        })
        .collect();

    let app = Upstream::start("app");
    let config = Gateway::new()
        .route("conf", "/", &app)
        .filter(wasm_filter(
            "probe",
            "probe",
            "probe",
            &paths::fixture("probe"),
            Some("active"),
        ))
        .render();
    let envoy = Envoy::builder(config).start().expect("Envoy starts");
    let envoy_answers: Vec<Value> = cases
        .iter()
        .map(|case| {
            let headers = [
                ("x-probe-id", case.id.as_str()),
                ("x-probe-function", case.function),
            ];
            let reply = client::send(
                "POST",
                &envoy.url("/probe/foreign"),
                &headers,
                Some(&case.arguments),
            );
            assert_eq!(reply.status, 200, "{}", case.id);
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let dump = client::get(&envoy.url(&format!("/probe/dump?id={}", case.id)), &[]);
                let events: Vec<Value> = serde_json::from_slice(&dump.body).unwrap_or_default();
                let (status, hex) = foreign_event(&events);
                if status != "(no event)" || Instant::now() > deadline {
                    break meaning(case, &status, &hex);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .collect();

    let release = release::current();
    let mut differences = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let expected = release_difference(release, case).unwrap_or_else(|| harness[i].clone());
        if expected != envoy_answers[i] {
            differences.push(format!(
                "{} (Envoy {release}):\n  expected: {expected}\n  envoy:    {}",
                case.id, envoy_answers[i]
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    // The good signatures really were accepted (the comparison alone could pass on two
    // equally broken hosts).
    assert_eq!(harness[0]["result"]["result"], true);
    assert_eq!(harness[6]["result"]["result"], true);
    let signed = cases.iter().position(|c| c.id == "sign-rs256-der").unwrap();
    assert_eq!(harness[signed]["result"]["signature_verifies"], true);
}
