//! deploy's configuration: which image feeds which ECS service, how long a
//! deployment may run before on-call is warned, and how many services one push
//! deploys at once. Read once at cold start; a bad value names its field.

use autopilot_shared::config::{self, check_ecs_name, check_name, parse_json, ConfigError};
use autopilot_shared::Common;
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

/// JSON list of [`ServiceTarget`]s: which image feeds which ECS service.
pub const SERVICES: &str = "AUTOPILOT_SERVICES";
/// Minutes a deployment may run before on-call is warned.
pub const DEPLOY_TIMEOUT_MINUTES: &str = "AUTOPILOT_DEPLOY_TIMEOUT_MINUTES";
/// How many services one push observes and deploys at once.
pub const DEPLOY_CONCURRENCY: &str = "AUTOPILOT_DEPLOY_CONCURRENCY";

const DEFAULT_DEPLOY_TIMEOUT_MINUTES: u64 = 30;
const DEFAULT_DEPLOY_CONCURRENCY: usize = 10;

/// Everything deploy is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub common: Common,
    pub services: Vec<ServiceTarget>,
    pub deploy_timeout: Duration,
    /// At most this many services are observed and deployed at the same time,
    /// so a large map does not throttle ECS.
    pub concurrency: usize,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(config::env)
    }

    /// Reads configuration through `lookup`, so tests can pass a map instead of the environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let common = Common::from_lookup(&lookup)?;
        let minutes = config::number(
            &lookup,
            DEPLOY_TIMEOUT_MINUTES,
            DEFAULT_DEPLOY_TIMEOUT_MINUTES,
            1..=24 * 60,
        )?;
        let concurrency = config::number(
            &lookup,
            DEPLOY_CONCURRENCY,
            DEFAULT_DEPLOY_CONCURRENCY,
            1..=50,
        )?;
        let services = match lookup(SERVICES) {
            None => Vec::new(),
            Some(raw) => parse_services(&raw)?,
        };
        Ok(Self {
            common,
            services,
            deploy_timeout: Duration::from_secs(minutes * 60),
            concurrency,
        })
    }

    /// The services a push of `repository:tag` deploys to, in configuration order.
    pub fn targets_for(&self, repository: &str, tag: &str) -> Vec<&ServiceTarget> {
        self.services
            .iter()
            .filter(|t| t.matches(repository, tag))
            .collect()
    }

    /// Whether any service is fed by `repository`, whatever the tag.
    pub fn maps_repository(&self, repository: &str) -> bool {
        self.services.iter().any(|t| t.repository == repository)
    }
}

/// One ECS service fed by one ECR repository.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTarget {
    /// ECR repository name, e.g. `backend` or `team/backend`.
    pub repository: String,
    /// Tag patterns that deploy (`*` any run of characters, `?` one). Absent means every tag.
    #[serde(default = "any_tag")]
    pub tags: Vec<TagPattern>,
    /// ECS cluster name.
    pub cluster: String,
    /// ECS service name.
    pub service: String,
    /// The containers in the service's task definition that run this image: in
    /// JSON `container`, one name or a list (an app and its migration container).
    #[serde(rename = "container", deserialize_with = "one_or_many")]
    pub containers: Vec<String>,
    /// Turn the deployment circuit breaker on with every deploy.
    #[serde(default = "yes")]
    pub circuit_breaker: bool,
    /// Let the circuit breaker roll a failed deployment back.
    #[serde(default = "yes")]
    pub rollback: bool,
    /// An RDS instance to snapshot before deploying (e.g. before migrations):
    /// the service is updated only once the snapshot is available.
    #[serde(default)]
    pub snapshot: Option<String>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d) {
        Ok(OneOrMany::One(name)) => Ok(vec![name]),
        Ok(OneOrMany::Many(names)) => Ok(names),
        Err(_) => Err(serde::de::Error::custom(
            "expected a container name or a list of container names",
        )),
    }
}

fn any_tag() -> Vec<TagPattern> {
    vec![TagPattern("*".into())]
}

fn yes() -> bool {
    true
}

impl ServiceTarget {
    /// Whether a push of `repository:tag` deploys to this service.
    pub fn matches(&self, repository: &str, tag: &str) -> bool {
        self.repository == repository && self.tags.iter().any(|p| p.matches(tag))
    }

    /// `cluster/service`, the name on-call knows the service by.
    pub fn service_key(&self) -> String {
        format!("{}/{}", self.cluster, self.service)
    }
}

/// A glob over image tags: `*` matches any run of characters, `?` exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct TagPattern(pub String);

impl TagPattern {
    pub fn matches(&self, tag: &str) -> bool {
        config::glob(&self.0, tag)
    }
}

