//! What two or more autopilot functions use: the configuration toolkit, the
//! invocation skeleton, paging on-call, event parsing, logging and AWS clients.
//! A function's own configuration, event details and logic live in its crate.

pub mod adopt;
pub mod aws;
pub mod backup;
pub mod config;
pub mod events;
pub mod invocation;
pub mod logging;
pub mod metrics;
pub mod pager;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod record;

pub use config::{Common, ConfigError};
pub use invocation::{Failure, Outcome, Report};
pub use pager::{Page, Pager, Severity};
