//! The one-VM gateway's configuration: `{"token_issuer": {…}, "jwt": {…}, "acl": {…},
//! "rate_limiting": {…}}`, any non-empty subset. Each stage's object is read by the separate
//! filter's own parser, so it takes exactly that filter's schema and is refused with that
//! filter's message, the stage's name leading the path
//! (`acl.routes.payments.allow: must not be empty`).

use serde_json::Value;

use crate::acl::AclPolicySet;
use crate::config::{strict_json, ConfigError, StrictError};
use crate::jwt::JwtPolicySet;
use crate::rate_limit::RateLimitPolicySet;
use crate::token_issuer::TokenIssuer;

/// The stages, in the order a request meets them (the separate filters' chain order).
pub const STAGES: [&str; 4] = ["token_issuer", "jwt", "acl", "rate_limiting"];

/// The stages a gateway runs, each compiled by its filter's parser; `None`: not configured.
pub struct GatewayConfig {
    pub token_issuer: Option<TokenIssuer>,
    pub jwt: Option<JwtPolicySet>,
    pub acl: Option<AclPolicySet>,
    pub rate_limiting: Option<RateLimitPolicySet>,
}

impl GatewayConfig {
    /// Reads the whole configuration: strict JSON (no member named twice, at any depth), an
    /// object naming only stages, at least one of them.
    pub fn from_json(bytes: &[u8]) -> Result<GatewayConfig, ConfigError> {
        let value = strict_json(bytes).map_err(|e| match e {
            StrictError::Syntax => refusal("", "not JSON"),
            StrictError::Duplicate => refusal("", "a member name repeats"),
        })?;
        let Value::Object(stages) = value else {
            return Err(refusal("", "not a JSON object"));
        };
        if let Some(unknown) = stages.keys().find(|k| !STAGES.contains(&k.as_str())) {
            return Err(refusal(
                unknown,
                format!("not a stage; the stages are {}", STAGES.join(", ")),
            ));
        }
        if stages.is_empty() {
            return Err(refusal(
                "",
                format!(
                    "no stage configured; set one or more of {}",
                    STAGES.join(", ")
                ),
            ));
        }
        let stage = |name: &str| stages.get(name);
        Ok(GatewayConfig {
            token_issuer: compile(
                "token_issuer",
                stage("token_issuer"),
                TokenIssuer::from_json,
            )?,
            jwt: compile("jwt", stage("jwt"), JwtPolicySet::from_json)?,
            acl: compile("acl", stage("acl"), AclPolicySet::from_json)?,
            rate_limiting: compile(
                "rate_limiting",
                stage("rate_limiting"),
                RateLimitPolicySet::from_json,
            )?,
        })
    }

    /// The configured stages' names, in request order.
    pub fn stages(&self) -> Vec<&'static str> {
        let configured = [
            self.token_issuer.is_some(),
            self.jwt.is_some(),
            self.acl.is_some(),
            self.rate_limiting.is_some(),
        ];
        STAGES
            .iter()
            .zip(configured)
            .filter_map(|(name, on)| on.then_some(*name))
            .collect()
    }
}

/// One stage's object through its filter's own parser, which sees the bytes a separate
/// filter would be given; a refusal's path gets the stage's name in front.
fn compile<T>(
    name: &str,
    value: Option<&Value>,
    parse: impl FnOnce(&[u8]) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    // A `Value` always serialises (its keys are strings); should it not, refuse rather
    // than run without the stage.
    let bytes = serde_json::to_vec(value).map_err(|e| refusal(name, e.to_string()))?;
    parse(&bytes).map(Some).map_err(|e| ConfigError {
        path: match e.path.as_str() {
            "" => name.to_owned(),
            path if path.starts_with('[') => format!("{name}{path}"),
            path => format!("{name}.{path}"),
        },
        message: e.message,
    })
}

