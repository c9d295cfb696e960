//! What a push means: whether deploy acts on the event at all, and then, for
//! each mapped service, deploy, announce, skip, refuse or retry, with the reason.

use super::adopt::{self, later_revision};
use super::{revision_name, show_time};
use crate::config::{Config, ServiceTarget};
use crate::detail::EcrImageAction;
use crate::image::{ecr_registry, pinned, EcrImageId, ImageRef};
use crate::taskdef::{container_image, EcsRecord, NewRevision, Record, LATER_TAGS, TAG_LIMIT};
use autopilot_shared::aws::AwsCallError;
use autopilot_shared::events::Envelope;
use aws_sdk_ecs::types::{
    DeploymentCircuitBreaker, DeploymentConfiguration, Service, Tag, TaskDefinition,
};
use chrono::{DateTime, Utc};
use std::cmp::Ordering;
use std::collections::HashMap;

/// A successful image push, as deploy needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub account: String,
    pub region: String,
    /// The EventBridge event's `id`: the same for every redelivery of one push.
    pub event_id: Option<String>,
    /// The EventBridge event's `time`.
    pub event_time: Option<DateTime<Utc>>,
}

/// Whether deploy acts on this push, and for which services; otherwise the reason it is ignored.
pub fn accept<'c>(
    envelope: &Envelope,
    detail: &EcrImageAction,
    config: &'c Config,
) -> Result<(Push, Vec<&'c ServiceTarget>), String> {
    let repo = &detail.repository_name;
    if detail.action_type != "PUSH" {
        return Err(format!("{} of {repo} is not a push", detail.action_type));
    }
    if detail.result != "SUCCESS" {
        return Err(format!(
            "push to {repo} did not succeed ({})",
            detail.result
        ));
    }
    if !config.maps_repository(repo) {
        return Err(format!("repository {repo} is not mapped to any service"));
    }
    let Some(tag) = detail.image_tag.clone().filter(|t| !t.is_empty()) else {
        return Err(format!(
            "untagged push of {} to {repo} (e.g. one platform of a multi-arch image); deploys follow tags",
            detail.image_digest
        ));
    };
    let targets = config.targets_for(repo, &tag);
    if targets.is_empty() {
        return Err(format!(
            "tag {tag} matches no tag pattern mapped for {repo}"
        ));
    }
    Ok((
        Push {
            repository: repo.clone(),
            tag,
            digest: detail.image_digest.clone(),
            account: envelope.account.clone().unwrap_or_default(),
            region: envelope.region.clone().unwrap_or_default(),
            event_id: envelope.id.clone().filter(|i| !i.is_empty()),
            event_time: envelope.time,
        },
        targets,
    ))
}

/// What was read about one mapped service.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// Reading the service failed (throttling, AccessDenied): it is retried.
    Failed(AwsCallError),
    /// The service cannot be deployed to; the text says why (missing, draining, …).
    Unavailable(String),
    Found(Box<Found>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub service: Service,
    /// The revision the service points at, and its tags.
    pub current: TaskDefinition,
    pub current_tags: Vec<Tag>,
    /// The newest ACTIVE revision of the family, when it is not `current`.
    pub latest: Option<(TaskDefinition, Vec<Tag>)>,
}

/// When images were pushed, from ECR, at the precision ECR keeps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushTimes {
    pub times: HashMap<EcrImageId, aws_smithy_types::DateTime>,
}

impl PushTimes {
    pub fn get(&self, id: &EcrImageId) -> Option<aws_smithy_types::DateTime> {
        self.times.get(id).copied()
    }
}

/// The decision for one service.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Point the service at a new revision.
    Deploy {
        revision: Revision,
        deployment_configuration: Box<DeploymentConfiguration>,
        record: Record,
        image: String,
        reason: String,
    },
    /// A redelivery of the push finds the service running our revision with no
    /// deployment recorded: the page may not have gone (a crash after
    /// UpdateService). Tell on-call (again) and record the deployment.
    Announce {
        revision_arn: String,
        deployment_id: String,
        record: Record,
        reason: String,
    },
    /// Nothing to do.
    Skip { reason: String },
    /// Configured, but it cannot be deployed; on-call is warned.
    Refuse { reason: String },
    /// The service could not be read: on-call is warned and the invocation fails,
    /// so the retry deploys it (and finds the other services already done).
    Retry { reason: String, error: AwsCallError },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Revision {
    Register(Box<NewRevision>),
    /// A revision registered by an earlier, interrupted attempt for the same push
    /// (or another push event of the same image), which never reached UpdateService.
    Reuse(String),
}

impl Decision {
    pub fn action(&self) -> &'static str {
        match self {
            Decision::Deploy { .. } => "deploy",
            Decision::Announce { .. } => "announce",
            Decision::Skip { .. } => "skip",
            Decision::Refuse { .. } => "refuse",
            Decision::Retry { .. } => "retry",
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::Deploy { reason, .. }
            | Decision::Announce { reason, .. }
            | Decision::Skip { reason }
            | Decision::Refuse { reason }
            | Decision::Retry { reason, .. } => reason,
        }
    }
}

fn arn_of(td: &TaskDefinition) -> &str {
    td.task_definition_arn().unwrap_or_default()
}

