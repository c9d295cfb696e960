//! snapshot's world, as the samples assume it (events/snapshot/README.md):
//! encrypted `orders-db` (with a restore drill against the harness's TLS
//! PostgreSQL, which plays the restored copy) and `orders-aurora` in us-east-1,
//! copies to us-west-2 with a key there. Its baseline: autopilot's 03:00
//! snapshot of orders-db and its proved DR copy (so no check starts a drill),
//! and the automated snapshots the samples name.
//!
//! Before the first event one check copies whatever is due, and after every
//! iteration every manual snapshot the iteration made, in both regions, is
//! deleted again: each event finds the same steady world.

use super::{orders_db, sample, uuid, vars, ORDERS_DB};
use crate::measure::{Case, Step, World};
use autopilot_shared::backup::{self, reason, stamp, tag, BY_SNAPSHOT};
use autopilot_tests::postgres::{ident, literal, postgres_tls, ADMIN_PASSWORD};
use autopilot_tests::snapshots::{self as snaps, Db, DR, SOURCE};
use autopilot_tests::{Stack, ACCOUNT};
use chrono::{Duration, TimeZone, Utc};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use snapshot::config as cfg;
use snapshot::Snapshotter;
use std::collections::BTreeSet;
use std::sync::Arc;

const AURORA: &str = "orders-aurora";
const DRILLED: &str = "autopilot-orders-db-202611240300";

const MANUAL: &str = "events/snapshot/db-snapshot-manual-created.json";
const NO_EVENT_ID: &str = "events/snapshot/db-snapshot-created-no-event-id.json";
const CLUSTER_MANUAL: &str = "events/snapshot/cluster-snapshot-manual-created.json";
const AUTOMATED: &str = "events/snapshot/db-snapshot-automated-created.json";
const CLUSTER_AUTOMATED: &str = "events/snapshot/cluster-snapshot-automated-created.json";
const COPY_FINISHED: &str = "events/snapshot/db-snapshot-copy-finished-cross-region.json";
const DRILL: &str = "events/snapshot/drill-instance-restored.json";
const BACKUP: &str = "events/snapshot/snapshot-backup.json";
const CHECK: &str = "events/snapshot/snapshot-check.json";
const AUTOMATED_ID: &str = "rds:orders-db-2026-11-24-03-10";
const CLUSTER_AUTOMATED_ID: &str = "rds:orders-aurora-2026-11-24-03-10";

