//! Which runbook an alarm runs, and on which configured resource. Pure.
//!
//! Precedence: a name rule in `AUTOPILOT_REMEDIATE_RUNBOOKS` (the first that
//! matches), then the alarm's `autopilot:runbook` tag, then the default for the
//! alarm's namespace and metric. A runbook acts only on a resource that is
//! configured with its bounds: an alarm on anything else pages and acts on nothing,
//! whatever its dimensions say.

use crate::alarm::{Alarm, Kind, Metric};
use crate::config::{Config, DatabaseBounds, ServiceBounds, RUNBOOK_TAG};
use autopilot_shared::config::glob;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Runbook {
    /// Scale an ECS service out (and back in once the alarm is OK).
    ScaleOut,
    /// Force a new deployment of an ECS service, which replaces its tasks.
    Restart,
    /// Roll back a deploy autopilot made within the rollback window.
    Rollback,
    /// Grow an RDS instance's allocated storage.
    GrowStorage,
    /// Page with context; act on nothing.
    Page,
}

impl Runbook {
    pub fn as_str(self) -> &'static str {
        match self {
            Runbook::ScaleOut => "scale-out",
            Runbook::Restart => "restart",
            Runbook::Rollback => "rollback",
            Runbook::GrowStorage => "grow-storage",
            Runbook::Page => "page",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Runbook::ScaleOut,
            Runbook::Restart,
            Runbook::Rollback,
            Runbook::GrowStorage,
            Runbook::Page,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Runbook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The runbook for `alarm`, and why it was chosen.
pub fn select(config: &Config, alarm: &Alarm) -> (Runbook, String) {
    if let Kind::Composite { .. } = alarm.kind {
        return (Runbook::Page, "composite alarms page only".into());
    }
    if let Some(rule) = config.rules.iter().find(|r| glob(&r.alarm, &alarm.name)) {
        return (
            rule.runbook,
            format!("configured for alarms named `{}`", rule.alarm),
        );
    }
    let tag = alarm
        .tags
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(RUNBOOK_TAG));
    if let Some((_, value)) = tag {
        return match Runbook::parse(value.trim()) {
            Some(r) => (r, format!("the alarm's {RUNBOOK_TAG} tag")),
            None => (
                Runbook::Page,
                format!("the alarm's {RUNBOOK_TAG} tag `{value}` names no runbook; paging only"),
            ),
        };
    }
    match alarm.metric() {
        Some(m) => default_for(m),
        None => (
            Runbook::Page,
            "a metric-math alarm has no single resource to act on".into(),
        ),
    }
}

/// The default runbook for a metric, after the alarm tables of common production guides.
fn default_for(m: &Metric) -> (Runbook, String) {
    let high = m.fires_when_high();
    let runbook = match (m.namespace.as_str(), m.name.as_str()) {
        ("AWS/ECS", "CPUUtilization" | "MemoryUtilization") if high => Runbook::ScaleOut,
        ("AWS/ApplicationELB", "UnHealthyHostCount") if high => Runbook::Restart,
        ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count" | "HTTPCode_ELB_5XX_Count")
        | ("AWS/ELB", "HTTPCode_Backend_5XX" | "HTTPCode_ELB_5XX")
            if high =>
        {
            Runbook::Rollback
        }
        ("AWS/RDS", "FreeStorageSpace") if !high => Runbook::GrowStorage,
        _ => {
            return (
                Runbook::Page,
                format!(
                    "no runbook acts on {} {}; paging with context",
                    m.namespace, m.name
                ),
            )
        }
    };
    (
        runbook,
        format!("the default for {} {}", m.namespace, m.name),
    )
}

/// What a runbook acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Service(ServiceBounds),
    Database(DatabaseBounds),
}

impl Target {
    /// The key guardrails, pages and the audit trail use: `ecs:prod/web`, `rds:orders-db`.
    pub fn key(&self) -> String {
        match self {
            Target::Service(s) => format!("ecs:{}", s.key()),
            Target::Database(d) => format!("rds:{}", d.instance),
        }
    }
}

