//! Pure rotation decisions: is this step ours to run, what the pending secret
//! holds, who the next user is, what dependent secrets become, and the pages.

use crate::config::{Dependent, DependentFormat, RotationTarget, Strategy};
use crate::secret::{DbSecret, Endpoint};
use crate::sql::IDENTIFIER_LIMIT;
use autopilot_shared::pager::{Action, Page, Severity};
use std::collections::HashMap;
use std::fmt;

pub const AWSCURRENT: &str = "AWSCURRENT";
pub const AWSPENDING: &str = "AWSPENDING";
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";
/// Marks the version whose follow-up (dependent secrets, consumer redeploys, the
/// page) is still owed: set before AWSCURRENT moves, removed once the follow-up is
/// done. A later finishSecret or the scheduled follow-up check finds it and finishes
/// the work. A staging label is on one version at a time.
pub const FOLLOWUP_PENDING: &str = "AUTOPILOT_FOLLOWUP_PENDING";

const CLONE_SUFFIX: &str = "_clone";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Create,
    Set,
    Test,
    Finish,
}

impl Step {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "createSecret" => Some(Step::Create),
            "setSecret" => Some(Step::Set),
            "testSecret" => Some(Step::Test),
            "finishSecret" => Some(Step::Finish),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Create => "createSecret",
            Step::Set => "setSecret",
            Step::Test => "testSecret",
            Step::Finish => "finishSecret",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What DescribeSecret says, as far as the protocol cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versions {
    pub rotation_enabled: bool,
    /// When the secret last changed (epoch seconds), staging labels included.
    pub last_changed: Option<i64>,
    /// Version id -> staging labels.
    pub stages: HashMap<String, Vec<String>>,
}

impl Versions {
    fn has(&self, version: &str, label: &str) -> bool {
        self.stages
            .get(version)
            .is_some_and(|labels| labels.iter().any(|l| l == label))
    }

    /// The version holding `label`, if any.
    pub fn holder(&self, label: &str) -> Option<&str> {
        self.stages
            .iter()
            .find(|(_, labels)| labels.iter().any(|l| l == label))
            .map(|(id, _)| id.as_str())
    }

    pub fn is_current(&self, token: &str) -> bool {
        self.has(token, AWSCURRENT)
    }

    pub fn is_pending(&self, version: &str) -> bool {
        self.has(version, AWSPENDING)
    }

    /// Whether `version`'s follow-up is still owed.
    pub fn followup_pending(&self, version: &str) -> bool {
        self.has(version, FOLLOWUP_PENDING)
    }
}

/// The check before every step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preflight {
    Proceed,
    /// An earlier, abandoned rotation left AWSPENDING on another version while this
    /// token has none: move the label here before creating the pending value.
    Adopt {
        abandoned: String,
    },
    /// The token is already AWSCURRENT: the step has nothing left to do.
    AlreadyCurrent,
    Refuse(String),
}

pub fn preflight(step: Step, secret: &str, token: &str, v: &Versions) -> Preflight {
    if !v.rotation_enabled {
        return Preflight::Refuse(format!("rotation is not enabled for secret {secret}"));
    }
    if !v.stages.contains_key(token) {
        return Preflight::Refuse(format!(
            "version {token} is not a version of secret {secret}"
        ));
    }
    if v.is_current(token) {
        return Preflight::AlreadyCurrent;
    }
    if v.has(token, AWSPENDING) {
        return Preflight::Proceed;
    }
    match v.holder(AWSPENDING) {
        Some(abandoned) if step == Step::Create => Preflight::Adopt {
            abandoned: abandoned.to_string(),
        },
        Some(other) => Preflight::Refuse(format!(
            "version {token} of secret {secret} is not AWSPENDING (version {other} is); refusing {step}"
        )),
        None => Preflight::Refuse(format!(
            "version {token} of secret {secret} is not AWSPENDING; refusing {step}"
        )),
    }
}

