//! deploy's snapshot before deploy, end to end against the emulator: a push to a
//! service configured with `"snapshot": "<instance>"` takes a manual snapshot of
//! the instance and stops; the snapshot's `RDS DB Snapshot Event`
//! (RDS-EVENT-0042) resumes the deploy. Events are the production samples
//! (`events/ecr-push.json`, `events/snapshot/db-snapshot-manual-created.json`)
//! with this test's names filled in.

use autopilot_shared::backup::{self, tag, BY_DEPLOY};
use autopilot_shared::{record, Failure, Report};
use autopilot_tests::snapshots::{self, create_instance, finish_snapshot, hold_copies, Db, SOURCE};
use autopilot_tests::*;
use chrono::{DateTime, Utc};
use deploy::Deployer;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A production-shaped stack: repository `backend` with `v1.4.1` running on
/// `prod/backend`, and the PostgreSQL instance `orders-db` it migrates.
struct World {
    stack: Stack,
    repo: String,
    cluster: String,
    family: String,
    service: String,
    old_revision: String,
    db: String,
}

impl World {
    async fn new(test: &str) -> Self {
        let stack = Stack::new(test).await;
        let repo = stack.repository("backend").await;
        stack.push(&repo, "v1.4.1").await;
        let cluster = stack.cluster("prod").await;
        let family = stack.name("backend");
        let td = stack
            .task_definition(&family, "app", &stack.image(&repo, "v1.4.1"))
            .await;
        let old_revision = td.task_definition_arn().unwrap().to_string();
        let service = "backend".to_string();
        stack.service(&cluster, &service, &old_revision).await;
        let db = stack.name("orders-db");
        create_instance(SOURCE, &db, false).await;
        Self {
            stack,
            repo,
            cluster,
            family,
            service,
            old_revision,
            db,
        }
    }

    /// `prod/backend` fed by `backend:v*`, snapshotting `orders-db` first.
    fn mapping(&self) -> Value {
        json!([{"repository": self.repo, "tags": ["v*"], "cluster": self.cluster,
                "service": self.service, "container": "app", "snapshot": self.db}])
    }

    fn deployer(&self, services: Value, dry_run: bool) -> Deployer {
        Deployer::new(&self.stack.sdk, self.stack.config(services, dry_run))
    }

    async fn current_revision(&self) -> String {
        self.revision_of(&self.service).await
    }

    async fn revision_of(&self, service: &str) -> String {
        self.stack
            .describe_service(&self.cluster, service)
            .await
            .task_definition()
            .unwrap()
            .to_string()
    }

    /// The image of container `container` in the revision `service` runs.
    async fn image_of(&self, service: &str, container: &str) -> String {
        let (td, _) = self
            .stack
            .describe_task_definition(&self.revision_of(service).await)
            .await;
        td.container_definitions()
            .iter()
            .find(|c| c.name() == Some(container))
            .and_then(|c| c.image())
            .unwrap()
            .to_string()
    }

    /// The pinned image URI of `digest` in this stack's repository.
    fn pinned(&self, digest: &str) -> String {
        format!(
            "{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{}@{digest}",
            self.repo
        )
    }

    /// Every snapshot of `orders-db`.
    async fn snapshots(&self) -> Vec<snapshots::Snap> {
        snapshots::snapshots(SOURCE, Db::Instance(&self.db)).await
    }

    /// The AWS calls made since `mark` that mention this stack.
    fn calls_since(&self, mark: usize) -> Vec<String> {
        self.stack.calls()[mark..].to_vec()
    }
}

async fn invoke(deployer: &Deployer, event: Value) -> Result<Report, Failure> {
    deployer
        .handle(LambdaEvent::new(event, Context::default()))
        .await
}

fn actions(report: &Report) -> Vec<&str> {
    report.outcomes.iter().map(|o| o.action.as_str()).collect()
}

fn count(calls: &[String], op: &str) -> usize {
    calls.iter().filter(|c| *c == op).count()
}

