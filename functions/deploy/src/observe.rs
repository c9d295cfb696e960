//! Reads the AWS state the plans take. Read-only: nothing here changes AWS.
//!
//! A lookup that fails for one service is kept as that service's result, so one
//! bad service never blocks the others; lookups a page only shows (stopped tasks)
//! return their error for the page to name.

use crate::config::ServiceTarget;
use crate::error::DeployError;
use crate::image::{EcrImageId, ImageRef};
use crate::plan::adopt::{self, later_revision, Claim};
use crate::plan::push::{Found, Observed, Push, PushTimes};
use crate::plan::verdict::{self, Facts, Verdict};
use crate::taskdef::{container_image, family_of, EcsRecord, Record};
use autopilot_shared::aws::AwsCallError;
use aws_sdk_ecr::types::ImageIdentifier;
use aws_sdk_ecs::types::{
    Deployment, DesiredStatus, Service, Tag, Task, TaskDefinition, TaskDefinitionField,
};
use futures::stream::{self, StreamExt};
use std::collections::{BTreeMap, HashMap};

/// DescribeServices takes at most 10 services a call (ECS API reference).
const DESCRIBE_SERVICES_BATCH: usize = 10;
/// ListTasks returns at most 100 tasks a page, and DescribeTasks takes at most 100.
const STOPPED_TASKS_LISTED: i32 = 100;
/// Pages of a service's stopped tasks read for a FAILED page.
const STOPPED_TASK_PAGES: usize = 3;
/// Stopped tasks shown in a page, newest first.
const STOPPED_TASKS_SHOWN: usize = 10;
/// Service events shown in a page, newest first.
pub const SERVICE_EVENTS_SHOWN: usize = 8;
/// How many recent revisions a late verdict event searches for its deployment.
const RECENT_REVISIONS: usize = 5;

/// What DescribeServices said of one service: the service, None when it does not
/// exist, or the error that kept it from being read.
pub type ServiceLookup = Result<Option<Service>, AwsCallError>;