/// Decides what a push means for one mapped service.
pub fn plan_service(
    push: &Push,
    target: &ServiceTarget,
    observed: &Observed,
    times: &PushTimes,
) -> Decision {
    let found = match observed {
        Observed::Failed(error) => {
            return Decision::Retry {
                reason: format!(
                    "the service could not be read, so it was not deployed yet: {error}"
                ),
                error: error.clone(),
            }
        }
        Observed::Unavailable(why) => {
            return Decision::Refuse {
                reason: why.clone(),
            }
        }
        Observed::Found(f) => f,
    };
    let key = target.service_key();
    let current_arn = arn_of(&found.current).to_string();
    if let Some(kind) = found
        .service
        .deployment_controller()
        .map(|c| c.r#type().as_str())
        .filter(|k| *k != "ECS")
    {
        return Decision::Refuse {
            reason: format!("the service uses the {kind} deployment controller; autopilot deploys ECS-controlled services only"),
        };
    }
    let missing: Vec<&str> = target
        .containers
        .iter()
        .filter(|c| container_image(&found.current, c).is_none())
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Decision::Refuse {
            reason: format!(
                "container `{}` is not in task definition {}",
                missing.join("`, `"),
                revision_name(&current_arn)
            ),
        };
    }
    // The first mapped container stands for the service: its image decides the
    // registry and the push ordering.
    let Some(current_image) = container_image(&found.current, &target.containers[0]) else {
        return Decision::Refuse {
            reason: format!("service {key} maps no container"),
        };
    };
    let current_ref = ImageRef::parse(current_image).filter(|r| r.repository == push.repository);
    let registry = current_ref
        .as_ref()
        .and_then(|r| r.registry.clone())
        .unwrap_or_else(|| ecr_registry(&push.account, &push.region));
    let image = pinned(&registry, &push.repository, &push.digest);
    let pinned_everywhere = |td: &TaskDefinition| {
        target
            .containers
            .iter()
            .all(|c| container_image(td, c) == Some(image.as_str()))
    };
    let runs_digest = |td: &TaskDefinition| {
        target.containers.iter().all(|c| {
            container_image(td, c)
                .and_then(ImageRef::parse)
                .is_some_and(|r| {
                    r.repository == push.repository
                        && r.digest.as_deref() == Some(push.digest.as_str())
                })
        })
    };
    if runs_digest(&found.current) {
        return already_running(push, target, found, &current_arn);
    }

    let running_record = Record::from_tags(&found.current_tags);
    if let Some(reason) = older_than_running(
        push,
        current_ref.as_ref(),
        current_image,
        running_record.as_ref(),
        times,
    ) {
        return Decision::Skip { reason };
    }

    let record = Record {
        repository: push.repository.clone(),
        image_tag: push.tag.clone(),
        digest: push.digest.clone(),
        previous: current_arn.clone(),
        service: key.clone(),
        push_event: push.event_id.clone(),
        push_event_time: push.event_time,
        deployment_id: None,
        verdict: None,
        timeout_warned: None,
    };
    let deployment_configuration = Box::new(with_circuit_breaker(
        found.service.deployment_configuration(),
        target,
    ));

    // The family's newest revision is autopilot's last attempt for this service
    // and repository (another repository may feed other containers of it).
    if let Some((latest, last)) = found.latest.as_ref().and_then(|(td, tags)| {
        Record::from_tags(tags)
            .filter(|r| r.service == key && r.repository == push.repository)
            .map(|r| (td, r))
    }) {
        let same_push = push.event_id.is_some()
            && last.push_event == push.event_id
            && last.digest == push.digest;
        if same_push {
            let arn = arn_of(latest).to_string();
            match &last.deployment_id {
                None => match interrupted(found, latest, &key) {
                    Interrupted::BeforeUpdate if pinned_everywhere(latest) => {
                        return Decision::Deploy {
                            reason: format!(
                                "{} was pushed; reusing {} registered for it by an interrupted attempt",
                                label(push),
                                revision_name(&arn)
                            ),
                            revision: Revision::Reuse(arn),
                            deployment_configuration,
                            record,
                            image,
                        };
                    }
                    Interrupted::BeforeUpdate => {}
                    Interrupted::Deployed(deployment) => {
                        return Decision::Skip {
                            reason: format!(
                                "this push of {} was already deployed as {} in deployment {deployment} (no verdict recorded yet); {key} has since moved to {}, so the same push is not deployed again. Push the image again to retry",
                                push.digest,
                                revision_name(&arn),
                                revision_name(&current_arn)
                            ),
                        };
                    }
                    Interrupted::Unknown(why) => {
                        return Decision::Refuse {
                            reason: format!(
                                "{} was registered for this push of {}, but {why}: it may have been deployed and rolled back, so it is not deployed again. Push the image again to deploy it",
                                revision_name(&arn),
                                push.digest
                            ),
                        };
                    }
                },
                Some(deployment) => {
                    let verdict = last
                        .verdict
                        .as_deref()
                        .and_then(|v| v.split_once(' '))
                        .filter(|(_, id)| id == deployment)
                        .map_or("no verdict yet".to_string(), |(v, _)| v.to_lowercase());
                    return Decision::Skip {
                        reason: format!(
                            "this push of {} was already deployed as {} in deployment {deployment} ({verdict}); {key} has since moved to {}, so the same push is not deployed again. Push the image again to retry",
                            push.digest,
                            revision_name(&arn),
                            revision_name(&current_arn)
                        ),
                    };
                }
            }
        } else if last.digest == push.digest
            && last.deployment_id.is_none()
            && last.previous == current_arn
            && pinned_everywhere(latest)
            && matches!(interrupted(found, latest, &key), Interrupted::BeforeUpdate)
        {
            // Another push event of the same image (the push repeated, or another
            // tag of it) after an earlier event's attempt registered a revision for
            // it and stopped before UpdateService (Lambda retries that attempt
            // later): that revision is this image on what the service runs now, and
            // nothing was deployed since, so it is deployed instead of registering
            // a second revision for one image. Once a deployment of it came (it
            // failed and rolled back, say), a new push registers a new revision.
            let arn = arn_of(latest).to_string();
            return Decision::Deploy {
                reason: format!(
                    "{} was pushed; reusing {} registered for the same image by an interrupted attempt of push event {}",
                    label(push),
                    revision_name(&arn),
                    last.push_event.as_deref().unwrap_or("(none)")
                ),
                revision: Revision::Reuse(arn),
                deployment_configuration,
                record,
                image,
            };
        } else if let (Some(theirs), Some(ours)) = (last.push_event_time, push.event_time) {
            let later_image = pinned(&registry, &last.repository, &last.digest);
            if theirs > ours
                && last.deployment_id.is_none()
                && last.previous == current_arn
                && target
                    .containers
                    .iter()
                    .all(|c| container_image(latest, c) == Some(later_image.as_str()))
                && matches!(interrupted(found, latest, &key), Interrupted::BeforeUpdate)
            {
                // The later push is not handled yet: its attempt registered this
                // revision and stopped before UpdateService, and Lambda retries it.
                // Skipping this push as stale would leave the service on an image
                // older than both until that retry succeeds, for ever if it never
                // does. The later push's own revision goes out now (its image on what
                // the service runs, nothing deployed since): its retry finds it running.
                let arn = arn_of(latest).to_string();
                return Decision::Deploy {
                    reason: format!(
                        "{} was pushed; a later push ({} at {}) registered {} and stopped before UpdateService: deploying that, the newest image",
                        label(push),
                        last.image_label(),
                        theirs.to_rfc3339(),
                        revision_name(&arn)
                    ),
                    revision: Revision::Reuse(arn),
                    deployment_configuration,
                    record: last,
                    image: later_image,
                };
            }
            if theirs > ours {
                return Decision::Skip {
                    reason: format!(
                        "a later push ({} at {}) was already handled for {key}; this push ({ours}) is stale and does not deploy",
                        last.image_label(),
                        theirs.to_rfc3339()
                    ),
                };
            }
        }
    }

    let new = NewRevision {
        source: found.current.clone(),
        source_tags: found.current_tags.clone(),
        containers: target.containers.clone(),
        image: image.clone(),
        record: record.clone(),
    };
    let tag_count = new.tags().len() + LATER_TAGS;
    if tag_count > TAG_LIMIT {
        return Decision::Refuse {
            reason: format!(
                "task definition {} has too many tags: autopilot needs {tag_count} of the {TAG_LIMIT} ECS allows",
                revision_name(&current_arn)
            ),
        };
    }
    Decision::Deploy {
        reason: format!("{} was pushed; {key} runs {current_image}", label(push)),
        revision: Revision::Register(Box::new(new)),
        deployment_configuration,
        record,
        image,
    }
}