/// The strategy for a secret: as configured, or, for a secret not configured,
/// what its JSON says (as the AWS sample rotation functions do).
pub fn strategy(configured: Option<&RotationTarget>, current: &str) -> Result<Strategy, String> {
    if let Some(t) = configured {
        return Ok(t.strategy);
    }
    let json: serde_json::Value = serde_json::from_str(current).map_err(|_| {
        "is not configured in AUTOPILOT_ROTATIONS and is not an RDS secret JSON".to_string()
    })?;
    match (
        json.get("engine").and_then(|e| e.as_str()),
        json.get("masterarn"),
    ) {
        (Some(e), Some(_)) if e.starts_with("postgres") => Ok(Strategy::PostgresAlternatingUsers),
        (Some(e), None) if e.starts_with("postgres") => Ok(Strategy::PostgresSingleUser),
        _ => Err(
            "is not configured in AUTOPILOT_ROTATIONS and its engine is not postgres".to_string(),
        ),
    }
}

/// The user the pending secret logs in as.
pub fn next_username(strategy: Strategy, current: &str) -> Result<String, String> {
    let next = match strategy {
        Strategy::PostgresAlternatingUsers => match current.strip_suffix(CLONE_SUFFIX) {
            Some(original) => original.to_string(),
            None => format!("{current}{CLONE_SUFFIX}"),
        },
        _ => current.to_string(),
    };
    if next.is_empty() {
        return Err("the secret's username is empty".into());
    }
    if next.len() > IDENTIFIER_LIMIT {
        return Err(format!(
            "user name `{next}` is {} bytes; PostgreSQL allows {IDENTIFIER_LIMIT}",
            next.len()
        ));
    }
    Ok(next)
}

/// Checks that the pending secret is this rotation's before anything is done with
/// it (what the AWS sample rotator checks against a confused deputy): the same
/// database as AWSCURRENT, the user AWSCURRENT's strategy rotates to, and for
/// alternating users the same admin secret. The pending value may have been
/// written by anyone who can put a value in the secret.
pub fn check_pending(
    strategy: Strategy,
    current: &DbSecret,
    pending: &DbSecret,
    secret: &str,
) -> Result<(), String> {
    let refuse = |what: String| {
        Err(format!(
            "the pending value of {secret} {what}; refusing to set it"
        ))
    };
    let expected = next_username(strategy, &current.username)?;
    if pending.username != expected {
        return refuse(format!(
            "names user {} where AWSCURRENT's user {} rotates to {expected}",
            pending.username, current.username
        ));
    }
    if !same_host(&pending.host, &current.host) || pending.port != current.port {
        return refuse(format!(
            "names database {} where AWSCURRENT names {}",
            pending.endpoint(),
            current.endpoint()
        ));
    }
    if pending.dbname() != current.dbname() {
        return refuse(format!(
            "names database name {} where AWSCURRENT names {}",
            pending.dbname(),
            current.dbname()
        ));
    }
    if pending.sslmode != current.sslmode {
        return refuse("asks for another TLS setting (sslmode) than AWSCURRENT".into());
    }
    if strategy == Strategy::PostgresAlternatingUsers && pending.masterarn != current.masterarn {
        return refuse("names another admin secret (masterarn) than AWSCURRENT".into());
    }
    Ok(())
}

/// Checks that the admin secret is for the database the app secret names, so the
/// admin password is sent only to the admin's own database.
pub fn check_admin_endpoint(
    admin: &Endpoint,
    database: &Endpoint,
    admin_secret: &str,
) -> Result<(), String> {
    if same_host(&admin.host, &database.host) && admin.port == database.port {
        return Ok(());
    }
    Err(format!(
        "the admin secret {admin_secret} is for {admin}, but the app secret names {database}; refusing to send the admin password there"
    ))
}

