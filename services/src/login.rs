//! The login service: `POST /login` with `{"username", "password"}`, checked against a
//! fixture of demo users, answers with the user's profile — the JSON the token-issuer filter
//! will sign into a JWT. Demo only: the fixture holds plain-text passwords.

use serde::{Deserialize, Serialize};

use crate::service::{self, Answer, Request};

/// `services/fixtures/users.json`, built in: the default user list.
pub const FIXTURE: &str = include_str!("../fixtures/users.json");

/// What a successful login returns, and what the token-issuer signs: never the password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// The JWT subject.
    pub sub: String,
    pub username: String,
    /// The consumer groups the acl filter checks (Kong's `X-Consumer-Groups`).
    pub groups: Vec<String>,
    pub email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    sub: String,
    username: String,
    password: String,
    groups: Vec<String>,
    email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    /// Free text for whoever opens the file.
    #[serde(default, rename = "note")]
    _note: serde::de::IgnoredAny,
    users: Vec<RawUser>,
}

/// The users who can log in, with their passwords.
#[derive(Clone, Debug)]
pub struct Users {
    users: Vec<(Profile, String)>,
}

impl Users {
    /// Parses a fixture: `{"users": [{"sub", "username", "password", "groups", "email"}]}`.
    /// Errors name the field: `users[1].username: "web-app" twice`.
    pub fn parse(json: &str) -> Result<Users, String> {
        let raw: RawFile = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let mut users: Vec<(Profile, String)> = Vec::with_capacity(raw.users.len());
        for (i, user) in raw.users.into_iter().enumerate() {
            let name = &user.username;
            if name.is_empty() {
                return Err(format!("users[{i}].username: empty"));
            }
            if user.password.is_empty() {
                return Err(format!("users[{i}].password: empty"));
            }
            if users.iter().any(|(p, _)| p.username == *name) {
                return Err(format!("users[{i}].username: {name:?} twice"));
            }
            let profile = Profile {
                sub: user.sub,
                username: user.username,
                groups: user.groups,
                email: user.email,
            };
            users.push((profile, user.password));
        }
        Ok(Users { users })
    }

    /// The built-in fixture.
    pub fn fixture() -> Result<Users, String> {
        Users::parse(FIXTURE).map_err(|e| format!("built-in users.json: {e}"))
    }

    /// Reads and parses a fixture file; errors name the file.
    pub fn load(path: &std::path::Path) -> Result<Users, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Users::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The profile of `username` if `password` is theirs. Every stored password is compared,
    /// in time that does not depend on where the first differing byte is.
    pub fn check(&self, username: &str, password: &str) -> Option<&Profile> {
        let mut found = None;
        for (profile, stored) in &self.users {
            let matches = same_bytes(stored.as_bytes(), password.as_bytes());
            if matches && profile.username == username {
                found = Some(profile);
            }
        }
        found
    }
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// The body's credentials. Only a JSON object will do: serde alone would also take the array
/// `["user", "password"]` for the struct.
fn credentials(body: &[u8]) -> Result<Credentials, String> {
    match serde_json::from_slice(body).map_err(|e| e.to_string())? {
        object @ serde_json::Value::Object(_) => {
            Credentials::deserialize(object).map_err(|e| e.to_string())
        }
        _ => Err("not a JSON object".to_owned()),
    }
}

/// Why a login did not succeed, and how each reason looks to the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    MethodNotAllowed,
    Malformed(String),
    InvalidCredentials { username: String },
}

impl Refusal {
    fn answer(self) -> Answer {
        match self {
            Refusal::NotFound => Answer::message(404, "Not found", "(no such path)".into()),
            Refusal::MethodNotAllowed => Answer {
                allow: Some("POST"),
                ..Answer::message(405, "Method not allowed", "(only POST)".into())
            },
            Refusal::Malformed(why) => Answer::message(
                400,
                "Malformed body: expected {\"username\": \"…\", \"password\": \"…\"}",
                format!("malformed body: {why}"),
            ),
            Refusal::InvalidCredentials { username } => Answer::message(
                401,
                "Invalid credentials",
                format!("user={username:?} invalid credentials"),
            ),
        }
    }
}

/// Decides a login request.
pub fn login<'u>(users: &'u Users, request: &Request) -> Result<&'u Profile, Refusal> {
    let path = request.url.split('?').next().unwrap_or_default();
    if path != "/login" {
        return Err(Refusal::NotFound);
    }
    if request.method != "POST" {
        return Err(Refusal::MethodNotAllowed);
    }
    let credentials = credentials(request.body).map_err(Refusal::Malformed)?;
    users
        .check(&credentials.username, &credentials.password)
        .ok_or(Refusal::InvalidCredentials {
            username: credentials.username,
        })
}

