//! Reading consumers, their JWT credentials, and the top-level entities not converted.

use super::super::fields::{self, Fields, METADATA};
use super::super::input::{Node, Value};
use super::*;

impl<'a> Reader<'a, '_> {
    pub(super) fn consumer(&mut self, at: &Loc, node: &'a Node) -> Result<(), InputError> {
        let mut f = Fields::of(node, at)?;
        let username = f.string("username")?;
        let custom_id = f.string("custom_id")?;
        let id = f.string("id")?;
        if username.is_none() && custom_id.is_none() {
            return Err(InputError::at(
                at,
                "a consumer needs a username or a custom_id",
            ));
        }
        let index = self.config.consumers.len();
        for (at, node) in f.list("jwt_secrets")? {
            self.pending_secrets.push((at, node, Some(index)));
        }
        for (at, node) in f.list("acls")? {
            self.pending_acls.push((at, node, Some(index)));
        }
        for (at, node) in f.list("plugins")? {
            self.pending_plugins.push((
                at,
                node,
                Scope {
                    consumer: Some(index),
                    ..Scope::default()
                },
            ));
        }
        let consumer = Consumer {
            at: at.clone(),
            username,
            custom_id,
            id,
        };
        let label = consumer.label();
        for (at, key, node) in f.rest() {
            if METADATA.contains(&key) {
                continue;
            }
            let what = format!("field {key} ({})", fields::show(node));
            match key {
                "keyauth_credentials" | "basicauth_credentials" | "hmacauth_credentials"
                | "oauth2_credentials" | "mtls_auth_credentials" => self.report.add(
                    &at,
                    what,
                    format!("{key} of consumer {label}: only JWT credentials (jwt_secrets) are converted"),
                ),
                "groups" => self.report.add(
                    &at,
                    what,
                    "consumer groups are not converted (Portcullis has ACL groups only)",
                ),
                _ => self
                    .report
                    .add(&at, format!("unknown field {key}"), "not a consumer field: ignored"),
            }
        }
        self.config.consumers.push(consumer);
        Ok(())
    }

    pub(super) fn jwt_secret(
        &mut self,
        at: &Loc,
        mut f: Fields,
        consumer: usize,
    ) -> Result<(), InputError> {
        let key = f.string("key")?;
        let algorithm_at = f.loc("algorithm");
        let algorithm = f.string("algorithm")?.unwrap_or_else(|| "HS256".to_owned());
        const ALGORITHMS: [&str; 13] = [
            "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
            "PS256", "PS384", "PS512", "EdDSA",
        ];
        if !ALGORITHMS.contains(&algorithm.as_str()) {
            return Err(InputError::at(
                &algorithm_at,
                format!("{algorithm:?}: not one of Kong's algorithms"),
            ));
        }
        let secret_at = f.loc("secret");
        let secret = f.string("secret")?;
        let rsa_public_key = f.string("rsa_public_key")?;
        if !algorithm.starts_with("HS") && rsa_public_key.is_none() {
            return Err(InputError::at(
                &f.loc("rsa_public_key"),
                format!("missing: Kong requires it for {algorithm}"),
            ));
        }
        if let Some(k) = &key {
            if let Some(other) = self
                .config
                .jwt_secrets
                .iter()
                .find(|s| s.key.as_ref() == Some(k))
            {
                return Err(InputError::at(
                    &f.loc("key"),
                    format!("duplicate key {k:?} (also {})", other.at.path),
                ));
            }
        }
        self.rest(f, "jwt_secrets");
        self.config.jwt_secrets.push(JwtSecret {
            at: at.clone(),
            consumer,
            key,
            algorithm,
            algorithm_at,
            secret,
            secret_at,
            rsa_public_key,
        });
        Ok(())
    }

    pub(super) fn top_level_other(&mut self, at: &Loc, key: &str, node: &Node) {
        let why = match key {
            "upstreams" | "targets" => "load-balancing upstreams are not converted: a service whose host names an upstream gets a DNS cluster for that name; list the targets as the cluster's endpoints (lb_policy for the algorithm, health_checks for the checks)",
            "certificates" | "snis" | "ca_certificates" => "TLS termination is not converted (the listener is plain HTTP): add a TLS transport_socket with these certificates to the listener's filter chain",
            "consumer_groups" => "consumer groups are not converted (Portcullis has ACL groups only)",
            "vaults" => "vaults are not converted: secrets must be in the file",
            "keyauth_credentials" | "basicauth_credentials" | "hmacauth_credentials"
            | "oauth2_credentials" | "mtls_auth_credentials" => {
                "only JWT credentials (jwt_secrets) are converted"
            }
            _ => "",
        };
        match &node.value {
            Value::Seq(items) if !why.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    let label = match &item.value {
                        Value::Map(entries) => entries
                            .iter()
                            .find(|(k, _)| k == "name" || k == "username" || k == "target")
                            .and_then(|(_, n)| match &n.value {
                                Value::Str(s) => Some(s.clone()),
                                _ => None,
                            }),
                        _ => None,
                    };
                    let item_at = at.index(i, item.seq);
                    let item_at = match label {
                        Some(l) => item_at.labelled(&l),
                        None => item_at,
                    };
                    self.report.add(&item_at, key.trim_end_matches('s'), why);
                }
            }
            _ if !why.is_empty() => self.report.add(at, key, why),
            _ => self.report.add(
                at,
                format!("unknown top-level key {key}"),
                "not part of Kong's declarative format: ignored",
            ),
        }
    }
}
