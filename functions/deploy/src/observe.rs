//! Reads the AWS state the plans take. Read-only: nothing here changes AWS.

use crate::error::DeployError;
use crate::image::EcrImageId;
use crate::plan::PushTimes;
use autopilot_shared::aws::AwsCallError;
use aws_sdk_ecr::types::ImageIdentifier;
use aws_sdk_ecs::types::{DesiredStatus, Service, Tag, TaskDefinition, TaskDefinitionField};
use std::collections::HashMap;

/// DescribeServices takes at most 10 services a call.
const DESCRIBE_SERVICES_BATCH: usize = 10;
/// DescribeTasks takes at most 100 tasks a call; a page never needs that many.
const STOPPED_TASKS_SHOWN: i32 = 10;
/// Service events shown in a page, newest first.
pub const SERVICE_EVENTS_SHOWN: usize = 8;

/// The named services of one cluster that exist, by name. Missing ones are absent.
pub async fn services(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    names: &[String],
) -> Result<HashMap<String, Service>, DeployError> {
    let mut found = HashMap::new();
    for batch in names.chunks(DESCRIBE_SERVICES_BATCH) {
        let out = match ecs
            .describe_services()
            .cluster(cluster)
            .set_services(Some(batch.to_vec()))
            .send()
            .await
        {
            Ok(out) => out,
            // A missing cluster is an unknown resource, reported per service by the caller.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_cluster_not_found_exception()) =>
            {
                continue
            }
            Err(e) => return Err(AwsCallError::of("DescribeServices", cluster)(e).into()),
        };
        for s in out.services() {
            if let Some(name) = s.service_name() {
                found.insert(name.to_string(), s.clone());
            }
        }
    }
    Ok(found)
}

/// A task definition (by ARN, `family:revision`, or family for its latest ACTIVE
/// revision) with its tags. None when ECS does not know it.
pub async fn task_definition(
    ecs: &aws_sdk_ecs::Client,
    name: &str,
) -> Result<Option<(TaskDefinition, Vec<Tag>)>, DeployError> {
    match ecs
        .describe_task_definition()
        .task_definition(name)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .task_definition()
            .cloned()
            .map(|td| (td, out.tags().to_vec()))),
        // ECS answers ClientException for an unknown task definition.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_client_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(AwsCallError::of("DescribeTaskDefinition", name)(e).into()),
    }
}

/// When the pushed image and the images the services run were pushed, in one
/// DescribeImages call. Returns None when the pushed digest is no longer in the repository.
pub async fn push_times(
    ecr: &aws_sdk_ecr::Client,
    registry_id: &str,
    repository: &str,
    digest: &str,
    running: Vec<EcrImageId>,
) -> Result<Option<PushTimes>, DeployError> {
    let pushed = EcrImageId::Digest(digest.to_string());
    let mut ids = vec![pushed.clone()];
    ids.extend(running.into_iter().filter(|i| *i != pushed));
    loop {
        let identifiers = ids
            .iter()
            .map(|id| match id {
                EcrImageId::Digest(d) => ImageIdentifier::builder().image_digest(d).build(),
                EcrImageId::Tag(t) => ImageIdentifier::builder().image_tag(t).build(),
            })
            .collect();
        let result = ecr
            .describe_images()
            .set_registry_id((!registry_id.is_empty()).then(|| registry_id.to_string()))
            .repository_name(repository)
            .set_image_ids(Some(identifiers))
            .send()
            .await;
        match result {
            Ok(out) => {
                let mut times = HashMap::new();
                for detail in out.image_details() {
                    let Some(at) = detail.image_pushed_at().map(|t| t.secs()) else {
                        continue;
                    };
                    if let Some(d) = detail.image_digest() {
                        times.insert(EcrImageId::Digest(d.to_string()), at);
                    }
                    for t in detail.image_tags() {
                        times.insert(EcrImageId::Tag(t.clone()), at);
                    }
                }
                if !times.contains_key(&pushed) {
                    return Ok(None);
                }
                return Ok(Some(PushTimes { times }));
            }
            // One unknown id fails the whole call: a running image may have been
            // expired by a lifecycle policy. Ask again for the pushed image alone.
            Err(e)
                if ids.len() > 1
                    && e.as_service_error()
                        .is_some_and(|s| s.is_image_not_found_exception()) =>
            {
                ids.truncate(1);
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_image_not_found_exception()) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(AwsCallError::of("DescribeImages", repository)(e).into()),
        }
    }
}

/// Why the tasks a deployment started have stopped, newest first, e.g.
/// `Essential container in task exited: app exit 1 (OutOfMemoryError)`.
pub async fn stopped_tasks(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    deployment_id: &str,
) -> Result<Vec<String>, DeployError> {
    let list = ecs
        .list_tasks()
        .cluster(cluster)
        .started_by(deployment_id)
        .desired_status(DesiredStatus::Stopped)
        .max_results(STOPPED_TASKS_SHOWN)
        .send()
        .await
        .map_err(AwsCallError::of("ListTasks", deployment_id))?;
    if list.task_arns().is_empty() {
        return Ok(Vec::new());
    }
    let out = ecs
        .describe_tasks()
        .cluster(cluster)
        .set_tasks(Some(list.task_arns().to_vec()))
        .send()
        .await
        .map_err(AwsCallError::of("DescribeTasks", deployment_id))?;
    Ok(out
        .tasks()
        .iter()
        .map(|t| {
            let id = t
                .task_arn()
                .and_then(|a| a.rsplit('/').next())
                .unwrap_or("?");
            let containers: Vec<String> = t
                .containers()
                .iter()
                .filter(|c| c.exit_code().is_some_and(|x| x != 0) || c.reason().is_some())
                .map(|c| {
                    let mut s = format!(
                        "{} exit {}",
                        c.name().unwrap_or("?"),
                        c.exit_code().map_or("-".into(), |x| x.to_string())
                    );
                    if let Some(r) = c.reason() {
                        s.push_str(&format!(" ({r})"));
                    }
                    s
                })
                .collect();
            let mut line = format!(
                "task {id}: {}",
                t.stopped_reason().unwrap_or("(no reason given)")
            );
            if !containers.is_empty() {
                line.push_str(&format!("; {}", containers.join(", ")));
            }
            line
        })
        .collect())
}

/// The newest service events, as on-call would read them in the console.
pub fn service_events(service: &Service) -> Vec<String> {
    service
        .events()
        .iter()
        .take(SERVICE_EVENTS_SHOWN)
        .filter_map(|e| {
            let when = e.created_at().map(|t| t.to_string()).unwrap_or_default();
            e.message()
                .map(|m| format!("{when} {m}").trim().to_string())
        })
        .collect()
}
