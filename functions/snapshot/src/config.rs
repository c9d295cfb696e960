//! snapshot's configuration: which databases, where their copies go, how long
//! autopilot's snapshots are kept, and how restore drills run. Read once at cold
//! start; a bad value names its field.

use autopilot_shared::backup::check_db_identifier;
use autopilot_shared::config::{self, parse_json, ConfigError};
use autopilot_shared::Common;
use serde::Deserialize;
use std::collections::HashSet;
use std::time::Duration;

pub const DATABASES: &str = "AUTOPILOT_SNAPSHOT_DATABASES";
pub const DR_REGION: &str = "AUTOPILOT_SNAPSHOT_DR_REGION";
pub const DR_KMS_KEY: &str = "AUTOPILOT_SNAPSHOT_DR_KMS_KEY";
pub const COPY_LIMIT: &str = "AUTOPILOT_SNAPSHOT_COPY_LIMIT";
pub const COPY_TIMEOUT_HOURS: &str = "AUTOPILOT_SNAPSHOT_COPY_TIMEOUT_HOURS";
pub const RETENTION_DAYS: &str = "AUTOPILOT_SNAPSHOT_RETENTION_DAYS";
pub const DR_RETENTION_DAYS: &str = "AUTOPILOT_SNAPSHOT_DR_RETENTION_DAYS";
pub const KEEP: &str = "AUTOPILOT_SNAPSHOT_KEEP";
pub const QUOTA_WARN_PERCENT: &str = "AUTOPILOT_SNAPSHOT_QUOTA_WARN_PERCENT";
pub const DRILL_INTERVAL_DAYS: &str = "AUTOPILOT_SNAPSHOT_DRILL_INTERVAL_DAYS";
pub const DRILL_INSTANCE_CLASS: &str = "AUTOPILOT_SNAPSHOT_DRILL_INSTANCE_CLASS";
pub const DRILL_SUBNET_GROUP: &str = "AUTOPILOT_SNAPSHOT_DRILL_SUBNET_GROUP";
pub const DRILL_SECURITY_GROUPS: &str = "AUTOPILOT_SNAPSHOT_DRILL_SECURITY_GROUPS";
pub const DRILL_TIMEOUT_HOURS: &str = "AUTOPILOT_SNAPSHOT_DRILL_TIMEOUT_HOURS";
/// The same variable rotate reads: the CA bundle database TLS is verified against.
pub const DB_CA_BUNDLE: &str = "AUTOPILOT_DB_CA_BUNDLE";
/// Set by Lambda: the source region.
pub const AWS_REGION: &str = "AWS_REGION";

/// The AWS quota on cross-region copies in progress to one destination region.
pub const AWS_COPY_LIMIT: usize = 20;

/// Everything snapshot is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub common: Common,
    /// The function's own region, where the databases are.
    pub region: String,
    pub databases: Vec<Database>,
    pub dr: Option<Dr>,
    /// Days autopilot's snapshots are kept in the source region.
    pub retention_days: u32,
    /// Days autopilot's copies are kept in the DR region.
    pub dr_retention_days: u32,
    /// Always keep at least this many of autopilot's snapshots per database per region.
    pub keep: usize,
    pub quota_warn_percent: u32,
    pub drill: DrillSettings,
    pub db_ca_bundle: Option<String>,
}

/// Where copies go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dr {
    pub region: String,
    /// The KMS key in the DR region that encrypts copies; required for encrypted sources.
    pub kms_key: Option<String>,
    /// Copies in flight to the DR region at once; beyond it copies are deferred.
    pub copy_limit: usize,
    pub copy_timeout: Duration,
}

/// How drills run (the per-database part is [`Drill`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillSettings {
    pub interval: Duration,
    pub instance_class: String,
    pub subnet_group: Option<String>,
    pub security_groups: Vec<String>,
    pub timeout: Duration,
}

/// An RDS instance or an Aurora cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Instance,
    Cluster,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Instance => "instance",
            Kind::Cluster => "cluster",
        }
    }
}

/// One configured database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub kind: Kind,
    pub id: String,
    /// Take a manual snapshot on the `snapshot-backup` schedule.
    pub backup: bool,
    pub drill: Option<Drill>,
}

