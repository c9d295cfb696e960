//! What to do about one database, decided from what was read: no I/O, so every
//! branch is unit-tested. [`crate::apply`] carries the steps out in order.

use crate::config::{Config, Database, Kind};
use crate::model::{DrillInstance, Quota, Snap};
use crate::pages;
use autopilot_shared::backup::{self, tag};
use autopilot_shared::pager::Page;
use chrono::{DateTime, Duration, Utc};

/// One thing to do, with its reason.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Take a manual snapshot (the `snapshot-backup` schedule).
    Create {
        kind: Kind,
        db: String,
        id: String,
    },
    /// Copy `source` to the DR region as `target`.
    Copy {
        source: Snap,
        target: String,
        kms_key: Option<String>,
    },
    /// Not copied now (limit or quota); the next copy-finished event or check re-drives it.
    Defer {
        source: Snap,
        reason: String,
    },
    /// Record a finished copy.
    Confirm {
        copy: Snap,
    },
    /// Delete one of autopilot's snapshots.
    Delete {
        snap: Snap,
        reason: String,
    },
    /// Start a restore drill of `copy` as `instance`.
    Restore {
        db: String,
        copy: Snap,
        instance: String,
    },
    /// The drill instance is available: log in and run the check query.
    /// `copy` is the DR copy it was restored from, when still there.
    Check {
        instance: DrillInstance,
        copy: Option<Snap>,
    },
    /// Delete a drill instance (no final snapshot); when the drill failed,
    /// record that on `failed_copy` first, so the next drill waits the interval.
    RemoveDrill {
        instance: DrillInstance,
        reason: String,
        failed_copy: Option<Snap>,
    },
    Page(Box<Page>),
    /// Nothing to do, and why (logged as an outcome).
    Note {
        resource: String,
        action: &'static str,
        reason: String,
    },
}

fn note(resource: impl Into<String>, action: &'static str, reason: impl Into<String>) -> Step {
    Step::Note {
        resource: resource.into(),
        action,
        reason: reason.into(),
    }
}

fn page(p: Page) -> Step {
    Step::Page(Box::new(p))
}

/// What was read about one configured database.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub db: Database,
    /// Its snapshots in the source region (manual and automated).
    pub source: Vec<Snap>,
    /// Its snapshots in the DR region (autopilot's copies among them).
    pub dr: Vec<Snap>,
    /// Its drill instance, when one exists.
    pub drill: Option<DrillInstance>,
}

/// Copy slots left towards the DR region, and its manual-snapshot quotas.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub free: usize,
    pub limit: usize,
    pub dr_quota: [Option<Quota>; 2],
}

impl Budget {
    /// `limit` minus the copies in flight among `views`.
    pub fn new(limit: usize, views: &[View], dr_quota: [Option<Quota>; 2]) -> Self {
        let in_flight = views
            .iter()
            .flat_map(|v| &v.dr)
            .filter(|s| s.is_copy() && s.in_flight())
            .count();
        Self {
            free: limit.saturating_sub(in_flight),
            limit,
            dr_quota,
        }
    }

    fn quota(&mut self, kind: Kind) -> &mut Option<Quota> {
        &mut self.dr_quota[kind as usize]
    }
}

/// The time and settings a plan is made with.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub config: &'a Config,
    pub now: DateTime<Utc>,
}

impl Ctx<'_> {
    fn days(&self, n: u32) -> DateTime<Utc> {
        self.now - Duration::days(i64::from(n))
    }

    fn ago(&self, d: std::time::Duration) -> DateTime<Utc> {
        self.now - Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2))
    }
}

/// A snapshot was created: warn if it is unencrypted, then copy what is due
/// (this one, and any earlier copy deferred for this database).
pub fn created(ctx: &Ctx, view: &View, id: &str, budget: &mut Budget) -> Vec<Step> {
    let Some(snap) = view.source.iter().find(|s| s.id == id) else {
        return vec![note(
            id,
            "ignore",
            format!("snapshot {id} is no longer in {}", ctx.config.region),
        )];
    };
    let mut steps = Vec::new();
    if !snap.encrypted {
        steps.push(page(pages::unencrypted(ctx.config, snap)));
    }
    if !snap.available() {
        steps.push(note(
            &snap.id,
            "wait",
            format!(
                "RDS says {} is {}; the hourly check copies it once it is available",
                snap.id, snap.status
            ),
        ));
    }
    steps.extend(copies(ctx, view, budget));
    steps
}

