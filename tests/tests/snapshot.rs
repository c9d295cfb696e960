//! snapshot against the emulator in two regions (us-east-1 the source, us-west-2
//! the DR region), with events built as RDS and EventBridge deliver them, and
//! the restore drill's check run against the harness's TLS-only PostgreSQL.

use autopilot_shared::backup::{self, tag};
use autopilot_shared::config::lookup_from;
use autopilot_shared::{Failure, Report};
use autopilot_tests::postgres::{ident, postgres_tls};
use autopilot_tests::snapshots::{self as rds, Db, DR, SOURCE};
use autopilot_tests::Stack;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use snapshot::config::{self, Config};
use snapshot::Snapshotter;

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

struct World {
    stack: Stack,
    /// The DR region's KMS key.
    dr_key: String,
}

impl World {
    async fn new(test: &str) -> Self {
        Self {
            stack: Stack::new(test).await,
            dr_key: rds::kms_key(DR),
        }
    }

    fn name(&self, base: &str) -> String {
        format!("{}-{base}", self.stack.prefix)
    }

    fn config(&self, databases: Value, extra: &[(&str, &str)]) -> Config {
        let mut pairs: Vec<(String, String)> = vec![
            ("AUTOPILOT_TOPIC_ARN".into(), self.stack.topic_arn.clone()),
            (config::AWS_REGION.into(), SOURCE.into()),
            (config::DATABASES.into(), databases.to_string()),
            (config::DR_REGION.into(), DR.into()),
            (config::DR_KMS_KEY.into(), self.dr_key.clone()),
        ];
        for (k, v) in extra {
            pairs.retain(|(key, _)| key != k);
            pairs.push((k.to_string(), v.to_string()));
        }
        Config::from_lookup(lookup_from(pairs)).expect("test configuration")
    }

    fn function(&self, config: Config) -> Snapshotter {
        Snapshotter::new(&self.stack.sdk, config).expect("snapshot cold start")
    }
}

async fn invoke(f: &Snapshotter, event: Value) -> Result<Report, Failure> {
    f.handle(LambdaEvent::new(event, Context::default())).await
}

fn actions(report: &Report) -> Vec<String> {
    report
        .outcomes
        .iter()
        .map(|o| format!("{} {}", o.action, o.resource))
        .collect()
}

/// An RDS event as EventBridge delivers it (the shape of events/snapshot/).
fn rds_event(
    detail_type: &str,
    region: &str,
    arn: &str,
    id: &str,
    event_id: &str,
    message: &str,
) -> Value {
    let source_type = match detail_type {
        "RDS DB Cluster Snapshot Event" => "CLUSTER_SNAPSHOT",
        "RDS DB Instance Event" => "DB_INSTANCE",
        _ => "SNAPSHOT",
    };
    json!({
        "version": "0",
        "id": format!("{event_id}-{id}"),
        "detail-type": detail_type,
        "source": "aws.rds",
        "account": "123456789012",
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": region,
        "resources": [arn],
        "detail": {
            "EventCategories": ["notification"],
            "SourceType": source_type,
            "SourceArn": arn,
            "Date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "Message": message,
            "SourceIdentifier": id,
            "EventID": event_id
        }
    })
}

fn created(arn: &str, id: &str) -> Value {
    rds_event(
        "RDS DB Snapshot Event",
        SOURCE,
        arn,
        id,
        "RDS-EVENT-0042",
        "Manual snapshot created",
    )
}

/// The template's schedule as EventBridge Scheduler delivers it.
fn schedule(task: &str) -> Value {
    json!({
        "version": "0",
        "id": format!("schedule-{task}"),
        "detail-type": "Scheduled Task",
        "source": "autopilot.scheduler",
        "account": "123456789012",
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": SOURCE,
        "resources": [],
        "detail": {"task": task}
    })
}

fn ours(db: &str) -> Vec<(&'static str, String)> {
    vec![
        (tag::CREATED_BY, backup::BY_SNAPSHOT.to_string()),
        (tag::REASON, backup::reason::SCHEDULED.to_string()),
        (tag::DB, db.to_string()),
    ]
}

