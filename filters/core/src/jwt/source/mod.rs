//! Consumers looked up at runtime: the jwt filter's `consumer_source`, which follows
//! portcullis-admin's data-plane API (services/admin/README.md, "The data-plane API").
//!
//! Kong's model, with a stated bound. A token whose key no static consumer has is looked up
//! once per Envoy (one worker claims the lookup in shared data, the others wait for its
//! answer), the answer is cached for every worker, misses too; one poller per Envoy follows
//! the admin's change feed and drops what changed, so a change made through the Admin API
//! takes effect everywhere within `poll_interval_ms` + one round trip. Revocations are
//! loaded before any looked-up consumer is admitted, and followed the same way.
//!
//! The pieces, bottom-up: [`settings`] (the option as written and checked), [`answer`] (the
//! data-plane answers, read strictly), [`revocations`] (the rule a token is checked
//! against), [`shared`] (the layout in shared data every worker reads), [`directory`] (one
//! worker's view: what it has decoded, and how a request finds its credential), [`poller`]
//! (what the one poller asks the admin and writes for everyone). All of it is plain Rust
//! over [`SharedStore`](crate::shared::SharedStore); the glue only moves the HTTP calls.

pub mod answer;
pub mod directory;
pub mod poller;
pub mod revocations;
pub mod settings;
pub mod shared;

#[cfg(test)]
mod tests;

pub use directory::{Directory, Found, Lookup};
pub use poller::{Call, Poller};
pub use revocations::{Cutoff, RevocationSet};
pub use settings::{ConsumerSource, RawConsumerSource};
