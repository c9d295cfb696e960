//! What on-call is told. Every failure is critical and names the snapshot, the
//! region and the error; warnings say what is at risk. One incident per
//! database and topic (the dedup key), so a repeat updates it. Pure.

use crate::config::{Config, Kind};
use crate::model::{DrillInstance, Quota, Snap};
use autopilot_shared::backup::{self, tag};
use autopilot_shared::pager::{Action, Page, Severity};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// `autopilot-snapshot/<db>/<topic>`.
pub fn dedup_key(db: &str, topic: &str) -> String {
    format!("autopilot-snapshot/{db}/{topic}")
}

fn base(severity: Severity, class: &str, db: &str, region: &str, summary: String) -> Page {
    Page::new(Action::Trigger, severity, class, db, summary).group(region)
}

fn about(page: Page, snap: &Snap) -> Page {
    page.fact("database", format!("{} {}", snap.kind.as_str(), snap.db))
        .fact("snapshot", &snap.id)
        .fact("snapshot ARN", &snap.arn)
        .fact("region", &snap.region)
        .fact(
            "type",
            if snap.automated {
                "automated"
            } else {
                "manual"
            },
        )
        .fact("status", &snap.status)
        .fact(
            "created",
            snap.created.map_or("not yet".to_string(), backup::stamp),
        )
        .fact(
            "encrypted",
            match (&snap.encrypted, &snap.kms_key) {
                (true, Some(k)) => format!("yes, {k}"),
                (true, None) => "yes".into(),
                (false, _) => "NO".into(),
            },
        )
}

fn dr(config: &Config) -> String {
    config.dr_region().unwrap_or("none").to_string()
}

pub fn unencrypted(config: &Config, snap: &Snap) -> Page {
    about(
        base(
            Severity::Warning,
            "snapshot.unencrypted",
            &snap.db,
            &snap.region,
            format!("{}: snapshot {} is NOT encrypted", snap.db, snap.id),
        ),
        snap,
    )
    .dedup_key(dedup_key(&snap.db, "unencrypted"))
    .fact(
        "why it matters",
        "the database's storage is unencrypted, so every backup of it is too; \
         encrypting needs a restore from an encrypted copy",
    )
    .fact("DR region", dr(config))
}

pub fn collision(config: &Config, source: &Snap, existing: &Snap) -> Page {
    about(
        base(
            Severity::Critical,
            "snapshot.copy-collision",
            &source.db,
            &existing.region,
            format!(
                "{}: cannot copy {}: {} already exists and is not its copy",
                source.db, source.id, existing.id
            ),
        ),
        source,
    )
    .dedup_key(dedup_key(&source.db, &format!("collision/{}", existing.id)))
    .fact("existing snapshot", existing.label())
    .fact(
        "its source tag",
        existing.tag(tag::SOURCE).unwrap_or("none"),
    )
    .fact("DR region", dr(config))
    .fact(
        "to fix",
        "rename is impossible: delete or keep the existing snapshot knowingly; \
         until then this source has no DR copy",
    )
}

pub fn copy_failed(config: &Config, source: &Snap, target: &str, error: &str) -> Page {
    about(
        base(
            Severity::Critical,
            "snapshot.copy-failed",
            &source.db,
            &dr(config),
            format!("{}: DR copy of {} FAILED", source.db, source.id),
        ),
        source,
    )
    .dedup_key(dedup_key(&source.db, &format!("copy/{}", source.id)))
    .fact("copy", target)
    .fact("DR region", dr(config))
    .fact("error", error)
    .fact("next", "the hourly check starts the copy again")
}

pub fn copy_cancelled(
    config: &Config,
    kind: Kind,
    region: &str,
    id: &str,
    event: &str,
    message: &str,
) -> Page {
    base(
        Severity::Critical,
        "snapshot.copy-cancelled",
        id,
        region,
        format!("snapshot copy {id} in {region} was CANCELLED"),
    )
    .dedup_key(dedup_key(id, "cancelled"))
    .fact("snapshot", id)
    .fact("kind", kind.as_str())
    .fact("region", region)
    .fact("event", event)
    .fact("error", message)
    .fact("DR region", dr(config))
    .fact(
        "next",
        "if it was autopilot's DR copy, the hourly check copies the source again",
    )
}

pub fn export_failed(kind: Kind, region: &str, id: &str, event: &str, message: &str) -> Page {
    base(
        Severity::Critical,
        "snapshot.export-failed",
        id,
        region,
        format!("export of snapshot {id} in {region} FAILED"),
    )
    .dedup_key(dedup_key(id, "export"))
    .fact("snapshot", id)
    .fact("kind", kind.as_str())
    .fact("region", region)
    .fact("event", event)
    .fact("error", message)
}