fn refusal(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.to_owned(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACL: &str = r#"{"allow":["admins"],"routes":{"payments":{"allow":["admins"]}}}"#;
    const RATE_LIMIT: &str = r#"{"minute":100,"routes":{"payments":{"minute":20}}}"#;

    fn refused(json: &str) -> String {
        match GatewayConfig::from_json(json.as_bytes()) {
            Ok(config) => panic!("accepted {json}: stages {:?}", config.stages()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn any_subset_of_stages_in_request_order() {
        let both = format!(r#"{{"rate_limiting":{RATE_LIMIT},"acl":{ACL}}}"#);
        let config = GatewayConfig::from_json(both.as_bytes()).unwrap();
        assert_eq!(config.stages(), ["acl", "rate_limiting"]);
        let config = GatewayConfig::from_json(br#"{"jwt":{}}"#).unwrap();
        assert_eq!(config.stages(), ["jwt"]);
        let all = format!(r#"{{"jwt":{{}},"acl":{ACL},"rate_limiting":{RATE_LIMIT}}}"#);
        let config = GatewayConfig::from_json(all.as_bytes()).unwrap();
        assert_eq!(config.stages(), ["jwt", "acl", "rate_limiting"]);
    }

    #[test]
    fn a_stage_is_compiled_as_its_filter_compiles_it() {
        let config = GatewayConfig::from_json(format!(r#"{{"acl":{ACL}}}"#).as_bytes()).unwrap();
        let acl = config.acl.unwrap();
        let alone = AclPolicySet::from_json(ACL.as_bytes()).unwrap();
        assert_eq!(
            acl.routes().map(|r| r.name()).collect::<Vec<_>>(),
            alone.routes().map(|r| r.name()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_stage_refusal_is_its_filters_with_the_stage_in_front() {
        // The path the issue names.
        assert_eq!(
            refused(r#"{"acl":{"allow":["admins"],"routes":{"payments":{"allow":[]}}}}"#),
            "acl.routes.payments.allow: must not be empty"
        );
        for (stage, config) in [
            ("acl", r#"{"routes":{"payments":{"allow":[]}}}"#),
            ("rate_limiting", r#"{"minute":0}"#),
            ("rate_limiting", r#"{"minute":5,"limit_by":"nobody"}"#),
            ("jwt", r#"{"key_claim_name":7}"#),
            ("jwt", r#"{"unknown_field":true}"#),
            ("token_issuer", r#"{}"#),
            ("token_issuer", r#"{"auth_path":"/login","keys":[]}"#),
            ("acl", "null"),
            ("jwt", "[]"),
        ] {
            let alone = match stage {
                "acl" => AclPolicySet::from_json(config.as_bytes()).err(),
                "jwt" => JwtPolicySet::from_json(config.as_bytes()).err(),
                "rate_limiting" => RateLimitPolicySet::from_json(config.as_bytes()).err(),
                _ => TokenIssuer::from_json(config.as_bytes()).err(),
            }
            .unwrap_or_else(|| panic!("{stage} alone accepted {config}"));
            let expected = if alone.path.is_empty() {
                format!("{stage}: {}", alone.message)
            } else {
                format!("{stage}.{}: {}", alone.path, alone.message)
            };
            assert_eq!(
                refused(&format!(r#"{{"{stage}":{config}}}"#)),
                expected,
                "{stage}: {config}"
            );
        }
    }

    /// `decision_records` is each stage's own switch, as in its filter: on by default,
    /// `false` turns that stage's records off and no other's, anything else is refused
    /// naming the field.
    #[test]
    fn decision_records_is_each_stages_switch() {
        let issuer = concat!(
            r#"{"auth_paths":[{"path":"/login"}],"iss":"i","#,
            r#""keys":[{"kid":"k","algorithm":"HS256","secret":"FVYGMY8NaopOclJ2MtJ8wat3RqUwqi83"}]}"#
        );
        let mut all = serde_json::Map::new();
        for (stage, config) in STAGES.iter().zip([issuer, "{}", ACL, RATE_LIMIT]) {
            all.insert((*stage).to_owned(), serde_json::from_str(config).unwrap());
        }
        let switches = |value: &serde_json::Value| -> Result<[bool; 4], String> {
            let c = GatewayConfig::from_json(value.to_string().as_bytes())
                .map_err(|e| e.to_string())?;
            Ok([
                c.token_issuer.unwrap().decision_records(),
                c.jwt.unwrap().decision_records(),
                c.acl.unwrap().decision_records(),
                c.rate_limiting.unwrap().decision_records(),
            ])
        };
        let on = serde_json::Value::Object(all);
        assert_eq!(switches(&on), Ok([true; 4]));
        for (i, stage) in STAGES.iter().enumerate() {
            let mut off = on.clone();
            off[*stage]["decision_records"] = false.into();
            let mut expected = [true; 4];
            expected[i] = false;
            assert_eq!(switches(&off), Ok(expected), "{off}");
            off[*stage]["decision_records"] = "no".into();
            assert_eq!(
                switches(&off),
                Err(format!(
                    r#"{stage}.decision_records: invalid type: string "no", expected a boolean"#
                )),
            );
        }
        // A filter's switch, not a route's.
        for stage in ["jwt", "acl", "rate_limiting"] {
            let mut routed = on.clone();
            routed[stage]["routes"]["payments"]["decision_records"] = false.into();
            if stage == "jwt" {
                routed[stage]["routes"]["payments"]["public"] = true.into();
            }
            let refusal = switches(&routed).unwrap_err();
            assert!(
                refusal.starts_with(&format!(
                    "{stage}.routes.payments.decision_records: unknown field `decision_records`"
                )),
                "{refusal}"
            );
        }
    }

    #[test]
    fn the_whole_document_is_checked_first() {
        assert_eq!(refused("not json"), "not JSON");
        assert_eq!(refused("[1]"), "not a JSON object");
        assert_eq!(
            refused("{}"),
            "no stage configured; set one or more of token_issuer, jwt, acl, rate_limiting"
        );
        assert_eq!(
            refused(r#"{"jwt":{},"rate-limiting":{"minute":5}}"#),
            "rate-limiting: not a stage; the stages are token_issuer, jwt, acl, rate_limiting"
        );
        // A name repeated inside a stage's object is refused before any stage reads it.
        assert_eq!(
            refused(r#"{"acl":{"allow":["a"],"allow":["b"]}}"#),
            "a member name repeats"
        );
        assert_eq!(refused(r#"{"jwt":{},"jwt":{}}"#), "a member name repeats");
    }
}