/// The login service's answer to any request. Its log line also names any identity header
/// that reached it (none should: the gateway removes a client's own), as the echo services do.
pub fn answer(users: &Users, request: &Request) -> Answer {
    let mut answer = match login(users, request) {
        Ok(profile) => Answer::json(
            200,
            profile,
            format!("user={:?} logged in", profile.username),
        ),
        Err(refusal) => refusal.answer(),
    };
    let identity = service::identity(request.headers);
    if !identity.is_empty() {
        answer.log = format!("{} {}", answer.log, service::describe(&identity));
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(body: &str) -> Answer {
        let users = Users::fixture().unwrap();
        let request = Request {
            method: "POST",
            url: "/login",
            headers: &[],
            body: body.as_bytes(),
            tls: false,
        };
        answer(&users, &request)
    }

    fn json(answer: &Answer) -> serde_json::Value {
        serde_json::from_str(&answer.body).unwrap()
    }

    #[test]
    fn the_fixture_holds_one_admin_and_one_customer() {
        let users = Users::fixture().unwrap();
        let mobile = users.check("mobile-app", "mobile-demo").unwrap();
        assert_eq!(mobile.groups, ["admins"]);
        let web = users.check("web-app", "web-demo").unwrap();
        assert_eq!(web.groups, ["customers"]);
    }

    #[test]
    fn good_credentials_return_the_profile_without_the_password() {
        let answer = post(r#"{"username":"mobile-app","password":"mobile-demo"}"#);
        assert_eq!(answer.status, 200);
        assert_eq!(
            json(&answer),
            serde_json::json!({
                "sub": "123",
                "username": "mobile-app",
                "groups": ["admins"],
                "email": "mobile-app@example.com",
            })
        );
        assert!(!answer.body.contains("mobile-demo"));
        assert_eq!(answer.log, r#"user="mobile-app" logged in"#);
    }

    #[test]
    fn identity_headers_that_reach_the_login_service_show_in_its_log() {
        let users = Users::fixture().unwrap();
        let headers = [
            ("x-consumer-username".to_owned(), "root".to_owned()),
            ("content-type".to_owned(), "application/json".to_owned()),
        ];
        let request = Request {
            method: "POST",
            url: "/login",
            headers: &headers,
            body: br#"{"username":"web-app","password":"web-demo"}"#,
            tls: false,
        };
        let answer = answer(&users, &request);
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.log,
            r#"user="web-app" logged in x-consumer-username="root""#
        );
    }

    #[test]
    fn a_wrong_password_or_unknown_user_is_one_401() {
        let cases = [
            r#"{"username":"mobile-app","password":"web-demo"}"#,
            r#"{"username":"mobile-app","password":"mobile-dem"}"#,
            r#"{"username":"mobile-app","password":""}"#,
            r#"{"username":"nobody","password":"mobile-demo"}"#,
            r#"{"username":"","password":""}"#,
        ];
        for body in cases {
            let answer = post(body);
            assert_eq!(answer.status, 401, "{body}");
            assert_eq!(
                json(&answer),
                serde_json::json!({"message": "Invalid credentials"})
            );
            assert!(
                !answer.log.contains("demo"),
                "password in log: {}",
                answer.log
            );
        }
    }

    #[test]
    fn a_malformed_body_is_a_400() {
        let cases = [
            "",
            "username=mobile-app&password=mobile-demo",
            r#"{"username":"mobile-app"}"#,
            r#"{"username":"mobile-app","password":42}"#,
            r#"["mobile-app","mobile-demo"]"#,
        ];
        for body in cases {
            let answer = post(body);
            assert_eq!(answer.status, 400, "{body:?}");
            assert!(json(&answer)["message"]
                .as_str()
                .unwrap()
                .starts_with("Malformed body"));
        }
    }

    #[test]
    fn only_post_to_login_is_served() {
        let users = Users::fixture().unwrap();
        let get = Request {
            method: "GET",
            url: "/login?username=mobile-app",
            headers: &[],
            body: b"",
            tls: false,
        };
        let answer = answer(&users, &get);
        assert_eq!((answer.status, answer.allow), (405, Some("POST")));
        let elsewhere = Request {
            method: "POST",
            url: "/login/admin",
            ..get
        };
        assert_eq!(super::answer(&users, &elsewhere).status, 404);
    }

    #[test]
    fn a_fixture_error_names_the_field() {
        let cases = [
            (
                r#"{"users":[{"sub":"1","username":"a","password":"p","groups":[],"email":"e"},
                             {"sub":"2","username":"a","password":"q","groups":[],"email":"f"}]}"#,
                r#"users[1].username: "a" twice"#,
            ),
            (
                r#"{"users":[{"sub":"1","username":"a","password":"","groups":[],"email":"e"}]}"#,
                "users[0].password: empty",
            ),
            (
                r#"{"users":[{"sub":"1","username":"a","password":"p","group":[],"email":"e"}]}"#,
                "unknown field `group`",
            ),
        ];
        for (json, expected) in cases {
            let error = Users::parse(json).unwrap_err();
            assert!(error.contains(expected), "{error} lacks {expected}");
        }
    }
}
