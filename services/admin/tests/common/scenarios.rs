//! Scenarios every database must pass, each on a fresh database, each reading like the
//! HTTP exchange it describes.

use serde_json::{json, Value};

use super::Admin;

pub const RSA2048: &str = include_str!("../fixtures/rsa2048.pub.pem");
pub const RSA1024: &str = include_str!("../fixtures/rsa1024.pub.pem");
pub const P256: &str = include_str!("../fixtures/p256.pub.pem");
pub const P384: &str = include_str!("../fixtures/p384.pub.pem");
pub const ED25519: &str = include_str!("../fixtures/ed25519.pub.pem");

/// `{"message":"Not found"}` with 404.
fn not_found(answer: &super::Answer) {
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(answer.json(), json!({ "message": "Not found" }));
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The seed's flow, as Kong's docs script it: `curl -X POST …/consumers --data
/// username=…`, then `…/jwt` with no body at all, then `…/acls --data group=admins`.
pub fn seed_flow(admin: &Admin) {
    let consumer = admin.form("POST", "/consumers", &[("username", "mobile-app")]);
    assert_eq!(consumer.status, 201, "{}", consumer.body);
    assert_eq!(
        consumer.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let c = consumer.json();
    assert_eq!(c["username"], "mobile-app");
    assert_eq!(c["custom_id"], Value::Null);
    assert_eq!(c["tags"], Value::Null);
    assert!(c["created_at"].as_i64().unwrap() > 1_600_000_000);
    let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "created_at",
            "custom_id",
            "id",
            "tags",
            "updated_at",
            "username"
        ]
    );

    // `curl -X POST http://localhost:8001/consumers/mobile-app/jwt`: no body, no type.
    let jwt = admin.raw("POST", "/consumers/mobile-app/jwt", &[], b"");
    assert_eq!(jwt.status, 201, "{}", jwt.body);
    let j = jwt.json();
    assert_eq!(j["consumer"], json!({ "id": c["id"] }));
    assert_eq!(j["algorithm"], "HS256");
    assert!(is_hex(j["key"].as_str().unwrap(), 32), "{j}");
    assert!(is_hex(j["secret"].as_str().unwrap(), 32), "{j}");
    assert_eq!(j["rsa_public_key"], Value::Null);

    let acl = admin.form("POST", "/consumers/mobile-app/acls", &[("group", "admins")]);
    assert_eq!(acl.status, 201, "{}", acl.body);
    assert_eq!(acl.json()["group"], "admins");
    assert_eq!(acl.json()["consumer"], json!({ "id": c["id"] }));

    // The gateway's view, at once.
    let key = j["key"].as_str().unwrap();
    let found = admin.data(&format!("/v1/credentials/{key}"));
    assert_eq!(found.status, 200, "{}", found.body);
    let f = found.json();
    assert_eq!(f["consumer"]["username"], "mobile-app");
    assert_eq!(f["consumer"]["id"], c["id"]);
    assert_eq!(f["consumer"]["groups"], json!(["admins"]));
    assert_eq!(f["credential"]["secret"], j["secret"]);
    assert_eq!(f["credential"]["algorithm"], "HS256");
    assert!(f["head"].as_i64().unwrap() >= 3);
    assert!(!found.body.contains(' '), "compact JSON: {}", found.body);

    // The seed's worry: a second create of the same consumer.
    let again = admin.form("POST", "/consumers", &[("username", "mobile-app")]);
    assert_eq!(again.status, 409);
    assert_eq!(
        again.json(),
        json!({
            "code": 5,
            "name": "unique constraint violation",
            "message": "UNIQUE violation detected on '{username=\"mobile-app\"}'",
            "fields": { "username": "mobile-app" },
        })
    );
}

