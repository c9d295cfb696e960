//! deploy: an image pushed to ECR goes live on the ECS services mapped to it,
//! and on-call hears the verdict.
//!
//! One function takes three kinds of EventBridge event:
//! * `ECR Image Action` (PUSH, SUCCESS): register a revision pinned to the digest
//!   and update every mapped service, concurrently;
//! * `ECS Deployment State Change`: report the verdict of a deployment autopilot started;
//! * `Scheduled Event`: warn on-call about deployments that have run too long.
//!
//! Each path reads state (`observe`), decides (`plan`, pure) and acts (`apply`).

pub mod apply;
pub mod config;
pub mod detail;
pub mod error;
pub mod image;
pub mod observe;
pub mod plan;
pub mod taskdef;

use crate::apply::Apply;
use crate::config::{Config, ServiceTarget};
use crate::detail::{
    EcrImageAction, EcsDeploymentStateChange, ECR_IMAGE_ACTION, ECS_DEPLOYMENT_STATE_CHANGE,
    SCHEDULED_EVENT,
};
use crate::image::ImageRef;
use crate::plan::{Observed, Push, Verdict, VerdictDecision, VerdictFacts};
use crate::taskdef::{container_image, family_of, tag, Record};
use autopilot_shared::events::{self, Envelope, EventError};
use autopilot_shared::invocation::{self, Failure, Outcome, Report};
use autopilot_shared::{aws, Pager};
use aws_config::SdkConfig;
use futures::future::join_all;
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use std::collections::BTreeMap;

pub use error::DeployError;

/// The name pages and logs carry.
pub const FUNCTION: &str = "autopilot-deploy";

/// The deploy function: its configuration and clients, built once per cold start.
#[derive(Debug, Clone)]
pub struct Deployer {
    ecs: aws_sdk_ecs::Client,
    ecr: aws_sdk_ecr::Client,
    pager: Pager,
    config: Config,
}

impl Deployer {
    pub fn new(sdk: &SdkConfig, config: Config) -> Self {
        let sdk = aws::for_function(sdk, FUNCTION);
        Self {
            ecs: aws_sdk_ecs::Client::new(&sdk),
            ecr: aws_sdk_ecr::Client::new(&sdk),
            pager: Pager::for_function(&sdk, &config.common, FUNCTION),
            config,
        }
    }