/// The restore drill of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drill {
    /// The Secrets Manager secret whose user and password log in to the
    /// restored copy (its host is never used: the drill connects to the copy).
    pub secret: String,
    /// A read-only query returning one number, e.g. `SELECT count(*) FROM orders`.
    pub query: String,
    /// The drill passes when the number is at least this.
    #[serde(default = "one")]
    pub min: i64,
    /// The database to connect to; else the secret's `dbname`, else `postgres`.
    #[serde(default)]
    pub database: Option<String>,
}

fn one() -> i64 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    #[serde(default)]
    instance: Option<String>,
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default = "yes")]
    backup: bool,
    #[serde(default)]
    drill: Option<Drill>,
}

fn yes() -> bool {
    true
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(config::env)
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let common = Common::from_lookup(&lookup)?;
        let region = config::required(&lookup, AWS_REGION)?;
        check_region(AWS_REGION, &region)?;
        let raw = config::required(&lookup, DATABASES)?;
        let databases = parse_databases(&raw)?;
        let dr = match lookup(DR_REGION).filter(|r| !r.trim().is_empty()) {
            None => None,
            Some(dr_region) => {
                let dr_region = dr_region.trim().to_string();
                check_region(DR_REGION, &dr_region)?;
                if dr_region == region {
                    return Err(ConfigError::new(
                        DR_REGION,
                        format!("is {region}, the function's own region ({AWS_REGION}): copies must go to another region"),
                    ));
                }
                let kms_key = lookup(DR_KMS_KEY).filter(|k| !k.trim().is_empty());
                if let Some(key) = &kms_key {
                    check_kms_key(key, &dr_region)?;
                }
                Some(Dr {
                    region: dr_region,
                    kms_key: kms_key.map(|k| k.trim().to_string()),
                    copy_limit: config::number(&lookup, COPY_LIMIT, 5, 1..=AWS_COPY_LIMIT)?,
                    copy_timeout: hours(config::number(&lookup, COPY_TIMEOUT_HOURS, 6, 1..=72)?),
                })
            }
        };
        let retention_days = config::number(&lookup, RETENTION_DAYS, 7u32, 1..=3650)?;
        let dr_retention_days =
            config::number(&lookup, DR_RETENTION_DAYS, retention_days, 1..=3650)?;
        let keep = config::number(&lookup, KEEP, 3usize, 1..=100)?;
        let quota_warn_percent = config::number(&lookup, QUOTA_WARN_PERCENT, 80u32, 1..=100)?;
        let security_groups = lookup(DRILL_SECURITY_GROUPS)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if let Some(bad) = security_groups.iter().find(|g| !g.starts_with("sg-")) {
            return Err(ConfigError::new(
                DRILL_SECURITY_GROUPS,
                format!("`{bad}` is not a VPC security group id (sg-…)"),
            ));
        }
        let drill = DrillSettings {
            interval: days(config::number(&lookup, DRILL_INTERVAL_DAYS, 7u64, 1..=365)?),
            instance_class: lookup(DRILL_INSTANCE_CLASS)
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "db.t4g.micro".into()),
            subnet_group: lookup(DRILL_SUBNET_GROUP)
                .map(|g| g.trim().to_string())
                .filter(|g| !g.is_empty()),
            security_groups,
            timeout: hours(config::number(&lookup, DRILL_TIMEOUT_HOURS, 4, 1..=48)?),
        };
        if !drill.instance_class.starts_with("db.") {
            return Err(ConfigError::new(
                DRILL_INSTANCE_CLASS,
                format!(
                    "`{}` is not a DB instance class (db.…)",
                    drill.instance_class
                ),
            ));
        }
        if dr.is_none() {
            if let Some(i) = databases.iter().position(|d| d.drill.is_some()) {
                return Err(ConfigError::new(
                    format!("{DATABASES}[{i}].drill"),
                    format!("a drill restores a DR copy, so it needs {DR_REGION}"),
                ));
            }
        }
        Ok(Self {
            common,
            region,
            databases,
            dr,
            retention_days,
            dr_retention_days,
            keep,
            quota_warn_percent,
            drill,
            db_ca_bundle: lookup(DB_CA_BUNDLE).filter(|p| !p.trim().is_empty()),
        })
    }

    /// The configured database `id` of `kind`.
    pub fn database(&self, kind: Kind, id: &str) -> Option<&Database> {
        self.databases.iter().find(|d| d.kind == kind && d.id == id)
    }

    pub fn dr_region(&self) -> Option<&str> {
        self.dr.as_ref().map(|d| d.region.as_str())
    }
}

fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

/// A region name as AWS spells them: two letters, one or two lowercase words, a
/// number (`us-east-1`, `us-gov-west-1`, `ap-southeast-5`). Found by the fuzzer: a
/// looser check (three dash-separated parts) let a UUID through as the DR region,
/// and the error then blamed the KMS key.
fn check_region(field: &str, region: &str) -> Result<(), ConfigError> {
    let parts: Vec<&str> = region.split('-').collect();
    let word = |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase());
    let ok = (3..=4).contains(&parts.len())
        && parts[0].len() == 2
        && parts[..parts.len() - 1].iter().all(word)
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty();
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("`{region}` is not an AWS region name such as us-west-2"),
        ))
    }
}

/// The DR key must be an ARN in the DR region: a key id or alias would be
/// resolved in whichever region the call is made, which is easy to get wrong.
fn check_kms_key(key: &str, dr_region: &str) -> Result<(), ConfigError> {
    let parts: Vec<&str> = key.trim().split(':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "kms" || !parts[5].starts_with("key/") {
        return Err(ConfigError::new(
            DR_KMS_KEY,
            format!("`{key}` is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)"),
        ));
    }
    if parts[3] != dr_region {
        return Err(ConfigError::new(
            DR_KMS_KEY,
            format!(
                "the key is in {}, but copies are made in {dr_region} ({DR_REGION}): KMS keys are regional",
                parts[3]
            ),
        ));
    }
    Ok(())
}

