//! The one place AWS SDK configuration is loaded.
//!
//! Endpoint, region and credentials come from the standard chain, so
//! `AWS_ENDPOINT_URL` points every client at the local emulator in tests and in
//! the demo. Build clients from this once per cold start, never per event.

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use std::time::Duration;

/// Loads the shared SDK configuration with timeouts that fail a hung call well inside
/// a Lambda timeout, so the event is retried instead of the function being killed.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(20))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .load()
        .await
}

/// An AWS call that failed: the operation, the resource it was about, and the
/// service's own message with its full context (error code, request id).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} on {resource} failed: {message}")]
pub struct AwsCallError {
    pub operation: &'static str,
    pub resource: String,
    pub message: String,
}

impl AwsCallError {
    pub fn new(
        operation: &'static str,
        resource: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            operation,
            resource: resource.into(),
            message: message.into(),
        }
    }

    /// For `map_err`: `.map_err(AwsCallError::of("UpdateService", &service))?`.
    pub fn of<E: std::error::Error>(
        operation: &'static str,
        resource: impl Into<String>,
    ) -> impl FnOnce(E) -> Self {
        let resource = resource.into();
        move |e| {
            Self::new(
                operation,
                resource,
                aws_sdk_sns::error::DisplayErrorContext(e).to_string(),
            )
        }
    }
}
