//! Snapshot before deploy: a service whose configuration names an RDS
//! instance (`"snapshot": "orders-db"`) is deployed only once a manual
//! snapshot of that instance, taken for this push, is available.
//!
//! The push takes the snapshot and stops; the snapshot's `RDS DB Snapshot
//! Event` (RDS-EVENT-0042) brings deploy back, which rebuilds the push from
//! the snapshot's tags and runs the ordinary push path, where the gate is now
//! open. The tags are only a pointer: the repository and tag must still map
//! to the service, the instance is the one RDS says the snapshot is of, and
//! the push path checks the digest against ECR and refuses an older image.
//! The snapshot identifier is derived from the push, so a redelivered push
//! finds it instead of taking a second one.

use crate::plan::push::Push;
use autopilot_shared::aws::AwsCallError;
use autopilot_shared::backup::{self, parse_stamp, reason, stamp, tag, BY_DEPLOY};
use autopilot_shared::pager::{Action, Page, Severity};
use aws_sdk_rds::error::ProvideErrorMetadata;
use aws_sdk_rds::types::Tag;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// A pre-deploy snapshot as RDS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreSnapshot {
    pub id: String,
    pub db: String,
    pub status: String,
    pub tags: BTreeMap<String, String>,
}

/// Whether the services waiting on one snapshot may be deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Take the snapshot `id` of `db`, then wait for its event.
    Create { db: String, id: String },
    /// The snapshot is being made.
    Wait(String),
    /// The snapshot is available: deploy.
    Open,
    /// The snapshot failed: the deploy is blocked and on-call is paged.
    Blocked(String),
}

/// The snapshot a push takes of `db`: from the push's own event time and
/// digest, never the clock, so every delivery of one push names the same one.
pub fn snapshot_id(push: &Push, db: &str) -> String {
    let time = push.event_time.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    backup::pre_deploy_id(db, time, &push.digest)
}

/// Decides the gate from what RDS said about the snapshot `id`. Pure.
pub fn gate(db: &str, id: &str, found: Option<&PreSnapshot>) -> Gate {
    let Some(snap) = found else {
        return Gate::Create {
            db: db.to_string(),
            id: id.to_string(),
        };
    };
    if snap.db != db || snap.tags.get(tag::CREATED_BY).map(String::as_str) != Some(BY_DEPLOY) {
        return Gate::Blocked(format!(
            "snapshot {id} exists but is not deploy's snapshot of {db} (it is of `{}`)",
            snap.db
        ));
    }
    match snap.status.as_str() {
        "available" => Gate::Open,
        "creating" | "pending" | "backing-up" => Gate::Wait(format!(
            "waiting for snapshot {id} of {db} ({}) before deploying; its created event continues the deploy",
            snap.status
        )),
        other => Gate::Blocked(format!(
            "the pre-deploy snapshot {id} of {db} is {other}, not available"
        )),
    }
}

/// The tags a pre-deploy snapshot carries: provenance, and the push to resume.
pub fn tags(push: &Push, db: &str) -> Vec<(&'static str, String)> {
    let mut tags = vec![
        (tag::CREATED_BY, BY_DEPLOY.to_string()),
        (tag::REASON, reason::PRE_DEPLOY.to_string()),
        (tag::DB, db.to_string()),
        (tag::DEPLOY_REPOSITORY, push.repository.clone()),
        (tag::DEPLOY_TAG, push.tag.clone()),
        (tag::DEPLOY_DIGEST, push.digest.clone()),
    ];
    if let Some(id) = &push.event_id {
        tags.push((tag::DEPLOY_EVENT, id.clone()));
    }
    if let Some(time) = push.event_time {
        tags.push((tag::DEPLOY_TIME, stamp(time)));
    }
    tags
}

/// The push a pre-deploy snapshot was taken for, from its tags; `None` when
/// it is not deploy's or a tag is missing.
pub fn push_of(snap: &PreSnapshot, account: &str, region: &str) -> Option<Push> {
    let t = |k: &str| snap.tags.get(k).filter(|v| !v.is_empty()).cloned();
    if t(tag::CREATED_BY).as_deref() != Some(BY_DEPLOY) {
        return None;
    }
    Some(Push {
        repository: t(tag::DEPLOY_REPOSITORY)?,
        tag: t(tag::DEPLOY_TAG)?,
        digest: t(tag::DEPLOY_DIGEST)?,
        account: account.to_string(),
        region: region.to_string(),
        event_id: t(tag::DEPLOY_EVENT),
        event_time: t(tag::DEPLOY_TIME).as_deref().and_then(parse_stamp),
    })
}

