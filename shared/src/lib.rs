//! Shared pieces of the autopilot functions: configuration, paging on-call,
//! event types, logging and AWS client configuration.

pub mod aws;
pub mod config;
pub mod events;
pub mod logging;
pub mod pager;

pub use config::{Config, ConfigError, RotationTarget, ServiceTarget, Strategy};
pub use pager::{Page, Pager, Severity};
