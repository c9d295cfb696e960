//! Why an invocation failed, and whether Lambda should try it again.

use autopilot_shared::aws::AwsCallError;
use autopilot_shared::events::EventError;
use autopilot_shared::invocation::{code, Coded, Failure};
use autopilot_shared::pager::PageError;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The event is malformed or of a kind snapshot does not handle; retrying will not help.
    #[error(transparent)]
    Event(#[from] EventError),
    /// An AWS call failed (and was paged); the event is retried, every step is safe to repeat.
    #[error(transparent)]
    Aws(#[from] AwsCallError),
    /// On-call could not be told; the event is retried so the page is not lost.
    #[error(transparent)]
    Page(#[from] PageError),
    /// Some steps failed while others were done.
    #[error("{} step(s) failed: {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Several(Vec<SnapshotError>),
}

impl Coded for SnapshotError {
    fn code(&self) -> &'static str {
        match self {
            SnapshotError::Event(e) => e.code(),
            SnapshotError::Aws(e) => e.code(),
            SnapshotError::Page(e) => e.code(),
            SnapshotError::Several(_) => code::PARTIAL_FAILURE,
        }
    }
}

impl From<SnapshotError> for Failure {
    fn from(e: SnapshotError) -> Self {
        Failure::of(&e)
    }
}
