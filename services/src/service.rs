//! The four demo services, and the answer each echo service gives: which service it is and
//! who the gateway says is calling, as the Kong article's example services answer.

use serde::Serialize;

/// One of the demo's upstream services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    Users,
    Orders,
    Payments,
    Login,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::Users,
        Service::Orders,
        Service::Payments,
        Service::Login,
    ];

    /// The service's name: also its Envoy cluster's name.
    pub fn name(self) -> &'static str {
        match self {
            Service::Users => "user-service",
            Service::Orders => "order-service",
            Service::Payments => "payment-service",
            Service::Login => "login-service",
        }
    }

    /// The command-line flag that gives its address (`--users`), also the word the Envoy
    /// config template uses for it, upper-cased (`{{USERS_PORT}}`).
    pub fn flag(self) -> &'static str {
        match self {
            Service::Users => "--users",
            Service::Orders => "--orders",
            Service::Payments => "--payments",
            Service::Login => "--login",
        }
    }

    pub fn from_flag(flag: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.flag() == flag)
    }
}

/// One request as a service sees it: the gateway has already routed it here.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The request target: path and query, as sent.
    pub url: &'a str,
    /// Names lowercased, in arrival order, duplicates kept.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    /// Whether it came over TLS (the gateway's cluster speaks HTTPS to the service).
    pub tls: bool,
}

/// A service's answer, and what its log line says about the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// JSON, ending in a newline.
    pub body: String,
    /// The `allow` header of a 405.
    pub allow: Option<&'static str>,
    /// The end of the log line, after method, path and status.
    pub log: String,
}

impl Answer {
    /// A JSON answer; `body` always serializes (it is made of strings and maps).
    pub fn json(status: u16, body: &impl Serialize, log: String) -> Self {
        let mut text = serde_json::to_string_pretty(body).unwrap_or_default();
        text.push('\n');
        Answer {
            status,
            body: text,
            allow: None,
            log,
        }
    }

    /// `{"message": …}`, the shape of every Kong error body.
    pub fn message(status: u16, message: &str, log: String) -> Self {
        Answer::json(status, &serde_json::json!({ "message": message }), log)
    }
}

/// Header prefixes that carry the caller's identity from the gateway: Kong's consumer and
/// credential headers, and the claims a JWT filter may forward.
pub const IDENTITY_PREFIXES: [&str; 6] = [
    "x-consumer-",
    "x-credential-",
    "x-anonymous-",
    "x-authenticated-",
    "x-claim-",
    "x-jwt-",
];

/// The identity headers of a request, by lowercased name: a string, or an array of strings
/// when the header came more than once (which a gateway should never let happen).
pub fn identity(headers: &[(String, String)]) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (name, value) in headers {
        if !IDENTITY_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let value = serde_json::Value::from(value.as_str());
        match out.get_mut(name) {
            None => {
                out.insert(name.clone(), value);
            }
            Some(serde_json::Value::Array(values)) => values.push(value),
            Some(first) => *first = serde_json::Value::Array(vec![first.take(), value]),
        }
    }
    out
}

/// Identity headers as a log line shows them: `x-consumer-username="web-app" …`.
pub fn describe(identity: &serde_json::Map<String, serde_json::Value>) -> String {
    identity
        .iter()
        .map(|(name, value)| match value {
            serde_json::Value::String(text) => format!("{name}={text:?}"),
            other => format!("{name}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Serialize)]
struct Echo<'a> {
    service: &'static str,
    /// The article's `res.json({message: "Authorized access", user})`: the service trusts
    /// whatever the gateway let through.
    message: &'static str,
    /// `x-consumer-username`, or null.
    user: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    /// Whether the request reached the service over TLS: what a test of the gateway's
    /// upstream TLS checks.
    tls: bool,
    identity: serde_json::Map<String, serde_json::Value>,
}

/// The answer of the user, order and payment services: 200 and who called, whatever the
/// method and path.
pub fn echo(service: Service, request: &Request) -> Answer {
    let identity = identity(request.headers);
    let log = if identity.is_empty() {
        "(no identity headers)".to_owned()
    } else {
        describe(&identity)
    };
    let user = request
        .headers
        .iter()
        .find(|(name, _)| name == "x-consumer-username")
        .map(|(_, value)| value.as_str());
    let echo = Echo {
        service: service.name(),
        message: "Authorized access",
        user,
        method: request.method,
        path: request.url,
        tls: request.tls,
        identity,
    };
    Answer::json(200, &echo, log)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn echo_names_the_service_and_every_identity_header() {
        let headers = headers(&[
            ("x-consumer-username", "mobile-app"),
            ("x-consumer-id", "c-1"),
            ("x-consumer-custom-id", "123"),
            ("x-consumer-groups", "admins, ops"),
            ("x-credential-identifier", "mobile-key"),
            ("x-anonymous-consumer", "false"),
            ("x-claim-role", "admin"),
            ("x-jwt-sub", "123"),
            ("authorization", "Bearer secret"),
            ("x-request-id", "r-1"),
        ]);
        let request = Request {
            method: "GET",
            url: "/users/7?expand=1",
            headers: &headers,
            body: b"",
            tls: true,
        };
        let answer = echo(Service::Users, &request);
        assert_eq!(answer.status, 200);
        let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "service": "user-service",
                "message": "Authorized access",
                "user": "mobile-app",
                "method": "GET",
                "path": "/users/7?expand=1",
                "tls": true,
                "identity": {
                    "x-consumer-username": "mobile-app",
                    "x-consumer-id": "c-1",
                    "x-consumer-custom-id": "123",
                    "x-consumer-groups": "admins, ops",
                    "x-credential-identifier": "mobile-key",
                    "x-anonymous-consumer": "false",
                    "x-claim-role": "admin",
                    "x-jwt-sub": "123",
                },
            })
        );
        assert!(answer.log.contains(r#"x-consumer-username="mobile-app""#));
        assert!(!answer.log.contains("secret"), "{}", answer.log);
    }

    #[test]
    fn echo_without_identity_says_so() {
        let request = Request {
            method: "POST",
            url: "/orders",
            headers: &[],
            body: b"{}",
            tls: false,
        };
        let answer = echo(Service::Orders, &request);
        let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(body["service"], "order-service");
        assert_eq!(body["user"], serde_json::Value::Null);
        assert_eq!(body["identity"], serde_json::json!({}));
        assert_eq!(body["tls"], false);
        assert_eq!(answer.log, "(no identity headers)");
    }

    #[test]
    fn a_repeated_identity_header_shows_every_value() {
        let headers = headers(&[
            ("x-consumer-username", "web-app"),
            ("x-consumer-username", "mobile-app"),
            ("x-consumer-username", "root"),
        ]);
        let map = identity(&headers);
        assert_eq!(
            map["x-consumer-username"],
            serde_json::json!(["web-app", "mobile-app", "root"])
        );
    }

    #[test]
    fn flags_name_each_service_once() {
        for service in Service::ALL {
            assert_eq!(Service::from_flag(service.flag()), Some(service));
        }
        assert_eq!(Service::from_flag("--user"), None);
    }
}
