//! TRACE, in a test binary of its own: it sets process-wide variables that no
//! other test may see, and no other test runs beside it.

use autopilot_tests::rotation;

/// A full rotation at TRACE, the most an operator can set in `AWS_LAMBDA_LOG_LEVEL`, with
/// the two variables the SDK's own TRACE lines tell them to set to see more. The SDK
/// logs request and response bodies at TRACE (`signing request`, `read HTTP
/// response body`) and redacts the sensitive ones unless `LOG_SIGNABLE_BODY` or
/// `LOG_SENSITIVE_BODIES` is true: then PutSecretValue's new password and
/// GetSecretValue's answer would be in the logs. tracing's `max_level_debug`
/// (Cargo.toml) compiles every TRACE line out, so no variable can bring them back.
#[tokio::test]
async fn a_full_rotation_logs_no_secret_value_even_at_trace() {
    // Read by the SDK on every request; set before the rotation starts anything.
    std::env::set_var("LOG_SENSITIVE_BODIES", "true");
    std::env::set_var("LOG_SIGNABLE_BODY", "true");
    rotation::full_rotation_logs_no_secret_value("rotation_trace", "trace").await;
}