async fn manual(region: &str, db: Db<'_>, id: &str, tags: &[(&str, String)]) -> String {
    let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
    rds::manual_snapshot(region, db, id, &tags).await
}

#[tokio::test]
async fn a_created_snapshot_is_copied_to_the_dr_region_with_the_dr_key_and_its_tags_and_once() {
    let w = World::new("snap-copy").await;
    let db = w.name("orders");
    rds::create_instance(SOURCE, &db, true).await;
    let auto_id = format!("rds:{db}-2026-11-24-03-10");
    let auto_arn = rds::automated_snapshot(SOURCE, Db::Instance(&db), &auto_id, now() - HOUR);
    let manual_id = w.name("before-migration");
    let manual_arn = manual(
        SOURCE,
        Db::Instance(&db),
        &manual_id,
        &[("team", "orders".into())],
    )
    .await;
    let f = w.function(w.config(json!([{"instance": db}]), &[]));

    let event = rds_event(
        "RDS DB Snapshot Event",
        SOURCE,
        &auto_arn,
        &auto_id,
        "RDS-EVENT-0091",
        "Automated snapshot created",
    );
    let report = invoke(&f, event.clone()).await.expect("copy");
    let copies: Vec<_> = report
        .outcomes
        .iter()
        .filter(|o| o.action == "copy")
        .collect();
    assert_eq!(
        copies.len(),
        2,
        "the created one and the other due: {report:?}"
    );

    let dr = rds::snapshots(DR, Db::Instance(&db)).await;
    let copy = dr
        .iter()
        .find(|s| s.id == backup::dr_copy_id(&auto_id, false))
        .expect("copy of the automated snapshot");
    assert_eq!(
        copy.kind, "manual",
        "an automated snapshot is copied as a manual one"
    );
    assert!(copy.encrypted);
    assert_eq!(copy.kms_key_id.as_deref(), Some(w.dr_key.as_str()));
    assert_eq!(
        copy.tags.get(tag::SOURCE).map(String::as_str),
        Some(auto_arn.as_str())
    );
    assert_eq!(
        copy.tags.get(tag::REASON).map(String::as_str),
        Some("dr-copy")
    );
    let kept = dr
        .iter()
        .find(|s| s.id == backup::dr_copy_id(&manual_id, false))
        .expect("copy of the manual snapshot");
    assert_eq!(
        kept.tags.get("team").map(String::as_str),
        Some("orders"),
        "tags kept"
    );
    assert_eq!(
        kept.tags.get(tag::SOURCE).map(String::as_str),
        Some(manual_arn.as_str())
    );

    // EventBridge delivers at least once: the same event again copies nothing.
    let again = invoke(&f, event).await.expect("duplicate");
    assert!(
        !actions(&again).iter().any(|a| a.starts_with("copy")),
        "{again:?}"
    );
    invoke(&f, created(&manual_arn, &manual_id))
        .await
        .expect("the other's event");
    assert_eq!(rds::snapshots(DR, Db::Instance(&db)).await.len(), 2);
    assert!(w.stack.pages().await.is_empty(), "nothing to page");
}

#[tokio::test]
async fn a_cluster_snapshot_is_copied_and_confirmed_by_the_check() {
    let w = World::new("snap-cluster").await;
    let cluster = w.name("aurora");
    rds::create_cluster(SOURCE, &cluster, true).await;
    let id = w.name("cs-manual");
    let arn = manual(SOURCE, Db::Cluster(&cluster), &id, &[]).await;
    let f = w.function(w.config(json!([{"cluster": cluster}]), &[]));
    let event = rds_event(
        "RDS DB Cluster Snapshot Event",
        SOURCE,
        &arn,
        &id,
        "RDS-EVENT-0075",
        "Manual cluster snapshot created",
    );
    invoke(&f, event).await.expect("copy");
    let target = backup::dr_copy_id(&id, true);
    let copy = rds::snapshot(DR, Db::Cluster(&cluster), &target)
        .await
        .expect("cluster copy in the DR region");
    assert_eq!(copy.kms_key_id.as_deref(), Some(w.dr_key.as_str()));
    // Cluster copies have no copy-finished event: the check confirms them.
    let report = invoke(&f, schedule("snapshot-check")).await.expect("check");
    assert!(
        actions(&report)
            .iter()
            .any(|a| a.starts_with("confirm ") && a.contains(&target)),
        "{report:?}"
    );
    let copy = rds::snapshot(DR, Db::Cluster(&cluster), &target)
        .await
        .unwrap();
    assert!(copy.tags.contains_key(tag::CONFIRMED));
}

