//! Fixtures for snapshot: RDS in two Regions of the one emulator (us-east-1 the
//! source, us-west-2 the DR Region), real instances, clusters and snapshots made
//! through the SDK, and the bridge's controls for what only time changes on AWS
//! (`/_bridge/rds/*` in `harness/moto_bridge.py`, which documents each).
//!
//! Names: pass names that contain your test's [`crate::Stack`] prefix. Holds match
//! on a needle (use the prefix), so tests running in parallel hold only their own.
//! Quotas are per Region as on AWS and shared by the whole test binary: a test that
//! lowers one should use a Region no other test of its binary uses (see [`QUOTA_SOURCE`]).

use crate::{bridge, sdk_config, REGION};
use aws_config::Region;
use aws_sdk_rds::error::ProvideErrorMetadata;
use aws_sdk_rds::types::{DbCluster, DbInstance, Tag};
use serde_json::json;
use std::collections::BTreeMap;

/// The source Region (the function's own).
pub const SOURCE: &str = REGION;
/// The DR Region copies go to.
pub const DR: &str = "us-west-2";
/// A Region pair no other test uses, for tests that change account quotas.
pub const QUOTA_SOURCE: &str = "eu-west-1";
pub const QUOTA_DR: &str = "eu-central-1";
/// The master user of fixture instances and clusters.
pub const MASTER_USER: &str = "orders_admin";

/// An RDS client for `region`: the emulator's production-shaped SDK configuration
/// with only the Region changed (it signs for that Region, which selects it).
pub async fn rds(region: &str) -> aws_sdk_rds::Client {
    let sdk = sdk_config().await;
    let config = aws_sdk_rds::config::Builder::from(&sdk)
        .region(Region::new(region.to_string()))
        .build();
    aws_sdk_rds::Client::from_conf(config)
}

/// The ARN of a new symmetric KMS key in `region`.
pub fn kms_key(region: &str) -> String {
    let out = bridge("/_bridge/kms/key", json!({ "region": region }));
    out["arn"].as_str().unwrap().to_string()
}

/// The error code an SDK call failed with (`InvalidParameterValue`, `DBSnapshotNotFound`...).
pub fn error_code<E: ProvideErrorMetadata>(error: &E) -> String {
    error.code().unwrap_or_default().to_string()
}

/// A PostgreSQL instance `id` in `region`, available at once, encrypted with a new
/// KMS key of that Region when `encrypted`. It has BackupRetentionPeriod 0, so no
/// automated snapshot of its own: add them with [`automated_snapshot`].
pub async fn create_instance(region: &str, id: &str, encrypted: bool) -> DbInstance {
    let mut request = rds(region)
        .await
        .create_db_instance()
        .db_instance_identifier(id)
        .engine("postgres")
        .db_instance_class("db.t4g.micro")
        .allocated_storage(20)
        .master_username(MASTER_USER)
        .master_user_password("harness-master-password")
        .backup_retention_period(0)
        .tags(tag("team", "orders"));
    if encrypted {
        request = request.storage_encrypted(true).kms_key_id(kms_key(region));
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("create instance {id}: {}", error_code(&e)))
        .db_instance
        .expect("the new instance")
}

/// An Aurora PostgreSQL cluster `id` in `region`, encrypted with a new KMS key of
/// that Region when `encrypted`. As on AWS, Aurora always backs up: moto takes one
/// automated snapshot (`rds:<id>-<now>`) when the cluster is created.
pub async fn create_cluster(region: &str, id: &str, encrypted: bool) -> DbCluster {
    let mut request = rds(region)
        .await
        .create_db_cluster()
        .db_cluster_identifier(id)
        .engine("aurora-postgresql")
        .master_username(MASTER_USER)
        .master_user_password("harness-master-password")
        .tags(tag("team", "orders"));
    if encrypted {
        request = request.storage_encrypted(true).kms_key_id(kms_key(region));
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("create cluster {id}: {}", error_code(&e)))
        .db_cluster
        .expect("the new cluster")
}

