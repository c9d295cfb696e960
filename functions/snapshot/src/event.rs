//! The events snapshot takes, turned into one [`Input`].
//!
//! RDS events through EventBridge carry `EventID` (`RDS-EVENT-0042`); older
//! ones do not, and are recognised by their `Message`. The event only says
//! which snapshot or instance to look at: everything acted on is read again
//! from RDS.

use crate::config::Kind;
use autopilot_shared::backup::DRILL_PREFIX;
use autopilot_shared::events::{self, Envelope, EventError, ScheduledTask, SCHEDULED_TASK};
use chrono::{DateTime, Utc};
use serde::Deserialize;

pub const DB_SNAPSHOT_EVENT: (&str, &str) = ("aws.rds", "RDS DB Snapshot Event");
pub const CLUSTER_SNAPSHOT_EVENT: (&str, &str) = ("aws.rds", "RDS DB Cluster Snapshot Event");
pub const INSTANCE_EVENT: (&str, &str) = ("aws.rds", "RDS DB Instance Event");

/// Daily: a manual snapshot of each database, then the check.
pub const BACKUP_TASK: &str = "snapshot-backup";
/// Hourly: re-drive deferred copies, confirm, time out, prune, check quotas, drill.
pub const CHECK_TASK: &str = "snapshot-check";

/// The `detail` of an RDS event in EventBridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RdsDetail {
    #[serde(default)]
    pub event_categories: Vec<String>,
    #[serde(default)]
    pub source_type: Option<String>,
    #[serde(default)]
    pub source_arn: Option<String>,
    pub source_identifier: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, rename = "EventID")]
    pub event_id: Option<String>,
}

/// What an RDS snapshot event means to snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// A snapshot exists now (manual 0042, automated 0091, cluster 0075 / 0169).
    Created,
    /// A copy finished (cross-region 0060, same-region 0197).
    CopyFinished,
    /// A copy was cancelled (0061, 0190).
    CopyCancelled,
    /// An export to S3 failed or was cancelled.
    ExportFailed,
}

/// One event, decided into what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Snapshot {
        what: What,
        kind: Kind,
        region: String,
        id: String,
        event_id: String,
        message: String,
    },
    /// Something happened to a drill instance.
    Drill { region: String, instance: String },
    /// A scheduled task; `backup` also takes new snapshots.
    Schedule { backup: bool, time: DateTime<Utc> },
    /// A valid event that is not ours, with the reason.
    Ignore { resource: String, reason: String },
}

/// Event IDs and the message each has in the RDS event table, for events without `EventID`.
const TABLE: &[(&str, What, &str)] = &[
    ("0042", What::Created, "Manual snapshot created"),
    ("0091", What::Created, "Automated snapshot created"),
    ("0075", What::Created, "Manual cluster snapshot created"),
    ("0169", What::Created, "Automated cluster snapshot created"),
    ("0060", What::CopyFinished, "Finished copy of snapshot"),
    ("0197", What::CopyFinished, "Finished copy of snapshot"),
    ("0061", What::CopyCancelled, "Canceled snapshot copy"),
    ("0190", What::CopyCancelled, "Canceled snapshot copy"),
    (
        "0159",
        What::ExportFailed,
        "The snapshot export task failed",
    ),
    (
        "0160",
        What::ExportFailed,
        "The snapshot export task was canceled",
    ),
    (
        "0162",
        What::ExportFailed,
        "The DB cluster snapshot export task failed",
    ),
    (
        "0163",
        What::ExportFailed,
        "The DB cluster snapshot export task was canceled",
    ),
    // The event table's current wording of the two above.
    (
        "0162",
        What::ExportFailed,
        "The cluster snapshot export task failed",
    ),
    (
        "0163",
        What::ExportFailed,
        "The cluster snapshot export task was canceled",
    ),
];

fn classify(detail: &RdsDetail) -> Option<(What, String)> {
    if let Some(id) = detail.event_id.as_deref().filter(|i| !i.is_empty()) {
        let number = id.trim_start_matches("RDS-EVENT-");
        return TABLE
            .iter()
            .find(|(n, _, _)| *n == number)
            .map(|(_, what, _)| (*what, id.to_string()));
    }
    let message = detail.message.as_deref()?.trim();
    TABLE
        .iter()
        .find(|(_, _, m)| message.starts_with(m))
        .map(|(n, what, _)| (*what, format!("RDS-EVENT-{n} (from its message)")))
}

/// The region of an RDS ARN (`arn:aws:rds:<region>:...`).
pub fn arn_region(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(5, ':');
    let (_, _, service, region) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (service == "rds" && !region.is_empty()).then_some(region)
}

