//! snapshot's world in the soak: an encrypted instance, copied to the DR region,
//! over simulated days. Each day, time passes (every snapshot of the instance in
//! both regions, and every copy, gets a day older), the daily backup's schedule
//! runs, RDS says a snapshot was created (autopilot's own, now and then a
//! person's, now and then an automated one), and the hourly check runs four
//! times. Events reach snapshot one at a time (the template reserves its
//! concurrency to 1), at least once: some two or three times, some late, after
//! later ones; a failed invocation is retried by Lambda later. The guardrails are
//! the template's defaults (keep 3, 7 days in both regions).
//!
//! Checked after every delivery: nothing was deleted that retention keeps (a
//! snapshot that is not autopilot's, not manual, not available, among the newest
//! 3 of autopilot's in its region, or not past the retention days); no source has
//! two DR copies; after a delivery that answered Ok, every snapshot due a copy
//! (the newest, and any within the DR retention) has one. At the end, after one
//! healed hourly check: every one of those copies is there, available and
//! confirmed, and nothing that is not autopilot's was ever deleted.

use crate::{Rng, Soak};
use autopilot_shared::backup::{self, tag};
use autopilot_shared::{Failure, Report};
use autopilot_tests::faults::FaultProxy;
use autopilot_tests::snapshots::{self as rds, Db, Snap, DR, SOURCE};
use autopilot_tests::worlds::SnapshotWorld;
use autopilot_tests::{root, rotation, template};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

const DAY: i64 = 86_400;
const BACKUP: &str = "snapshot backup";
const CREATED: &str = "snapshot created";
const CHECK: &str = "snapshot check";

struct Pending {
    event: Value,
    kind: &'static str,
    attempt: usize,
    duplicate: bool,
}

struct Snapshots {
    soak: Arc<Soak>,
    name: String,
    w: SnapshotWorld,
    proxy: FaultProxy,
    function: snapshot::Snapshotter,
    rng: Rng,
    keep: usize,
    /// Retention days in the source and the DR region.
    days: [i64; 2],
    pending: VecDeque<Pending>,
    /// Snapshots whose creation RDS has announced.
    announced: BTreeSet<String>,
    /// Snapshots that are not autopilot's: never to be deleted.
    foreign: BTreeSet<String>,
    /// Both regions as the last delivery left them, while nothing else changed
    /// them (the harness's reads are the emulator's time too).
    seen: Option<[Vec<Snap>; 2]>,
    delivered: usize,
}