#[tokio::test]
async fn copies_past_the_limit_are_deferred_then_re_driven_by_the_copy_finished_event() {
    let w = World::new("snap-defer").await;
    let db = w.name("orders");
    rds::create_instance(SOURCE, &db, true).await;
    let mut sources = Vec::new();
    for (i, age) in [(1, 3 * HOUR), (2, 2 * HOUR), (3, HOUR)] {
        let id = w.name(&format!("m{i}"));
        let arn = manual(SOURCE, Db::Instance(&db), &id, &[]).await;
        rds::set_snapshot_time(SOURCE, &id, false, now() - age);
        sources.push((id, arn));
    }
    rds::hold_copies(&w.name("m"), true);
    let f = w.function(w.config(json!([{"instance": db}]), &[(config::COPY_LIMIT, "1")]));

    let report = invoke(&f, created(&sources[2].1, &sources[2].0))
        .await
        .expect("created");
    let acts = actions(&report);
    assert_eq!(
        acts.iter().filter(|a| a.starts_with("copy ")).count(),
        1,
        "{acts:?}"
    );
    assert_eq!(
        acts.iter().filter(|a| a.starts_with("defer ")).count(),
        2,
        "{acts:?}"
    );
    assert!(acts[0].contains(&sources[2].0), "newest first: {acts:?}");
    let first = backup::dr_copy_id(&sources[2].0, false);
    let status = rds::snapshot(DR, Db::Instance(&db), &first)
        .await
        .unwrap()
        .status;
    assert_ne!(status, "available", "the copy is in flight");

    // Another created event while the copy runs: still one in flight, nothing dropped.
    let report = invoke(&f, created(&sources[1].1, &sources[1].0))
        .await
        .expect("created again");
    assert_eq!(
        actions(&report)
            .iter()
            .filter(|a| a.starts_with("defer "))
            .count(),
        2
    );
    assert_eq!(rds::snapshots(DR, Db::Instance(&db)).await.len(), 1);

    // The copy finishes in the DR region; its event re-drives the next one.
    rds::finish_snapshot(DR, &first, false, "available");
    let copy = rds::snapshot(DR, Db::Instance(&db), &first).await.unwrap();
    let finished = rds_event(
        "RDS DB Snapshot Event",
        DR,
        &copy.arn,
        &first,
        "RDS-EVENT-0060",
        &format!(
            "Finished copy of snapshot {} from region {SOURCE} in 3 minutes",
            sources[2].0
        ),
    );
    let report = invoke(&f, finished).await.expect("copy finished");
    let acts = actions(&report);
    assert!(acts.iter().any(|a| a.starts_with("confirm ")), "{acts:?}");
    assert_eq!(
        acts.iter().filter(|a| a.starts_with("copy ")).count(),
        1,
        "{acts:?}"
    );
    assert!(rds::snapshot(DR, Db::Instance(&db), &first)
        .await
        .unwrap()
        .tags
        .contains_key(tag::CONFIRMED));

    // The hourly check re-drives the last one once the second finishes.
    let second = backup::dr_copy_id(&sources[1].0, false);
    rds::finish_snapshot(DR, &second, false, "available");
    invoke(&f, schedule("snapshot-check")).await.expect("check");
    rds::hold_copies(&w.name("m"), false);
    let ids: Vec<String> = rds::snapshots(DR, Db::Instance(&db))
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();
    for (id, _) in &sources {
        assert!(
            ids.contains(&backup::dr_copy_id(id, false)),
            "{id} never lost: {ids:?}"
        );
    }
}