fn sample(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A UUID-shaped EventBridge event id, distinct per `seed`.
fn event_id(seed: &str) -> String {
    let hex = digest(seed);
    let h = &hex["sha256:".len()..];
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The ECR push of `repo:tag` as EventBridge delivers it (`events/ecr-push.json`).
/// Every delivery of one push is the same event: same `id`, same `time`.
fn push_event(repo: &str, tag: &str, digest: &str) -> Value {
    let mut event = sample("events/ecr-push.json");
    event["id"] = json!(event_id(&format!("push {repo}:{tag}@{digest}")));
    event["detail"]["repository-name"] = json!(repo);
    event["detail"]["image-tag"] = json!(tag);
    event["detail"]["image-digest"] = json!(digest);
    event
}

fn time_of(event: &Value) -> DateTime<Utc> {
    backup::parse_stamp(event["time"].as_str().unwrap()).unwrap()
}

/// The RDS-EVENT-0042 `Manual snapshot created` of snapshot `id` (`arn`), as
/// EventBridge delivers it (`events/snapshot/db-snapshot-manual-created.json`).
fn created_event(arn: &str, id: &str) -> Value {
    let mut event = sample("events/snapshot/db-snapshot-manual-created.json");
    assert_eq!(
        (&event["source"], &event["detail-type"]),
        (&json!("aws.rds"), &json!("RDS DB Snapshot Event"))
    );
    let d = &event["detail"];
    assert_eq!(d["EventCategories"], json!(["creation"]));
    assert_eq!(d["SourceType"], "SNAPSHOT");
    assert_eq!(d["Message"], "Manual snapshot created");
    assert_eq!(d["EventID"], "RDS-EVENT-0042");
    event["id"] = json!(event_id(&format!("0042 {arn}")));
    event["time"] = json!("2026-11-23T10:07:31Z");
    event["resources"] = json!([arn]);
    event["detail"]["SourceArn"] = json!(arn);
    event["detail"]["SourceIdentifier"] = json!(id);
    event["detail"]["Date"] = json!("2026-11-23T10:07:31.604Z");
    event
}

/// The snapshot a push takes of `db`: named from the push's time and digest.
fn pre_deploy_id(db: &str, push: &Value) -> String {
    backup::pre_deploy_id(
        db,
        time_of(push),
        push["detail"]["image-digest"].as_str().unwrap(),
    )
}

/// The `autopilot:*` tags of a snapshot.
fn autopilot_tags(snap: &snapshots::Snap) -> BTreeMap<String, String> {
    snap.tags
        .iter()
        .filter(|(k, _)| k.starts_with("autopilot:"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn a_push_waits_for_its_snapshot_and_the_created_event_deploys_it_once() {
    let w = World::new("snap-gate").await;
    hold_copies(&w.db, true);
    let deployer = w.deployer(w.mapping(), false);
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let push = push_event(&w.repo, "v1.4.2", &digest);
    let id = pre_deploy_id(&w.db, &push);
    let mark = w.stack.calls().len();

    // The push takes the snapshot and stops.
    let report = invoke(&deployer, push.clone()).await.unwrap();
    let calls = w.calls_since(mark);

    assert_eq!(actions(&report), vec!["wait"], "{report:?}");
    assert_eq!(
        calls,
        vec!["DescribeDBSnapshots", "CreateDBSnapshot"],
        "the gate reads, takes the snapshot and touches nothing of ECS"
    );
    let o = &report.outcomes[0];
    assert_eq!(o.resource, format!("{}/{}", w.cluster, w.service));
    assert_eq!(o.detail("snapshot"), Some(id.as_str()));
    let snaps = w.snapshots().await;
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let snap = &snaps[0];
    assert_eq!(snap.id, id);
    assert_eq!(
        (snap.kind.as_str(), snap.status.as_str()),
        ("manual", "creating")
    );
    assert_eq!(
        autopilot_tags(snap),
        tags(&[
            (tag::CREATED_BY, BY_DEPLOY),
            (tag::REASON, "pre-deploy"),
            (tag::DB, &w.db),
            (tag::DEPLOY_REPOSITORY, &w.repo),
            (tag::DEPLOY_TAG, "v1.4.2"),
            (tag::DEPLOY_DIGEST, &digest),
            (tag::DEPLOY_EVENT, push["id"].as_str().unwrap()),
            (tag::DEPLOY_TIME, push["time"].as_str().unwrap()),
        ])
    );
    assert_eq!(tag::CREATED_BY, "autopilot:created-by");
    assert_eq!(BY_DEPLOY, "autopilot-deploy");
    assert_eq!(w.current_revision().await, w.old_revision);
    assert_eq!(w.stack.revisions(&w.family).await.len(), 1);
    assert!(w.stack.pages().await.is_empty(), "waiting pages nobody");

    // EventBridge redelivers the push while the snapshot is being made: it waits
    // on the same snapshot and takes no second one.
    let mark = w.stack.calls().len();
    let again = invoke(&deployer, push.clone()).await.unwrap();
    assert_eq!(actions(&again), vec!["wait"], "{again:?}");
    assert!(again.outcomes[0].reason.contains("creating"), "{again:?}");
    assert_eq!(w.calls_since(mark), vec!["DescribeDBSnapshots"]);
    assert_eq!(w.snapshots().await.len(), 1);
    assert_eq!(w.current_revision().await, w.old_revision);

    // RDS finishes the snapshot and sends RDS-EVENT-0042: the deploy continues.
    finish_snapshot(SOURCE, &id, false, "available");
    let created = created_event(&snap.arn, &id);
    let mark = w.stack.calls().len();
    let resumed = invoke(&deployer, created.clone()).await.unwrap();
    let calls = w.calls_since(mark);

    assert_eq!(actions(&resumed), vec!["deploy"], "{resumed:?}");
    let revision = resumed.outcomes[0].detail("revision").unwrap().to_string();
    assert_eq!(w.current_revision().await, revision);
    assert_eq!(w.image_of(&w.service, "app").await, w.pinned(&digest));
    assert_eq!(w.stack.revisions(&w.family).await.len(), 2);
    assert_eq!(
        (
            count(&calls, "CreateDBSnapshot"),
            count(&calls, "RegisterTaskDefinition"),
            count(&calls, "UpdateService")
        ),
        (0, 1, 1),
        "{calls:?}"
    );
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert_eq!(pages[0].severity, "info");
    assert_eq!(pages[0].detail("Digest"), &json!(digest));
    let started = pages[0].dedup_key().to_string();
    let (_, td_tags) = w.stack.describe_task_definition(&revision).await;
    assert!(
        td_tags
            .iter()
            .any(|t| t.key() == Some(record::tag::PUSH_EVENT) && t.value() == push["id"].as_str()),
        "the record names the push, not the snapshot event: {td_tags:?}"
    );

    // The 0042 event again, then the push again: nothing is deployed again. The
    // deploy recorded no deployment id (its verdict does), so the first redelivery
    // cannot tell whether its page went: it pages again, under the same incident,
    // and records the deployment; the next changes nothing.
    let mark = w.stack.calls().len();
    let redelivered = invoke(&deployer, created).await.unwrap();
    assert_eq!(actions(&redelivered), vec!["announce"], "{redelivered:?}");
    let repushed = invoke(&deployer, push).await.unwrap();
    assert_eq!(actions(&repushed), vec!["skip"], "{repushed:?}");
    let calls = w.calls_since(mark);
    assert_eq!(
        (
            count(&calls, "CreateDBSnapshot"),
            count(&calls, "RegisterTaskDefinition"),
            count(&calls, "UpdateService")
        ),
        (0, 0, 0),
        "{calls:?}"
    );
    assert_eq!(w.current_revision().await, revision);
    assert_eq!(w.stack.revisions(&w.family).await.len(), 2);
    let snaps = w.snapshots().await;
    assert_eq!(
        snaps
            .iter()
            .map(|s| (s.id.as_str(), s.status.as_str()))
            .collect::<Vec<_>>(),
        vec![(id.as_str(), "available")]
    );
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert_eq!(pages[0].dedup_key(), started);
}

#[tokio::test]
async fn a_service_without_a_snapshot_in_the_same_push_deploys_at_once() {
    let w = World::new("snap-mixed").await;
    hold_copies(&w.db, true);
    let s = &w.stack;
    let worker_family = s.name("worker");
    let worker_td = s
        .task_definition(&worker_family, "worker", &s.image(&w.repo, "v1.4.1"))
        .await;
    s.service(
        &w.cluster,
        "worker",
        worker_td.task_definition_arn().unwrap(),
    )
    .await;
    let mapping = json!([
        {"repository": w.repo, "tags": ["v*"], "cluster": w.cluster, "service": "backend",
         "container": "app", "snapshot": w.db},
        {"repository": w.repo, "tags": ["v*"], "cluster": w.cluster, "service": "worker",
         "container": "worker"},
    ]);
    let deployer = w.deployer(mapping, false);
    let digest = s.push(&w.repo, "v1.5.0").await;
    let push = push_event(&w.repo, "v1.5.0", &digest);
    let id = pre_deploy_id(&w.db, &push);

    let report = invoke(&deployer, push).await.unwrap();

    let by_service: BTreeMap<&str, &str> = report
        .outcomes
        .iter()
        .map(|o| (o.resource.as_str(), o.action.as_str()))
        .collect();
    let backend = format!("{}/backend", w.cluster);
    let worker = format!("{}/worker", w.cluster);
    assert_eq!(
        by_service,
        BTreeMap::from([(backend.as_str(), "wait"), (worker.as_str(), "deploy")]),
        "{report:?}"
    );
    assert_eq!(w.image_of("worker", "worker").await, w.pinned(&digest));
    assert_eq!(w.current_revision().await, w.old_revision, "backend waits");
    assert_eq!(s.revisions(&worker_family).await.len(), 2);
    assert_eq!(s.revisions(&w.family).await.len(), 1);
    assert_eq!(s.pages().await.len(), 1, "worker's started page only");

    // The snapshot's created event deploys backend, and only backend.
    finish_snapshot(SOURCE, &id, false, "available");
    let snap = snapshots::snapshot(SOURCE, Db::Instance(&w.db), &id)
        .await
        .unwrap();
    let resumed = invoke(&deployer, created_event(&snap.arn, &id))
        .await
        .unwrap();
    assert_eq!(actions(&resumed), vec!["deploy"], "{resumed:?}");
    assert_eq!(resumed.outcomes[0].resource, backend);
    assert_eq!(w.image_of("backend", "app").await, w.pinned(&digest));
    assert_eq!(s.revisions(&w.family).await.len(), 2);
    assert_eq!(
        s.revisions(&worker_family).await.len(),
        2,
        "worker not redeployed"
    );
    assert_eq!(s.pages().await.len(), 1);
}

#[tokio::test]
async fn a_failed_snapshot_blocks_the_deploy_and_pages_critical() {
    let w = World::new("snap-failed").await;
    hold_copies(&w.db, true);
    let deployer = w.deployer(w.mapping(), false);
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let push = push_event(&w.repo, "v1.4.2", &digest);
    let id = pre_deploy_id(&w.db, &push);
    let first = invoke(&deployer, push.clone()).await.unwrap();
    assert_eq!(actions(&first), vec!["wait"]);

    finish_snapshot(SOURCE, &id, false, "failed");
    let mark = w.stack.calls().len();
    let report = invoke(&deployer, push.clone()).await.unwrap();
    let calls = w.calls_since(mark);

    assert_eq!(actions(&report), vec!["refuse"], "{report:?}");
    assert_eq!(report.outcomes[0].detail("snapshot"), Some(id.as_str()));
    assert!(report.outcomes[0].reason.contains("failed"), "{report:?}");
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1, "{pages:?}");
    let p = &pages[0];
    assert_eq!((p.severity.as_str(), p.action()), ("critical", "trigger"));
    assert_eq!(p.body["payload"]["class"], "deploy.snapshot_failed");
    assert_eq!(p.body["payload"]["component"], json!(w.db));
    assert_eq!(p.detail("Database"), &json!(w.db));
    assert_eq!(p.detail("Snapshot"), &json!(id));
    assert_eq!(p.detail("Image"), &json!(format!("{}:v1.4.2", w.repo)));
    assert_eq!(p.detail("Digest"), &json!(digest));
    assert_eq!(
        p.detail("Services"),
        &json!([format!("{}/{}", w.cluster, w.service)])
    );
    assert!(p.summary().contains("BLOCKED"), "{}", p.summary());
    assert_eq!(p.dedup_key(), format!("autopilot/deploy/snapshot/{id}"));
    assert_eq!(w.current_revision().await, w.old_revision);
    assert_eq!(w.stack.revisions(&w.family).await.len(), 1);
    assert_eq!(
        (
            count(&calls, "CreateDBSnapshot"),
            count(&calls, "RegisterTaskDefinition"),
            count(&calls, "UpdateService")
        ),
        (0, 0, 0),
        "no second snapshot, no deploy: {calls:?}"
    );

    // Even a created event for the failed snapshot (RDS sends none; a stray one)
    // does not deploy it.
    let snap = snapshots::snapshot(SOURCE, Db::Instance(&w.db), &id)
        .await
        .unwrap();
    assert_eq!(snap.status, "failed");
    let stray = invoke(&deployer, created_event(&snap.arn, &id))
        .await
        .unwrap();
    assert_eq!(actions(&stray), vec!["refuse"], "{stray:?}");
    assert_eq!(w.current_revision().await, w.old_revision);
    assert_eq!(w.stack.revisions(&w.family).await.len(), 1);
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1);
    assert_eq!(
        pages[0].dedup_key(),
        format!("autopilot/deploy/snapshot/{id}")
    );
}

#[tokio::test]
async fn a_refused_snapshot_pages_critical_and_fails_the_invocation() {
    let w = World::new("snap-refused").await;
    let missing = w.stack.name("gone-db");
    let mapping = json!([{"repository": w.repo, "tags": ["v*"], "cluster": w.cluster,
                          "service": w.service, "container": "app", "snapshot": missing}]);
    let deployer = w.deployer(mapping, false);
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let push = push_event(&w.repo, "v1.4.2", &digest);
    let id = pre_deploy_id(&missing, &push);
    let mark = w.stack.calls().len();

    let err = invoke(&deployer, push.clone()).await.unwrap_err();
    let calls = w.calls_since(mark);

    assert_eq!(err.code, "autopilot.AwsCallRefused", "{err}");
    assert!(err.to_string().contains("CreateDBSnapshot"), "{err}");
    assert!(err.to_string().contains(&missing), "{err}");
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1, "{pages:?}");
    let p = &pages[0];
    assert_eq!(p.severity, "critical");
    assert_eq!(p.body["payload"]["class"], "deploy.snapshot_failed");
    assert_eq!(p.detail("Database"), &json!(missing));
    assert_eq!(p.detail("Snapshot"), &json!(id));
    assert_eq!(p.detail("Image"), &json!(format!("{}:v1.4.2", w.repo)));
    assert!(
        p.detail("Reason")
            .as_str()
            .unwrap()
            .contains("CreateDBSnapshot"),
        "{:?}",
        p.detail("Reason")
    );
    assert_eq!(w.current_revision().await, w.old_revision);
    assert_eq!(w.stack.revisions(&w.family).await.len(), 1);
    assert_eq!(
        (
            count(&calls, "RegisterTaskDefinition"),
            count(&calls, "UpdateService")
        ),
        (0, 0),
        "{calls:?}"
    );
    assert_eq!(
        snapshots::instance_status(SOURCE, &missing).await,
        None,
        "the configured instance does not exist"
    );

    // Lambda's retry fails the same way, and pages under the same incident.
    let err = invoke(&deployer, push).await.unwrap_err();
    assert_eq!(err.code, "autopilot.AwsCallRefused");
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].dedup_key(), p.dedup_key());
    assert_eq!(w.current_revision().await, w.old_revision);
}