impl fmt::Display for TagPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn parse_services(raw: &str) -> Result<Vec<ServiceTarget>, ConfigError> {
    let targets: Vec<ServiceTarget> = parse_json(SERVICES, raw)?;
    let mut seen = HashSet::new();
    for (i, t) in targets.iter().enumerate() {
        let at = |f: &str| format!("{SERVICES}[{i}].{f}");
        check_name(&t.repository, 256, is_repository_char)
            .map_err(|m| ConfigError::new(at("repository"), m))?;
        check_ecs_name(&t.cluster).map_err(|m| ConfigError::new(at("cluster"), m))?;
        check_ecs_name(&t.service).map_err(|m| ConfigError::new(at("service"), m))?;
        if t.containers.is_empty() {
            return Err(ConfigError::new(at("container"), "is empty"));
        }
        for (j, c) in t.containers.iter().enumerate() {
            let field = if t.containers.len() == 1 {
                at("container")
            } else {
                format!("{SERVICES}[{i}].container[{j}]")
            };
            check_ecs_name(c).map_err(|m| ConfigError::new(field.clone(), m))?;
            if t.containers[..j].contains(c) {
                return Err(ConfigError::new(
                    field,
                    format!("container `{c}` is listed twice"),
                ));
            }
        }
        if let Some(db) = &t.snapshot {
            autopilot_shared::backup::check_db_identifier(db)
                .map_err(|m| ConfigError::new(at("snapshot"), m))?;
        }
        if t.tags.is_empty() {
            return Err(ConfigError::new(
                at("tags"),
                "is empty; omit it to deploy every tag",
            ));
        }
        for (j, p) in t.tags.iter().enumerate() {
            check_name(&p.0, 128, |c| {
                c.is_ascii_alphanumeric() || "_.-*?".contains(c)
            })
            .map_err(|m| ConfigError::new(format!("{SERVICES}[{i}].tags[{j}]"), m))?;
        }
        if t.rollback && !t.circuit_breaker {
            return Err(ConfigError::new(
                at("rollback"),
                "needs circuit_breaker: true (ECS rolls back only through the circuit breaker)",
            ));
        }
        // One push changing two entries of one service would register two revisions,
        // and the second update would undo the first: all its containers go in one entry.
        if !seen.insert((&t.repository, &t.cluster, &t.service)) {
            return Err(ConfigError::new(
                format!("{SERVICES}[{i}]"),
                format!(
                    "maps repository `{}` to {}/{} a second time; list every container it feeds in one entry's `container`",
                    t.repository, t.cluster, t.service
                ),
            ));
        }
    }
    Ok(targets)
}