/// Why this push is older than the image the service runs, if it is: ECR's push
/// times at full precision, and on a tie the push events' own times.
fn older_than_running(
    push: &Push,
    running: Option<&ImageRef>,
    running_image: &str,
    running_record: Option<&Record>,
    times: &PushTimes,
) -> Option<String> {
    let running_id = running.and_then(ImageRef::ecr_id)?;
    let running_at = times.get(&running_id)?;
    let new_at = times.get(&EcrImageId::Digest(push.digest.clone()))?;
    let (running_shown, new_shown) = (super::show_time(&running_at), super::show_time(&new_at));
    match running_at.cmp(&new_at) {
        Ordering::Greater => Some(format!(
            "older push: the running image {running_image} was pushed at {running_shown}, after this one ({new_shown}); not rolling back"
        )),
        Ordering::Less => None,
        Ordering::Equal => {
            let theirs = running_record
                .filter(|r| running.and_then(|i| i.digest.as_deref()) == Some(r.digest.as_str()))
                .and_then(|r| r.push_event_time)?;
            let ours = push.event_time?;
            (theirs > ours).then(|| format!(
                "older push: the running image {running_image} was pushed at the same instant ({running_shown}), and its push event is later ({} after {}); not rolling back",
                theirs.to_rfc3339(),
                ours.to_rfc3339()
            ))
        }
    }
}

/// What became of the revision an earlier attempt of this push registered, when
/// its record names no deployment (a push records none; the verdict does).
enum Interrupted {
    /// The service was not deployed since it was registered: UpdateService never ran.
    BeforeUpdate,
    /// The service lists a deployment of it, and has moved on (a rollback).
    Deployed(String),
    /// The service was deployed since, and lists no deployment of it: why.
    Unknown(String),
}

fn interrupted(found: &Found, latest: &TaskDefinition, key: &str) -> Interrupted {
    let arn = arn_of(latest);
    let deployments = found.service.deployments();
    if let Some(d) = deployments
        .iter()
        .find(|d| d.task_definition() == Some(arn))
    {
        return Interrupted::Deployed(d.id().unwrap_or_default().to_string());
    }
    // The PRIMARY deployment is the newest: one created before the revision was
    // registered means no deployment, of this revision or any other, came since.
    let primary = deployments.iter().find(|d| d.status() == Some("PRIMARY"));
    match (
        primary.and_then(|d| d.created_at()),
        latest.registered_at(),
    ) {
        (Some(created), Some(registered)) if created < registered => Interrupted::BeforeUpdate,
        (Some(created), Some(registered)) => Interrupted::Unknown(format!(
            "{key} was deployed again since ({} was created at {}, after it was registered at {}) and ECS lists no deployment of it",
            primary.and_then(|d| d.id()).unwrap_or_default(),
            show_time(created),
            show_time(registered)
        )),
        _ => Interrupted::Unknown(format!(
            "ECS gives no time to tell whether {key} was deployed since"
        )),
    }
}

