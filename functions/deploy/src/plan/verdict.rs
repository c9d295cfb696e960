//! What on-call hears of an ECS deployment's verdict. Only the deployment that
//! autopilot started gets one: the one recorded on the revision it registered,
//! or, while the record names none yet (a push records no deployment id), the
//! one [`adopt`](super::adopt) recognises from what ECS says. A rollback, a forced
//! redeployment or a manual deploy of that revision gets none.

use super::adopt::Claim;
use super::pages;
use super::revision_name;
use crate::config::{Config, ServiceTarget};
use crate::taskdef::{tag, Record};
use autopilot_shared::pager::Page;

/// The verdict an ECS deployment event carries, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Completed,
    Failed,
}

impl Verdict {
    pub fn from_event_name(name: &str) -> Option<Self> {
        match name {
            "SERVICE_DEPLOYMENT_COMPLETED" => Some(Verdict::Completed),
            "SERVICE_DEPLOYMENT_FAILED" => Some(Verdict::Failed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Completed => "COMPLETED",
            Verdict::Failed => "FAILED",
        }
    }
}

/// The configured service a deployment event is about, and its verdict; otherwise
/// `(resource, reason)` the event is ignored for.
pub fn accept<'c>(
    config: &'c Config,
    service_arn: &str,
    event_name: &str,
) -> Result<(&'c ServiceTarget, Verdict), (String, String)> {
    let Some(target) = target_for_service_arn(config, service_arn) else {
        return Err((
            service_arn.to_string(),
            "service is not mapped to any repository".into(),
        ));
    };
    match Verdict::from_event_name(event_name) {
        Some(verdict) => Ok((target, verdict)),
        None => Err((
            target.service_key(),
            format!("{event_name} carries no verdict"),
        )),
    }
}

/// The configured target an ECS service ARN names. Old-format ARNs carry no
/// cluster, so they match on the service name alone.
fn target_for_service_arn<'c>(config: &'c Config, arn: &str) -> Option<&'c ServiceTarget> {
    let path = arn.split_once(":service/").map(|(_, p)| p)?;
    let (cluster, service) = match path.split_once('/') {
        Some((c, s)) => (Some(c), s),
        None => (None, path),
    };
    config
        .services
        .iter()
        .find(|t| t.service == service && cluster.is_none_or(|c| c == t.cluster))
}

/// What was read to judge a deployment's verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// The service is gone.
    ServiceGone,
    /// Neither the service nor autopilot's recent revisions know the deployment.
    UnknownDeployment,
    Found(Box<Facts>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub deployment_id: String,
    pub reason: Option<String>,
    /// The revision the deployment ran, and autopilot's record of it (None: not ours).
    pub revision_arn: String,
    pub record: Option<Record>,
    /// The service's PRIMARY revision now: after a rollback, the restored one.
    pub primary_revision: Option<String>,
    /// Why the deployment's tasks stopped, newest first; or why that could not be read.
    pub stopped_tasks: Result<Vec<String>, String>,
    /// The service's latest events, newest first.
    pub service_events: Vec<String>,
    /// When the record names no deployment yet: what ECS says of this one, to
    /// adopt it or not.
    pub claim: Option<Claim>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Ignore {
        reason: String,
    },
    Notify {
        page: Box<Page>,
        /// Tags recorded on the revision once on-call has the page.
        tags: Vec<(&'static str, String)>,
        reason: String,
    },
}

/// How a deployment is known to be autopilot's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ours {
    /// The record names it.
    Recorded,
    /// The record names none yet, and ECS's facts ([`Claim`]) say it is the one
    /// autopilot started: its id is recorded with what on-call is told.
    Adopted,
}

/// Whether `deployment_id`, a deployment of the service `service_key`, is the
/// deployment autopilot started for the revision `record` describes; otherwise
/// why not. A deployment the record does not name yet is adopted only for the
/// service the record was written for: another service pointed at the revision
/// (say a canary, within the window) is not that push's deployment.
pub fn ownership(
    record: &Record,
    service_key: &str,
    revision_arn: &str,
    deployment_id: &str,
    claim: Option<&Claim>,
) -> Result<Ours, String> {
    if record.started(deployment_id) {
        return Ok(Ours::Recorded);
    }
    let rev = revision_name(revision_arn);
    if let Some(ours) = &record.deployment_id {
        return Err(format!(
            "deployment {deployment_id} runs {rev}, which autopilot deployed as {ours}; this is another deployment of it (a circuit-breaker rollback, a forced redeployment or a manual deploy), not autopilot's"
        ));
    }
    if record.service != service_key {
        return Err(format!(
            "deployment {deployment_id} of {service_key} runs {rev}, which autopilot registered for {}, and whose record names no deployment yet: not the deployment autopilot started",
            record.service
        ));
    }
    let why = match claim.map(Claim::check) {
        Some(Ok(())) => return Ok(Ours::Adopted),
        Some(Err(why)) => why,
        None => "ECS says nothing of it to tell".to_string(),
    };
    Err(format!(
        "deployment {deployment_id} runs {rev}, whose record names no deployment yet, and it is not the one autopilot started: {why}"
    ))
}