pub struct Snapshot {
    stack: Arc<Stack>,
    pg_port: u16,
    ca: String,
    databases: String,
    dr_key: String,
    /// `(region, cluster, id)` of every snapshot of the baseline.
    baseline: BTreeSet<(&'static str, bool, String)>,
    /// The handler in this process, for the copy a copy-finished event finishes.
    snapshotter: Snapshotter,
}

impl Snapshot {
    pub async fn new(stack: Arc<Stack>) -> Self {
        // The restored copy the drill logs in to: the TLS PostgreSQL, with the
        // application's role and table as they were at backup time.
        let pg = postgres_tls();
        let ca = pg.ca.clone().expect("the TLS server's CA");
        pg.exec(&format!(
            "CREATE ROLE {} LOGIN PASSWORD {}",
            ident("orders_app"),
            literal("backup-time-password")
        ))
        .await;
        pg.exec("CREATE DATABASE orders").await;
        pg.login_to("orders", "postgres", ADMIN_PASSWORD)
            .await
            .expect("superuser login to orders")
            .batch_execute(
                "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric NOT NULL);
                 INSERT INTO orders SELECT n, n * 10 FROM generate_series(1, 1042) AS n;
                 GRANT SELECT ON orders TO orders_app;",
            )
            .await
            .expect("the orders table");
        let secret = stack
            .create_secret(
                "prod/db/orders",
                &json!({"engine": "postgres", "host": "orders-db.c1a2b3c4d5e6.us-east-1.rds.amazonaws.com",
                        "port": 5432, "username": "orders_app", "password": "backup-time-password",
                        "dbname": "orders"})
                .to_string(),
            )
            .await;

        orders_db().await;
        snaps::create_cluster(SOURCE, AURORA, true).await;
        let dr_key = snaps::kms_key(DR);

        // autopilot's 03:00 snapshot of orders-db and its DR copy, drilled just now.
        let source = snaps::manual_snapshot(
            SOURCE,
            Db::Instance(ORDERS_DB),
            DRILLED,
            &[
                (tag::CREATED_BY, BY_SNAPSHOT),
                (tag::REASON, reason::SCHEDULED),
                (tag::DB, ORDERS_DB),
            ],
        )
        .await;
        let copy = backup::dr_copy_id(DRILLED, false);
        let copy_arn = snaps::copy_snapshot(DR, false, &source, &copy, Some(&dr_key)).await;
        let now = stamp(Utc::now());
        snaps::rds(DR)
            .await
            .add_tags_to_resource()
            .resource_name(&copy_arn)
            .tags(snaps::tag(tag::REASON, reason::DR_COPY))
            .tags(snaps::tag(tag::SOURCE, &source))
            .tags(snaps::tag(tag::COPY_STARTED, &now))
            .tags(snaps::tag(tag::CONFIRMED, &now))
            .tags(snaps::tag(tag::DRILL, &format!("passed {now}")))
            .send()
            .await
            .expect("tag the drilled copy");
        // The automated snapshots the samples name (taken now, so they are the newest).
        let taken = Utc::now().timestamp();
        snaps::automated_snapshot(SOURCE, Db::Instance(ORDERS_DB), AUTOMATED_ID, taken);
        snaps::automated_snapshot(SOURCE, Db::Cluster(AURORA), CLUSTER_AUTOMATED_ID, taken);

        let databases = json!([
            {"instance": ORDERS_DB, "drill": {"secret": secret, "query": "SELECT count(*) FROM orders", "min": 1}},
            {"cluster": AURORA}
        ])
        .to_string();
        let config = cfg::Config::from_lookup(stack.lookup(&[
            (cfg::AWS_REGION, SOURCE.to_string()),
            (cfg::DATABASES, databases.clone()),
            (cfg::DR_REGION, DR.to_string()),
            (cfg::DR_KMS_KEY, dr_key.clone()),
            (cfg::DB_CA_BUNDLE, ca.clone()),
        ]))
        .expect("valid snapshot configuration");
        let snapshotter = Snapshotter::new(&stack.sdk, config).expect("snapshotter");
        let mut world = Self {
            stack,
            pg_port: pg.port,
            ca,
            databases,
            dr_key,
            baseline: BTreeSet::new(),
            snapshotter,
        };
        // Everything due is copied once, untimed, so each event finds a steady world
        // (no source of an earlier run still waiting for its copy).
        if let Err(e) = world
            .snapshotter
            .handle(LambdaEvent::new(sample(CHECK), Context::default()))
            .await
        {
            println!("  snapshot: the check that settles the world failed: {e:?}");
        }
        world.baseline = world.all_snapshots().await.into_iter().collect();
        world
    }

