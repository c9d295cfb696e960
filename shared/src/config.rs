//! The configuration toolkit every function builds its own configuration with,
//! and the two settings every function has ([`Common`]: the on-call topic and dry-run).
//!
//! Each function owns its configuration type and reads only its own variables,
//! through a `lookup` (the environment in Lambda, a map in tests). A bad value
//! fails the cold start with a [`ConfigError`] that names the variable and,
//! inside JSON, the entry and field, e.g. `AUTOPILOT_SERVICES[1].tags[0]`.

use serde::de::DeserializeOwned;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// The SNS topic that reaches on-call.
pub const TOPIC_ARN: &str = "AUTOPILOT_TOPIC_ARN";
/// Plan, log and notify, but change nothing.
pub const DRY_RUN: &str = "AUTOPILOT_DRY_RUN";

/// A configuration value that cannot be used, named precisely enough to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {field}: {message}")]
pub struct ConfigError {
    /// The variable, and inside it the path to the bad value, e.g. `AUTOPILOT_SERVICES[1].tags[0]`.
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The process environment, as a lookup.
pub fn env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// What every function is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    pub topic_arn: String,
    pub dry_run: bool,
}

impl Common {
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let topic_arn = required(lookup, TOPIC_ARN)?;
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
        Ok(Self { topic_arn, dry_run })
    }
}

/// A variable that must be set and not blank, trimmed.
pub fn required(
    lookup: &impl Fn(&str) -> Option<String>,
    key: &str,
) -> Result<String, ConfigError> {
    match lookup(key) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(ConfigError::new(key, "is required and not set")),
    }
}

/// A whole number within `range`, or `default` when the variable is not set.
pub fn number<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    key: &str,
    default: T,
    range: RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + Display + Copy,
{
    let Some(v) = lookup(key) else {
        return Ok(default);
    };
    match v.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ConfigError::new(
            key,
            format!(
                "`{v}` is not a whole number between {} and {}",
                range.start(),
                range.end()
            ),
        )),
    }
}

/// `true`/`false`, also `1`/`0`, `yes`/`no`, `on`/`off`; blank is false.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Parses the JSON in variable `var`; an error names the path inside it.
pub fn parse_json<T: DeserializeOwned>(var: &str, raw: &str) -> Result<T, ConfigError> {
    let de = &mut serde_json::Deserializer::from_str(raw);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let (path, message) = crate::events::error_path(&e);
        ConfigError::new(format!("{var}{}", path_suffix(&path)), message)
    })
}

/// serde_path_to_error prints `[1].tags[0]`; keep that, but make a leading field `.x`.
fn path_suffix(path: &str) -> String {
    if path.is_empty() || path.starts_with('[') {
        path.to_string()
    } else {
        format!(".{path}")
    }
}

/// Checks a name against a length limit and an allowed character set.
pub fn check_name(value: &str, max: usize, ok: impl Fn(char) -> bool) -> Result<(), String> {
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

/// Characters ECS allows in cluster, service and container names.
pub fn is_ecs_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Checks an ECS cluster or service name (at most 255 letters, digits, `-`, `_`).
pub fn check_ecs_name(value: &str) -> Result<(), String> {
    check_name(value, 255, is_ecs_name_char)
}

fn is_sns_topic_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "sns"
        && parts[3..].iter().all(|p| !p.is_empty())
}

/// A glob over names: `*` matches any run of characters, `?` exactly one.
/// Iterative, with single-star backtracking: linear in practice, never recursive.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
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

/// A lookup over fixed pairs, for tests and tools.
pub fn lookup_from(pairs: Vec<(String, String)>) -> impl Fn(&str) -> Option<String> {
    move |key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:oncall";

    fn common(vars: &[(&str, &str)]) -> Result<Common, ConfigError> {
        let lookup = lookup_from(
            vars.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        Common::from_lookup(&lookup)
    }

    #[test]
    fn errors_name_the_variable() {
        assert_eq!(common(&[]).unwrap_err().field, TOPIC_ARN);
        assert_eq!(
            common(&[(TOPIC_ARN, "oncall")]).unwrap_err().field,
            TOPIC_ARN
        );
        assert_eq!(
            common(&[(TOPIC_ARN, TOPIC), (DRY_RUN, "maybe")])
                .unwrap_err()
                .field,
            DRY_RUN
        );
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
                common(&[(TOPIC_ARN, TOPIC), (DRY_RUN, v)]).unwrap().dry_run,
                want
            );
        }
        assert!(!common(&[(TOPIC_ARN, TOPIC)]).unwrap().dry_run);
    }

    #[test]
    fn numbers_are_bounded_and_defaulted() {
        let lookup = lookup_from(vec![
            ("A".into(), " 7 ".into()),
            ("B".into(), "0".into()),
            ("C".into(), "x".into()),
        ]);
        assert_eq!(number(&lookup, "A", 1u64, 1..=10), Ok(7));
        assert_eq!(number(&lookup, "Z", 3u64, 1..=10), Ok(3));
        let err = number(&lookup, "B", 1u64, 1..=10).unwrap_err();
        assert_eq!(err.field, "B");
        assert!(err.message.contains("between 1 and 10"), "{err}");
        assert!(number(&lookup, "C", 1u64, 1..=10).is_err());
    }

    #[test]
    fn json_errors_name_the_path() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Entry {
            name: String,
        }
        let err = parse_json::<Vec<Entry>>("V", r#"[{"name":"a"},{"nme":"b"}]"#).unwrap_err();
        assert_eq!(err.field, "V[1].name");
        let err = parse_json::<Vec<Entry>>("V", "{").unwrap_err();
        assert_eq!(err.field, "V");
    }

    #[test]
    fn globs_match_runs_and_single_characters() {
        assert!(glob("web-*", "web-cpu-high"));
        assert!(glob("*-5xx", "web-5xx"));
        assert!(glob("db-?", "db-1"));
        assert!(!glob("db-?", "db-12"));
        assert!(!glob("web-*", "api-cpu"));
        assert!(glob("*", ""));
    }

    #[test]
    fn names_are_checked_for_length_and_characters() {
        assert!(check_ecs_name("prod-api_1").is_ok());
        assert!(check_ecs_name("a b").unwrap_err().contains("` `"));
        assert!(check_ecs_name("").is_err());
        assert!(check_ecs_name(&"x".repeat(256))
            .unwrap_err()
            .contains("255"));
    }
}
