//! The only code that changes AWS resources. Dry-run stops at [`act`]'s caller:
//! `lib.rs` never calls it when `AUTOPILOT_DRY_RUN` is on.

use crate::action::Action;
use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use aws_sdk_ecs::operation::update_service::builders::UpdateServiceFluentBuilder;
use aws_sdk_sns::error::DisplayErrorContext;

#[derive(Debug, Clone)]
pub struct Clients {
    pub ecs: aws_sdk_ecs::Client,
    pub aas: aws_sdk_applicationautoscaling::Client,
    pub rds: aws_sdk_rds::Client,
}

/// Carries `action` out; the error is the AWS call and its message, for the page.
pub async fn act(c: &Clients, action: &Action) -> Result<(), String> {
    match action {
        Action::SetDesiredCount {
            cluster,
            service,
            to,
            ..
        } => update_service(c, cluster, service, |r| r.desired_count(*to)).await,
        Action::ForceDeployment { cluster, service } => {
            update_service(c, cluster, service, |r| r.force_new_deployment(true)).await
        }
        Action::Rollback {
            cluster,
            service,
            to,
            ..
        } => update_service(c, cluster, service, |r| r.task_definition(to)).await,
        Action::SetMinCapacity {
            cluster,
            service,
            to,
            ..
        } => {
            // Only MinCapacity is given: RegisterScalableTarget on an existing
            // target changes the parameters it is passed and keeps the rest.
            let id = format!("service/{cluster}/{service}");
            c.aas
                .register_scalable_target()
                .service_namespace(ServiceNamespace::Ecs)
                .resource_id(&id)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .min_capacity(*to)
                .send()
                .await
                .map(|_| ())
                .map_err(fail("RegisterScalableTarget", &id))
        }
        Action::GrowStorage {
            instance, to_gib, ..
        } => c
            .rds
            .modify_db_instance()
            .db_instance_identifier(instance)
            .allocated_storage(*to_gib)
            .apply_immediately(true)
            .send()
            .await
            .map(|_| ())
            .map_err(fail("ModifyDBInstance", instance)),
    }
}

/// One UpdateService call on `cluster/service`, with what `set` adds to it.
async fn update_service(
    c: &Clients,
    cluster: &str,
    service: &str,
    set: impl FnOnce(UpdateServiceFluentBuilder) -> UpdateServiceFluentBuilder,
) -> Result<(), String> {
    let name = format!("{cluster}/{service}");
    set(c.ecs.update_service().cluster(cluster).service(service))
        .send()
        .await
        .map(|_| ())
        .map_err(fail("UpdateService", &name))
}

fn fail<'a, E: std::error::Error>(
    operation: &'a str,
    resource: &'a str,
) -> impl FnOnce(E) -> String + 'a {
    move |e| {
        format!(
            "{operation} on {resource} failed: {}",
            DisplayErrorContext(e)
        )
    }
}
