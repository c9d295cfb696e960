//! rotate's configuration: how each secret rotates, what is rebuilt and
//! redeployed after it has, and the CA bundle database servers are verified against.

use autopilot_shared::config::{self, check_ecs_name, parse_json, ConfigError};
use autopilot_shared::Common;
use serde::Deserialize;
use std::collections::HashSet;

/// JSON list of [`RotationTarget`]s: how each secret rotates, what depends on it.
pub const ROTATIONS: &str = "AUTOPILOT_ROTATIONS";
/// PEM file of the CA certificates database servers are verified against (the RDS bundle).
pub const DB_CA_BUNDLE: &str = "AUTOPILOT_DB_CA_BUNDLE";

/// Everything rotate is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub common: Common,
    pub rotations: Vec<RotationTarget>,
    /// None: the system's trust store.
    pub db_ca_bundle: Option<String>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(config::env)
    }

    /// Reads configuration through `lookup`, so tests can pass a map instead of the environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let common = Common::from_lookup(&lookup)?;
        let rotations = match lookup(ROTATIONS) {
            None => Vec::new(),
            Some(raw) => parse_rotations(&raw)?,
        };
        let db_ca_bundle = lookup(DB_CA_BUNDLE).filter(|v| !v.trim().is_empty());
        Ok(Self {
            common,
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

/// How new passwords are made (`crate::password`, GetRandomPassword's rules with
/// `RequireEachIncludedType`). The defaults are safe inside a connection URL:
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

/// The name in a secret ARN (`arn:…:secret:NAME-AbCdEf`), without the random suffix.
pub fn secret_name(arn: &str) -> Option<&str> {
    let (_, rest) = arn.split_once(":secret:")?;
    match rest.rsplit_once('-') {
        Some((name, suffix)) if suffix.len() == 6 => Some(name),
        _ => Some(rest),
    }
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
        crate::password::allowed(&t.password)
            .map_err(|m| ConfigError::new(at("password.exclude_characters"), m))?;
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
            check_ecs_name(&c.cluster).map_err(|m| ConfigError::new(at("cluster"), m))?;
            check_ecs_name(&c.service).map_err(|m| ConfigError::new(at("service"), m))?;
        }
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopilot_shared::config::TOPIC_ARN;

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:oncall";

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(config::lookup_from(
            vars.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ))
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
                r##"[{"secret":"s","strategy":"random","password":{"exclude_characters":"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"}}]"##,
                "AUTOPILOT_ROTATIONS[0].password.exclude_characters",
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
}
