//! What on-call is told about an alarm: the alarm, its metric and recent
//! datapoints, the runbook, and what was done with the state before and after.
//! One incident per alarm: every page about it carries the same dedup key, and
//! its OK resolves it. Pure.

use crate::action::Action;
use crate::alarm::{Alarm, Kind};
use crate::plan::Verdict;
use crate::runbook::Runbook;
use autopilot_shared::pager::{Action as PageAction, Page, Severity};
use chrono::{DateTime, Utc};

/// Datapoints shown on a page, newest first.
pub const DATAPOINTS_SHOWN: usize = 10;

/// Everything a page says besides the verdict.
#[derive(Debug, Clone)]
pub struct About<'a> {
    pub alarm: &'a Alarm,
    pub runbook: Runbook,
    pub why: &'a str,
    /// `ecs:prod/web`, or none when the runbook has no target.
    pub resource: Option<String>,
    /// e.g. `desired count 2–10, step 2`.
    pub bounds: Option<String>,
    /// From GetMetricData; an error is shown, never a reason not to page.
    pub datapoints: &'a Result<Vec<(DateTime<Utc>, f64)>, String>,
    pub dry_run: bool,
}

pub fn dedup_key(alarm: &str) -> String {
    format!("autopilot-remediate/{alarm}")
}

/// The page for `verdict`; `result` is how the action ended (`None`: not carried out).
pub fn page(
    about: &About,
    verdict: &Verdict,
    action: Option<&Action>,
    result: Option<&Result<(), String>>,
) -> Option<Page> {
    let name = &about.alarm.name;
    let resource = about.resource.clone().unwrap_or_else(|| name.clone());
    let would = if about.dry_run { "would " } else { "" };
    let (page_action, severity, class, summary, reason) = match verdict {
        Verdict::Act(_) | Verdict::Resume(_) => {
            let action = action?;
            match result {
                Some(Err(e)) => (
                    PageAction::Trigger,
                    Severity::Critical,
                    "remediate.failed",
                    format!("{name}: {} of {resource} FAILED", action.verb()),
                    e.clone(),
                ),
                _ => (
                    PageAction::Trigger,
                    Severity::Warning,
                    "remediate.acted",
                    format!("{name}: {would}{action} on {resource}"),
                    String::new(),
                ),
            }
        }
        Verdict::Repage(claim) => match &claim.result {
            Some(Err(e)) => (
                PageAction::Trigger,
                Severity::Critical,
                "remediate.failed",
                format!("{name}: {} of {resource} FAILED", claim.action.verb()),
                e.clone(),
            ),
            _ => (
                PageAction::Trigger,
                Severity::Warning,
                "remediate.acted",
                format!("{name}: {} on {resource}", claim.action),
                String::new(),
            ),
        },
        Verdict::PageOnly(why) => (
            PageAction::Trigger,
            Severity::Error,
            "remediate.page",
            format!("{name} is in ALARM: no automatic action"),
            why.clone(),
        ),
        Verdict::Refused(why) => (
            PageAction::Trigger,
            Severity::Error,
            "remediate.refused",
            format!(
                "{name}: {would}refused to act on {resource}: {}",
                first_clause(why)
            ),
            why.clone(),
        ),
        Verdict::Resolve(why) => {
            let (summary, reason) = match (action, result) {
                (Some(a), Some(Err(e))) => {
                    // A failed scale-in is a failure of its own: page it, don't resolve.
                    return Some(build(
                        about,
                        PageAction::Trigger,
                        Severity::Critical,
                        "remediate.failed",
                        format!("{name} is OK, but the {} of {resource} FAILED", a.verb()),
                        e.clone(),
                        Some(a),
                    ));
                }
                (Some(a), _) => (
                    format!("{name} is OK: {would}{a} on {resource}"),
                    why.clone(),
                ),
                (None, _) => (format!("{name} is OK"), why.clone()),
            };
            (
                PageAction::Resolve,
                Severity::Info,
                "remediate.resolved",
                summary,
                reason,
            )
        }
        Verdict::Warn(why) => (
            PageAction::Trigger,
            Severity::Warning,
            "remediate.insufficient-data",
            format!("{name} has INSUFFICIENT_DATA: no action taken"),
            why.clone(),
        ),
        Verdict::Ignore(_) | Verdict::Busy(_) => return None,
    };
    let shown = match verdict {
        Verdict::Repage(claim) => Some(&claim.action),
        _ => action,
    };
    Some(build(
        about,
        page_action,
        severity,
        class,
        summary,
        reason,
        shown,
    ))
}

fn first_clause(why: &str) -> &str {
    why.split([';', '(']).next().unwrap_or(why).trim()
}