#[tokio::test]
async fn a_forged_snapshot_event_deploys_nothing() {
    let w = World::new("snap-forged").await;
    let other_db = w.stack.name("billing-db");
    create_instance(SOURCE, &other_db, false).await;
    let deployer = w.deployer(w.mapping(), false);
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let push = push_event(&w.repo, "v1.4.2", &digest);
    let time = push["time"].as_str().unwrap();
    let event = push["id"].as_str().unwrap();
    let unmapped = w.stack.name("payments");
    let deploy_tags = |created_by: &'static str, repository: &str, db: &str, tag_: &str| {
        vec![
            (tag::CREATED_BY, created_by.to_string()),
            (tag::REASON, "pre-deploy".to_string()),
            (tag::DB, db.to_string()),
            (tag::DEPLOY_REPOSITORY, repository.to_string()),
            (tag::DEPLOY_TAG, tag_.to_string()),
            (tag::DEPLOY_DIGEST, digest.clone()),
            (tag::DEPLOY_EVENT, event.to_string()),
            (tag::DEPLOY_TIME, time.to_string()),
        ]
    };
    let forged_id = |db: &str, n: u32| {
        backup::pre_deploy_id(
            db,
            time_of(&push) + chrono::Duration::seconds(n as i64),
            &digest,
        )
    };
    // (snapshot id, instance, tags, what the ignore names)
    let cases = [
        (
            // Named exactly as deploy would, but nobody's created-by tag.
            pre_deploy_id(&w.db, &push),
            w.db.clone(),
            deploy_tags("", &w.repo, &w.db, "v1.4.2")
                .into_iter()
                .filter(|(k, _)| *k != tag::CREATED_BY)
                .collect::<Vec<_>>(),
            "deploy's tags",
        ),
        (
            forged_id(&w.db, 1),
            w.db.clone(),
            deploy_tags("autopilot-snapshot", &w.repo, &w.db, "v1.4.2"),
            "deploy's tags",
        ),
        (
            forged_id(&w.db, 2),
            w.db.clone(),
            deploy_tags(BY_DEPLOY, &unmapped, &w.db, "v1.4.2"),
            "no service fed by",
        ),
        (
            forged_id(&w.db, 3),
            w.db.clone(),
            deploy_tags(BY_DEPLOY, &w.repo, &w.db, "main-7"),
            "no service fed by",
        ),
        (
            // Deploy's tags on a snapshot of another instance than the service names.
            forged_id(&other_db, 4),
            other_db.clone(),
            deploy_tags(BY_DEPLOY, &w.repo, &w.db, "v1.4.2"),
            "no service fed by",
        ),
        (
            // Deploy's tags, but not a pre-deploy name.
            w.stack.name("before-migration-42"),
            w.db.clone(),
            deploy_tags(BY_DEPLOY, &w.repo, &w.db, "v1.4.2"),
            "not the creation of one of deploy's pre-deploy snapshots",
        ),
    ];
    for (id, db, tags, names) in cases {
        let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let arn = snapshots::manual_snapshot(SOURCE, Db::Instance(&db), &id, &tags).await;
        let mark = w.stack.calls().len();

        let report = invoke(&deployer, created_event(&arn, &id)).await.unwrap();

        assert_eq!(actions(&report), vec!["ignore"], "{id}: {report:?}");
        assert!(
            report.outcomes[0].reason.contains(names),
            "{id}: {report:?}"
        );
        let calls = w.calls_since(mark);
        assert!(
            calls.iter().all(|c| c == "DescribeDBSnapshots"),
            "{id}: only the snapshot is read: {calls:?}"
        );
        assert_eq!(w.current_revision().await, w.old_revision, "{id}");
    }
    assert_eq!(w.stack.revisions(&w.family).await.len(), 1);
    assert!(w.stack.pages().await.is_empty());
}

