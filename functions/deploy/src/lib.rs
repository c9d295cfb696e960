//! deploy: an image pushed to ECR goes live on the ECS services mapped to it,
//! and on-call hears the verdict.
//!
//! One function takes three kinds of event:
//! * `ECR Image Action` (PUSH, SUCCESS): register a revision pinned to the digest
//!   and update every mapped service;
//! * `ECS Deployment State Change`: report the verdict of a deployment autopilot started;
//! * the `deploy-sweep` scheduled task: warn on-call about deployments that have run too long;
//! * the `deploy-heartbeat` scheduled task: read the topic, ECS, ECR (and RDS) and count a
//!   heartbeat (`autopilot_shared::metrics`).
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
pub mod snapshot;
pub mod taskdef;

use crate::apply::{collect, Apply};
use crate::config::{Config, ServiceTarget};
use crate::detail::{
    EcrImageAction, EcsDeploymentStateChange, ECR_IMAGE_ACTION, ECS_DEPLOYMENT_STATE_CHANGE,
};
use crate::plan::{push, sweep, verdict};
use autopilot_shared::aws::AwsCallError;
use autopilot_shared::events::{self, Envelope, EventError, ScheduledTask, SCHEDULED_TASK};
use autopilot_shared::invocation::{self, Failure, Outcome, Report};
use autopilot_shared::metrics::{self, name};
use autopilot_shared::{aws, Pager};
use aws_config::SdkConfig;
use lambda_runtime::LambdaEvent;
use serde_json::Value;

pub use error::DeployError;

/// RDS snapshot events: deploy takes the creation of its own pre-deploy snapshots.
pub const RDS_SNAPSHOT_EVENT: (&str, &str) = ("aws.rds", "RDS DB Snapshot Event");

/// The part of an RDS snapshot event deploy reads.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RdsSnapshotDetail {
    source_identifier: String,
    #[serde(default, rename = "EventID")]
    event_id: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The name pages and logs carry.
pub const FUNCTION: &str = "autopilot-deploy";

/// The heartbeat schedule's task (the `Heartbeat` schedule of DeployFunction in `template.yaml`).
pub const HEARTBEAT_TASK: &str = "deploy-heartbeat";

/// The pre-deploy snapshot the heartbeat reads: never taken, so RDS answers
/// with nothing, through the same grant deploy's snapshots use.
const HEARTBEAT_SNAPSHOT: &str = "autopilot-heartbeat-predeploy-0";

/// The deploy function: its configuration and clients, built once per cold start.
#[derive(Debug, Clone)]
pub struct Deployer {
    ecs: aws_sdk_ecs::Client,
    ecr: aws_sdk_ecr::Client,
    rds: aws_sdk_rds::Client,
    sns: aws_sdk_sns::Client,
    pager: Pager,
    config: Config,
}