#[tokio::test]
async fn retention_prunes_old_autopilot_snapshots_in_both_regions_and_keeps_n_foreign_and_automated(
) {
    let w = World::new("snap-retain").await;
    let db = w.name("orders");
    rds::create_instance(SOURCE, &db, true).await;
    let ours_ids: Vec<String> = (1..=4)
        .map(|i| format!("autopilot-{db}-20261101000{i}"))
        .collect();
    for id in &ours_ids {
        manual(SOURCE, Db::Instance(&db), id, &ours(&db)).await;
    }
    let foreign = w.name("nightly");
    manual(SOURCE, Db::Instance(&db), &foreign, &[]).await;
    // A foreign name wearing our tag is still foreign.
    let disguised = w.name("disguised");
    manual(SOURCE, Db::Instance(&db), &disguised, &ours(&db)).await;
    let auto_id = format!("rds:{db}-2026-11-01-03-10");
    rds::automated_snapshot(SOURCE, Db::Instance(&db), &auto_id, now() - HOUR);
    let f = w.function(w.config(
        json!([{"instance": db}]),
        &[(config::COPY_LIMIT, "20"), (config::KEEP, "2")],
    ));

    // Everything is recent: the check copies all seven to the DR region.
    invoke(&f, schedule("snapshot-check"))
        .await
        .expect("first check");
    assert_eq!(rds::snapshots(DR, Db::Instance(&db)).await.len(), 7);

    // Time passes: autopilot's four are 30, 20, 10 and 0 days old; the rest 60.
    let ages = [30 * DAY, 20 * DAY, 10 * DAY, HOUR];
    for (id, age) in ours_ids.iter().zip(ages) {
        rds::set_snapshot_time(SOURCE, id, false, now() - age);
        rds::set_snapshot_time(DR, &backup::dr_copy_id(id, false), false, now() - age);
    }
    for id in [&foreign, &disguised, &auto_id] {
        rds::set_snapshot_time(SOURCE, id, false, now() - 60 * DAY);
        rds::set_snapshot_time(DR, &backup::dr_copy_id(id, false), false, now() - 60 * DAY);
    }
    let report = invoke(&f, schedule("snapshot-check"))
        .await
        .expect("second check");
    let deletes = actions(&report)
        .into_iter()
        .filter(|a| a.starts_with("delete "))
        .count();
    assert_eq!(
        deletes,
        2 + 5,
        "two in the source region, five in the DR region: {report:?}"
    );

    let source: Vec<String> = rds::snapshots(SOURCE, Db::Instance(&db))
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();
    for kept in [&ours_ids[2], &ours_ids[3], &foreign, &disguised, &auto_id] {
        assert!(source.contains(kept), "{kept} kept: {source:?}");
    }
    for gone in [&ours_ids[0], &ours_ids[1]] {
        assert!(!source.contains(gone), "{gone} pruned: {source:?}");
    }
    // In the DR region every copy is autopilot's: the newest two are kept.
    let dr: Vec<String> = rds::snapshots(DR, Db::Instance(&db))
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();
    let mut expected = vec![
        backup::dr_copy_id(&ours_ids[2], false),
        backup::dr_copy_id(&ours_ids[3], false),
    ];
    let mut dr_sorted = dr.clone();
    dr_sorted.sort();
    expected.sort();
    assert_eq!(dr_sorted, expected);
}

