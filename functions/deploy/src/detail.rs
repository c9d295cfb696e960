//! The events deploy takes: their `(source, detail-type)` and the detail types
//! aws_lambda_events lacks. Parsed through `autopilot_shared::events`.

use serde::{Deserialize, Serialize};

pub const ECR_IMAGE_ACTION: (&str, &str) = ("aws.ecr", "ECR Image Action");
pub const ECS_DEPLOYMENT_STATE_CHANGE: (&str, &str) = ("aws.ecs", "ECS Deployment State Change");

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

#[cfg(test)]
mod tests {
    use super::*;
    use autopilot_shared::events::{detail, envelope, is, EventError};
    use serde_json::{json, Value};

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
    fn a_missing_field_is_named() {
        let env = envelope(ecr(json!({"result":"SUCCESS","action-type":"PUSH",
            "image-digest":"sha256:ab"})))
        .unwrap();
        let err = detail::<EcrImageAction>(&env, ECR_IMAGE_ACTION).unwrap_err();
        assert!(
            matches!(&err, EventError::Malformed { path, .. } if path == "repository-name"),
            "{err}"
        );
    }
}