/// Host names compare without case and a trailing dot, as DNS does.
fn same_host(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// The pending secret string: the current one with a new password (and, for
/// alternating users, the other user). Every other field is kept.
pub fn pending_value(
    strategy: Strategy,
    key: Option<&str>,
    current: &str,
    password: &str,
    secret: &str,
) -> Result<String, String> {
    match strategy {
        Strategy::Random => {
            match key {
                None => Ok(password.to_string()),
                Some(key) => {
                    let mut json: serde_json::Map<String, serde_json::Value> = serde_json::from_str(current)
                    .map_err(|_| format!("secret {secret} is not a JSON object, so key `{key}` cannot be rotated"))?;
                    json.insert(
                        key.to_string(),
                        serde_json::Value::String(password.to_string()),
                    );
                    Ok(serde_json::Value::Object(json).to_string())
                }
            }
        }
        _ => {
            let mut db = DbSecret::parse(secret, current)?;
            db.username = next_username(strategy, &db.username)?;
            db.password = password.to_string();
            Ok(db.to_json())
        }
    }
}

/// What testSecret checks of a random secret: there is a non-empty value, under `key` if set.
pub fn check_random(key: Option<&str>, value: &str, secret: &str) -> Result<(), String> {
    match key {
        None if !value.is_empty() => Ok(()),
        None => Err(format!("the pending value of {secret} is empty")),
        Some(key) => {
            let json: serde_json::Value = serde_json::from_str(value)
                .map_err(|_| format!("the pending value of {secret} is not JSON"))?;
            match json.get(key).and_then(|v| v.as_str()) {
                Some(s) if !s.is_empty() => Ok(()),
                _ => Err(format!(
                    "the pending value of {secret} has no non-empty string `{key}`"
                )),
            }
        }
    }
}

/// The new value of a dependent secret, built from `creds` and keeping what the old
/// value had besides (the URL scheme and query, other JSON keys).
pub fn dependent_value(
    dependent: &Dependent,
    existing: Option<&str>,
    creds: &DbSecret,
) -> Result<String, String> {
    let key = dependent.key.as_deref().unwrap_or("url");
    match dependent.format {
        DependentFormat::Url => Ok(database_url(existing, creds)),
        DependentFormat::Json => {
            let mut json: serde_json::Map<String, serde_json::Value> = match existing {
                Some(text) => serde_json::from_str(text).map_err(|_| {
                    format!("dependent secret {} is not a JSON object", dependent.secret)
                })?,
                None => serde_json::Map::new(),
            };
            let old_url = json.get(key).and_then(|v| v.as_str()).map(str::to_string);
            json.insert(
                key.to_string(),
                serde_json::Value::String(database_url(old_url.as_deref(), creds)),
            );
            Ok(serde_json::Value::Object(json).to_string())
        }
    }
}

/// `scheme://user:password@host:port/db?query`, user and password percent-encoded.
pub fn database_url(existing: Option<&str>, creds: &DbSecret) -> String {
    let scheme = existing
        .and_then(|u| u.split_once("://"))
        .map(|(s, _)| s)
        .filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        })
        .unwrap_or("postgresql");
    let query = existing
        .and_then(|u| u.split_once('?'))
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    format!(
        "{scheme}://{}:{}@{}:{}/{}{query}",
        percent_encode(&creds.username),
        percent_encode(&creds.password),
        creds.host,
        creds.port,
        percent_encode(creds.dbname())
    )
}

