//! Carries decisions out. The only module that changes AWS or pages on-call.
//!
//! Order matters for crash safety: register, update the service, page, then
//! record the deployment id. A crash at any point leaves a state the next
//! delivery of the same event finishes (see `plan::plan_service`).

use crate::config::ServiceTarget;
use crate::error::DeployError;
use crate::plan::{refused_page, started_page, Decision, Push, Revision};
use crate::taskdef::{ecs_tag, register_request, tag, Record};
use autopilot_shared::aws::AwsCallError;
use autopilot_shared::invocation::Outcome;
use autopilot_shared::Pager;
use aws_sdk_ecs::types::DeploymentConfiguration;

pub struct Apply<'a> {
    pub ecs: &'a aws_sdk_ecs::Client,
    pub pager: &'a Pager,
    pub dry_run: bool,
}

impl Apply<'_> {
    /// Deploys, announces or refuses as decided; a skip does nothing.
    pub async fn decision(
        &self,
        push: &Push,
        target: &ServiceTarget,
        decision: Decision,
    ) -> Result<Outcome, DeployError> {
        let resource = target.service_key();
        let mut outcome = Outcome::new(&resource, decision.action(), decision.reason());
        match decision {
            Decision::Skip { .. } => {}
            Decision::Refuse { reason } => {
                self.pager
                    .send(&refused_page(push, target, &reason))
                    .await?;
            }
            Decision::Announce {
                revision_arn,
                deployment_id,
                record,
                ..
            } => {
                self.announce(target, &record, &revision_arn, &deployment_id)
                    .await?;
                outcome = outcome
                    .with("revision", revision_arn)
                    .with("deployment_id", deployment_id);
            }
            Decision::Deploy { record, .. } if self.dry_run => {
                self.pager
                    .send(&started_page(target, &record, "", "", true))
                    .await?;
                outcome.action = "would-deploy".into();
            }
            Decision::Deploy {
                revision,
                deployment_configuration,
                record,
                ..
            } => {
                let arn = match revision {
                    Revision::Reuse(arn) => arn,
                    Revision::Register(new) => self.register(&new).await?,
                };
                let deployment_id = self
                    .update_service(target, &arn, *deployment_configuration)
                    .await?;
                self.announce(target, &record, &arn, &deployment_id).await?;
                outcome = outcome
                    .with("revision", arn)
                    .with("deployment_id", deployment_id);
            }
        }
        Ok(outcome)
    }

    async fn register(&self, new: &crate::taskdef::NewRevision) -> Result<String, DeployError> {
        let family = new.source.family().unwrap_or_default().to_string();
        let out = register_request(self.ecs.register_task_definition(), new)
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

    /// Tells on-call the deploy started, then records the deployment id on the revision.
    async fn announce(
        &self,
        target: &ServiceTarget,
        record: &Record,
        revision: &str,
        deployment_id: &str,
    ) -> Result<(), DeployError> {
        self.pager
            .send(&started_page(
                target,
                record,
                revision,
                deployment_id,
                false,
            ))
            .await?;
        self.tag(revision, tag::DEPLOYMENT, deployment_id).await
    }

    /// Adds one autopilot tag to a revision autopilot registered. Skipped in dry-run.
    pub async fn tag(&self, revision: &str, key: &str, value: &str) -> Result<(), DeployError> {
        if self.dry_run {
            return Ok(());
        }
        self.ecs
            .tag_resource()
            .resource_arn(revision)
            .tags(ecs_tag(key, value))
            .send()
            .await
            .map_err(AwsCallError::of("TagResource", revision))?;
        Ok(())
    }
}