/// Whether the verdict needs the deployment's stopped tasks: a FAILED verdict of
/// autopilot's deployment that on-call has not heard yet.
pub fn wants_stopped_tasks(
    verdict: Verdict,
    service_key: &str,
    record: Option<&Record>,
    revision_arn: &str,
    deployment_id: &str,
    claim: Option<&Claim>,
) -> bool {
    verdict == Verdict::Failed
        && record.is_some_and(|r| {
            ownership(r, service_key, revision_arn, deployment_id, claim).is_ok()
                && !r.has_verdict_for(deployment_id)
        })
}

/// Decides what on-call hears about a deployment's verdict.
pub fn plan_verdict(
    verdict: Verdict,
    target: &ServiceTarget,
    deployment_id: &str,
    observed: &Observed,
) -> Decision {
    let facts = match observed {
        Observed::ServiceGone => {
            return Decision::Ignore {
                reason: "service no longer exists".into(),
            }
        }
        Observed::UnknownDeployment => {
            return Decision::Ignore {
                reason: format!("deployment {deployment_id} is not one autopilot started"),
            }
        }
        Observed::Found(facts) => facts,
    };
    let Some(record) = &facts.record else {
        return Decision::Ignore {
            reason: format!(
                "deployment {deployment_id} runs {}, which autopilot did not register (a rollback, or a deploy by someone else)",
                revision_name(&facts.revision_arn)
            ),
        };
    };
    let ours = match ownership(
        record,
        &target.service_key(),
        &facts.revision_arn,
        deployment_id,
        facts.claim.as_ref(),
    ) {
        Ok(ours) => ours,
        Err(reason) => return Decision::Ignore { reason },
    };
    if record.has_verdict_for(deployment_id) {
        return Decision::Ignore {
            reason: format!("on-call already has the verdict of deployment {deployment_id}"),
        };
    }
    let page = match verdict {
        Verdict::Completed => pages::completed(target, record, &facts.revision_arn, deployment_id),
        Verdict::Failed => pages::failed(
            target,
            record,
            &pages::Failed {
                reason: facts.reason.as_deref(),
                revision_arn: &facts.revision_arn,
                primary_revision: facts.primary_revision.as_deref(),
                deployment_id,
                stopped_tasks: &facts.stopped_tasks,
                service_events: &facts.service_events,
            },
        ),
    };
    let mut tags = vec![(
        tag::VERDICT,
        format!("{} {deployment_id}", verdict.as_str()),
    )];
    if ours == Ours::Adopted {
        tags.push((tag::DEPLOYMENT, deployment_id.to_string()));
    }
    Decision::Notify {
        reason: format!(
            "deployment {deployment_id} {}",
            verdict.as_str().to_lowercase()
        ),
        page: Box::new(page),
        tags,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use autopilot_shared::pager::{Action, Severity};

    const FAILED_ARN: &str = "arn:aws:ecs:us-east-1:1:task-definition/backend:8";

    fn facts(record: Option<Record>, primary: Option<&str>) -> Observed {
        Observed::Found(Box::new(Facts {
            deployment_id: "ecs-svc/9".into(),
            reason: Some("ECS deployment circuit breaker: tasks failed to start.".into()),
            revision_arn: FAILED_ARN.into(),
            record,
            primary_revision: primary.map(str::to_string),
            stopped_tasks: Ok(vec![
                "Essential container in task exited (exit code 1)".into()
            ]),
            service_events: vec!["(service backend) rolling back".into()],
            claim: None,
        }))
    }

    /// ECS's facts of `ecs-svc/9`: created `created` seconds after backend:8 was registered.
    fn claim(created: i64) -> Claim {
        Claim {
            revision_arn: FAILED_ARN.into(),
            registered_at: Some(aws_smithy_types::DateTime::from_secs(10_000)),
            deployment_id: "ecs-svc/9".into(),
            created: Some(super::super::adopt::Created::At(
                aws_smithy_types::DateTime::from_secs(10_000 + created),
            )),
            earlier: None,
            later: None,
        }
    }

    #[test]
    fn a_failed_deploy_pages_critical_with_everything_on_call_needs() {
        let d = plan_verdict(
            Verdict::Failed,
            &target(),
            "ecs-svc/9",
            &facts(Some(record()), Some(CUR_ARN)),
        );
        let Decision::Notify { page, tags, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(tags, vec![(tag::VERDICT, "FAILED ecs-svc/9".to_string())]);
        assert_eq!(
            (page.action, page.severity),
            (Action::Trigger, Severity::Critical)
        );
        assert_eq!(page.fact_value("Failed revision"), Some("backend:8"));
        assert_eq!(
            page.fact_value("Restored revision"),
            Some("backend:7 (rolled back by the circuit breaker)")
        );
        assert!(page
            .fact_value("Reason")
            .unwrap()
            .contains("circuit breaker"));
        assert_eq!(page.fact_value("Digest"), Some("sha256:new"));
        assert_eq!(
            page.lists[0].1[0],
            "Essential container in task exited (exit code 1)"
        );
        assert_eq!(page.dedup_key, "autopilot/deploy/prod/backend/sha256:new");
    }

    #[test]
    fn a_failed_lookup_of_stopped_tasks_is_named_and_the_page_still_goes() {
        let Observed::Found(mut f) = facts(Some(record()), Some(CUR_ARN)) else {
            unreachable!()
        };
        f.stopped_tasks = Err("ListTasks on prod/backend failed: AccessDeniedException".into());
        let d = plan_verdict(Verdict::Failed, &target(), "ecs-svc/9", &Observed::Found(f));
        let Decision::Notify { page, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(page.severity, Severity::Critical);
        assert_eq!(
            page.fact_value("Stopped tasks"),
            Some("unavailable: ListTasks on prod/backend failed: AccessDeniedException")
        );
        assert!(page.fact_value("Restored revision").is_some());
    }

    #[test]
    fn a_failed_deploy_without_rollback_says_so() {
        let Decision::Notify { page, .. } = plan_verdict(
            Verdict::Failed,
            &target(),
            "ecs-svc/9",
            &facts(Some(record()), Some(FAILED_ARN)),
        ) else {
            panic!()
        };
        assert!(page
            .fact_value("Restored revision")
            .unwrap()
            .starts_with("none"));
    }

    #[test]
    fn a_completed_deploy_resolves_the_incident() {
        let Decision::Notify { page, .. } = plan_verdict(
            Verdict::Completed,
            &target(),
            "ecs-svc/9",
            &facts(Some(record()), None),
        ) else {
            panic!()
        };
        assert_eq!(
            (page.action, page.severity),
            (Action::Resolve, Severity::Info)
        );
        assert_eq!(
            page.dedup_key,
            pages::started(&target(), &record(), "x", "y", false).dedup_key
        );
    }

    #[test]
    fn only_the_deployment_autopilot_started_gets_a_verdict() {
        // ecs-svc/9 is autopilot's; ecs-svc/10 runs the same revision (a rollback
        // onto it, a forced redeployment, rotate's consumer redeploy, a manual force).
        let mut observed = facts(Some(record()), None);
        if let Observed::Found(f) = &mut observed {
            f.deployment_id = "ecs-svc/10".into();
        }
        for v in [Verdict::Completed, Verdict::Failed] {
            let d = plan_verdict(v, &target(), "ecs-svc/10", &observed);
            assert!(
                matches!(&d, Decision::Ignore { reason } if reason.contains("another deployment")),
                "{d:?}"
            );
            assert!(!wants_stopped_tasks(
                v,
                "prod/backend",
                Some(&record()),
                FAILED_ARN,
                "ecs-svc/10",
                None
            ));
        }
        assert!(wants_stopped_tasks(
            Verdict::Failed,
            "prod/backend",
            Some(&record()),
            FAILED_ARN,
            "ecs-svc/9",
            None
        ));
    }

    fn unrecorded(claim: Option<Claim>) -> Observed {
        let mut r = record();
        r.deployment_id = None;
        let Observed::Found(mut f) = facts(Some(r), None) else {
            unreachable!()
        };
        f.claim = claim;
        Observed::Found(f)
    }

    #[test]
    fn the_deployment_a_push_started_is_adopted_and_recorded_with_its_verdict() {
        for v in [Verdict::Completed, Verdict::Failed] {
            let observed = unrecorded(Some(claim(2)));
            let d = plan_verdict(v, &target(), "ecs-svc/9", &observed);
            let Decision::Notify { tags, .. } = d else {
                panic!("{d:?}")
            };
            assert_eq!(
                tags,
                vec![
                    (tag::VERDICT, format!("{} ecs-svc/9", v.as_str())),
                    (tag::DEPLOYMENT, "ecs-svc/9".to_string())
                ]
            );
            let Observed::Found(f) = &observed else {
                unreachable!()
            };
            assert_eq!(
                wants_stopped_tasks(
                    v,
                    "prod/backend",
                    f.record.as_ref(),
                    FAILED_ARN,
                    "ecs-svc/9",
                    f.claim.as_ref()
                ),
                v == Verdict::Failed
            );
        }
    }

    #[test]
    fn a_deployment_ecs_does_not_vouch_for_is_not_adopted() {
        // Created two hours after the revision (say a forced redeployment after
        // autopilot's own verdict event was lost), or nothing known of it.
        for claim in [Some(claim(7_200)), None] {
            for v in [Verdict::Completed, Verdict::Failed] {
                let observed = unrecorded(claim.clone());
                let d = plan_verdict(v, &target(), "ecs-svc/9", &observed);
                assert!(
                    matches!(&d, Decision::Ignore { reason } if reason.contains("record names no deployment yet")),
                    "{d:?}"
                );
                let Observed::Found(f) = &observed else {
                    unreachable!()
                };
                assert!(!wants_stopped_tasks(
                    v,
                    "prod/backend",
                    f.record.as_ref(),
                    FAILED_ARN,
                    "ecs-svc/9",
                    f.claim.as_ref()
                ));
            }
        }
    }

    #[test]
    fn another_services_deployment_of_the_revision_is_not_adopted() {
        // backend:8 was registered for prod/backend; within the window a canary
        // (prod/canary) is pointed at it. The canary's verdict must not adopt
        // the record, or prod/backend's own verdict would then be ignored.
        let mut canary = target();
        canary.service = "canary".into();
        for v in [Verdict::Completed, Verdict::Failed] {
            let observed = unrecorded(Some(claim(2)));
            let d = plan_verdict(v, &canary, "ecs-svc/9", &observed);
            assert!(
                matches!(&d, Decision::Ignore { reason } if reason.contains("registered for prod/backend")
                    && reason.contains("not the deployment autopilot started")),
                "{d:?}"
            );
            let Observed::Found(f) = &observed else {
                unreachable!()
            };
            assert!(!wants_stopped_tasks(
                v,
                "prod/canary",
                f.record.as_ref(),
                FAILED_ARN,
                "ecs-svc/9",
                f.claim.as_ref()
            ));
            // The service the record was written for still adopts it.
            assert!(matches!(
                plan_verdict(v, &target(), "ecs-svc/9", &observed),
                Decision::Notify { .. }
            ));
        }
        // A recorded id is unchanged: it names the deployment, whatever asks.
        let d = plan_verdict(
            Verdict::Failed,
            &canary,
            "ecs-svc/9",
            &facts(Some(record()), None),
        );
        assert!(matches!(d, Decision::Notify { .. }), "{d:?}");
    }

    #[test]
    fn a_rollback_or_foreign_deployment_is_never_reported() {
        for v in [Verdict::Completed, Verdict::Failed] {
            let d = plan_verdict(v, &target(), "ecs-svc/9", &facts(None, None));
            assert!(matches!(d, Decision::Ignore { .. }), "{d:?}");
            for observed in [Observed::ServiceGone, Observed::UnknownDeployment] {
                let d = plan_verdict(v, &target(), "ecs-svc/9", &observed);
                assert!(matches!(d, Decision::Ignore { .. }), "{d:?}");
            }
        }
    }

    #[test]
    fn a_verdict_is_reported_once() {
        let mut r = record();
        r.verdict = Some("FAILED ecs-svc/9".into());
        assert!(matches!(
            plan_verdict(
                Verdict::Failed,
                &target(),
                "ecs-svc/9",
                &facts(Some(r), None)
            ),
            Decision::Ignore { .. }
        ));
    }

    #[test]
    fn only_event_names_with_a_verdict_count() {
        assert_eq!(
            Verdict::from_event_name("SERVICE_DEPLOYMENT_FAILED"),
            Some(Verdict::Failed)
        );
        assert_eq!(
            Verdict::from_event_name("SERVICE_DEPLOYMENT_COMPLETED"),
            Some(Verdict::Completed)
        );
        assert_eq!(
            Verdict::from_event_name("SERVICE_DEPLOYMENT_IN_PROGRESS"),
            None
        );
    }
}