/// The configured resource `runbook` acts on for `alarm`, or why there is none.
pub fn target(config: &Config, runbook: Runbook, alarm: &Alarm) -> Result<Target, String> {
    let Some(m) = alarm.metric() else {
        return Err("the alarm watches no single metric".into());
    };
    // A tag or a name rule can pick any runbook; only act where it fits the
    // metric: adding tasks to an idle service or storage for a busy CPU helps nothing.
    if runbook == Runbook::ScaleOut && !m.fires_when_high() {
        return Err(format!(
            "scale-out fits an alarm on a high value; {} fires {}",
            alarm.name, m.comparison
        ));
    }
    if runbook == Runbook::GrowStorage
        && !(m.namespace == "AWS/RDS" && m.name == "FreeStorageSpace" && !m.fires_when_high())
    {
        return Err(format!(
            "grow-storage fits only AWS/RDS FreeStorageSpace running low, not {} {}",
            m.namespace, m.name
        ));
    }
    match runbook {
        Runbook::Page => Err("the runbook pages only".into()),
        Runbook::GrowStorage => {
            let id = m
                .dimension("DBInstanceIdentifier")
                .ok_or("the alarm has no DBInstanceIdentifier dimension")?;
            config
                .database(id)
                .cloned()
                .map(Target::Database)
                .ok_or_else(|| format!("RDS instance {id} is not in AUTOPILOT_REMEDIATE_DATABASES"))
        }
        Runbook::ScaleOut | Runbook::Restart | Runbook::Rollback => {
            service_of(config, m).map(|s| Target::Service(s.clone()))
        }
    }
}

