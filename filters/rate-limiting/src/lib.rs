//! Portcullis rate-limiting filter. Scaffolding until the rate-limiting filter issue lands: it passes every
//! request through unchanged (see `portcullis_glue::scaffold`).

proxy_wasm::main! {{
    portcullis_glue::scaffold::register("rate-limiting");
}}
