//! Portcullis rate-limiting filter: the rate-limiting stage
//! (`portcullis_glue::stages::rate_limiting`) as its own module.

use portcullis_glue::chain::{self, Absent, Packaging, Stages};
use portcullis_glue::stages::rate_limiting::RateLimiting;

proxy_wasm::main! {{
    chain::register::<Absent, Absent, Absent, RateLimiting>(Packaging {
        name: "rate-limiting",
        configure: |bytes| {
            Some(Stages {
                rate_limiting: Some(RateLimiting::configure(bytes)?),
                ..Stages::default()
            })
        },
        unconfigured: RateLimiting::unconfigured,
    });
}}