fn parse_databases(raw: &str) -> Result<Vec<Database>, ConfigError> {
    let list: Vec<RawDatabase> = parse_json(DATABASES, raw)?;
    if list.is_empty() {
        return Err(ConfigError::new(DATABASES, "lists no database"));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, d) in list.into_iter().enumerate() {
        let field = |f: &str| format!("{DATABASES}[{i}]{f}");
        let (kind, id) = match (d.instance, d.cluster) {
            (Some(id), None) => (Kind::Instance, id),
            (None, Some(id)) => (Kind::Cluster, id),
            _ => {
                return Err(ConfigError::new(
                    field(""),
                    "give exactly one of `instance` or `cluster`",
                ))
            }
        };
        let name_field = field(if kind == Kind::Instance {
            ".instance"
        } else {
            ".cluster"
        });
        check_db_identifier(&id).map_err(|m| ConfigError::new(&name_field, m))?;
        if !seen.insert((kind, id.clone())) {
            return Err(ConfigError::new(
                name_field,
                format!("`{id}` is listed twice"),
            ));
        }
        if let Some(drill) = &d.drill {
            if kind == Kind::Cluster {
                return Err(ConfigError::new(
                    field(".drill"),
                    "restore drills run for instances; a cluster drill is not supported yet",
                ));
            }
            if !drill.secret.starts_with("arn:") || !drill.secret.contains(":secretsmanager:") {
                return Err(ConfigError::new(
                    field(".drill.secret"),
                    format!("`{}` is not a Secrets Manager secret ARN", drill.secret),
                ));
            }
            if drill.query.trim().is_empty() {
                return Err(ConfigError::new(field(".drill.query"), "is empty"));
            }
        }
        out.push(Database {
            kind,
            id,
            backup: d.backup,
            drill: d.drill,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopilot_shared::config::lookup_from;

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:oncall";
    const KEY: &str = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn load(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut pairs = vec![
            ("AUTOPILOT_TOPIC_ARN".to_string(), TOPIC.to_string()),
            (AWS_REGION.to_string(), "us-east-1".to_string()),
            (
                DATABASES.to_string(),
                r#"[{"instance":"orders-db"}]"#.to_string(),
            ),
        ];
        for (k, v) in extra {
            pairs.retain(|(key, _)| key != k);
            pairs.push((k.to_string(), v.to_string()));
        }
        Config::from_lookup(lookup_from(pairs))
    }

    #[test]
    fn defaults() {
        let c = load(&[]).unwrap();
        assert_eq!(c.databases.len(), 1);
        assert!(c.databases[0].backup);
        assert_eq!(c.dr, None);
        assert_eq!((c.retention_days, c.dr_retention_days, c.keep), (7, 7, 3));
        assert_eq!(c.drill.instance_class, "db.t4g.micro");
        let c = load(&[(DR_REGION, "us-west-2"), (DR_KMS_KEY, KEY)]).unwrap();
        let dr = c.dr.unwrap();
        assert_eq!((dr.copy_limit, dr.copy_timeout.as_secs()), (5, 6 * 3600));
        assert_eq!(dr.kms_key.as_deref(), Some(KEY));
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[(DATABASES, "[]")], DATABASES),
            (
                &[(DATABASES, r#"[{"instance":"a","cluster":"b"}]"#)],
                "AUTOPILOT_SNAPSHOT_DATABASES[0]",
            ),
            (
                &[(DATABASES, r#"[{"instance":"bad--name"}]"#)],
                "[0].instance",
            ),
            (
                &[(DATABASES, r#"[{"instance":"a"},{"instance":"a"}]"#)],
                "[1].instance",
            ),
            (
                &[(DATABASES, r#"[{"instance":"a","color":"red"}]"#)],
                DATABASES,
            ),
            (
                &[
                    (
                        DATABASES,
                        r#"[{"cluster":"c","drill":{"secret":"arn:aws:secretsmanager:us-east-1:1:secret:x","query":"select 1"}}]"#,
                    ),
                    (DR_REGION, "us-west-2"),
                ],
                "[0].drill",
            ),
            (
                &[
                    (
                        DATABASES,
                        r#"[{"instance":"a","drill":{"secret":"x","query":"select 1"}}]"#,
                    ),
                    (DR_REGION, "us-west-2"),
                ],
                "[0].drill.secret",
            ),
            (
                &[(
                    DATABASES,
                    r#"[{"instance":"a","drill":{"secret":"arn:aws:secretsmanager:us-east-1:1:secret:x","query":"select 1"}}]"#,
                )],
                "[0].drill",
            ),
            (&[(DR_REGION, "west")], DR_REGION),
            (
                &[(DR_REGION, "20cf62e6-744f-46c3-a949-820e1ff1ac02")],
                DR_REGION,
            ),
            (&[(DR_REGION, "us-west-")], DR_REGION),
            (
                &[(AWS_REGION, "- TreatMissingData: notBreaching")],
                AWS_REGION,
            ),
            (
                &[(DR_REGION, "us-west-2"), (DR_KMS_KEY, "alias/aws/rds")],
                DR_KMS_KEY,
            ),
            (
                &[
                    (DR_REGION, "us-west-2"),
                    (DR_KMS_KEY, "arn:aws:kms:us-east-1:123456789012:key/x"),
                ],
                DR_KMS_KEY,
            ),
            (&[(DR_REGION, "us-west-2"), (COPY_LIMIT, "21")], COPY_LIMIT),
            (&[(KEEP, "0")], KEEP),
            (
                &[(DRILL_SECURITY_GROUPS, "sg-1, default")],
                DRILL_SECURITY_GROUPS,
            ),
            (&[(DRILL_INSTANCE_CLASS, "t4g.micro")], DRILL_INSTANCE_CLASS),
        ];
        for (vars, field) in cases {
            let e = load(vars).expect_err(field);
            assert!(e.field.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn a_drill_and_a_cluster() {
        let c = load(&[
            (DR_REGION, "us-west-2"),
            (
                DATABASES,
                r#"[{"instance":"orders-db","drill":{"secret":"arn:aws:secretsmanager:us-east-1:123456789012:secret:orders","query":"SELECT count(*) FROM orders","min":10}},{"cluster":"orders-aurora","backup":false}]"#,
            ),
        ])
        .unwrap();
        assert_eq!(c.databases[0].drill.as_ref().unwrap().min, 10);
        assert_eq!(c.databases[1].kind, Kind::Cluster);
        assert!(!c.databases[1].backup);
        assert!(c.database(Kind::Cluster, "orders-aurora").is_some());
        assert!(c.database(Kind::Instance, "orders-aurora").is_none());
    }
}
