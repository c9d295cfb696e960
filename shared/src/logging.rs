//! JSON logs for CloudWatch Logs Insights.
//!
//! Each line carries the invocation span (`request_id`, `function`) and the
//! event's own fields; handlers log `resource`, `action` and `reason` on every
//! action. Secret values are never passed to a log macro anywhere in the code.

use tracing::level_filters::STATIC_MAX_LEVEL;
use tracing::Subscriber;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The JSON subscriber every function uses, writing to `writer` at `level` and above.
pub fn json_subscriber<W>(writer: W, level: &str) -> impl Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = level_filter(level);
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_max_level(filter)
        .with_writer(writer)
        .finish()
}

/// The level named by `level`: Lambda's `AWS_LAMBDA_LOG_LEVEL` values (TRACE, DEBUG,
/// INFO, WARN, ERROR, FATAL) and `off`, in any case. FATAL is ERROR (tracing has no
/// level above it); TRACE is kept, but no build has TRACE lines (`STATIC_MAX_LEVEL`). Anything else, such as an `env_logger` directive list, is INFO:
/// a one-level filter, not a per-module one, keeps a regex engine out of every binary.
pub fn level_filter(level: &str) -> LevelFilter {
    parse_level(level).unwrap_or(LevelFilter::INFO)
}

/// The level `level` names, or `None` when it names none (empty is INFO).
fn parse_level(level: &str) -> Option<LevelFilter> {
    let level = level.trim();
    if level.eq_ignore_ascii_case("fatal") {
        return Some(LevelFilter::ERROR);
    }
    if level.is_empty() {
        // tracing reads "" as ERROR; an empty variable is an unset one here.
        return Some(LevelFilter::INFO);
    }
    level.parse().ok()
}

/// Installs the JSON subscriber on stdout, and a panic hook that logs through it.
/// The level comes from `AWS_LAMBDA_LOG_LEVEL`, then `RUST_LOG`, then `info`.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string());
    // A second call keeps the first subscriber instead of panicking.
    let _ = tracing::subscriber::set_global_default(json_subscriber(std::io::stdout, &level));
    match parse_level(&level) {
        None => tracing::warn!(value = %level, reason = "not a log level", "logging at INFO"),
        Some(asked) if asked > STATIC_MAX_LEVEL => tracing::warn!(
            value = %level,
            reason = "TRACE lines are compiled out, so that no SDK switch can log a request body",
            "logging at {STATIC_MAX_LEVEL}"
        ),
        Some(_) => {}
    }
    install_panic_hook();
}

/// Release builds abort on panic (`panic = "abort"`): the process exits, Lambda
/// reports `Runtime.ExitError` and the event is retried like any failure. This hook
/// puts the panic in the JSON log first, with the invocation's span (request id), so
/// it is found like any other error; the standard message still follows on stderr.
fn install_panic_hook() {
    let standard = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(
            panic = info.payload_as_str().unwrap_or("(not a string)"),
            location = %location,
            action = "exit",
            reason = "panic",
            "the function panicked; the process exits and the event is retried"
        );
        standard(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_log_levels_map_to_tracing_levels() {
        assert_eq!(level_filter("TRACE"), LevelFilter::TRACE);
        assert_eq!(level_filter("debug"), LevelFilter::DEBUG);
        assert_eq!(level_filter("Info"), LevelFilter::INFO);
        assert_eq!(level_filter("WARN"), LevelFilter::WARN);
        assert_eq!(level_filter("ERROR"), LevelFilter::ERROR);
        assert_eq!(level_filter("FATAL"), LevelFilter::ERROR);
        assert_eq!(level_filter("off"), LevelFilter::OFF);
        assert_eq!(level_filter(" warn\n"), LevelFilter::WARN);
    }

    #[test]
    fn no_build_has_trace_lines() {
        // Cargo.toml's `max_level_debug`: see tests/tests/logs_trace.rs for why.
        assert_eq!(STATIC_MAX_LEVEL, LevelFilter::DEBUG);
        assert!(level_filter("TRACE") > STATIC_MAX_LEVEL);
    }

    #[test]
    fn anything_else_is_info() {
        assert_eq!(level_filter("deploy=debug"), LevelFilter::INFO);
        assert_eq!(level_filter(""), LevelFilter::INFO);
        assert_eq!(level_filter("loud"), LevelFilter::INFO);
        assert_eq!(parse_level("deploy=debug"), None);
        assert_eq!(parse_level(""), Some(LevelFilter::INFO));
        assert_eq!(parse_level("fatal"), Some(LevelFilter::ERROR));
    }
}