    /// Deletes the DR copy of one of the baseline's automated snapshots, so its
    /// created event has the copy to make again.
    async fn drop_copy(&self, source: &str, cluster: bool) {
        let copy = backup::dr_copy_id(source, cluster);
        let rds = snaps::rds(DR).await;
        let result = if cluster {
            rds.delete_db_cluster_snapshot()
                .db_cluster_snapshot_identifier(&copy)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| snaps::error_code(&e))
        } else {
            rds.delete_db_snapshot()
                .db_snapshot_identifier(&copy)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| snaps::error_code(&e))
        };
        if let Err(code) = result {
            println!("  snapshot: cannot delete {copy}: {code}");
        }
    }

    /// Every snapshot in both regions: `(region, cluster, id)`, manual ones only
    /// when `manual_only`.
    async fn snapshots(&self, manual_only: bool) -> Vec<(&'static str, bool, String)> {
        let mut all = Vec::new();
        for region in [SOURCE, DR] {
            let rds = snaps::rds(region).await;
            let mut pages = rds.describe_db_snapshots().into_paginator().send();
            while let Some(page) = pages.next().await {
                for s in page.expect("describe snapshots").db_snapshots() {
                    if !manual_only || s.snapshot_type() == Some("manual") {
                        let id = s.db_snapshot_identifier().unwrap_or_default();
                        all.push((region, false, id.to_string()));
                    }
                }
            }
            let mut pages = rds.describe_db_cluster_snapshots().into_paginator().send();
            while let Some(page) = pages.next().await {
                for s in page
                    .expect("describe cluster snapshots")
                    .db_cluster_snapshots()
                {
                    if !manual_only || s.snapshot_type() == Some("manual") {
                        let id = s.db_cluster_snapshot_identifier().unwrap_or_default();
                        all.push((region, true, id.to_string()));
                    }
                }
            }
        }
        all
    }

    async fn all_snapshots(&self) -> Vec<(&'static str, bool, String)> {
        self.snapshots(false).await
    }

    /// A snapshot-created sample for snapshot `id` of `db` instead of its own.
    fn created(&self, file: &str, id: &str, cluster: bool, serial: usize) -> Value {
        let kind = if cluster {
            "cluster-snapshot"
        } else {
            "snapshot"
        };
        let arn = format!("arn:aws:rds:{SOURCE}:{ACCOUNT}:{kind}:{id}");
        let mut event = sample(file);
        event["id"] = json!(uuid(&format!("snapshot-{serial}")));
        event["resources"] = json!([arn]);
        event["detail"]["SourceArn"] = json!(arn);
        event["detail"]["SourceIdentifier"] = json!(id);
        event
    }

    /// A person's manual snapshot of orders-db, new this iteration, and its created event.
    async fn manual(&self, serial: usize) -> (String, Value) {
        let id = format!("before-migration-{serial}");
        snaps::manual_snapshot(SOURCE, Db::Instance(ORDERS_DB), &id, &[("team", "orders")]).await;
        let event = self.created(MANUAL, &id, false, serial);
        (id, event)
    }

    /// An autopilot-named scheduled snapshot id of `db` for a time of its own per `serial`.
    fn scheduled(db: &str, serial: usize, cluster: bool) -> String {
        let time =
            Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap() + Duration::minutes(serial as i64);
        backup::scheduled_id(db, time, cluster)
    }

    /// A copy of a new manual snapshot, started by the handler in this process
    /// (untimed) and finished by RDS; the copy-finished event RDS then sends.
    async fn finished_copy(&self, serial: usize) -> Value {
        let (id, created) = self.manual(serial).await;
        let copy = backup::dr_copy_id(&id, false);
        snaps::hold_copies(&copy, true);
        if let Err(e) = self
            .snapshotter
            .handle(LambdaEvent::new(created, Context::default()))
            .await
        {
            println!("  snapshot: the copy a copy-finished event needs failed: {e:?}");
        }
        snaps::finish_snapshot(DR, &copy, false, "available");
        snaps::hold_copies(&copy, false);
        let copy_arn = format!("arn:aws:rds:{DR}:{ACCOUNT}:snapshot:{copy}");
        let mut event = sample(COPY_FINISHED);
        event["id"] = json!(uuid(&format!("copy-finished-{serial}")));
        event["resources"] = json!([copy_arn]);
        event["detail"]["SourceArn"] = json!(copy_arn);
        event["detail"]["SourceIdentifier"] = json!(copy);
        event["detail"]["Message"] = json!(format!(
            "Finished copy of snapshot {id} from region {SOURCE} in 21 minutes"
        ));
        event["detail"]["Tags"][tag::SOURCE] =
            json!(format!("arn:aws:rds:{SOURCE}:{ACCOUNT}:snapshot:{id}"));
        event
    }

    /// The drill instance restored from the drilled copy, as the check starts it,
    /// available, its endpoint the TLS PostgreSQL.
    async fn restored_drill(&self) -> Value {
        let instance = backup::drill_instance_id(ORDERS_DB);
        let copy = backup::dr_copy_id(DRILLED, false);
        let copy_arn = format!("arn:aws:rds:{DR}:{ACCOUNT}:snapshot:{copy}");
        let tags = [
            (tag::CREATED_BY, BY_SNAPSHOT.to_string()),
            (tag::REASON, reason::RESTORE_DRILL.to_string()),
            (tag::DB, ORDERS_DB.to_string()),
            (tag::SOURCE, copy_arn),
            (tag::DRILL_STARTED, stamp(Utc::now())),
        ];
        snaps::rds(DR)
            .await
            .restore_db_instance_from_db_snapshot()
            .db_instance_identifier(&instance)
            .db_snapshot_identifier(&copy)
            .db_instance_class("db.t4g.micro")
            .publicly_accessible(false)
            .multi_az(false)
            .deletion_protection(false)
            .set_tags(Some(tags.iter().map(|(k, v)| snaps::tag(k, v)).collect()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("restore the drill instance: {}", snaps::error_code(&e)));
        snaps::finish_instance(DR, &instance, "available");
        snaps::point_at(DR, &instance, self.pg_port);
        sample(DRILL)
    }

    /// Deletes what an iteration made: manual snapshots outside the baseline, and
    /// a drill instance the function left.
    async fn clean(&self) {
        for (region, cluster, id) in self.snapshots(true).await {
            if self.baseline.contains(&(region, cluster, id.clone())) {
                continue;
            }
            let rds = snaps::rds(region).await;
            let result = if cluster {
                rds.delete_db_cluster_snapshot()
                    .db_cluster_snapshot_identifier(&id)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| snaps::error_code(&e))
            } else {
                rds.delete_db_snapshot()
                    .db_snapshot_identifier(&id)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| snaps::error_code(&e))
            };
            if let Err(code) = result {
                println!("  snapshot: cannot delete {id} in {region}: {code}");
            }
        }
        let instance = backup::drill_instance_id(ORDERS_DB);
        if snaps::instance_status(DR, &instance).await.is_some() {
            let _ = snaps::rds(DR)
                .await
                .delete_db_instance()
                .db_instance_identifier(&instance)
                .skip_final_snapshot(true)
                .delete_automated_backups(true)
                .send()
                .await;
        }
    }
}

