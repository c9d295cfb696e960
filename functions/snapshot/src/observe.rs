//! Reading RDS in both regions. Nothing here writes.

use crate::config::{Config, Database, Kind};
use crate::model::{quota_name, DrillInstance, Quota, Snap};
use crate::plan::View;
use autopilot_shared::aws::AwsCallError;
use autopilot_shared::backup;
use aws_sdk_rds::error::ProvideErrorMetadata;
use aws_sdk_rds::Client;

/// RDS clients: the function's own region and the DR region.
#[derive(Debug, Clone)]
pub struct Rds {
    pub source_region: String,
    pub source: Client,
    pub dr: Option<(String, Client)>,
}

impl Rds {
    /// The client for `region`, when it is one of the two.
    pub fn client(&self, region: &str) -> Option<&Client> {
        if region == self.source_region {
            Some(&self.source)
        } else {
            self.dr
                .as_ref()
                .filter(|(r, _)| r == region)
                .map(|(_, c)| c)
        }
    }

    pub fn dr(&self) -> Option<(&str, &Client)> {
        self.dr.as_ref().map(|(r, c)| (r.as_str(), c))
    }
}

/// Whether an SDK error carries one of these AWS error codes.
pub fn is_code<E: ProvideErrorMetadata>(e: &E, codes: &[&str]) -> bool {
    e.code().is_some_and(|c| codes.contains(&c))
}

/// Every snapshot of `db` in `region`, manual and automated (AWS returns both
/// when SnapshotType is not given; shared and public ones are left out).
pub async fn snapshots(
    rds: &Client,
    region: &str,
    kind: Kind,
    db: &str,
) -> Result<Vec<Snap>, AwsCallError> {
    let mut out = Vec::new();
    match kind {
        Kind::Instance => {
            let mut pages = rds
                .describe_db_snapshots()
                .db_instance_identifier(db)
                .max_records(100)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    AwsCallError::of("DescribeDBSnapshots", format!("{db} in {region}"))(e)
                })?;
                out.extend(
                    page.db_snapshots()
                        .iter()
                        .filter_map(|s| Snap::from_instance(region, s)),
                );
            }
        }
        Kind::Cluster => {
            let mut pages = rds
                .describe_db_cluster_snapshots()
                .db_cluster_identifier(db)
                .max_records(100)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    AwsCallError::of("DescribeDBClusterSnapshots", format!("{db} in {region}"))(e)
                })?;
                out.extend(
                    page.db_cluster_snapshots()
                        .iter()
                        .filter_map(|s| Snap::from_cluster(region, s)),
                );
            }
        }
    }
    // A DescribeDBSnapshots filter is a prefix-free match, but be sure.
    out.retain(|s| s.db == db);
    Ok(out)
}

/// One snapshot by identifier; `None` when RDS has no such snapshot.
pub async fn snapshot(
    rds: &Client,
    region: &str,
    kind: Kind,
    id: &str,
) -> Result<Option<Snap>, AwsCallError> {
    let resource = format!("{id} in {region}");
    match kind {
        Kind::Instance => match rds
            .describe_db_snapshots()
            .db_snapshot_identifier(id)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .db_snapshots()
                .iter()
                .filter_map(|s| Snap::from_instance(region, s))
                .find(|s| s.id == id)),
            Err(e) if is_code(&e, &["DBSnapshotNotFound", "DBSnapshotNotFoundFault"]) => Ok(None),
            Err(e) => Err(AwsCallError::of("DescribeDBSnapshots", resource)(e)),
        },
        Kind::Cluster => match rds
            .describe_db_cluster_snapshots()
            .db_cluster_snapshot_identifier(id)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .db_cluster_snapshots()
                .iter()
                .filter_map(|s| Snap::from_cluster(region, s))
                .find(|s| s.id == id)),
            Err(e)
                if is_code(
                    &e,
                    &[
                        "DBClusterSnapshotNotFoundFault",
                        "DBClusterSnapshotNotFound",
                    ],
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(AwsCallError::of("DescribeDBClusterSnapshots", resource)(e)),
        },
    }
}

/// The drill instance `id`, when it exists.
pub async fn drill_instance(
    rds: &Client,
    region: &str,
    id: &str,
) -> Result<Option<DrillInstance>, AwsCallError> {
    match rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .db_instances()
            .iter()
            .filter_map(DrillInstance::from_sdk)
            .find(|i| i.id == id)),
        Err(e) if is_code(&e, &["DBInstanceNotFound", "DBInstanceNotFoundFault"]) => Ok(None),
        Err(e) => Err(AwsCallError::of(
            "DescribeDBInstances",
            format!("{id} in {region}"),
        )(e)),
    }
}

/// The manual-snapshot quotas of a region, `[instance, cluster]`. Optional:
/// a failed lookup is logged and planning goes on without it (AWS still
/// refuses a snapshot over quota, and that refusal pages).
pub async fn quotas(rds: &Client, region: &str) -> [Option<Quota>; 2] {
    match rds.describe_account_attributes().send().await {
        Ok(out) => {
            let find = |kind: Kind| {
                out.account_quotas()
                    .iter()
                    .find(|q| q.account_quota_name() == Some(quota_name(kind)))
                    .and_then(|q| {
                        Some(Quota {
                            used: q.used()?,
                            max: q.max()?,
                        })
                    })
            };
            [find(Kind::Instance), find(Kind::Cluster)]
        }
        Err(e) => {
            let e = AwsCallError::of("DescribeAccountAttributes", region)(e);
            tracing::warn!(error = %e, "quota lookup failed; planning without it");
            [None, None]
        }
    }
}

/// Reads one database in both regions; the drill instance only when `with_drill`.
pub async fn view(rds: &Rds, db: &Database, with_drill: bool) -> Result<View, AwsCallError> {
    let source = snapshots(&rds.source, &rds.source_region, db.kind, &db.id).await?;
    let (dr, drill) = match rds.dr() {
        None => (Vec::new(), None),
        Some((region, client)) => {
            let dr = snapshots(client, region, db.kind, &db.id).await?;
            let drill = if with_drill && db.drill.is_some() {
                drill_instance(client, region, &backup::drill_instance_id(&db.id)).await?
            } else {
                None
            };
            (dr, drill)
        }
    };
    Ok(View {
        db: db.clone(),
        source,
        dr,
        drill,
    })
}

/// Every configured database, each read or failed on its own.
pub async fn views(
    rds: &Rds,
    config: &Config,
    with_drill: bool,
) -> Vec<(Database, Result<View, AwsCallError>)> {
    // One database after another: a handful, and RDS Describe* calls are throttled per account.
    let mut out = Vec::with_capacity(config.databases.len());
    for db in &config.databases {
        out.push((db.clone(), view(rds, db, with_drill).await));
    }
    out
}
