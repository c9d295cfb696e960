//! Events as AWS sends them: EventBridge envelopes for ECR and ECS, and the
//! scheduled-task input each schedule in `template.yaml` configures.

use crate::{ACCOUNT, REGION};
use serde_json::{json, Value};

/// A successful `ECR Image Action` push of `repository:tag` with its own event id and time:
/// another push of the same digest is another event, a redelivery is the same one.
pub fn push_event_at(repository: &str, tag: &str, digest: &str, id: &str, time: &str) -> Value {
    let mut event = ecr_event(repository, Some(tag), digest, "PUSH", "SUCCESS");
    event["id"] = json!(id);
    event["time"] = json!(time);
    event
}

/// An EventBridge `ECR Image Action` event.
pub fn ecr_event(
    repository: &str,
    tag: Option<&str>,
    digest: &str,
    action: &str,
    result: &str,
) -> Value {
    let mut detail = json!({
        "result": result,
        "repository-name": repository,
        "image-digest": digest,
        "action-type": action,
    });
    if let Some(tag) = tag {
        detail["image-tag"] = json!(tag);
    }
    json!({
        "version": "0",
        "id": format!("ecr-{repository}-{digest}"),
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": ACCOUNT,
        "time": "2026-11-23T10:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": detail,
    })
}

/// An EventBridge `ECS Deployment State Change` event.
pub fn deployment_event(
    service_arn: &str,
    deployment_id: &str,
    event_name: &str,
    reason: &str,
) -> Value {
    json!({
        "version": "0",
        "id": format!("ecs-{deployment_id}-{event_name}"),
        "detail-type": "ECS Deployment State Change",
        "source": "aws.ecs",
        "account": ACCOUNT,
        "time": "2026-11-23T10:05:00Z",
        "region": REGION,
        "resources": [service_arn],
        "detail": {
            "eventType": if event_name.ends_with("FAILED") { "ERROR" } else { "INFO" },
            "eventName": event_name,
            "deploymentId": deployment_id,
            "updatedAt": "2026-11-23T10:05:00.000Z",
            "reason": reason,
        }
    })
}

/// What the deploy sweep's schedule in `template.yaml` sends at `time` (RFC 3339).
pub fn sweep_event(time: &str) -> Value {
    crate::template::scheduled_event("DeployFunction", "StaleDeploymentSweep", time)
}