/// The sources that should have a DR copy, newest first: every available
/// snapshot of the database that the DR retention would still keep.
fn due_for_copy<'v>(ctx: &Ctx, view: &'v View) -> Vec<&'v Snap> {
    let since = ctx.days(ctx.config.dr_retention_days);
    let mut due: Vec<&Snap> = view
        .source
        .iter()
        .filter(|s| s.available() && s.db == view.db.id && !s.is_copy())
        .collect();
    due.sort_by_key(|s| std::cmp::Reverse(s.created));
    due.into_iter()
        .enumerate()
        .filter(|(i, s)| *i == 0 || s.created.is_some_and(|c| c >= since))
        .map(|(_, s)| s)
        .collect()
}

/// Copies to start or defer for one database.
pub fn copies(ctx: &Ctx, view: &View, budget: &mut Budget) -> Vec<Step> {
    let Some(dr) = &ctx.config.dr else {
        return Vec::new();
    };
    let mut steps = Vec::new();
    for source in due_for_copy(ctx, view) {
        let target = backup::dr_copy_id(&source.id, source.kind == Kind::Cluster);
        if let Some(existing) = view.dr.iter().find(|s| s.id == target) {
            if existing.tag(tag::SOURCE) != Some(source.arn.as_str()) {
                steps.push(page(pages::collision(ctx.config, source, existing)));
            } else if existing.failed() {
                steps.push(page(pages::copy_failed(
                    ctx.config,
                    source,
                    &target,
                    &format!("the copy ended in status {}", existing.status),
                )));
                steps.push(Step::Delete {
                    snap: existing.clone(),
                    reason: "the copy failed; the next check copies again".into(),
                });
            }
            continue;
        }
        if source.encrypted && dr.kms_key.is_none() {
            steps.push(page(pages::no_kms_key(ctx.config, source)));
            continue;
        }
        let late = source.created.is_some_and(|c| c < ctx.ago(dr.copy_timeout));
        if budget.free == 0 {
            steps.push(Step::Defer {
                source: source.clone(),
                reason: format!(
                    "{} copies are in flight to {}, the limit",
                    budget.limit, dr.region
                ),
            });
            if late {
                steps.push(page(pages::deferred_late(ctx.config, source, budget.limit)));
            }
            continue;
        }
        if let Some(q) = budget.quota(source.kind) {
            if q.used >= q.max {
                let q = *q;
                steps.push(Step::Defer {
                    source: source.clone(),
                    reason: format!(
                        "{} holds {} of {} manual snapshots",
                        dr.region, q.used, q.max
                    ),
                });
                steps.push(page(pages::quota_full(
                    ctx.config,
                    &dr.region,
                    source.kind,
                    q,
                )));
                continue;
            }
            q.used += 1;
        }
        budget.free -= 1;
        // An unencrypted DB snapshot copied with a key comes out encrypted; an
        // unencrypted cluster snapshot cannot take one (CopyDBClusterSnapshot refuses).
        let kms_key = match (source.kind, source.encrypted) {
            (Kind::Cluster, false) => None,
            _ => dr.kms_key.clone(),
        };
        steps.push(Step::Copy {
            source: source.clone(),
            target,
            kms_key,
        });
    }
    steps
}

/// Copies that finished (confirm) or are late (page), for one database.
pub fn verify(ctx: &Ctx, view: &View) -> Vec<Step> {
    let Some(dr) = &ctx.config.dr else {
        return Vec::new();
    };
    let mut steps = Vec::new();
    for copy in view.dr.iter().filter(|s| s.is_copy()) {
        if copy.available() && copy.confirmed().is_none() {
            steps.push(Step::Confirm { copy: copy.clone() });
        } else if copy.in_flight() {
            let started = copy.copy_started().or(copy.created);
            if started.is_none_or(|t| t < ctx.ago(dr.copy_timeout)) {
                steps.push(page(pages::copy_late(ctx.config, copy, dr.copy_timeout)));
            }
        }
    }
    steps
}

