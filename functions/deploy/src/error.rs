//! Why an invocation failed, and whether Lambda should try it again.

use autopilot_shared::aws::AwsCallError;
use autopilot_shared::events::EventError;
use autopilot_shared::pager::PageError;
use lambda_runtime::Diagnostic;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The event is malformed or of a kind deploy does not handle; retrying will not help.
    #[error(transparent)]
    Event(#[from] EventError),
    /// An AWS call failed; the event is retried, and every step is safe to repeat.
    #[error(transparent)]
    Aws(#[from] AwsCallError),
    /// On-call could not be told; the event is retried so the page is not lost.
    #[error(transparent)]
    Page(#[from] PageError),
    /// Some services failed while others were handled; retried, the handled ones are no-ops.
    #[error("{} service(s) failed: {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Several(Vec<DeployError>),
}

impl DeployError {
    /// The `errorType` Lambda records; alarms and DLQ consumers can match on it.
    pub fn error_type(&self) -> &'static str {
        match self {
            DeployError::Event(EventError::Malformed { .. }) => "autopilot.MalformedEvent",
            DeployError::Event(EventError::Unsupported { .. }) => "autopilot.UnsupportedEvent",
            DeployError::Aws(_) => "autopilot.AwsCallFailed",
            DeployError::Page(_) => "autopilot.PageFailed",
            DeployError::Several(_) => "autopilot.PartialFailure",
        }
    }
}

impl From<DeployError> for Diagnostic {
    fn from(e: DeployError) -> Self {
        Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: e.to_string(),
        }
    }
}
