//! The one place AWS SDK configuration is loaded.
//!
//! Endpoint, region and credentials come from the standard chain, so
//! `AWS_ENDPOINT_URL` points every client at the local emulator in tests and in
//! the demo. Build clients from this once per cold start, never per event.

use crate::invocation::{code, Coded};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{AppName, BehaviorVersion, ConfigLoader, SdkConfig};
use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::ConnectorBuilder;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
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

/// An AWS call that failed: the operation, the resource it was about, the
/// service's own message with its full context (error code, request id), and
/// whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} on {resource} failed: {message}")]
pub struct AwsCallError {
    pub operation: &'static str,
    pub resource: String,
    pub message: String,
    /// Throttling, a 5xx answer, a timeout, a dropped connection or an answer that
    /// could not be read: the SDK has already retried it (up to [`MAX_ATTEMPTS`]
    /// attempts, but once for a call [`NotRepeatedIfSent`]), and Lambda's retry of
    /// the event is likely to succeed. False when AWS refused the
    /// request itself (access denied, validation, not found): the SDK did not retry
    /// it, and every retry fails the same way until someone changes something.
    pub retryable: bool,
}

impl Coded for AwsCallError {
    fn code(&self) -> &'static str {
        if self.retryable {
            code::AWS_CALL_FAILED
        } else {
            code::AWS_CALL_REFUSED
        }
    }
}

impl AwsCallError {
    /// A failure found in an answer (a field AWS promises is missing): retryable, as
    /// the next answer may be whole.
    pub fn new(
        operation: &'static str,
        resource: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            operation,
            resource: resource.into(),
            message: message.into(),
            retryable: true,
        }
    }

    /// For `map_err`: `.map_err(AwsCallError::of("UpdateService", &service))?`.
    /// Classified as the SDK's standard retry strategy classifies it.
    pub fn of<E>(
        operation: &'static str,
        resource: impl Into<String>,
    ) -> impl FnOnce(SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let resource = resource.into();
        move |e| {
            let retryable = retryable(&e);
            Self {
                operation,
                resource,
                message: aws_sdk_sns::error::DisplayErrorContext(e).to_string(),
                retryable,
            }
        }
    }
}

/// Whether a failure passes: a timeout, an I/O or connector failure, an unreadable
/// answer, an error code on the SDK's throttling or transient lists (`aws_runtime`'s,
/// the lists its classifier uses), or a 5xx status. Close to what the SDK's standard
/// classifiers retry, not identical: they retry only 500, 502, 503 and 504 of the
/// 5xx, and also a few codes modelled retryable or a clock skew. Here the error
/// type only labels an invocation that failed, for the reader of the dead-letter
/// queue; Lambda retries it either way.
pub fn retryable<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::ConstructionFailure(_) => false,
        SdkError::DispatchFailure(d) => !d.is_user(),
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or_default();
            THROTTLING_ERRORS.contains(&code)
                || TRANSIENT_ERRORS.contains(&code)
                || s.raw().status().is_server_error()
        }
        // TimeoutError, ResponseError, and any variant added later.
        _ => true,
    }
}

/// Whether AWS may have carried out a call that failed: a timeout, an I/O or
/// connector failure after the request may have been sent, an unreadable answer,
/// or a 5xx answer. Not a 4xx answer (throttling included: AWS refused before
/// acting) nor a request that could not be built. What is sure not to have
/// happened can be called failed; the rest must be read back first.
pub fn may_have_happened<E>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::ConstructionFailure(_) => false,
        SdkError::DispatchFailure(d) => !d.is_user(),
        SdkError::ServiceError(s) => s.raw().status().is_server_error(),
        // TimeoutError, ResponseError, and any variant added later.
        _ => true,
    }
}

/// A retry classifier for a call that creates something AWS cannot recognise when
/// it is sent again (no client token, no name of the caller's choosing), such as
/// ECS RegisterTaskDefinition: the SDK's retry of a call that timed out, lost its
/// connection or got a 5xx answer may repeat a call AWS carried out, and register
/// a second revision. Such failures are not retried here: the invocation fails, and
/// Lambda's retry reads what AWS now holds before acting (deploy reuses a revision
/// registered for the push). What AWS refused before acting, throttling above all,
/// is left to the standard classifiers, which retry it with backoff.
///
/// Use per operation: `.customize().config_override(Config::builder().retry_classifier(NotRepeatedIfSent))`.
#[derive(Debug, Default, Clone, Copy)]
pub struct NotRepeatedIfSent;