/// An RDS tag.
pub fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// The database a snapshot is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db<'a> {
    Instance(&'a str),
    Cluster(&'a str),
}

/// A manual snapshot `id` of `db` taken now with CreateDBSnapshot /
/// CreateDBClusterSnapshot and `tags`; returns its ARN.
pub async fn manual_snapshot(region: &str, db: Db<'_>, id: &str, tags: &[(&str, &str)]) -> String {
    let client = rds(region).await;
    let tags: Vec<Tag> = tags.iter().map(|(k, v)| tag(k, v)).collect();
    match db {
        Db::Instance(instance) => client
            .create_db_snapshot()
            .db_instance_identifier(instance)
            .db_snapshot_identifier(id)
            .set_tags(Some(tags))
            .send()
            .await
            .unwrap_or_else(|e| panic!("snapshot {id}: {}", error_code(&e)))
            .db_snapshot
            .and_then(|s| s.db_snapshot_arn)
            .unwrap(),
        Db::Cluster(cluster) => client
            .create_db_cluster_snapshot()
            .db_cluster_identifier(cluster)
            .db_cluster_snapshot_identifier(id)
            .set_tags(Some(tags))
            .send()
            .await
            .unwrap_or_else(|e| panic!("cluster snapshot {id}: {}", error_code(&e)))
            .db_cluster_snapshot
            .and_then(|s| s.db_cluster_snapshot_arn)
            .unwrap(),
    }
}

/// An automated snapshot `id` (AWS names them `rds:<db>-<YYYY-MM-DD-HH-MM>`) of
/// `db`, taken at `created` (epoch seconds), as the backup window would; returns its ARN.
pub fn automated_snapshot(region: &str, db: Db<'_>, id: &str, created: i64) -> String {
    let mut body = json!({"region": region, "id": id, "created": created});
    match db {
        Db::Instance(name) => body["instance"] = json!(name),
        Db::Cluster(name) => body["cluster"] = json!(name),
    }
    bridge("/_bridge/rds/automated-snapshot", body)["arn"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Moves snapshot `id`'s SnapshotCreateTime (and a DB snapshot's
/// OriginalSnapshotCreateTime) to `created`, epoch seconds.
pub fn set_snapshot_time(region: &str, id: &str, cluster: bool, created: i64) {
    bridge(
        "/_bridge/rds/snapshot-time",
        json!({"region": region, "id": id, "cluster": cluster, "created": created}),
    );
}

/// While held, new copies and new manual snapshots whose identifier or DB identifier
/// contains `needle` stay in flight until [`finish_snapshot`], with PercentProgress 0
/// and the status AWS shows: `creating` (new snapshots and DB snapshot copies) or
/// `copying` (cluster snapshot copies). `hold_copies(needle, false)` lets later ones
/// be available at once.
pub fn hold_copies(needle: &str, hold: bool) {
    bridge(
        "/_bridge/rds/hold-copies",
        json!({"hold": hold, "match": needle}),
    );
}

/// As [`hold_copies`], with the in-flight status given (`pending` for a copy still queued).
pub fn hold_copies_as(needle: &str, status: &str) {
    bridge(
        "/_bridge/rds/hold-copies",
        json!({"hold": true, "match": needle, "status": status}),
    );
}

/// Ends snapshot `id`'s creation or copy with `status` (`available` or `failed`).
pub fn finish_snapshot(region: &str, id: &str, cluster: bool, status: &str) {
    bridge(
        "/_bridge/rds/finish-snapshot",
        json!({"region": region, "id": id, "cluster": cluster, "status": status}),
    );
}

/// While held, instances restored from a snapshot whose identifier (or snapshot's)
/// contains `needle` stay `creating`, and deleted ones stay `deleting`, until [`finish_instance`].
pub fn hold_instances(needle: &str, hold: bool) {
    bridge(
        "/_bridge/rds/hold-instances",
        json!({"hold": hold, "match": needle}),
    );
}

/// Moves instance `id` to `status`: `available`, `failed`, `incompatible-restore`,
/// or `deleted` (a held delete completes and the instance is gone).
pub fn finish_instance(region: &str, id: &str, status: &str) {
    bridge(
        "/_bridge/rds/finish-instance",
        json!({"region": region, "id": id, "status": status}),
    );
}

/// Sets account quota `name` (`ManualSnapshots`, `ManualClusterSnapshots`...) to
/// `max` in `region`; `None` restores AWS's default.
pub fn set_quota(region: &str, name: &str, max: Option<i64>) {
    bridge(
        "/_bridge/rds/quota",
        json!({"region": region, "name": name, "max": max}),
    );
}

/// Sets how many cross-Region copies may be in flight to `region` (AWS: 20; `None`
/// restores it); one more is refused with SnapshotQuotaExceeded.
pub fn set_copy_limit(region: &str, max: Option<i64>) {
    bridge(
        "/_bridge/rds/copy-limit",
        json!({"region": region, "max": max}),
    );
}

/// Points instance `id`'s endpoint at `127.0.0.1:port` (the harness PostgreSQL).
pub fn point_at(region: &str, id: &str, port: u16) {
    bridge(
        "/_bridge/rds/endpoint",
        json!({"region": region, "instance": id, "address": "127.0.0.1", "port": port}),
    );
}

/// What a test usually asks of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    pub id: String,
    pub arn: String,
    pub status: String,
    /// SnapshotType: `manual` or `automated`.
    pub kind: String,
    pub tags: BTreeMap<String, String>,
    /// SnapshotCreateTime, epoch seconds.
    pub created: i64,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
}

fn tags_of(list: &[Tag]) -> BTreeMap<String, String> {
    list.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Every snapshot of `db` in `region` (manual and automated), over all pages.
pub async fn snapshots(region: &str, db: Db<'_>) -> Vec<Snap> {
    let client = rds(region).await;
    let mut out = Vec::new();
    match db {
        Db::Instance(name) => {
            let mut pages = client
                .describe_db_snapshots()
                .db_instance_identifier(name)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page =
                    page.unwrap_or_else(|e| panic!("snapshots of {name}: {}", error_code(&e)));
                out.extend(page.db_snapshots().iter().map(|s| {
                    Snap {
                        id: s.db_snapshot_identifier().unwrap_or_default().to_string(),
                        arn: s.db_snapshot_arn().unwrap_or_default().to_string(),
                        status: s.status().unwrap_or_default().to_string(),
                        kind: s.snapshot_type().unwrap_or_default().to_string(),
                        tags: tags_of(s.tag_list()),
                        created: s
                            .snapshot_create_time()
                            .map(|t| t.secs())
                            .unwrap_or_default(),
                        encrypted: s.encrypted().unwrap_or_default(),
                        kms_key_id: s.kms_key_id().map(str::to_string),
                    }
                }));
            }
        }
        Db::Cluster(name) => {
            let mut pages = client
                .describe_db_cluster_snapshots()
                .db_cluster_identifier(name)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page =
                    page.unwrap_or_else(|e| panic!("snapshots of {name}: {}", error_code(&e)));
                out.extend(page.db_cluster_snapshots().iter().map(|s| {
                    Snap {
                        id: s
                            .db_cluster_snapshot_identifier()
                            .unwrap_or_default()
                            .to_string(),
                        arn: s.db_cluster_snapshot_arn().unwrap_or_default().to_string(),
                        status: s.status().unwrap_or_default().to_string(),
                        kind: s.snapshot_type().unwrap_or_default().to_string(),
                        tags: tags_of(s.tag_list()),
                        created: s
                            .snapshot_create_time()
                            .map(|t| t.secs())
                            .unwrap_or_default(),
                        encrypted: s.storage_encrypted().unwrap_or_default(),
                        kms_key_id: s.kms_key_id().map(str::to_string),
                    }
                }));
            }
        }
    }
    out
}

/// Snapshot `id` of `db` in `region`, if there is one.
pub async fn snapshot(region: &str, db: Db<'_>, id: &str) -> Option<Snap> {
    snapshots(region, db).await.into_iter().find(|s| s.id == id)
}

/// Instance `id`'s status in `region`, or `None` when there is no such instance.
pub async fn instance_status(region: &str, id: &str) -> Option<String> {
    match rds(region)
        .await
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
    {
        Ok(out) => out
            .db_instances()
            .first()
            .and_then(|i| i.db_instance_status())
            .map(str::to_string),
        Err(e) if error_code(&e) == "DBInstanceNotFound" => None,
        Err(e) => panic!("describe {id}: {}", error_code(&e)),
    }
}

/// `(AccountQuotaName, Used, Max)` of DescribeAccountAttributes in `region`.
pub async fn quota(region: &str, name: &str) -> (i64, i64) {
    let out = rds(region)
        .await
        .describe_account_attributes()
        .send()
        .await
        .expect("describe account attributes");
    out.account_quotas()
        .iter()
        .find(|q| q.account_quota_name() == Some(name))
        .map(|q| (q.used().unwrap_or_default(), q.max().unwrap_or_default()))
        .unwrap_or_else(|| panic!("no quota {name}"))
}

/// Copies snapshot `source_arn` into `region` as `target` (encrypted with
/// `kms_key_id` when given, CopyTags on), as the function's DR copy does; returns the copy's ARN.
pub async fn copy_snapshot(
    region: &str,
    cluster: bool,
    source_arn: &str,
    target: &str,
    kms_key_id: Option<&str>,
) -> String {
    let client = rds(region).await;
    if cluster {
        client
            .copy_db_cluster_snapshot()
            .source_db_cluster_snapshot_identifier(source_arn)
            .target_db_cluster_snapshot_identifier(target)
            .set_kms_key_id(kms_key_id.map(str::to_string))
            .copy_tags(true)
            .send()
            .await
            .unwrap_or_else(|e| panic!("copy {source_arn}: {}", error_code(&e)))
            .db_cluster_snapshot
            .and_then(|s| s.db_cluster_snapshot_arn)
            .unwrap()
    } else {
        client
            .copy_db_snapshot()
            .source_db_snapshot_identifier(source_arn)
            .target_db_snapshot_identifier(target)
            .set_kms_key_id(kms_key_id.map(str::to_string))
            .copy_tags(true)
            .send()
            .await
            .unwrap_or_else(|e| panic!("copy {source_arn}: {}", error_code(&e)))
            .db_snapshot
            .and_then(|s| s.db_snapshot_arn)
            .unwrap()
    }
}
