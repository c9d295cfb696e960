//! Carrying out a plan: the only code that writes. In dry-run every write is
//! skipped here, at this one seam, and pages still go out saying so.

use crate::config::{Config, Kind};
use crate::drill;
use crate::error::SnapshotError;
use crate::model::{DrillInstance, Snap};
use crate::observe::{is_code, Rds};
use crate::pages;
use crate::plan::Step;
use autopilot_shared::aws::AwsCallError;
use autopilot_shared::backup::{reason, stamp, tag, BY_SNAPSHOT};
use autopilot_shared::invocation::Outcome;
use autopilot_shared::metrics::{self, name};
use autopilot_shared::pager::Page;
use autopilot_shared::postgres::Tls;
use autopilot_shared::Pager;
use aws_sdk_rds::types::Tag;
use chrono::{DateTime, Utc};

/// RDS allows 50 tags per resource.
const TAG_LIMIT: usize = 50;

pub struct Apply<'a> {
    pub rds: &'a Rds,
    pub sm: &'a aws_sdk_secretsmanager::Client,
    pub pager: &'a Pager,
    pub tls: &'a Tls,
    pub config: &'a Config,
    pub now: DateTime<Utc>,
}

fn tag(key: &str, value: impl Into<String>) -> Tag {
    Tag::builder().key(key).value(value).build()
}