/// Deletes autopilot's snapshots past retention in both regions, keeping the
/// newest `keep`, and never what a copy or a drill still needs.
pub fn retention(ctx: &Ctx, view: &View) -> Vec<Step> {
    let mut steps = Vec::new();
    let dr_on = ctx.config.dr.is_some();
    // In the source region, a snapshot whose copy is still running or not yet
    // made is kept: deleting it would cancel or lose the DR copy.
    // A source older than the DR retention is never copied, so it waits for nothing.
    let copy_window = ctx.days(ctx.config.dr_retention_days);
    let source_keep = |s: &Snap| -> Option<String> {
        if !dr_on || s.created.is_some_and(|c| c < copy_window) {
            return None;
        }
        let target = backup::dr_copy_id(&s.id, s.kind == Kind::Cluster);
        match view.dr.iter().find(|c| c.id == target) {
            Some(c) if c.available() => None,
            Some(c) => Some(format!("its DR copy {target} is {}", c.status)),
            None => Some(format!("it has no DR copy yet ({target})")),
        }
    };
    steps.extend(prune(
        ctx,
        &view.source,
        ctx.config.retention_days,
        &source_keep,
    ));
    // In the DR region: the newest copy a drill proved, and the copy a running
    // drill restores from, are kept whatever their age.
    let proven = view
        .dr
        .iter()
        .filter(|s| s.is_copy() && s.drill().is_some_and(|(passed, _)| passed))
        .max_by_key(|s| s.drill().map(|(_, t)| t))
        .map(|s| s.id.clone());
    let drilling = view
        .drill
        .as_ref()
        .and_then(|d| d.tag(tag::SOURCE))
        .map(str::to_string);
    let dr_keep = |s: &Snap| -> Option<String> {
        if proven.as_deref() == Some(s.id.as_str()) {
            Some("it is the newest copy a restore drill proved".into())
        } else if drilling.as_deref() == Some(s.arn.as_str()) {
            Some("a restore drill is running from it".into())
        } else {
            None
        }
    };
    steps.extend(prune(ctx, &view.dr, ctx.config.dr_retention_days, &dr_keep));
    steps
}

fn prune(
    ctx: &Ctx,
    snaps: &[Snap],
    days: u32,
    protect: &dyn Fn(&Snap) -> Option<String>,
) -> Vec<Step> {
    let cutoff = ctx.days(days);
    let mut ours: Vec<&Snap> = snaps.iter().filter(|s| s.ours() && s.available()).collect();
    ours.sort_by_key(|s| std::cmp::Reverse(s.created));
    let mut steps = Vec::new();
    for s in ours.into_iter().skip(ctx.config.keep) {
        let Some(created) = s.created else { continue };
        if created >= cutoff {
            continue;
        }
        match protect(s) {
            Some(why) => steps.push(note(
                s.label(),
                "keep",
                format!("past retention, kept: {why}"),
            )),
            None => steps.push(Step::Delete {
                snap: s.clone(),
                reason: format!(
                    "older than {days} days ({}) and not among the newest {} of autopilot's",
                    backup::stamp(created),
                    ctx.config.keep
                ),
            }),
        }
    }
    steps
}

