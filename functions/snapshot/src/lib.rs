//! snapshot: every database backup is safe in a second region, old ones are
//! pruned, a failure is never silent, and a backup is known to restore.
//!
//! Inputs ([`event`]): RDS snapshot events (created, copy finished, copy
//! cancelled, export failed), RDS instance events of drill instances, and the
//! `snapshot-backup` / `snapshot-check` scheduled tasks. Each path reads RDS in
//! both regions ([`observe`]), decides ([`plan`], pure) and acts ([`apply`]).
//! The `snapshot-heartbeat` task reads each configured database's snapshots and
//! the DR region's RDS and counts a heartbeat (`autopilot_shared::metrics`).

pub mod apply;
pub mod config;
pub mod drill;
pub mod error;
pub mod event;
pub mod model;
pub mod observe;
pub mod pages;
pub mod plan;

use crate::apply::Apply;
use crate::config::{Config, Kind};
use crate::event::{Input, What};
use crate::observe::Rds;
use crate::plan::{Budget, Ctx, Step, View};
use autopilot_shared::aws::{self, AwsCallError};
use autopilot_shared::backup::{self, tag};
use autopilot_shared::invocation::{self, record_resource, Failure, Outcome, Report};
use autopilot_shared::metrics::{self, name};
use autopilot_shared::postgres::Tls;
use autopilot_shared::Pager;
use aws_config::SdkConfig;
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use serde_json::Value;

pub use error::SnapshotError;

/// The name pages and logs carry.
pub const FUNCTION: &str = "autopilot-snapshot";

/// The heartbeat schedule's task (the `Heartbeat` schedule of SnapshotFunction in `template.yaml`).
pub const HEARTBEAT_TASK: &str = "snapshot-heartbeat";

/// The snapshot function: configuration and clients, built once per cold start.
pub struct Snapshotter {
    rds: Rds,
    sm: aws_sdk_secretsmanager::Client,
    pager: Pager,
    tls: Tls,
    config: Config,
}

impl Snapshotter {
    pub fn new(sdk: &SdkConfig, config: Config) -> Result<Self, String> {
        let sdk = aws::for_function(sdk, FUNCTION);
        let tls = Tls::load(config.db_ca_bundle.as_deref())
            .map_err(|e| format!("invalid configuration: {}: {e}", config::DB_CA_BUNDLE))?;
        let source = aws_sdk_rds::Client::new(&sdk);
        let dr = config.dr.as_ref().map(|dr| {
            let conf = aws_sdk_rds::config::Builder::from(&sdk)
                .region(aws_sdk_rds::config::Region::new(dr.region.clone()))
                .build();
            (dr.region.clone(), aws_sdk_rds::Client::from_conf(conf))
        });
        Ok(Self {
            rds: Rds {
                source_region: config.region.clone(),
                source,
                dr,
            },
            sm: aws_sdk_secretsmanager::Client::new(&sdk),
            pager: Pager::for_function(&sdk, &config.common, FUNCTION),
            tls,
            config,
        })
    }