impl ClassifyRetry for NotRepeatedIfSent {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(Err(error)) = ctx.output_or_error() else {
            return RetryAction::NoActionIndicated;
        };
        let answered_4xx = error.is_operation_error()
            && ctx.response().is_some_and(|r| r.status().is_client_error());
        if answered_4xx {
            RetryAction::NoActionIndicated
        } else {
            RetryAction::RetryForbidden
        }
    }

    fn name(&self) -> &'static str {
        "autopilot: not repeated once sent"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sns::operation::publish::PublishError;
    use aws_smithy_runtime_api::client::interceptors::context::{Error, Input};
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn answered(code: &str, status: u16) -> SdkError<PublishError, HttpResponse> {
        SdkError::service_error(
            PublishError::generic(ErrorMetadata::builder().code(code).message("m").build()),
            HttpResponse::new(status.try_into().unwrap(), SdkBody::empty()),
        )
    }

    fn classified(e: SdkError<PublishError, HttpResponse>) -> (bool, &'static str) {
        let e = AwsCallError::of("Publish", "oncall")(e);
        (e.retryable, e.code())
    }

    #[test]
    fn what_passes_is_retryable_and_what_aws_refused_is_not() {
        let failed = (true, code::AWS_CALL_FAILED);
        let refused = (false, code::AWS_CALL_REFUSED);
        for (code, status) in [
            ("ThrottlingException", 400),
            ("Throttling", 400),
            ("TooManyRequestsException", 400),
            ("RequestTimeoutException", 408),
            ("InternalFailure", 500),
            ("ServiceUnavailable", 503),
            ("AnythingElse", 502),
        ] {
            assert_eq!(
                classified(answered(code, status)),
                failed,
                "{code} {status}"
            );
        }
        for (code, status) in [
            ("AccessDeniedException", 400),
            ("AuthorizationError", 403),
            ("ValidationException", 400),
            ("InvalidParameterException", 400),
            ("ResourceNotFoundException", 400),
            ("NotFound", 404),
        ] {
            assert_eq!(
                classified(answered(code, status)),
                refused,
                "{code} {status}"
            );
        }
        let io = SdkError::dispatch_failure(ConnectorError::io("connection reset".into()));
        assert_eq!(classified(io), failed);
        let user = SdkError::dispatch_failure(ConnectorError::user("bad endpoint".into()));
        assert_eq!(classified(user), refused);
        assert_eq!(
            classified(SdkError::timeout_error("attempt timeout")),
            failed
        );
        assert_eq!(
            classified(SdkError::construction_failure("no topic")),
            refused
        );
    }

    /// What `NotRepeatedIfSent` says of an attempt that ended in `error`, with the
    /// answer `status` when one came.
    fn not_repeated(
        status: Option<u16>,
        error: aws_smithy_runtime_api::client::orchestrator::OrchestratorError<Error>,
    ) -> RetryAction {
        let mut ctx = InterceptorContext::new(Input::doesnt_matter());
        if let Some(status) = status {
            ctx.set_response(HttpResponse::new(
                status.try_into().unwrap(),
                SdkBody::empty(),
            ));
        }
        ctx.set_output_or_error(Err(error));
        NotRepeatedIfSent.classify_retry(&ctx)
    }

    #[test]
    fn a_call_not_repeated_once_sent_is_retried_only_when_aws_refused_it() {
        use aws_smithy_runtime_api::client::orchestrator::OrchestratorError;
        let answered = |code: &str| {
            OrchestratorError::operation(Error::erase(PublishError::generic(
                ErrorMetadata::builder().code(code).build(),
            )))
        };
        // Refused before acting: left to the standard classifiers (which retry
        // throttling and not the rest).
        for (code, status) in [("ThrottlingException", 400), ("AccessDeniedException", 403)] {
            assert_eq!(
                not_repeated(Some(status), answered(code)),
                RetryAction::NoActionIndicated,
                "{code}"
            );
        }
        // May have been carried out: never repeated.
        assert_eq!(
            not_repeated(Some(500), answered("InternalFailure")),
            RetryAction::RetryForbidden
        );
        let reset = ConnectorError::io("connection reset".into());
        assert_eq!(
            not_repeated(None, OrchestratorError::connector(reset)),
            RetryAction::RetryForbidden
        );
        assert_eq!(
            not_repeated(None, OrchestratorError::timeout("attempt timeout".into())),
            RetryAction::RetryForbidden
        );
        assert_eq!(
            not_repeated(Some(200), OrchestratorError::response("truncated".into())),
            RetryAction::RetryForbidden
        );
    }

    #[test]
    fn a_call_may_have_happened_unless_aws_answered_it_with_a_refusal() {
        assert!(!may_have_happened(&answered("ThrottlingException", 400)));
        assert!(!may_have_happened(&answered("ValidationException", 400)));
        assert!(may_have_happened(&answered("InternalFailure", 500)));
        assert!(may_have_happened(
            &SdkError::<PublishError, HttpResponse>::timeout_error("t")
        ));
        assert!(may_have_happened(
            &SdkError::<PublishError, HttpResponse>::dispatch_failure(ConnectorError::io(
                "reset".into()
            ))
        ));
        assert!(!may_have_happened(
            &SdkError::<PublishError, HttpResponse>::construction_failure("no topic")
        ));
    }

    #[test]
    fn a_failure_found_in_an_answer_is_retryable() {
        let e = AwsCallError::new("DescribeServices", "prod/api", "no service in the answer");
        assert!(e.retryable);
        assert_eq!(e.code(), code::AWS_CALL_FAILED);
    }
}
