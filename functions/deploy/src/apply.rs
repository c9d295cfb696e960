//! Carries decisions out. The only module that changes AWS or pages on-call, and
//! where dry-run is enforced.
//!
//! Order matters for crash safety: register, update the service, page. A crash
//! at any point leaves a state the next delivery of the same event finishes (see
//! `plan::push::plan_service`). A push records no deployment id: the verdict
//! does, having recognised the deployment from what ECS says
//! (`plan::adopt`). The paths that finish an interrupted push (reuse, announce)
//! record it at once, and so does a push that is about to fail, so that Lambda's
//! retry finds its finished services announced.

use crate::config::ServiceTarget;
use crate::error::DeployError;
use crate::plan::pages;
use crate::plan::push::{Decision, Push, Revision};
use crate::plan::sweep::Warning;
use crate::plan::verdict;
use crate::taskdef::{ecs_tag, register_request, tag, NewRevision, Record};
use autopilot_shared::aws::{AwsCallError, NotRepeatedIfSent};
use autopilot_shared::invocation::Outcome;
use autopilot_shared::Pager;
use aws_sdk_ecs::types::DeploymentConfiguration;
use futures::stream::{self, StreamExt};

pub struct Apply<'a> {
    pub ecs: &'a aws_sdk_ecs::Client,
    pub pager: &'a Pager,
    pub dry_run: bool,
}

/// A deployment a push started and announced but did not record on its revision.
struct Unrecorded {
    revision: String,
    deployment_id: String,
}