fn already_running(
    push: &Push,
    target: &ServiceTarget,
    found: &Found,
    current_arn: &str,
) -> Decision {
    let skip = |why: Option<String>| Decision::Skip {
        reason: format!(
            "already running {} ({}){}",
            push.digest,
            revision_name(current_arn),
            why.map(|w| format!("; {w}")).unwrap_or_default()
        ),
    };
    // The record must be this service's: another service's revision it was
    // pointed at is not this push's deployment to announce.
    let Some(record) = Record::from_tags(&found.current_tags)
        .filter(|r| r.digest == push.digest && r.service == target.service_key())
    else {
        return skip(None);
    };
    // No deployment id is the usual state until the verdict records it. Only a
    // redelivery of the very push that deployed the revision announces it: the
    // first attempt may have stopped between UpdateService and its page.
    let same_push = push.event_id.is_some() && record.push_event == push.event_id;
    if record.deployment_id.is_some() || record.verdict.is_some() || !same_push {
        return skip(None);
    }
    let key = target.service_key();
    let Some(primary) = found
        .service
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY") && d.task_definition() == Some(current_arn))
    else {
        return skip(None);
    };
    let id = primary.id().unwrap_or_default().to_string();
    let later = later_revision(&found.current, found.latest.as_ref(), &key);
    if let Err(why) =
        adopt::listed(&found.current, primary, found.service.deployments(), later).check()
    {
        return skip(Some(format!("not announcing deployment {id}: {why}")));
    }
    Decision::Announce {
        revision_arn: current_arn.to_string(),
        deployment_id: id.clone(),
        reason: format!(
            "{key} already runs {} for this push, but its deployment {id} is not recorded yet: the page may not have gone, so it goes (again) and the deployment is recorded",
            revision_name(current_arn)
        ),
        record,
    }
}

/// The service's deployment configuration with the circuit breaker set as configured;
/// everything else (percentages, alarms, strategy) is kept as it is.
pub fn with_circuit_breaker(
    existing: Option<&DeploymentConfiguration>,
    target: &ServiceTarget,
) -> DeploymentConfiguration {
    let mut config = existing
        .cloned()
        .unwrap_or_else(|| DeploymentConfiguration::builder().build());
    config.deployment_circuit_breaker = Some(
        DeploymentCircuitBreaker::builder()
            .enable(target.circuit_breaker)
            .rollback(target.rollback)
            .build(),
    );
    config
}