#[tokio::test]
async fn dry_run_takes_no_snapshot() {
    let w = World::new("snap-dry-run").await;
    let deployer = w.deployer(w.mapping(), true);
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let push = push_event(&w.repo, "v1.4.2", &digest);
    let id = pre_deploy_id(&w.db, &push);
    let mark = w.stack.calls().len();

    let report = invoke(&deployer, push).await.unwrap();
    let calls = w.calls_since(mark);

    assert!(report.dry_run);
    assert_eq!(
        actions(&report),
        vec!["would-snapshot", "would-deploy"],
        "{report:?}"
    );
    assert!(report.outcomes[0].reason.contains(&id), "{report:?}");
    assert!(w.snapshots().await.is_empty(), "no snapshot taken");
    assert!(
        !calls.iter().any(|c| [
            "CreateDBSnapshot",
            "AddTagsToResource",
            "RegisterTaskDefinition",
            "UpdateService",
            "TagResource"
        ]
        .contains(&c.as_str())),
        "{calls:?}"
    );
    assert_eq!(w.current_revision().await, w.old_revision);
    assert_eq!(w.stack.revisions(&w.family).await.len(), 1);
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert!(
        pages[0].summary().starts_with("[dry-run]"),
        "{}",
        pages[0].summary()
    );
}
