//! The skeleton every handler runs in: one span per invocation, a typed
//! [`Report`] of [`Outcome`]s logged line by line, and the `autopilot.*` error
//! codes that Lambda records as `errorType` (alarms and dead-letter consumers
//! match on them).

use lambda_runtime::{Context, Diagnostic};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use tracing::Instrument;

/// The `errorType` values every function shares. A function adds its own
/// (e.g. `autopilot.RotationRefused`) in the same namespace.
pub mod code {
    /// The event is malformed; retrying will not help.
    pub const MALFORMED_EVENT: &str = "autopilot.MalformedEvent";
    /// The event is of a kind this function does not handle.
    pub const UNSUPPORTED_EVENT: &str = "autopilot.UnsupportedEvent";
    /// An AWS call failed in a way that passes (throttling, 5xx, timeout, a dropped
    /// connection) after the SDK's bounded retries; Lambda's retry is likely to succeed.
    pub const AWS_CALL_FAILED: &str = "autopilot.AwsCallFailed";
    /// AWS refused the request (access denied, validation, not found). The SDK did
    /// not retry it; Lambda's retries fail the same way and the event reaches the
    /// dead-letter destination until someone fixes the cause.
    pub const AWS_CALL_REFUSED: &str = "autopilot.AwsCallRefused";
    /// On-call could not be told; the event is retried so the page is not lost.
    pub const PAGE_FAILED: &str = "autopilot.PageFailed";
    /// Some resources failed while others were handled; the retry finishes the rest.
    pub const PARTIAL_FAILURE: &str = "autopilot.PartialFailure";
}

/// An error with an `autopilot.*` code.
pub trait Coded: std::fmt::Display {
    fn code(&self) -> &'static str;
}

/// What a failed invocation reports to Lambda: its code and a message that
/// carries no secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub code: &'static str,
    pub message: String,
}

impl Failure {
    pub fn of(e: &impl Coded) -> Self {
        Self {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl From<Failure> for Diagnostic {
    fn from(f: Failure) -> Self {
        Diagnostic {
            error_type: f.code.to_string(),
            error_message: f.message,
        }
    }
}

/// What was done about one resource, and why, in the operator's words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The resource, e.g. `prod/backend` or a secret's name.
    pub resource: String,
    /// e.g. deploy, skip, refuse, ignore, notify, warn, create, set, finish.
    pub action: String,
    pub reason: String,
    /// Identifiers that go with the action, e.g. `revision`, `deployment_id`, `version`.
    #[serde(flatten)]
    pub details: BTreeMap<String, String>,
}

impl Outcome {
    pub fn new(resource: impl Into<String>, action: &str, reason: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            action: action.to_string(),
            reason: reason.into(),
            details: BTreeMap::new(),
        }
    }

    /// Adds an identifier; an empty value is left out.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        if !value.is_empty() {
            self.details.insert(key.to_string(), value);
        }
        self
    }

    pub fn detail(&self, key: &str) -> Option<&str> {
        self.details.get(key).map(String::as_str)
    }

    /// One JSON log line: resource, action, reason and the identifiers.
    pub fn log(&self) {
        let details = if self.details.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&self.details).unwrap_or_default()
        };
        tracing::info!(
            resource = %self.resource,
            action = %self.action,
            reason = %self.reason,
            details = %details,
            "decision"
        );
    }
}

/// What one invocation did. Returned to the caller and logged outcome by outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The kind of event, e.g. `ECR Image Action` or `createSecret`.
    pub event: String,
    pub dry_run: bool,
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub fn actions(&self) -> Vec<&str> {
        self.outcomes.iter().map(|o| o.action.as_str()).collect()
    }
}

/// Runs one invocation in its span (`request_id`, `function`, and a `resource`
/// the work may record), logs every outcome or the failure, and returns what
/// Lambda reports.
pub async fn run<F, E>(
    function: &'static str,
    context: &Context,
    work: F,
) -> Result<Report, Failure>
where
    F: Future<Output = Result<Report, E>>,
    E: Into<Failure>,
{
    let span = tracing::info_span!(
        "invocation",
        request_id = %context.request_id,
        function,
        resource = tracing::field::Empty
    );
    async move {
        match work.await {
            Ok(report) => {
                report.outcomes.iter().for_each(Outcome::log);
                Ok(report)
            }
            Err(e) => {
                let failure: Failure = e.into();
                tracing::error!(error_type = failure.code, error = %failure.message, "invocation failed");
                Err(failure)
            }
        }
    }
    .instrument(span)
    .await
}

/// Records the resource an invocation is about on its span, once it is known.
pub fn record_resource(resource: &str) {
    tracing::Span::current().record("resource", resource);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_serialise_flat_and_skip_empty_details() {
        let o = Outcome::new("prod/api", "deploy", "pushed")
            .with("revision", "api:8")
            .with("deployment_id", "");
        let json = serde_json::to_value(&o).unwrap();
        assert_eq!(json["revision"], "api:8");
        assert!(json.get("deployment_id").is_none());
        assert_eq!(o.detail("revision"), Some("api:8"));
    }

    #[test]
    fn a_failure_becomes_the_lambda_diagnostic() {
        let d: Diagnostic = Failure {
            code: code::AWS_CALL_FAILED,
            message: "UpdateService on prod/api failed".into(),
        }
        .into();
        assert_eq!(d.error_type, "autopilot.AwsCallFailed");
        assert_eq!(d.error_message, "UpdateService on prod/api failed");
    }
}
