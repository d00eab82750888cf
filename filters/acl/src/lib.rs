//! Portcullis acl filter. Scaffolding until the acl filter issue lands: it passes every
//! request through unchanged (see `portcullis_glue::scaffold`).

proxy_wasm::main! {{
    portcullis_glue::scaffold::register("acl");
}}