fn build(
    about: &About,
    page_action: PageAction,
    severity: Severity,
    class: &str,
    summary: String,
    reason: String,
    action: Option<&Action>,
) -> Page {
    let alarm = about.alarm;
    let resource = about.resource.clone().unwrap_or_default();
    let mut page = Page::new(page_action, severity, class, &resource, summary)
        .dedup_key(dedup_key(&alarm.name))
        .group(match &alarm.kind {
            Kind::Metric(m) => m.namespace.clone(),
            Kind::Math => "metric math".into(),
            Kind::Composite { .. } => "composite".into(),
        })
        .fact("Alarm", &alarm.name)
        .fact(
            "State",
            format!(
                "{} since {}",
                alarm.state,
                alarm.state_updated.format("%Y-%m-%d %H:%M:%S UTC")
            ),
        )
        .fact("Alarm reason", &alarm.reason);
    if !reason.is_empty() {
        page = page.fact("Why", reason);
    }
    match &alarm.kind {
        Kind::Metric(m) => {
            page = page.fact("Metric", m.describe());
            if !m.dimensions.is_empty() {
                let dims: Vec<String> = m
                    .dimensions
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                page = page.fact("Dimensions", dims.join(", "));
            }
        }
        Kind::Composite { rule } => page = page.fact("Rule", rule),
        Kind::Math => page = page.fact("Metric", "metric math (see the alarm)"),
    }
    if !alarm.description.is_empty() {
        page = page.fact("Description", &alarm.description);
    }
    page = page.fact("Runbook", format!("{} ({})", about.runbook, about.why));
    if let Some(r) = &about.resource {
        page = page.fact("Resource", r);
    }
    if let Some(a) = action {
        page = page
            .fact("Action", a.verb())
            .fact("Before", a.before())
            .fact("After", a.after());
    }
    if let Some(b) = &about.bounds {
        page = page.fact("Bounds", b);
    }
    if about.dry_run {
        page = page.fact("Dry run", "yes: nothing was changed");
    }
    page = page.fact("Alarm ARN", &alarm.arn);
    let points = match about.datapoints {
        Ok(points) if points.is_empty() => {
            vec!["none in the lookback (an hour, or ten periods)".to_string()]
        }
        Ok(points) => points
            .iter()
            .take(DATAPOINTS_SHOWN)
            .map(|(t, v)| format!("{}  {}", t.format("%H:%M UTC"), trim_number(*v)))
            .collect(),
        Err(e) => vec![format!("unavailable: {e}")],
    };
    if alarm.metric().is_some() {
        page = page.list("Recent datapoints", points);
    }
    page
}

fn trim_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarm::State;
    use crate::runbook::tests::alarm;

    fn about<'a>(a: &'a Alarm, points: &'a Result<Vec<(DateTime<Utc>, f64)>, String>) -> About<'a> {
        About {
            alarm: a,
            runbook: Runbook::ScaleOut,
            why: "the default for AWS/ECS CPUUtilization",
            resource: Some("ecs:prod/web".into()),
            bounds: Some("desired count 2–10, step 2".into()),
            datapoints: points,
            dry_run: false,
        }
    }

    fn scale() -> Action {
        Action::SetDesiredCount {
            cluster: "prod".into(),
            service: "web".into(),
            from: 2,
            to: 4,
        }
    }

    #[test]
    fn an_action_page_says_what_was_done_before_and_after_with_datapoints() {
        let a = alarm(
            "AWS/ECS",
            "CPUUtilization",
            &[("ClusterName", "prod"), ("ServiceName", "web")],
            "GreaterThanThreshold",
        );
        let points = Ok(vec![
            ("2026-11-24T03:00:00Z".parse().unwrap(), 92.5),
            ("2026-11-24T02:59:00Z".parse().unwrap(), 88.0),
        ]);
        let p = page(
            &about(&a, &points),
            &Verdict::Act(scale()),
            Some(&scale()),
            Some(&Ok(())),
        )
        .unwrap();
        assert_eq!(p.severity, Severity::Warning);
        assert_eq!(p.dedup_key, "autopilot-remediate/prod-CPUUtilization");
        assert_eq!(p.fact_value("Before"), Some("desired count 2"));
        assert_eq!(p.fact_value("After"), Some("desired count 4"));
        assert_eq!(p.fact_value("Bounds"), Some("desired count 2–10, step 2"));
        assert!(p
            .fact_value("Metric")
            .unwrap()
            .contains("CPUUtilization (Average over 60 s) GreaterThanThreshold 80"));
        assert_eq!(p.lists[0].1, vec!["03:00 UTC  92.50", "02:59 UTC  88"]);
    }

    #[test]
    fn failures_are_critical_and_lookups_that_fail_still_page() {
        let a = alarm("AWS/ECS", "CPUUtilization", &[], "GreaterThanThreshold");
        let points = Err("GetMetricData: AccessDenied".to_string());
        let p = page(
            &about(&a, &points),
            &Verdict::Act(scale()),
            Some(&scale()),
            Some(&Err("UpdateService: denied".into())),
        )
        .unwrap();
        assert_eq!(p.severity, Severity::Critical);
        assert!(p.summary.contains("FAILED"));
        assert_eq!(p.fact_value("Why"), Some("UpdateService: denied"));
        assert_eq!(
            p.lists[0].1,
            vec!["unavailable: GetMetricData: AccessDenied"]
        );
    }

    #[test]
    fn dry_run_says_would_and_ok_resolves_the_same_incident() {
        let mut a = alarm("AWS/ECS", "CPUUtilization", &[], "GreaterThanThreshold");
        let points = Ok(vec![]);
        let mut ab = about(&a, &points);
        ab.dry_run = true;
        let p = page(&ab, &Verdict::Act(scale()), Some(&scale()), None).unwrap();
        assert!(p.summary.contains("would scale-out"), "{}", p.summary);
        assert_eq!(p.fact_value("Dry run"), Some("yes: nothing was changed"));
        let refused = page(
            &ab,
            &Verdict::Refused("cooldown until 03:12:00 UTC (after scale-out)".into()),
            None,
            None,
        )
        .unwrap();
        assert!(
            refused.summary.ends_with("cooldown until 03:12:00 UTC"),
            "{}",
            refused.summary
        );
        a.state = State::Ok;
        let trigger_key = p.dedup_key.clone();
        let ab = about(&a, &points);
        let r = page(&ab, &Verdict::Resolve("web is OK again".into()), None, None).unwrap();
        assert_eq!(r.action, PageAction::Resolve);
        assert_eq!(r.dedup_key, trigger_key);
        assert!(page(&ab, &Verdict::Ignore("dup".into()), None, None).is_none());
    }
}