pub fn no_kms_key(config: &Config, source: &Snap) -> Page {
    about(
        base(
            Severity::Critical,
            "snapshot.no-kms-key",
            &source.db,
            &dr(config),
            format!(
                "{}: encrypted snapshot {} cannot be copied to {}: no DR KMS key",
                source.db,
                source.id,
                dr(config)
            ),
        ),
        source,
    )
    .dedup_key(dedup_key(&source.db, "kms"))
    .fact(
        "to fix",
        "set AUTOPILOT_SNAPSHOT_DR_KMS_KEY (the SnapshotDrKmsKeyArn parameter) to a customer-managed key in the DR region",
    )
}

pub fn deferred_late(config: &Config, source: &Snap, limit: usize) -> Page {
    about(
        base(
            Severity::Warning,
            "snapshot.copy-deferred",
            &source.db,
            &dr(config),
            format!(
                "{}: DR copy of {} still waiting: {limit} copies in flight to {}",
                source.db,
                source.id,
                dr(config)
            ),
        ),
        source,
    )
    .dedup_key(dedup_key(&source.db, "deferred"))
    .fact("copy limit", limit)
    .fact(
        "next",
        "deferred copies start as soon as copies finish; raise AUTOPILOT_SNAPSHOT_COPY_LIMIT (AWS allows 20) if this persists",
    )
}

pub fn copy_late(config: &Config, copy: &Snap, timeout: Duration) -> Page {
    let db = copy.tag(tag::DB).unwrap_or(&copy.db).to_string();
    about(
        base(
            Severity::Critical,
            "snapshot.copy-late",
            &db,
            &copy.region,
            format!(
                "{db}: DR copy {} not finished after {} hours",
                copy.id,
                timeout.as_secs() / 3600
            ),
        ),
        copy,
    )
    .dedup_key(dedup_key(&db, &format!("late/{}", copy.id)))
    .fact(
        "copy started",
        copy.tag(tag::COPY_STARTED).unwrap_or("unknown"),
    )
    .fact("source", copy.tag(tag::SOURCE).unwrap_or("unknown"))
    .fact("DR region", dr(config))
}

pub fn quota_full(config: &Config, region: &str, kind: Kind, q: Quota) -> Page {
    base(
        Severity::Critical,
        "snapshot.quota-full",
        region,
        region,
        format!(
            "{region}: manual {} snapshot quota full ({} of {}): backups are not being made",
            kind.as_str(),
            q.used,
            q.max
        ),
    )
    .dedup_key(dedup_key(region, &format!("quota/{}", kind.as_str())))
    .fact("region", region)
    .fact("used", q.used)
    .fact("max", q.max)
    .fact(
        "retention",
        format!("{} days, keep {}", config.retention_days, config.keep),
    )
    .fact(
        "to fix",
        "delete manual snapshots nobody needs, or ask AWS for a higher quota",
    )
}

pub fn quota_warning(config: &Config, region: &str, kind: Kind, q: Quota) -> Page {
    base(
        Severity::Warning,
        "snapshot.quota-warning",
        region,
        region,
        format!(
            "{region}: {} of {} manual {} snapshots used",
            q.used,
            q.max,
            kind.as_str()
        ),
    )
    .dedup_key(dedup_key(region, &format!("quota/{}", kind.as_str())))
    .fact("region", region)
    .fact("used", q.used)
    .fact("max", q.max)
    .fact("warn at", format!("{}%", config.quota_warn_percent))
}

pub fn drill_blocked(config: &Config, db: &str, inst: &DrillInstance) -> Page {
    base(
        Severity::Warning,
        "snapshot.drill-blocked",
        db,
        &dr(config),
        format!(
            "{db}: restore drills paused: instance {} exists and is not autopilot's",
            inst.id
        ),
    )
    .dedup_key(dedup_key(db, "drill"))
    .fact("instance", &inst.arn)
    .fact("status", &inst.status)
    .fact(
        "to fix",
        "rename or delete that instance; autopilot never deletes an instance it did not make",
    )
}

pub fn nothing_to_drill(_config: &Config, db: &str, dr_region: &str) -> Page {
    base(
        Severity::Warning,
        "snapshot.drill-no-copy",
        db,
        dr_region,
        format!("{db}: restore drill due, but no confirmed DR copy in {dr_region}"),
    )
    .dedup_key(dedup_key(db, "drill"))
    .fact("DR region", dr_region)
    .fact(
        "next",
        "the drill runs on the first check after a copy is confirmed",
    )
}

