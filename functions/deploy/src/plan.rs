//! Pure decisions: what to do about a push, a deployment verdict or a stale
//! deployment, and why. No I/O here; `observe` reads the state these take and
//! `apply` carries their result out. Every branch is unit-tested below.

use crate::config::ServiceTarget;
use crate::image::{ecr_registry, pinned, EcrImageId, ImageRef};
use crate::taskdef::{container_image, NewRevision, Record, TAG_LIMIT};
use autopilot_shared::pager::{Action, Page, Severity};
use aws_sdk_ecs::types::{
    DeploymentCircuitBreaker, DeploymentConfiguration, DeploymentRolloutState, Service, Tag,
    TaskDefinition,
};
use std::collections::HashMap;
use std::time::Duration;

pub const CLASS_STARTED: &str = "deploy.started";
pub const CLASS_COMPLETED: &str = "deploy.completed";
pub const CLASS_FAILED: &str = "deploy.failed";
pub const CLASS_TIMED_OUT: &str = "deploy.timed_out";
pub const CLASS_REFUSED: &str = "deploy.refused";

/// A successful image push, as deploy needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub account: String,
    pub region: String,
}

/// What was read about one mapped service.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
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

/// When images were pushed, from ECR (epoch seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushTimes {
    pub times: HashMap<EcrImageId, i64>,
}

impl PushTimes {
    pub fn get(&self, id: &EcrImageId) -> Option<i64> {
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
    /// The service already runs our revision but on-call was never told the deploy
    /// started (a crash after UpdateService): tell them and record the deployment.
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
}

#[derive(Debug, Clone, PartialEq)]
pub enum Revision {
    Register(Box<NewRevision>),
    /// A revision registered by an earlier, interrupted attempt for the same push.
    Reuse(String),
}

impl Decision {
    pub fn action(&self) -> &'static str {
        match self {
            Decision::Deploy { .. } => "deploy",
            Decision::Announce { .. } => "announce",
            Decision::Skip { .. } => "skip",
            Decision::Refuse { .. } => "refuse",
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::Deploy { reason, .. }
            | Decision::Announce { reason, .. }
            | Decision::Skip { reason }
            | Decision::Refuse { reason } => reason,
        }
    }
}

fn arn_of(td: &TaskDefinition) -> &str {
    td.task_definition_arn().unwrap_or_default()
}

/// `family:revision`, the short name on-call reads.
pub fn revision_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Decides what a push means for one mapped service.
pub fn plan_service(
    push: &Push,
    target: &ServiceTarget,
    observed: &Observed,
    times: &PushTimes,
) -> Decision {
    let found = match observed {
        Observed::Unavailable(why) => {
            return Decision::Refuse {
                reason: why.clone(),
            }
        }
        Observed::Found(f) => f,
    };
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
            reason: format!("service {} maps no container", target.service_key()),
        };
    };
    let current_ref = ImageRef::parse(current_image).filter(|r| r.repository == push.repository);
    let registry = current_ref
        .as_ref()
        .and_then(|r| r.registry.clone())
        .unwrap_or_else(|| ecr_registry(&push.account, &push.region));
    let image = pinned(&registry, &push.repository, &push.digest);

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

    if let Some(current_id) = current_ref.as_ref().and_then(ImageRef::ecr_id) {
        let new_at = times.get(&EcrImageId::Digest(push.digest.clone()));
        if let (Some(running_at), Some(new_at)) = (times.get(&current_id), new_at) {
            if running_at > new_at {
                return Decision::Skip {
                    reason: format!(
                        "older push: the running image {current_image} was pushed at {running_at}, after this one ({new_at}); not rolling back"
                    ),
                };
            }
        }
    }

    let record = Record {
        repository: push.repository.clone(),
        image_tag: push.tag.clone(),
        digest: push.digest.clone(),
        previous: current_arn.clone(),
        service: target.service_key(),
        deployment_id: None,
        verdict: None,
        timeout_warned: None,
    };
    let deployment_configuration = Box::new(with_circuit_breaker(
        found.service.deployment_configuration(),
        target,
    ));

    if let Some((latest, tags)) = &found.latest {
        let ours = Record::from_tags(tags)
            .is_some_and(|r| r.digest == push.digest && r.service == target.service_key());
        let pinned_everywhere = target
            .containers
            .iter()
            .all(|c| container_image(latest, c) == Some(image.as_str()));
        if ours && pinned_everywhere {
            let arn = arn_of(latest).to_string();
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
    }

    let new = NewRevision {
        source: found.current.clone(),
        source_tags: found.current_tags.clone(),
        containers: target.containers.clone(),
        image: image.clone(),
        record: record.clone(),
    };
    let tag_count = new.tags().len() + 2; // deployment id and verdict are added later
    if tag_count > TAG_LIMIT {
        return Decision::Refuse {
            reason: format!(
                "task definition {} has too many tags: autopilot needs {tag_count} of the {TAG_LIMIT} ECS allows",
                revision_name(&current_arn)
            ),
        };
    }
    Decision::Deploy {
        reason: format!(
            "{} was pushed; {} runs {current_image}",
            label(push),
            target.service_key()
        ),
        revision: Revision::Register(Box::new(new)),
        deployment_configuration,
        record,
        image,
    }
}

