//! JSON logs for CloudWatch Logs Insights.
//!
//! Each line carries the invocation span (`request_id`, `function`) and the
//! event's own fields; handlers log `resource`, `action` and `reason` on every
//! action. Secret values are never passed to a log macro anywhere in the code.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber once. The level comes from `AWS_LAMBDA_LOG_LEVEL`,
/// then `RUST_LOG`, then `info`.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string());
    let filter =
        EnvFilter::try_new(level.to_ascii_lowercase()).unwrap_or_else(|_| EnvFilter::new("info"));
    // try_init: a second call (tests) keeps the first subscriber instead of panicking.
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .try_init();
}