#[tokio::test]
async fn an_unencrypted_snapshot_pages_a_warning_and_a_missing_dr_key_pages_critical() {
    let w = World::new("snap-encrypt").await;
    let plain = w.name("plain");
    rds::create_instance(SOURCE, &plain, false).await;
    let id = w.name("plain-snap");
    let arn = manual(SOURCE, Db::Instance(&plain), &id, &[]).await;
    let f = w.function(w.config(json!([{"instance": plain}]), &[]));
    invoke(&f, created(&arn, &id)).await.expect("created");
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert_eq!(pages[0].severity, "warning");
    assert!(
        pages[0].summary().contains("NOT encrypted"),
        "{}",
        pages[0].summary()
    );
    assert_eq!(pages[0].detail("snapshot"), &json!(id));
    let copy = rds::snapshot(DR, Db::Instance(&plain), &backup::dr_copy_id(&id, false))
        .await
        .expect("still copied");
    assert!(copy.encrypted, "the DR key encrypts the copy");

    let secure = w.name("secure");
    rds::create_instance(SOURCE, &secure, true).await;
    let sid = w.name("secure-snap");
    let sarn = manual(SOURCE, Db::Instance(&secure), &sid, &[]).await;
    let f = w.function(w.config(json!([{"instance": secure}]), &[(config::DR_KMS_KEY, "")]));
    invoke(&f, created(&sarn, &sid)).await.expect("created");
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert_eq!(pages[0].severity, "critical");
    assert_eq!(pages[0].detail("region"), &json!(SOURCE));
    assert!(pages[0].summary().contains(&sid), "{}", pages[0].summary());
    assert!(rds::snapshots(DR, Db::Instance(&secure)).await.is_empty());
}

#[tokio::test]
async fn a_cancelled_copy_of_ours_pages_critical_and_the_check_copies_again() {
    let w = World::new("snap-cancel").await;
    let db = w.name("orders");
    rds::create_instance(SOURCE, &db, true).await;
    let id = w.name("s1");
    manual(SOURCE, Db::Instance(&db), &id, &[]).await;
    let f = w.function(w.config(json!([{"instance": db}]), &[]));
    let target = backup::dr_copy_id(&id, false);
    let arn = format!("arn:aws:rds:{DR}:123456789012:snapshot:{target}");
    let event = rds_event(
        "RDS DB Snapshot Event",
        DR,
        &arn,
        &target,
        "RDS-EVENT-0061",
        &format!("Canceled snapshot copy request of {id} from region {SOURCE}"),
    );
    invoke(&f, event).await.expect("cancelled");
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].severity, "critical");
    assert_eq!(pages[0].detail("region"), &json!(DR));
    invoke(&f, schedule("snapshot-check")).await.expect("check");
    assert!(rds::snapshot(DR, Db::Instance(&db), &target)
        .await
        .is_some());
}

/// A drill database: a login role and a table with three rows on the TLS-only server.
async fn drill_world(test: &str) -> (World, String, Config) {
    let w = World::new(test).await;
    let pg = postgres_tls();
    let user = format!("drill_{}", w.stack.prefix.replace('-', "_"));
    let table = format!("orders_{}", w.stack.prefix.replace('-', "_"));
    let password = "drill-password-9f8e7d";
    pg.exec(&format!(
        "CREATE ROLE {} LOGIN PASSWORD '{password}'",
        ident(&user)
    ))
    .await;
    pg.exec(&format!(
        "CREATE TABLE {} (id int); INSERT INTO {} VALUES (1),(2),(3); GRANT SELECT ON {} TO {}",
        ident(&table),
        ident(&table),
        ident(&table),
        ident(&user)
    ))
    .await;
    let sm = aws_sdk_secretsmanager::Client::new(&w.stack.sdk);
    let secret = sm
        .create_secret()
        .name(w.name("orders-db-secret"))
        .secret_string(json!({"engine": "postgres", "host": "prod.example.internal", "port": 5432, "username": user, "password": password, "dbname": "postgres"}).to_string())
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let db = w.name("orders");
    rds::create_instance(SOURCE, &db, true).await;
    let config = w.config(
        json!([{"instance": db, "drill": {"secret": secret, "query": format!("SELECT count(*) FROM {}", ident(&table)), "min": 1}}]),
        &[(config::DB_CA_BUNDLE, pg.ca.as_deref().unwrap()), (config::DRILL_TIMEOUT_HOURS, "2")],
    );
    (w, db, config)
}