impl Apply<'_> {
    fn dry_run(&self) -> bool {
        self.config.common.dry_run
    }

    fn client(&self, region: &str) -> Result<&aws_sdk_rds::Client, SnapshotError> {
        self.rds.client(region).ok_or_else(|| {
            SnapshotError::Aws(AwsCallError::new(
                "RDS",
                region,
                "no client for this region (neither the function's region nor the DR region)",
            ))
        })
    }

    fn dr_region(&self) -> &str {
        self.config.dr_region().unwrap_or(&self.config.region)
    }

    /// Carries out `steps` for `db` in order. A failed step pages and is
    /// returned, and the rest still run: each is independent and safe to repeat.
    pub async fn run(&self, db: &str, steps: Vec<Step>) -> (Vec<Outcome>, Vec<SnapshotError>) {
        let mut outcomes = Vec::new();
        let mut errors = Vec::new();
        for step in steps {
            let (region, what) = describe(&step, self);
            match self.step(step).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(SnapshotError::Aws(e)) => {
                    let page = pages::call_failed(db, &region, &what, &e.to_string());
                    if let Err(pe) = self.send(&page).await {
                        errors.push(pe);
                    }
                    outcomes.push(Outcome::new(db, "failed", e.to_string()));
                    errors.push(SnapshotError::Aws(e));
                }
                Err(e) => {
                    outcomes.push(Outcome::new(db, "failed", e.to_string()));
                    errors.push(e);
                }
            }
        }
        (outcomes, errors)
    }

    async fn send(&self, page: &Page) -> Result<String, SnapshotError> {
        let mut page = page.clone();
        if self.dry_run() {
            page = page.fact("dry run", "nothing was changed");
        }
        Ok(self.pager.send(&page).await?)
    }

    fn would(&self, action: &str) -> String {
        if self.dry_run() {
            format!("would-{action}")
        } else {
            action.to_string()
        }
    }

    async fn step(&self, step: Step) -> Result<Outcome, SnapshotError> {
        let dry = self.dry_run();
        match step {
            Step::Note {
                resource,
                action,
                reason,
            } => Ok(Outcome::new(resource, action, reason)),
            Step::Defer { source, reason } => Ok(Outcome::new(source.label(), "defer", reason)),
            Step::Page(page) => {
                let id = self.send(&page).await?;
                Ok(Outcome::new(&page.component, "page", page.summary.clone())
                    .with("severity", page.severity.as_str())
                    .with("message_id", id))
            }
            Step::Create { kind, db, id } => {
                let outcome = Outcome::new(&db, &self.would("snapshot"), "the scheduled backup")
                    .with("snapshot", &id);
                if !dry {
                    self.create(kind, &db, &id).await?;
                }
                Ok(outcome)
            }
            Step::Copy {
                source,
                target,
                kms_key,
            } => {
                let outcome = Outcome::new(
                    source.label(),
                    &self.would("copy"),
                    format!("DR copy to {}", self.dr_region()),
                )
                .with("copy", &target);
                if !dry {
                    self.copy(&source, &target, kms_key.as_deref())
                        .await
                        .inspect_err(|_| metrics::count(crate::FUNCTION, name::COPIES_FAILED))?;
                    metrics::count(crate::FUNCTION, name::COPIES_STARTED);
                }
                Ok(outcome)
            }
            Step::Confirm { copy } => {
                if !dry {
                    self.add_tags(
                        &copy.region,
                        &copy.arn,
                        vec![tag(tag::CONFIRMED, stamp(self.now))],
                    )
                    .await?;
                }
                Ok(Outcome::new(
                    copy.label(),
                    &self.would("confirm"),
                    "the copy is available",
                ))
            }
            Step::Delete { snap, reason } => {
                if !snap.ours() {
                    // Defence in depth: the plan never asks this, and IAM denies it too.
                    return Ok(Outcome::new(
                        snap.label(),
                        "refuse",
                        "not autopilot's snapshot",
                    ));
                }
                if !dry {
                    self.delete(&snap).await?;
                    metrics::count(crate::FUNCTION, name::SNAPSHOTS_DELETED);
                }
                Ok(Outcome::new(snap.label(), &self.would("delete"), reason))
            }
            Step::Restore { db, copy, instance } => {
                let outcome = Outcome::new(
                    &db,
                    &self.would("restore"),
                    format!("restore drill of {}", copy.label()),
                )
                .with("instance", &instance);
                if !dry {
                    self.restore(&db, &copy, &instance).await?;
                }
                Ok(outcome)
            }
            Step::Check { instance, copy } => {
                if dry {
                    return Ok(Outcome::new(
                        &instance.id,
                        "would-check",
                        "the drill instance is available",
                    ));
                }
                self.check(&instance, copy.as_ref()).await
            }
            Step::RemoveDrill {
                instance,
                reason,
                failed_copy,
            } => {
                if !dry {
                    if let Some(copy) = failed_copy {
                        self.add_tags(
                            &copy.region,
                            &copy.arn,
                            vec![tag(tag::DRILL, format!("failed {}", stamp(self.now)))],
                        )
                        .await?;
                    }
                    self.remove_drill(&instance).await?;
                }
                Ok(Outcome::new(
                    &instance.id,
                    &self.would("delete-drill"),
                    reason,
                ))
            }
        }
    }

    async fn create(&self, kind: Kind, db: &str, id: &str) -> Result<(), SnapshotError> {
        let tags = vec![
            tag(tag::CREATED_BY, BY_SNAPSHOT),
            tag(tag::REASON, reason::SCHEDULED),
            tag(tag::DB, db),
        ];
        let rds = &self.rds.source;
        let resource = format!("{id} of {db} in {}", self.config.region);
        match kind {
            Kind::Instance => match rds
                .create_db_snapshot()
                .db_instance_identifier(db)
                .db_snapshot_identifier(id)
                .set_tags(Some(tags))
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e)
                    if is_code(
                        &e,
                        &["DBSnapshotAlreadyExists", "DBSnapshotAlreadyExistsFault"],
                    ) =>
                {
                    Ok(())
                }
                Err(e) => Err(AwsCallError::of("CreateDBSnapshot", resource)(e).into()),
            },
            Kind::Cluster => match rds
                .create_db_cluster_snapshot()
                .db_cluster_identifier(db)
                .db_cluster_snapshot_identifier(id)
                .set_tags(Some(tags))
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e)
                    if is_code(
                        &e,
                        &[
                            "DBClusterSnapshotAlreadyExistsFault",
                            "DBClusterSnapshotAlreadyExists",
                        ],
                    ) =>
                {
                    Ok(())
                }
                Err(e) => Err(AwsCallError::of("CreateDBClusterSnapshot", resource)(e).into()),
            },
        }
    }

    /// The copy's tags: the source's own (tags kept; `aws:` ones are AWS's to
    /// set) with autopilot's on top. Given explicitly rather than with
    /// CopyTags, so the result does not depend on how RDS merges the two.
    fn copy_tags(&self, source: &Snap) -> Vec<Tag> {
        let ours = vec![
            tag(tag::CREATED_BY, BY_SNAPSHOT),
            tag(tag::REASON, reason::DR_COPY),
            tag(tag::DB, &source.db),
            tag(tag::SOURCE, &source.arn),
            tag(tag::COPY_STARTED, stamp(self.now)),
        ];
        let mut tags: Vec<Tag> = source
            .tags
            .iter()
            .filter(|(k, _)| !k.starts_with("aws:") && !k.starts_with("autopilot:"))
            .take(TAG_LIMIT - ours.len())
            .map(|(k, v)| tag(k, v))
            .collect();
        tags.extend(ours);
        tags
    }

    async fn copy(
        &self,
        source: &Snap,
        target: &str,
        kms_key: Option<&str>,
    ) -> Result<(), SnapshotError> {
        let region = self.dr_region().to_string();
        let rds = self.client(&region)?;
        let resource = format!("{} to {target} in {region}", source.arn);
        let tags = Some(self.copy_tags(source));
        // The source is named by ARN: required across regions. No PreSignedUrl:
        // AWS uses it only between GovCloud regions.
        match source.kind {
            Kind::Instance => match rds
                .copy_db_snapshot()
                .source_db_snapshot_identifier(&source.arn)
                .target_db_snapshot_identifier(target)
                .set_kms_key_id(kms_key.map(str::to_string))
                .set_tags(tags)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e)
                    if is_code(
                        &e,
                        &["DBSnapshotAlreadyExists", "DBSnapshotAlreadyExistsFault"],
                    ) =>
                {
                    Ok(())
                }
                Err(e) => Err(AwsCallError::of("CopyDBSnapshot", resource)(e).into()),
            },
            Kind::Cluster => match rds
                .copy_db_cluster_snapshot()
                .source_db_cluster_snapshot_identifier(&source.arn)
                .target_db_cluster_snapshot_identifier(target)
                .set_kms_key_id(kms_key.map(str::to_string))
                .set_tags(tags)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e)
                    if is_code(
                        &e,
                        &[
                            "DBClusterSnapshotAlreadyExistsFault",
                            "DBClusterSnapshotAlreadyExists",
                        ],
                    ) =>
                {
                    Ok(())
                }
                Err(e) => Err(AwsCallError::of("CopyDBClusterSnapshot", resource)(e).into()),
            },
        }
    }

    async fn add_tags(&self, region: &str, arn: &str, tags: Vec<Tag>) -> Result<(), SnapshotError> {
        self.client(region)?
            .add_tags_to_resource()
            .resource_name(arn)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(AwsCallError::of("AddTagsToResource", arn))?;
        Ok(())
    }

    async fn delete(&self, snap: &Snap) -> Result<(), SnapshotError> {
        let rds = self.client(&snap.region)?;
        let resource = snap.label();
        match snap.kind {
            Kind::Instance => match rds
                .delete_db_snapshot()
                .db_snapshot_identifier(&snap.id)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if is_code(&e, &["DBSnapshotNotFound", "DBSnapshotNotFoundFault"]) => Ok(()),
                Err(e) => Err(AwsCallError::of("DeleteDBSnapshot", resource)(e).into()),
            },
            Kind::Cluster => match rds
                .delete_db_cluster_snapshot()
                .db_cluster_snapshot_identifier(&snap.id)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e)
                    if is_code(
                        &e,
                        &[
                            "DBClusterSnapshotNotFoundFault",
                            "DBClusterSnapshotNotFound",
                        ],
                    ) =>
                {
                    Ok(())
                }
                Err(e) => Err(AwsCallError::of("DeleteDBClusterSnapshot", resource)(e).into()),
            },
        }
    }

    async fn restore(&self, db: &str, copy: &Snap, instance: &str) -> Result<(), SnapshotError> {
        let rds = self.client(&copy.region)?;
        let drill = &self.config.drill;
        let result = rds
            .restore_db_instance_from_db_snapshot()
            .db_instance_identifier(instance)
            .db_snapshot_identifier(&copy.id)
            .db_instance_class(&drill.instance_class)
            .publicly_accessible(false)
            .multi_az(false)
            .deletion_protection(false)
            .auto_minor_version_upgrade(false)
            .copy_tags_to_snapshot(false)
            .set_db_subnet_group_name(drill.subnet_group.clone())
            .set_vpc_security_group_ids(
                (!drill.security_groups.is_empty()).then(|| drill.security_groups.clone()),
            )
            .set_tags(Some(vec![
                tag(tag::CREATED_BY, BY_SNAPSHOT),
                tag(tag::REASON, reason::RESTORE_DRILL),
                tag(tag::DB, db),
                tag(tag::SOURCE, &copy.arn),
                tag(tag::DRILL_STARTED, stamp(self.now)),
            ]))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Another invocation started it: the drill follows that one.
            Err(e)
                if is_code(
                    &e,
                    &["DBInstanceAlreadyExists", "DBInstanceAlreadyExistsFault"],
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(AwsCallError::of(
                "RestoreDBInstanceFromDBSnapshot",
                format!("{instance} from {}", copy.label()),
            )(e)
            .into()),
        }
    }

    async fn remove_drill(&self, instance: &DrillInstance) -> Result<(), SnapshotError> {
        if !instance.ours() {
            return Ok(());
        }
        let region = self.dr_region().to_string();
        let rds = self.client(&region)?;
        match rds
            .delete_db_instance()
            .db_instance_identifier(&instance.id)
            .skip_final_snapshot(true)
            .delete_automated_backups(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["DBInstanceNotFound", "DBInstanceNotFoundFault"]) => Ok(()),
            // Already being deleted.
            Err(e)
                if is_code(
                    &e,
                    &["InvalidDBInstanceState", "InvalidDBInstanceStateFault"],
                ) && aws_sdk_rds::error::ProvideErrorMetadata::message(&e)
                    .is_some_and(|m| m.contains("deleting")) =>
            {
                Ok(())
            }
            Err(e) => Err(AwsCallError::of(
                "DeleteDBInstance",
                format!("{} in {region}", instance.id),
            )(e)
            .into()),
        }
    }

    /// Runs the drill's check, pages the result, records it on the copy, and
    /// deletes the drill instance. The page goes before the record, so a crash
    /// in between repeats the check rather than losing its page.
    async fn check(
        &self,
        instance: &DrillInstance,
        copy: Option<&Snap>,
    ) -> Result<Outcome, SnapshotError> {
        let db = instance.tag(tag::DB).unwrap_or_default().to_string();
        let Some(drill_cfg) = self
            .config
            .database(Kind::Instance, &db)
            .and_then(|d| d.drill.as_ref())
        else {
            self.remove_drill(instance).await?;
            return Ok(Outcome::new(
                &instance.id,
                "delete-drill",
                format!("`{db}` no longer has a drill configured"),
            ));
        };
        let result = drill::check(self.sm, self.tls, drill_cfg, instance).await;
        let (page, passed, reason) = match &result {
            Ok(value) if *value >= drill_cfg.min => (
                pages::drill_passed(
                    self.config,
                    &db,
                    instance,
                    copy,
                    &drill_cfg.query,
                    *value,
                    self.now,
                ),
                true,
                format!("check returned {value} (at least {})", drill_cfg.min),
            ),
            Ok(value) => {
                let why = format!(
                    "the check `{}` returned {value}, below {}",
                    drill_cfg.query, drill_cfg.min
                );
                (
                    pages::drill_failed(self.config, &db, instance, copy, &why, self.now),
                    false,
                    why,
                )
            }
            Err(e) => (
                pages::drill_failed(self.config, &db, instance, copy, e, self.now),
                false,
                e.clone(),
            ),
        };
        self.send(&page).await?;
        if let Some(copy) = copy {
            let result = if passed { "passed" } else { "failed" };
            self.add_tags(
                &copy.region,
                &copy.arn,
                vec![tag(tag::DRILL, format!("{result} {}", stamp(self.now)))],
            )
            .await?;
        }
        self.remove_drill(instance).await?;
        Ok(Outcome::new(
            &instance.id,
            if passed {
                "drill-passed"
            } else {
                "drill-failed"
            },
            reason,
        )
        .with("copy", copy.map(|c| c.id.clone()).unwrap_or_default()))
    }
}

/// The region and words a failure page uses for `step`.
fn describe(step: &Step, apply: &Apply) -> (String, String) {
    let source = apply.config.region.clone();
    let dr = apply.dr_region().to_string();
    match step {
        Step::Create { id, .. } => (source, format!("snapshot {id}")),
        Step::Copy {
            source: s, target, ..
        } => (dr, format!("copy of {} to {target}", s.id)),
        Step::Confirm { copy } => (
            copy.region.clone(),
            format!("recording copy {} as confirmed", copy.id),
        ),
        Step::Delete { snap, .. } => (
            snap.region.clone(),
            format!("deleting {} (retention)", snap.id),
        ),
        Step::Restore { copy, instance, .. } => {
            (dr, format!("restore drill of {} as {instance}", copy.id))
        }
        Step::Check { instance, .. } => (dr, format!("restore drill check on {}", instance.id)),
        Step::RemoveDrill { instance, .. } => {
            (dr, format!("deleting drill instance {}", instance.id))
        }
        Step::Page(_) | Step::Note { .. } | Step::Defer { .. } => (source, "paging".into()),
    }
}