pub async fn run(soak: Arc<Soak>, name: String, target: usize) {
    let w = SnapshotWorld::new(&name).await;
    let config = w.config(&[]);
    let proxy = soak.proxy(&name);
    let function = w.snapshotter(&proxy.sdk_config().await, &[]);
    let mut s = Snapshots {
        rng: Rng::new(soak.settings.seed, &name),
        keep: config.keep,
        days: [
            i64::from(config.retention_days),
            i64::from(config.dr_retention_days),
        ],
        soak,
        name,
        w,
        proxy,
        function,
        pending: VecDeque::new(),
        announced: BTreeSet::new(),
        foreign: BTreeSet::new(),
        seen: None,
        delivered: 0,
    };
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut day = 0;
    while s.delivered < target {
        if day > 0 {
            s.age().await;
        }
        let at = |hours: i64| {
            (start
                + chrono::Duration::seconds(day * DAY + hours * 3600 + 1800 * i64::from(hours > 3)))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        let backup = template::scheduled_event("SnapshotFunction", "DailyBackup", &at(3));
        s.enqueue(backup, BACKUP);
        s.deliver_some().await;
        if s.rng.chance(0.15) {
            let id = format!("{}-manual-d{day}", s.w.stack.prefix);
            s.w.manual(&id, &[]).await;
            s.foreign.insert(id);
            s.seen = None;
        }
        if s.rng.chance(0.15) {
            let date = (start + chrono::Duration::days(day)).format("%Y-%m-%d");
            let id = format!("rds:{}-{date}-03-10", s.w.db);
            rds::automated_snapshot(
                SOURCE,
                Db::Instance(&s.w.db),
                &id,
                chrono::Utc::now().timestamp(),
            );
            s.foreign.insert(id);
            s.seen = None;
        }
        s.announce().await;
        for hour in 4..8 {
            let check = template::scheduled_event("SnapshotFunction", "HourlyCheck", &at(hour));
            s.enqueue(check, CHECK);
            s.deliver_some().await;
        }
        day += 1;
    }
    while let Some(p) = s.pending.pop_front() {
        s.deliver(p).await;
    }
    s.converge().await;
}

impl Snapshots {
    fn enqueue(&mut self, event: Value, kind: &'static str) {
        for copy in 0..self.rng.copies() {
            self.pending.push_back(Pending {
                event: event.clone(),
                kind,
                attempt: 1,
                duplicate: copy > 0,
            });
        }
    }

    /// Delivers what is pending, but leaves some for later (late deliveries).
    async fn deliver_some(&mut self) {
        let mut held = VecDeque::new();
        while let Some(p) = self.pending.pop_front() {
            if self.rng.chance(0.85) {
                self.deliver(p).await;
                self.announce().await;
            } else {
                held.push_back(p);
            }
        }
        self.pending = held;
    }

    /// RDS's creation event of every source snapshot not announced yet, built
    /// from the samples in events/snapshot/.
    async fn announce(&mut self) {
        let source = match &self.seen {
            Some([source, _]) => source.clone(),
            None => rds::snapshots(SOURCE, Db::Instance(&self.w.db)).await,
        };
        for snap in source {
            if !self.announced.insert(snap.id.clone()) {
                continue;
            }
            let file = if snap.kind == "automated" {
                "db-snapshot-automated-created.json"
            } else {
                "db-snapshot-manual-created.json"
            };
            let path = root().join("events/snapshot").join(file);
            let text = std::fs::read_to_string(&path).expect("a sample event");
            let mut event: Value = serde_json::from_str(&text).expect("a JSON sample");
            let now = chrono::Utc::now();
            event["id"] = json!(rotation::token());
            event["time"] = json!(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            event["resources"] = json!([snap.arn]);
            let detail = &mut event["detail"];
            detail["SourceArn"] = json!(snap.arn);
            detail["SourceIdentifier"] = json!(snap.id);
            detail["Date"] = json!(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            self.enqueue(event, CREATED);
        }
    }

    /// A day passes: every snapshot and copy of the instance is a day older.
    async fn age(&mut self) {
        self.seen = None;
        for region in [SOURCE, DR] {
            for snap in rds::snapshots(region, Db::Instance(&self.w.db)).await {
                rds::set_snapshot_time(region, &snap.id, false, snap.created - DAY);
            }
        }
    }

    async fn both(&mut self) -> [Vec<Snap>; 2] {
        if let Some(seen) = self.seen.take() {
            return seen;
        }
        [
            rds::snapshots(SOURCE, Db::Instance(&self.w.db)).await,
            rds::snapshots(DR, Db::Instance(&self.w.db)).await,
        ]
    }

    async fn invoke(&self, event: &Value, retry: bool) -> Result<Report, Failure> {
        self.soak
            .invoke(retry, async || {
                self.function.handle(crate::event(event)).await
            })
            .await
    }

    async fn deliver(&mut self, p: Pending) {
        if p.attempt == 1 {
            self.soak.delivery(p.kind, p.duplicate);
            self.delivered += 1;
        }
        let before = self.both().await;
        let answer = self.invoke(&p.event, p.attempt > 1).await;
        self.soak.tally(&self.name, &self.proxy);
        let after = self.both().await;
        self.check(&before, &after, &answer, false);
        self.seen = Some(after);
        if self
            .soak
            .settle(&self.name, p.kind, &p.event, p.attempt, &answer)
        {
            // Lambda retries it later; other events go first.
            self.pending.push_back(Pending {
                attempt: p.attempt + 1,
                ..p
            });
        }
    }

    /// What retention may delete in `region` (0 source, 1 DR), from what it saw:
    /// autopilot's, manual, available, past the newest `keep`, older than the days.
    fn deletable(&self, region: usize, snaps: &[Snap], now: i64) -> BTreeSet<String> {
        let mut ours: Vec<&Snap> = snaps
            .iter()
            .filter(|s| {
                s.kind == "manual"
                    && s.status == "available"
                    && backup::is_ours(&s.id, s.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            })
            .collect();
        ours.sort_by_key(|s| std::cmp::Reverse(s.created));
        ours.into_iter()
            .skip(self.keep)
            .filter(|s| s.created < now - self.days[region] * DAY)
            .map(|s| s.id.clone())
            .collect()
    }

    fn check(
        &self,
        before: &[Vec<Snap>; 2],
        after: &[Vec<Snap>; 2],
        answer: &Result<Report, Failure>,
        end: bool,
    ) {
        let now = chrono::Utc::now().timestamp();
        let (soak, name) = (&self.soak, self.name.as_str());
        for region in 0..2 {
            let left: BTreeSet<&str> = after[region].iter().map(|s| s.id.as_str()).collect();
            let allowed = self.deletable(region, &before[region], now);
            for gone in before[region]
                .iter()
                .filter(|s| !left.contains(s.id.as_str()))
            {
                if !allowed.contains(&gone.id) || self.foreign.contains(&gone.id) {
                    soak.broken(
                        name,
                        format!(
                            "{} deleted {} ({}, created {} days ago), which retention keeps",
                            ["the source region", "the DR region"][region],
                            gone.id,
                            gone.kind,
                            (now - gone.created) / DAY
                        ),
                    );
                }
            }
        }
        let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
        for copy in &after[1] {
            if let Some(source) = copy.tags.get(tag::SOURCE) {
                *copies.entry(source.as_str()).or_default() += 1;
            }
        }
        for (source, n) in copies.iter().filter(|(_, n)| **n > 1) {
            soak.duplicated(name, format!("{n} DR copies of {source}"));
        }
        if answer.is_err() {
            return;
        }
        // Every source due a copy has one: the newest, and any within the DR
        // retention. A snapshot this delivery made (the backup's) is its created
        // event's or the next check's to copy.
        let existed: BTreeSet<&str> = before[0].iter().map(|s| s.id.as_str()).collect();
        let mut sources: Vec<&Snap> = after[0]
            .iter()
            .filter(|s| s.status == "available" && existed.contains(s.id.as_str()))
            .collect();
        sources.sort_by_key(|s| std::cmp::Reverse(s.created));
        for (i, source) in sources.iter().enumerate() {
            if i > 0 && source.created < now - self.days[1] * DAY {
                continue;
            }
            let target = backup::dr_copy_id(&source.id, false);
            let copy = after[1].iter().find(|c| c.id == target);
            let done = copy.is_some_and(|c| {
                c.tags.get(tag::SOURCE) == Some(&source.arn)
                    && (!end || (c.status == "available" && c.tags.contains_key(tag::CONFIRMED)))
            });
            if !done {
                soak.lost(
                    name,
                    format!(
                        "{} answered Ok, and {} has no{} DR copy ({:?})",
                        if end {
                            "the healed check"
                        } else {
                            "a delivery"
                        },
                        source.id,
                        if end { " confirmed" } else { "" },
                        copy.map(|c| (&c.status, c.tags.get(tag::CONFIRMED)))
                    ),
                );
            }
        }
    }

    /// AWS recovers; the next hourly check runs, then every copy due is there.
    async fn converge(&mut self) {
        self.proxy.heal();
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let check = template::scheduled_event("SnapshotFunction", "HourlyCheck", &time);
        let before = self.both().await;
        self.soak.delivery(CHECK, false);
        let answer = self.invoke(&check, false).await;
        self.soak.tally(&self.name, &self.proxy);
        match &answer {
            Ok(_) => self.soak.answered(),
            Err(f) => {
                self.soak
                    .dead_letter(&self.name, CHECK, "the healed check", f);
                self.soak.broken(
                    &self.name,
                    format!("the healed check failed: {} {}", f.code, f.message),
                );
            }
        }
        let after = self.both().await;
        self.check(&before, &after, &answer, true);
        let left: BTreeSet<&str> = after[0].iter().map(|s| s.id.as_str()).collect();
        for id in self.foreign.iter().filter(|id| !left.contains(id.as_str())) {
            self.soak
                .broken(&self.name, format!("{id}, not autopilot's, is gone"));
        }
        self.soak
            .note_n("snapshot: source snapshots at the end", after[0].len());
        self.soak
            .note_n("snapshot: DR copies at the end", after[1].len());
    }
}