/// The configured service an alarm's dimensions point at: ECS's own, an ALB
/// target group or load balancer, or a classic ELB.
fn service_of<'a>(config: &'a Config, m: &Metric) -> Result<&'a ServiceBounds, String> {
    if let (Some(cluster), Some(service)) = (m.dimension("ClusterName"), m.dimension("ServiceName"))
    {
        return config.service(cluster, service).ok_or_else(|| {
            format!("ECS service {cluster}/{service} is not in AUTOPILOT_REMEDIATE_SERVICES")
        });
    }
    // A target group names the service exactly; when it is not mapped, its load
    // balancer (shared by other services) must not stand in for it.
    if let Some(tg) = m.dimension("TargetGroup") {
        return config
            .services
            .iter()
            .find(|s| s.target_groups.iter().any(|t| t == tg))
            .ok_or_else(|| {
                format!("target group {tg} maps to no service in AUTOPILOT_REMEDIATE_SERVICES")
            });
    }
    let lb = m
        .dimension("LoadBalancer")
        .or_else(|| m.dimension("LoadBalancerName"));
    if let Some(lb) = lb {
        let mapped: Vec<&ServiceBounds> = config
            .services
            .iter()
            .filter(|s| s.load_balancers.iter().any(|l| l == lb))
            .collect();
        return match mapped.as_slice() {
            [one] => Ok(one),
            [] => Err(format!("load balancer {lb} maps to no service in AUTOPILOT_REMEDIATE_SERVICES")),
            many => Err(format!(
                "load balancer {lb} fronts {} services ({}); give the alarm a TargetGroup dimension",
                many.len(),
                many.iter().map(|s| s.key()).collect::<Vec<_>>().join(", ")
            )),
        };
    }
    Err("the alarm's dimensions name no ECS service, target group or load balancer".into())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::alarm::State;
    use crate::config::RunbookRule;
    use autopilot_shared::config::lookup_from;
    use std::collections::BTreeMap;

    pub fn config() -> Config {
        Config::from_lookup(lookup_from(vec![
            ("AUTOPILOT_TOPIC_ARN".into(), "arn:aws:sns:us-east-1:123456789012:oncall".into()),
            ("AUTOPILOT_REMEDIATE_TABLE".into(), "guard".into()),
            (
                "AUTOPILOT_REMEDIATE_SERVICES".into(),
                r#"[{"cluster":"prod","service":"web","min":2,"max":10,"step":2,
                     "targetGroups":["targetgroup/web/0123456789abcdef"],
                     "loadBalancers":["app/web-alb/0123456789abcdef","legacy-elb","app/shared/1"]},
                    {"cluster":"prod","service":"api","min":1,"max":4,"loadBalancers":["app/shared/1"]}]"#
                    .into(),
            ),
            (
                "AUTOPILOT_REMEDIATE_DATABASES".into(),
                r#"[{"instance":"orders-db","maxAllocatedGiB":500}]"#.into(),
            ),
        ]))
        .unwrap()
    }

    pub fn alarm(namespace: &str, metric: &str, dims: &[(&str, &str)], comparison: &str) -> Alarm {
        Alarm {
            name: format!("{}-{metric}", dims.first().map(|d| d.1).unwrap_or("x")),
            arn: "arn:aws:cloudwatch:us-east-1:123456789012:alarm:a".into(),
            state: State::Alarm,
            state_updated: "2026-11-24T03:00:00Z".parse().unwrap(),
            reason: "Threshold Crossed".into(),
            description: String::new(),
            kind: Kind::Metric(Metric {
                namespace: namespace.into(),
                name: metric.into(),
                dimensions: dims
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                statistic: "Average".into(),
                period: 60,
                threshold: Some(80.0),
                comparison: comparison.into(),
                evaluation_periods: 3,
            }),
            tags: BTreeMap::new(),
        }
    }

    const HIGH: &str = "GreaterThanThreshold";
    const ECS: &[(&str, &str)] = &[("ClusterName", "prod"), ("ServiceName", "web")];

    #[test]
    fn defaults_follow_the_alarm_tables() {
        let c = config();
        let cases = [
            ("AWS/ECS", "CPUUtilization", HIGH, Runbook::ScaleOut),
            ("AWS/ECS", "MemoryUtilization", HIGH, Runbook::ScaleOut),
            (
                "AWS/ECS",
                "CPUUtilization",
                "LessThanThreshold",
                Runbook::Page,
            ),
            (
                "AWS/ApplicationELB",
                "UnHealthyHostCount",
                HIGH,
                Runbook::Restart,
            ),
            (
                "AWS/ApplicationELB",
                "HTTPCode_Target_5XX_Count",
                HIGH,
                Runbook::Rollback,
            ),
            ("AWS/ELB", "HTTPCode_Backend_5XX", HIGH, Runbook::Rollback),
            (
                "AWS/RDS",
                "FreeStorageSpace",
                "LessThanThreshold",
                Runbook::GrowStorage,
            ),
            ("AWS/RDS", "CPUUtilization", HIGH, Runbook::Page),
            ("AWS/RDS", "DatabaseConnections", HIGH, Runbook::Page),
            ("AWS/ElastiCache", "Evictions", HIGH, Runbook::Page),
            ("Custom/App", "QueueDepth", HIGH, Runbook::Page),
        ];
        for (ns, metric, cmp, want) in cases {
            assert_eq!(
                select(&c, &alarm(ns, metric, ECS, cmp)).0,
                want,
                "{ns} {metric} {cmp}"
            );
        }
    }

    #[test]
    fn a_name_rule_beats_the_tag_and_the_tag_beats_the_default() {
        let mut c = config();
        let mut a = alarm("AWS/ECS", "CPUUtilization", ECS, HIGH);
        a.tags.insert("autopilot:runbook".into(), "restart".into());
        assert_eq!(select(&c, &a).0, Runbook::Restart);
        c.rules.push(RunbookRule {
            alarm: "prod-*".into(),
            runbook: Runbook::Page,
        });
        assert_eq!(select(&c, &a).0, Runbook::Page);
        a.tags.insert("autopilot:runbook".into(), "reboot".into());
        c.rules.clear();
        let (r, why) = select(&c, &a);
        assert_eq!(r, Runbook::Page);
        assert!(why.contains("reboot"), "{why}");
    }

    #[test]
    fn composite_and_math_alarms_page_only() {
        let c = config();
        let mut a = alarm("AWS/ECS", "CPUUtilization", ECS, HIGH);
        a.kind = Kind::Composite {
            rule: "ALARM(a) AND ALARM(b)".into(),
        };
        a.tags.insert("autopilot:runbook".into(), "restart".into());
        assert_eq!(select(&c, &a).0, Runbook::Page);
        a.kind = Kind::Math;
        a.tags.clear();
        assert_eq!(select(&c, &a).0, Runbook::Page);
        assert!(target(&c, Runbook::ScaleOut, &a).is_err());
    }

    #[test]
    fn an_unmapped_target_group_never_falls_back_to_its_load_balancer() {
        let c = config();
        let dims = [
            ("TargetGroup", "targetgroup/other/1"),
            ("LoadBalancer", "app/web-alb/0123456789abcdef"),
        ];
        let err = target(
            &c,
            Runbook::Restart,
            &alarm("AWS/ApplicationELB", "UnHealthyHostCount", &dims, HIGH),
        )
        .unwrap_err();
        assert!(err.contains("targetgroup/other/1"), "{err}");
    }

    #[test]
    fn a_tag_or_rule_cannot_aim_a_runbook_at_a_metric_it_does_not_fit() {
        let c = config();
        let db = [("DBInstanceIdentifier", "orders-db")];
        assert!(target(
            &c,
            Runbook::GrowStorage,
            &alarm("AWS/RDS", "CPUUtilization", &db, HIGH)
        )
        .unwrap_err()
        .contains("grow-storage fits only"));
        let low = alarm("AWS/ECS", "CPUUtilization", ECS, "LessThanThreshold");
        assert!(target(&c, Runbook::ScaleOut, &low)
            .unwrap_err()
            .contains("scale-out fits"));
    }

    #[test]
    fn targets_come_from_dimensions_and_only_configured_resources() {
        let c = config();
        let t = |ns, m, dims: &[(&str, &str)], r| {
            target(
                &c,
                r,
                &alarm(
                    ns,
                    m,
                    dims,
                    if m == "FreeStorageSpace" {
                        "LessThanThreshold"
                    } else {
                        HIGH
                    },
                ),
            )
            .map(|t| t.key())
        };
        assert_eq!(
            t("AWS/ECS", "CPUUtilization", ECS, Runbook::ScaleOut),
            Ok("ecs:prod/web".into())
        );
        let tg = [
            ("TargetGroup", "targetgroup/web/0123456789abcdef"),
            ("LoadBalancer", "app/shared/1"),
        ];
        assert_eq!(
            t(
                "AWS/ApplicationELB",
                "UnHealthyHostCount",
                &tg,
                Runbook::Restart
            ),
            Ok("ecs:prod/web".into())
        );
        let lb = [("LoadBalancer", "app/web-alb/0123456789abcdef")];
        assert_eq!(
            t(
                "AWS/ApplicationELB",
                "HTTPCode_Target_5XX_Count",
                &lb,
                Runbook::Rollback
            ),
            Ok("ecs:prod/web".into())
        );
        assert_eq!(
            t(
                "AWS/ELB",
                "HTTPCode_Backend_5XX",
                &[("LoadBalancerName", "legacy-elb")],
                Runbook::Rollback
            ),
            Ok("ecs:prod/web".into())
        );
        let shared = t(
            "AWS/ApplicationELB",
            "HTTPCode_Target_5XX_Count",
            &[("LoadBalancer", "app/shared/1")],
            Runbook::Rollback,
        );
        assert!(shared.unwrap_err().contains("fronts 2 services"));
        let other = t(
            "AWS/ECS",
            "CPUUtilization",
            &[("ClusterName", "prod"), ("ServiceName", "billing")],
            Runbook::ScaleOut,
        );
        assert!(other.unwrap_err().contains("prod/billing is not in"));
        assert_eq!(
            t(
                "AWS/RDS",
                "FreeStorageSpace",
                &[("DBInstanceIdentifier", "orders-db")],
                Runbook::GrowStorage
            ),
            Ok("rds:orders-db".into())
        );
        assert!(t(
            "AWS/RDS",
            "FreeStorageSpace",
            &[("DBInstanceIdentifier", "other-db")],
            Runbook::GrowStorage
        )
        .is_err());
        assert!(t("AWS/RDS", "FreeStorageSpace", &[], Runbook::GrowStorage).is_err());
    }
}
