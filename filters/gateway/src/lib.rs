//! Portcullis gateway: the four stages in one VM and one HTTP context per request, in the
//! separate filters' order (token-issuer, jwt, acl, rate-limiting). Configured as
//! `{"token_issuer": {…}, "jwt": {…}, "acl": {…}, "rate_limiting": {…}}`, any non-empty
//! subset, each object the separate filter's own (`portcullis_core::gateway`).

use proxy_wasm::types::LogLevel;

use portcullis_core::gateway::{GatewayConfig, STAGES};
use portcullis_glue::chain::{self, Packaging, Stages};
use portcullis_glue::host::log;
use portcullis_glue::stages::acl::Acl;
use portcullis_glue::stages::jwt::Jwt;
use portcullis_glue::stages::rate_limiting::RateLimiting;
use portcullis_glue::stages::token_issuer::TokenIssuerStage;

type Gateway = Stages<TokenIssuerStage, Jwt, Acl, RateLimiting>;

proxy_wasm::main! {{
    chain::register(Packaging {
        name: "gateway",
        configure,
        unconfigured: chain::unconfigured,
    });
}}

/// Reads the configuration and starts each stage it names; `None` (refused, the reason
/// logged with the stage's name leading the field) when any is wrong.
fn configure(bytes: Option<Vec<u8>>) -> Option<Gateway> {
    let refused = |why: &str| {
        log(
            LogLevel::Error,
            &format!("portcullis-gateway: configuration refused: {why}"),
        );
    };
    let Some(bytes) = bytes else {
        refused(&format!(
            "none given; set one or more of {}",
            STAGES.join(", ")
        ));
        return None;
    };
    let config = match GatewayConfig::from_json(&bytes) {
        Ok(config) => config,
        Err(e) => {
            refused(&e.to_string());
            return None;
        }
    };
    log(
        LogLevel::Info,
        &format!("portcullis-gateway: stages {}", config.stages().join(", ")),
    );
    let token_issuer = match config.token_issuer {
        Some(issuer) => Some(TokenIssuerStage::new(issuer)?),
        None => None,
    };
    Some(Stages {
        token_issuer,
        jwt: config.jwt.map(Jwt::new),
        acl: config.acl.map(Acl::new),
        rate_limiting: config.rate_limiting.map(RateLimiting::new),
    })
}
