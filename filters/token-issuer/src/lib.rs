//! Portcullis token-issuer filter. Scaffolding until the token-issuer filter issue lands: it passes every
//! request through unchanged (see `portcullis_glue::scaffold`).

proxy_wasm::main! {{
    portcullis_glue::scaffold::register("token-issuer");
}}