pub(crate) fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The ClientRequestToken of a dependent secret's write: derived from the rotation's
/// token and the content, shaped as the UUID Secrets Manager expects (32 to 64 characters).
pub fn dependent_token(token: &str, content: &str) -> String {
    use sha2::{Digest, Sha256};
    let hex: String = Sha256::digest(format!("{token}\n{content}").as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// One incident per secret: a failed step triggers it, the next successful rotation resolves it.
pub fn dedup_key(secret_name: &str) -> String {
    format!("autopilot/rotate/{secret_name}")
}

pub fn failure_page(
    secret_name: &str,
    strategy: Option<Strategy>,
    step: Step,
    token: &str,
    error: &str,
) -> Page {
    Page::new(
        Action::Trigger,
        Severity::Critical,
        "rotate.failed",
        secret_name,
        format!("Rotation FAILED at {step}: {secret_name}"),
    )
    .dedup_key(dedup_key(secret_name))
    .fact("Secret", secret_name)
    .fact("Step", step)
    .fact("Strategy", strategy.map_or("unknown", Strategy::as_str))
    .fact("Version", token)
    .fact("Error", error)
    .fact(
        "Next",
        "Secrets Manager retries the step; every step is safe to repeat. AWSCURRENT is unchanged until finishSecret succeeds.",
    )
}

/// In dry-run, createSecret tells on-call what would rotate, and nothing else happens.
pub fn dry_run_page(secret_name: &str, strategy: Strategy) -> Page {
    Page::new(
        Action::Trigger,
        Severity::Info,
        "rotate.dry_run",
        secret_name,
        format!(
            "[dry-run] would rotate {secret_name} ({})",
            strategy.as_str()
        ),
    )
    .dedup_key(format!("autopilot/dry-run/rotate/{secret_name}"))
    .fact("Secret", secret_name)
    .fact("Strategy", strategy.as_str())
}

pub struct Rotated<'a> {
    pub secret_name: &'a str,
    pub strategy: Strategy,
    pub token: &'a str,
    pub username: Option<&'a str>,
    pub dependents: Vec<String>,
    pub consumers: Vec<String>,
}

pub fn success_page(r: &Rotated<'_>) -> Page {
    let mut page = Page::new(
        Action::Resolve,
        Severity::Info,
        "rotate.completed",
        r.secret_name,
        format!("Rotated {} ({})", r.secret_name, r.strategy.as_str()),
    )
    .dedup_key(dedup_key(r.secret_name))
    .fact("Secret", r.secret_name)
    .fact("Strategy", r.strategy.as_str())
    .fact("New AWSCURRENT version", r.token);
    if let Some(user) = r.username {
        page = page.fact("Database user now", user);
    }
    page.list("Dependent secrets up to date", r.dependents.clone())
        .list("Services redeployed", r.consumers.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(pairs: &[(&str, &[&str])]) -> Versions {
        Versions {
            rotation_enabled: true,
            last_changed: None,
            stages: pairs
                .iter()
                .map(|(id, labels)| {
                    (
                        id.to_string(),
                        labels.iter().map(|l| l.to_string()).collect(),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn preflight_follows_the_protocol() {
        let v = versions(&[("old", &[AWSCURRENT]), ("tok", &[AWSPENDING])]);
        for step in [Step::Create, Step::Set, Step::Test, Step::Finish] {
            assert_eq!(preflight(step, "s", "tok", &v), Preflight::Proceed);
        }
        let done = versions(&[("old", &[AWSPREVIOUS]), ("tok", &[AWSCURRENT])]);
        assert_eq!(
            preflight(Step::Finish, "s", "tok", &done),
            Preflight::AlreadyCurrent
        );
        assert!(
            matches!(preflight(Step::Set, "s", "nope", &v), Preflight::Refuse(m) if m.contains("not a version"))
        );
        let mut off = v.clone();
        off.rotation_enabled = false;
        assert!(
            matches!(preflight(Step::Create, "s", "tok", &off), Preflight::Refuse(m) if m.contains("not enabled"))
        );
    }

    #[test]
    fn an_abandoned_pending_version_is_adopted_only_by_create() {
        let v = versions(&[
            ("old", &[AWSCURRENT]),
            ("abandoned", &[AWSPENDING]),
            ("tok", &[]),
        ]);
        assert_eq!(
            preflight(Step::Create, "s", "tok", &v),
            Preflight::Adopt {
                abandoned: "abandoned".into()
            }
        );
        assert!(
            matches!(preflight(Step::Set, "s", "tok", &v), Preflight::Refuse(m) if m.contains("abandoned"))
        );
        let none = versions(&[("old", &[AWSCURRENT]), ("tok", &[])]);
        assert!(matches!(
            preflight(Step::Create, "s", "tok", &none),
            Preflight::Refuse(_)
        ));
    }

    #[test]
    fn alternating_users_flip_between_original_and_clone() {
        let s = Strategy::PostgresAlternatingUsers;
        assert_eq!(next_username(s, "app").unwrap(), "app_clone");
        assert_eq!(next_username(s, "app_clone").unwrap(), "app");
        assert_eq!(
            next_username(Strategy::PostgresSingleUser, "app").unwrap(),
            "app"
        );
        let long = "u".repeat(58);
        let err = next_username(s, &long).unwrap_err();
        assert!(err.contains("64 bytes") && err.contains("63"), "{err}");
    }

    fn db(value: serde_json::Value) -> DbSecret {
        DbSecret::parse("s", &value.to_string()).unwrap()
    }

    #[test]
    fn a_tampered_pending_secret_is_refused() {
        let alt = Strategy::PostgresAlternatingUsers;
        let current = db(
            serde_json::json!({"host": "db.internal", "port": 5432, "username": "app",
            "password": "p", "dbname": "orders", "masterarn": "arn:admin"}),
        );
        let pending = |change: serde_json::Value| {
            let mut v = serde_json::json!({"host": "db.internal", "port": 5432, "username": "app_clone",
                "password": "n", "dbname": "orders", "masterarn": "arn:admin"});
            for (k, x) in change.as_object().unwrap() {
                v[k] = x.clone();
            }
            db(v)
        };
        assert!(check_pending(alt, &current, &pending(serde_json::json!({})), "s").is_ok());
        assert!(
            check_pending(
                alt,
                &current,
                &pending(serde_json::json!({"host": "DB.internal."})),
                "s"
            )
            .is_ok(),
            "DNS names compare without case"
        );
        for (change, names) in [
            (serde_json::json!({"username": "postgres"}), "user postgres"),
            (serde_json::json!({"username": "app"}), "user app "),
            (
                serde_json::json!({"host": "evil.example"}),
                "evil.example:5432",
            ),
            (serde_json::json!({"port": 6432}), "db.internal:6432"),
            (
                serde_json::json!({"dbname": "postgres"}),
                "database name postgres",
            ),
            (
                serde_json::json!({"masterarn": "arn:other-admin"}),
                "admin secret",
            ),
        ] {
            let err = check_pending(alt, &current, &pending(change.clone()), "s").unwrap_err();
            assert!(
                err.contains(names) && err.contains("refusing"),
                "{change}: {err}"
            );
        }
        let single = Strategy::PostgresSingleUser;
        assert!(check_pending(
            single,
            &current,
            &pending(serde_json::json!({"username": "app"})),
            "s"
        )
        .is_ok());
        assert!(check_pending(single, &current, &pending(serde_json::json!({})), "s").is_err());
    }

    #[test]
    fn the_admin_password_goes_only_to_the_admin_database() {
        let db = Endpoint {
            host: "db.internal".into(),
            port: 5432,
        };
        assert!(check_admin_endpoint(&db.clone(), &db, "admin").is_ok());
        let elsewhere = Endpoint {
            host: "evil.example".into(),
            port: 5432,
        };
        let err = check_admin_endpoint(&db, &elsewhere, "admin").unwrap_err();
        assert!(
            err.contains("evil.example:5432") && err.contains("refusing"),
            "{err}"
        );
        let other_port = Endpoint {
            host: "db.internal".into(),
            port: 6432,
        };
        assert!(check_admin_endpoint(&db, &other_port, "admin").is_err());
    }

    #[test]
    fn strategy_is_configured_or_read_from_the_secret() {
        assert_eq!(
            strategy(None, r#"{"engine":"postgres","username":"u"}"#),
            Ok(Strategy::PostgresSingleUser)
        );
        assert_eq!(
            strategy(None, r#"{"engine":"postgres","masterarn":"arn"}"#),
            Ok(Strategy::PostgresAlternatingUsers)
        );
        assert!(strategy(None, r#"{"engine":"mysql"}"#).is_err());
        assert!(strategy(None, "plain").is_err());
    }

    #[test]
    fn pending_values_keep_every_other_field() {
        let current = r#"{"engine":"postgres","host":"h","port":5432,"username":"app","password":"old","dbname":"d","masterarn":"m","extra":1}"#;
        let p: serde_json::Value = serde_json::from_str(
            &pending_value(
                Strategy::PostgresAlternatingUsers,
                None,
                current,
                "new",
                "s",
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (p["username"].as_str(), p["password"].as_str()),
            (Some("app_clone"), Some("new"))
        );
        assert_eq!(
            (p["masterarn"].as_str(), p["extra"].as_i64()),
            (Some("m"), Some(1))
        );
        assert_eq!(
            pending_value(Strategy::Random, None, "old-token", "new", "s").unwrap(),
            "new"
        );
        let p: serde_json::Value = serde_json::from_str(
            &pending_value(
                Strategy::Random,
                Some("signing_key"),
                r#"{"signing_key":"a","kid":"k1"}"#,
                "b",
                "s",
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (p["signing_key"].as_str(), p["kid"].as_str()),
            (Some("b"), Some("k1"))
        );
        assert!(pending_value(Strategy::Random, Some("k"), "not json", "b", "s").is_err());
    }

    #[test]
    fn random_values_are_checked_for_format() {
        assert!(check_random(None, "x", "s").is_ok());
        assert!(check_random(None, "", "s").is_err());
        assert!(check_random(Some("k"), r#"{"k":"v"}"#, "s").is_ok());
        assert!(check_random(Some("k"), r#"{"k":""}"#, "s").is_err());
    }

    fn creds(user: &str, password: &str) -> DbSecret {
        DbSecret::parse("s", &serde_json::json!({"host": "db.internal", "port": 5432, "username": user, "password": password, "dbname": "orders"}).to_string()).unwrap()
    }

    #[test]
    fn dependent_urls_are_rebuilt_and_encoded() {
        let url = Dependent {
            secret: "u".into(),
            format: DependentFormat::Url,
            key: None,
        };
        let v = dependent_value(
            &url,
            Some("postgres://app:old@db.internal:5432/orders?sslmode=verify-full"),
            &creds("app_clone", "p@ss:w/rd"),
        )
        .unwrap();
        assert_eq!(
            v,
            "postgres://app_clone:p%40ss%3Aw%2Frd@db.internal:5432/orders?sslmode=verify-full"
        );
        assert_eq!(
            dependent_value(&url, None, &creds("a", "b")).unwrap(),
            "postgresql://a:b@db.internal:5432/orders"
        );

        let json = Dependent {
            secret: "j".into(),
            format: DependentFormat::Json,
            key: None,
        };
        let v: serde_json::Value = serde_json::from_str(
            &dependent_value(
                &json,
                Some(r#"{"url":"postgres://x:y@h:1/d","pool":10}"#),
                &creds("a", "b"),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(v["url"], "postgres://a:b@db.internal:5432/orders");
        assert_eq!(v["pool"], 10);
    }

    #[test]
    fn pages_carry_the_step_and_never_a_value() {
        let p = failure_page(
            "prod/db",
            Some(Strategy::PostgresSingleUser),
            Step::Set,
            "tok",
            "connection refused",
        );
        assert_eq!(
            (p.severity, p.fact_value("Step")),
            (Severity::Critical, Some("setSecret"))
        );
        let s = success_page(&Rotated {
            secret_name: "prod/db",
            strategy: Strategy::PostgresSingleUser,
            token: "tok",
            username: Some("app"),
            dependents: vec!["prod/db/url".into()],
            consumers: vec![],
        });
        assert_eq!(
            (s.action, s.dedup_key.as_str()),
            (Action::Resolve, p.dedup_key.as_str())
        );
    }
}
