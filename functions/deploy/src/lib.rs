//! deploy: an image pushed to ECR goes live on the ECS services mapped to it,
//! and on-call hears the verdict.
//!
//! One function takes three kinds of event:
//! * `ECR Image Action` (PUSH, SUCCESS): register a revision pinned to the digest
//!   and update every mapped service;
//! * `ECS Deployment State Change`: report the verdict of a deployment autopilot started;
//! * the `deploy-sweep` scheduled task: warn on-call about deployments that have run too long.
//!
//! This module only dispatches: each path reads state (`observe`), decides
//! (`plan`, pure) and acts (`apply`).

pub mod apply;
pub mod config;
pub mod detail;
pub mod error;
pub mod image;
pub mod observe;
pub mod plan;
pub mod taskdef;

use crate::apply::{collect, Apply};
use crate::config::{Config, ServiceTarget};
use crate::detail::{
    EcrImageAction, EcsDeploymentStateChange, ECR_IMAGE_ACTION, ECS_DEPLOYMENT_STATE_CHANGE,
};
use crate::plan::{push, sweep, verdict};
use crate::taskdef::{EcsRecord, Record};
use autopilot_shared::events::{self, Envelope, EventError, ScheduledTask, SCHEDULED_TASK};
use autopilot_shared::invocation::{self, Failure, Outcome, Report};
use autopilot_shared::{aws, Pager};
use aws_config::SdkConfig;
use lambda_runtime::LambdaEvent;
use serde_json::Value;

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
        } else if events::is(&envelope, SCHEDULED_TASK) {
            self.on_schedule(&envelope).await?
        } else {
            return Err(EventError::Unsupported {
                event_source: envelope.source.clone(),
                detail_type: envelope.detail_type.clone(),
                expected: format!(
                    "ECR Image Action, ECS Deployment State Change and the `{}` scheduled task",
                    sweep::TASK
                ),
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
        let (push, targets) = match push::accept(envelope, &detail, &self.config) {
            Ok(accepted) => accepted,
            Err(reason) => {
                return Ok(vec![Outcome::new(
                    &detail.repository_name,
                    "ignore",
                    reason,
                )])
            }
        };
        let concurrency = self.config.concurrency;
        let observed = observe::push(&self.ecs, &self.ecr, &push, &targets, concurrency).await?;
        let Some(times) = observed.times else {
            return Ok(vec![Outcome::new(
                &push.repository,
                "ignore",
                format!(
                    "image {} is no longer in repository {}",
                    push.digest, push.repository
                ),
            )]);
        };
        let decisions = observed
            .services
            .iter()
            .map(|(target, obs)| (*target, push::plan_service(&push, target, obs, &times)))
            .collect();
        self.apply().push(&push, decisions, concurrency).await
    }

    async fn on_deployment(&self, envelope: &Envelope) -> Result<Vec<Outcome>, DeployError> {
        let detail: EcsDeploymentStateChange =
            events::detail(envelope, ECS_DEPLOYMENT_STATE_CHANGE)?;
        let service_arn = envelope
            .resources
            .as_ref()
            .and_then(|r| r.first())
            .ok_or_else(|| EventError::Malformed {
                what: "ECS Deployment State Change".into(),
                path: "resources[0]".into(),
                message: "missing: it must be the service ARN".into(),
            })?;
        let (target, verdict) = match verdict::accept(&self.config, service_arn, &detail.event_name)
        {
            Ok(accepted) => accepted,
            Err((resource, reason)) => return Ok(vec![Outcome::new(resource, "ignore", reason)]),
        };
        let id = &detail.deployment_id;
        let observed =
            observe::verdict(&self.ecs, target, verdict, id, detail.reason.clone()).await?;
        let revision = match &observed {
            verdict::Observed::Found(f) => f.revision_arn.clone(),
            _ => String::new(),
        };
        let decision = verdict::plan_verdict(verdict, target, id, &observed);
        Ok(vec![
            self.apply()
                .verdict(target, decision, &revision, id)
                .await?,
        ])
    }

    async fn on_schedule(&self, envelope: &Envelope) -> Result<Vec<Outcome>, DeployError> {
        let task: ScheduledTask = events::detail(envelope, SCHEDULED_TASK)?;
        if task.task != sweep::TASK {
            return Err(EventError::Malformed {
                what: "Scheduled Task detail".into(),
                path: "task".into(),
                message: format!(
                    "`{}` is not a task of deploy's; it runs `{}`",
                    task.task,
                    sweep::TASK
                ),
            }
            .into());
        }
        let now = envelope
            .time
            .map_or_else(|| chrono::Utc::now().timestamp(), |t| t.timestamp());
        let targets: Vec<&ServiceTarget> = self.config.services.iter().collect();
        let mut services = observe::services(&self.ecs, &targets, self.config.concurrency).await;
        let mut results = Vec::new();
        let mut warned = std::collections::HashSet::new();
        for target in targets {
            let service = match services.remove(&target.service_key()) {
                Some(Ok(Some(s))) => s,
                Some(Err(e)) => {
                    results.push(Err(e.into()));
                    continue;
                }
                _ => continue,
            };
            let Some(deployment) = sweep::stale_primary(&service, now, self.config.deploy_timeout)
            else {
                continue;
            };
            let Some(revision) = deployment.task_definition() else {
                continue;
            };
            if !warned.insert(revision.to_string()) {
                continue;
            }
            let record = match observe::task_definition(&self.ecs, revision).await {
                Ok(td) => td.and_then(|(_, tags)| Record::from_tags(&tags)),
                Err(e) => {
                    results.push(Err(e.into()));
                    continue;
                }
            };
            let events = observe::service_events(&service);
            if let Some(page) =
                sweep::plan_timeout(target, deployment, record.as_ref(), now, events)
            {
                let id = deployment.id().unwrap_or_default();
                results.push(self.apply().timeout(target, &page, revision, id).await);
            }
        }
        let mut outcomes = collect(results)?;
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