    /// The Lambda handler.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Report, Failure> {
        let work = Box::pin(self.dispatch(event.payload));
        invocation::run(FUNCTION, &event.context, work).await
    }

    async fn dispatch(&self, payload: Value) -> Result<Report, SnapshotError> {
        if metrics::is_task(&payload, HEARTBEAT_TASK) {
            return Ok(Report {
                event: format!("Scheduled Task {HEARTBEAT_TASK}"),
                dry_run: self.config.common.dry_run,
                outcomes: self.heartbeat().await?,
            });
        }
        let detail_type = payload
            .get("detail-type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let input = event::parse(payload)?;
        let outcomes = match input {
            Input::Ignore { resource, reason } => vec![Outcome::new(resource, "ignore", reason)],
            Input::Snapshot {
                what,
                kind,
                region,
                id,
                event_id,
                message,
            } => {
                record_resource(&id);
                match what {
                    What::Created => self.on_created(kind, &region, &id).await?,
                    What::CopyFinished => self.on_copy_finished(kind, &region, &id).await?,
                    What::CopyCancelled => {
                        self.on_cancelled(kind, &region, &id, &event_id, &message)
                            .await?
                    }
                    What::ExportFailed => {
                        self.on_export_failed(kind, &region, &id, &event_id, &message)
                            .await?
                    }
                }
            }
            Input::Drill { region, instance } => {
                record_resource(&instance);
                self.on_drill(&region, &instance).await?
            }
            Input::Schedule { backup, time } => self.on_schedule(backup.then_some(time)).await?,
        };
        Ok(Report {
            event: detail_type,
            dry_run: self.config.common.dry_run,
            outcomes,
        })
    }

    /// The heartbeat: in the source region, one page of each configured
    /// database's snapshots (what every check reads first); in the DR region,
    /// the account's RDS quotas; the on-call topic (GetTopicAttributes, its one
    /// grant of its own). Writes nothing, pages no one; counts a heartbeat when
    /// every read answered.
    async fn heartbeat(&self) -> Result<Vec<Outcome>, SnapshotError> {
        record_resource(HEARTBEAT_TASK);
        let rds = &self.rds.source;
        let region = &self.rds.source_region;
        let mut checks = Vec::new();
        for db in &self.config.databases {
            // MaxRecords: 20 is the least either call takes.
            let result = match db.kind {
                Kind::Instance => rds
                    .describe_db_snapshots()
                    .db_instance_identifier(&db.id)
                    .max_records(20)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(AwsCallError::of("DescribeDBSnapshots", &db.id)),
                Kind::Cluster => rds
                    .describe_db_cluster_snapshots()
                    .db_cluster_identifier(&db.id)
                    .max_records(20)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(AwsCallError::of("DescribeDBClusterSnapshots", &db.id)),
            };
            checks.push((format!("RDS snapshots of {} in {region}", db.id), result));
        }
        if let Some((dr_region, dr)) = &self.rds.dr {
            let result = dr
                .describe_account_attributes()
                .send()
                .await
                .map(|_| ())
                .map_err(AwsCallError::of("DescribeAccountAttributes", dr_region));
            checks.push((format!("RDS in the DR region {dr_region}"), result));
        }
        checks.push(self.pager.check_topic().await);
        Ok(metrics::heartbeat(FUNCTION, checks))
    }

    fn apply(&self) -> Apply<'_> {
        Apply {
            rds: &self.rds,
            sm: &self.sm,
            pager: &self.pager,
            tls: &self.tls,
            config: &self.config,
            now: Utc::now(),
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            config: &self.config,
            now: Utc::now(),
        }
    }

    /// Every database read (drill instances only when `with_drill`); a database
    /// that cannot be read is paged and counted as failed, the others go on.
    async fn read_all(
        &self,
        with_drill: bool,
        outcomes: &mut Vec<Outcome>,
        errors: &mut Vec<SnapshotError>,
    ) -> Vec<View> {
        let mut views = Vec::new();
        for (db, read) in observe::views(&self.rds, &self.config, with_drill).await {
            match read {
                Ok(view) => views.push(view),
                Err(e) => self.unreadable(&db.id, e, outcomes, errors).await,
            }
        }
        views
    }

    async fn unreadable(
        &self,
        db: &str,
        e: AwsCallError,
        outcomes: &mut Vec<Outcome>,
        errors: &mut Vec<SnapshotError>,
    ) {
        let region = e
            .resource
            .rsplit(" in ")
            .next()
            .unwrap_or_default()
            .to_string();
        let (o, errs) = self
            .apply()
            .run(
                db,
                vec![Step::Page(Box::new(pages::call_failed(
                    db,
                    &region,
                    "reading its snapshots",
                    &e.to_string(),
                )))],
            )
            .await;
        outcomes.extend(o);
        errors.extend(errs);
        outcomes.push(Outcome::new(db, "failed", e.to_string()));
        errors.push(e.into());
    }

    fn dr_budget_limit(&self) -> usize {
        self.config.dr.as_ref().map_or(0, |d| d.copy_limit)
    }

    async fn dr_quotas(&self) -> [Option<model::Quota>; 2] {
        match self.rds.dr() {
            Some((region, client)) => observe::quotas(client, region).await,
            None => [None, None],
        }
    }

    fn finish(
        outcomes: Vec<Outcome>,
        mut errors: Vec<SnapshotError>,
    ) -> Result<Vec<Outcome>, SnapshotError> {
        match errors.len() {
            0 => Ok(outcomes),
            1 => {
                outcomes.iter().for_each(Outcome::log);
                Err(errors.remove(0))
            }
            _ => {
                outcomes.iter().for_each(Outcome::log);
                Err(SnapshotError::Several(errors))
            }
        }
    }

    /// A snapshot was created in the source region: copy it (and any deferred copy).
    async fn on_created(
        &self,
        kind: Kind,
        region: &str,
        id: &str,
    ) -> Result<Vec<Outcome>, SnapshotError> {
        if region != self.config.region {
            return Ok(vec![Outcome::new(
                id,
                "ignore",
                format!(
                    "created in {region}; snapshot copies from {} (copies are confirmed by their copy-finished event)",
                    self.config.region
                ),
            )]);
        }
        let Some(snap) = observe::snapshot(&self.rds.source, region, kind, id).await? else {
            return Ok(vec![Outcome::new(
                id,
                "ignore",
                format!("snapshot {id} is no longer in {region}"),
            )]);
        };
        if self.config.database(kind, &snap.db).is_none() {
            return Ok(vec![Outcome::new(
                id,
                "ignore",
                format!("{} {} is not a configured database", kind.as_str(), snap.db),
            )]);
        }
        let (mut outcomes, mut errors) = (Vec::new(), Vec::new());
        let views = self.read_all(false, &mut outcomes, &mut errors).await;
        let mut budget = Budget::new(self.dr_budget_limit(), &views, self.dr_quotas().await);
        let ctx = self.ctx();
        if let Some(view) = views
            .iter()
            .find(|v| v.db.kind == kind && v.db.id == snap.db)
        {
            let steps = plan::created(&ctx, view, id, &mut budget);
            let (o, e) = self.apply().run(&view.db.id, steps).await;
            outcomes.extend(o);
            errors.extend(e);
        }
        Self::finish(outcomes, errors)
    }

    /// A copy finished: confirm it, then re-drive copies deferred for any database.
    async fn on_copy_finished(
        &self,
        kind: Kind,
        region: &str,
        id: &str,
    ) -> Result<Vec<Outcome>, SnapshotError> {
        let Some(client) = self.rds.dr().filter(|(r, _)| *r == region).map(|(_, c)| c) else {
            return Ok(vec![Outcome::new(
                id,
                "ignore",
                format!("a copy in {region}, not the DR region"),
            )]);
        };
        let copy = observe::snapshot(client, region, kind, id).await?;
        let Some(copy) = copy.filter(model::Snap::is_copy) else {
            return Ok(vec![Outcome::new(
                id,
                "ignore",
                "not one of autopilot's DR copies",
            )]);
        };
        let (mut outcomes, mut errors) = (Vec::new(), Vec::new());
        let views = self.read_all(false, &mut outcomes, &mut errors).await;
        let mut budget = Budget::new(self.dr_budget_limit(), &views, self.dr_quotas().await);
        let ctx = self.ctx();
        for view in &views {
            let mut steps = Vec::new();
            if view.db.kind == copy.kind && view.db.id == copy.db {
                steps.extend(plan::verify(&ctx, view));
            }
            steps.extend(plan::copies(&ctx, view, &mut budget));
            let (o, e) = self.apply().run(&view.db.id, steps).await;
            outcomes.extend(o);
            errors.extend(e);
        }
        Self::finish(outcomes, errors)
    }

    async fn on_cancelled(
        &self,
        kind: Kind,
        region: &str,
        id: &str,
        event_id: &str,
        message: &str,
    ) -> Result<Vec<Outcome>, SnapshotError> {
        if !id.starts_with(backup::DR_PREFIX) {
            return Ok(vec![Outcome::new(
                id,
                "ignore",
                "not one of autopilot's DR copies",
            )]);
        }
        metrics::count(FUNCTION, name::COPIES_FAILED);
        let page = pages::copy_cancelled(&self.config, kind, region, id, event_id, message);
        let (outcomes, errors) = self.apply().run(id, vec![Step::Page(Box::new(page))]).await;
        Self::finish(outcomes, errors)
    }

    async fn on_export_failed(
        &self,
        kind: Kind,
        region: &str,
        id: &str,
        event_id: &str,
        message: &str,
    ) -> Result<Vec<Outcome>, SnapshotError> {
        let Some(client) = self.rds.client(region) else {
            return Ok(vec![Outcome::new(
                id,
                "ignore",
                format!("{region} is neither the source nor the DR region"),
            )]);
        };
        // Page only about the configured databases' snapshots; an unknown snapshot is not ours to report.
        let snap = observe::snapshot(client, region, kind, id).await?;
        let db = snap
            .as_ref()
            .map(|s| s.tag(tag::DB).unwrap_or(&s.db).to_string());
        match db.filter(|db| self.config.database(kind, db).is_some()) {
            None => Ok(vec![Outcome::new(
                id,
                "ignore",
                "not a snapshot of a configured database",
            )]),
            Some(db) => {
                let page = pages::export_failed(kind, region, id, event_id, message);
                let (outcomes, errors) = self
                    .apply()
                    .run(&db, vec![Step::Page(Box::new(page))])
                    .await;
                Self::finish(outcomes, errors)
            }
        }
    }

    /// An RDS event about a drill instance: follow the drill of its database.
    async fn on_drill(&self, region: &str, instance: &str) -> Result<Vec<Outcome>, SnapshotError> {
        if Some(region) != self.config.dr_region() {
            return Ok(vec![Outcome::new(
                instance,
                "ignore",
                format!("drills run in the DR region, not {region}"),
            )]);
        }
        let Some(db) = self
            .config
            .databases
            .iter()
            .find(|d| d.drill.is_some() && backup::drill_instance_id(&d.id) == instance)
        else {
            return Ok(vec![Outcome::new(
                instance,
                "ignore",
                "no configured database drills as this instance",
            )]);
        };
        let view = observe::view(&self.rds, db, true).await?;
        let steps = plan::drill(&self.ctx(), &view);
        let (outcomes, errors) = self.apply().run(&db.id, steps).await;
        Self::finish(outcomes, errors)
    }

    /// The schedule: backups (daily), then the check of every database, and quota warnings.
    async fn on_schedule(
        &self,
        backup_at: Option<chrono::DateTime<Utc>>,
    ) -> Result<Vec<Outcome>, SnapshotError> {
        let (mut outcomes, mut errors) = (Vec::new(), Vec::new());
        let views = self.read_all(true, &mut outcomes, &mut errors).await;
        let source_quotas = observe::quotas(&self.rds.source, &self.config.region).await;
        let dr_quotas = self.dr_quotas().await;
        let mut budget = Budget::new(self.dr_budget_limit(), &views, dr_quotas);
        let ctx = self.ctx();
        for view in &views {
            let steps = plan::check(&ctx, view, backup_at, &mut budget);
            let (o, e) = self.apply().run(&view.db.id, steps).await;
            outcomes.extend(o);
            errors.extend(e);
        }
        // Quota warnings once a day, with the backup, not every hour.
        let mut warnings = Vec::new();
        for kind in [Kind::Instance, Kind::Cluster] {
            if backup_at.is_none() || !self.config.databases.iter().any(|d| d.kind == kind) {
                continue;
            }
            warnings.extend(plan::quota(
                &ctx,
                &self.config.region,
                kind,
                source_quotas[kind as usize],
            ));
            if let Some(dr) = self.config.dr_region() {
                warnings.extend(plan::quota(&ctx, dr, kind, dr_quotas[kind as usize]));
            }
        }
        let (o, e) = self.apply().run(&self.config.region, warnings).await;
        outcomes.extend(o);
        errors.extend(e);
        Self::finish(outcomes, errors)
    }
}