pub fn consumers(admin: &Admin) {
    let bob = admin.json(
        "POST",
        "/consumers",
        &json!({ "username": "bob", "custom_id": "b-1", "tags": ["t1", "t2"] }),
    );
    assert_eq!(bob.status, 201, "{}", bob.body);
    let bob = bob.json();
    let id = bob["id"].as_str().unwrap().to_owned();
    assert_eq!(bob["tags"], json!(["t1", "t2"]));

    assert_eq!(admin.get("/consumers/bob").json(), bob);
    assert_eq!(admin.get(&format!("/consumers/{id}")).json(), bob);
    assert_eq!(
        admin
            .get(&format!("/consumers/{}", id.to_uppercase()))
            .json(),
        bob
    );
    assert_eq!(admin.get("/consumers/bob/").status, 200, "trailing slash");
    not_found(&admin.get("/consumers/nobody"));
    not_found(&admin.get("/consumers/00000000-0000-4000-8000-000000000000"));

    // ?custom_id= finds one, answered as a list.
    let by_custom = admin.get("/consumers?custom_id=b-1").json();
    assert_eq!(by_custom, json!({ "data": [bob], "next": null }));
    assert_eq!(
        admin.get("/consumers?custom_id=none").json(),
        json!({ "data": [], "next": null })
    );
    let empty = admin.get("/consumers?custom_id=");
    assert_eq!(empty.status, 400);
    assert_eq!(
        empty.json(),
        json!({ "code": 10, "name": "invalid unique custom_id", "message": "length must be at least 1" })
    );

    // Unique username and custom_id.
    let dup = admin.json(
        "POST",
        "/consumers",
        &json!({ "username": "tom", "custom_id": "b-1" }),
    );
    assert_eq!(dup.status, 409);
    assert_eq!(
        dup.json()["message"],
        "UNIQUE violation detected on '{custom_id=\"b-1\"}'"
    );

    // At least one of username and custom_id (Kong's exact answer).
    for empty in [
        admin.json("POST", "/consumers", &json!({})),
        admin.raw("POST", "/consumers", &[], b""),
    ] {
        assert_eq!(empty.status, 400);
        assert_eq!(
            empty.json(),
            json!({
                "code": 2,
                "name": "schema violation",
                "fields": { "@entity": ["at least one of these fields must be non-empty: 'custom_id', 'username'"] },
                "message": "schema violation (at least one of these fields must be non-empty: 'custom_id', 'username')",
            })
        );
    }

    // PATCH by username and by id.
    let patched = admin.form("PATCH", "/consumers/bob", &[("username", "robert")]);
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["username"], "robert");
    assert_eq!(patched.json()["id"], id.as_str());
    assert_eq!(patched.json()["custom_id"], "b-1");
    let patched = admin.json(
        "PATCH",
        &format!("/consumers/{id}"),
        &json!({ "custom_id": null }),
    );
    assert_eq!(patched.json()["custom_id"], Value::Null);
    let cleared = admin.json(
        "PATCH",
        &format!("/consumers/{id}"),
        &json!({ "username": null }),
    );
    assert_eq!(cleared.status, 400);
    assert_eq!(
        cleared.json()["message"],
        "schema violation (when updating, at least one of these fields must be non-empty: 'custom_id', 'username')"
    );
    not_found(&admin.json(
        "PATCH",
        "/consumers/_inexistent_",
        &json!({ "username": "x" }),
    ));

    // PUT creates by username (Kong: the path is the username), replaces by id.
    let put = admin.json("PUT", "/consumers/carol", &json!({}));
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.json()["username"], "carol");
    let carol_id = put.json()["id"].as_str().unwrap().to_owned();
    let replaced = admin.json("PUT", "/consumers/carol", &json!({ "custom_id": "c-9" }));
    assert_eq!(replaced.json()["id"], carol_id.as_str());
    assert_eq!(replaced.json()["custom_id"], "c-9");
    let replaced = admin.json("PUT", "/consumers/carol", &json!({}));
    assert_eq!(
        replaced.json()["custom_id"],
        Value::Null,
        "PUT replaces: absent is null"
    );
    // Kong's upsert_by_username: the path wins over the body, never a rename.
    let path_wins = admin.json("PUT", "/consumers/carol", &json!({ "username": "dave" }));
    assert_eq!(path_wins.status, 200, "{}", path_wins.body);
    assert_eq!(path_wins.json()["id"], carol_id.as_str());
    assert_eq!(path_wins.json()["username"], "carol");
    not_found(&admin.get("/consumers/dave"));
    let new_id = "6e2f2a5e-3c7e-4c44-9a4e-1b2c3d4e5f60";
    let put = admin.json(
        "PUT",
        &format!("/consumers/{new_id}"),
        &json!({ "custom_id": "by-id" }),
    );
    assert_eq!(put.json()["id"], new_id);
    let bad = admin.json(
        "PUT",
        "/consumers/6e2f2a5e-3c7e-4c44-9a4e-1b2c3d4e5f61",
        &json!({}),
    );
    assert_eq!(bad.status, 400);

    // A username that is not ASCII, percent-encoded in the path.
    assert_eq!(
        admin
            .json("POST", "/consumers", &json!({ "username": "円" }))
            .status,
        201
    );
    assert_eq!(admin.get("/consumers/%E5%86%86").json()["username"], "円");

    // DELETE: 204, and 204 again for nothing (Kong's top-level delete).
    let gone = admin.delete("/consumers/carol");
    assert_eq!(gone.status, 204);
    assert_eq!(gone.body, "");
    not_found(&admin.get("/consumers/carol"));
    assert_eq!(admin.delete("/consumers/carol").status, 204);
}