/// Every target's service, keyed by `cluster/service`, with at most `concurrency`
/// calls in flight. A failed batch is asked again service by service, so an
/// AccessDenied for one service (one ARN missing from the IAM policy) fails that
/// service only.
pub async fn services(
    ecs: &aws_sdk_ecs::Client,
    targets: &[&ServiceTarget],
    concurrency: usize,
) -> HashMap<String, ServiceLookup> {
    let mut by_cluster: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for t in targets {
        let names = by_cluster.entry(t.cluster.as_str()).or_default();
        if !names.contains(&t.service.as_str()) {
            names.push(&t.service);
        }
    }
    let batches: Vec<(&str, Vec<&str>)> = by_cluster
        .iter()
        .flat_map(|(cluster, names)| {
            names
                .chunks(DESCRIBE_SERVICES_BATCH)
                .map(move |b| (*cluster, b.to_vec()))
        })
        .collect();
    let results: Vec<Vec<(String, ServiceLookup)>> = stream::iter(batches)
        .map(|(cluster, names)| async move {
            match describe(ecs, cluster, &names).await {
                Ok(mut found) => names
                    .iter()
                    .map(|n| (format!("{cluster}/{n}"), found.remove(*n).transpose()))
                    .collect(),
                // IAM authorises each service of the call: ask again one by one, so
                // only the service that is not granted fails. Other errors (say
                // throttling after the SDK's retries) fail the whole batch.
                Err(e) if names.len() > 1 && e.message.contains("AccessDenied") => {
                    let mut one_by_one = Vec::new();
                    for n in names {
                        let result = describe(ecs, cluster, &[n])
                            .await
                            .and_then(|mut found| found.remove(n).transpose());
                        one_by_one.push((format!("{cluster}/{n}"), result));
                    }
                    one_by_one
                }
                Err(e) => names
                    .iter()
                    .map(|n| (format!("{cluster}/{n}"), Err(e.clone())))
                    .collect(),
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().flatten().collect()
}

/// One DescribeServices call: by name, each service that exists, or the failure
/// ECS reported for it other than MISSING. Missing services, and every service of
/// a missing cluster, are absent.
async fn describe(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    names: &[&str],
) -> Result<HashMap<String, Result<Service, AwsCallError>>, AwsCallError> {
    let out = match ecs
        .describe_services()
        .cluster(cluster)
        .set_services(Some(names.iter().map(|n| n.to_string()).collect()))
        .send()
        .await
    {
        Ok(out) => out,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_cluster_not_found_exception()) =>
        {
            return Ok(HashMap::new())
        }
        Err(e) => {
            return Err(AwsCallError::of(
                "DescribeServices",
                format!("{cluster}/{}", names.join(",")),
            )(e))
        }
    };
    let mut found: HashMap<String, Result<Service, AwsCallError>> = out
        .services()
        .iter()
        .filter_map(|s| Some((s.service_name()?.to_string(), Ok(s.clone()))))
        .collect();
    for failure in out.failures() {
        let reason = failure.reason().unwrap_or_default();
        if reason == "MISSING" {
            continue;
        }
        let name = failure
            .arn()
            .and_then(|a| a.rsplit('/').next())
            .unwrap_or_default()
            .to_string();
        let resource = format!("{cluster}/{name}");
        let detail = failure.detail().unwrap_or_default();
        found.insert(
            name,
            Err(AwsCallError::new(
                "DescribeServices",
                resource,
                format!("ECS reports {reason} {detail}").trim().to_string(),
            )),
        );
    }
    Ok(found)
}

/// A task definition and its tags.
pub type Described = (TaskDefinition, Vec<Tag>);

/// A task definition (by ARN, `family:revision`, or family for its latest ACTIVE
/// revision) with its tags. None when ECS does not know it (or, for a family, has
/// no ACTIVE revision of it).
pub async fn task_definition(
    ecs: &aws_sdk_ecs::Client,
    name: &str,
) -> Result<Option<Described>, AwsCallError> {
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
        Err(e) => Err(AwsCallError::of("DescribeTaskDefinition", name)(e)),
    }
}

/// The revision `arn` with its tags, and the family's latest ACTIVE revision when
/// that is another one. The family is described first ("the family for the
/// latest ACTIVE revision", DescribeTaskDefinition): usually it is `arn` itself,
/// and one call serves as both; only when it is not is `arn` described too.
pub async fn revision_and_latest(
    ecs: &aws_sdk_ecs::Client,
    arn: &str,
) -> Result<(Option<Described>, Option<Described>), AwsCallError> {
    let family = family_of(arn).unwrap_or(arn);
    let latest = task_definition(ecs, family).await?;
    if latest
        .as_ref()
        .is_some_and(|(td, _)| td.task_definition_arn() == Some(arn))
    {
        return Ok((latest, None));
    }
    Ok((task_definition(ecs, arn).await?, latest))
}

/// Everything a push's plan reads.
pub struct PushObservation<'t> {
    pub services: Vec<(&'t ServiceTarget, Observed)>,
    /// None: the pushed digest is no longer in the repository.
    pub times: Option<PushTimes>,
}

/// Reads every mapped service (at most `concurrency` at a time) and the push
/// times of the pushed image and of the images the services run.
pub async fn push<'t>(
    ecs: &aws_sdk_ecs::Client,
    ecr: &aws_sdk_ecr::Client,
    push: &Push,
    targets: &[&'t ServiceTarget],
    concurrency: usize,
) -> Result<PushObservation<'t>, DeployError> {
    let mut looked_up = services(ecs, targets, concurrency).await;
    let services: Vec<(&ServiceTarget, Observed)> = stream::iter(targets.iter().map(|t| {
        let lookup = looked_up.remove(&t.service_key()).unwrap_or(Ok(None));
        async move { (*t, service(ecs, t, lookup).await) }
    }))
    .buffered(concurrency)
    .collect()
    .await;
    let running = services
        .iter()
        .filter_map(|(t, o)| match o {
            Observed::Found(f) => t
                .containers
                .first()
                .and_then(|c| container_image(&f.current, c))
                .and_then(ImageRef::parse)
                .filter(|r| r.repository == push.repository)
                .and_then(|r| r.ecr_id()),
            _ => None,
        })
        .collect();
    let times = push_times(ecr, &push.account, &push.repository, &push.digest, running).await?;
    Ok(PushObservation { services, times })
}

