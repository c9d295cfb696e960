//! JSON logs for CloudWatch Logs Insights.
//!
//! Each line carries the invocation span (`request_id`, `function`) and the
//! event's own fields; handlers log `resource`, `action` and `reason` on every
//! action. Secret values are never passed to a log macro anywhere in the code.

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The JSON subscriber every function uses, writing to `writer` at `level` and above.
pub fn json_subscriber<W>(writer: W, level: &str) -> impl Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_new(level.to_ascii_lowercase()).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .finish()
}

/// Installs the JSON subscriber on stdout. The level comes from `AWS_LAMBDA_LOG_LEVEL`,
/// then `RUST_LOG`, then `info`.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string());
    // A second call keeps the first subscriber instead of panicking.
    let _ = tracing::subscriber::set_global_default(json_subscriber(std::io::stdout, &level));
}
