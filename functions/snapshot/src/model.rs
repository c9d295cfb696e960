//! What snapshot reads from RDS, in one shape for instance and cluster
//! snapshots, so the plan is written once.

use crate::config::Kind;
use autopilot_shared::backup::{self, parse_stamp, tag};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// A DB snapshot or a DB cluster snapshot, as RDS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    pub kind: Kind,
    pub region: String,
    pub id: String,
    pub arn: String,
    /// The instance or cluster it is of (copies keep the source's).
    pub db: String,
    pub status: String,
    /// `SnapshotType` automated (RDS's own, never touched by retention).
    pub automated: bool,
    pub encrypted: bool,
    pub kms_key: Option<String>,
    /// `SnapshotCreateTime`; absent while it is being created.
    pub created: Option<DateTime<Utc>>,
    pub tags: BTreeMap<String, String>,
}

/// Status values, from the RDS API reference (DBSnapshot.Status, DBClusterSnapshot.Status).
pub mod status {
    pub const AVAILABLE: &str = "available";
}

impl Snap {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    pub fn available(&self) -> bool {
        self.status == status::AVAILABLE
    }

    /// Still being made or copied (`creating`, `pending` for a queued copy,
    /// `copying`): counts against the copy limit. RDS does not list DB snapshot
    /// statuses, so anything not available, failed or being deleted counts.
    pub fn in_flight(&self) -> bool {
        !self.available() && !self.failed() && self.status != "deleting"
    }

    /// Ended without a usable snapshot.
    pub fn failed(&self) -> bool {
        matches!(
            self.status.as_str(),
            "failed" | "error" | "incompatible-restore"
        )
    }

    /// autopilot made it, so retention may delete it.
    pub fn ours(&self) -> bool {
        !self.automated
            && backup::is_ours(
                &self.id,
                self.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
    }

    /// One of autopilot's DR copies.
    pub fn is_copy(&self) -> bool {
        self.ours()
            && self.id.starts_with(backup::DR_PREFIX)
            && self.tag(tag::REASON) == Some(backup::reason::DR_COPY)
    }

    pub fn copy_started(&self) -> Option<DateTime<Utc>> {
        self.tag(tag::COPY_STARTED).and_then(parse_stamp)
    }

    pub fn confirmed(&self) -> Option<DateTime<Utc>> {
        self.tag(tag::CONFIRMED).and_then(parse_stamp)
    }

    /// The last drill of this copy: whether it passed, and when.
    pub fn drill(&self) -> Option<(bool, DateTime<Utc>)> {
        let value = self.tag(tag::DRILL)?;
        let (result, time) = value.split_once(' ')?;
        let passed = match result {
            "passed" => true,
            "failed" => false,
            _ => return None,
        };
        Some((passed, parse_stamp(time)?))
    }

    /// `id (region)`, how pages name it.
    pub fn label(&self) -> String {
        format!("{} ({})", self.id, self.region)
    }
}

/// A restore-drill instance, as RDS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillInstance {
    pub id: String,
    pub arn: String,
    pub status: String,
    pub created: Option<DateTime<Utc>>,
    pub endpoint: Option<(String, u16)>,
    pub publicly_accessible: bool,
    pub tags: BTreeMap<String, String>,
}

impl DrillInstance {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    /// When the drill started: our tag, else RDS's create time.
    pub fn started(&self) -> Option<DateTime<Utc>> {
        self.tag(tag::DRILL_STARTED)
            .and_then(parse_stamp)
            .or(self.created)
    }

    /// autopilot made it (name and tag), so it may delete it.
    pub fn ours(&self) -> bool {
        self.id.starts_with(backup::DRILL_PREFIX)
            && self.tag(tag::CREATED_BY) == Some(backup::BY_SNAPSHOT)
            && self.tag(tag::REASON) == Some(backup::reason::RESTORE_DRILL)
    }

    /// RDS statuses from which the instance will not become usable.
    pub fn broken(&self) -> bool {
        matches!(
            self.status.as_str(),
            "failed"
                | "incompatible-restore"
                | "incompatible-parameters"
                | "incompatible-network"
                | "incompatible-option-group"
                | "inaccessible-encryption-credentials"
                | "inaccessible-encryption-credentials-recoverable"
                | "restore-error"
                | "storage-full"
        )
    }
}

/// One manual-snapshot quota of a region, from DescribeAccountAttributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub used: i64,
    pub max: i64,
}

/// AccountQuotaName of each kind's manual snapshots.
pub fn quota_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Instance => "ManualSnapshots",
        Kind::Cluster => "ManualClusterSnapshots",
    }
}

