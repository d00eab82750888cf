//! Reading Kong's declarative configuration and mapping it to Envoy and Portcullis.

pub mod fields;
pub mod input;
pub mod model;
pub mod plugins;
pub mod regex;
pub mod routes;