/// One mapped service and the task definitions a push's plan needs.
async fn service(
    ecs: &aws_sdk_ecs::Client,
    target: &ServiceTarget,
    lookup: ServiceLookup,
) -> Observed {
    let key = target.service_key();
    let service = match lookup {
        Err(e) => return Observed::Failed(e),
        Ok(None) => return Observed::Unavailable(format!("service {key} not found")),
        Ok(Some(s)) => s,
    };
    if service.status() != Some("ACTIVE") {
        return Observed::Unavailable(format!(
            "service {key} is {}",
            service.status().unwrap_or("in an unknown state")
        ));
    }
    let Some(current_arn) = service.task_definition().map(str::to_string) else {
        return Observed::Unavailable(format!("service {key} has no task definition"));
    };
    // The family's latest ACTIVE revision is, as a rule, the one the service runs.
    let (current, latest) = match revision_and_latest(ecs, &current_arn).await {
        Ok(both) => both,
        Err(e) => return Observed::Failed(e),
    };
    let Some((current, current_tags)) = current else {
        return Observed::Unavailable(format!("task definition {current_arn} of {key} not found"));
    };
    Observed::Found(Box::new(Found {
        service,
        current,
        current_tags,
        latest,
    }))
}

/// When the pushed image and the images the services run were pushed, in one
/// DescribeImages call, at the precision ECR keeps. None when the pushed digest
/// is no longer in the repository.
pub async fn push_times(
    ecr: &aws_sdk_ecr::Client,
    registry_id: &str,
    repository: &str,
    digest: &str,
    running: Vec<EcrImageId>,
) -> Result<Option<PushTimes>, DeployError> {
    let pushed = EcrImageId::Digest(digest.to_string());
    let mut ids = vec![pushed.clone()];
    for id in running {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    // DescribeImages takes at most 100 image ids; the running ones are few.
    ids.truncate(100);
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
                    let Some(at) = detail.image_pushed_at().copied() else {
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

/// What a deployment event's verdict needs: the revision the deployment ran,
/// autopilot's record of it, and, for autopilot's failed deployment, why its
/// tasks stopped.
pub async fn verdict(
    ecs: &aws_sdk_ecs::Client,
    target: &ServiceTarget,
    verdict: Verdict,
    deployment_id: &str,
    reason: Option<String>,
) -> Result<verdict::Observed, DeployError> {
    let key = target.service_key();
    let service = match services(ecs, &[target], 1).await.remove(&key) {
        Some(Ok(Some(s))) => s,
        Some(Err(e)) => return Err(e.into()),
        _ => return Ok(verdict::Observed::ServiceGone),
    };
    let Some(ran) = deployment_revision(ecs, target, &service, deployment_id).await? else {
        return Ok(verdict::Observed::UnknownDeployment);
    };
    let Ran {
        revision_arn,
        record,
        claim,
        stopped,
    } = ran;
    let wanted = verdict::wants_stopped_tasks(
        verdict,
        &key,
        record.as_ref(),
        &revision_arn,
        deployment_id,
        claim.as_ref(),
    );
    let stopped_tasks = match stopped {
        _ if !wanted => Ok(Vec::new()),
        Some(stopped) => Ok(stopped_lines(&stopped)),
        None => stopped_tasks(ecs, target, deployment_id)
            .await
            .map_err(|e| {
                tracing::warn!(action = "lookup", resource = %key, error = %e, reason = "stopped tasks are shown in the page; the page goes without them", "stopped tasks unavailable");
                e.to_string()
            }),
    };
    Ok(verdict::Observed::Found(Box::new(Facts {
        deployment_id: deployment_id.to_string(),
        reason,
        revision_arn,
        record,
        claim,
        primary_revision: service
            .deployments()
            .iter()
            .find(|d| d.status() == Some("PRIMARY"))
            .and_then(|d| d.task_definition())
            .map(str::to_string),
        stopped_tasks,
        service_events: service_events(&service),
    })))
}

/// autopilot's record of the revision a deployment the service lists runs, and,
/// when the record names no deployment yet, ECS's facts to adopt this one or not.
pub async fn listed_deployment(
    ecs: &aws_sdk_ecs::Client,
    service: &Service,
    deployment: &Deployment,
    service_key: &str,
) -> Result<(Option<Record>, Option<Claim>), AwsCallError> {
    let arn = deployment.task_definition().unwrap_or_default();
    let (revision, latest) = revision_and_latest(ecs, arn).await?;
    let Some((td, tags)) = revision else {
        return Ok((None, None));
    };
    let record = Record::from_tags(&tags);
    let claim = record
        .as_ref()
        .filter(|r| r.deployment_id.is_none())
        .map(|_| {
            adopt::listed(
                &td,
                deployment,
                service.deployments(),
                later_revision(&td, latest.as_ref(), service_key),
            )
        });
    Ok((record, claim))
}

/// What is known of the revision a deployment ran.
struct Ran {
    revision_arn: String,
    /// autopilot's record of the revision; None: not autopilot's.
    record: Option<Record>,
    /// When the record names no deployment: ECS's facts to adopt this one or not.
    claim: Option<Claim>,
    /// The deployment's stopped tasks, when they were read to find the revision.
    stopped: Option<Stopped>,
}

/// The revision a deployment runs and autopilot's record of it.
///
/// The deployment is looked up on the service (one DescribeTaskDefinition of the
/// family when it runs the latest revision). One that ECS has already dropped (a
/// late or repeated event) is found by the deployment id recorded on recent
/// revisions, or, not recorded yet, by its stopped tasks: a service task's
/// `startedBy` is its deployment id, and its task definition is the revision.
async fn deployment_revision(
    ecs: &aws_sdk_ecs::Client,
    target: &ServiceTarget,
    service: &Service,
    deployment_id: &str,
) -> Result<Option<Ran>, AwsCallError> {
    let key = target.service_key();
    if let Some(deployment) = service
        .deployments()
        .iter()
        .find(|d| d.id() == Some(deployment_id))
    {
        let (record, claim) = listed_deployment(ecs, service, deployment, &key).await?;
        return Ok(Some(Ran {
            revision_arn: deployment.task_definition().unwrap_or_default().to_string(),
            record,
            claim,
            stopped: None,
        }));
    }
    let Some(family) = service.task_definition().and_then(family_of) else {
        return Ok(None);
    };
    let latest = task_definition(ecs, family).await?;
    let mut seen: Vec<Described> = Vec::new();
    let mut candidate = latest.clone();
    let mut revision = latest.as_ref().map_or(0, |(td, _)| td.revision());
    for searched in 1..=RECENT_REVISIONS {
        let Some((td, tags)) = candidate.take() else {
            break;
        };
        let record = Record::from_tags(&tags);
        if record.as_ref().is_some_and(|r| r.started(deployment_id)) {
            return Ok(Some(Ran {
                revision_arn: td.task_definition_arn().unwrap_or_default().to_string(),
                record,
                claim: None,
                stopped: None,
            }));
        }
        seen.push((td, tags));
        revision -= 1;
        if revision < 1 || searched == RECENT_REVISIONS {
            break;
        }
        candidate = task_definition(ecs, &format!("{family}:{revision}")).await?;
    }
    let stopped = stopped_of(ecs, target, deployment_id).await?;
    let Some(arn) = stopped
        .tasks
        .iter()
        .find_map(|t| t.task_definition_arn())
        .map(str::to_string)
    else {
        return Ok(None);
    };
    let revision = match seen
        .into_iter()
        .find(|(td, _)| td.task_definition_arn() == Some(arn.as_str()))
    {
        Some(described) => Some(described),
        None => task_definition(ecs, &arn).await?,
    };
    let record = revision
        .as_ref()
        .and_then(|(_, tags)| Record::from_tags(tags));
    let first_task = stopped
        .tasks
        .iter()
        .filter_map(|t| t.created_at())
        .min()
        .copied();
    let claim = revision
        .as_ref()
        .filter(|_| record.as_ref().is_some_and(|r| r.deployment_id.is_none()))
        .map(|(td, _)| {
            adopt::unlisted(
                td,
                deployment_id,
                first_task,
                later_revision(td, latest.as_ref(), &key),
            )
        });
    Ok(Some(Ran {
        revision_arn: arn,
        record,
        claim,
        stopped: Some(stopped),
    }))
}

/// The stopped tasks a deployment started, newest first, as far as they were read.
pub struct Stopped {
    pub tasks: Vec<Task>,
    /// How many of the service's stopped tasks were read.
    pub read: usize,
    /// Whether the service has more stopped tasks than were read.
    pub more: bool,
}

/// The stopped tasks the deployment started.
///
/// ListTasks refuses `startedBy` together with any other filter ("When you specify
/// startedBy as the filter, it must be the only filter that you use", ECS API
/// reference), and `startedBy` alone lists RUNNING tasks only (the default
/// `desiredStatus`). So the service's STOPPED tasks are listed, and those the
/// deployment started (a service task's `startedBy` is its deployment id) are
/// kept here.
pub async fn stopped_of(
    ecs: &aws_sdk_ecs::Client,
    target: &ServiceTarget,
    deployment_id: &str,
) -> Result<Stopped, AwsCallError> {
    let key = target.service_key();
    // The service's stopped tasks come in no set order, 100 a page: read a few
    // pages, and say so in the page when there were more.
    let mut arns = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..STOPPED_TASK_PAGES {
        let list = ecs
            .list_tasks()
            .cluster(&target.cluster)
            .service_name(&target.service)
            .desired_status(DesiredStatus::Stopped)
            .max_results(STOPPED_TASKS_LISTED)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(AwsCallError::of("ListTasks", &key))?;
        arns.extend(list.task_arns().iter().cloned());
        next = list.next_token().map(str::to_string);
        if next.is_none() {
            break;
        }
    }
    let mut described = Vec::new();
    for chunk in arns.chunks(STOPPED_TASKS_LISTED as usize) {
        let out = ecs
            .describe_tasks()
            .cluster(&target.cluster)
            .set_tasks(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(AwsCallError::of("DescribeTasks", &key))?;
        described.extend(out.tasks().iter().cloned());
    }
    let mut tasks: Vec<Task> = described
        .into_iter()
        .filter(|t| t.started_by() == Some(deployment_id))
        .collect();
    tasks.sort_by_key(|t| std::cmp::Reverse(t.stopped_at().copied()));
    Ok(Stopped {
        tasks,
        read: arns.len(),
        more: next.is_some(),
    })
}

/// Why the tasks a deployment started have stopped, newest first, e.g.
/// `task 1a2b: Essential container in task exited; app exit 1 (OutOfMemoryError)`.
pub async fn stopped_tasks(
    ecs: &aws_sdk_ecs::Client,
    target: &ServiceTarget,
    deployment_id: &str,
) -> Result<Vec<String>, AwsCallError> {
    Ok(stopped_lines(
        &stopped_of(ecs, target, deployment_id).await?,
    ))
}

/// The lines a FAILED page shows of the stopped tasks.
pub fn stopped_lines(stopped: &Stopped) -> Vec<String> {
    let mut lines: Vec<String> = stopped
        .tasks
        .iter()
        .take(STOPPED_TASKS_SHOWN)
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
        .collect();
    if stopped.more {
        lines.push(format!(
            "(the service has more than {} stopped tasks; only those were read)",
            stopped.read
        ));
    }
    lines
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
