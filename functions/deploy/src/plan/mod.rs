//! Pure decisions, one module per event: what a push means for each mapped
//! service ([`push`]), what on-call hears of a deployment's verdict
//! ([`verdict`]), and which deployments have run too long ([`sweep`]); which
//! deployment is autopilot's before its id is recorded is [`adopt`]; the page
//! text is in [`pages`]. No I/O here: `observe` reads the state these take
//! and `apply` carries their decisions out. Every branch is unit-tested.

pub mod adopt;
pub mod pages;
pub mod push;
pub mod sweep;
pub mod verdict;

/// `family:revision`, and a timestamp as on-call reads it: the same helpers
/// word the reasons of the adoption rule ([`adopt`]).
pub use autopilot_shared::adopt::{revision_name, show_time};

#[cfg(test)]
pub(crate) mod fixtures;
