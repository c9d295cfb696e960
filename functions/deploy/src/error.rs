//! Why an invocation failed, and whether Lambda should try it again.

use autopilot_shared::aws::AwsCallError;
use autopilot_shared::events::EventError;
use autopilot_shared::invocation::{code, Coded, Failure};
use autopilot_shared::pager::PageError;

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

impl Coded for DeployError {
    fn code(&self) -> &'static str {
        match self {
            DeployError::Event(e) => e.code(),
            DeployError::Aws(e) => e.code(),
            DeployError::Page(e) => e.code(),
            DeployError::Several(_) => code::PARTIAL_FAILURE,
        }
    }
}

impl From<DeployError> for Failure {
    fn from(e: DeployError) -> Self {
        Failure::of(&e)
    }
}
