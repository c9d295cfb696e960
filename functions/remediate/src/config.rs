//! remediate's configuration: which services and databases it may act on and
//! within what bounds, which runbook an alarm runs, and the guardrails. Read
//! once at cold start; a bad value names its field.

use crate::runbook::Runbook;
use autopilot_shared::config::{self, check_ecs_name, check_name, parse_json, ConfigError};
use autopilot_shared::Common;
use serde::Deserialize;
use std::collections::HashSet;
use std::time::Duration;

/// The DynamoDB table that holds guardrail state and the audit trail.
pub const TABLE: &str = "AUTOPILOT_REMEDIATE_TABLE";
/// JSON list of [`ServiceBounds`]: the ECS services remediate may act on.
pub const SERVICES: &str = "AUTOPILOT_REMEDIATE_SERVICES";
/// JSON list of [`DatabaseBounds`]: the RDS instances whose storage it may grow.
pub const DATABASES: &str = "AUTOPILOT_REMEDIATE_DATABASES";
/// JSON list of [`RunbookRule`]s: a runbook per alarm-name pattern.
pub const RUNBOOKS: &str = "AUTOPILOT_REMEDIATE_RUNBOOKS";
/// Seconds after an action during which no other action is taken on the resource.
pub const COOLDOWN_SECONDS: &str = "AUTOPILOT_REMEDIATE_COOLDOWN_SECONDS";
/// At most this many actions per resource per action window.
pub const MAX_ACTIONS: &str = "AUTOPILOT_REMEDIATE_MAX_ACTIONS";
pub const ACTION_WINDOW_MINUTES: &str = "AUTOPILOT_REMEDIATE_ACTION_WINDOW_MINUTES";
/// More than this many state changes of one alarm per flap window stop automatic action.
pub const FLAP_LIMIT: &str = "AUTOPILOT_REMEDIATE_FLAP_LIMIT";
pub const FLAP_WINDOW_MINUTES: &str = "AUTOPILOT_REMEDIATE_FLAP_WINDOW_MINUTES";
/// A 5XX alarm rolls back a deploy autopilot started at most this long ago.
pub const ROLLBACK_WINDOW_MINUTES: &str = "AUTOPILOT_REMEDIATE_ROLLBACK_WINDOW_MINUTES";
/// What INSUFFICIENT_DATA does: `warn` (page a warning) or `ignore` (log only).
pub const INSUFFICIENT_DATA: &str = "AUTOPILOT_REMEDIATE_INSUFFICIENT_DATA";
/// Only alarms whose names start with this are handled, however they arrive.
pub const ALARM_NAME_PREFIX: &str = "AUTOPILOT_REMEDIATE_ALARM_NAME_PREFIX";
/// Days the audit trail is kept (DynamoDB TTL).
pub const AUDIT_TTL_DAYS: &str = "AUTOPILOT_REMEDIATE_AUDIT_TTL_DAYS";

/// The alarm tag that picks a runbook, when no name rule does.
pub const RUNBOOK_TAG: &str = "autopilot:runbook";

/// Everything remediate is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub common: Common,
    pub table: String,
    pub services: Vec<ServiceBounds>,
    pub databases: Vec<DatabaseBounds>,
    pub rules: Vec<RunbookRule>,
    pub guard: Guardrails,
    pub rollback_window: Duration,
    pub insufficient_data: InsufficientData,
    pub audit_ttl: Duration,
    /// Alarms whose names do not start with it are ignored (empty: all).
    pub alarm_name_prefix: String,
}

/// The durable limits every action is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guardrails {
    pub cooldown: Duration,
    pub max_actions: u32,
    pub action_window: Duration,
    pub flap_limit: u32,
    pub flap_window: Duration,
}

