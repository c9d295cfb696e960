//! Configuration read from the Lambda environment and validated at cold start.
//!
//! Every function reads the same variables through [`Config::from_lookup`]; a bad
//! value fails the cold start with a [`ConfigError`] that names the variable and,
//! inside `AUTOPILOT_SERVICES`, the entry and field.

use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

/// The SNS topic that reaches on-call.
pub const TOPIC_ARN: &str = "AUTOPILOT_TOPIC_ARN";
/// Plan, log and notify, but change nothing.
pub const DRY_RUN: &str = "AUTOPILOT_DRY_RUN";
/// JSON list of [`ServiceTarget`]s: which image feeds which ECS service.
pub const SERVICES: &str = "AUTOPILOT_SERVICES";
/// Minutes a deployment may run before on-call is warned.
pub const DEPLOY_TIMEOUT_MINUTES: &str = "AUTOPILOT_DEPLOY_TIMEOUT_MINUTES";
/// JSON list of [`RotationTarget`]s: how each secret rotates, what depends on it.
pub const ROTATIONS: &str = "AUTOPILOT_ROTATIONS";
/// PEM file of the CA certificates database servers are verified against (the RDS bundle).
pub const DB_CA_BUNDLE: &str = "AUTOPILOT_DB_CA_BUNDLE";

const DEFAULT_DEPLOY_TIMEOUT_MINUTES: u64 = 30;

/// A configuration value that cannot be used, named precisely enough to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {field}: {message}")]
pub struct ConfigError {
    /// The variable, and inside it the path to the bad value, e.g. `AUTOPILOT_SERVICES[1].tags[0]`.
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Everything the functions are configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub topic_arn: String,
    pub dry_run: bool,
    pub services: Vec<ServiceTarget>,
    pub deploy_timeout: Duration,
    pub rotations: Vec<RotationTarget>,
    /// None: the system's trust store.
    pub db_ca_bundle: Option<String>,
}

/// How one secret rotates, and what to update after it has.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationTarget {
    /// The secret's name or ARN.
    pub secret: String,
    pub strategy: Strategy,
    #[serde(default)]
    pub password: PasswordPolicy,
    /// For `random`: the JSON key whose value is replaced; absent, the whole secret string is.
    #[serde(default)]
    pub key: Option<String>,
    /// Secrets rewritten from the new credentials after finishSecret.
    #[serde(default)]
    pub dependents: Vec<Dependent>,
    /// ECS services given a new deployment after finishSecret, so new tasks read the new value.
    #[serde(default)]
    pub consumers: Vec<Consumer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The user changes its own password.
    PostgresSingleUser,
    /// Two users, `<user>` and `<user>_clone`, alternate; the admin secret (`masterarn`) sets them.
    PostgresAlternatingUsers,
    /// A random value with no external system (JWT signing keys, API tokens).
    Random,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::PostgresSingleUser => "postgres-single-user",
            Strategy::PostgresAlternatingUsers => "postgres-alternating-users",
            Strategy::Random => "random",
        }
    }
}

/// GetRandomPassword settings. The defaults are safe inside a connection URL:
/// letters, digits and the URL-unreserved `-._~` only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordPolicy {
    #[serde(default = "default_password_length")]
    pub length: i64,
    #[serde(default = "default_exclude_characters")]
    pub exclude_characters: String,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            length: default_password_length(),
            exclude_characters: default_exclude_characters(),
        }
    }
}

fn default_password_length() -> i64 {
    32
}

/// Every ASCII punctuation character except the URL-unreserved `-._~`.
pub const URL_UNSAFE_CHARACTERS: &str = "!\"#$%&'()*+,/:;<=>?@[\\]^`{|}";

fn default_exclude_characters() -> String {
    URL_UNSAFE_CHARACTERS.to_string()
}

