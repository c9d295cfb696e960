//! The sweep: deployments autopilot started that have run past the timeout
//! without a verdict get one warning page.

use super::adopt::Claim;
use super::pages;
use super::verdict::{ownership, Ours};
use crate::config::ServiceTarget;
use crate::taskdef::{tag, Record};
use autopilot_shared::pager::Page;
use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, Service};
use std::time::Duration;

/// The sweep's task name in its schedule's input (`template.yaml`).
pub const TASK: &str = "deploy-sweep";

/// The PRIMARY deployment of `service` if it has run longer than `timeout` without a verdict.
pub fn stale_primary(service: &Service, now: i64, timeout: Duration) -> Option<&Deployment> {
    service.deployments().iter().find(|d| {
        let running = matches!(
            d.rollout_state(),
            None | Some(DeploymentRolloutState::InProgress)
        );
        let started = d.created_at().map(|t| t.secs());
        d.status() == Some("PRIMARY")
            && running
            && started.is_some_and(|s| now - s >= timeout.as_secs() as i64)
    })
}

/// The warning about a stale deployment, and the tags that record it.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    pub page: Page,
    /// `autopilot:timeout-warned`, and the deployment id when it is adopted here.
    pub tags: Vec<(&'static str, String)>,
}

/// The warning for a stale deployment, if it is the one autopilot started for its
/// revision (recorded, or adopted as [`Claim`] allows) and on-call has not been
/// warned or told its verdict yet; otherwise why none goes.
pub fn plan_timeout(
    target: &ServiceTarget,
    deployment: &Deployment,
    record: Option<&Record>,
    claim: Option<&Claim>,
    now: i64,
    service_events: Vec<String>,
) -> Result<Warning, String> {
    let revision = deployment.task_definition().unwrap_or_default();
    let Some(record) = record else {
        return Err(format!(
            "{} was not registered by autopilot",
            super::revision_name(revision)
        ));
    };
    let id = deployment.id().unwrap_or_default();
    let ours = ownership(record, &target.service_key(), revision, id, claim)?;
    if record.timeout_warned.as_deref() == Some(id) || record.has_verdict_for(id) {
        return Err(format!("on-call already heard of deployment {id}"));
    }
    let minutes = deployment.created_at().map_or(0, |t| (now - t.secs()) / 60);
    let mut tags = vec![(tag::TIMEOUT_WARNED, id.to_string())];
    if ours == Ours::Adopted {
        tags.push((tag::DEPLOYMENT, id.to_string()));
    }
    Ok(Warning {
        page: pages::timed_out(target, record, deployment, minutes, service_events),
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use autopilot_shared::pager::Severity;

    #[test]
    fn a_deployment_past_its_timeout_warns_once() {
        let s = service(CUR_ARN, "ecs-svc/9");
        let timeout = Duration::from_secs(1800);
        assert!(stale_primary(&s, 1_000 + 1_799, timeout).is_none());
        let d = stale_primary(&s, 1_000 + 1_800, timeout).unwrap();
        let warning = plan_timeout(
            &target(),
            d,
            Some(&record()),
            None,
            2_800,
            vec!["unable to place a task".into()],
        )
        .unwrap();
        let page = &warning.page;
        assert_eq!(page.severity, Severity::Warning);
        assert!(
            page.summary.contains("no verdict after 30 min"),
            "{}",
            page.summary
        );
        assert_eq!(page.lists[0].1, vec!["unable to place a task".to_string()]);
        assert_eq!(
            warning.tags,
            vec![(tag::TIMEOUT_WARNED, "ecs-svc/9".to_string())]
        );
        let mut warned = record();
        warned.timeout_warned = Some("ecs-svc/9".into());
        assert!(plan_timeout(&target(), d, Some(&warned), None, 2_800, vec![]).is_err());
        assert!(
            plan_timeout(&target(), d, None, None, 2_800, vec![]).is_err(),
            "not ours"
        );
    }

    #[test]
    fn only_the_deployment_autopilot_started_is_warned_about() {
        // A forced redeployment (say rotate's) of autopilot's revision runs long.
        let s = service(CUR_ARN, "ecs-svc/10");
        let d = stale_primary(&s, 1_000_000, Duration::from_secs(60)).unwrap();
        let why = plan_timeout(&target(), d, Some(&record()), None, 1_000_000, vec![]).unwrap_err();
        assert!(why.contains("another deployment"), "{why}");
    }

    #[test]
    fn a_deployment_not_recorded_yet_is_warned_about_if_ecs_vouches_for_it() {
        let s = service(CUR_ARN, "ecs-svc/9");
        let d = stale_primary(&s, 1_000 + 1_800, Duration::from_secs(1800)).unwrap();
        let mut r = record();
        r.deployment_id = None;
        let mut revision = td(CUR_ARN, "x");
        revision.registered_at = Some(aws_smithy_types::DateTime::from_secs(990));
        let claim = super::super::adopt::listed(&revision, d, s.deployments(), None);
        let warning = plan_timeout(&target(), d, Some(&r), Some(&claim), 2_800, vec![]).unwrap();
        assert_eq!(
            warning.tags,
            vec![
                (tag::TIMEOUT_WARNED, "ecs-svc/9".to_string()),
                (tag::DEPLOYMENT, "ecs-svc/9".to_string())
            ]
        );
        // Another service's revision: not adopted for this one.
        let mut canary = target();
        canary.service = "canary".into();
        let why = plan_timeout(&canary, d, Some(&r), Some(&claim), 2_800, vec![]).unwrap_err();
        assert!(why.contains("registered for prod/backend"), "{why}");
        // Registered long before it: a later deployment of the revision, not autopilot's.
        revision.registered_at = Some(aws_smithy_types::DateTime::from_secs(-10_000));
        let claim = super::super::adopt::listed(&revision, d, s.deployments(), None);
        assert!(plan_timeout(&target(), d, Some(&r), Some(&claim), 2_800, vec![]).is_err());
    }

    #[test]
    fn a_finished_deployment_is_not_stale() {
        let mut s = service(CUR_ARN, "ecs-svc/9");
        s.deployments.as_mut().unwrap()[0].rollout_state = Some(DeploymentRolloutState::Completed);
        assert!(stale_primary(&s, 1_000_000, Duration::from_secs(60)).is_none());
    }

    #[test]
    fn dry_run_pages_say_would_deploy() {
        let p = pages::started(&target(), &record(), "", "", true);
        assert!(
            p.summary.starts_with("[dry-run] would deploy backend"),
            "{}",
            p.summary
        );
        assert!(p.dedup_key.contains("dry-run"));
    }
}