fn already_running(
    push: &Push,
    target: &ServiceTarget,
    found: &Found,
    current_arn: &str,
) -> Decision {
    let record = Record::from_tags(&found.current_tags).filter(|r| r.digest == push.digest);
    let primary = found
        .service
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"));
    if let (Some(record), Some(primary)) = (record, primary) {
        let unannounced = record.deployment_id.is_none() && record.verdict.is_none();
        if unannounced && primary.task_definition() == Some(current_arn) {
            if let Some(id) = primary.id() {
                return Decision::Announce {
                    revision_arn: current_arn.to_string(),
                    deployment_id: id.to_string(),
                    reason: format!(
                        "{} already runs {} but its deployment {id} was never announced",
                        target.service_key(),
                        revision_name(current_arn)
                    ),
                    record,
                };
            }
        }
    }
    Decision::Skip {
        reason: format!(
            "already running {} ({})",
            push.digest,
            revision_name(current_arn)
        ),
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
    format!("{}:{}", push.repository, push.tag)
}

/// The incident key of one deploy of one service: started, timed out, failed and
/// completed pages all carry it, so the completion resolves the rest.
pub fn dedup_key(service_key: &str, digest: &str) -> String {
    format!("autopilot/deploy/{service_key}/{digest}")
}

fn short_digest(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

fn base_page(
    action: Action,
    severity: Severity,
    class: &str,
    target: &ServiceTarget,
    record: &Record,
    summary: String,
) -> Page {
    Page::new(action, severity, class, &target.service_key(), summary)
        .dedup_key(dedup_key(&target.service_key(), &record.digest))
        .group(&target.cluster)
        .fact("Service", target.service_key())
        .fact("Container", target.containers.join(", "))
        .fact("Image", record.image_label())
        .fact("Digest", &record.digest)
}

/// On-call hears that a deploy started (or, in dry-run, would start).
pub fn started_page(
    target: &ServiceTarget,
    record: &Record,
    new_revision: &str,
    deployment_id: &str,
    dry_run: bool,
) -> Page {
    let (summary, new_revision) = if dry_run {
        (
            format!(
                "[dry-run] would deploy {} to {}",
                record.image_label(),
                target.service_key()
            ),
            "(not registered: dry-run)",
        )
    } else {
        (
            format!(
                "Deploying {} to {} ({})",
                record.image_label(),
                target.service_key(),
                short_digest(&record.digest)
            ),
            revision_name(new_revision),
        )
    };
    let mut page = base_page(
        Action::Trigger,
        Severity::Info,
        CLASS_STARTED,
        target,
        record,
        summary,
    )
    .fact("Previous revision", revision_name(&record.previous))
    .fact("New revision", new_revision);
    if !deployment_id.is_empty() {
        page = page.fact("Deployment", deployment_id);
    }
    if dry_run {
        page = page.dedup_key(format!(
            "autopilot/dry-run/deploy/{}/{}",
            target.service_key(),
            record.digest
        ));
    }
    page
}

/// On-call is warned that a mapped service could not be deployed to.
pub fn refused_page(push: &Push, target: &ServiceTarget, reason: &str) -> Page {
    Page::new(
        Action::Trigger,
        Severity::Warning,
        CLASS_REFUSED,
        &target.service_key(),
        format!("Cannot deploy {} to {}", label(push), target.service_key()),
    )
    .dedup_key(dedup_key(&target.service_key(), &push.digest))
    .group(&target.cluster)
    .fact("Service", target.service_key())
    .fact("Image", label(push))
    .fact("Digest", &push.digest)
    .fact("Reason", reason)
}

/// The verdict an ECS deployment event carries, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Completed,
    Failed,
}

impl Verdict {
    pub fn from_event_name(name: &str) -> Option<Self> {
        match name {
            "SERVICE_DEPLOYMENT_COMPLETED" => Some(Verdict::Completed),
            "SERVICE_DEPLOYMENT_FAILED" => Some(Verdict::Failed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Completed => "COMPLETED",
            Verdict::Failed => "FAILED",
        }
    }
}

/// What was read to judge a deployment verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictFacts {
    pub deployment_id: String,
    pub reason: Option<String>,
    /// The revision the deployment ran, and autopilot's record of it (None: not ours).
    pub revision_arn: String,
    pub record: Option<Record>,
    /// The service's PRIMARY revision now: after a rollback, the restored one.
    pub primary_revision: Option<String>,
    /// Why the deployment's tasks stopped, newest first.
    pub stopped_tasks: Vec<String>,
    /// The service's latest events, newest first.
    pub service_events: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum VerdictDecision {
    Ignore {
        reason: String,
    },
    Notify {
        page: Box<Page>,
        verdict_tag: String,
        reason: String,
    },
}

/// Decides what on-call hears about a deployment's verdict.
pub fn plan_verdict(
    verdict: Verdict,
    target: &ServiceTarget,
    facts: &VerdictFacts,
) -> VerdictDecision {
    let Some(record) = &facts.record else {
        return VerdictDecision::Ignore {
            reason: format!(
                "deployment {} runs {}, which autopilot did not register (a rollback, or a deploy by someone else)",
                facts.deployment_id,
                revision_name(&facts.revision_arn)
            ),
        };
    };
    if record.has_verdict_for(&facts.deployment_id) {
        return VerdictDecision::Ignore {
            reason: format!(
                "on-call already has the verdict of deployment {}",
                facts.deployment_id
            ),
        };
    }
    let verdict_tag = format!("{} {}", verdict.as_str(), facts.deployment_id);
    let page = match verdict {
        Verdict::Completed => base_page(
            Action::Resolve,
            Severity::Info,
            CLASS_COMPLETED,
            target,
            record,
            format!(
                "Deployed {} to {}",
                record.image_label(),
                target.service_key()
            ),
        )
        .fact("Revision", revision_name(&facts.revision_arn))
        .fact("Previous revision", revision_name(&record.previous))
        .fact("Deployment", &facts.deployment_id),
        Verdict::Failed => {
            let restored = match facts.primary_revision.as_deref() {
                Some(p) if p != facts.revision_arn => {
                    format!("{} (rolled back by the circuit breaker)", revision_name(p))
                }
                _ => format!(
                    "none: the service still points at {}; roll back to {} by hand",
                    revision_name(&facts.revision_arn),
                    revision_name(&record.previous)
                ),
            };
            base_page(
                Action::Trigger,
                Severity::Critical,
                CLASS_FAILED,
                target,
                record,
                format!(
                    "Deploy FAILED: {} on {}",
                    record.image_label(),
                    target.service_key()
                ),
            )
            .fact(
                "Reason",
                facts.reason.as_deref().unwrap_or("(ECS gave no reason)"),
            )
            .fact("Failed revision", revision_name(&facts.revision_arn))
            .fact("Restored revision", restored)
            .fact("Deployment", &facts.deployment_id)
            .list("Stopped tasks", facts.stopped_tasks.clone())
            .list("Recent service events", facts.service_events.clone())
        }
    };
    VerdictDecision::Notify {
        reason: format!(
            "deployment {} {}",
            facts.deployment_id,
            verdict.as_str().to_lowercase()
        ),
        page: Box::new(page),
        verdict_tag,
    }
}

/// The PRIMARY deployment of `service` if it has run longer than `timeout` without a verdict.
pub fn stale_primary(
    service: &Service,
    now: i64,
    timeout: Duration,
) -> Option<&aws_sdk_ecs::types::Deployment> {
    service.deployments().iter().find(|d| {
        let running = matches!(
            d.rollout_state(),
            None | Some(DeploymentRolloutState::InProgress)
        );
        let started = d.created_at().map(|t| t.secs());
        d.status() == Some("PRIMARY")
            && running
            && started.is_some_and(|s| now - s >= timeout.as_secs() as i64)
    })
}

/// Decides whether on-call is warned about a deployment without a verdict.
pub fn plan_timeout(
    target: &ServiceTarget,
    deployment: &aws_sdk_ecs::types::Deployment,
    record: Option<&Record>,
    now: i64,
    service_events: Vec<String>,
) -> Option<Page> {
    let record = record?;
    let id = deployment.id()?;
    if record.timeout_warned.as_deref() == Some(id) || record.has_verdict_for(id) {
        return None;
    }
    let minutes = deployment.created_at().map_or(0, |t| (now - t.secs()) / 60);
    Some(
        base_page(
            Action::Trigger,
            Severity::Warning,
            CLASS_TIMED_OUT,
            target,
            record,
            format!(
                "Deploy of {} to {} has no verdict after {minutes} min",
                record.image_label(),
                target.service_key()
            ),
        )
        .fact("Deployment", id)
        .fact(
            "Revision",
            revision_name(deployment.task_definition().unwrap_or_default()),
        )
        .fact("Previous revision", revision_name(&record.previous))
        .fact(
            "Tasks",
            format!(
                "{} running, {} pending, {} desired, {} failed",
                deployment.running_count(),
                deployment.pending_count(),
                deployment.desired_count(),
                deployment.failed_tasks()
            ),
        )
        .fact(
            "Rollout",
            deployment
                .rollout_state_reason()
                .unwrap_or("(no reason given)"),
        )
        .list("Recent service events", service_events),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taskdef::{ecs_tag, tag};
    use aws_sdk_ecs::types::{
        ContainerDefinition, Deployment, DeploymentController, DeploymentControllerType,
    };
    use aws_smithy_types::DateTime;

    const REG: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    const CUR_ARN: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/backend:7";

    fn push() -> Push {
        Push {
            repository: "backend".into(),
            tag: "v1.4.2".into(),
            digest: "sha256:new".into(),
            account: "123456789012".into(),
            region: "us-east-1".into(),
        }
    }

    fn target() -> ServiceTarget {
        ServiceTarget {
            repository: "backend".into(),
            tags: vec![],
            cluster: "prod".into(),
            service: "backend".into(),
            containers: vec!["app".into()],
            circuit_breaker: true,
            rollback: true,
        }
    }

    /// A task definition with the given containers, plus a log router that is never mapped.
    fn td_with(arn: &str, containers: &[(&str, &str)]) -> TaskDefinition {
        let mut td = TaskDefinition::builder()
            .task_definition_arn(arn)
            .family("backend");
        for (name, image) in containers.iter().chain([("log", "fluent-bit:3")].iter()) {
            td = td.container_definitions(
                ContainerDefinition::builder()
                    .name(*name)
                    .image(*image)
                    .build(),
            );
        }
        td.build()
    }

    fn td(arn: &str, image: &str) -> TaskDefinition {
        td_with(arn, &[("app", image)])
    }

    fn service(primary_td: &str, primary_id: &str) -> Service {
        Service::builder()
            .service_name("backend")
            .task_definition(primary_td)
            .deployments(
                Deployment::builder()
                    .id(primary_id)
                    .status("PRIMARY")
                    .task_definition(primary_td)
                    .rollout_state(DeploymentRolloutState::InProgress)
                    .created_at(DateTime::from_secs(1_000))
                    .desired_count(2)
                    .build(),
            )
            .build()
    }

    fn found(image: &str) -> Observed {
        running(td(CUR_ARN, image))
    }

    fn times(pairs: &[(EcrImageId, i64)]) -> PushTimes {
        PushTimes {
            times: pairs.iter().cloned().collect(),
        }
    }

    fn record_tags(digest: &str, service: &str) -> Vec<Tag> {
        vec![
            ecs_tag(tag::REPOSITORY, "backend"),
            ecs_tag(tag::DIGEST, digest),
            ecs_tag(tag::SERVICE, service),
            ecs_tag(tag::PREVIOUS, CUR_ARN),
        ]
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
        let cb = deployment_configuration
            .deployment_circuit_breaker()
            .unwrap();
        assert!(cb.enable() && cb.rollback());
    }

    /// What is observed of the service when it runs `current`.
    fn running(current: TaskDefinition) -> Observed {
        Observed::Found(Box::new(Found {
            service: service(CUR_ARN, "ecs-svc/1"),
            current,
            current_tags: vec![],
            latest: None,
        }))
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
            (EcrImageId::Digest("sha256:newer".into()), 200),
            (EcrImageId::Digest("sha256:new".into()), 100),
        ]);
        let d = plan_service(&push(), &target(), &found(&current), &t);
        assert_eq!(d.action(), "skip");
        assert!(d.reason().starts_with("older push"), "{}", d.reason());
    }

    #[test]
    fn a_newer_or_simultaneous_push_deploys() {
        let current = format!("{REG}/backend:v1.4.1");
        for running_at in [50, 100] {
            let t = times(&[
                (EcrImageId::Tag("v1.4.1".into()), running_at),
                (EcrImageId::Digest("sha256:new".into()), 100),
            ]);
            assert_eq!(
                plan_service(&push(), &target(), &found(&current), &t).action(),
                "deploy"
            );
        }
    }

    #[test]
    fn unknown_push_times_do_not_block_a_deploy() {
        let t = times(&[(EcrImageId::Digest("sha256:new".into()), 100)]);
        let d = plan_service(
            &push(),
            &target(),
            &found(&format!("{REG}/backend:gone")),
            &t,
        );
        assert_eq!(d.action(), "deploy");
    }

    #[test]
    fn reuses_the_revision_an_interrupted_attempt_registered() {
        let mut f = match found(&format!("{REG}/backend:v1")) {
            Observed::Found(f) => f,
            _ => unreachable!(),
        };
        let latest_arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/backend:8";
        f.latest = Some((
            td(latest_arn, &format!("{REG}/backend@sha256:new")),
            record_tags("sha256:new", "prod/backend"),
        ));
        let d = plan_service(
            &push(),
            &target(),
            &Observed::Found(f.clone()),
            &PushTimes::default(),
        );
        assert!(
            matches!(&d, Decision::Deploy { revision: Revision::Reuse(a), .. } if a == latest_arn),
            "{d:?}"
        );

        // Someone else's newer revision, or ours for another service, is not reused.
        f.latest = Some((td(latest_arn, &format!("{REG}/backend@sha256:new")), vec![]));
        let d = plan_service(
            &push(),
            &target(),
            &Observed::Found(f.clone()),
            &PushTimes::default(),
        );
        assert!(matches!(
            d,
            Decision::Deploy {
                revision: Revision::Register(_),
                ..
            }
        ));
        f.latest = Some((
            td(latest_arn, &format!("{REG}/backend@sha256:new")),
            record_tags("sha256:new", "prod/worker"),
        ));
        let d = plan_service(
            &push(),
            &target(),
            &Observed::Found(f),
            &PushTimes::default(),
        );
        assert!(matches!(
            d,
            Decision::Deploy {
                revision: Revision::Register(_),
                ..
            }
        ));
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

        let mut f = match found("x/backend:v1") {
            Observed::Found(f) => f,
            _ => unreachable!(),
        };
        f.service.deployment_controller = Some(
            DeploymentController::builder()
                .r#type(DeploymentControllerType::CodeDeploy)
                .build()
                .unwrap(),
        );
        let d = plan_service(
            &push(),
            &target(),
            &Observed::Found(f.clone()),
            &PushTimes::default(),
        );
        assert!(d.reason().contains("CODE_DEPLOY"), "{}", d.reason());

        f.service.deployment_controller = None;
        f.current_tags = (0..46).map(|i| ecs_tag(&format!("k{i}"), "v")).collect();
        let d = plan_service(
            &push(),
            &target(),
            &Observed::Found(f),
            &PushTimes::default(),
        );
        assert!(d.reason().contains("too many tags"), "{}", d.reason());
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

    fn record() -> Record {
        Record::from_tags(&record_tags("sha256:new", "prod/backend")).unwrap()
    }

    fn facts(record: Option<Record>, primary: Option<&str>) -> VerdictFacts {
        VerdictFacts {
            deployment_id: "ecs-svc/9".into(),
            reason: Some("ECS deployment circuit breaker: tasks failed to start.".into()),
            revision_arn: "arn:aws:ecs:us-east-1:1:task-definition/backend:8".into(),
            record,
            primary_revision: primary.map(str::to_string),
            stopped_tasks: vec!["Essential container in task exited (exit code 1)".into()],
            service_events: vec!["(service backend) rolling back".into()],
        }
    }

    #[test]
    fn a_failed_deploy_pages_critical_with_everything_on_call_needs() {
        let d = plan_verdict(
            Verdict::Failed,
            &target(),
            &facts(Some(record()), Some(CUR_ARN)),
        );
        let VerdictDecision::Notify {
            page, verdict_tag, ..
        } = d
        else {
            panic!()
        };
        assert_eq!(verdict_tag, "FAILED ecs-svc/9");
        assert_eq!(
            (page.action, page.severity),
            (Action::Trigger, Severity::Critical)
        );
        assert_eq!(page.fact_value("Failed revision"), Some("backend:8"));
        assert_eq!(
            page.fact_value("Restored revision"),
            Some("backend:7 (rolled back by the circuit breaker)")
        );
        assert!(page
            .fact_value("Reason")
            .unwrap()
            .contains("circuit breaker"));
        assert_eq!(page.fact_value("Digest"), Some("sha256:new"));
        assert_eq!(
            page.lists[0].1[0],
            "Essential container in task exited (exit code 1)"
        );
        assert_eq!(page.dedup_key, "autopilot/deploy/prod/backend/sha256:new");
    }

    #[test]
    fn a_failed_deploy_without_rollback_says_so() {
        let failed = "arn:aws:ecs:us-east-1:1:task-definition/backend:8";
        let VerdictDecision::Notify { page, .. } = plan_verdict(
            Verdict::Failed,
            &target(),
            &facts(Some(record()), Some(failed)),
        ) else {
            panic!()
        };
        assert!(page
            .fact_value("Restored revision")
            .unwrap()
            .starts_with("none"));
    }

    #[test]
    fn a_completed_deploy_resolves_the_incident() {
        let VerdictDecision::Notify { page, .. } =
            plan_verdict(Verdict::Completed, &target(), &facts(Some(record()), None))
        else {
            panic!()
        };
        assert_eq!(
            (page.action, page.severity),
            (Action::Resolve, Severity::Info)
        );
        assert_eq!(
            page.dedup_key,
            started_page(&target(), &record(), "x", "y", false).dedup_key
        );
    }

    #[test]
    fn a_rollback_or_foreign_deployment_is_never_reported() {
        for v in [Verdict::Completed, Verdict::Failed] {
            let d = plan_verdict(v, &target(), &facts(None, None));
            assert!(matches!(d, VerdictDecision::Ignore { .. }), "{d:?}");
        }
    }

    #[test]
    fn a_verdict_is_reported_once() {
        let mut r = record();
        r.verdict = Some("FAILED ecs-svc/9".into());
        assert!(matches!(
            plan_verdict(Verdict::Failed, &target(), &facts(Some(r), None)),
            VerdictDecision::Ignore { .. }
        ));
    }

    #[test]
    fn only_event_names_with_a_verdict_count() {
        assert_eq!(
            Verdict::from_event_name("SERVICE_DEPLOYMENT_FAILED"),
            Some(Verdict::Failed)
        );
        assert_eq!(
            Verdict::from_event_name("SERVICE_DEPLOYMENT_COMPLETED"),
            Some(Verdict::Completed)
        );
        assert_eq!(
            Verdict::from_event_name("SERVICE_DEPLOYMENT_IN_PROGRESS"),
            None
        );
    }

    #[test]
    fn a_deployment_past_its_timeout_warns_once() {
        let s = service(CUR_ARN, "ecs-svc/1");
        let timeout = Duration::from_secs(1800);
        assert!(stale_primary(&s, 1_000 + 1_799, timeout).is_none());
        let d = stale_primary(&s, 1_000 + 1_800, timeout).unwrap();
        let page = plan_timeout(
            &target(),
            d,
            Some(&record()),
            2_800,
            vec!["unable to place a task".into()],
        )
        .unwrap();
        assert_eq!(page.severity, Severity::Warning);
        assert!(
            page.summary.contains("no verdict after 30 min"),
            "{}",
            page.summary
        );
        assert_eq!(page.lists[0].1, vec!["unable to place a task".to_string()]);
        let mut warned = record();
        warned.timeout_warned = Some("ecs-svc/1".into());
        assert!(plan_timeout(&target(), d, Some(&warned), 2_800, vec![]).is_none());
        assert!(
            plan_timeout(&target(), d, None, 2_800, vec![]).is_none(),
            "not ours"
        );
    }

    #[test]
    fn a_finished_deployment_is_not_stale() {
        let mut s = service(CUR_ARN, "ecs-svc/1");
        s.deployments.as_mut().unwrap()[0].rollout_state = Some(DeploymentRolloutState::Completed);
        assert!(stale_primary(&s, 1_000_000, Duration::from_secs(60)).is_none());
    }

    #[test]
    fn dry_run_pages_say_would_deploy() {
        let p = started_page(&target(), &record(), "", "", true);
        assert!(
            p.summary.starts_with("[dry-run] would deploy backend"),
            "{}",
            p.summary
        );
        assert!(p.dedup_key.contains("dry-run"));
    }
}