impl Apply<'_> {
    /// Carries out every service's decision, at most `concurrency` at a time. Every
    /// service is finished; if any failed, the invocation fails after the rest are
    /// done, so the retry finds those already deployed and does only what is left.
    /// `failing`: the invocation fails anyway (a pre-deploy snapshot was refused).
    pub async fn push(
        &self,
        push: &Push,
        decisions: Vec<(&ServiceTarget, Decision)>,
        concurrency: usize,
        failing: bool,
    ) -> Result<Vec<Outcome>, DeployError> {
        let results: Vec<Result<(Outcome, Option<Unrecorded>), DeployError>> =
            stream::iter(decisions)
                .map(|(target, decision)| self.decision(push, target, decision))
                .buffered(concurrency)
                .collect()
                .await;
        if failing || results.iter().any(Result::is_err) {
            // Lambda delivers this push again: record the deployments this attempt
            // started and announced, so the retry skips them instead of announcing
            // them a second time. A failure here costs only that second page.
            for (outcome, started) in results.iter().flatten() {
                let Some(s) = started else { continue };
                if let Err(e) = self.record_deployment(&s.revision, &s.deployment_id).await {
                    tracing::warn!(action = "record", resource = %outcome.resource, error = %e, reason = "the retry will announce this deployment again", "deployment id not recorded");
                }
            }
        }
        collect(results.into_iter().map(|r| r.map(|(o, _)| o)).collect())
    }

    /// Deploys, announces, refuses or retries as decided; a skip does nothing.
    /// Returns the outcome, and the deployment started but not recorded, if any.
    async fn decision(
        &self,
        push: &Push,
        target: &ServiceTarget,
        decision: Decision,
    ) -> Result<(Outcome, Option<Unrecorded>), DeployError> {
        let resource = target.service_key();
        let outcome = Outcome::new(&resource, decision.action(), decision.reason());
        match decision {
            Decision::Skip { .. } => Ok((outcome, None)),
            Decision::Refuse { reason } => {
                self.pager
                    .send(&pages::refused(push, target, &reason))
                    .await?;
                Ok((outcome, None))
            }
            Decision::Retry { reason, error } => {
                self.pager
                    .send(&pages::refused(push, target, &reason))
                    .await?;
                Err(error.into())
            }
            Decision::Announce {
                revision_arn,
                deployment_id,
                record,
                ..
            } => {
                self.started(target, &record, &revision_arn, &deployment_id)
                    .await?;
                self.record_deployment(&revision_arn, &deployment_id)
                    .await?;
                Ok((
                    outcome
                        .with("revision", revision_arn)
                        .with("deployment_id", deployment_id),
                    None,
                ))
            }
            Decision::Deploy { record, .. } if self.dry_run => {
                self.pager
                    .send(&pages::started(target, &record, "", "", true))
                    .await?;
                Ok((
                    Outcome::new(&resource, "would-deploy", &outcome.reason),
                    None,
                ))
            }
            Decision::Deploy {
                revision,
                deployment_configuration,
                record,
                ..
            } => {
                let (arn, retried) = match revision {
                    Revision::Reuse(arn) => (arn, true),
                    Revision::Register(new) => (self.register(&new).await?, false),
                };
                let deployment_id = self
                    .update_service(target, &arn, *deployment_configuration)
                    .await?;
                // A retried push deploys later than its revision was registered, maybe
                // past the window in which its verdict would adopt it: record it now,
                // before the page, so a failed page or a crash cannot leave it
                // unrecorded (and unadoptable). The cost: if the page then fails, the
                // retry finds the deployment recorded and does not re-announce it;
                // its verdict still pages.
                if retried {
                    self.record_deployment(&arn, &deployment_id).await?;
                }
                self.started(target, &record, &arn, &deployment_id).await?;
                let unrecorded = if retried {
                    None
                } else {
                    Some(Unrecorded {
                        revision: arn.clone(),
                        deployment_id: deployment_id.clone(),
                    })
                };
                Ok((
                    outcome
                        .with("revision", arn)
                        .with("deployment_id", deployment_id),
                    unrecorded,
                ))
            }
        }
    }

    async fn register(&self, new: &NewRevision) -> Result<String, DeployError> {
        let family = new.source.family().unwrap_or_default().to_string();
        // Not retried by the SDK once sent: RegisterTaskDefinition has no client token,
        // so a retry after a lost answer registers a second revision. The invocation
        // fails instead, and Lambda's retry reuses the revision if ECS has it.
        let out = register_request(self.ecs.register_task_definition(), new)
            .customize()
            .config_override(
                aws_sdk_ecs::config::Builder::default().retry_classifier(NotRepeatedIfSent),
            )
            .send()
            .await
            .map_err(AwsCallError::of("RegisterTaskDefinition", &family))?;
        let arn = out
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .ok_or_else(|| {
                AwsCallError::new(
                    "RegisterTaskDefinition",
                    family.clone(),
                    "the response has no task definition ARN",
                )
            })?
            .to_string();
        tracing::info!(action = "register", resource = %family, revision = %arn, image = %new.image, reason = "new image for the mapped container", "registered task definition");
        Ok(arn)
    }

    /// Points the service at `revision` and returns the id of the deployment ECS started.
    async fn update_service(
        &self,
        target: &ServiceTarget,
        revision: &str,
        config: DeploymentConfiguration,
    ) -> Result<String, DeployError> {
        let resource = target.service_key();
        let out = self
            .ecs
            .update_service()
            .cluster(&target.cluster)
            .service(&target.service)
            .task_definition(revision)
            .deployment_configuration(config)
            .send()
            .await
            .map_err(AwsCallError::of("UpdateService", &resource))?;
        let deployments = out.service().map(|s| s.deployments()).unwrap_or_default();
        let id = deployments
            .iter()
            .find(|d| d.status() == Some("PRIMARY") && d.task_definition() == Some(revision))
            .or_else(|| deployments.iter().find(|d| d.status() == Some("PRIMARY")))
            .and_then(|d| d.id())
            .ok_or_else(|| {
                AwsCallError::new(
                    "UpdateService",
                    resource.clone(),
                    "the response names no PRIMARY deployment",
                )
            })?
            .to_string();
        tracing::info!(action = "update_service", resource = %resource, revision = %revision, deployment_id = %id, reason = "point the service at the new revision", "service updated");
        Ok(id)
    }

    /// Tells on-call the deploy started.
    async fn started(
        &self,
        target: &ServiceTarget,
        record: &Record,
        revision: &str,
        deployment_id: &str,
    ) -> Result<(), DeployError> {
        self.pager
            .send(&pages::started(
                target,
                record,
                revision,
                deployment_id,
                false,
            ))
            .await?;
        Ok(())
    }

    /// Records the deployment id on the revision.
    async fn record_deployment(
        &self,
        revision: &str,
        deployment_id: &str,
    ) -> Result<(), DeployError> {
        self.tag(revision, &[(tag::DEPLOYMENT, deployment_id.to_string())])
            .await
    }

    /// Tells on-call a verdict and records it on the revision.
    pub async fn verdict(
        &self,
        target: &ServiceTarget,
        decision: verdict::Decision,
        revision: &str,
        deployment_id: &str,
    ) -> Result<Outcome, DeployError> {
        let key = target.service_key();
        let outcome = match decision {
            verdict::Decision::Ignore { reason } => Outcome::new(&key, "ignore", reason),
            verdict::Decision::Notify { page, tags, reason } => {
                self.pager.send(&page).await?;
                self.tag(revision, &tags).await?;
                Outcome::new(&key, "notify", reason)
            }
        };
        Ok(outcome
            .with("revision", revision)
            .with("deployment_id", deployment_id))
    }

    /// Warns on-call that a deployment has no verdict and records the warning
    /// (and the deployment, when the sweep adopted it).
    pub async fn timeout(
        &self,
        target: &ServiceTarget,
        warning: &Warning,
        revision: &str,
        deployment_id: &str,
    ) -> Result<Outcome, DeployError> {
        self.pager.send(&warning.page).await?;
        self.tag(revision, &warning.tags).await?;
        Ok(
            Outcome::new(target.service_key(), "warn", &warning.page.summary)
                .with("revision", revision)
                .with("deployment_id", deployment_id),
        )
    }

    /// Adds autopilot tags to a revision autopilot registered. Skipped in dry-run.
    async fn tag(&self, revision: &str, tags: &[(&str, String)]) -> Result<(), DeployError> {
        if self.dry_run || tags.is_empty() {
            return Ok(());
        }
        self.ecs
            .tag_resource()
            .resource_arn(revision)
            .set_tags(Some(tags.iter().map(|(k, v)| ecs_tag(k, v)).collect()))
            .send()
            .await
            .map_err(AwsCallError::of("TagResource", revision))?;
        Ok(())
    }
}

/// Keeps every outcome; fails the invocation if any resource failed, so it is
/// retried. The finished outcomes are logged first, since the failure replaces them.
pub fn collect(results: Vec<Result<Outcome, DeployError>>) -> Result<Vec<Outcome>, DeployError> {
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
