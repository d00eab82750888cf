//! Each filter's glue, written once as a [`Stage`](crate::chain::Stage): the separate
//! filter's module runs one, the one-VM gateway runs them in a row.

pub mod acl;
pub mod jwt;
pub mod rate_limiting;
pub mod token_issuer;