fn drill_facts(page: Page, inst: &DrillInstance, now: DateTime<Utc>) -> Page {
    let took = inst
        .started()
        .map(|s| format!("{} minutes", (now - s).num_minutes().max(0)))
        .unwrap_or_else(|| "unknown".into());
    page.fact("drill instance", &inst.arn)
        .fact("restored from", inst.tag(tag::SOURCE).unwrap_or("unknown"))
        .fact("status", &inst.status)
        .fact("restore time", took)
}

pub fn drill_failed(
    config: &Config,
    db: &str,
    inst: &DrillInstance,
    copy: Option<&Snap>,
    error: &str,
    now: DateTime<Utc>,
) -> Page {
    let mut page = drill_facts(
        base(
            Severity::Critical,
            "snapshot.drill-failed",
            db,
            &dr(config),
            format!("{db}: restore drill FAILED: {error}"),
        ),
        inst,
        now,
    )
    .dedup_key(dedup_key(db, "drill"))
    .fact("error", error);
    if let Some(copy) = copy {
        page = page.fact(
            "backup taken",
            copy.created.map_or("unknown".into(), backup::stamp),
        );
    }
    page.fact(
        "next",
        "the drill instance is deleted; the next drill is due after the interval",
    )
}

pub fn drill_passed(
    config: &Config,
    db: &str,
    inst: &DrillInstance,
    copy: Option<&Snap>,
    query: &str,
    value: i64,
    now: DateTime<Utc>,
) -> Page {
    let mut page = drill_facts(
        Page::new(
            Action::Resolve,
            Severity::Info,
            "snapshot.drill-passed",
            db,
            format!("{db}: restore drill passed ({query} = {value})"),
        )
        .group(dr(config)),
        inst,
        now,
    )
    .dedup_key(dedup_key(db, "drill"))
    .fact("check", query)
    .fact("result", value);
    if let Some(copy) = copy {
        page = page.fact(
            "backup taken",
            copy.created.map_or("unknown".into(), backup::stamp),
        );
    }
    page
}

/// An AWS call autopilot made failed.
pub fn call_failed(db: &str, region: &str, what: &str, error: &str) -> Page {
    base(
        Severity::Critical,
        "snapshot.failed",
        db,
        region,
        format!("{db}: {what} FAILED"),
    )
    .dedup_key(dedup_key(db, "failed"))
    .fact("database", db)
    .fact("region", region)
    .fact("step", what)
    .fact("error", error)
    .fact(
        "next",
        "the invocation fails and is retried; every step is safe to repeat",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{now, snap};
    use autopilot_shared::config::lookup_from;

    fn config() -> Config {
        Config::from_lookup(lookup_from(
            [
                (
                    "AUTOPILOT_TOPIC_ARN",
                    "arn:aws:sns:us-east-1:123456789012:oncall",
                ),
                ("AWS_REGION", "us-east-1"),
                (
                    "AUTOPILOT_SNAPSHOT_DATABASES",
                    r#"[{"instance":"orders-db"}]"#,
                ),
                ("AUTOPILOT_SNAPSHOT_DR_REGION", "us-west-2"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ))
        .unwrap()
    }

    #[test]
    fn a_failure_names_the_snapshot_the_region_and_the_error() {
        let s = snap("us-east-1", "rds:orders-db-2026-11-24-03-10", 1);
        let p = copy_failed(
            &config(),
            &s,
            "autopilot-dr-x",
            "KMSKeyNotAccessibleFault: denied",
        );
        assert_eq!(p.severity, Severity::Critical);
        assert_eq!(
            p.fact_value("snapshot"),
            Some("rds:orders-db-2026-11-24-03-10")
        );
        assert_eq!(p.fact_value("DR region"), Some("us-west-2"));
        assert_eq!(
            p.fact_value("error"),
            Some("KMSKeyNotAccessibleFault: denied")
        );
        assert_eq!(
            p.dedup_key,
            "autopilot-snapshot/orders-db/copy/rds:orders-db-2026-11-24-03-10"
        );
    }

    #[test]
    fn a_passed_drill_resolves_the_drill_incident_with_its_figures() {
        let inst = DrillInstance {
            id: "autopilot-drill-orders-db".into(),
            arn: "arn".into(),
            status: "available".into(),
            created: Some(now() - chrono::Duration::minutes(14)),
            endpoint: None,
            publicly_accessible: false,
            tags: Default::default(),
        };
        let p = drill_passed(&config(), "orders-db", &inst, None, "SELECT 1", 42, now());
        assert_eq!(p.action, Action::Resolve);
        assert_eq!(p.fact_value("restore time"), Some("14 minutes"));
        assert_eq!(p.fact_value("result"), Some("42"));
        let f = drill_failed(&config(), "orders-db", &inst, None, "login failed", now());
        assert_eq!(f.dedup_key, p.dedup_key);
        assert_eq!(f.severity, Severity::Critical);
    }
}