/// serde_path_to_error prints `[1].tags[0]`; keep that, but make a leading field `.x`.
fn is_repository_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    use autopilot_shared::config::{DRY_RUN, TOPIC_ARN};

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:oncall";

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(config::lookup_from(
            vars.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ))
    }

    fn services(json: &str) -> Result<Config, ConfigError> {
        load(&[(TOPIC_ARN, TOPIC), (SERVICES, json)])
    }

    #[test]
    fn glob_matches_like_a_shell() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("v*", "v1.4.2", true),
            ("v*", "main-1", false),
            ("main-*", "main-abc123", true),
            ("v?.*", "v1.4", true),
            ("v?.*", "v10.4", false),
            ("*-rc*", "v1-rc2", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("latest", "latest", true),
            ("latest", "latest2", false),
            ("", "", true),
            ("", "x", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(TagPattern(p.into()).matches(t), want, "{p} vs {t}");
        }
    }

    #[test]
    fn minimal_config_has_safe_defaults() {
        let c = services(
            r#"[{"repository":"backend","cluster":"prod","service":"api","container":"app"}]"#,
        )
        .unwrap();
        assert!(!c.common.dry_run);
        assert_eq!(c.deploy_timeout, Duration::from_secs(1800));
        assert_eq!(c.concurrency, 10);
        let t = &c.services[0];
        assert!(t.circuit_breaker && t.rollback);
        assert!(t.matches("backend", "anything"));
        assert!(!t.matches("frontend", "anything"));
    }

    #[test]
    fn targets_for_fans_out_and_filters_by_tag() {
        let c = services(
            r#"[{"repository":"backend","tags":["v*"],"cluster":"prod","service":"api","container":"app"},
                {"repository":"backend","tags":["v*","main-*"],"cluster":"prod","service":"worker","container":"worker"},
                {"repository":"other","cluster":"prod","service":"x","container":"x"}]"#,
        )
        .unwrap();
        let names = |tag| {
            c.targets_for("backend", tag)
                .into_iter()
                .map(|t| t.service.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names("v1.4.2"), vec!["api", "worker"]);
        assert_eq!(names("main-abc"), vec!["worker"]);
        assert!(names("feature-x").is_empty());
        assert!(c.maps_repository("backend") && !c.maps_repository("nope"));
    }

    #[test]
    fn errors_name_the_variable_and_field() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "AUTOPILOT_TOPIC_ARN"),
            (&[(TOPIC_ARN, "oncall")], "AUTOPILOT_TOPIC_ARN"),
            (
                &[(TOPIC_ARN, TOPIC), (DRY_RUN, "maybe")],
                "AUTOPILOT_DRY_RUN",
            ),
            (
                &[(TOPIC_ARN, TOPIC), (DEPLOY_TIMEOUT_MINUTES, "0")],
                "AUTOPILOT_DEPLOY_TIMEOUT_MINUTES",
            ),
            (
                &[(TOPIC_ARN, TOPIC), (DEPLOY_CONCURRENCY, "0")],
                "AUTOPILOT_DEPLOY_CONCURRENCY",
            ),
            (
                &[(TOPIC_ARN, TOPIC), (DEPLOY_CONCURRENCY, "51")],
                "AUTOPILOT_DEPLOY_CONCURRENCY",
            ),
            (&[(TOPIC_ARN, TOPIC), (SERVICES, "{")], "AUTOPILOT_SERVICES"),
            (
                &[
                    (TOPIC_ARN, TOPIC),
                    (
                        SERVICES,
                        r#"[{"repository":"b","cluster":"c","service":"s"}]"#,
                    ),
                ],
                "AUTOPILOT_SERVICES[0].container",
            ),
            (
                &[
                    (TOPIC_ARN, TOPIC),
                    (
                        SERVICES,
                        r#"[{"repository":"b","cluster":"c","service":"s","container":"x","tgas":[]}]"#,
                    ),
                ],
                "AUTOPILOT_SERVICES[0].tgas",
            ),
            (
                &[
                    (TOPIC_ARN, TOPIC),
                    (
                        SERVICES,
                        r#"[{"repository":"b","cluster":"c","service":"s","container":"x","tags":7}]"#,
                    ),
                ],
                "AUTOPILOT_SERVICES[0].tags",
            ),
            (
                &[
                    (TOPIC_ARN, TOPIC),
                    (
                        SERVICES,
                        r#"[{"repository":"B","cluster":"c","service":"s","container":"x"}]"#,
                    ),
                ],
                "AUTOPILOT_SERVICES[0].repository",
            ),
            (
                &[
                    (TOPIC_ARN, TOPIC),
                    (
                        SERVICES,
                        r#"[{"repository":"b","cluster":"c","service":"s","container":"x","tags":["v*","bad tag"]}]"#,
                    ),
                ],
                "AUTOPILOT_SERVICES[0].tags[1]",
            ),
            (
                &[
                    (TOPIC_ARN, TOPIC),
                    (
                        SERVICES,
                        r#"[{"repository":"b","cluster":"c","service":"s","container":"x","tags":[]}]"#,
                    ),
                ],
                "AUTOPILOT_SERVICES[0].tags",
            ),
            (
                &[
                    (TOPIC_ARN, TOPIC),
                    (
                        SERVICES,
                        r#"[{"repository":"b","cluster":"c","service":"s","container":"x","circuit_breaker":false}]"#,
                    ),
                ],
                "AUTOPILOT_SERVICES[0].rollback",
            ),
            (
                &[
                    (TOPIC_ARN, TOPIC),
                    (
                        SERVICES,
                        r#"[{"repository":"b","cluster":"c","service":"s","container":"x"},{"repository":"b","cluster":"c","service":"s","container":"y"}]"#,
                    ),
                ],
                "AUTOPILOT_SERVICES[1]",
            ),
        ];
        for (vars, field) in cases {
            let err = load(vars).expect_err(field);
            assert_eq!(&err.field, field, "{err}");
            assert!(err.to_string().contains(field));
        }
    }

    #[test]
    fn container_is_one_name_or_a_list() {
        let c = services(
            r#"[{"repository":"b","cluster":"c","service":"s","container":["app","migrate"]},
                             {"repository":"b","cluster":"c","service":"t","container":"app"}]"#,
        )
        .unwrap();
        assert_eq!(c.services[0].containers, vec!["app", "migrate"]);
        assert_eq!(c.services[1].containers, vec!["app"]);
        for (json, field) in [
            (
                r#"[{"repository":"b","cluster":"c","service":"s","container":[]}]"#,
                "AUTOPILOT_SERVICES[0].container",
            ),
            (
                r#"[{"repository":"b","cluster":"c","service":"s","container":["a","a"]}]"#,
                "AUTOPILOT_SERVICES[0].container[1]",
            ),
            (
                r#"[{"repository":"b","cluster":"c","service":"s","container":["a","b c"]}]"#,
                "AUTOPILOT_SERVICES[0].container[1]",
            ),
            (
                r#"[{"repository":"b","cluster":"c","service":"s","container":7}]"#,
                "AUTOPILOT_SERVICES[0].container",
            ),
        ] {
            assert_eq!(services(json).unwrap_err().field, field, "{json}");
        }
    }

    #[test]
    fn unknown_field_is_named_in_the_message() {
        let err = services(
            r#"[{"repository":"b","cluster":"c","service":"s","container":"x","tgas":[]}]"#,
        )
        .unwrap_err();
        assert!(err.message.contains("tgas"), "{err}");
    }
}
