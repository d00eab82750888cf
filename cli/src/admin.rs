//! `--admin-url`: consumers, their JWT credentials and ACL groups loaded into
//! portcullis-admin through its Kong-compatible Admin API, instead of the jwt filter's static
//! `consumers`. Every write is an upsert (`PUT /consumers/{id}` when the file gives the
//! consumer's id, so X-Consumer-ID stays what it was under Kong, else `PUT /consumers/{username}`;
//! `PUT /consumers/{c}/jwt/{key}`, `PUT /consumers/{c}/acls/{group}`), in that order, so a
//! run that stops half-way (the admin unreachable, a refusal) is finished by running it again.

use std::time::Duration;

use serde_json::{json, Value as Json};

use crate::kong::plugins::AdminConsumer;

/// Where portcullis-admin's Admin API is, and its token.
#[derive(Clone, Debug)]
pub struct AdminTarget {
    /// `http://host:port`, no trailing slash.
    pub url: String,
    /// Sent as `Kong-Admin-Token`, the header portcullis-admin's `--admin-token-file` asks for.
    pub token: Option<String>,
}

/// What was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    pub consumers: usize,
    pub credentials: usize,
    pub groups: usize,
}

/// `8-4-4-4-12` hexadecimal digits, as Kong writes an entity's id.
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// One path segment, percent-encoded (RFC 3986 unreserved characters kept).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Loads every consumer; the error names the entity (its path in the input), the request
/// and the admin's answer.
pub fn load(target: &AdminTarget, consumers: &[AdminConsumer]) -> Result<Loaded, String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .redirects(0)
        .build();
    let mut loaded = Loaded::default();
    // Consumers first, then credentials, then groups: each step needs the one before, and
    // each is an upsert, so a rerun picks up where a failure stopped.
    let mut handles = Vec::new();
    for c in consumers {
        let label = c
            .username
            .clone()
            .or_else(|| c.custom_id.clone())
            .unwrap_or_default();
        let what = format!("{} ({label})", c.path);
        // Kong's ids are UUIDs; the admin takes a UUID in the path as the id to create.
        let put_as =
            c.id.as_deref()
                .filter(|id| is_uuid(id))
                .or(c.username.as_deref());
        let handle = match (put_as, &c.custom_id) {
            (Some(name), custom_id) => {
                let url = format!("{}/consumers/{}", target.url, segment(name));
                send(
                    &agent,
                    target,
                    "PUT",
                    &url,
                    Some(json!({"username": c.username, "custom_id": custom_id})),
                    &what,
                )?;
                segment(name)
            }
            (None, Some(custom_id)) => {
                let url = format!("{}/consumers?custom_id={}", target.url, segment(custom_id));
                let found = send(&agent, target, "GET", &url, None, &what)?;
                let existing = found
                    .get("data")
                    .and_then(Json::as_array)
                    .and_then(|d| d.first())
                    .and_then(|c| c.get("id"))
                    .and_then(Json::as_str)
                    .map(str::to_owned);
                match existing {
                    Some(id) => segment(&id),
                    None => {
                        let url = format!("{}/consumers", target.url);
                        let created = send(
                            &agent,
                            target,
                            "POST",
                            &url,
                            Some(json!({"custom_id": custom_id})),
                            &what,
                        )?;
                        let id = created.get("id").and_then(Json::as_str).ok_or_else(|| {
                            format!("{what}: POST {url}: the answer carries no id")
                        })?;
                        segment(id)
                    }
                }
            }
            (None, None) => continue,
        };
        loaded.consumers += 1;
        handles.push((c, handle));
    }
    for (c, handle) in &handles {
        for cred in &c.credentials {
            let what = format!("{} ({})", cred.path, cred.key);
            let mut body = json!({"algorithm": cred.algorithm});
            if let Some(secret) = &cred.secret {
                body["secret"] = json!(secret);
            }
            if let Some(pem) = &cred.rsa_public_key {
                body["rsa_public_key"] = json!(pem);
            }
            if cred.secret.is_none() && cred.rsa_public_key.is_none() {
                continue;
            }
            let url = format!(
                "{}/consumers/{handle}/jwt/{}",
                target.url,
                segment(&cred.key)
            );
            send(&agent, target, "PUT", &url, Some(body), &what)?;
            loaded.credentials += 1;
        }
    }
    for (c, handle) in &handles {
        for group in &c.groups {
            let what = format!("{} (group {group})", c.path);
            let url = format!("{}/consumers/{handle}/acls/{}", target.url, segment(group));
            send(&agent, target, "PUT", &url, Some(json!({})), &what)?;
            loaded.groups += 1;
        }
    }
    Ok(loaded)
}

fn send(
    agent: &ureq::Agent,
    target: &AdminTarget,
    method: &str,
    url: &str,
    body: Option<Json>,
    what: &str,
) -> Result<Json, String> {
    let mut request = agent.request(method, url);
    if let Some(token) = &target.token {
        request = request.set("Kong-Admin-Token", token);
    }
    let result = match body {
        Some(b) => request
            .set("Content-Type", "application/json")
            .send_string(&b.to_string()),
        None => request.call(),
    };
    match result {
        Ok(response) => {
            let text = response
                .into_string()
                .map_err(|e| format!("{what}: {method} {url}: reading the answer: {e}"))?;
            Ok(serde_json::from_str(&text).unwrap_or(Json::Null))
        }
        Err(ureq::Error::Status(code, response)) => {
            let mut text = response.into_string().unwrap_or_default();
            text.truncate(300);
            Err(format!("{what}: {method} {url}: {code} {}", text.trim()))
        }
        Err(ureq::Error::Transport(t)) => Err(format!("{what}: {method} {url}: {t}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_a_uuid() {
        assert!(is_uuid("4fb5a9c3-1d2e-4f60-9a7b-0c1d2e3f4a5b"));
        for other in [
            "mobile-app",
            "4fb5a9c3-1d2e-4f60-9a7b",
            "4fb5a9c3-1d2e-4f60-9a7b-0c1d2e3f4a5g",
            "",
        ] {
            assert!(!is_uuid(other), "{other}");
        }
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(segment("mobile-app"), "mobile-app");
        assert_eq!(segment("a b/c+d"), "a%20b%2Fc%2Bd");
        assert_eq!(segment("é"), "%C3%A9");
    }
}