/// Copies `id` of `db` to the DR region and confirms it, as the events would.
async fn confirmed_copy(f: &Snapshotter, db: &str, id: &str) -> String {
    let arn = manual(SOURCE, Db::Instance(db), id, &[]).await;
    invoke(f, created(&arn, id)).await.expect("created");
    let target = backup::dr_copy_id(id, false);
    let copy = rds::snapshot(DR, Db::Instance(db), &target)
        .await
        .expect("copied");
    let finished = rds_event(
        "RDS DB Snapshot Event",
        DR,
        &copy.arn,
        &target,
        "RDS-EVENT-0060",
        "Finished copy of snapshot",
    );
    invoke(f, finished).await.expect("finished");
    target
}

#[tokio::test]
async fn a_restore_drill_restores_the_newest_copy_runs_its_check_pages_and_cleans_up() {
    let (w, db, config) = drill_world("snap-drill").await;
    let f = w.function(config);
    let copy = confirmed_copy(&f, &db, &w.name("s1")).await;
    let instance = backup::drill_instance_id(&db);
    rds::hold_instances(&instance, true);

    let report = invoke(&f, schedule("snapshot-check")).await.expect("check");
    assert!(
        actions(&report)
            .iter()
            .any(|a| a == &format!("restore {db}")),
        "{report:?}"
    );
    assert_eq!(
        rds::instance_status(DR, &instance).await.as_deref(),
        Some("creating")
    );

    // Nothing waits inside an invocation: RDS's event brings the drill back.
    rds::finish_instance(DR, &instance, "available");
    rds::point_at(DR, &instance, postgres_tls().port);
    let arn = format!("arn:aws:rds:{DR}:123456789012:db:{instance}");
    let restored = rds_event(
        "RDS DB Instance Event",
        DR,
        &arn,
        &instance,
        "RDS-EVENT-0043",
        &format!("Restored from snapshot {copy}"),
    );
    let report = invoke(&f, restored).await.expect("drill check");
    assert!(
        actions(&report)
            .iter()
            .any(|a| a.starts_with("drill-passed")),
        "{report:?}"
    );
    let pages = w.stack.pages().await;
    let drill = pages
        .iter()
        .find(|p| p.dedup_key().ends_with("/drill"))
        .expect("drill page");
    assert_eq!(drill.action(), "resolve");
    assert_eq!(drill.detail("result"), &json!("3"));
    assert!(drill
        .detail("restore time")
        .as_str()
        .unwrap()
        .ends_with("minutes"));
    let tagged = rds::snapshot(DR, Db::Instance(&db), &copy).await.unwrap();
    assert!(
        tagged
            .tags
            .get(tag::DRILL)
            .is_some_and(|v| v.starts_with("passed ")),
        "{tagged:?}"
    );
    assert_eq!(
        rds::instance_status(DR, &instance).await.as_deref(),
        Some("deleting")
    );
    rds::finish_instance(DR, &instance, "deleted");
    rds::hold_instances(&instance, false);

    // The next check: the drill is not due again.
    let report = invoke(&f, schedule("snapshot-check")).await.expect("check");
    assert!(
        !actions(&report).iter().any(|a| a.starts_with("restore")),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_drill_left_half_done_is_paged_and_cleaned_up_by_the_next_check() {
    let (w, db, config) = drill_world("snap-crash").await;
    let f = w.function(config);
    confirmed_copy(&f, &db, &w.name("s1")).await;
    let instance = backup::drill_instance_id(&db);
    rds::hold_instances(&instance, true);
    invoke(&f, schedule("snapshot-check"))
        .await
        .expect("check starts the drill");
    // The invocation that was to follow it died; three hours pass (timeout 2 h).
    let client = rds::rds(DR).await;
    let arn = format!("arn:aws:rds:{DR}:123456789012:db:{instance}");
    client
        .add_tags_to_resource()
        .resource_name(&arn)
        .tags(rds::tag(
            tag::DRILL_STARTED,
            &backup::stamp(chrono::Utc::now() - chrono::Duration::hours(3)),
        ))
        .send()
        .await
        .unwrap();
    w.stack.pages().await;
    let report = invoke(&f, schedule("snapshot-check"))
        .await
        .expect("next check");
    assert!(
        actions(&report)
            .iter()
            .any(|a| a.starts_with("delete-drill")),
        "{report:?}"
    );
    let pages = w.stack.pages().await;
    let failed = pages
        .iter()
        .find(|p| p.dedup_key().ends_with("/drill"))
        .expect("drill page");
    assert_eq!(failed.severity, "critical");
    assert!(
        failed.summary().contains("not finished within 2 hours"),
        "{}",
        failed.summary()
    );
    assert_eq!(
        rds::instance_status(DR, &instance).await.as_deref(),
        Some("deleting")
    );
    rds::finish_instance(DR, &instance, "deleted");
    rds::hold_instances(&instance, false);
}

#[tokio::test]
async fn dry_run_plans_and_pages_but_changes_nothing() {
    let w = World::new("snap-dry").await;
    let db = w.name("orders");
    rds::create_instance(SOURCE, &db, false).await;
    let old = format!("autopilot-{db}-202601010000");
    manual(SOURCE, Db::Instance(&db), &old, &ours(&db)).await;
    rds::set_snapshot_time(SOURCE, &old, false, now() - 90 * DAY);
    let recent = format!("autopilot-{db}-202611240000");
    manual(SOURCE, Db::Instance(&db), &recent, &ours(&db)).await;
    let id = w.name("s1");
    let arn = manual(SOURCE, Db::Instance(&db), &id, &[]).await;
    let f = w.function(w.config(
        json!([{"instance": db}]),
        &[("AUTOPILOT_DRY_RUN", "true"), (config::KEEP, "1")],
    ));
    let report = invoke(&f, created(&arn, &id)).await.expect("created");
    assert!(report.dry_run);
    assert!(
        actions(&report).iter().any(|a| a.starts_with("would-copy")),
        "{report:?}"
    );
    let report = invoke(&f, schedule("snapshot-backup"))
        .await
        .expect("backup");
    let acts = actions(&report);
    assert!(
        acts.iter().any(|a| a.starts_with("would-snapshot")),
        "{acts:?}"
    );
    assert!(
        acts.iter().any(|a| a.starts_with("would-delete")),
        "{acts:?}"
    );
    assert!(
        rds::snapshots(DR, Db::Instance(&db)).await.is_empty(),
        "no copy"
    );
    let source: Vec<String> = rds::snapshots(SOURCE, Db::Instance(&db))
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(source.len(), 3, "nothing created or deleted: {source:?}");
    let pages = w.stack.pages().await;
    assert!(
        !pages.is_empty()
            && pages
                .iter()
                .all(|p| p.detail("dry run") == &json!("nothing was changed")),
        "{pages:?}"
    );
}

#[tokio::test]
async fn malformed_and_foreign_events_get_a_clear_answer() {
    let w = World::new("snap-bad").await;
    let f = w.function(w.config(json!([{"instance": w.name("orders")}]), &[]));
    let mut missing = created("arn:aws:rds:us-east-1:123456789012:snapshot:x", "x");
    missing["detail"]
        .as_object_mut()
        .unwrap()
        .remove("SourceIdentifier");
    let e = invoke(&f, missing).await.unwrap_err();
    assert!(e.message.contains("SourceIdentifier"), "{}", e.message);
    let e = invoke(
        &f,
        json!({"detail-type": "ECR Image Action", "source": "aws.ecr", "detail": {}}),
    )
    .await
    .unwrap_err();
    assert!(e.message.contains("RDS DB Snapshot Event"), "{}", e.message);
    // A valid event about a database that is not configured is ignored with the reason.
    let other = w.name("other");
    rds::create_instance(SOURCE, &other, true).await;
    let id = w.name("other-snap");
    let arn = manual(SOURCE, Db::Instance(&other), &id, &[]).await;
    let report = invoke(&f, created(&arn, &id)).await.expect("ignored");
    assert_eq!(actions(&report), [format!("ignore {id}")]);
    assert!(report.outcomes[0]
        .reason
        .contains("not a configured database"));
}