/// The restore drill of one database: start one when due, follow the one running.
pub fn drill(ctx: &Ctx, view: &View) -> Vec<Step> {
    let (Some(_), Some(dr)) = (&view.db.drill, &ctx.config.dr) else {
        return Vec::new();
    };
    let db = &view.db.id;
    let name = backup::drill_instance_id(db);
    if let Some(inst) = &view.drill {
        if !inst.ours() {
            return vec![page(pages::drill_blocked(ctx.config, db, inst))];
        }
        let copy_of_drill = inst
            .tag(tag::SOURCE)
            .and_then(|arn| view.dr.iter().find(|s| s.arn == arn))
            .cloned();
        let started = inst.started();
        let overdue = started.is_none_or(|t| t < ctx.ago(ctx.config.drill.timeout));
        return match inst.status.as_str() {
            "deleting" => vec![note(
                &inst.id,
                "wait",
                "the drill instance is being deleted",
            )],
            _ if inst.broken() => vec![
                page(pages::drill_failed(
                    ctx.config,
                    db,
                    inst,
                    None,
                    &format!("the restored instance is {}", inst.status),
                    ctx.now,
                )),
                Step::RemoveDrill {
                    instance: inst.clone(),
                    reason: format!("restore ended in status {}", inst.status),
                    failed_copy: copy_of_drill.clone(),
                },
            ],
            _ if overdue => vec![
                page(pages::drill_failed(
                    ctx.config,
                    db,
                    inst,
                    None,
                    &format!(
                        "not finished within {} hours (status {})",
                        ctx.config.drill.timeout.as_secs() / 3600,
                        inst.status
                    ),
                    ctx.now,
                )),
                Step::RemoveDrill {
                    instance: inst.clone(),
                    reason: "the drill ran past its timeout".into(),
                    failed_copy: copy_of_drill.clone(),
                },
            ],
            "available" => vec![Step::Check {
                instance: inst.clone(),
                copy: copy_of_drill,
            }],
            other => vec![note(
                &inst.id,
                "wait",
                format!("the restore is {other}; its next RDS event or the check continues"),
            )],
        };
    }
    let copies: Vec<&Snap> = view
        .dr
        .iter()
        .filter(|s| s.is_copy() && s.kind == Kind::Instance)
        .collect();
    let last = copies
        .iter()
        .filter_map(|s| s.drill().map(|(_, t)| t))
        .max();
    if let Some(last) = last.filter(|t| *t > ctx.ago(ctx.config.drill.interval) && *t <= ctx.now) {
        return vec![note(
            db,
            "skip",
            format!(
                "last drill {}; the next is due after the interval",
                backup::stamp(last)
            ),
        )];
    }
    let newest = copies
        .iter()
        .filter(|s| s.available() && s.confirmed().is_some())
        .max_by_key(|s| s.created);
    match newest {
        Some(copy) => vec![Step::Restore {
            db: db.clone(),
            copy: (*copy).clone(),
            instance: name,
        }],
        None => vec![page(pages::nothing_to_drill(ctx.config, db, &dr.region))],
    }
}

/// The hourly check (and the daily backup before it) for one database.
pub fn check(
    ctx: &Ctx,
    view: &View,
    backup_at: Option<DateTime<Utc>>,
    budget: &mut Budget,
) -> Vec<Step> {
    let mut steps = Vec::new();
    if let Some(time) = backup_at.filter(|_| view.db.backup) {
        let id = backup::scheduled_id(&view.db.id, time, view.db.kind == Kind::Cluster);
        if view.source.iter().any(|s| s.id == id) {
            steps.push(note(&id, "skip", "this run's snapshot exists already"));
        } else {
            steps.push(Step::Create {
                kind: view.db.kind,
                db: view.db.id.clone(),
                id,
            });
        }
    }
    steps.extend(verify(ctx, view));
    steps.extend(copies(ctx, view, budget));
    steps.extend(retention(ctx, view));
    steps.extend(drill(ctx, view));
    steps
}