fn event_region(envelope: &Envelope, detail: &RdsDetail) -> Result<String, EventError> {
    let from_arn = detail.source_arn.as_deref().and_then(arn_region);
    let from_envelope = envelope.region.as_deref().filter(|r| !r.is_empty());
    match (from_arn, from_envelope) {
        (Some(a), Some(e)) if a != e => Err(EventError::Malformed {
            what: envelope.detail_type.clone(),
            path: "detail.SourceArn".into(),
            message: format!("is in {a}, but the event came from {e}"),
        }),
        (Some(r), _) | (None, Some(r)) => Ok(r.to_string()),
        (None, None) => Err(EventError::Malformed {
            what: envelope.detail_type.clone(),
            path: "region".into(),
            message: "missing, and detail.SourceArn names no region".into(),
        }),
    }
}

/// Reads an event into an [`Input`]; an event of another kind is an error naming what is handled.
pub fn parse(value: serde_json::Value) -> Result<Input, EventError> {
    let envelope = events::envelope(value)?;
    if events::is(&envelope, SCHEDULED_TASK) {
        let task: ScheduledTask = events::detail(&envelope, SCHEDULED_TASK)?;
        let backup = match task.task.as_str() {
            BACKUP_TASK => true,
            CHECK_TASK => false,
            other => {
                return Err(EventError::Malformed {
                    what: "Scheduled Task detail".into(),
                    path: "task".into(),
                    message: format!(
                        "`{other}` is not a task of snapshot's; it runs `{BACKUP_TASK}` and `{CHECK_TASK}`"
                    ),
                })
            }
        };
        let time = envelope.time.ok_or_else(|| EventError::Malformed {
            what: "Scheduled Task".into(),
            path: "time".into(),
            message: "missing: the schedule's time names the snapshots it takes".into(),
        })?;
        return Ok(Input::Schedule { backup, time });
    }
    let kind = if events::is(&envelope, DB_SNAPSHOT_EVENT) {
        Some(Kind::Instance)
    } else if events::is(&envelope, CLUSTER_SNAPSHOT_EVENT) {
        Some(Kind::Cluster)
    } else {
        None
    };
    if let Some(kind) = kind {
        let key = if kind == Kind::Instance {
            DB_SNAPSHOT_EVENT
        } else {
            CLUSTER_SNAPSHOT_EVENT
        };
        let detail: RdsDetail = events::detail(&envelope, key)?;
        let id = detail.source_identifier.trim().to_string();
        if id.is_empty() {
            return Err(EventError::Malformed {
                what: envelope.detail_type.clone(),
                path: "detail.SourceIdentifier".into(),
                message: "is empty".into(),
            });
        }
        let region = event_region(&envelope, &detail)?;
        let Some((what, event_id)) = classify(&detail) else {
            return Ok(Input::Ignore {
                resource: id,
                reason: format!(
                    "{} `{}` is not one snapshot acts on",
                    detail.event_id.as_deref().unwrap_or("the event"),
                    detail.message.as_deref().unwrap_or_default()
                ),
            });
        };
        return Ok(Input::Snapshot {
            what,
            kind,
            region,
            id,
            event_id,
            message: detail.message.clone().unwrap_or_default(),
        });
    }
    if events::is(&envelope, INSTANCE_EVENT) {
        let detail: RdsDetail = events::detail(&envelope, INSTANCE_EVENT)?;
        let instance = detail.source_identifier.trim().to_string();
        if !instance.starts_with(DRILL_PREFIX) {
            return Ok(Input::Ignore {
                resource: instance,
                reason: format!("not a restore-drill instance ({DRILL_PREFIX}…)"),
            });
        }
        let region = event_region(&envelope, &detail)?;
        return Ok(Input::Drill { region, instance });
    }
    Err(EventError::Unsupported {
        event_source: envelope.source.clone(),
        detail_type: envelope.detail_type.clone(),
        expected: format!(
            "RDS DB Snapshot Event, RDS DB Cluster Snapshot Event, RDS DB Instance Event (drills) and the `{BACKUP_TASK}` / `{CHECK_TASK}` scheduled tasks"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rds(detail_type: &str, region: &str, detail: serde_json::Value) -> serde_json::Value {
        json!({
            "version": "0", "id": "68f6e973-1a0c-d37b-f2f2-94a7f62ffd4e",
            "detail-type": detail_type, "source": "aws.rds", "account": "123456789012",
            "time": "2026-11-24T03:12:00Z", "region": region, "resources": [], "detail": detail
        })
    }

    #[test]
    fn created_by_event_id_or_by_message() {
        let e = rds(
            "RDS DB Snapshot Event",
            "us-east-1",
            json!({
            "EventCategories": ["creation"], "SourceType": "SNAPSHOT",
            "SourceArn": "arn:aws:rds:us-east-1:123456789012:snapshot:rds:orders-db-2026-11-24-03-10",
            "Date": "2026-11-24T03:12:00.000Z", "SourceIdentifier": "rds:orders-db-2026-11-24-03-10",
            "Message": "Automated snapshot created", "EventID": "RDS-EVENT-0091"}),
        );
        let Input::Snapshot {
            what,
            kind,
            region,
            id,
            ..
        } = parse(e).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (what, kind, region.as_str(), id.as_str()),
            (
                What::Created,
                Kind::Instance,
                "us-east-1",
                "rds:orders-db-2026-11-24-03-10"
            )
        );
        let old = rds(
            "RDS DB Cluster Snapshot Event",
            "us-east-1",
            json!({
            "SourceIdentifier": "orders-aurora-manual", "Message": "Manual cluster snapshot created"}),
        );
        let Input::Snapshot {
            what,
            kind,
            event_id,
            ..
        } = parse(old).unwrap()
        else {
            panic!()
        };
        assert_eq!((what, kind), (What::Created, Kind::Cluster));
        assert!(event_id.contains("0075"), "{event_id}");
    }

    #[test]
    fn copy_finished_comes_from_the_dr_region() {
        let e = rds(
            "RDS DB Snapshot Event",
            "us-west-2",
            json!({
            "SourceArn": "arn:aws:rds:us-west-2:123456789012:snapshot:autopilot-dr-x",
            "SourceIdentifier": "autopilot-dr-x", "EventID": "RDS-EVENT-0060", "Message": "Finished copy of snapshot x"}),
        );
        assert!(
            matches!(parse(e).unwrap(), Input::Snapshot { what: What::CopyFinished, ref region, .. } if region == "us-west-2")
        );
    }

    #[test]
    fn other_events_are_ignored_or_refused_by_name() {
        let deleted = rds(
            "RDS DB Snapshot Event",
            "us-east-1",
            json!({"SourceIdentifier": "x", "EventID": "RDS-EVENT-0041", "Message": "Deleted manual snapshot"}),
        );
        assert!(matches!(parse(deleted).unwrap(), Input::Ignore { .. }));
        let instance = rds(
            "RDS DB Instance Event",
            "us-east-1",
            json!({"SourceIdentifier": "orders-db", "EventID": "RDS-EVENT-0002"}),
        );
        assert!(matches!(parse(instance).unwrap(), Input::Ignore { .. }));
        let drill = rds(
            "RDS DB Instance Event",
            "us-west-2",
            json!({"SourceIdentifier": "autopilot-drill-orders-db", "EventID": "RDS-EVENT-0005"}),
        );
        assert_eq!(
            parse(drill).unwrap(),
            Input::Drill {
                region: "us-west-2".into(),
                instance: "autopilot-drill-orders-db".into()
            }
        );
        let other = json!({"detail-type": "ECR Image Action", "source": "aws.ecr", "detail": {}});
        assert!(parse(other)
            .unwrap_err()
            .to_string()
            .contains("RDS DB Snapshot Event"));
    }

    #[test]
    fn malformed_events_name_the_field() {
        let cases = [
            (
                rds(
                    "RDS DB Snapshot Event",
                    "us-east-1",
                    json!({"EventID": "RDS-EVENT-0042"}),
                ),
                "SourceIdentifier",
            ),
            (
                rds(
                    "RDS DB Snapshot Event",
                    "us-east-1",
                    json!({"SourceIdentifier": 7}),
                ),
                "SourceIdentifier",
            ),
            (
                rds(
                    "RDS DB Snapshot Event",
                    "us-east-1",
                    json!({"SourceIdentifier": " "}),
                ),
                "SourceIdentifier",
            ),
            (
                rds(
                    "RDS DB Snapshot Event",
                    "us-east-1",
                    json!({"SourceIdentifier": "x",
                "SourceArn": "arn:aws:rds:eu-west-1:1:snapshot:x", "EventID": "RDS-EVENT-0042"}),
                ),
                "SourceArn",
            ),
            (
                json!({"detail-type": "Scheduled Task", "source": "autopilot.scheduler", "time": "2026-11-24T03:00:00Z", "detail": {"task": "deploy-sweep"}}),
                "task",
            ),
            (
                json!({"detail-type": "Scheduled Task", "source": "autopilot.scheduler", "detail": {"task": "snapshot-check"}}),
                "time",
            ),
        ];
        for (event, field) in cases {
            let e = parse(event).unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn schedules() {
        let e = json!({"version": "0", "id": "1", "detail-type": "Scheduled Task", "source": "autopilot.scheduler",
            "account": "123456789012", "time": "2026-11-24T03:00:00Z", "region": "us-east-1", "resources": [],
            "detail": {"task": "snapshot-backup"}});
        assert!(matches!(
            parse(e).unwrap(),
            Input::Schedule { backup: true, .. }
        ));
    }
}