pub fn to_utc(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

fn tags(list: Option<&[aws_sdk_rds::types::Tag]>) -> BTreeMap<String, String> {
    list.unwrap_or_default()
        .iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

impl Snap {
    pub fn from_instance(region: &str, s: &aws_sdk_rds::types::DbSnapshot) -> Option<Self> {
        Some(Self {
            kind: Kind::Instance,
            region: region.to_string(),
            id: s.db_snapshot_identifier()?.to_string(),
            arn: s.db_snapshot_arn().unwrap_or_default().to_string(),
            db: s.db_instance_identifier().unwrap_or_default().to_string(),
            status: s.status().unwrap_or_default().to_string(),
            automated: s.snapshot_type() == Some("automated"),
            encrypted: s.encrypted().unwrap_or(false),
            kms_key: s.kms_key_id().map(str::to_string),
            created: s.snapshot_create_time().and_then(to_utc),
            tags: tags(Some(s.tag_list())),
        })
    }

    pub fn from_cluster(region: &str, s: &aws_sdk_rds::types::DbClusterSnapshot) -> Option<Self> {
        Some(Self {
            kind: Kind::Cluster,
            region: region.to_string(),
            id: s.db_cluster_snapshot_identifier()?.to_string(),
            arn: s.db_cluster_snapshot_arn().unwrap_or_default().to_string(),
            db: s.db_cluster_identifier().unwrap_or_default().to_string(),
            status: s.status().unwrap_or_default().to_string(),
            automated: s.snapshot_type() == Some("automated"),
            encrypted: s.storage_encrypted().unwrap_or(false),
            kms_key: s.kms_key_id().map(str::to_string),
            created: s.snapshot_create_time().and_then(to_utc),
            tags: tags(Some(s.tag_list())),
        })
    }
}

impl DrillInstance {
    pub fn from_sdk(i: &aws_sdk_rds::types::DbInstance) -> Option<Self> {
        let endpoint = i.endpoint().and_then(|e| {
            Some((
                e.address()?.to_string(),
                u16::try_from(e.port().unwrap_or(5432)).ok()?,
            ))
        });
        Some(Self {
            id: i.db_instance_identifier()?.to_string(),
            arn: i.db_instance_arn().unwrap_or_default().to_string(),
            status: i.db_instance_status().unwrap_or_default().to_string(),
            created: i.instance_create_time().and_then(to_utc),
            endpoint,
            publicly_accessible: i.publicly_accessible().unwrap_or(false),
            tags: tags(Some(i.tag_list())),
        })
    }
}

#[cfg(test)]
pub mod fixtures {
    //! Snapshots for plan tests.
    use super::*;
    use autopilot_shared::backup::{reason, stamp, BY_SNAPSHOT};
    use chrono::Duration;

    pub fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-24T04:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    pub fn snap(region: &str, id: &str, age_hours: i64) -> Snap {
        Snap {
            kind: Kind::Instance,
            region: region.into(),
            id: id.into(),
            arn: format!("arn:aws:rds:{region}:123456789012:snapshot:{id}"),
            db: "orders-db".into(),
            status: "available".into(),
            automated: id.starts_with("rds:"),
            encrypted: true,
            kms_key: Some(format!("arn:aws:kms:{region}:123456789012:key/src")),
            created: Some(now() - Duration::hours(age_hours)),
            tags: BTreeMap::new(),
        }
    }

    /// One of autopilot's scheduled snapshots.
    pub fn ours(region: &str, id: &str, age_hours: i64) -> Snap {
        let mut s = snap(region, id, age_hours);
        s.tags.insert(tag::CREATED_BY.into(), BY_SNAPSHOT.into());
        s.tags.insert(tag::REASON.into(), reason::SCHEDULED.into());
        s
    }

    /// autopilot's DR copy of `source`, confirmed.
    pub fn copy_of(source: &Snap, dr: &str, age_hours: i64) -> Snap {
        let id = backup::dr_copy_id(&source.id, false);
        let mut s = snap(dr, &id, age_hours);
        s.automated = false;
        s.tags.insert(tag::CREATED_BY.into(), BY_SNAPSHOT.into());
        s.tags.insert(tag::REASON.into(), reason::DR_COPY.into());
        s.tags.insert(tag::SOURCE.into(), source.arn.clone());
        s.tags.insert(tag::DB.into(), source.db.clone());
        s.tags.insert(
            tag::COPY_STARTED.into(),
            stamp(now() - Duration::hours(age_hours)),
        );
        s.tags.insert(
            tag::CONFIRMED.into(),
            stamp(now() - Duration::hours(age_hours)),
        );
        s
    }
}
