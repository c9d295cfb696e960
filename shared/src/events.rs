//! EventBridge envelopes and the detail types aws_lambda_events lacks.
//!
//! Every function parses its input with [`envelope`] and then [`detail`], so a
//! malformed event always fails the same way: an [`EventError`] naming the
//! event kind and the JSON path of the bad field.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An EventBridge event whose detail is parsed later, once its kind is known.
pub type Envelope = EventBridgeEvent<Value>;

/// `(source, detail-type)` of the events autopilot handles.
pub const ECR_IMAGE_ACTION: (&str, &str) = ("aws.ecr", "ECR Image Action");
pub const ECS_DEPLOYMENT_STATE_CHANGE: (&str, &str) = ("aws.ecs", "ECS Deployment State Change");
pub const ECS_TASK_STATE_CHANGE: (&str, &str) = ("aws.ecs", "ECS Task State Change");
pub const SCHEDULED_EVENT: (&str, &str) = ("aws.events", "Scheduled Event");

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

fn parse<T: DeserializeOwned>(value: Value, what: &str) -> Result<T, EventError> {
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

/// `aws.ecr` / `ECR Image Action`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct EcrImageAction {
    /// SUCCESS or FAILURE.
    pub result: String,
    pub repository_name: String,
    /// `sha256:…`
    pub image_digest: String,
    /// PUSH or DELETE.
    pub action_type: String,
    /// Absent for an untagged push, e.g. one platform manifest of a multi-arch image.
    #[serde(default)]
    pub image_tag: Option<String>,
}

/// `aws.ecs` / `ECS Deployment State Change`. `resources[0]` is the service ARN.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EcsDeploymentStateChange {
    /// INFO or ERROR.
    pub event_type: String,
    /// SERVICE_DEPLOYMENT_IN_PROGRESS, SERVICE_DEPLOYMENT_COMPLETED or SERVICE_DEPLOYMENT_FAILED.
    pub event_name: String,
    /// `ecs-svc/…`
    pub deployment_id: String,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `aws.ecs` / `ECS Task State Change`, the fields autopilot reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EcsTaskStateChange {
    pub last_status: String,
    pub desired_status: String,
    pub task_definition_arn: String,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub stopped_reason: Option<String>,
    #[serde(default)]
    pub containers: Vec<EcsTaskContainer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EcsTaskContainer {
    pub name: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ecr(detail: Value) -> Value {
        json!({"version":"0","id":"1","detail-type":"ECR Image Action","source":"aws.ecr",
               "account":"123456789012","time":"2026-11-23T10:00:00Z","region":"us-east-1",
               "resources":[],"detail":detail})
    }

    #[test]
    fn parses_an_ecr_push() {
        let env = envelope(ecr(json!({"result":"SUCCESS","repository-name":"backend",
            "image-digest":"sha256:ab","action-type":"PUSH","image-tag":"v1"})))
        .unwrap();
        assert!(is(&env, ECR_IMAGE_ACTION));
        let d: EcrImageAction = detail(&env, ECR_IMAGE_ACTION).unwrap();
        assert_eq!(d.image_tag.as_deref(), Some("v1"));
    }

    #[test]
    fn untagged_push_has_no_tag() {
        let env = envelope(ecr(json!({"result":"SUCCESS","repository-name":"backend",
            "image-digest":"sha256:ab","action-type":"PUSH"})))
        .unwrap();
        let d: EcrImageAction = detail(&env, ECR_IMAGE_ACTION).unwrap();
        assert_eq!(d.image_tag, None);
    }

    #[test]
    fn malformed_detail_names_the_field() {
        let env = envelope(ecr(json!({"result":"SUCCESS","repository-name":7,
            "image-digest":"sha256:ab","action-type":"PUSH"})))
        .unwrap();
        let err = detail::<EcrImageAction>(&env, ECR_IMAGE_ACTION).unwrap_err();
        assert!(err.to_string().contains("repository-name"), "{err}");
        let env = envelope(ecr(json!({"result":"SUCCESS","action-type":"PUSH",
            "image-digest":"sha256:ab"})))
        .unwrap();
        let err = detail::<EcrImageAction>(&env, ECR_IMAGE_ACTION).unwrap_err();
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
