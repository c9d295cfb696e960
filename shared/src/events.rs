//! Parsing events: the EventBridge envelope, its detail, and any other payload.
//!
//! Every function parses its input through [`parse`] (EventBridge events with
//! [`envelope`] and then [`detail`]), so a malformed event always fails the same
//! way: an [`EventError`] naming the event kind and the JSON path of the bad field.
//! Detail types live with the function that handles them.

use crate::invocation::{code, Coded};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An EventBridge event whose detail is parsed later, once its kind is known.
pub type Envelope = EventBridgeEvent<Value>;

/// `(source, detail-type)` of what EventBridge Scheduler sends when a schedule in
/// `template.yaml` runs one of autopilot's periodic tasks. Scheduler has no
/// envelope of its own, so each schedule's `Input` is this envelope, filled with
/// Scheduler's context attributes, and `detail` is a [`ScheduledTask`].
pub const SCHEDULED_TASK: (&str, &str) = ("autopilot.scheduler", "Scheduled Task");

/// The detail of a [`SCHEDULED_TASK`] event: which periodic task to run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ScheduledTask {
    pub task: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("malformed {what}: {path}: {message}")]
    Malformed {
        what: String,
        path: String,
        message: String,
    },
    #[error("unsupported event: source `{event_source}`, detail-type `{detail_type}`; this function handles {expected}")]
    Unsupported {
        event_source: String,
        detail_type: String,
        expected: String,
    },
}

impl Coded for EventError {
    fn code(&self) -> &'static str {
        match self {
            EventError::Malformed { .. } => code::MALFORMED_EVENT,
            EventError::Unsupported { .. } => code::UNSUPPORTED_EVENT,
        }
    }
}

/// Parses any event payload, naming `what` and the JSON path of a bad field in the error.
pub fn parse<T: DeserializeOwned>(value: Value, what: &str) -> Result<T, EventError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let (path, message) = error_path(&e);
        EventError::Malformed {
            what: what.to_string(),
            path: if path.is_empty() {
                "(top level)".to_string()
            } else {
                path
            },
            message,
        }
    })
}

/// The JSON path of a deserialisation error, down to the field: serde reports a
/// missing field at its parent, so the field's name is taken from the message.
/// Empty for the top level.
pub(crate) fn error_path(e: &serde_path_to_error::Error<serde_json::Error>) -> (String, String) {
    let message = e.inner().to_string();
    let mut path = match e.path().to_string().as_str() {
        "." => String::new(),
        p => p.to_string(),
    };
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(field);
    }
    (path, message)
}

/// Parses the EventBridge envelope.
pub fn envelope(value: Value) -> Result<Envelope, EventError> {
    parse(value, "EventBridge event")
}

/// Whether the envelope is of the given `(source, detail-type)`.
pub fn is(envelope: &Envelope, kind: (&str, &str)) -> bool {
    envelope.source == kind.0 && envelope.detail_type == kind.1
}

/// Parses the detail of an envelope already known to be of kind `kind`.
pub fn detail<T: DeserializeOwned>(
    envelope: &Envelope,
    kind: (&str, &str),
) -> Result<T, EventError> {
    parse(envelope.detail.clone(), &format!("{} detail", kind.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    #[allow(dead_code)]
    struct Detail {
        repository_name: String,
    }

    fn event(detail: Value) -> Value {
        json!({"version":"0","id":"1","detail-type":"Scheduled Task","source":"autopilot.scheduler",
               "account":"123456789012","time":"2026-11-23T10:00:00Z","region":"us-east-1",
               "resources":[],"detail":detail})
    }

    #[test]
    fn parses_a_scheduled_task() {
        let env = envelope(event(json!({"task": "deploy-sweep"}))).unwrap();
        assert!(is(&env, SCHEDULED_TASK));
        let d: ScheduledTask = detail(&env, SCHEDULED_TASK).unwrap();
        assert_eq!(d.task, "deploy-sweep");
    }

    #[test]
    fn malformed_detail_names_the_field() {
        let env = envelope(event(json!({"repository-name": 7}))).unwrap();
        let err = detail::<Detail>(&env, SCHEDULED_TASK).unwrap_err();
        assert!(err.to_string().contains("repository-name"), "{err}");
        let env = envelope(event(json!({}))).unwrap();
        let err = detail::<Detail>(&env, SCHEDULED_TASK).unwrap_err();
        assert!(
            matches!(&err, EventError::Malformed { path, .. } if path == "repository-name"),
            "{err}"
        );
    }

    #[test]
    fn malformed_envelope_names_the_field() {
        let err = envelope(json!({"source":"aws.ecr","detail":{}})).unwrap_err();
        assert!(err.to_string().contains("detail-type"), "{err}");
        let err = envelope(json!("just a string")).unwrap_err();
        assert!(err.to_string().contains("EventBridge event"), "{err}");
    }
}
