//! Portcullis token-issuer filter: the token-issuer stage
//! (`portcullis_glue::stages::token_issuer`) as its own module.

use portcullis_glue::chain::{self, Absent, Packaging, Stages};
use portcullis_glue::stages::token_issuer::TokenIssuerStage;

proxy_wasm::main! {{
    chain::register::<TokenIssuerStage, Absent, Absent, Absent>(Packaging {
        name: "token-issuer",
        configure: |bytes| {
            Some(Stages {
                token_issuer: Some(TokenIssuerStage::configure(bytes)?),
                ..Stages::default()
            })
        },
        unconfigured: chain::unconfigured,
    });
}}