/// A secret built from the rotated credentials.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependent {
    pub secret: String,
    /// `url`: the secret string is `postgresql://user:pass@host:port/db`;
    /// `json`: a JSON object whose `key` (default `url`) holds that URL.
    pub format: DependentFormat,
    #[serde(default)]
    pub key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DependentFormat {
    Url,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    pub cluster: String,
    pub service: String,
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
        glob(self.0.as_bytes(), tag.as_bytes())
    }
}

impl fmt::Display for TagPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Iterative glob match with single-star backtracking: linear in practice, never recursive.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads configuration through `lookup`, so tests can pass a map instead of the environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let topic_arn = required(&lookup, TOPIC_ARN)?;
        if !is_sns_topic_arn(&topic_arn) {
            return Err(ConfigError::new(
                TOPIC_ARN,
                format!("`{topic_arn}` is not an SNS topic ARN (arn:<partition>:sns:<region>:<account>:<name>)"),
            ));
        }
        let dry_run = match lookup(DRY_RUN) {
            None => false,
            Some(v) => parse_bool(&v)
                .ok_or_else(|| ConfigError::new(DRY_RUN, format!("`{v}` is not true or false")))?,
        };
        let deploy_timeout = match lookup(DEPLOY_TIMEOUT_MINUTES) {
            None => Duration::from_secs(DEFAULT_DEPLOY_TIMEOUT_MINUTES * 60),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(m) if (1..=24 * 60).contains(&m) => Duration::from_secs(m * 60),
                _ => {
                    return Err(ConfigError::new(
                        DEPLOY_TIMEOUT_MINUTES,
                        format!("`{v}` is not a whole number of minutes between 1 and 1440"),
                    ))
                }
            },
        };
        let services = match lookup(SERVICES) {
            None => Vec::new(),
            Some(raw) => parse_services(&raw)?,
        };
        let rotations = match lookup(ROTATIONS) {
            None => Vec::new(),
            Some(raw) => parse_rotations(&raw)?,
        };
        let db_ca_bundle = lookup(DB_CA_BUNDLE).filter(|v| !v.trim().is_empty());
        Ok(Self {
            topic_arn,
            dry_run,
            services,
            deploy_timeout,
            rotations,
            db_ca_bundle,
        })
    }

    /// The rotation configured for a secret, by ARN or name. Secrets Manager passes
    /// the ARN, whose name part ends in `-` and six random characters.
    pub fn rotation_for(&self, secret_arn: &str) -> Option<&RotationTarget> {
        self.rotations
            .iter()
            .find(|r| r.secret == secret_arn || secret_name(secret_arn) == Some(r.secret.as_str()))
    }

    /// The services a push of `repository:tag` deploys to, in configuration order.
    pub fn targets_for<'a>(
        &'a self,
        repository: &'a str,
        tag: &'a str,
    ) -> impl Iterator<Item = &'a ServiceTarget> + 'a {
        self.services
            .iter()
            .filter(move |t| t.matches(repository, tag))
    }

    /// Whether any service is fed by `repository`, whatever the tag.
    pub fn maps_repository(&self, repository: &str) -> bool {
        self.services.iter().any(|t| t.repository == repository)
    }
}

/// The name in a secret ARN (`arn:…:secret:NAME-AbCdEf`), without the random suffix.
pub fn secret_name(arn: &str) -> Option<&str> {
    let (_, rest) = arn.split_once(":secret:")?;
    match rest.rsplit_once('-') {
        Some((name, suffix)) if suffix.len() == 6 => Some(name),
        _ => Some(rest),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(var: &str, raw: &str) -> Result<T, ConfigError> {
    let de = &mut serde_json::Deserializer::from_str(raw);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let (path, message) = crate::events::error_path(&e);
        ConfigError::new(format!("{var}{}", path_suffix(&path)), message)
    })
}