impl Default for Guardrails {
    fn default() -> Self {
        Self {
            cooldown: Duration::from_secs(600),
            max_actions: 3,
            action_window: Duration::from_secs(3600),
            flap_limit: 4,
            flap_window: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsufficientData {
    /// Page a warning and take no action (the default).
    Warn,
    /// Log the transition only.
    Ignore,
}

/// One ECS service remediate may scale, restart or roll back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceBounds {
    pub cluster: String,
    pub service: String,
    /// Desired count never goes below this.
    pub min: u32,
    /// Desired count (or a scalable target's minimum) never goes above this.
    pub max: u32,
    /// Tasks added per scale-out, and removed per scale-in step.
    #[serde(default = "one")]
    pub step: u32,
    /// ALB target groups in front of the service (`targetgroup/<name>/<id>`, the
    /// alarm's `TargetGroup` dimension).
    #[serde(default)]
    pub target_groups: Vec<String>,
    /// Load balancers in front of it: an ALB's `app/<name>/<id>` or a classic ELB's name.
    #[serde(default)]
    pub load_balancers: Vec<String>,
}

impl ServiceBounds {
    /// `cluster/service`, as pages and the guardrail table name it.
    pub fn key(&self) -> String {
        format!("{}/{}", self.cluster, self.service)
    }
}

/// One RDS instance whose storage remediate may grow.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DatabaseBounds {
    pub instance: String,
    /// Growth per action, in percent of the allocated storage (10 to 100; RDS
    /// refuses increases under 10 %).
    #[serde(default = "twenty")]
    pub grow_percent: u32,
    /// Allocated storage never goes above this many GiB.
    #[serde(rename = "maxAllocatedGiB")]
    pub max_allocated_gib: u32,
}

/// A runbook for the alarms whose name matches `alarm`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookRule {
    /// Glob on the alarm name: `*` any run of characters, `?` one.
    pub alarm: String,
    pub runbook: Runbook,
}

fn one() -> u32 {
    1
}

fn twenty() -> u32 {
    20
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(config::env)
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let common = Common::from_lookup(&lookup)?;
        let table = config::required(&lookup, TABLE)?;
        check_name(&table, 255, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
        })
        .map_err(|m| ConfigError::new(TABLE, m))?;
        if table.len() < 3 {
            return Err(ConfigError::new(
                TABLE,
                "DynamoDB table names are 3 to 255 characters",
            ));
        }
        let minutes = |key,
                       default: u64,
                       range: std::ops::RangeInclusive<u64>|
         -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(
                config::number(&lookup, key, default, range)? * 60,
            ))
        };
        let guard = Guardrails {
            cooldown: Duration::from_secs(config::number(
                &lookup,
                COOLDOWN_SECONDS,
                600,
                1..=86_400,
            )?),
            max_actions: config::number(&lookup, MAX_ACTIONS, 3, 1..=100)?,
            action_window: minutes(ACTION_WINDOW_MINUTES, 60, 1..=7 * 24 * 60)?,
            flap_limit: config::number(&lookup, FLAP_LIMIT, 4, 2..=100)?,
            flap_window: minutes(FLAP_WINDOW_MINUTES, 60, 1..=24 * 60)?,
        };
        let insufficient_data = match lookup(INSUFFICIENT_DATA).as_deref().map(str::trim) {
            None | Some("") | Some("warn") => InsufficientData::Warn,
            Some("ignore") => InsufficientData::Ignore,
            Some(other) => {
                return Err(ConfigError::new(
                    INSUFFICIENT_DATA,
                    format!("`{other}` is not `warn` or `ignore`"),
                ))
            }
        };
        let config = Self {
            common,
            table,
            services: parse_services(lookup(SERVICES).as_deref())?,
            databases: parse_databases(lookup(DATABASES).as_deref())?,
            rules: match lookup(RUNBOOKS) {
                None => Vec::new(),
                Some(raw) => parse_rules(&raw)?,
            },
            guard,
            rollback_window: minutes(ROLLBACK_WINDOW_MINUTES, 30, 1..=24 * 60)?,
            insufficient_data,
            audit_ttl: Duration::from_secs(
                config::number(&lookup, AUDIT_TTL_DAYS, 90, 1..=3650)? * 86_400,
            ),
            alarm_name_prefix: lookup(ALARM_NAME_PREFIX)
                .map(|p| p.trim().to_string())
                .unwrap_or_default(),
        };
        Ok(config)
    }

    pub fn service(&self, cluster: &str, service: &str) -> Option<&ServiceBounds> {
        self.services
            .iter()
            .find(|s| s.cluster == cluster && s.service == service)
    }

    pub fn database(&self, instance: &str) -> Option<&DatabaseBounds> {
        self.databases.iter().find(|d| d.instance == instance)
    }
}