impl World for Snapshot {
    fn name(&self) -> &'static str {
        "snapshot"
    }

    fn env(&self) -> Vec<(String, String)> {
        vars(&[
            (
                autopilot_shared::config::TOPIC_ARN,
                self.stack.topic_arn.clone(),
            ),
            (cfg::DATABASES, self.databases.clone()),
            (cfg::DR_REGION, DR.to_string()),
            (cfg::DR_KMS_KEY, self.dr_key.clone()),
            (cfg::DB_CA_BUNDLE, self.ca.clone()),
        ])
    }

    fn cases(&self) -> Vec<Case> {
        vec![
            Case::fresh(MANUAL, "a new manual snapshot each time (before-migration-<n>)"),
            Case::fresh(
                NO_EVENT_ID,
                "a new snapshot each time (autopilot-orders-db-<time>)",
            ),
            Case::fresh(
                CLUSTER_MANUAL,
                "a new cluster snapshot each time (autopilot-orders-aurora-<time>)",
            ),
            Case::fresh(
                AUTOMATED,
                "its DR copy deleted before each time (RDS's automated snapshots cannot be deleted, so the sample's own is reused)",
            ),
            Case::fresh(
                CLUSTER_AUTOMATED,
                "its DR copy deleted before each time (the sample's automated snapshot reused)",
            ),
            Case::fresh(
                COPY_FINISHED,
                "a new copy each time, started untimed and finished by RDS",
            ),
            Case::fresh(
                DRILL,
                "a new drill instance each time, restored from the proved copy",
            ),
            Case::fresh(
                BACKUP,
                "a new schedule time each time, so new snapshots are due",
            ),
            Case::as_is(CHECK),
            Case::as_is("events/snapshot/db-snapshot-copy-finished-same-region.json"),
            Case::as_is("events/snapshot/db-snapshot-copy-cancelled.json"),
            Case::as_is("events/snapshot/db-snapshot-export-failed.json"),
            Case::as_is("events/snapshot/cluster-snapshot-export-failed.json"),
        ]
    }

    fn cold_case(&self) -> &'static str {
        MANUAL
    }

    async fn prepare(&mut self, case: &str, serial: usize) -> Vec<Step> {
        let event = match case {
            MANUAL => self.manual(serial).await.1,
            NO_EVENT_ID => {
                let id = Self::scheduled(ORDERS_DB, serial, false);
                snaps::manual_snapshot(
                    SOURCE,
                    Db::Instance(ORDERS_DB),
                    &id,
                    &[
                        (tag::CREATED_BY, BY_SNAPSHOT),
                        (tag::REASON, reason::SCHEDULED),
                        (tag::DB, ORDERS_DB),
                    ],
                )
                .await;
                self.created(NO_EVENT_ID, &id, false, serial)
            }
            CLUSTER_MANUAL => {
                let id = Self::scheduled(AURORA, serial, true);
                snaps::manual_snapshot(
                    SOURCE,
                    Db::Cluster(AURORA),
                    &id,
                    &[
                        (tag::CREATED_BY, BY_SNAPSHOT),
                        (tag::REASON, reason::SCHEDULED),
                        (tag::DB, AURORA),
                    ],
                )
                .await;
                self.created(CLUSTER_MANUAL, &id, true, serial)
            }
            AUTOMATED => {
                self.drop_copy(AUTOMATED_ID, false).await;
                sample(AUTOMATED)
            }
            CLUSTER_AUTOMATED => {
                self.drop_copy(CLUSTER_AUTOMATED_ID, true).await;
                sample(CLUSTER_AUTOMATED)
            }
            COPY_FINISHED => self.finished_copy(serial).await,
            DRILL => self.restored_drill().await,
            BACKUP => {
                let time = Utc.with_ymd_and_hms(2026, 11, 10, 3, 0, 0).unwrap()
                    + Duration::minutes(serial as i64);
                let mut event = sample(BACKUP);
                event["id"] = json!(uuid(&format!("backup-{serial}")));
                event["time"] = json!(time.format("%Y-%m-%dT%H:%M:%SZ").to_string());
                event
            }
            other => sample(other),
        };
        vec![Step::timed(case, event)]
    }

    async fn after(&mut self, _case: &str) {
        self.clean().await;
    }
}
