//! Which ECS deployment is autopilot's when the revision's record names none yet.
//!
//! A push ends with its page: it records no deployment id on the revision (that
//! would be one more call). The id is written later, with the deployment's
//! verdict, the sweep's warning, or by a redelivered push that announces it.
//! Until then autopilot's deployment is recognised from what ECS itself says,
//! never from tags: it is **the first deployment of the revision, created soon
//! after ECS registered the revision, and before autopilot registered a later
//! revision for the service**. Autopilot registers a revision and points the
//! service at it in the same invocation (or a retry of it), and never points a
//! service back at an older revision of its own: a deployment of the revision
//! after that is a circuit-breaker rollback onto it, a forced redeployment or a
//! manual deploy, and is never adopted.
//!
//! Both times compared are ECS's own (`registeredAt` of the revision, `createdAt`
//! of the deployment), so the Lambda's clock plays no part.

use super::{revision_name, show_time};
use crate::taskdef::{EcsRecord, Record};
use aws_sdk_ecs::types::{Deployment, Tag, TaskDefinition};
use aws_smithy_types::DateTime;

/// deploy's `EventInvokeConfig` `MaximumEventAgeInSeconds` in `template.yaml`: every
/// retry of a push starts within this long of Lambda taking the event, which is
/// before the revision was registered.
pub const EVENT_AGE_SECS: i64 = 3600;
/// The function's `Timeout` (template.yaml `Globals`): how long one attempt runs.
pub const FUNCTION_TIMEOUT_SECS: i64 = 120;
/// Allowance between the ECS clocks that stamp registrations and deployments.
pub const CLOCK_SKEW_SECS: i64 = 300;
/// How long after a revision is registered autopilot's deployment of it can be
/// created: the push's retry horizon plus the clock allowance (67 minutes).
pub const WINDOW_SECS: i64 = EVENT_AGE_SECS + FUNCTION_TIMEOUT_SECS + CLOCK_SKEW_SECS;

/// When a deployment was created, as far as ECS tells.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Created {
    /// The service lists the deployment, with its `createdAt`.
    At(DateTime),
    /// The service lists it no more (drained): it was created no later than the
    /// first of its stopped tasks.
    NoLaterThan(DateTime),
}

/// What ECS says of a deployment of a revision whose record names no deployment
/// yet: whether it can be the one autopilot started.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub revision_arn: String,
    /// When ECS registered the revision.
    pub registered_at: Option<DateTime>,
    pub deployment_id: String,
    pub created: Option<Created>,
    /// Another deployment of the revision the service lists, created before this one.
    pub earlier: Option<(String, DateTime)>,
    /// A later revision autopilot registered for the same service, and when.
    pub later: Option<(String, DateTime)>,
}

impl Claim {
    /// A deployment the service lists, among the others it lists (`listed`).
    pub fn listed(
        revision: &TaskDefinition,
        deployment: &Deployment,
        listed: &[Deployment],
        later: Option<(String, DateTime)>,
    ) -> Self {
        let arn = revision.task_definition_arn().unwrap_or_default();
        let created = deployment.created_at().copied();
        let earlier = listed
            .iter()
            .filter(|d| d.id() != deployment.id() && d.task_definition() == Some(arn))
            .filter_map(|d| Some((d.id()?.to_string(), *d.created_at()?)))
            .filter(|(_, at)| created.is_some_and(|c| *at < c))
            .min_by(|a, b| a.1.cmp(&b.1));
        Self {
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
    ) -> Self {
        Self {
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

    /// Ok when the deployment can be autopilot's; otherwise why not.
    pub fn check(&self) -> Result<(), String> {
        let rev = revision_name(&self.revision_arn);
        let id = &self.deployment_id;
        let Some(registered) = self.registered_at else {
            return Err(format!("ECS gives no registration time for {rev}"));
        };
        let (at, exact) = match self.created {
            Some(Created::At(t)) => (t, true),
            Some(Created::NoLaterThan(t)) => (t, false),
            None => return Err(format!("ECS gives no creation time for deployment {id}")),
        };
        let since = at.as_secs_f64() - registered.as_secs_f64();
        if since < -(CLOCK_SKEW_SECS as f64) {
            return Err(format!(
                "deployment {id} was created at {}, before {rev} was registered ({})",
                show_time(&at),
                show_time(&registered)
            ));
        }
        // Known only as "no later than": a bound past the window may still hide a
        // deployment inside it, and is refused all the same (never adopt on a guess).
        if since > WINDOW_SECS as f64 {
            return Err(format!(
                "deployment {id} was created {}{} min after {rev} was registered ({}); a push deploys its revision within {} min, so this is not the deployment autopilot started",
                if exact { "" } else { "up to " },
                (since / 60.0).round() as i64,
                show_time(&registered),
                WINDOW_SECS / 60
            ));
        }
        if let Some((other, t)) = &self.earlier {
            return Err(format!(
                "deployment {other} of {rev} was created before it ({}): autopilot's deployment is the first of its revision",
                show_time(t)
            ));
        }
        if let Some((later, t)) = &self.later {
            if *t <= at {
                return Err(format!(
                    "autopilot registered {} for the service at {}, before deployment {id} was created{}: a deployment of {rev} after that is a rollback or someone else's",
                    revision_name(later),
                    show_time(t),
                    if exact {
                        String::new()
                    } else {
                        format!(" (no later than {})", show_time(&at))
                    }
                ));
            }
        }
        Ok(())
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
        Claim::listed(&revision(), &d, std::slice::from_ref(&d), None)
    }

    #[test]
    fn the_deployment_a_push_started_is_adopted() {
        // UpdateService right after RegisterTaskDefinition, or a retry within the hour.
        for created in [10_001, 10_000 + 3_600, 10_000 + WINDOW_SECS] {
            assert_eq!(claim(created).check(), Ok(()), "{created}");
        }
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
        let c = |first_task| Claim::unlisted(&revision(), "ecs-svc/9", Some(at(first_task)), None);
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
        let listed = [forced.clone(), ours.clone()];
        let why = Claim::listed(&revision(), &forced, &listed, None)
            .check()
            .unwrap_err();
        assert!(
            why.contains("ecs-svc/9 of backend:8 was created before it"),
            "{why}"
        );
        assert_eq!(
            Claim::listed(&revision(), &ours, &listed, None).check(),
            Ok(())
        );
    }

    #[test]
    fn a_deployment_after_autopilot_moved_on_is_a_rollback_onto_the_revision() {
        // backend:9 was registered at 10 600; the circuit breaker rolled back onto 8 at 10 900.
        let later = Some((format!("{LATEST_ARN}9"), at(10_600)));
        let rollback = deployment("ecs-svc/11", 10_900);
        let why = Claim::listed(&revision(), &rollback, &[], later.clone())
            .check()
            .unwrap_err();
        assert!(why.contains("rollback or someone else's"), "{why}");
        // autopilot's own deployment of 8 came before 9 was registered.
        let ours = deployment("ecs-svc/9", 10_001);
        assert_eq!(
            Claim::listed(&revision(), &ours, &[], later.clone()).check(),
            Ok(())
        );
        // Unlisted, with a bound after 9's registration: it may be the rollback.
        let c = Claim::unlisted(&revision(), "ecs-svc/11", Some(at(10_950)), later);
        assert!(c.check().is_err());
    }

    #[test]
    fn missing_times_are_never_a_yes() {
        let mut c = claim(10_001);
        c.registered_at = None;
        assert!(c.check().unwrap_err().contains("no registration time"));
        let mut c = claim(10_001);
        c.created = None;
        assert!(c.check().unwrap_err().contains("no creation time"));
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
