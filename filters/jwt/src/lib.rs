//! Portcullis jwt filter. Scaffolding until the jwt filter issue lands: it passes every
//! request through unchanged (see `portcullis_glue::scaffold`).

proxy_wasm::main! {{
    portcullis_glue::scaffold::register("jwt");
}}
