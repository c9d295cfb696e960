//! What on-call reads: every page deploy sends, built from plan values.

use super::push::Push;
use super::revision_name;
use crate::config::ServiceTarget;
use crate::taskdef::Record;
use autopilot_shared::pager::{Action, Page, Severity};

pub const CLASS_STARTED: &str = "deploy.started";
pub const CLASS_COMPLETED: &str = "deploy.completed";
pub const CLASS_FAILED: &str = "deploy.failed";
pub const CLASS_TIMED_OUT: &str = "deploy.timed_out";
pub const CLASS_REFUSED: &str = "deploy.refused";

/// The incident key of one deploy of one service: started, timed out, failed and
/// completed pages all carry it, so the completion resolves the rest.
pub fn dedup_key(service_key: &str, digest: &str) -> String {
    format!("autopilot/deploy/{service_key}/{digest}")
}

fn short_digest(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// `repository:tag`, as CI pushed it.
pub fn label(push: &Push) -> String {
    format!("{}:{}", push.repository, push.tag)
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
pub fn started(
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

/// On-call is warned that a mapped service was not deployed to, and why.
pub fn refused(push: &Push, target: &ServiceTarget, reason: &str) -> Page {
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

/// ECS reported autopilot's deployment COMPLETED: the incident resolves.
pub fn completed(
    target: &ServiceTarget,
    record: &Record,
    revision_arn: &str,
    deployment_id: &str,
) -> Page {
    base_page(
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
    .fact("Revision", revision_name(revision_arn))
    .fact("Previous revision", revision_name(&record.previous))
    .fact("Deployment", deployment_id)
}

/// What a FAILED page says beyond the record.
pub struct Failed<'a> {
    pub reason: Option<&'a str>,
    pub revision_arn: &'a str,
    /// The service's PRIMARY revision now: after a rollback, the restored one.
    pub primary_revision: Option<&'a str>,
    pub deployment_id: &'a str,
    /// Why the deployment's tasks stopped, or why that could not be read.
    pub stopped_tasks: &'a Result<Vec<String>, String>,
    pub service_events: &'a [String],
}

/// ECS reported autopilot's deployment FAILED: critical, with what on-call needs to act.
pub fn failed(target: &ServiceTarget, record: &Record, f: &Failed<'_>) -> Page {
    let restored = match f.primary_revision {
        Some(p) if p != f.revision_arn => {
            format!("{} (rolled back by the circuit breaker)", revision_name(p))
        }
        _ => format!(
            "none: the service still points at {}; roll back to {} by hand",
            revision_name(f.revision_arn),
            revision_name(&record.previous)
        ),
    };
    let page = base_page(
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
    .fact("Reason", f.reason.unwrap_or("(ECS gave no reason)"))
    .fact("Failed revision", revision_name(f.revision_arn))
    .fact("Restored revision", restored)
    .fact("Deployment", f.deployment_id);
    let page = match f.stopped_tasks {
        Ok(tasks) => page.list("Stopped tasks", tasks.clone()),
        Err(why) => page.fact("Stopped tasks", format!("unavailable: {why}")),
    };
    page.list("Recent service events", f.service_events.to_vec())
}

/// A deployment of autopilot's has no verdict after the timeout.
pub fn timed_out(
    target: &ServiceTarget,
    record: &Record,
    deployment: &aws_sdk_ecs::types::Deployment,
    minutes: i64,
    service_events: Vec<String>,
) -> Page {
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
    .fact("Deployment", deployment.id().unwrap_or_default())
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
    .list("Recent service events", service_events)
}