impl Deployer {
    pub fn new(sdk: &SdkConfig, config: Config) -> Self {
        let sdk = aws::for_function(sdk, FUNCTION);
        Self {
            ecs: aws_sdk_ecs::Client::new(&sdk),
            ecr: aws_sdk_ecr::Client::new(&sdk),
            rds: aws_sdk_rds::Client::new(&sdk),
            sns: aws_sdk_sns::Client::new(&sdk),
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
        } else if events::is(&envelope, RDS_SNAPSHOT_EVENT) {
            self.on_snapshot(&envelope).await?
        } else {
            return Err(EventError::Unsupported {
                event_source: envelope.source.clone(),
                detail_type: envelope.detail_type.clone(),
                expected: format!(
                    "ECR Image Action, ECS Deployment State Change, RDS DB Snapshot Event (pre-deploy snapshots) and the `{}` and `{HEARTBEAT_TASK}` scheduled tasks",
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
        self.deploy(push, targets, None).await
    }

    /// The push path for `targets`: the pre-deploy snapshot gate, then observe, plan, apply.
    /// `resumed` is the pre-deploy snapshot `(db, id)` whose event resumed the push.
    async fn deploy(
        &self,
        push: push::Push,
        targets: Vec<&ServiceTarget>,
        resumed: Option<(&str, &str)>,
    ) -> Result<Vec<Outcome>, DeployError> {
        let (targets, mut outcomes, refused) = self.snapshot_gate(&push, targets, resumed).await?;
        let result = self
            .deploy_open(&push, targets, &mut outcomes, refused.is_some())
            .await;
        match (refused, result) {
            (None, Ok(())) => Ok(outcomes),
            // A snapshot that could not be taken fails the invocation (retried,
            // then dead-lettered) after the services that did not wait on it were deployed.
            (Some(e), Ok(())) => {
                outcomes.iter().for_each(Outcome::log);
                Err(e)
            }
            (None, Err(e)) => Err(e),
            (Some(a), Err(b)) => Err(DeployError::Several(vec![a, b])),
        }
    }

    /// Observes, plans and deploys `targets`; `failing`: the invocation fails anyway.
    async fn deploy_open(
        &self,
        push: &push::Push,
        targets: Vec<&ServiceTarget>,
        outcomes: &mut Vec<Outcome>,
        failing: bool,
    ) -> Result<(), DeployError> {
        if targets.is_empty() {
            return Ok(());
        }
        let concurrency = self.config.concurrency;
        let observed = observe::push(&self.ecs, &self.ecr, push, &targets, concurrency).await?;
        let Some(times) = observed.times else {
            outcomes.push(Outcome::new(
                &push.repository,
                "ignore",
                format!(
                    "image {} is no longer in repository {}",
                    push.digest, push.repository
                ),
            ));
            return Ok(());
        };
        let decisions = observed
            .services
            .iter()
            .map(|(target, obs)| (*target, push::plan_service(push, target, obs, &times)))
            .collect();
        let applied = self
            .apply()
            .push(push, decisions, concurrency, failing)
            .await?;
        applied
            .iter()
            .filter(|o| o.action == "deploy")
            .for_each(|_| metrics::count(FUNCTION, name::DEPLOYS_STARTED));
        outcomes.extend(applied);
        Ok(())
    }

    /// Holds back the services that ask for a snapshot first until it is
    /// available: takes it, waits for it, or pages that it failed. Returns the
    /// services that may be deployed now, and what was done for the others.
    #[allow(clippy::type_complexity)]
    async fn snapshot_gate<'c>(
        &self,
        push: &push::Push,
        targets: Vec<&'c ServiceTarget>,
        resumed: Option<(&str, &str)>,
    ) -> Result<(Vec<&'c ServiceTarget>, Vec<Outcome>, Option<DeployError>), DeployError> {
        let mut refused = None;
        let mut open = Vec::new();
        let mut outcomes = Vec::new();
        let mut by_db: Vec<(&str, Vec<&'c ServiceTarget>)> = Vec::new();
        for t in targets {
            match t.snapshot.as_deref() {
                None => open.push(t),
                Some(db) => match by_db.iter_mut().find(|(d, _)| *d == db) {
                    Some((_, list)) => list.push(t),
                    None => by_db.push((db, vec![t])),
                },
            }
        }
        for (db, waiting) in by_db {
            let id = match resumed {
                Some((resumed_db, resumed_id)) if resumed_db == db => resumed_id.to_string(),
                _ => snapshot::snapshot_id(push, db),
            };
            let services: Vec<String> = waiting.iter().map(|t| t.service_key()).collect();
            let found = snapshot::observe(&self.rds, &id).await?;
            let gate = match snapshot::gate(db, &id, found.as_ref()) {
                // Dry-run takes no snapshot, so it plans the deploy as if it were there.
                _ if self.config.common.dry_run => {
                    outcomes.extend(services.iter().map(|s| {
                        Outcome::new(
                            s,
                            "would-snapshot",
                            format!("snapshot {id} of {db} before deploying"),
                        )
                    }));
                    open.extend(waiting);
                    continue;
                }
                snapshot::Gate::Create { db, id } => {
                    match snapshot::create(&self.rds, push, &db, &id).await {
                        Ok(()) => snapshot::Gate::Wait(format!(
                            "took snapshot {id} of {db}; the deploy continues when it is available"
                        )),
                        Err(e) => {
                            self.pager
                                .send(&snapshot::blocked_page(
                                    push,
                                    &services,
                                    &db,
                                    &id,
                                    &e.to_string(),
                                ))
                                .await?;
                            outcomes.extend(services.iter().map(|s| {
                                Outcome::new(s, "refuse", e.to_string()).with("snapshot", &id)
                            }));
                            refused.get_or_insert(DeployError::from(e));
                            continue;
                        }
                    }
                }
                gate => gate,
            };
            match gate {
                snapshot::Gate::Open => open.extend(waiting),
                snapshot::Gate::Wait(reason) => outcomes.extend(
                    services
                        .iter()
                        .map(|s| Outcome::new(s, "wait", reason.clone()).with("snapshot", &id)),
                ),
                snapshot::Gate::Blocked(reason) => {
                    self.pager
                        .send(&snapshot::blocked_page(push, &services, db, &id, &reason))
                        .await?;
                    outcomes.extend(
                        services.iter().map(|s| {
                            Outcome::new(s, "refuse", reason.clone()).with("snapshot", &id)
                        }),
                    );
                }
                snapshot::Gate::Create { .. } => {}
            }
        }
        Ok((open, outcomes, refused))
    }

    /// A pre-deploy snapshot was created: resume the push it was taken for.
    async fn on_snapshot(&self, envelope: &Envelope) -> Result<Vec<Outcome>, DeployError> {
        let detail: RdsSnapshotDetail = events::detail(envelope, RDS_SNAPSHOT_EVENT)?;
        let id = detail.source_identifier.trim();
        let created = match detail.event_id.as_deref().filter(|e| !e.is_empty()) {
            Some(e) => e == "RDS-EVENT-0042",
            None => detail
                .message
                .as_deref()
                .is_some_and(|m| m.starts_with("Manual snapshot created")),
        };
        if !created || !autopilot_shared::backup::is_pre_deploy_id(id) {
            return Ok(vec![Outcome::new(
                id,
                "ignore",
                "not the creation of one of deploy's pre-deploy snapshots",
            )]);
        }
        let Some(snap) = snapshot::observe(&self.rds, id).await? else {
            return Ok(vec![Outcome::new(
                id,
                "ignore",
                "the snapshot no longer exists",
            )]);
        };
        let account = envelope.account.clone().unwrap_or_default();
        let region = envelope.region.clone().unwrap_or_default();
        let Some(push) = snapshot::push_of(&snap, &account, &region) else {
            return Ok(vec![Outcome::new(
                id,
                "ignore",
                "the snapshot does not carry deploy's tags for a push",
            )]);
        };
        let targets: Vec<&ServiceTarget> = self
            .config
            .targets_for(&push.repository, &push.tag)
            .into_iter()
            .filter(|t| t.snapshot.as_deref() == Some(snap.db.as_str()))
            .collect();
        if targets.is_empty() {
            return Ok(vec![Outcome::new(
                id,
                "ignore",
                format!(
                    "no service fed by {}:{} asks for a snapshot of {}",
                    push.repository, push.tag, snap.db
                ),
            )]);
        }
        self.deploy(push, targets, Some((snap.db.as_str(), snap.id.as_str())))
            .await
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
        let outcome = self
            .apply()
            .verdict(target, decision, &revision, id)
            .await?;
        // A verdict told to on-call is one of autopilot's deployments ending.
        if outcome.action == "notify" {
            metrics::count(
                FUNCTION,
                match verdict {
                    verdict::Verdict::Completed => name::DEPLOYS_SUCCEEDED,
                    verdict::Verdict::Failed => name::DEPLOYS_FAILED,
                },
            );
        }
        Ok(vec![outcome])
    }

    async fn on_schedule(&self, envelope: &Envelope) -> Result<Vec<Outcome>, DeployError> {
        let task: ScheduledTask = events::detail(envelope, SCHEDULED_TASK)?;
        if task.task == HEARTBEAT_TASK {
            return self.heartbeat().await;
        }
        if task.task != sweep::TASK {
            return Err(EventError::Malformed {
                what: "Scheduled Task detail".into(),
                path: "task".into(),
                message: format!(
                    "`{}` is not a task of deploy's; it runs `{}` and `{HEARTBEAT_TASK}`",
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
            let key = target.service_key();
            let (record, claim) =
                match observe::listed_deployment(&self.ecs, &service, deployment, &key).await {
                    Ok(found) => found,
                    Err(e) => {
                        results.push(Err(e.into()));
                        continue;
                    }
                };
            let events = observe::service_events(&service);
            let id = deployment.id().unwrap_or_default();
            match sweep::plan_timeout(
                target,
                deployment,
                record.as_ref(),
                claim.as_ref(),
                now,
                events,
            ) {
                Ok(warning) => {
                    results.push(self.apply().timeout(target, &warning, revision, id).await)
                }
                Err(reason) => {
                    tracing::info!(action = "ignore", resource = %key, deployment_id = %id, reason = %reason, "no timeout warning")
                }
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

    /// The heartbeat: one read of each dependency deploy writes to or reads
    /// from, with the permissions it already uses (and GetTopicAttributes on the
    /// topic); writes nothing and pages no one. Counts a heartbeat when all answer.
    async fn heartbeat(&self) -> Result<Vec<Outcome>, DeployError> {
        invocation::record_resource(HEARTBEAT_TASK);
        let mut checks = vec![metrics::check_topic(&self.sns, &self.config.common.topic_arn).await];
        // One DescribeServices per cluster, of at most 10 of its mapped services.
        let mut clusters: Vec<(&str, Vec<&str>)> = Vec::new();
        for t in &self.config.services {
            match clusters.iter_mut().find(|(c, _)| *c == t.cluster) {
                Some((_, services)) if services.len() < 10 => services.push(&t.service),
                Some(_) => {}
                None => clusters.push((&t.cluster, vec![&t.service])),
            }
        }
        for (cluster, services) in clusters {
            let result = self
                .ecs
                .describe_services()
                .cluster(cluster)
                .set_services(Some(services.iter().map(|s| s.to_string()).collect()))
                .send()
                .await
                .map(|_| ())
                .map_err(AwsCallError::of("DescribeServices", cluster));
            checks.push((format!("ECS cluster {cluster}"), result));
        }
        if let Some(t) = self.config.services.first() {
            let result = self
                .ecr
                .describe_images()
                .repository_name(&t.repository)
                .max_results(1)
                .send()
                .await
                .map(|_| ())
                .map_err(AwsCallError::of("DescribeImages", &t.repository));
            checks.push((format!("ECR repository {}", t.repository), result));
        }
        if self.config.services.iter().any(|t| t.snapshot.is_some()) {
            let result = snapshot::observe(&self.rds, HEARTBEAT_SNAPSHOT)
                .await
                .map(|_| ());
            checks.push(("RDS (pre-deploy snapshots)".to_string(), result));
        }
        Ok(metrics::heartbeat(FUNCTION, checks))
    }
}