/// Quota warnings for one region's manual snapshots.
pub fn quota(ctx: &Ctx, region: &str, kind: Kind, quota: Option<Quota>) -> Option<Step> {
    let q = quota?;
    if q.max <= 0 {
        return None;
    }
    let percent = q.used.saturating_mul(100) / q.max;
    (percent >= i64::from(ctx.config.quota_warn_percent))
        .then(|| page(pages::quota_warning(ctx.config, region, kind, q)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{copy_of, now, ours, snap};
    use autopilot_shared::backup::{reason, stamp, BY_SNAPSHOT};
    use autopilot_shared::config::lookup_from;
    use std::collections::BTreeMap;

    const SRC: &str = "us-east-1";
    const DR: &str = "us-west-2";

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut pairs: Vec<(String, String)> = vec![
            ("AUTOPILOT_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:oncall"),
            ("AWS_REGION", SRC),
            ("AUTOPILOT_SNAPSHOT_DATABASES", r#"[{"instance":"orders-db","drill":{"secret":"arn:aws:secretsmanager:us-east-1:123456789012:secret:orders","query":"SELECT count(*) FROM orders"}}]"#),
            ("AUTOPILOT_SNAPSHOT_DR_REGION", DR),
            ("AUTOPILOT_SNAPSHOT_DR_KMS_KEY", "arn:aws:kms:us-west-2:123456789012:key/dr"),
            ("AUTOPILOT_SNAPSHOT_COPY_LIMIT", "2"),
            ("AUTOPILOT_SNAPSHOT_KEEP", "2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            pairs.retain(|(key, _)| key != k);
            pairs.push((k.to_string(), v.to_string()));
        }
        Config::from_lookup(lookup_from(pairs)).unwrap()
    }

    fn view(config: &Config, source: Vec<Snap>, dr: Vec<Snap>) -> View {
        View {
            db: config.databases[0].clone(),
            source,
            dr,
            drill: None,
        }
    }

    fn budget(config: &Config, views: &[View]) -> Budget {
        Budget::new(config.dr.as_ref().unwrap().copy_limit, views, [None, None])
    }

    fn kinds(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::Create { id, .. } => format!("create {id}"),
                Step::Copy { source, target, .. } => format!("copy {} -> {target}", source.id),
                Step::Defer { source, .. } => format!("defer {}", source.id),
                Step::Confirm { copy } => format!("confirm {}", copy.id),
                Step::Delete { snap, .. } => format!("delete {}", snap.label()),
                Step::Restore { copy, instance, .. } => {
                    format!("restore {} as {instance}", copy.id)
                }
                Step::Check { instance, .. } => format!("check {}", instance.id),
                Step::RemoveDrill { instance, .. } => format!("remove {}", instance.id),
                Step::Page(p) => format!("page {} {}", p.severity.as_str(), p.class),
                Step::Note {
                    action, resource, ..
                } => format!("{action} {resource}"),
            })
            .collect()
    }

    #[test]
    fn a_created_snapshot_is_copied_with_the_dr_key() {
        let c = config(&[]);
        let s = snap(SRC, "rds:orders-db-2026-11-24-03-10", 1);
        let v = view(&c, vec![s.clone()], vec![]);
        let mut b = budget(&c, std::slice::from_ref(&v));
        let steps = created(
            &Ctx {
                config: &c,
                now: now(),
            },
            &v,
            &s.id,
            &mut b,
        );
        assert_eq!(kinds(&steps), ["copy rds:orders-db-2026-11-24-03-10 -> autopilot-dr-rds-orders-db-2026-11-24-03-10"]);
        let Step::Copy { kms_key, .. } = &steps[0] else {
            panic!()
        };
        assert_eq!(
            kms_key.as_deref(),
            Some("arn:aws:kms:us-west-2:123456789012:key/dr")
        );
        assert_eq!(b.free, 1);
    }

    #[test]
    fn a_duplicate_event_copies_nothing_twice() {
        let c = config(&[]);
        let s = snap(SRC, "manual-1", 1);
        let mut inflight = copy_of(&s, DR, 0);
        inflight.status = "copying".into();
        inflight.tags.remove(tag::CONFIRMED);
        let v = view(&c, vec![s.clone()], vec![inflight]);
        let mut b = budget(&c, std::slice::from_ref(&v));
        assert_eq!(b.free, 1, "the copy in flight takes a slot");
        assert!(kinds(&created(
            &Ctx {
                config: &c,
                now: now()
            },
            &v,
            "manual-1",
            &mut b
        ))
        .is_empty());
    }

    #[test]
    fn past_the_limit_copies_are_deferred_newest_first_and_late_ones_page() {
        let c = config(&[("AUTOPILOT_SNAPSHOT_COPY_TIMEOUT_HOURS", "6")]);
        let snaps = vec![
            snap(SRC, "s-old", 30),
            snap(SRC, "s-new", 1),
            snap(SRC, "s-mid", 2),
        ];
        let v = view(&c, snaps, vec![]);
        let mut b = budget(&c, std::slice::from_ref(&v));
        let steps = copies(
            &Ctx {
                config: &c,
                now: now(),
            },
            &v,
            &mut b,
        );
        assert_eq!(
            kinds(&steps),
            [
                "copy s-new -> autopilot-dr-s-new",
                "copy s-mid -> autopilot-dr-s-mid",
                "defer s-old",
                "page warning snapshot.copy-deferred"
            ]
        );
        assert_eq!(b.free, 0);
    }

    #[test]
    fn the_dr_quota_defers_and_pages() {
        let c = config(&[]);
        let v = view(&c, vec![snap(SRC, "s1", 1)], vec![]);
        let mut b = Budget::new(
            5,
            std::slice::from_ref(&v),
            [
                Some(Quota {
                    used: 100,
                    max: 100,
                }),
                None,
            ],
        );
        let steps = copies(
            &Ctx {
                config: &c,
                now: now(),
            },
            &v,
            &mut b,
        );
        assert_eq!(
            kinds(&steps),
            ["defer s1", "page critical snapshot.quota-full"]
        );
    }

    #[test]
    fn an_encrypted_source_without_a_dr_key_pages_instead_of_copying() {
        let c = config(&[("AUTOPILOT_SNAPSHOT_DR_KMS_KEY", "")]);
        let v = view(&c, vec![snap(SRC, "s1", 1)], vec![]);
        let mut b = budget(&c, std::slice::from_ref(&v));
        assert_eq!(
            kinds(&copies(
                &Ctx {
                    config: &c,
                    now: now()
                },
                &v,
                &mut b
            )),
            ["page critical snapshot.no-kms-key"]
        );
        let mut plain = snap(SRC, "s2", 1);
        plain.encrypted = false;
        let v = view(&c, vec![plain], vec![]);
        assert_eq!(
            kinds(&copies(
                &Ctx {
                    config: &c,
                    now: now()
                },
                &v,
                &mut b
            )),
            ["copy s2 -> autopilot-dr-s2"]
        );
    }

    #[test]
    fn an_unencrypted_snapshot_pages_a_warning_and_is_still_copied() {
        let c = config(&[]);
        let mut s = snap(SRC, "s1", 1);
        s.encrypted = false;
        let v = view(&c, vec![s], vec![]);
        let mut b = budget(&c, std::slice::from_ref(&v));
        assert_eq!(
            kinds(&created(
                &Ctx {
                    config: &c,
                    now: now()
                },
                &v,
                "s1",
                &mut b
            )),
            [
                "page warning snapshot.unencrypted",
                "copy s1 -> autopilot-dr-s1"
            ]
        );
    }

    #[test]
    fn a_copy_with_our_name_but_another_source_is_a_collision_not_done() {
        let c = config(&[]);
        let s = snap(SRC, "s1", 1);
        let mut other = copy_of(&snap(SRC, "elsewhere", 1), DR, 1);
        other.id = backup::dr_copy_id("s1", false);
        let v = view(&c, vec![s], vec![other]);
        let mut b = budget(&c, std::slice::from_ref(&v));
        assert_eq!(
            kinds(&copies(
                &Ctx {
                    config: &c,
                    now: now()
                },
                &v,
                &mut b
            )),
            ["page critical snapshot.copy-collision"]
        );
    }

    #[test]
    fn a_failed_copy_pages_and_is_deleted_for_the_next_check() {
        let c = config(&[]);
        let s = snap(SRC, "s1", 1);
        let mut failed = copy_of(&s, DR, 1);
        failed.status = "failed".into();
        let v = view(&c, vec![s], vec![failed]);
        let mut b = budget(&c, std::slice::from_ref(&v));
        assert_eq!(
            kinds(&copies(
                &Ctx {
                    config: &c,
                    now: now()
                },
                &v,
                &mut b
            )),
            [
                "page critical snapshot.copy-failed",
                "delete autopilot-dr-s1 (us-west-2)"
            ]
        );
    }

    #[test]
    fn verify_confirms_finished_copies_and_pages_late_ones() {
        let c = config(&[]);
        let a = snap(SRC, "a", 10);
        let b_ = snap(SRC, "b", 10);
        let mut done = copy_of(&a, DR, 9);
        done.tags.remove(tag::CONFIRMED);
        let mut late = copy_of(&b_, DR, 9);
        late.status = "copying".into();
        late.tags.remove(tag::CONFIRMED);
        let v = view(&c, vec![a, b_], vec![done, late]);
        assert_eq!(
            kinds(&verify(
                &Ctx {
                    config: &c,
                    now: now()
                },
                &v
            )),
            ["confirm autopilot-dr-a", "page critical snapshot.copy-late"]
        );
    }

    #[test]
    fn retention_keeps_n_and_never_touches_foreign_or_automated() {
        let no_dr = [
            ("AUTOPILOT_SNAPSHOT_DR_REGION", ""),
            (
                "AUTOPILOT_SNAPSHOT_DATABASES",
                r#"[{"instance":"orders-db"}]"#,
            ),
        ];
        let c = config(&[&no_dr[..], &[("AUTOPILOT_SNAPSHOT_KEEP", "2")]].concat());
        let mut foreign_with_our_tag = snap(SRC, "nightly-1", 24 * 30);
        foreign_with_our_tag
            .tags
            .insert(tag::CREATED_BY.into(), BY_SNAPSHOT.into());
        let v = view(
            &c,
            vec![
                ours(SRC, "autopilot-orders-db-1", 24 * 20),
                ours(SRC, "autopilot-orders-db-2", 24 * 10),
                ours(SRC, "autopilot-orders-db-3", 24 * 9),
                ours(SRC, "autopilot-orders-db-4", 24 * 8),
                snap(SRC, "rds:orders-db-old", 24 * 30),
                foreign_with_our_tag,
                snap(SRC, "before-migration", 24 * 60),
            ],
            vec![],
        );
        assert_eq!(
            kinds(&retention(
                &Ctx {
                    config: &c,
                    now: now()
                },
                &v
            )),
            [
                "delete autopilot-orders-db-2 (us-east-1)",
                "delete autopilot-orders-db-1 (us-east-1)"
            ]
        );
        // Keep-N holds even when every one is old.
        let c3 = config(&[&no_dr[..], &[("AUTOPILOT_SNAPSHOT_KEEP", "5")]].concat());
        assert!(kinds(&retention(
            &Ctx {
                config: &c3,
                now: now()
            },
            &v
        ))
        .is_empty());
    }

    #[test]
    fn retention_keeps_a_source_until_its_copy_is_done_and_the_proven_copy() {
        let c = config(&[
            ("AUTOPILOT_SNAPSHOT_KEEP", "1"),
            ("AUTOPILOT_SNAPSHOT_DR_RETENTION_DAYS", "30"),
        ]);
        let old1 = ours(SRC, "autopilot-orders-db-1", 24 * 40);
        let old2 = ours(SRC, "autopilot-orders-db-2", 24 * 19);
        let new = ours(SRC, "autopilot-orders-db-3", 1);
        let mut copying = copy_of(&old2, DR, 1);
        copying.status = "copying".into();
        let mut proven = copy_of(&old1, DR, 24 * 40);
        proven.tags.insert(
            tag::DRILL.into(),
            format!("passed {}", stamp(now() - Duration::days(19))),
        );
        let new_copy = copy_of(&new, DR, 1);
        let v = view(&c, vec![old1, old2, new], vec![proven, copying, new_copy]);
        assert_eq!(
            kinds(&retention(
                &Ctx {
                    config: &c,
                    now: now()
                },
                &v
            )),
            [
                "keep autopilot-orders-db-2 (us-east-1)",
                "delete autopilot-orders-db-1 (us-east-1)",
                "keep autopilot-dr-autopilot-orders-db-1 (us-west-2)"
            ]
        );
    }

    fn drill_instance(status: &str, age_hours: i64) -> DrillInstance {
        let mut tags = BTreeMap::new();
        tags.insert(tag::CREATED_BY.to_string(), BY_SNAPSHOT.to_string());
        tags.insert(tag::REASON.to_string(), reason::RESTORE_DRILL.to_string());
        tags.insert(
            tag::DRILL_STARTED.to_string(),
            stamp(now() - Duration::hours(age_hours)),
        );
        DrillInstance {
            id: "autopilot-drill-orders-db".into(),
            arn: "arn:aws:rds:us-west-2:123456789012:db:autopilot-drill-orders-db".into(),
            status: status.into(),
            created: Some(now() - Duration::hours(age_hours)),
            endpoint: Some(("127.0.0.1".into(), 5432)),
            publicly_accessible: false,
            tags,
        }
    }

    #[test]
    fn a_drill_starts_from_the_newest_confirmed_copy_when_due() {
        let c = config(&[]);
        let a = snap(SRC, "a", 30);
        let b_ = snap(SRC, "b", 5);
        let mut unconfirmed = copy_of(&snap(SRC, "c", 1), DR, 1);
        unconfirmed.tags.remove(tag::CONFIRMED);
        let mut old = copy_of(&a, DR, 29);
        old.tags.insert(
            tag::DRILL.into(),
            format!("passed {}", stamp(now() - Duration::days(8))),
        );
        let v = view(
            &c,
            vec![],
            vec![old.clone(), copy_of(&b_, DR, 4), unconfirmed],
        );
        let ctx = Ctx {
            config: &c,
            now: now(),
        };
        assert_eq!(
            kinds(&drill(&ctx, &v)),
            ["restore autopilot-dr-b as autopilot-drill-orders-db"]
        );
        // Not due yet.
        old.tags.insert(
            tag::DRILL.into(),
            format!("passed {}", stamp(now() - Duration::days(2))),
        );
        let v = view(&c, vec![], vec![old, copy_of(&b_, DR, 4)]);
        assert_eq!(kinds(&drill(&ctx, &v)), ["skip orders-db"]);
        // Nothing to drill.
        let v = view(&c, vec![], vec![]);
        assert_eq!(
            kinds(&drill(&ctx, &v)),
            ["page warning snapshot.drill-no-copy"]
        );
    }

    #[test]
    fn a_drill_in_progress_is_followed_and_cleaned_up() {
        let c = config(&[]);
        let ctx = Ctx {
            config: &c,
            now: now(),
        };
        let with = |inst: DrillInstance| View {
            drill: Some(inst),
            ..view(&c, vec![], vec![])
        };
        assert_eq!(
            kinds(&drill(&ctx, &with(drill_instance("creating", 1)))),
            ["wait autopilot-drill-orders-db"]
        );
        assert_eq!(
            kinds(&drill(&ctx, &with(drill_instance("available", 1)))),
            ["check autopilot-drill-orders-db"]
        );
        assert_eq!(
            kinds(&drill(&ctx, &with(drill_instance("creating", 5)))),
            [
                "page critical snapshot.drill-failed",
                "remove autopilot-drill-orders-db"
            ],
            "a drill left half-done past its timeout"
        );
        assert_eq!(
            kinds(&drill(
                &ctx,
                &with(drill_instance("incompatible-restore", 1))
            )),
            [
                "page critical snapshot.drill-failed",
                "remove autopilot-drill-orders-db"
            ]
        );
        assert_eq!(
            kinds(&drill(&ctx, &with(drill_instance("deleting", 9)))),
            ["wait autopilot-drill-orders-db"]
        );
        let mut foreign = drill_instance("available", 1);
        foreign.tags.clear();
        assert_eq!(
            kinds(&drill(&ctx, &with(foreign))),
            ["page warning snapshot.drill-blocked"]
        );
    }

    #[test]
    fn the_backup_takes_this_runs_snapshot_once() {
        let c = config(&[]);
        let ctx = Ctx {
            config: &c,
            now: now(),
        };
        let v = view(&c, vec![], vec![]);
        let mut b = budget(&c, std::slice::from_ref(&v));
        let steps = check(&ctx, &v, Some(now()), &mut b);
        assert_eq!(kinds(&steps)[0], "create autopilot-orders-db-202611240400");
        let v = view(
            &c,
            vec![ours(SRC, "autopilot-orders-db-202611240400", 0)],
            vec![],
        );
        assert_eq!(
            kinds(&check(&ctx, &v, Some(now()), &mut b))[0],
            "skip autopilot-orders-db-202611240400"
        );
    }

    #[test]
    fn quota_warns_at_the_threshold() {
        let c = config(&[]);
        let ctx = Ctx {
            config: &c,
            now: now(),
        };
        assert!(quota(
            &ctx,
            SRC,
            Kind::Instance,
            Some(Quota { used: 79, max: 100 })
        )
        .is_none());
        assert!(quota(
            &ctx,
            SRC,
            Kind::Instance,
            Some(Quota { used: 80, max: 100 })
        )
        .is_some());
        assert!(quota(&ctx, SRC, Kind::Instance, None).is_none());
    }
}