fn label(push: &Push) -> String {
    super::pages::label(push)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::taskdef::{ecs_tag, tag};
    use aws_sdk_ecs::types::{DeploymentController, DeploymentControllerType};

    fn at(secs: i64, millis: u32) -> aws_smithy_types::DateTime {
        aws_smithy_types::DateTime::from_secs_and_nanos(secs, millis * 1_000_000)
    }

    fn times(pairs: &[(EcrImageId, aws_smithy_types::DateTime)]) -> PushTimes {
        PushTimes {
            times: pairs.iter().cloned().collect(),
        }
    }

    fn found_with(f: impl FnOnce(&mut Found), image: &str) -> Observed {
        let Observed::Found(mut found) = found(image) else {
            unreachable!()
        };
        f(&mut found);
        Observed::Found(found)
    }

    #[test]
    fn a_new_push_registers_a_revision_pinned_by_digest() {
        let d = plan_service(
            &push(),
            &target(),
            &found(&format!("{REG}/backend:v1.4.1")),
            &PushTimes::default(),
        );
        let Decision::Deploy {
            revision: Revision::Register(new),
            image,
            record,
            deployment_configuration,
            ..
        } = d
        else {
            panic!("{d:?}")
        };
        assert_eq!(image, format!("{REG}/backend@sha256:new"));
        assert_eq!(new.image, image);
        assert_eq!(record.previous, CUR_ARN);
        assert_eq!(record.service, "prod/backend");
        assert_eq!(record.push_event, push().event_id);
        assert_eq!(record.push_event_time, push().event_time);
        let cb = deployment_configuration
            .deployment_circuit_breaker()
            .unwrap();
        assert!(cb.enable() && cb.rollback());
    }

    #[test]
    fn one_push_swaps_every_mapped_container_in_one_revision() {
        let mut t = target();
        t.containers = vec!["app".into(), "migrate".into()];
        let old = format!("{REG}/backend:v1");
        let observed = running(td_with(CUR_ARN, &[("app", &old), ("migrate", &old)]));
        let Decision::Deploy {
            revision: Revision::Register(new),
            image,
            ..
        } = plan_service(&push(), &t, &observed, &PushTimes::default())
        else {
            panic!()
        };
        let images: Vec<_> = new
            .container_definitions()
            .iter()
            .map(|c| c.image().unwrap().to_string())
            .collect();
        assert_eq!(
            images,
            vec![image.clone(), image, "fluent-bit:3".to_string()]
        );

        // Half done (only app pinned, say after the mapping grew): deploy, do not skip.
        let pinned = format!("{REG}/backend@sha256:new");
        let half = running(td_with(CUR_ARN, &[("app", &pinned), ("migrate", &old)]));
        assert_eq!(
            plan_service(&push(), &t, &half, &PushTimes::default()).action(),
            "deploy"
        );
        let done = running(td_with(CUR_ARN, &[("app", &pinned), ("migrate", &pinned)]));
        assert_eq!(
            plan_service(&push(), &t, &done, &PushTimes::default()).action(),
            "skip"
        );
    }

    #[test]
    fn keeps_the_registry_the_service_already_pulls_from() {
        let d = plan_service(
            &push(),
            &target(),
            &found("cache.example.com/backend:v1"),
            &PushTimes::default(),
        );
        let Decision::Deploy { image, .. } = d else {
            panic!()
        };
        assert_eq!(image, "cache.example.com/backend@sha256:new");
    }

    #[test]
    fn builds_the_ecr_registry_when_the_service_runs_another_image() {
        let d = plan_service(
            &push(),
            &target(),
            &found("nginx:1.27"),
            &PushTimes::default(),
        );
        let Decision::Deploy { image, .. } = d else {
            panic!()
        };
        assert_eq!(image, format!("{REG}/backend@sha256:new"));
    }

    #[test]
    fn already_running_the_digest_is_a_no_op() {
        let d = plan_service(
            &push(),
            &target(),
            &found(&format!("{REG}/backend@sha256:new")),
            &PushTimes::default(),
        );
        assert_eq!(d.action(), "skip");
        assert!(
            d.reason().contains("already running sha256:new"),
            "{}",
            d.reason()
        );
    }

    #[test]
    fn an_unannounced_deployment_of_ours_is_announced_once() {
        let mut f = match found(&format!("{REG}/backend@sha256:new")) {
            Observed::Found(f) => f,
            _ => unreachable!(),
        };
        f.current_tags = record_tags("sha256:new", "prod/backend");
        f.current_tags
            .push(ecs_tag(tag::PUSH_EVENT, &push().event_id.unwrap()));
        let d = plan_service(
            &push(),
            &target(),
            &Observed::Found(f.clone()),
            &PushTimes::default(),
        );
        assert!(
            matches!(&d, Decision::Announce { deployment_id, .. } if deployment_id == "ecs-svc/1"),
            "{d:?}"
        );
        f.current_tags.push(ecs_tag(tag::DEPLOYMENT, "ecs-svc/1"));
        let d = plan_service(
            &push(),
            &target(),
            &Observed::Found(f),
            &PushTimes::default(),
        );
        assert_eq!(d.action(), "skip");
    }

    #[test]
    fn an_older_push_never_rolls_the_service_back() {
        let current = format!("{REG}/backend@sha256:newer");
        let t = times(&[
            (EcrImageId::Digest("sha256:newer".into()), at(200, 0)),
            (EcrImageId::Digest("sha256:new".into()), at(100, 0)),
        ]);
        let d = plan_service(&push(), &target(), &found(&current), &t);
        assert_eq!(d.action(), "skip");
        assert!(d.reason().starts_with("older push"), "{}", d.reason());
    }

    #[test]
    fn push_times_are_compared_below_the_second() {
        // Both pushed in second 100: the running one 900 ms in, this one 100 ms in.
        let current = format!("{REG}/backend@sha256:newer");
        let t = times(&[
            (EcrImageId::Digest("sha256:newer".into()), at(100, 900)),
            (EcrImageId::Digest("sha256:new".into()), at(100, 100)),
        ]);
        let d = plan_service(&push(), &target(), &found(&current), &t);
        assert_eq!(d.action(), "skip", "{}", d.reason());
        assert!(d.reason().contains(".9"), "{}", d.reason());
    }

    #[test]
    fn a_tie_in_push_time_is_broken_by_the_push_events_time() {
        let current = format!("{REG}/backend@sha256:newer");
        let t = times(&[
            (EcrImageId::Digest("sha256:newer".into()), at(100, 500)),
            (EcrImageId::Digest("sha256:new".into()), at(100, 500)),
        ]);
        let running_record = |event_time: &str| {
            let mut tags = record_tags("sha256:newer", "prod/backend");
            tags.push(ecs_tag(tag::PUSH_EVENT_TIME, event_time));
            tags
        };
        // The running image's push event came after this one's: skip.
        let observed = found_with(
            |f| f.current_tags = running_record("2026-11-23T10:00:01Z"),
            &current,
        );
        let d = plan_service(&push(), &target(), &observed, &t);
        assert_eq!(d.action(), "skip", "{}", d.reason());
        assert!(d.reason().contains("same instant"), "{}", d.reason());
        // It came before: this push is the newer one.
        let observed = found_with(
            |f| f.current_tags = running_record("2026-11-23T09:59:59Z"),
            &current,
        );
        assert_eq!(
            plan_service(&push(), &target(), &observed, &t).action(),
            "deploy"
        );
        // Nothing to break the tie with: deploy, as before.
        assert_eq!(
            plan_service(&push(), &target(), &found(&current), &t).action(),
            "deploy"
        );
    }

    #[test]
    fn a_newer_push_deploys_and_unknown_push_times_do_not_block() {
        let current = format!("{REG}/backend:v1.4.1");
        let t = times(&[
            (EcrImageId::Tag("v1.4.1".into()), at(50, 0)),
            (EcrImageId::Digest("sha256:new".into()), at(100, 0)),
        ]);
        assert_eq!(
            plan_service(&push(), &target(), &found(&current), &t).action(),
            "deploy"
        );
        let t = times(&[(EcrImageId::Digest("sha256:new".into()), at(100, 0))]);
        let d = plan_service(
            &push(),
            &target(),
            &found(&format!("{REG}/backend:gone")),
            &t,
        );
        assert_eq!(d.action(), "deploy");
    }

    /// autopilot's revision 8, registered at second 2 000 (after the service's
    /// PRIMARY deployment, created at 1 000).
    fn latest_of_ours(extra: &[(&str, &str)], digest: &str) -> (TaskDefinition, Vec<Tag>) {
        let mut tags = record_tags(digest, "prod/backend");
        tags.extend(extra.iter().map(|(k, v)| ecs_tag(k, v)));
        let mut latest = td(LATEST_ARN, &format!("{REG}/backend@{digest}"));
        latest.registered_at = Some(aws_smithy_types::DateTime::from_secs(2_000));
        (latest, tags)
    }

    #[test]
    fn a_redelivery_announces_only_the_push_that_deployed_the_revision() {
        let unrecorded = |f: &mut Found, event: &str| {
            f.current_tags = record_tags("sha256:new", "prod/backend");
            f.current_tags.push(ecs_tag(tag::PUSH_EVENT, event));
        };
        let event = push().event_id.unwrap();
        let running = format!("{REG}/backend@sha256:new");
        let d = plan_service(
            &push(),
            &target(),
            &found_with(|f| unrecorded(f, &event), &running),
            &PushTimes::default(),
        );
        assert_eq!(d.action(), "announce", "{d:?}");
        // Another push of the same digest (a second tag, say) did not deploy it:
        // nothing to announce while the deployment runs.
        let d = plan_service(
            &push(),
            &target(),
            &found_with(|f| unrecorded(f, "another-push"), &running),
            &PushTimes::default(),
        );
        assert_eq!(d.action(), "skip", "{d:?}");
        // A PRIMARY deployment long after the revision was registered is not the push's.
        let observed = found_with(
            |f| {
                unrecorded(f, &event);
                f.current.registered_at = Some(aws_smithy_types::DateTime::from_secs(-20_000));
            },
            &running,
        );
        let d = plan_service(&push(), &target(), &observed, &PushTimes::default());
        assert_eq!(d.action(), "skip", "{d:?}");
        assert!(
            d.reason().contains("not announcing deployment ecs-svc/1"),
            "{}",
            d.reason()
        );
    }

    #[test]
    fn an_interrupted_attempt_is_reused_only_if_no_deployment_came_since() {
        let event = push().event_id.unwrap();
        let ours = || latest_of_ours(&[(tag::PUSH_EVENT, &event)], "sha256:new");
        let v1 = format!("{REG}/backend:v1");
        // The service's PRIMARY deployment (second 1 000) predates the revision: reuse.
        let d = plan_service(
            &push(),
            &target(),
            &found_with(|f| f.latest = Some(ours()), &v1),
            &PushTimes::default(),
        );
        assert!(
            matches!(
                &d,
                Decision::Deploy {
                    revision: Revision::Reuse(_),
                    ..
                }
            ),
            "{d:?}"
        );
        // The service lists a deployment of it (FAILED, rolled back, draining): deployed.
        let observed = found_with(
            |f| {
                f.latest = Some(ours());
                let mut failed = f.service.deployments()[0].clone();
                failed.id = Some("ecs-svc/2".into());
                failed.status = Some("ACTIVE".into());
                failed.task_definition = Some(LATEST_ARN.into());
                f.service.deployments.as_mut().unwrap().push(failed);
            },
            &v1,
        );
        let d = plan_service(&push(), &target(), &observed, &PushTimes::default());
        assert_eq!(d.action(), "skip", "{d:?}");
        assert!(
            d.reason()
                .contains("in deployment ecs-svc/2 (no verdict recorded yet)"),
            "{}",
            d.reason()
        );
        // A deployment came since and none of the revision is listed: it may have
        // been deployed and drained; never deployed again on a guess.
        let observed = found_with(
            |f| {
                f.latest = Some(ours());
                f.service.deployments.as_mut().unwrap()[0].created_at =
                    Some(aws_smithy_types::DateTime::from_secs(3_000));
            },
            &v1,
        );
        let d = plan_service(&push(), &target(), &observed, &PushTimes::default());
        assert_eq!(d.action(), "refuse", "{d:?}");
        assert!(
            d.reason()
                .contains("may have been deployed and rolled back"),
            "{}",
            d.reason()
        );
    }

    #[test]
    fn reuses_the_revision_an_interrupted_attempt_of_this_push_registered() {
        let event = push().event_id.unwrap();
        let ours = latest_of_ours(&[(tag::PUSH_EVENT, &event)], "sha256:new");
        let observed = found_with(|f| f.latest = Some(ours), &format!("{REG}/backend:v1"));
        let d = plan_service(&push(), &target(), &observed, &PushTimes::default());
        assert!(
            matches!(&d, Decision::Deploy { revision: Revision::Reuse(a), .. } if a == LATEST_ARN),
            "{d:?}"
        );

        // Someone else's newer revision, or ours for another service, is not reused.
        for latest in [
            (td(LATEST_ARN, &format!("{REG}/backend@sha256:new")), vec![]),
            {
                let (td, mut tags) = latest_of_ours(&[(tag::PUSH_EVENT, &event)], "sha256:new");
                tags.retain(|t| t.key() != Some(tag::SERVICE));
                tags.push(ecs_tag(tag::SERVICE, "prod/worker"));
                (td, tags)
            },
        ] {
            let observed = found_with(|f| f.latest = Some(latest), &format!("{REG}/backend:v1"));
            let d = plan_service(&push(), &target(), &observed, &PushTimes::default());
            assert!(
                matches!(
                    d,
                    Decision::Deploy {
                        revision: Revision::Register(_),
                        ..
                    }
                ),
                "{d:?}"
            );
        }
    }

    /// The push storm's bug: a push event's attempt registered a revision and
    /// stopped before UpdateService; another push event of the same image came
    /// before Lambda's retry of the first, and registered a second revision.
    #[test]
    fn another_push_event_of_the_same_image_reuses_an_interrupted_attempts_revision() {
        let first = latest_of_ours(&[(tag::PUSH_EVENT, "the-first-push")], "sha256:new");
        let observed = found_with(
            |f| f.latest = Some(first.clone()),
            &format!("{REG}/backend:v1"),
        );
        let d = plan_service(&push(), &target(), &observed, &PushTimes::default());
        assert!(
            matches!(&d, Decision::Deploy { revision: Revision::Reuse(a), .. } if a == LATEST_ARN),
            "{d:?}"
        );
        assert!(d.reason().contains("the-first-push"), "{}", d.reason());

        // Not when a deployment came since it was registered (a new push of the
        // image retries a deploy that failed), nor when it was copied from another
        // revision than the service runs, nor for another image.
        let deployed_since = found_with(
            |f| {
                f.latest = Some(first.clone());
                f.service.deployments.as_mut().unwrap()[0].created_at =
                    Some(aws_smithy_types::DateTime::from_secs(3_000));
            },
            &format!("{REG}/backend:v1"),
        );
        let other_source = {
            let (td, mut tags) = first.clone();
            tags.retain(|t| t.key() != Some(tag::PREVIOUS));
            tags.push(ecs_tag(
                tag::PREVIOUS,
                "arn:aws:ecs:us-east-1:123456789012:task-definition/backend:6",
            ));
            found_with(
                |f| f.latest = Some((td, tags)),
                &format!("{REG}/backend:v1"),
            )
        };
        let other_image = found_with(
            |f| {
                f.latest = Some(latest_of_ours(
                    &[(tag::PUSH_EVENT, "the-first-push")],
                    "sha256:other",
                ))
            },
            &format!("{REG}/backend:v1"),
        );
        for observed in [deployed_since, other_source, other_image] {
            let d = plan_service(&push(), &target(), &observed, &PushTimes::default());
            assert!(
                matches!(
                    d,
                    Decision::Deploy {
                        revision: Revision::Register(_),
                        ..
                    }
                ),
                "{d:?}"
            );
        }
    }

    #[test]
    fn a_redelivered_push_whose_deploy_failed_is_not_deployed_again() {
        let event = push().event_id.unwrap();
        let ours = latest_of_ours(
            &[
                (tag::PUSH_EVENT, &event),
                (tag::DEPLOYMENT, "ecs-svc/2"),
                (tag::VERDICT, "FAILED ecs-svc/2"),
            ],
            "sha256:new",
        );
        // The circuit breaker rolled the service back to the revision before.
        let observed = found_with(|f| f.latest = Some(ours), &format!("{REG}/backend:v1"));
        let d = plan_service(&push(), &target(), &observed, &PushTimes::default());
        assert_eq!(d.action(), "skip", "{d:?}");
        assert!(
            d.reason().contains("already deployed") && d.reason().contains("(failed)"),
            "{}",
            d.reason()
        );

        // A new push of the same digest, later, is a deliberate retry: it deploys, on a new revision.
        let mut again = push();
        again.event_id = Some("a-new-push".into());
        again.event_time = Some("2026-11-23T11:00:00Z".parse().unwrap());
        let d = plan_service(&again, &target(), &observed, &PushTimes::default());
        assert!(
            matches!(
                d,
                Decision::Deploy {
                    revision: Revision::Register(_),
                    ..
                }
            ),
            "{d:?}"
        );
    }

    #[test]
    fn a_push_older_than_the_last_one_handled_is_stale() {
        // The last push handled (another digest, at 10:05) failed and rolled back.
        let ours = latest_of_ours(
            &[
                (tag::PUSH_EVENT, "the-later-push"),
                (tag::PUSH_EVENT_TIME, "2026-11-23T10:05:00Z"),
                (tag::DEPLOYMENT, "ecs-svc/3"),
                (tag::VERDICT, "FAILED ecs-svc/3"),
            ],
            "sha256:later",
        );
        let observed = found_with(|f| f.latest = Some(ours), &format!("{REG}/backend:v1"));
        // A redelivery of an earlier push (10:00) must not deploy over that history.
        let d = plan_service(&push(), &target(), &observed, &PushTimes::default());
        assert_eq!(d.action(), "skip", "{d:?}");
        assert!(d.reason().contains("stale"), "{}", d.reason());
    }

    #[test]
    fn a_push_older_than_a_later_push_stopped_before_update_deploys_the_later_one() {
        // The later push (10:05) registered its revision and stopped before
        // UpdateService; Lambda will retry it. It is not handled: this push (10:00)
        // deploys the later image on that revision, so the service does not stay
        // on v1 if the retry never comes.
        let later = latest_of_ours(
            &[
                (tag::PUSH_EVENT, "the-later-push"),
                (tag::PUSH_EVENT_TIME, "2026-11-23T10:05:00Z"),
            ],
            "sha256:later",
        );
        let observed = found_with(
            |f| f.latest = Some(later.clone()),
            &format!("{REG}/backend:v1"),
        );
        let d = plan_service(&push(), &target(), &observed, &PushTimes::default());
        let Decision::Deploy {
            revision: Revision::Reuse(arn),
            record,
            image,
            ..
        } = &d
        else {
            panic!("{d:?}");
        };
        assert_eq!(arn, LATEST_ARN);
        assert_eq!(
            record.digest, "sha256:later",
            "the page is the later image's"
        );
        assert_eq!(image, &format!("{REG}/backend@sha256:later"));

        // Once a deployment came since it was registered, it was handled: stale.
        let deployed_since = found_with(
            |f| {
                f.latest = Some(later.clone());
                f.service.deployments.as_mut().unwrap()[0].created_at =
                    Some(aws_smithy_types::DateTime::from_secs(3_000));
            },
            &format!("{REG}/backend:v1"),
        );
        let d = plan_service(&push(), &target(), &deployed_since, &PushTimes::default());
        assert_eq!(d.action(), "skip", "{d:?}");
        assert!(d.reason().contains("stale"), "{}", d.reason());
    }

    #[test]
    fn a_later_push_of_another_repository_does_not_make_this_one_stale() {
        // The service's sidecar comes from another repository, pushed later.
        let (td, mut tags) = latest_of_ours(
            &[
                (tag::PUSH_EVENT, "sidecar-push"),
                (tag::PUSH_EVENT_TIME, "2026-11-23T10:05:00Z"),
                (tag::DEPLOYMENT, "ecs-svc/3"),
            ],
            "sha256:sidecar",
        );
        tags.retain(|t| t.key() != Some(tag::REPOSITORY));
        tags.push(ecs_tag(tag::REPOSITORY, "sidecar"));
        let observed = found_with(
            |f| f.latest = Some((td, tags)),
            &format!("{REG}/backend:v1"),
        );
        let d = plan_service(&push(), &target(), &observed, &PushTimes::default());
        assert_eq!(d.action(), "deploy", "{}", d.reason());
    }

    #[test]
    fn refuses_what_cannot_be_deployed() {
        let d = plan_service(
            &push(),
            &target(),
            &Observed::Unavailable("service prod/backend not found".into()),
            &PushTimes::default(),
        );
        assert_eq!(
            d,
            Decision::Refuse {
                reason: "service prod/backend not found".into()
            }
        );

        let mut t = target();
        t.containers = vec!["app".into(), "web".into()];
        let d = plan_service(&push(), &t, &found("x/backend:v1"), &PushTimes::default());
        assert!(
            d.reason()
                .contains("container `web` is not in task definition backend:7"),
            "{}",
            d.reason()
        );

        let observed = found_with(
            |f| {
                f.service.deployment_controller = Some(
                    DeploymentController::builder()
                        .r#type(DeploymentControllerType::CodeDeploy)
                        .build()
                        .unwrap(),
                )
            },
            "x/backend:v1",
        );
        let d = plan_service(&push(), &target(), &observed, &PushTimes::default());
        assert!(d.reason().contains("CODE_DEPLOY"), "{}", d.reason());

        // 40 own tags + 7 of autopilot's at registration + 3 later = 50: fits; 41 does not.
        for (own, fits) in [(40, true), (41, false)] {
            let observed = found_with(
                |f| f.current_tags = (0..own).map(|i| ecs_tag(&format!("k{i}"), "v")).collect(),
                "x/backend:v1",
            );
            let d = plan_service(&push(), &target(), &observed, &PushTimes::default());
            assert_eq!(d.action() == "deploy", fits, "{own}: {}", d.reason());
        }
    }

    #[test]
    fn a_service_that_could_not_be_read_is_retried() {
        let error = AwsCallError::new("DescribeServices", "prod", "AccessDeniedException");
        let d = plan_service(
            &push(),
            &target(),
            &Observed::Failed(error.clone()),
            &PushTimes::default(),
        );
        assert_eq!(d.action(), "retry");
        assert!(
            d.reason().contains("AccessDeniedException"),
            "{}",
            d.reason()
        );
        assert!(matches!(d, Decision::Retry { error: e, .. } if e == error));
    }

    #[test]
    fn circuit_breaker_follows_config_and_keeps_the_rest() {
        let existing = DeploymentConfiguration::builder()
            .maximum_percent(150)
            .minimum_healthy_percent(50)
            .build();
        let mut t = target();
        t.rollback = false;
        let c = with_circuit_breaker(Some(&existing), &t);
        assert_eq!(
            (c.maximum_percent(), c.minimum_healthy_percent()),
            (Some(150), Some(50))
        );
        let cb = c.deployment_circuit_breaker().unwrap();
        assert!(cb.enable() && !cb.rollback());
    }

    fn push_event(detail: serde_json::Value) -> (Envelope, EcrImageAction) {
        let envelope = autopilot_shared::events::envelope(serde_json::json!({
            "version": "0", "id": "e-1", "detail-type": "ECR Image Action", "source": "aws.ecr",
            "account": "123456789012", "time": "2026-11-23T10:00:00Z", "region": "us-east-1",
            "resources": [], "detail": detail,
        }))
        .unwrap();
        let detail = serde_json::from_value(envelope.detail.clone()).unwrap();
        (envelope, detail)
    }

    #[test]
    fn pushes_that_are_not_ours_are_ignored_with_the_reason() {
        let config = crate::config::Config::from_lookup(|k| match k {
            "AUTOPILOT_TOPIC_ARN" => Some("arn:aws:sns:us-east-1:1:oncall".into()),
            "AUTOPILOT_SERVICES" => Some(
                r#"[{"repository":"backend","tags":["v*"],"cluster":"prod","service":"backend","container":"app"}]"#.into(),
            ),
            _ => None,
        })
        .unwrap();
        let cases = [
            (
                serde_json::json!({"result":"SUCCESS","repository-name":"backend","image-digest":"sha256:a","action-type":"DELETE","image-tag":"v1"}),
                "not a push",
            ),
            (
                serde_json::json!({"result":"FAILURE","repository-name":"backend","image-digest":"sha256:a","action-type":"PUSH","image-tag":"v1"}),
                "did not succeed",
            ),
            (
                serde_json::json!({"result":"SUCCESS","repository-name":"other","image-digest":"sha256:a","action-type":"PUSH","image-tag":"v1"}),
                "not mapped",
            ),
            (
                serde_json::json!({"result":"SUCCESS","repository-name":"backend","image-digest":"sha256:a","action-type":"PUSH"}),
                "untagged",
            ),
            (
                serde_json::json!({"result":"SUCCESS","repository-name":"backend","image-digest":"sha256:a","action-type":"PUSH","image-tag":"feature-x"}),
                "matches no tag pattern",
            ),
        ];
        for (detail, why) in cases {
            let (envelope, detail) = push_event(detail);
            let reason = accept(&envelope, &detail, &config).unwrap_err();
            assert!(reason.contains(why), "{why}: {reason}");
        }
        let (envelope, detail) = push_event(
            serde_json::json!({"result":"SUCCESS","repository-name":"backend","image-digest":"sha256:a","action-type":"PUSH","image-tag":"v1"}),
        );
        let (push, targets) = accept(&envelope, &detail, &config).unwrap();
        assert_eq!(targets.len(), 1);
        assert_eq!(
            (push.event_id.as_deref(), push.tag.as_str()),
            (Some("e-1"), "v1")
        );
    }
}
