//! The sweep: deployments autopilot started that have run past the timeout
//! without a verdict get one warning page.

use super::pages;
use crate::config::ServiceTarget;
use crate::taskdef::Record;
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

/// The warning for a stale deployment, if it is the one autopilot started for its
/// revision and on-call has not been warned or told its verdict yet.
pub fn plan_timeout(
    target: &ServiceTarget,
    deployment: &Deployment,
    record: Option<&Record>,
    now: i64,
    service_events: Vec<String>,
) -> Option<Page> {
    let record = record?;
    let id = deployment.id()?;
    if !record.started(id)
        || record.timeout_warned.as_deref() == Some(id)
        || record.has_verdict_for(id)
    {
        return None;
    }
    let minutes = deployment.created_at().map_or(0, |t| (now - t.secs()) / 60);
    Some(pages::timed_out(
        target,
        record,
        deployment,
        minutes,
        service_events,
    ))
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
        let page = plan_timeout(
            &target(),
            d,
            Some(&record()),
            2_800,
            vec!["unable to place a task".into()],
        )
        .unwrap();
        assert_eq!(page.severity, Severity::Warning);
        assert!(
            page.summary.contains("no verdict after 30 min"),
            "{}",
            page.summary
        );
        assert_eq!(page.lists[0].1, vec!["unable to place a task".to_string()]);
        let mut warned = record();
        warned.timeout_warned = Some("ecs-svc/9".into());
        assert!(plan_timeout(&target(), d, Some(&warned), 2_800, vec![]).is_none());
        assert!(
            plan_timeout(&target(), d, None, 2_800, vec![]).is_none(),
            "not ours"
        );
    }

    #[test]
    fn only_the_deployment_autopilot_started_is_warned_about() {
        // A forced redeployment (say rotate's) of autopilot's revision runs long.
        let s = service(CUR_ARN, "ecs-svc/10");
        let d = stale_primary(&s, 1_000_000, Duration::from_secs(60)).unwrap();
        assert!(plan_timeout(&target(), d, Some(&record()), 1_000_000, vec![]).is_none());
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