fn parse_services(raw: Option<&str>) -> Result<Vec<ServiceBounds>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let services: Vec<ServiceBounds> = parse_json(SERVICES, raw)?;
    let mut seen = HashSet::new();
    for (i, s) in services.iter().enumerate() {
        let at = |f: &str| format!("{SERVICES}[{i}].{f}");
        check_ecs_name(&s.cluster).map_err(|m| ConfigError::new(at("cluster"), m))?;
        check_ecs_name(&s.service).map_err(|m| ConfigError::new(at("service"), m))?;
        if s.max == 0 || s.min > s.max {
            return Err(ConfigError::new(
                at("max"),
                format!(
                    "min {} and max {} are not a range (1 ≤ max, min ≤ max)",
                    s.min, s.max
                ),
            ));
        }
        // ECS allows at most 5,000 tasks per service.
        if s.max > 5000 {
            return Err(ConfigError::new(
                at("max"),
                "is above ECS's 5000 tasks per service",
            ));
        }
        if s.step == 0 || s.step > s.max {
            return Err(ConfigError::new(
                at("step"),
                format!("must be between 1 and max ({})", s.max),
            ));
        }
        for (j, tg) in s.target_groups.iter().enumerate() {
            check_name(tg, 255, |c| {
                c.is_ascii_alphanumeric() || matches!(c, '-' | '/')
            })
            .map_err(|m| ConfigError::new(at(&format!("targetGroups[{j}]")), m))?;
        }
        for (j, lb) in s.load_balancers.iter().enumerate() {
            check_name(lb, 255, |c| {
                c.is_ascii_alphanumeric() || matches!(c, '-' | '/')
            })
            .map_err(|m| ConfigError::new(at(&format!("loadBalancers[{j}]")), m))?;
        }
        if !seen.insert(s.key()) {
            return Err(ConfigError::new(
                at("service"),
                format!("{} is listed twice", s.key()),
            ));
        }
    }
    Ok(services)
}

fn parse_databases(raw: Option<&str>) -> Result<Vec<DatabaseBounds>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let databases: Vec<DatabaseBounds> = parse_json(DATABASES, raw)?;
    let mut seen = HashSet::new();
    for (i, d) in databases.iter().enumerate() {
        let at = |f: &str| format!("{DATABASES}[{i}].{f}");
        // RDS identifiers: 1-63 letters, digits and hyphens.
        check_name(&d.instance, 63, |c| c.is_ascii_alphanumeric() || c == '-')
            .map_err(|m| ConfigError::new(at("instance"), m))?;
        if !(10..=100).contains(&d.grow_percent) {
            return Err(ConfigError::new(
                at("growPercent"),
                "must be between 10 and 100 (RDS refuses storage increases under 10 %)",
            ));
        }
        // RDS's largest volumes are 64 TiB (65,536 GiB).
        if !(20..=65_536).contains(&d.max_allocated_gib) {
            return Err(ConfigError::new(
                at("maxAllocatedGiB"),
                "must be between 20 and 65536",
            ));
        }
        if !seen.insert(d.instance.to_ascii_lowercase()) {
            return Err(ConfigError::new(
                at("instance"),
                format!("{} is listed twice", d.instance),
            ));
        }
    }
    Ok(databases)
}

