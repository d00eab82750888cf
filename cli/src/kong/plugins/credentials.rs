//! Consumers, their JWT credentials and groups, for the jwt filter's static `consumers` and
//! for portcullis-admin. Each credential is checked by the jwt filter's own parser.

use serde_json::{json, Map, Value as Json};

use super::super::model::{Config, JwtSecret};
use super::config::group_problem;
use super::{AdminConsumer, AdminCredential, PolicyOptions};
use crate::report::Report;

/// The jwt filter's `consumers` (static), and what `--admin-url` would load. Each credential
/// is checked by the jwt filter's own parser (`portcullis_core`): what it would refuse is
/// reported with its reason, never written.
pub fn jwt_consumers(
    config: &Config,
    base64: bool,
    options: &PolicyOptions,
    report: &mut Report,
) -> (Vec<Json>, Vec<AdminConsumer>) {
    let admin = options.admin_authority.is_some();
    let mut out = Vec::new();
    let mut load = Vec::new();
    for (c, consumer) in config.consumers.iter().enumerate() {
        let mut groups = Vec::new();
        for acl in config.acls.iter().filter(|a| a.consumer == c) {
            match group_problem(&acl.group) {
                None => groups.push(acl.group.clone()),
                Some(why) => report.add(
                    &acl.at,
                    format!("acl group {:?}", acl.group),
                    format!("{why}: Portcullis refuses such group names (X-Consumer-Groups is comma-separated); not converted"),
                ),
            }
        }
        let secrets: Vec<&JwtSecret> = config
            .jwt_secrets
            .iter()
            .filter(|s| s.consumer == c)
            .collect();
        if consumer.username.is_none() && !admin {
            report.add(
                &consumer.at.labelled(&consumer.label()),
                "consumer without a username",
                "the jwt filter's static consumers need one (X-Consumer-Username): not converted with its credentials and groups (portcullis-admin, --admin-url, takes it)",
            );
            continue;
        }
        let mut credentials = Vec::new();
        let mut admin_credentials = Vec::new();
        for secret in secrets {
            if let Some((json, admin_credential)) = credential(secret, base64, report) {
                credentials.push(json);
                admin_credentials.push(admin_credential);
            }
        }
        if let Some(username) = &consumer.username {
            let mut m = Map::new();
            m.insert("username".into(), json!(username));
            if let Some(id) = &consumer.id {
                m.insert("id".into(), json!(id));
            }
            if let Some(custom_id) = &consumer.custom_id {
                m.insert("custom_id".into(), json!(custom_id));
            }
            m.insert("groups".into(), json!(groups));
            m.insert("credentials".into(), Json::Array(credentials));
            out.push(Json::Object(m));
        }
        load.push(AdminConsumer {
            path: consumer.at.path.clone(),
            id: consumer.id.clone(),
            username: consumer.username.clone(),
            custom_id: consumer.custom_id.clone(),
            credentials: admin_credentials,
            groups,
        });
    }
    (out, load)
}

/// One credential, checked as the jwt filter checks it.
fn credential(
    secret: &JwtSecret,
    base64: bool,
    report: &mut Report,
) -> Option<(Json, AdminCredential)> {
    let label = secret.key.as_deref().unwrap_or("no key");
    let at = secret.at.labelled(label);
    let Some(key) = &secret.key else {
        report.add(&at, "credential without a key", "Kong generates a random key when the file gives none: tokens for it cannot be known in advance; not converted");
        return None;
    };
    let hmac = secret.algorithm.starts_with("HS");
    if secret.algorithm == "ES512" {
        report.add(
            &secret.algorithm_at,
            "algorithm ES512",
            "Portcullis's jwt filter does not verify ES512: credential not converted",
        );
        return None;
    }
    let mut m = Map::new();
    m.insert("key".into(), json!(key));
    m.insert("algorithm".into(), json!(secret.algorithm));
    let mut admin_secret = None;
    if hmac {
        let Some(s) = &secret.secret else {
            report.add(&at, "credential without a secret", "Kong generates a random secret when the file gives none: tokens for it cannot be known in advance; not converted");
            return None;
        };
        if base64 {
            m.insert("secret_base64".into(), json!(s));
            use base64::Engine as _;
            admin_secret = base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
        } else {
            m.insert("secret".into(), json!(s));
            admin_secret = Some(s.clone());
        }
    } else if let Some(pem) = &secret.rsa_public_key {
        m.insert("public_key".into(), json!(pem));
    }
    let check =
        json!({"consumers": [{"username": "check", "credentials": [Json::Object(m.clone())]}]});
    if let Err(e) = portcullis_core::jwt::JwtPolicySet::from_json(check.to_string().as_bytes()) {
        let message = e.to_string();
        let reason = message
            .split_once(": ")
            .filter(|(path, _)| path.starts_with("consumers[0]"))
            .map_or(message.as_str(), |(_, r)| r)
            .to_owned();
        let short_hmac = hmac && reason.contains("needs at least");
        report.add(
            if hmac { &secret.secret_at } else { &at },
            format!("credential {key:?} ({})", secret.algorithm),
            if short_hmac {
                format!("{reason} (Kong accepts it; Portcullis refuses HMAC keys shorter than the hash): not converted")
            } else {
                format!("{reason}: not converted")
            },
        );
        return None;
    }
    if hmac && base64 && admin_secret.is_none() {
        report.add(&secret.secret_at, format!("credential {key:?}"), "its base64 secret does not decode to text, which portcullis-admin stores: not loaded into portcullis-admin");
    }
    Some((
        Json::Object(m),
        AdminCredential {
            path: secret.at.path.clone(),
            key: key.clone(),
            algorithm: secret.algorithm.clone(),
            secret: admin_secret,
            rsa_public_key: if hmac {
                None
            } else {
                secret.rsa_public_key.clone()
            },
        },
    ))
}
