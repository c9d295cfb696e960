//! The only code that changes AWS resources. Dry-run stops at [`act`]'s caller:
//! `lib.rs` never calls it when `AUTOPILOT_DRY_RUN` is on.

use crate::action::Action;
use autopilot_shared::aws::{may_have_happened, NotRepeatedIfSent};
use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use aws_sdk_ecs::config::http::HttpResponse;
use aws_sdk_ecs::error::SdkError;
use aws_sdk_ecs::operation::update_service::builders::UpdateServiceFluentBuilder;
use aws_sdk_sns::error::DisplayErrorContext;

#[derive(Debug, Clone)]
pub struct Clients {
    pub ecs: aws_sdk_ecs::Client,
    pub aas: aws_sdk_applicationautoscaling::Client,
    pub rds: aws_sdk_rds::Client,
}

/// Why an action's call failed: the AWS call and its message, for the page, and
/// whether AWS may have carried it out all the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub message: String,
    /// A timeout, a dropped connection, an unreadable or 5xx answer: the call may
    /// have taken effect (`autopilot_shared::aws::may_have_happened`), so the
    /// resource is read back before the action is called failed.
    pub may_have_happened: bool,
}

/// Carries `action` out.
pub async fn act(c: &Clients, action: &Action) -> Result<(), Failed> {
    match action {
        Action::SetDesiredCount {
            cluster,
            service,
            to,
            ..
        } => update_service(c, cluster, service, |r| r.desired_count(*to)).await,
        Action::ForceDeployment { cluster, service } => {
            // A forced deployment is no absolute value: a repeat starts a second
            // rolling restart. The SDK does not repeat it once sent; the caller
            // reads the service back after a failure (`already_done`).
            let name = format!("{cluster}/{service}");
            c.ecs
                .update_service()
                .cluster(cluster)
                .service(service)
                .force_new_deployment(true)
                .customize()
                .config_override(
                    aws_sdk_ecs::config::Builder::default().retry_classifier(NotRepeatedIfSent),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(fail("UpdateService", &name))
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
) -> Result<(), Failed> {
    let name = format!("{cluster}/{service}");
    set(c.ecs.update_service().cluster(cluster).service(service))
        .send()
        .await
        .map(|_| ())
        .map_err(fail("UpdateService", &name))
}

fn fail<'a, E>(
    operation: &'a str,
    resource: &'a str,
) -> impl FnOnce(SdkError<E, HttpResponse>) -> Failed + 'a
where
    E: std::error::Error + 'static,
{
    move |e| Failed {
        may_have_happened: may_have_happened(&e),
        message: format!(
            "{operation} on {resource} failed: {}",
            DisplayErrorContext(e)
        ),
    }
}
