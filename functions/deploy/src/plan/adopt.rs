//! Which ECS deployment is autopilot's when the revision's record names none yet:
//! the rule is [`autopilot_shared::adopt`] (remediate's rollback applies it too);
//! here are the [`Claim`]s deploy builds from what ECS returned.

use crate::taskdef::{EcsRecord, Record};
use aws_sdk_ecs::types::{Deployment, Tag, TaskDefinition};
use aws_smithy_types::DateTime;

pub use autopilot_shared::adopt::{
    Claim, Created, CLOCK_SKEW_SECS, FUNCTION_TIMEOUT_SECS, WINDOW_SECS,
};

/// A deployment the service lists, among the others it lists (`listed`).
pub fn listed(
    revision: &TaskDefinition,
    deployment: &Deployment,
    listed: &[Deployment],
    later: Option<(String, DateTime)>,
) -> Claim {
    let arn = revision.task_definition_arn().unwrap_or_default();
    let created = deployment.created_at().copied();
    let earlier = listed
        .iter()
        .filter(|d| d.id() != deployment.id() && d.task_definition() == Some(arn))
        .filter_map(|d| Some((d.id()?.to_string(), *d.created_at()?)))
        .filter(|(_, at)| created.is_some_and(|c| *at < c))
        .min_by(|a, b| a.1.cmp(&b.1));
    Claim {
        revision_arn: arn.to_string(),
        registered_at: revision.registered_at().copied(),
        deployment_id: deployment.id().unwrap_or_default().to_string(),
        created: created.map(Created::At),
        earlier,
        later,
    }
}

/// A deployment the service no longer lists, known by its stopped tasks, the
/// first of which was created at `first_task`.
pub fn unlisted(
    revision: &TaskDefinition,
    deployment_id: &str,
    first_task: Option<DateTime>,
    later: Option<(String, DateTime)>,
) -> Claim {
    Claim {
        revision_arn: revision
            .task_definition_arn()
            .unwrap_or_default()
            .to_string(),
        registered_at: revision.registered_at().copied(),
        deployment_id: deployment_id.to_string(),
        created: first_task.map(Created::NoLaterThan),
        earlier: None,
        later,
    }
}

/// The family's latest ACTIVE revision, when it is a later one than `revision`
/// that autopilot registered for `service_key`: its ARN and registration time.
pub fn later_revision(
    revision: &TaskDefinition,
    latest: Option<&(TaskDefinition, Vec<Tag>)>,
    service_key: &str,
) -> Option<(String, DateTime)> {
    let (td, tags) = latest?;
    if td.family() != revision.family() || td.revision() <= revision.revision() {
        return None;
    }
    Record::from_tags(tags).filter(|r| r.service == service_key)?;
    Some((td.task_definition_arn()?.to_string(), *td.registered_at()?))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    fn at(secs: i64) -> DateTime {
        DateTime::from_secs(secs)
    }

    /// Revision 8 of `backend`, registered at second 10 000.
    fn revision() -> TaskDefinition {
        let mut td = td(LATEST_ARN, "x");
        td.revision = 8;
        td.registered_at = Some(at(10_000));
        td
    }

    fn deployment(id: &str, created: i64) -> Deployment {
        Deployment::builder()
            .id(id)
            .status("PRIMARY")
            .task_definition(LATEST_ARN)
            .created_at(at(created))
            .build()
    }

    fn claim(created: i64) -> Claim {
        let d = deployment("ecs-svc/9", created);
        listed(&revision(), &d, std::slice::from_ref(&d), None)
    }

    #[test]
    fn the_deployment_a_push_started_is_adopted() {
        // UpdateService right after RegisterTaskDefinition, in the same attempt.
        for created in [10_001, 10_000 + FUNCTION_TIMEOUT_SECS, 10_000 + WINDOW_SECS] {
            assert_eq!(claim(created).check(), Ok(()), "{created}");
        }
        // A retry that reuses the revision an hour later records its deployment
        // at once: unrecorded that late, it is not the push's.
        assert!(claim(10_000 + 3_600).check().is_err());
    }

    #[test]
    fn a_deployment_outside_the_window_is_not() {
        let why = claim(10_000 + WINDOW_SECS + 60).check().unwrap_err();
        assert!(
            why.contains("not the deployment autopilot started"),
            "{why}"
        );
        let why = claim(10_000 - CLOCK_SKEW_SECS - 1).check().unwrap_err();
        assert!(why.contains("before backend:8 was registered"), "{why}");
        // Known only from its stopped tasks: adopted only when the bound is inside.
        let c = |first_task| unlisted(&revision(), "ecs-svc/9", Some(at(first_task)), None);
        assert_eq!(c(10_100).check(), Ok(()));
        assert!(c(10_000 + WINDOW_SECS + 1)
            .check()
            .unwrap_err()
            .contains("up to"));
    }

    #[test]
    fn only_the_first_deployment_of_the_revision_is_adopted() {
        // A forced redeployment of the revision while autopilot's is still listed.
        let ours = deployment("ecs-svc/9", 10_001);
        let forced = deployment("ecs-svc/10", 10_300);
        let all = [forced.clone(), ours.clone()];
        let why = listed(&revision(), &forced, &all, None)
            .check()
            .unwrap_err();
        assert!(
            why.contains("ecs-svc/9 of backend:8 was created before it"),
            "{why}"
        );
        assert_eq!(listed(&revision(), &ours, &all, None).check(), Ok(()));
    }

    #[test]
    fn a_deployment_after_autopilot_moved_on_is_a_rollback_onto_the_revision() {
        // backend:9 was registered at 10 200; the circuit breaker rolled back onto 8 at 10 300.
        let later = Some((format!("{LATEST_ARN}9"), at(10_200)));
        let rollback = deployment("ecs-svc/11", 10_300);
        let why = listed(&revision(), &rollback, &[], later.clone())
            .check()
            .unwrap_err();
        assert!(why.contains("rollback or someone else's"), "{why}");
        // autopilot's own deployment of 8 came before 9 was registered.
        let ours = deployment("ecs-svc/9", 10_001);
        assert_eq!(
            listed(&revision(), &ours, &[], later.clone()).check(),
            Ok(())
        );
        // Unlisted, with a bound after 9's registration: it may be the rollback.
        let c = unlisted(&revision(), "ecs-svc/11", Some(at(10_350)), later);
        assert!(c.check().unwrap_err().contains("(no later than"));
    }

    #[test]
    fn the_later_revision_is_autopilots_for_the_same_service_only() {
        let mut newer = td(&LATEST_ARN.replace(":8", ":9"), "x");
        newer.revision = 9;
        newer.registered_at = Some(at(10_600));
        let ours = record_tags("sha256:newer", "prod/backend");
        let later = later_revision(
            &revision(),
            Some(&(newer.clone(), ours.clone())),
            "prod/backend",
        );
        assert_eq!(
            later,
            Some((newer.task_definition_arn().unwrap().to_string(), at(10_600)))
        );
        // Someone else's revision, another service's, or an older one: none.
        assert_eq!(
            later_revision(&revision(), Some(&(newer.clone(), vec![])), "prod/backend"),
            None
        );
        assert_eq!(
            later_revision(
                &revision(),
                Some(&(newer.clone(), ours.clone())),
                "prod/worker"
            ),
            None
        );
        newer.revision = 7;
        assert_eq!(
            later_revision(&revision(), Some(&(newer, ours)), "prod/backend"),
            None
        );
    }
}
