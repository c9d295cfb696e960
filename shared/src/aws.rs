//! The one place AWS SDK configuration is loaded.
//!
//! Endpoint, region and credentials come from the standard chain, so
//! `AWS_ENDPOINT_URL` points every client at the local emulator in tests and in
//! the demo. Build clients from this once per cold start, never per event.

use crate::invocation::{code, Coded};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{AppName, BehaviorVersion, ConfigLoader, SdkConfig};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::ConnectorBuilder;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use std::time::Duration;

/// Attempts per AWS call. The SDK's standard retry mode backs off exponentially
/// with jitter (up to 1 s, 2 s, 4 s, 8 s between attempts) on throttling
/// (`ThrottlingException`, `TooManyRequestsException`, …), transient errors and
/// 5xx answers; a fan-out over many services is throttled before it is refused.
pub const MAX_ATTEMPTS: u32 = 5;

/// The loader with autopilot's timeouts and retries: a hung call fails well inside
/// a Lambda timeout, so the event is retried instead of the function being killed.
/// The harness starts from the same loader, so tests run with production settings.
pub fn loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(20))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
}

/// The HTTP client of every AWS call, built as the SDK builds its default one
/// (aws-smithy-runtime's `default_https_client`): hyper 1 + rustls 0.23, servers verified
/// against the system's roots (Lambda's CA bundle), the loader's connect and read
/// timeouts, and `HTTPS_PROXY`/`NO_PROXY` from the environment. The one difference is
/// the crypto provider: ring, which the PostgreSQL and PagerDuty TLS use too, instead
/// of aws-lc-rs, whose second provider would be linked into every binary (0.16 MB of
/// each zip; docs/benchmarks.md). ring lacks aws-lc's hybrid post-quantum key exchange
/// (X25519MLKEM768) and P-521 signatures, which neither AWS's endpoints nor the RDS CAs
/// need.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::Ring));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// Loads the shared SDK configuration from the environment.
pub async fn sdk_config() -> SdkConfig {
    loader().load().await
}

/// The configuration a function builds its clients from: `sdk` with the function's
/// name as the SDK app name, so every request's user agent says who made it
/// (`app/autopilot-deploy`) in CloudTrail, and in the harness's call log.
pub fn for_function(sdk: &SdkConfig, function: &'static str) -> SdkConfig {
    let mut builder = sdk.to_builder();
    if let Ok(name) = AppName::new(function) {
        builder.set_app_name(Some(name));
    }
    builder.build()
}

/// An AWS call that failed: the operation, the resource it was about, and the
/// service's own message with its full context (error code, request id).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} on {resource} failed: {message}")]
pub struct AwsCallError {
    pub operation: &'static str,
    pub resource: String,
    pub message: String,
}

impl Coded for AwsCallError {
    fn code(&self) -> &'static str {
        code::AWS_CALL_FAILED
    }
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
