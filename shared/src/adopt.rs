//! Which ECS deployment is autopilot's while the revision's record names none yet.
//!
//! A push ends with its page: it records no deployment id on the revision (that
//! would be one more call). The id is written later, with the deployment's
//! verdict, the sweep's warning, or by a redelivered push that announces it.
//! Until then autopilot's deployment is recognised from what ECS itself says,
//! never from tags: it is **the first deployment of the revision, created soon
//! after ECS registered the revision, and before autopilot registered a later
//! revision for the service**. Autopilot registers a revision and points the
//! service at it in the same invocation (a retry that points the service at a
//! revision an earlier attempt registered records the deployment id at once),
//! and never points a service back at an older revision of its own: a
//! deployment of the revision after that is a circuit-breaker rollback onto
//! it, a forced redeployment or a manual deploy, and is never adopted.
//!
//! The callers also require the record to be the one autopilot wrote for the
//! service whose deployment it is (`autopilot:service`): a revision another
//! service was pointed at is not that service's push.
//!
//! Both times compared are ECS's own (`registeredAt` of the revision, `createdAt`
//! of the deployment), so the Lambda's clock plays no part.
//!
//! This is the pure rule, shared by deploy (verdicts, the sweep, a push's
//! retry) and remediate (the 5XX rollback). Each builds a [`Claim`] from what it
//! read of ECS.

use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;

/// The function's `Timeout` (template.yaml `Globals`): how long one attempt runs.
pub const FUNCTION_TIMEOUT_SECS: i64 = 120;
/// Allowance between the ECS clocks that stamp registrations and deployments.
pub const CLOCK_SKEW_SECS: i64 = 300;
/// How long after a revision is registered autopilot's deployment of it can be
/// created while its record names no deployment: one attempt's run plus the
/// clock allowance (7 minutes). A push that deploys a revision it registered
/// itself does so in the same invocation. A retry that deploys a revision an
/// earlier attempt registered (`Revision::Reuse`) records the deployment id at
/// once, so it is never adopted and the push's retry horizon (an hour of
/// `MaximumEventAgeInSeconds`) does not widen the window.
pub const WINDOW_SECS: i64 = FUNCTION_TIMEOUT_SECS + CLOCK_SKEW_SECS;

/// `family:revision`, the short name on-call reads.
pub fn revision_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// A timestamp as on-call reads it: RFC 3339, with the fraction ECR keeps.
pub fn show_time(t: &DateTime) -> String {
    t.fmt(Format::DateTime)
        .unwrap_or_else(|_| t.secs().to_string())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const REVISION: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/backend:8";

    fn at(secs: i64) -> DateTime {
        DateTime::from_secs(secs)
    }

    /// `ecs-svc/9` of backend:8 (registered at second 10 000), created at `created`.
    fn claim(created: Option<Created>) -> Claim {
        Claim {
            revision_arn: REVISION.into(),
            registered_at: Some(at(10_000)),
            deployment_id: "ecs-svc/9".into(),
            created,
            earlier: None,
            later: None,
        }
    }

    fn listed(created: i64) -> Claim {
        claim(Some(Created::At(at(created))))
    }

    fn unlisted(first_task: i64) -> Claim {
        claim(Some(Created::NoLaterThan(at(first_task))))
    }

    #[test]
    fn the_window_is_one_attempt_plus_the_clock_allowance() {
        assert_eq!(WINDOW_SECS, 7 * 60);
    }

    #[test]
    fn a_deployment_inside_the_window_can_be_autopilots() {
        // UpdateService right after RegisterTaskDefinition, or at the end of the attempt.
        for created in [10_001, 10_000 + FUNCTION_TIMEOUT_SECS, 10_000 + WINDOW_SECS] {
            assert_eq!(listed(created).check(), Ok(()), "{created}");
        }
        // Within the clock allowance before the registration.
        assert_eq!(listed(10_000 - CLOCK_SKEW_SECS).check(), Ok(()));
    }

    #[test]
    fn a_deployment_outside_the_window_is_not() {
        let why = listed(10_000 + WINDOW_SECS + 60).check().unwrap_err();
        assert!(
            why.contains("created 8 min after backend:8 was registered")
                && why.contains("not the deployment autopilot started"),
            "{why}"
        );
        let why = listed(10_000 - CLOCK_SKEW_SECS - 1).check().unwrap_err();
        assert!(why.contains("before backend:8 was registered"), "{why}");
        // Known only from its stopped tasks: adopted only when the bound is inside.
        assert_eq!(unlisted(10_100).check(), Ok(()));
        let why = unlisted(10_000 + WINDOW_SECS + 1).check().unwrap_err();
        assert!(why.contains("created up to 7 min after"), "{why}");
        // A retry's deployment of the revision an hour later is recorded at once,
        // never adopted: an unrecorded one that late is someone else's.
        assert!(listed(10_000 + 3_600).check().is_err());
    }

    #[test]
    fn only_the_first_deployment_of_the_revision_is() {
        let mut c = listed(10_300);
        c.earlier = Some(("ecs-svc/8".into(), at(10_001)));
        let why = c.check().unwrap_err();
        assert!(
            why.contains("ecs-svc/8 of backend:8 was created before it"),
            "{why}"
        );
    }

    #[test]
    fn a_deployment_after_autopilot_moved_on_is_not() {
        // backend:9 was registered at 10 200.
        let later = Some((REVISION.replace(":8", ":9"), at(10_200)));
        let mut rollback = listed(10_300);
        rollback.later = later.clone();
        let why = rollback.check().unwrap_err();
        assert!(
            why.contains("autopilot registered backend:9")
                && why.contains("rollback or someone else's"),
            "{why}"
        );
        let mut ours = listed(10_001);
        ours.later = later.clone();
        assert_eq!(ours.check(), Ok(()));
        // Unlisted, with a bound after 9's registration: it may be the rollback.
        let mut bound = unlisted(10_350);
        bound.later = later;
        assert!(bound.check().unwrap_err().contains("(no later than"));
    }

    #[test]
    fn missing_times_are_never_a_yes() {
        let mut c = listed(10_001);
        c.registered_at = None;
        assert!(c.check().unwrap_err().contains("no registration time"));
        assert!(claim(None)
            .check()
            .unwrap_err()
            .contains("no creation time"));
    }

    #[test]
    fn times_read_as_on_call_reads_them() {
        assert_eq!(show_time(&at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(revision_name(REVISION), "backend:8");
    }
}