/// The page when a pre-deploy snapshot blocks a deploy.
pub fn blocked_page(push: &Push, services: &[String], db: &str, id: &str, reason: &str) -> Page {
    Page::new(
        Action::Trigger,
        Severity::Critical,
        "deploy.snapshot_failed",
        db,
        format!(
            "Deploy of {}:{} BLOCKED: pre-deploy snapshot of {db} failed",
            push.repository, push.tag
        ),
    )
    .dedup_key(format!("autopilot/deploy/snapshot/{id}"))
    .fact("Database", db)
    .fact("Snapshot", id)
    .fact("Image", format!("{}:{}", push.repository, push.tag))
    .fact("Digest", &push.digest)
    .fact("Reason", reason)
    .fact(
        "Next",
        "nothing was deployed; fix the database or the snapshot, then push again",
    )
    .list("Services", services.to_vec())
}

/// Reads the snapshot `id`; `None` when RDS has none.
pub async fn observe(
    rds: &aws_sdk_rds::Client,
    id: &str,
) -> Result<Option<PreSnapshot>, AwsCallError> {
    match rds
        .describe_db_snapshots()
        .db_snapshot_identifier(id)
        .send()
        .await
    {
        Ok(out) => Ok(out.db_snapshots().iter().find_map(|s| {
            (s.db_snapshot_identifier() == Some(id)).then(|| PreSnapshot {
                id: id.to_string(),
                db: s.db_instance_identifier().unwrap_or_default().to_string(),
                status: s.status().unwrap_or_default().to_string(),
                tags: s
                    .tag_list()
                    .iter()
                    .filter_map(|t| {
                        Some((
                            t.key()?.to_string(),
                            t.value().unwrap_or_default().to_string(),
                        ))
                    })
                    .collect(),
            })
        })),
        Err(e)
            if e.code() == Some("DBSnapshotNotFound")
                || e.code() == Some("DBSnapshotNotFoundFault") =>
        {
            Ok(None)
        }
        Err(e) => Err(AwsCallError::of("DescribeDBSnapshots", id)(e)),
    }
}

/// Takes the snapshot; one that already exists (a redelivered push) is fine.
pub async fn create(
    rds: &aws_sdk_rds::Client,
    push: &Push,
    db: &str,
    id: &str,
) -> Result<(), AwsCallError> {
    let tags = tags(push, db)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    match rds
        .create_db_snapshot()
        .db_instance_identifier(db)
        .db_snapshot_identifier(id)
        .set_tags(Some(tags))
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e)
            if e.code() == Some("DBSnapshotAlreadyExists")
                || e.code() == Some("DBSnapshotAlreadyExistsFault") =>
        {
            Ok(())
        }
        Err(e) => Err(AwsCallError::of(
            "CreateDBSnapshot",
            format!("{id} of {db}"),
        )(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push() -> Push {
        Push {
            repository: "team/backend".into(),
            tag: "v42".into(),
            digest: "sha256:0123456789abcdef0123".into(),
            account: "123456789012".into(),
            region: "us-east-1".into(),
            event_id: Some("evt-1".into()),
            event_time: parse_stamp("2026-11-24T03:10:42Z"),
        }
    }

    fn snap(status: &str) -> PreSnapshot {
        PreSnapshot {
            id: "autopilot-orders-db-predeploy-20261124031042-0123456789ab".into(),
            db: "orders-db".into(),
            status: status.into(),
            tags: tags(&push(), "orders-db")
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }

    #[test]
    fn the_id_is_the_same_for_every_delivery_of_one_push() {
        assert_eq!(
            snapshot_id(&push(), "orders-db"),
            "autopilot-orders-db-predeploy-20261124031042-0123456789ab"
        );
    }

    #[test]
    fn the_gate_opens_only_on_available() {
        let id = "x";
        assert_eq!(
            gate("orders-db", id, None),
            Gate::Create {
                db: "orders-db".into(),
                id: id.into()
            }
        );
        assert!(matches!(
            gate("orders-db", id, Some(&snap("creating"))),
            Gate::Wait(_)
        ));
        assert_eq!(gate("orders-db", id, Some(&snap("available"))), Gate::Open);
        assert!(
            matches!(gate("orders-db", id, Some(&snap("failed"))), Gate::Blocked(r) if r.contains("failed"))
        );
    }

    #[test]
    fn the_push_comes_back_from_the_tags_and_only_from_deploys_own() {
        assert_eq!(
            push_of(&snap("available"), "123456789012", "us-east-1"),
            Some(push())
        );
        let mut foreign = snap("available");
        foreign
            .tags
            .insert(tag::CREATED_BY.into(), "someone".into());
        assert_eq!(push_of(&foreign, "123456789012", "us-east-1"), None);
        let mut partial = snap("available");
        partial.tags.remove(tag::DEPLOY_DIGEST);
        assert_eq!(push_of(&partial, "123456789012", "us-east-1"), None);
    }
}
