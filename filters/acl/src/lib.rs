//! Portcullis acl filter: the acl stage (`portcullis_glue::stages::acl`) as its own module.

use portcullis_glue::chain::{self, Absent, Packaging, Stages};
use portcullis_glue::stages::acl::Acl;

proxy_wasm::main! {{
    chain::register::<Absent, Absent, Acl, Absent>(Packaging {
        name: "acl",
        configure: |bytes| {
            Some(Stages {
                acl: Some(Acl::configure(bytes)?),
                ..Stages::default()
            })
        },
        unconfigured: chain::unconfigured,
    });
}}