fn parse_rotations(raw: &str) -> Result<Vec<RotationTarget>, ConfigError> {
    let targets: Vec<RotationTarget> = parse_json(ROTATIONS, raw)?;
    let mut seen = HashSet::new();
    for (i, t) in targets.iter().enumerate() {
        let at = |f: &str| format!("{ROTATIONS}[{i}].{f}");
        if t.secret.trim().is_empty() {
            return Err(ConfigError::new(at("secret"), "is empty"));
        }
        if !seen.insert(&t.secret) {
            return Err(ConfigError::new(
                at("secret"),
                format!("`{}` is configured twice", t.secret),
            ));
        }
        if !(20..=4096).contains(&t.password.length) {
            return Err(ConfigError::new(
                at("password.length"),
                format!("{} is outside 20..=4096", t.password.length),
            ));
        }
        if t.key.is_some() && t.strategy != Strategy::Random {
            return Err(ConfigError::new(
                at("key"),
                "applies to the random strategy only",
            ));
        }
        for (j, d) in t.dependents.iter().enumerate() {
            if d.secret.trim().is_empty() || d.secret == t.secret {
                return Err(ConfigError::new(
                    format!("{ROTATIONS}[{i}].dependents[{j}].secret"),
                    "must name another secret",
                ));
            }
            if t.strategy == Strategy::Random {
                return Err(ConfigError::new(
                    format!("{ROTATIONS}[{i}].dependents[{j}]"),
                    "dependents are built from database credentials; the random strategy has none",
                ));
            }
        }
        for (j, c) in t.consumers.iter().enumerate() {
            let at = |f: &str| format!("{ROTATIONS}[{i}].consumers[{j}].{f}");
            check_name(&c.cluster, 255, is_ecs_name_char)
                .map_err(|m| ConfigError::new(at("cluster"), m))?;
            check_name(&c.service, 255, is_ecs_name_char)
                .map_err(|m| ConfigError::new(at("service"), m))?;
        }
    }
    Ok(targets)
}

fn required(lookup: &impl Fn(&str) -> Option<String>, key: &str) -> Result<String, ConfigError> {
    match lookup(key) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(ConfigError::new(key, "is required and not set")),
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

fn is_sns_topic_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "sns"
        && parts[3..].iter().all(|p| !p.is_empty())
}

fn parse_services(raw: &str) -> Result<Vec<ServiceTarget>, ConfigError> {
    let targets: Vec<ServiceTarget> = parse_json(SERVICES, raw)?;
    let mut seen = HashSet::new();
    for (i, t) in targets.iter().enumerate() {
        let at = |f: &str| format!("{SERVICES}[{i}].{f}");
        check_name(&t.repository, 256, is_repository_char)
            .map_err(|m| ConfigError::new(at("repository"), m))?;
        check_name(&t.cluster, 255, is_ecs_name_char)
            .map_err(|m| ConfigError::new(at("cluster"), m))?;
        check_name(&t.service, 255, is_ecs_name_char)
            .map_err(|m| ConfigError::new(at("service"), m))?;
        if t.containers.is_empty() {
            return Err(ConfigError::new(at("container"), "is empty"));
        }
        for (j, c) in t.containers.iter().enumerate() {
            let field = if t.containers.len() == 1 {
                at("container")
            } else {
                format!("{SERVICES}[{i}].container[{j}]")
            };
            check_name(c, 255, is_ecs_name_char).map_err(|m| ConfigError::new(field.clone(), m))?;
            if t.containers[..j].contains(c) {
                return Err(ConfigError::new(
                    field,
                    format!("container `{c}` is listed twice"),
                ));
            }
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
fn path_suffix(path: &str) -> String {
    if path.is_empty() || path.starts_with('[') {
        path.to_string()
    } else {
        format!(".{path}")
    }
}

fn check_name(value: &str, max: usize, ok: impl Fn(char) -> bool) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty".into());
    }
    if value.len() > max {
        return Err(format!(
            "is {} characters long; the limit is {max}",
            value.len()
        ));
    }
    if let Some(c) = value.chars().find(|&c| !ok(c)) {
        return Err(format!(
            "`{value}` contains `{c}`, which is not allowed here"
        ));
    }
    Ok(())
}

fn is_repository_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c)
}