pub fn paging(admin: &Admin) {
    for i in 0..7 {
        assert_eq!(
            admin
                .form("POST", "/consumers", &[("username", &format!("user-{i}"))])
                .status,
            201
        );
    }
    let mut path = "/consumers?size=3".to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = admin.get(&path).json();
        pages += 1;
        for c in page["data"].as_array().unwrap() {
            seen.push(c["username"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => {
                assert!(next.starts_with("/consumers?offset="), "{next}");
                assert!(next.ends_with("&size=3"), "{next}");
                assert_eq!(page["data"].as_array().unwrap().len(), 3);
                assert!(page["offset"].is_string());
                path = next.to_owned();
            }
            None => {
                assert!(
                    page.get("offset").is_none(),
                    "last page has no offset: {page}"
                );
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    seen.sort();
    assert_eq!(
        seen,
        (0..7).map(|i| format!("user-{i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        admin.get("/consumers").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        7
    );

    let rows = [
        (
            "/consumers?size=abc",
            json!({ "code": 9, "name": "invalid size", "message": "size must be a number" }),
        ),
        (
            "/consumers?size=0",
            json!({ "code": 9, "name": "invalid size", "message": "size must be an integer between 1 and 1000" }),
        ),
        (
            "/consumers?size=1001",
            json!({ "code": 9, "name": "invalid size", "message": "size must be an integer between 1 and 1000" }),
        ),
        (
            "/consumers?offset=!!",
            json!({ "code": 7, "name": "invalid offset", "message": "'!!' is not a valid offset: bad base64 encoding" }),
        ),
    ];
    for (path, body) in rows {
        let answer = admin.get(path);
        assert_eq!(answer.status, 400, "{path}");
        assert_eq!(answer.json(), body, "{path}");
    }

    // A nested list pages alike, its next link under the consumer's path as given.
    for i in 0..3 {
        assert_eq!(
            admin
                .json(
                    "POST",
                    "/consumers/user-1/jwt",
                    &json!({ "key": format!("k-{i}") })
                )
                .status,
            201
        );
    }
    let first = admin.get("/consumers/user-1/jwt?size=2").json();
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    let next = first["next"].as_str().unwrap();
    assert!(next.starts_with("/consumers/user-1/jwt?offset="), "{next}");
    let second = admin.get(next).json();
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert_eq!(second["next"], Value::Null);
    not_found(&admin.get("/consumers/nobody/jwt"));
}

pub fn jwt_credentials(admin: &Admin) {
    let bob = admin
        .form("POST", "/consumers", &[("username", "bob")])
        .json();
    let alice = admin
        .form("POST", "/consumers", &[("username", "alice")])
        .json();

    let given = admin.json(
        "POST",
        "/consumers/bob/jwt/",
        &json!({ "key": "bob2", "secret": "a-secret-long-enough-for-hs256!!", "tags": ["tag1"] }),
    );
    assert_eq!(given.status, 201, "{}", given.body);
    let given = given.json();
    assert_eq!(given["key"], "bob2");
    assert_eq!(given["secret"], "a-secret-long-enough-for-hs256!!");
    assert_eq!(given["tags"], json!(["tag1"]));
    let id = given["id"].as_str().unwrap().to_owned();

    // Generated secrets as long as the hash.
    for (alg, len) in [("HS384", 48), ("HS512", 64)] {
        let j = admin
            .form("POST", "/consumers/bob/jwt", &[("algorithm", alg)])
            .json();
        assert!(is_hex(j["secret"].as_str().unwrap(), len), "{alg}: {j}");
    }

    // By id, by key; another consumer's is not found under this one.
    assert_eq!(admin.get(&format!("/consumers/bob/jwt/{id}")).json(), given);
    assert_eq!(admin.get("/consumers/bob/jwt/bob2").json(), given);
    not_found(&admin.get("/consumers/alice/jwt/bob2"));
    not_found(&admin.get("/consumers/bob/jwt/blah"));
    assert_eq!(admin.get("/jwts/bob2").json(), given);
    assert_eq!(admin.get("/jwts/bob2/consumer").json(), bob);
    not_found(&admin.get("/jwts/nope/consumer"));

    // PATCH by key changes the key and the secret.
    let patched = admin.json(
        "PATCH",
        "/consumers/bob/jwt/bob2",
        &json!({ "key": "bob3", "secret": "newsecret-newsecret-newsecret-32" }),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["key"], "bob3");
    assert_eq!(patched.json()["id"], id.as_str());
    not_found(&admin.get("/jwts/bob2"));

    // PUT creates with the key from the path.
    let put = admin.json("PUT", "/consumers/bob/jwt/abcd", &json!({}));
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.json()["key"], "abcd");
    assert_eq!(put.json()["consumer"]["id"], bob["id"]);
    let path_wins = admin.json("PUT", "/consumers/bob/jwt/abcd", &json!({ "key": "efgh" }));
    assert_eq!(path_wins.json()["key"], "abcd", "{}", path_wins.body);
    assert_eq!(path_wins.json()["id"], put.json()["id"]);
    not_found(&admin.get("/jwts/efgh"));
    // Kong's nested PUT sets the path's consumer without checking the owner: bob's
    // credential moves to alice (and PATCH/GET/DELETE there stay 404 for another's).
    not_found(&admin.json("PATCH", "/consumers/alice/jwt/abcd", &json!({})));
    let moved = admin.json("PUT", "/consumers/alice/jwt/abcd", &json!({}));
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(moved.json()["id"], put.json()["id"]);
    let alice_id = admin.get("/consumers/alice").json()["id"].clone();
    assert_eq!(moved.json()["consumer"]["id"], alice_id);
    assert_eq!(admin.get("/jwts/abcd/consumer").json()["username"], "alice");
    let back = admin.json("PUT", "/consumers/bob/jwt/abcd", &json!({}));
    assert_eq!(back.json()["consumer"]["id"], bob["id"]);

    // Asymmetric keys, parsed at write time; the PEM as JSON and as form data with CRLF.
    for (alg, pem) in [
        ("RS256", RSA2048),
        ("PS384", RSA2048),
        ("ES256", P256),
        ("ES384", P384),
        ("EdDSA", ED25519),
    ] {
        let j = admin.json(
            "POST",
            "/consumers/alice/jwt",
            &json!({ "algorithm": alg, "rsa_public_key": pem }),
        );
        assert_eq!(j.status, 201, "{alg}: {}", j.body);
        assert_eq!(j.json()["rsa_public_key"], pem);
    }
    let crlf = RSA2048.replace('\n', "\r\n");
    let form = admin.form(
        "POST",
        "/consumers/alice/jwt",
        &[
            ("key", "alice-rsa"),
            ("algorithm", "RS256"),
            ("rsa_public_key", &crlf),
        ],
    );
    assert_eq!(form.status, 201, "{}", form.body);

    // Kong's answers for a missing or broken key.
    let missing = admin.json(
        "POST",
        "/consumers/bob/jwt",
        &json!({ "key": "bob5", "algorithm": "RS256" }),
    );
    assert_eq!(missing.status, 400);
    assert_eq!(
        missing.json()["fields"],
        json!({
            "rsa_public_key": "required field missing",
            "@entity": ["failed conditional validation given value of field 'algorithm'"],
        })
    );
    assert_eq!(
        missing.json()["message"],
        "2 schema violations (failed conditional validation given value of field 'algorithm'; rsa_public_key: required field missing)"
    );
    let invalid = admin.json(
        "POST",
        "/consumers/bob/jwt",
        &json!({ "key": "bob5", "algorithm": "RS256", "rsa_public_key": "test" }),
    );
    assert_eq!(invalid.status, 400);
    assert!(
        invalid.json()["fields"]["rsa_public_key"]
            .as_str()
            .unwrap()
            .starts_with("invalid key"),
        "{}",
        invalid.body
    );

    // /jwts: consumer required, and must exist.
    let no_consumer = admin.json("POST", "/jwts", &json!({ "key": "key" }));
    assert_eq!(no_consumer.status, 400);
    assert_eq!(
        no_consumer.json()["message"],
        "schema violation (consumer: required field missing)"
    );
    let unknown = admin.json(
        "POST",
        "/jwts",
        &json!({ "key": "key", "consumer": { "id": "00000000-0000-4000-8000-000000000000" } }),
    );
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.json()["code"], 4);
    assert_eq!(unknown.json()["name"], "foreign key violation");
    let top = admin.json(
        "POST",
        "/jwts",
        &json!({ "key": "key", "consumer": { "id": alice["id"] } }),
    );
    assert_eq!(top.status, 201, "{}", top.body);
    let put = admin.json(
        "PUT",
        "/jwts/key2",
        &json!({ "consumer": { "id": alice["id"] } }),
    );
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.json()["key"], "key2");
    assert_eq!(
        admin
            .form(
                "POST",
                "/jwts",
                &[
                    ("key", "key3"),
                    ("consumer.id", alice["id"].as_str().unwrap())
                ]
            )
            .status,
        201
    );

    let dup = admin.json("POST", "/consumers/alice/jwt", &json!({ "key": "bob3" }));
    assert_eq!(dup.status, 409);
    assert_eq!(
        dup.json()["message"],
        "UNIQUE violation detected on '{key=\"bob3\"}'"
    );

    let all = admin.get("/jwts").json();
    assert_eq!(all["data"].as_array().unwrap().len(), 13, "{all}");
    assert_eq!(
        admin.get("/jwts?size=5").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    // DELETE under the consumer: 204, then 404.
    assert_eq!(admin.delete("/consumers/bob/jwt/bob3").status, 204);
    not_found(&admin.delete("/consumers/bob/jwt/bob3"));
    not_found(&admin.delete("/consumers/bob/jwt/00000000-0000-0000-0000-000000000000"));
    assert_eq!(admin.delete("/jwts/abcd").status, 204);
    assert_eq!(admin.delete("/jwts/abcd").status, 204);
}

pub fn acls(admin: &Admin) {
    let bob = admin
        .form("POST", "/consumers", &[("username", "bob")])
        .json();
    admin.form("POST", "/consumers", &[("username", "alice")]);
    let admins = admin.form(
        "POST",
        "/consumers/bob/acls",
        &[("group", "admins"), ("tags[]", "a"), ("tags[]", "b")],
    );
    assert_eq!(admins.status, 201, "{}", admins.body);
    let admins = admins.json();
    assert_eq!(admins["tags"], json!(["a", "b"]));
    let id = admins["id"].as_str().unwrap().to_owned();
    assert_eq!(admin.get("/consumers/bob/acls/admins").json(), admins);
    assert_eq!(
        admin.get(&format!("/consumers/bob/acls/{id}")).json(),
        admins
    );
    not_found(&admin.get("/consumers/alice/acls/admins"));
    assert_eq!(admin.get(&format!("/acls/{id}")).json(), admins);
    assert_eq!(admin.get(&format!("/acls/{id}/consumer")).json(), bob);
    // Kong's DAO refuses a non-UUID primary key (kong/db/errors.lua, code 1).
    for method in ["GET", "PATCH", "PUT", "DELETE"] {
        let not_uuid = admin.raw(method, "/acls/admins", &[], b"");
        assert_eq!(not_uuid.status, 400, "{method}");
        assert_eq!(
            not_uuid.json(),
            json!({
                "code": 1,
                "name": "invalid primary key",
                "message": "invalid primary key: '{id=\"expected a valid UUID\"}'",
                "fields": { "id": "expected a valid UUID" },
            }),
            "{method}"
        );
    }

    // Another consumer may hold the same group; one consumer may not hold it twice.
    assert_eq!(
        admin
            .form("POST", "/consumers/alice/acls", &[("group", "admins")])
            .status,
        201
    );
    let dup = admin.form("POST", "/consumers/bob/acls", &[("group", "admins")]);
    assert_eq!(dup.status, 409);
    assert_eq!(dup.json()["fields"]["group"], "admins");

    let rows = [
        (json!({}), json!({ "group": "required field missing" })),
        (
            json!({ "group": 123 }),
            json!({ "group": "expected a string" }),
        ),
        (
            json!({ "group": "a,b" }),
            json!({ "group": "invalid value: ',' is not allowed (X-Consumer-Groups is comma-separated)" }),
        ),
        (
            json!({ "group": "ops", "colour": "red" }),
            json!({ "colour": "unknown field" }),
        ),
    ];
    for (body, fields) in rows {
        let answer = admin.json("POST", "/consumers/bob/acls", &body);
        assert_eq!(answer.status, 400, "{body}");
        assert_eq!(answer.json()["fields"], fields, "{body}");
    }

    let patched = admin.json(
        "PATCH",
        "/consumers/bob/acls/admins",
        &json!({ "group": "root" }),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["id"], id.as_str());
    let put = admin.json("PUT", "/consumers/bob/acls/pro", &json!({}));
    assert_eq!(put.status, 200);
    assert_eq!(put.json()["group"], "pro");
    let path_wins = admin.json(
        "PUT",
        "/consumers/bob/acls/pro",
        &json!({ "group": "other" }),
    );
    assert_eq!(path_wins.json()["group"], "pro", "{}", path_wins.body);
    assert_eq!(path_wins.json()["id"], put.json()["id"]);
    let top = admin.json(
        "PUT",
        "/acls/6e2f2a5e-3c7e-4c44-9a4e-1b2c3d4e5f70",
        &json!({ "group": "test-group" }),
    );
    assert_eq!(
        top.json()["message"],
        "schema violation (consumer: required field missing)"
    );

    let listed = admin.get("/consumers/bob/acls").json();
    let mut groups: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["group"].as_str().unwrap())
        .collect();
    groups.sort();
    assert_eq!(groups, ["pro", "root"]);
    assert_eq!(
        admin.get("/acls").json()["data"].as_array().unwrap().len(),
        3
    );

    assert_eq!(admin.delete("/consumers/bob/acls/root").status, 204);
    not_found(&admin.delete("/consumers/bob/acls/root"));
    assert_eq!(admin.delete(&format!("/acls/{id}")).status, 204);
}

/// Deleting a consumer deletes its credentials, groups and revocations, and the gateway's
/// answer for its key turns to 404.
pub fn cascade(admin: &Admin) {
    admin.form("POST", "/consumers", &[("username", "bob")]);
    admin.form("POST", "/consumers", &[("username", "keep")]);
    for key in ["b1", "b2"] {
        admin.form("POST", "/consumers/bob/jwt", &[("key", key)]);
    }
    admin.form("POST", "/consumers/keep/jwt", &[("key", "k1")]);
    for group in ["admins", "ops"] {
        admin.form("POST", "/consumers/bob/acls", &[("group", group)]);
    }
    admin.form("POST", "/consumers/keep/acls", &[("group", "ops")]);
    assert_eq!(
        admin
            .form("POST", "/revocations", &[("consumer", "bob")])
            .status,
        201
    );
    assert_eq!(
        admin
            .form("POST", "/revocations", &[("credential", "b2")])
            .status,
        201
    );
    assert_eq!(admin.data("/v1/credentials/b1").json()["found"], true);
    let before = admin.data("/v1/changes?after=0").json()["head"]
        .as_i64()
        .unwrap();

    assert_eq!(admin.delete("/consumers/bob").status, 204);
    not_found(&admin.get("/jwts/b1"));
    not_found(&admin.get("/jwts/b2"));
    assert_eq!(
        admin.get("/jwts").json()["data"].as_array().unwrap().len(),
        1
    );
    assert_eq!(
        admin.get("/acls").json()["data"].as_array().unwrap().len(),
        1
    );
    assert_eq!(admin.get("/revocations").json()["data"], json!([]));
    assert_eq!(admin.data("/v1/credentials/b1").json()["found"], false);
    assert_eq!(admin.data("/v1/credentials/k1").json()["found"], true);

    // One event per deleted row, in one transaction: consecutive ids.
    let feed = admin.data(&format!("/v1/changes?after={before}")).json();
    let events = feed["events"].as_array().unwrap();
    let entities: Vec<&str> = events
        .iter()
        .map(|e| e["entity"].as_str().unwrap())
        .collect();
    assert_eq!(
        entities,
        [
            "revocations",
            "revocations",
            "jwt_secrets",
            "jwt_secrets",
            "acls",
            "acls",
            "consumers"
        ]
    );
    assert!(events.iter().all(|e| e["op"] == "delete"));
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (before + 1..=before + 7).collect::<Vec<_>>());
    let mut keys: Vec<&str> = events.last().unwrap()["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    keys.sort();
    assert_eq!(keys, ["b1", "b2"]);
}

/// Counts rows through the API: what hostile input must not change.
fn totals(admin: &Admin) -> (usize, usize, usize) {
    let n = |path: &str| admin.get(path).json()["data"].as_array().unwrap().len();
    (
        n("/consumers?size=1000"),
        n("/jwts?size=1000"),
        n("/acls?size=1000"),
    )
}

pub fn hostile_input(admin: &Admin) {
    admin.form("POST", "/consumers", &[("username", "bob")]);
    let before = totals(admin);

    // Not JSON, not form data.
    let rows: Vec<(&str, &str, Vec<(&str, &str)>, Vec<u8>, u16, Value)> = vec![
        (
            "POST",
            "/consumers",
            vec![("Content-Type", "text/plain")],
            b"username=x".to_vec(),
            415,
            Value::Null,
        ),
        (
            "POST",
            "/consumers",
            vec![],
            b"username=x".to_vec(),
            415,
            Value::Null,
        ),
        (
            "POST",
            "/consumers",
            vec![("Content-Type", "application/json")],
            b"{\"username\":".to_vec(),
            400,
            json!({ "message": "Cannot parse JSON body" }),
        ),
        (
            "POST",
            "/consumers",
            vec![("Content-Type", "application/json")],
            b"".to_vec(),
            400,
            json!({ "message": "Cannot parse JSON body" }),
        ),
        (
            "POST",
            "/consumers",
            vec![("Content-Type", "application/json")],
            b"[\"username\"]".to_vec(),
            400,
            json!({ "message": "Cannot parse JSON body" }),
        ),
        (
            "POST",
            "/consumers",
            vec![("Content-Type", "application/json")],
            b"{\"username\":\"\xff\xfe\"}".to_vec(),
            400,
            json!({ "message": "Cannot parse JSON body" }),
        ),
        (
            "POST",
            "/consumers",
            vec![("Content-Type", "application/json")],
            "[".repeat(100_000).into_bytes(),
            413,
            Value::Null,
        ),
        (
            "POST",
            "/consumers",
            vec![("Content-Type", "application/json")],
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            400,
            json!({ "message": "Cannot parse JSON body" }),
        ),
        (
            "PATCH",
            "/consumers",
            vec![("Content-Type", "application/json")],
            b"{}".to_vec(),
            405,
            json!({ "message": "Method not allowed" }),
        ),
        (
            "DELETE",
            "/jwts",
            vec![],
            Vec::new(),
            405,
            json!({ "message": "Method not allowed" }),
        ),
        (
            "GET",
            "/plugins",
            vec![],
            Vec::new(),
            404,
            json!({ "message": "Not found" }),
        ),
        (
            "GET",
            "/consumers/%zz",
            vec![],
            Vec::new(),
            404,
            json!({ "message": "Not found" }),
        ),
    ];
    for (method, path, headers, body, status, expected) in rows {
        let answer = admin.raw(method, path, &headers, &body);
        assert_eq!(
            answer.status,
            status,
            "{method} {path} {:?}: {}",
            String::from_utf8_lossy(&body[..body.len().min(40)]),
            answer.body
        );
        if !expected.is_null() {
            assert_eq!(answer.json(), expected, "{method} {path}");
        } else {
            assert!(answer.json()["message"].is_string(), "{}", answer.body);
        }
    }

    // Oversized: refused before it is read, nothing stored.
    let big = json!({ "username": "x".repeat(70_000) });
    let answer = admin.json("POST", "/consumers", &big);
    assert_eq!(answer.status, 413);
    assert_eq!(
        answer.json(),
        json!({ "message": "Request body too large: at most 65536 bytes" })
    );

    // Wrong types and unknown fields, every one named.
    let answer = admin.json(
        "POST",
        "/consumers",
        &json!({ "username": ["a"], "custom_id": 7, "tags": "x,y", "admin": true }),
    );
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.json()["fields"],
        json!({
            "username": "expected a string",
            "custom_id": "expected a string",
            "tags": "invalid tag 'x,y': expected printable ascii (except `,` and `/`) or valid utf-8 sequences",
            "admin": "unknown field",
        })
    );
    assert_eq!(
        answer.json()["message"]
            .as_str()
            .unwrap()
            .split(';')
            .count(),
        4
    );
    for (field, value, message) in [
        (
            "username",
            json!("bob\r\nX-Consumer-Groups: admins"),
            "invalid value: control characters are not allowed",
        ),
        ("username", json!(""), "length must be at least 1"),
        ("id", json!("not-a-uuid"), "expected a valid UUID"),
        ("created_at", json!("yesterday"), "expected an integer"),
        ("tags", json!([1]), "expected a string"),
    ] {
        let answer = admin.json(
            "POST",
            "/consumers",
            &json!({ field: value, "custom_id": "c" }),
        );
        assert_eq!(answer.status, 400, "{field}");
        assert_eq!(answer.json()["fields"][field], message, "{field}");
    }

    // Credentials: weak secrets, invalid PEMs, wrong algorithms; nothing half-written.
    for (body, field, starts) in [
        (json!({ "secret": "tooshort" }), "secret", "too weak: 8 bytes, HS256 needs at least 32"),
        (json!({ "algorithm": "HS512", "secret": "0123456789abcdef0123456789abcdef" }), "secret", "too weak: 32 bytes, HS512 needs at least 64"),
        (json!({ "algorithm": "RS256", "rsa_public_key": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----" }), "rsa_public_key", "invalid key"),
        (json!({ "algorithm": "RS256", "rsa_public_key": RSA1024 }), "rsa_public_key", "invalid key"),
        (json!({ "algorithm": "ES256", "rsa_public_key": P384 }), "rsa_public_key", "invalid key"),
        (json!({ "algorithm": "RS256", "rsa_public_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----" }), "rsa_public_key", "invalid key"),
        (json!({ "algorithm": "ES512", "rsa_public_key": P256 }), "algorithm", "ES512 is not supported by the Portcullis jwt filter"),
        (json!({ "algorithm": "none" }), "algorithm", "expected one of: HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512, EdDSA"),
        (json!({ "algorithm": "hs256" }), "algorithm", "expected one of"),
        (json!({ "key": "k\u{0}" }), "key", "invalid value: control characters are not allowed"),
    ] {
        let answer = admin.json("POST", "/consumers/bob/jwt", &body);
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        let got = answer.json()["fields"][field].as_str().unwrap_or_default().to_owned();
        assert!(got.starts_with(starts), "{body}: {got}");
    }

    // SQL metacharacters are data, stored and read back verbatim.
    let evil = "bob'); DROP TABLE consumers; --";
    let answer = admin.json(
        "POST",
        "/consumers",
        &json!({ "username": evil, "custom_id": "\" OR 1=1 --" }),
    );
    assert_eq!(answer.status, 201, "{}", answer.body);
    let path = format!(
        "/consumers/{}",
        form_urlencoded::byte_serialize(evil.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    );
    assert_eq!(admin.get(&path).json()["username"], evil);
    assert_eq!(
        admin
            .get("/consumers?custom_id=%22%20OR%201%3D1%20--")
            .json()["data"][0]["username"],
        evil
    );
    assert_eq!(admin.delete(&path).status, 204);
    let missing = admin.data("/v1/credentials/'%20OR%20'1'%3D'1");
    assert_eq!(missing.status, 200);
    assert_eq!(missing.json()["found"], false);

    assert_eq!(totals(admin), before, "hostile input stored nothing");
}

fn is_uuid_like(text: &str) -> bool {
    text.len() == 36 && text.bytes().filter(|b| *b == b'-').count() == 4
}

pub fn revocations(admin: &Admin) {
    admin.form("POST", "/consumers", &[("username", "bob")]);
    admin.form("POST", "/consumers/bob/jwt", &[("key", "bob-key")]);
    let future = 4_000_000_000i64;

    let jti = admin.json(
        "POST",
        "/revocations",
        &json!({ "jti": "t-1", "expires_at": future }),
    );
    assert_eq!(jti.status, 201, "{}", jti.body);
    let jti = jti.json();
    assert_eq!(jti["jti"], "t-1");
    assert_eq!(jti["expires_at"], future);
    assert_eq!(jti["issued_before"], Value::Null);
    let dup = admin.json(
        "POST",
        "/revocations",
        &json!({ "jti": "t-1", "expires_at": future }),
    );
    assert_eq!(dup.status, 409);
    assert_eq!(
        dup.json()["message"],
        "UNIQUE violation detected on '{jti=\"t-1\"}'"
    );

    let rows = [
        (
            json!({ "jti": "t-2" }),
            json!({ "expires_at": "required field missing (the token's exp)" }),
        ),
        (
            json!({ "jti": "t-2", "expires_at": 1000 }),
            json!({ "expires_at": "must be later than now - 86400 s (the revocation grace): the token has expired already" }),
        ),
        (
            json!({ "jti": "x".repeat(257), "expires_at": future }),
            json!({ "jti": "length must be at most 256" }),
        ),
        (
            json!({}),
            json!({ "@entity": ["exactly one of these fields must be non-empty: 'consumer', 'credential', 'jti' (or 'jti' with 'credential')"] }),
        ),
        (
            json!({ "jti": "t-2", "expires_at": future, "consumer": "bob" }),
            json!({ "@entity": ["exactly one of these fields must be non-empty: 'consumer', 'credential', 'jti' (or 'jti' with 'credential')"] }),
        ),
        (
            json!({ "consumer": "nobody" }),
            json!({ "consumer": "no consumer with username or id 'nobody'" }),
        ),
        (
            json!({ "credential": 5 }),
            json!({ "credential": "expected a record with a valid UUID `id`, or a name" }),
        ),
    ];
    for (body, fields) in rows {
        let answer = admin.json("POST", "/revocations", &body);
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        assert_eq!(answer.json()["fields"], fields, "{body}");
    }

    // A consumer's cutoff: created, then moved.
    let cutoff = admin.form(
        "POST",
        "/revocations",
        &[("consumer", "bob"), ("issued_before", "1700000000")],
    );
    assert_eq!(cutoff.status, 201, "{}", cutoff.body);
    let moved = admin.form(
        "POST",
        "/revocations",
        &[("consumer", "bob"), ("issued_before", "1800000000")],
    );
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(moved.json()["id"], cutoff.json()["id"]);
    assert_eq!(moved.json()["issued_before"], 1_800_000_000);
    assert_eq!(moved.json()["expires_at"], Value::Null);
    // Never back: an earlier cutoff or expiry posted later keeps the later one.
    let back = admin.form(
        "POST",
        "/revocations",
        &[
            ("consumer", "bob"),
            ("issued_before", "1750000000"),
            ("expires_at", "3000000000"),
        ],
    );
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(back.json()["issued_before"], 1_800_000_000);
    assert_eq!(back.json()["expires_at"], Value::Null, "null is never");
    // A token of the last second's `iat` is covered: the default cutoff is now, inclusive.
    let before_post = super::now();
    let by_default = admin.json("POST", "/revocations", &json!({ "consumer": "bob" }));
    assert!(by_default.json()["issued_before"].as_i64().unwrap() >= before_post);
    let by_key = admin.json("POST", "/revocations", &json!({ "credential": "bob-key" }));
    assert_eq!(by_key.status, 201, "{}", by_key.body);
    let credential_id = admin.get("/jwts/bob-key").json()["id"].clone();
    assert_eq!(by_key.json()["credential"], json!({ "id": credential_id }));
    // A jti of one credential (RFC 7519: unique per issuer), beside the global t-1 and
    // the credential's cutoff.
    let scoped = admin.json(
        "POST",
        "/revocations",
        &json!({ "jti": "t-1", "credential": "bob-key", "expires_at": future }),
    );
    assert_eq!(scoped.status, 201, "{}", scoped.body);
    assert_eq!(scoped.json()["credential"], json!({ "id": credential_id }));
    let again = admin.json(
        "POST",
        "/revocations",
        &json!({ "jti": "t-1", "credential": "bob-key", "expires_at": future }),
    );
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(
        again.json()["fields"],
        json!({ "credential": { "id": credential_id }, "jti": "t-1" })
    );

    let in_force = admin.data("/v1/revocations").json();
    let mut jtis = in_force["jtis"].as_array().unwrap().clone();
    jtis.sort_by_key(|j| j.get("key").is_some());
    assert_eq!(
        Value::Array(jtis),
        json!([
            { "id": jti["id"], "jti": "t-1", "expires_at": future },
            { "id": scoped.json()["id"], "jti": "t-1", "expires_at": future,
              "credential_id": credential_id, "key": "bob-key" },
        ])
    );
    assert_eq!(in_force["grace"], 86_400);
    assert!(in_force["consumers"][0]["issued_before"].as_i64().unwrap() >= 1_800_000_000);
    assert_eq!(in_force["credentials"][0]["key"], "bob-key");
    assert_eq!(in_force["credentials"][0]["credential_id"], credential_id);
    // A revocation event names the revocation: fetched alone, not the whole list.
    let one = admin
        .data(&format!(
            "/v1/revocations/{}",
            by_key.json()["id"].as_str().unwrap()
        ))
        .json();
    assert_eq!(one["found"], true);
    assert_eq!(one["revocation"], in_force["credentials"][0]);
    // The credential's answer carries both cutoffs.
    let answer = admin.data("/v1/credentials/bob-key").json();
    assert_eq!(
        answer["credential"]["cutoff"]["issued_before"],
        by_key.json()["issued_before"]
    );
    assert_eq!(
        answer["consumer"]["cutoff"]["issued_before"],
        in_force["consumers"][0]["issued_before"]
    );
    // A jti whose exp has just passed is still accepted by a filter with leeway: it can
    // be revoked, and stays listed for the grace.
    let just_expired = admin.json(
        "POST",
        "/revocations",
        &json!({ "jti": "t-late", "expires_at": super::now() - 10 }),
    );
    assert_eq!(just_expired.status, 201, "{}", just_expired.body);
    let late_id = just_expired.json()["id"].clone();
    assert_eq!(
        admin
            .data(&format!("/v1/revocations/{}", late_id.as_str().unwrap()))
            .json()["found"],
        true
    );
    assert_eq!(
        admin
            .delete(&format!("/revocations/{}", late_id.as_str().unwrap()))
            .status,
        204
    );

    assert_eq!(
        admin.get("/revocations").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let id = jti["id"].as_str().unwrap();
    assert_eq!(admin.get(&format!("/revocations/{id}")).json(), jti);
    assert_eq!(admin.delete(&format!("/revocations/{id}")).status, 204);
    not_found(&admin.delete(&format!("/revocations/{id}")));
    let scoped_id = scoped.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        admin.delete(&format!("/revocations/{scoped_id}")).status,
        204
    );
    assert_eq!(admin.data("/v1/revocations").json()["jtis"], json!([]));
    assert_eq!(
        admin.data(&format!("/v1/revocations/{id}")).json()["found"],
        false
    );
}

pub fn data_plane(admin: &Admin) {
    admin.form(
        "POST",
        "/consumers",
        &[("username", "svc"), ("custom_id", "svc-1")],
    );
    admin.json(
        "POST",
        "/consumers/svc/jwt",
        &json!({ "key": "svc-rs", "algorithm": "RS256", "rsa_public_key": RSA2048 }),
    );
    let answer = admin.data("/v1/credentials/svc-rs");
    assert_eq!(answer.status, 200);
    let a = answer.json();
    assert_eq!(a["credential"]["rsa_public_key"], RSA2048);
    assert!(
        a["credential"].get("secret").is_none(),
        "no secret for RS256: {a}"
    );
    assert_eq!(a["consumer"]["custom_id"], "svc-1");
    assert_eq!(a["consumer"]["groups"], json!([]));
    assert_eq!(a["found"], true);
    assert_eq!(a["consumer"]["cutoff"], Value::Null);
    assert_eq!(a["credential"]["cutoff"], Value::Null);
    assert!(is_uuid_like(a["epoch"].as_str().unwrap()), "{a}");
    // A key that is not there is an answer (200, found false), with the position; a wrong
    // path or version is a 404 without `found`, which a gateway must not cache.
    let missing = admin.data("/v1/credentials/nope");
    assert_eq!(missing.status, 200);
    assert_eq!(
        missing.json(),
        json!({ "epoch": a["epoch"], "head": a["head"], "found": false })
    );
    let wrong = admin.data("/v2/credentials/svc-rs");
    assert_eq!(wrong.status, 404);
    assert!(wrong.json().get("found").is_none());
    assert_eq!(
        super::send(admin.data_plane, "POST", "/v1/credentials/svc-rs", &[], b"").status,
        405
    );
    assert_eq!(admin.data("/consumers").status, 404);
    assert_eq!(admin.data("/v1/changes?after=-1").status, 400);

    // Admin API paths are not on the data plane, nor the data plane on the admin port.
    assert_eq!(admin.get("/v1/credentials/svc-rs").status, 404);

    // A credential's key change lists both keys; a group change lists the consumer's keys.
    let head = a["head"].as_i64().unwrap();
    admin.json("PATCH", "/jwts/svc-rs", &json!({ "key": "svc-rs2" }));
    admin.form("POST", "/consumers/svc/acls", &[("group", "ops")]);
    admin.json("PATCH", "/consumers/svc", &json!({ "custom_id": "svc-2" }));
    let events = admin.data(&format!("/v1/changes?after={head}")).json()["events"].clone();
    assert_eq!(events[0]["credentials"], json!(["svc-rs", "svc-rs2"]));
    assert_eq!(events[1]["credentials"], json!(["svc-rs2"]));
    assert_eq!(events[1]["entity"], "acls");
    assert_eq!(events[2]["entity"], "consumers");
    assert_eq!(events[2]["op"], "update");
    assert_eq!(events[2]["credentials"], json!(["svc-rs2"]));
    assert_eq!(
        admin.data("/v1/changes?after=1&limit=1").json()["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Keys are percent-decoded path segments: `a/b c` is `a%2Fb%20c`.
    admin.json("POST", "/consumers/svc/jwt", &json!({ "key": "a/b c+d" }));
    let odd = admin.data("/v1/credentials/a%2Fb%20c+d").json();
    assert_eq!(odd["credential"]["key"], "a/b c+d", "{odd}");
    assert_eq!(
        admin.data("/v1/credentials/a%2Fb%20c%2Bd").json()["found"],
        true
    );
}

/// Kong's `?tags=a,b` (every tag) and `?tags=a/b` (any tag) on every list, case-sensitive,
/// paged with the filter kept in `next`.
pub fn tags(admin: &Admin) {
    let rows = [
        ("t-none", json!(null)),
        ("t-a", json!(["a"])),
        ("t-ab", json!(["a", "b"])),
        ("t-b", json!(["b"])),
        ("t-upper", json!(["A"])),
        ("t-odd", json!(["50%_off!", "x\"y"])),
    ];
    for (name, tags) in &rows {
        let answer = admin.json(
            "POST",
            "/consumers",
            &json!({ "username": name, "tags": tags }),
        );
        assert_eq!(answer.status, 201, "{}", answer.body);
        admin.json(
            "POST",
            &format!("/consumers/{name}/acls"),
            &json!({ "group": "g", "tags": tags }),
        );
    }
    let names = |path: &str| -> Vec<String> {
        let answer = admin.get(path);
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        let mut names: Vec<String> = answer.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["username"].as_str().unwrap_or("").to_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names("/consumers?tags=a"), ["t-a", "t-ab"]);
    assert_eq!(names("/consumers?tags=a,b"), ["t-ab"]);
    assert_eq!(names("/consumers?tags=a/b"), ["t-a", "t-ab", "t-b"]);
    assert_eq!(names("/consumers?tags=A"), ["t-upper"]);
    assert_eq!(names("/consumers?tags=50%25_off!"), ["t-odd"]);
    assert_eq!(names("/consumers?tags=50%25"), Vec::<String>::new());
    assert_eq!(names("/consumers?tags=x%22y"), ["t-odd"]);
    assert_eq!(
        admin.get("/acls?tags=a,b").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        admin.get("/consumers/t-ab/acls?tags=b").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let paged = admin.get("/consumers?tags=a/b&size=1").json();
    assert_eq!(paged["data"].as_array().unwrap().len(), 1);
    let next = paged["next"].as_str().unwrap();
    assert!(next.contains("&tags=a%2Fb"), "{next}");
    assert_eq!(admin.get(next).json()["data"].as_array().unwrap().len(), 1);
    for (query, why) in [
        ("a,b/c", "invalid filter syntax"),
        ("a,,b", "invalid filter syntax"),
        ("a,b,c,d,e,f", "cannot query more than 5 tags"),
    ] {
        let refused = admin.get(&format!("/consumers?tags={query}"));
        assert_eq!(refused.status, 400, "{query}");
        assert_eq!(
            refused.json(),
            json!({
                "code": 11,
                "name": "invalid options",
                "message": format!("invalid option (tags: {why})"),
                "options": { "tags": why },
            })
        );
    }
}