    /// The Lambda handler.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Report, Failure> {
        // Boxed: the handler's future type is deep enough to exceed the compiler's layout limit.
        let work = Box::pin(self.dispatch(event.payload));
        invocation::run(FUNCTION, &event.context, work).await
    }

    async fn dispatch(&self, payload: Value) -> Result<Report, DeployError> {
        let envelope = events::envelope(payload)?;
        let outcomes = if events::is(&envelope, ECR_IMAGE_ACTION) {
            self.on_push(&envelope).await?
        } else if events::is(&envelope, ECS_DEPLOYMENT_STATE_CHANGE) {
            self.on_deployment(&envelope).await?
        } else if events::is(&envelope, SCHEDULED_EVENT) {
            self.on_schedule(&envelope).await?
        } else {
            return Err(EventError::Unsupported {
                event_source: envelope.source.clone(),
                detail_type: envelope.detail_type.clone(),
                expected: "ECR Image Action, ECS Deployment State Change and Scheduled Event"
                    .into(),
            }
            .into());
        };
        Ok(Report {
            event: envelope.detail_type.clone(),
            dry_run: self.config.common.dry_run,
            outcomes,
        })
    }

    fn apply(&self) -> Apply<'_> {
        Apply {
            ecs: &self.ecs,
            pager: &self.pager,
            dry_run: self.config.common.dry_run,
        }
    }

    async fn on_push(&self, envelope: &Envelope) -> Result<Vec<Outcome>, DeployError> {
        let detail: EcrImageAction = events::detail(envelope, ECR_IMAGE_ACTION)?;
        let repo = detail.repository_name.clone();
        let ignore = |reason: String| Ok(vec![Outcome::new(&repo, "ignore", &reason)]);
        if detail.action_type != "PUSH" {
            return ignore(format!("{} of {repo} is not a push", detail.action_type));
        }
        if detail.result != "SUCCESS" {
            return ignore(format!(
                "push to {repo} did not succeed ({})",
                detail.result
            ));
        }
        if !self.config.maps_repository(&repo) {
            return ignore(format!("repository {repo} is not mapped to any service"));
        }
        let Some(tag) = detail.image_tag.clone().filter(|t| !t.is_empty()) else {
            return ignore(format!(
                "untagged push of {} to {repo} (e.g. one platform of a multi-arch image); deploys follow tags",
                detail.image_digest
            ));
        };
        let targets: Vec<&ServiceTarget> = self.config.targets_for(&repo, &tag).collect();
        if targets.is_empty() {
            return ignore(format!(
                "tag {tag} matches no tag pattern mapped for {repo}"
            ));
        }
        let push = Push {
            repository: repo.clone(),
            tag: tag.clone(),
            digest: detail.image_digest.clone(),
            account: envelope.account.clone().unwrap_or_default(),
            region: envelope.region.clone().unwrap_or_default(),
        };

        let observed = self.observe_services(&targets).await?;
        let running: Vec<_> = observed
            .iter()
            .filter_map(|(t, o)| match o {
                Observed::Found(f) => t
                    .containers
                    .first()
                    .and_then(|c| container_image(&f.current, c))
                    .and_then(ImageRef::parse)
                    .filter(|r| r.repository == push.repository)
                    .and_then(|r| r.ecr_id()),
                Observed::Unavailable(_) => None,
            })
            .collect();
        let Some(times) =
            observe::push_times(&self.ecr, &push.account, &repo, &push.digest, running).await?
        else {
            return ignore(format!(
                "image {} is no longer in repository {repo}",
                push.digest
            ));
        };

        let apply = self.apply();
        let results = join_all(observed.iter().map(|(target, obs)| {
            let decision = plan::plan_service(&push, target, obs, &times);
            apply.decision(&push, target, decision)
        }))
        .await;
        collect(results)
    }

    /// Reads every target service and its task definitions, concurrently.
    async fn observe_services<'t>(
        &self,
        targets: &[&'t ServiceTarget],
    ) -> Result<Vec<(&'t ServiceTarget, Observed)>, DeployError> {
        let by_cluster = services_by_cluster(targets);
        let described = join_all(by_cluster.iter().map(|(cluster, names)| async move {
            observe::services(&self.ecs, cluster, names)
                .await
                .map(|s| (*cluster, s))
        }))
        .await;
        let mut services = BTreeMap::new();
        for r in described {
            let (cluster, found) = r?;
            services.insert(cluster, found);
        }
        let observed = join_all(targets.iter().map(|t| {
            let service = services
                .get(t.cluster.as_str())
                .and_then(|s| s.get(&t.service))
                .cloned();
            async move { self.observe_service(t, service).await.map(|o| (*t, o)) }
        }))
        .await;
        observed.into_iter().collect()
    }

    async fn observe_service(
        &self,
        target: &ServiceTarget,
        service: Option<aws_sdk_ecs::types::Service>,
    ) -> Result<Observed, DeployError> {
        let key = target.service_key();
        let Some(service) = service else {
            return Ok(Observed::Unavailable(format!("service {key} not found")));
        };
        if service.status() != Some("ACTIVE") {
            return Ok(Observed::Unavailable(format!(
                "service {key} is {}",
                service.status().unwrap_or("in an unknown state")
            )));
        }
        let Some(current_arn) = service.task_definition().map(str::to_string) else {
            return Ok(Observed::Unavailable(format!(
                "service {key} has no task definition"
            )));
        };
        let family = family_of(&current_arn).unwrap_or_default().to_string();
        let (current, latest) = tokio::try_join!(
            observe::task_definition(&self.ecs, &current_arn),
            observe::task_definition(&self.ecs, &family),
        )?;
        let Some((current, current_tags)) = current else {
            return Ok(Observed::Unavailable(format!(
                "task definition {current_arn} of {key} not found"
            )));
        };
        let latest =
            latest.filter(|(td, _)| td.task_definition_arn() != Some(current_arn.as_str()));
        Ok(Observed::Found(Box::new(plan::Found {
            service,
            current,
            current_tags,
            latest,
        })))
    }

    async fn on_deployment(&self, envelope: &Envelope) -> Result<Vec<Outcome>, DeployError> {
        let detail: EcsDeploymentStateChange =
            events::detail(envelope, ECS_DEPLOYMENT_STATE_CHANGE)?;
        let service_arn = envelope
            .resources
            .as_ref()
            .and_then(|r| r.first())
            .cloned()
            .ok_or_else(|| EventError::Malformed {
                what: "ECS Deployment State Change".into(),
                path: "resources[0]".into(),
                message: "missing: it must be the service ARN".into(),
            })?;
        let Some(target) = self.target_for_service_arn(&service_arn) else {
            return Ok(vec![Outcome::new(
                &service_arn,
                "ignore",
                "service is not mapped to any repository",
            )]);
        };
        let key = target.service_key();
        let Some(verdict) = Verdict::from_event_name(&detail.event_name) else {
            return Ok(vec![Outcome::new(
                &key,
                "ignore",
                format!("{} carries no verdict", detail.event_name),
            )]);
        };
        let services = observe::services(
            &self.ecs,
            &target.cluster,
            std::slice::from_ref(&target.service),
        )
        .await?;
        let Some(service) = services.get(&target.service) else {
            return Ok(vec![Outcome::new(
                &key,
                "ignore",
                "service no longer exists",
            )]);
        };
        let Some((revision_arn, record)) = self
            .deployment_revision(service, &detail.deployment_id)
            .await?
        else {
            return Ok(vec![Outcome::new(
                &key,
                "ignore",
                format!(
                    "deployment {} is not one autopilot started",
                    detail.deployment_id
                ),
            )]);
        };
        let wanted = record
            .as_ref()
            .is_some_and(|r| !r.has_verdict_for(&detail.deployment_id));
        let stopped_tasks = if wanted && verdict == Verdict::Failed {
            observe::stopped_tasks(&self.ecs, &target.cluster, &detail.deployment_id).await?
        } else {
            Vec::new()
        };
        let facts = VerdictFacts {
            deployment_id: detail.deployment_id.clone(),
            reason: detail.reason.clone(),
            revision_arn: revision_arn.clone(),
            record,
            primary_revision: service
                .deployments()
                .iter()
                .find(|d| d.status() == Some("PRIMARY"))
                .and_then(|d| d.task_definition())
                .map(str::to_string),
            stopped_tasks,
            service_events: observe::service_events(service),
        };
        let outcome = match plan::plan_verdict(verdict, target, &facts) {
            VerdictDecision::Ignore { reason } => Outcome::new(&key, "ignore", &reason),
            VerdictDecision::Notify {
                page,
                verdict_tag,
                reason,
            } => {
                self.pager.send(&page).await?;
                self.apply()
                    .tag(&revision_arn, tag::VERDICT, &verdict_tag)
                    .await?;
                Outcome::new(&key, "notify", &reason)
            }
        };
        Ok(vec![outcome
            .with("revision", revision_arn)
            .with("deployment_id", detail.deployment_id)])
    }

    /// The configured target an ECS service ARN names. Old-format ARNs carry no
    /// cluster, so they match on the service name alone.
    fn target_for_service_arn(&self, arn: &str) -> Option<&ServiceTarget> {
        let path = arn.split_once(":service/").map(|(_, p)| p)?;
        let (cluster, service) = match path.split_once('/') {
            Some((c, s)) => (Some(c), s),
            None => (None, path),
        };
        self.config
            .services
            .iter()
            .find(|t| t.service == service && cluster.is_none_or(|c| c == t.cluster))
    }

    /// The revision a deployment runs and autopilot's record of it. The deployment
    /// is looked up on the service; one that ECS has already dropped (a late or
    /// repeated event) is found by the deployment id tagged on recent revisions.
    async fn deployment_revision(
        &self,
        service: &aws_sdk_ecs::types::Service,
        deployment_id: &str,
    ) -> Result<Option<(String, Option<Record>)>, DeployError> {
        if let Some(arn) = service
            .deployments()
            .iter()
            .find(|d| d.id() == Some(deployment_id))
            .and_then(|d| d.task_definition())
        {
            let record = observe::task_definition(&self.ecs, arn)
                .await?
                .and_then(|(_, tags)| Record::from_tags(&tags));
            return Ok(Some((arn.to_string(), record)));
        }
        let Some(family) = service
            .task_definition()
            .and_then(family_of)
            .map(str::to_string)
        else {
            return Ok(None);
        };
        let Some((latest, tags)) = observe::task_definition(&self.ecs, &family).await? else {
            return Ok(None);
        };
        let mut candidate = Some((
            latest.task_definition_arn().unwrap_or_default().to_string(),
            tags,
        ));
        let mut revision = latest.revision();
        for _ in 0..RECENT_REVISIONS {
            let Some((arn, tags)) = candidate.take() else {
                break;
            };
            let record = Record::from_tags(&tags);
            if record.as_ref().and_then(|r| r.deployment_id.as_deref()) == Some(deployment_id) {
                return Ok(Some((arn, record)));
            }
            revision -= 1;
            if revision < 1 {
                break;
            }
            candidate = observe::task_definition(&self.ecs, &format!("{family}:{revision}"))
                .await?
                .map(|(td, tags)| {
                    (
                        td.task_definition_arn().unwrap_or_default().to_string(),
                        tags,
                    )
                });
        }
        Ok(None)
    }

    async fn on_schedule(&self, envelope: &Envelope) -> Result<Vec<Outcome>, DeployError> {
        let now = envelope
            .time
            .map_or_else(|| chrono::Utc::now().timestamp(), |t| t.timestamp());
        let targets: Vec<&ServiceTarget> = self.config.services.iter().collect();
        let by_cluster = services_by_cluster(&targets);
        let mut outcomes = Vec::new();
        let mut warned = std::collections::HashSet::new();
        for (cluster, names) in &by_cluster {
            let services = observe::services(&self.ecs, cluster, names).await?;
            for target in targets.iter().filter(|t| t.cluster == *cluster) {
                let Some(service) = services.get(&target.service) else {
                    continue;
                };
                let Some(deployment) =
                    plan::stale_primary(service, now, self.config.deploy_timeout)
                else {
                    continue;
                };
                let Some(revision) = deployment.task_definition() else {
                    continue;
                };
                if !warned.insert(revision.to_string()) {
                    continue;
                }
                let record = observe::task_definition(&self.ecs, revision)
                    .await?
                    .and_then(|(_, tags)| Record::from_tags(&tags));
                let events = observe::service_events(service);
                let key = target.service_key();
                if let Some(page) =
                    plan::plan_timeout(target, deployment, record.as_ref(), now, events)
                {
                    let id = deployment.id().unwrap_or_default();
                    self.pager.send(&page).await?;
                    self.apply().tag(revision, tag::TIMEOUT_WARNED, id).await?;
                    outcomes.push(
                        Outcome::new(&key, "warn", &page.summary)
                            .with("revision", revision)
                            .with("deployment_id", id),
                    );
                }
            }
        }
        if outcomes.is_empty() {
            outcomes.push(Outcome::new(
                "deployments",
                "ignore",
                "no deployment of autopilot's is past its timeout",
            ));
        }
        Ok(outcomes)
    }
}

/// The distinct service names of `targets`, per cluster.
fn services_by_cluster<'t>(targets: &[&'t ServiceTarget]) -> BTreeMap<&'t str, Vec<String>> {
    let mut by_cluster: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for t in targets {
        let names = by_cluster.entry(t.cluster.as_str()).or_default();
        if !names.contains(&t.service) {
            names.push(t.service.clone());
        }
    }
    by_cluster
}

/// How many recent revisions a late verdict event searches for its deployment.
const RECENT_REVISIONS: usize = 5;

/// Keeps every outcome; fails the invocation if any service failed, so it is retried.
fn collect(results: Vec<Result<Outcome, DeployError>>) -> Result<Vec<Outcome>, DeployError> {
    let mut outcomes = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(o) => outcomes.push(o),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        return Ok(outcomes);
    }
    outcomes.iter().for_each(Outcome::log);
    if errors.len() == 1 {
        return Err(errors.remove(0));
    }
    Err(DeployError::Several(errors))
}
