//! Why an invocation failed, and whether Lambda should try it again.

use autopilot_shared::aws::AwsCallError;
use autopilot_shared::events::EventError;
use autopilot_shared::invocation::{code, Coded, Failure};
use autopilot_shared::pager::PageError;

/// Another invocation is acting on the same alarm transition; retried later.
pub const BUSY: &str = "autopilot.RemediationInProgress";

#[derive(Debug, thiserror::Error)]
pub enum RemediateError {
    /// The event is malformed or of a kind remediate does not handle; retrying will not help.
    #[error(transparent)]
    Event(#[from] EventError),
    /// An AWS call failed; the event is retried, and every step is safe to repeat.
    #[error(transparent)]
    Aws(#[from] AwsCallError),
    /// On-call could not be told; the event is retried so the page is not lost.
    #[error(transparent)]
    Page(#[from] PageError),
    /// Another invocation holds the claim on this transition; the retry finds it finished.
    #[error("{0}")]
    Busy(String),
    /// Some resources failed while others were handled (the sweep).
    #[error("{} resource(s) failed: {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Several(Vec<RemediateError>),
}

impl Coded for RemediateError {
    fn code(&self) -> &'static str {
        match self {
            RemediateError::Event(e) => e.code(),
            RemediateError::Aws(e) => e.code(),
            RemediateError::Page(e) => e.code(),
            RemediateError::Busy(_) => BUSY,
            RemediateError::Several(_) => code::PARTIAL_FAILURE,
        }
    }
}

impl From<RemediateError> for Failure {
    fn from(e: RemediateError) -> Self {
        Failure::of(&e)
    }
}