fn parse_rules(raw: &str) -> Result<Vec<RunbookRule>, ConfigError> {
    let rules: Vec<RunbookRule> = parse_json(RUNBOOKS, raw)?;
    for (i, r) in rules.iter().enumerate() {
        // CloudWatch alarm names are at most 255 characters.
        if r.alarm.is_empty() || r.alarm.len() > 255 {
            return Err(ConfigError::new(
                format!("{RUNBOOKS}[{i}].alarm"),
                "must be 1 to 255 characters",
            ));
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopilot_shared::config::lookup_from;

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:oncall";

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        // The first pair of a key wins: the case's own values, then the defaults.
        let mut pairs: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        pairs.push((config::TOPIC_ARN.to_string(), TOPIC.to_string()));
        pairs.push((TABLE.to_string(), "autopilot-guard".to_string()));
        Config::from_lookup(lookup_from(pairs))
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.guard, Guardrails::default());
        assert_eq!(c.rollback_window, Duration::from_secs(1800));
        assert_eq!(c.insufficient_data, InsufficientData::Warn);
        assert_eq!(c.audit_ttl, Duration::from_secs(90 * 86_400));
        assert!(c.services.is_empty() && c.databases.is_empty() && c.rules.is_empty());
    }

    #[test]
    fn services_databases_and_rules_parse() {
        let c = parse(&[
            (
                SERVICES,
                r#"[{"cluster":"prod","service":"web","min":2,"max":10,"step":2,
                     "targetGroups":["targetgroup/web/0123456789abcdef"],
                     "loadBalancers":["app/web-alb/0123456789abcdef","legacy-elb"]}]"#,
            ),
            (
                DATABASES,
                r#"[{"instance":"orders-db","maxAllocatedGiB":1000}]"#,
            ),
            (RUNBOOKS, r#"[{"alarm":"web-*","runbook":"restart"}]"#),
            (INSUFFICIENT_DATA, "ignore"),
        ])
        .unwrap();
        assert_eq!(c.service("prod", "web").unwrap().step, 2);
        assert_eq!(c.database("orders-db").unwrap().grow_percent, 20);
        assert_eq!(c.rules[0].runbook, Runbook::Restart);
        assert_eq!(c.insufficient_data, InsufficientData::Ignore);
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                SERVICES,
                r#"[{"cluster":"prod","service":"web","min":5,"max":2}]"#,
                "AUTOPILOT_REMEDIATE_SERVICES[0].max",
            ),
            (
                SERVICES,
                r#"[{"cluster":"prod","service":"web","min":1,"max":2,"step":0}]"#,
                "AUTOPILOT_REMEDIATE_SERVICES[0].step",
            ),
            (
                SERVICES,
                r#"[{"cluster":"a b","service":"web","min":1,"max":2}]"#,
                "AUTOPILOT_REMEDIATE_SERVICES[0].cluster",
            ),
            (
                SERVICES,
                r#"[{"cluster":"p","service":"w","min":1,"max":2},{"cluster":"p","service":"w","min":1,"max":2}]"#,
                "AUTOPILOT_REMEDIATE_SERVICES[1].service",
            ),
            (
                SERVICES,
                r#"[{"cluster":"p","service":"w","min":1,"max":2,"maximum":3}]"#,
                "AUTOPILOT_REMEDIATE_SERVICES[0]",
            ),
            (
                DATABASES,
                r#"[{"instance":"db","growPercent":5,"maxAllocatedGiB":100}]"#,
                "AUTOPILOT_REMEDIATE_DATABASES[0].growPercent",
            ),
            (
                DATABASES,
                r#"[{"instance":"db"}]"#,
                "AUTOPILOT_REMEDIATE_DATABASES[0].maxAllocatedGiB",
            ),
            (
                RUNBOOKS,
                r#"[{"alarm":"x","runbook":"reboot"}]"#,
                "AUTOPILOT_REMEDIATE_RUNBOOKS[0].runbook",
            ),
            (COOLDOWN_SECONDS, "0", COOLDOWN_SECONDS),
            (INSUFFICIENT_DATA, "alarm", INSUFFICIENT_DATA),
            (TABLE, "a b", TABLE),
        ];
        for (var, value, field) in cases {
            let err = parse(&[(var, value)]).unwrap_err();
            assert!(err.field.starts_with(field), "{var}={value}: {err}");
        }
    }
}