fn is_ecs_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:oncall";

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
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
        assert!(!c.dry_run);
        assert_eq!(c.deploy_timeout, Duration::from_secs(1800));
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

    #[test]
    fn rotations_parse_with_safe_defaults_and_match_by_name_or_arn() {
        let c = load(&[
            (TOPIC_ARN, TOPIC),
            (ROTATIONS, r#"[{"secret":"prod/db/app","strategy":"postgres-single-user",
                "dependents":[{"secret":"prod/db/url","format":"url"}],
                "consumers":[{"cluster":"prod","service":"backend"}]},
               {"secret":"arn:aws:secretsmanager:us-east-1:1:secret:jwt-AbCdEf","strategy":"random","key":"signing_key"}]"#),
        ])
        .unwrap();
        let r = c
            .rotation_for("arn:aws:secretsmanager:us-east-1:1:secret:prod/db/app-x1Y2z3")
            .unwrap();
        assert_eq!(r.strategy, Strategy::PostgresSingleUser);
        assert_eq!(r.password.length, 32);
        assert!(
            r.password.exclude_characters.contains('@')
                && !r.password.exclude_characters.contains('-')
        );
        assert!(c
            .rotation_for("arn:aws:secretsmanager:us-east-1:1:secret:jwt-AbCdEf")
            .is_some());
        assert!(c
            .rotation_for("arn:aws:secretsmanager:us-east-1:1:secret:other-AbCdEf")
            .is_none());
    }

    #[test]
    fn rotation_errors_name_the_field() {
        let cases = [
            (
                r#"[{"secret":"s","strategy":"postgres"}]"#,
                "AUTOPILOT_ROTATIONS[0].strategy",
            ),
            (
                r#"[{"secret":"s","strategy":"random","password":{"length":8}}]"#,
                "AUTOPILOT_ROTATIONS[0].password.length",
            ),
            (
                r#"[{"secret":"s","strategy":"postgres-single-user","key":"k"}]"#,
                "AUTOPILOT_ROTATIONS[0].key",
            ),
            (
                r#"[{"secret":"s","strategy":"postgres-single-user","dependents":[{"secret":"s","format":"url"}]}]"#,
                "AUTOPILOT_ROTATIONS[0].dependents[0].secret",
            ),
            (
                r#"[{"secret":"s","strategy":"postgres-single-user","dependents":[{"secret":"u","format":"xml"}]}]"#,
                "AUTOPILOT_ROTATIONS[0].dependents[0].format",
            ),
            (
                r#"[{"secret":"s","strategy":"postgres-single-user","consumers":[{"cluster":"a b","service":"x"}]}]"#,
                "AUTOPILOT_ROTATIONS[0].consumers[0].cluster",
            ),
            (
                r#"[{"secret":"s","strategy":"random"},{"secret":"s","strategy":"random"}]"#,
                "AUTOPILOT_ROTATIONS[1].secret",
            ),
        ];
        for (json, field) in cases {
            let err = load(&[(TOPIC_ARN, TOPIC), (ROTATIONS, json)]).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn secret_names_drop_the_random_suffix() {
        assert_eq!(
            secret_name("arn:aws:secretsmanager:us-east-1:1:secret:prod/db-AbCdEf"),
            Some("prod/db")
        );
        assert_eq!(secret_name("prod/db"), None);
    }

    #[test]
    fn dry_run_parses_common_spellings() {
        for (v, want) in [
            ("true", true),
            ("1", true),
            ("YES", true),
            ("false", false),
            ("0", false),
        ] {
            assert_eq!(
                load(&[(TOPIC_ARN, TOPIC), (DRY_RUN, v)]).unwrap().dry_run,
                want
            );
        }
    }
}
