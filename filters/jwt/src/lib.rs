//! Portcullis jwt filter: the jwt stage (`portcullis_glue::stages::jwt`) as its own module.

use portcullis_glue::chain::{self, Absent, Packaging, Stages};
use portcullis_glue::stages::jwt::Jwt;

proxy_wasm::main! {{
    chain::register::<Absent, Jwt, Absent, Absent>(Packaging {
        name: "jwt",
        configure: |bytes| {
            Some(Stages {
                jwt: Some(Jwt::configure(bytes)?),
                ..Stages::default()
            })
        },
        unconfigured: chain::unconfigured,
    });
}}
