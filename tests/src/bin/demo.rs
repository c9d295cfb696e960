//! `make demo`: the deploy story on the local emulator, start to verdict.
//!
//! Stands up repository `backend`, cluster `prod` and two services fed by the
//! same image (`backend` and `worker`), delivers `events/ecr-push.json`, then
//! plays the cluster's side: `backend` completes, `worker` crashes and the
//! circuit breaker rolls it back. Prints what changed and what on-call received.
//! Then the rotation story on a real local PostgreSQL: `prod/db/app` rotates
//! through the four steps, its `DATABASE_URL` secret is rewritten and the
//! `backend` service redeployed.
//! Then the remediation story: a CPU alarm on `prod/web` scales it out, a
//! memory alarm inside the cooldown is refused, the CPU alarm's OK resolves the
//! page, and once the cooldown has passed the sweep scales it back in; the audit
//! trail is printed from the guardrail table.
//! Then the snapshot story across two Regions: a person's snapshot of the
//! encrypted `orders-db` is copied to us-west-2 with the DR key and confirmed;
//! the hourly check prunes autopilot's old snapshots in both Regions, keeps a
//! foreign one, and starts a restore drill, which logs in to the restored copy
//! (the harness's TLS PostgreSQL) and pages its result; last, a cancelled copy
//! and a missing DR key page critical.
//! With `--serve` it keeps the emulator up afterwards for `cargo lambda invoke`.

use autopilot_shared::Report;
use autopilot_tests::*;
use deploy::Deployer;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() {
    let serve = std::env::args().any(|a| a == "--serve");
    println!("autopilot demo: deploy on image push");
    println!(
        "local AWS emulator (moto + bridge): {}\n",
        emulator().endpoint()
    );

    let stack = Stack::unprefixed().await;
    let repo = stack.repository("backend").await;
    stack.push(&repo, "v1.4.1").await;
    let cluster = stack.cluster("prod").await;
    let api = stack
        .task_definition("backend", "app", &stack.image(&repo, "v1.4.1"))
        .await;
    let worker = stack
        .task_definition("worker", "worker", &stack.image(&repo, "v1.4.1"))
        .await;
    let worker_v1 = worker.task_definition_arn().unwrap().to_string();
    let api_arn = stack
        .service(&cluster, "backend", api.task_definition_arn().unwrap())
        .await;
    let worker_arn = stack.service(&cluster, "worker", &worker_v1).await;
    println!("== 1. The stack");
    println!("   ECR repository  {repo} (running v1.4.1)");
    println!("   ECS cluster     {cluster}: services backend (backend:1, container app) and worker (worker:1, container worker)");
    println!("   on-call topic   {}\n", stack.topic_arn);

    let mapping = json!([
        {"repository": repo, "tags": ["v*"], "cluster": cluster, "service": "backend", "container": "app"},
        {"repository": repo, "tags": ["v*"], "cluster": cluster, "service": "worker", "container": "worker"},
    ]);
    println!("== 2. Configuration (AUTOPILOT_SERVICES)\n   {mapping}\n");
    let deployer = Deployer::new(&stack.sdk, stack.config(mapping, false));

    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("events/ecr-push.json")).unwrap(),
    )
    .unwrap();
    let digest = event["detail"]["image-digest"].as_str().unwrap();
    let tag = event["detail"]["image-tag"].as_str().unwrap();
    stack.push_digest(&repo, tag, digest).await;
    println!("== 3. CI pushes {repo}:{tag} ({digest}); EventBridge delivers events/ecr-push.json");
    let mark = stack.calls().len();
    let report = invoke(&deployer, event).await;
    print_report(&report);
    let deploy_calls: Vec<String> = stack.calls()[mark..].to_vec();
    for service in ["backend", "worker"] {
        let s = stack.describe_service(&cluster, service).await;
        let revision = s.task_definition().unwrap();
        let (td, _) = stack.describe_task_definition(revision).await;
        let primary = s
            .deployments()
            .iter()
            .find(|d| d.status() == Some("PRIMARY"))
            .unwrap();
        println!(
            "   {cluster}/{service}: now {} running {} (deployment {}, circuit breaker {:?})",
            revision.rsplit('/').next().unwrap(),
            td.container_definitions()[0].image().unwrap(),
            primary.id().unwrap(),
            s.deployment_configuration()
                .and_then(|c| c.deployment_circuit_breaker())
                .map(|b| (b.enable(), b.rollback()))
                .unwrap()
        );
    }
    println!("   AWS calls made: {}", deploy_calls.join(" -> "));
    print_pages(&stack).await;

    println!("== 4. The cluster: backend becomes healthy; worker's tasks crash and the circuit breaker rolls back");
    let api_deployment = report.outcomes[0]
        .detail("deployment_id")
        .unwrap()
        .to_string();
    let worker_deployment = report.outcomes[1]
        .detail("deployment_id")
        .unwrap()
        .to_string();
    bridge(
        "/_bridge/ecs/deployment",
        json!({"cluster": cluster, "service": "backend", "deploymentId": api_deployment, "outcome": "COMPLETED"}),
    );
    let reason = "ECS deployment circuit breaker: tasks failed to start.";
    bridge(
        "/_bridge/ecs/deployment",
        json!({"cluster": cluster, "service": "worker", "deploymentId": worker_deployment, "outcome": "FAILED", "reason": reason,
               "stoppedReasons": ["Essential container in task exited", "Essential container in task exited", "Task failed container health checks"],
               "rollbackTo": worker_v1}),
    );
    let completed = deployment_event(
        &api_arn,
        &api_deployment,
        "SERVICE_DEPLOYMENT_COMPLETED",
        "ECS deployment completed.",
    );
    let failed = deployment_event(
        &worker_arn,
        &worker_deployment,
        "SERVICE_DEPLOYMENT_FAILED",
        reason,
    );
    println!("   EventBridge delivers SERVICE_DEPLOYMENT_COMPLETED for backend and SERVICE_DEPLOYMENT_FAILED for worker");
    print_report(&invoke(&deployer, completed).await);
    print_report(&invoke(&deployer, failed.clone()).await);
    print_pages(&stack).await;

    println!("== 5. The same FAILED event again (EventBridge delivers at least once)");
    print_report(&invoke(&deployer, failed).await);
    print_pages(&stack).await;

    rotation_story(&stack, &cluster).await;
    remediation_story(&stack, &cluster).await;
    let dr_key = snapshot_story(&stack).await;

    if serve {
        println!("Emulator stays up for local invokes:");
        println!("   AWS_ENDPOINT_URL={} AWS_REGION={REGION} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \\", emulator().endpoint());
        println!("   AUTOPILOT_TOPIC_ARN={} AUTOPILOT_SERVICES='[{{\"repository\":\"backend\",\"cluster\":\"prod\",\"service\":\"backend\",\"container\":\"app\"}}]' cargo lambda watch", stack.topic_arn);
        println!("   cargo lambda invoke deploy --data-file events/ecr-push-untagged.json");
        println!("   (snapshot also needs AUTOPILOT_SNAPSHOT_DATABASES='[{{\"instance\":\"orders-db\"}}]' AUTOPILOT_SNAPSHOT_DR_REGION=us-west-2 AUTOPILOT_SNAPSHOT_DR_KMS_KEY={dr_key})");
        println!("   cargo lambda invoke snapshot --data-file events/snapshot/db-snapshot-copy-cancelled.json");
        println!("Press Ctrl-C to stop.");
        std::thread::park();
    }
}

/// Rotates `prod/db/app` on the harness PostgreSQL and shows what changed. Never prints a value.
async fn rotation_story(stack: &Stack, cluster: &str) {
    use autopilot_tests::postgres::{ident, literal, postgres};
    use autopilot_tests::rotation::{rds_secret, rotation_event, STEPS};

    println!("== 6. Credential rotation: prod/db/app on a local PostgreSQL");
    let pg = postgres();
    let old = "initial-password-0001";
    pg.exec(&format!(
        "CREATE ROLE {} LOGIN PASSWORD {}",
        ident("app"),
        literal(old)
    ))
    .await;
    let arn = stack
        .create_secret("prod/db/app", &rds_secret(pg.port, "app", old).to_string())
        .await;
    let url = stack
        .create_secret(
            "prod/db/url",
            &format!(
                "postgresql://app:{old}@127.0.0.1:{}/postgres?sslmode=disable",
                pg.port
            ),
        )
        .await;
    let rotations = json!([{"secret": "prod/db/app", "strategy": "postgres-single-user",
                            "dependents": [{"secret": "prod/db/url", "format": "url"}],
                            "consumers": [{"cluster": cluster, "service": "backend"}]}]);
    println!("   PostgreSQL on 127.0.0.1:{} (user app); secrets prod/db/app and prod/db/url (DATABASE_URL)", pg.port);
    println!("   AUTOPILOT_ROTATIONS = {rotations}");
    let rotator =
        rotate::Rotator::new(&stack.sdk, stack.rotation_config(rotations)).expect("rotator");
    let deployments_before = stack
        .describe_service(cluster, "backend")
        .await
        .deployments()
        .len();

    let token = stack.start_rotation(&arn).await;
    println!(
        "   Secrets Manager starts a rotation (token {token}) and calls the function four times:"
    );
    for step in STEPS {
        match rotator
            .handle(LambdaEvent::new(
                rotation_event(step, &arn, &token),
                Context::default(),
            ))
            .await
        {
            Ok(r) => println!(
                "   [{}] {step}: {}",
                r.outcomes[0].action, r.outcomes[0].reason
            ),
            Err(e) => {
                eprintln!("   {step} failed: {e}");
                std::process::exit(1);
            }
        }
    }
    stack.end_rotation(&arn, &token).await;

    let current: Value =
        serde_json::from_str(&stack.secret_value(&arn, "AWSCURRENT").await.unwrap()).unwrap();
    let new_password = current["password"].as_str().unwrap();
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    println!(
        "   new AWSCURRENT password ({} characters, not shown) logs in: {}",
        new_password.len(),
        yes_no(pg.can_login("app", new_password).await)
    );
    println!(
        "   old password still logs in: {}",
        yes_no(pg.can_login("app", old).await)
    );
    let dependent = stack.secret_value(&url, "AWSCURRENT").await.unwrap();
    println!(
        "   prod/db/url rewritten with the new password: {}",
        yes_no(dependent.contains(new_password) && !dependent.contains(old))
    );
    let deployments_after = stack
        .describe_service(cluster, "backend")
        .await
        .deployments()
        .len();
    println!("   {cluster}/backend redeployed so new tasks read the new value: {deployments_before} -> {deployments_after} deployments");
    print_pages(stack).await;
}

/// An ECS CPU alarm scales `prod/web` out; a second alarm in the cooldown is
/// refused; OK resolves; after the cooldown the sweep scales back in.
async fn remediation_story(stack: &Stack, cluster: &str) {
    use autopilot_tests::alarms::{AlarmSpec, Form};
    use remediate::Remediator;
    let td = stack.task_definition("web", "app", "nginx:1.27").await;
    stack
        .service(cluster, "web", td.task_definition_arn().unwrap())
        .await;
    stack.settle_service(cluster, "web").await;
    let table = stack.guard_table().await;
    let services =
        json!([{"cluster": cluster, "service": "web", "min": 2, "max": 10, "step": 2}]).to_string();
    let config = stack.remediate_config(&table, &[(remediate::config::SERVICES, services.clone())]);
    let remediator = Remediator::new(&stack.sdk, config);
    let cpu = stack
        .alarm(AlarmSpec::ecs_cpu("web-cpu-high", cluster, "web"))
        .await;
    let memory = stack
        .alarm(AlarmSpec::ecs(
            "web-memory-high",
            "MemoryUtilization",
            85.0,
            cluster,
            "web",
        ))
        .await;
    let desired = || async { stack.describe_service(cluster, "web").await.desired_count() };
    let run = |event: Value| async {
        match remediator
            .handle(LambdaEvent::new(event, Context::default()))
            .await
        {
            Ok(report) => print_report(&report),
            Err(e) => {
                eprintln!("invocation failed: {e}");
                std::process::exit(1);
            }
        }
    };
    println!("== 7. Remediation: alarms {cpu} (CPU > 80 %) and {memory} (memory > 85 %) on {cluster}/web");
    println!("   AUTOPILOT_REMEDIATE_SERVICES = {services}");
    println!("   guardrails: cooldown 600 s, at most 3 actions an hour, flapping over 4 changes an hour; table {table}\n");

    println!("== 8. {cpu} goes to ALARM; EventBridge delivers events/remediate/ecs-cpu-high.eventbridge.json");
    stack.set_alarm(&cpu, "ALARM").await;
    run(stack.alarm_event(Form::EventBridge, &cpu, "ALARM").await).await;
    println!("   {cluster}/web desired count: {}", desired().await);
    print_pages(stack).await;

    println!(
        "== 9. {memory} goes to ALARM one minute later, inside the cooldown (its SNS delivery)"
    );
    stack.set_alarm(&memory, "ALARM").await;
    run(stack.alarm_event(Form::Sns, &memory, "ALARM").await).await;
    println!("   {cluster}/web desired count: {}", desired().await);
    print_pages(stack).await;

    println!("== 10. Both alarms return to OK (the memory one by the Lambda alarm action)");
    stack.set_alarm(&memory, "OK").await;
    run(stack.alarm_event(Form::Direct, &memory, "OK").await).await;
    stack.set_alarm(&cpu, "OK").await;
    run(stack.alarm_event(Form::EventBridge, &cpu, "OK").await).await;
    println!(
        "   {cluster}/web desired count: {} (the cooldown has not passed)",
        desired().await
    );
    print_pages(stack).await;

    println!("== 11. Ten minutes later the sweep runs (the demo ends the cooldown by rewriting its guard item)");
    stack
        .end_cooldown(&table, &format!("ecs:{cluster}/web"))
        .await;
    run(template::scheduled_event(
        "RemediateFunction",
        "ScaleInSweep",
        "2026-11-24T03:15:00Z",
    ))
    .await;
    println!("   {cluster}/web desired count: {}", desired().await);
    print_pages(stack).await;

    println!("== 12. The audit trail (aws dynamodb query --table-name {table} --key-condition-expression 'pk = :p' ...)");
    for subject in [format!("ecs:{cluster}/web")] {
        for a in stack.audit(&table, &subject).await {
            println!(
                "   {}  {:<8} {:<16} {}",
                a["time"].as_str().unwrap_or_default(),
                a["decision"].as_str().unwrap_or_default(),
                a["alarm"].as_str().unwrap_or_default(),
                a["reason"].as_str().unwrap_or_default()
            );
        }
    }
    println!();
}

/// The snapshot story: a DR copy, retention, a restore drill, and two failures.
/// Returns the DR key's ARN (for `--serve`).
async fn snapshot_story(stack: &Stack) -> String {
    use autopilot_shared::backup::{self, reason, stamp, tag, BY_SNAPSHOT};
    use autopilot_tests::postgres::{ident, literal, postgres_tls, ADMIN_PASSWORD};
    use autopilot_tests::snapshots::{self as snaps, Db, DR, SOURCE};
    use chrono::{Duration, DurationRound, Utc};
    use snapshot::config as cfg;
    use snapshot::Snapshotter;

    let db = "orders-db";
    let drill_instance = backup::drill_instance_id(db);
    let tags = |t: &std::collections::BTreeMap<String, String>| {
        t.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };

    // The restore drill logs in to the restored copy with the application's
    // secret; the harness's TLS-only PostgreSQL plays that copy.
    let pg = postgres_tls();
    let ca = pg.ca.clone().expect("the TLS server's CA");
    pg.exec(&format!(
        "CREATE ROLE {} LOGIN PASSWORD {}",
        ident("orders_app"),
        literal("backup-time-password")
    ))
    .await;
    pg.exec("CREATE DATABASE orders").await;
    let orders = pg
        .login_to("orders", "postgres", ADMIN_PASSWORD)
        .await
        .expect("superuser login to orders");
    orders
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

    let instance = snaps::create_instance(SOURCE, db, true).await;
    let dr_key = snaps::kms_key(DR);
    let databases = json!([{"instance": db, "drill": {"secret": secret,
        "query": "SELECT count(*) FROM orders", "min": 1}}]);
    let vars = |kms: bool| {
        let mut vars = vec![
            (cfg::AWS_REGION, SOURCE.to_string()),
            (cfg::DATABASES, databases.to_string()),
            (cfg::DR_REGION, DR.to_string()),
            (cfg::KEEP, "2".to_string()),
            (cfg::DB_CA_BUNDLE, ca.clone()),
        ];
        if kms {
            vars.push((cfg::DR_KMS_KEY, dr_key.clone()));
        }
        vars
    };
    let config = |kms: bool| {
        cfg::Config::from_lookup(stack.lookup(&vars(kms))).expect("valid snapshot configuration")
    };
    let snapshotter_retention = config(true).retention_days;
    let snapshotter = Snapshotter::new(&stack.sdk, config(true)).expect("snapshotter");
    println!("== 13. Backups in a second Region: RDS instance {db} in {SOURCE}, copies to {DR}");
    println!(
        "   {db}: encrypted with {}",
        instance.kms_key_id().unwrap_or("?")
    );
    for (k, v) in vars(true) {
        println!("   {k} = {v}");
    }
    println!(
        "   ({DR}'s RDS events reach the function through the rule dr-region.yaml deploys there)\n"
    );

    println!("== 14. Before a migration, a person takes snapshot before-migration-42; EventBridge delivers");
    println!("   events/snapshot/db-snapshot-manual-created.json (RDS-EVENT-0042)");
    snaps::hold_copies("autopilot-dr-", true);
    snaps::manual_snapshot(
        SOURCE,
        Db::Instance(db),
        "before-migration-42",
        &[("team", "orders")],
    )
    .await;
    let mark = stack.calls().len();
    run(
        &snapshotter,
        sample("events/snapshot/db-snapshot-manual-created.json"),
    )
    .await;
    println!("   AWS calls made: {}", stack.calls()[mark..].join(" -> "));
    let copy_id = backup::dr_copy_id("before-migration-42", false);
    let show_copy = |label: &'static str| {
        let copy_id = copy_id.clone();
        async move {
            let copy = snaps::snapshot(DR, Db::Instance(db), &copy_id)
                .await
                .expect("the DR copy");
            println!("   {label} {copy_id} in {DR}: {}", copy.status);
            println!(
                "     KMS key  {}",
                copy.kms_key_id.as_deref().unwrap_or("none")
            );
            println!("     tags     {}", tags(&copy.tags));
        }
    };
    show_copy("copy").await;
    println!("\n   RDS finishes the copy; the rule in {DR} forwards events/snapshot/db-snapshot-copy-finished-cross-region.json (RDS-EVENT-0060)");
    snaps::finish_snapshot(DR, &copy_id, false, "available");
    snaps::hold_copies("autopilot-dr-", false);
    run(
        &snapshotter,
        sample("events/snapshot/db-snapshot-copy-finished-cross-region.json"),
    )
    .await;
    show_copy("copy").await;
    print_pages(stack).await;

    println!(
        "== 15. Weeks of backups, then the hourly check (events/snapshot/snapshot-check.json)"
    );
    let day = Utc::now().duration_trunc(Duration::days(1)).unwrap();
    for days in [35, 28, 21, 14] {
        let taken = day - Duration::days(days) + Duration::hours(3);
        let id = backup::scheduled_id(db, taken, false);
        let arn = snaps::manual_snapshot(
            SOURCE,
            Db::Instance(db),
            &id,
            &[
                (tag::CREATED_BY, BY_SNAPSHOT),
                (tag::REASON, reason::SCHEDULED),
                (tag::DB, db),
            ],
        )
        .await;
        snaps::set_snapshot_time(SOURCE, &id, false, taken.timestamp());
        let copy = backup::dr_copy_id(&id, false);
        let copy_arn = snaps::copy_snapshot(DR, false, &arn, &copy, Some(&dr_key)).await;
        snaps::rds(DR)
            .await
            .add_tags_to_resource()
            .resource_name(&copy_arn)
            .tags(snaps::tag(tag::REASON, reason::DR_COPY))
            .tags(snaps::tag(tag::SOURCE, &arn))
            .tags(snaps::tag(tag::COPY_STARTED, &stamp(taken)))
            .tags(snaps::tag(
                tag::CONFIRMED,
                &stamp(taken + Duration::minutes(40)),
            ))
            .send()
            .await
            .expect("tag the old copy");
        snaps::set_snapshot_time(DR, &copy, false, (taken + Duration::minutes(5)).timestamp());
    }
    let foreign_time = day - Duration::days(60) + Duration::hours(2);
    let foreign = format!("nightly-orders-db-{}", foreign_time.format("%Y%m%d"));
    snaps::manual_snapshot(
        SOURCE,
        Db::Instance(db),
        &foreign,
        &[(tag::CREATED_BY, BY_SNAPSHOT)],
    )
    .await;
    snaps::set_snapshot_time(SOURCE, &foreign, false, foreign_time.timestamp());
    let automated_time = day - Duration::days(40) + Duration::hours(3) + Duration::minutes(10);
    snaps::automated_snapshot(
        SOURCE,
        Db::Instance(db),
        &format!("rds:{db}-{}", automated_time.format("%Y-%m-%d-%H-%M")),
        automated_time.timestamp(),
    );
    let list = |region: &'static str| async move {
        let mut all = snaps::snapshots(region, Db::Instance(db)).await;
        all.sort_by_key(|s| std::cmp::Reverse(s.created));
        for s in all {
            let age = (Utc::now().timestamp() - s.created) / 86_400;
            let whose = match s.tags.get(tag::CREATED_BY) {
                Some(by) if s.id.starts_with(backup::PREFIX) => format!("autopilot's ({by})"),
                Some(by) => format!("not autopilot's name, though tagged {by}"),
                None => "not autopilot's".to_string(),
            };
            println!("     {:<48} {:>2} days  {:<9} {whose}", s.id, age, s.kind);
        }
    };
    println!("   autopilot's nightly snapshots of the last five weeks, each with its DR copy (made by fixtures,");
    println!("   their create times moved back), a person's nightly-… snapshot tagged to look like autopilot's,");
    println!("   and an automated backup. Retention: {} days (the default), keep the newest 2 of autopilot's per Region.", snapshotter_retention);
    println!("   {SOURCE} before:");
    list(SOURCE).await;
    println!("   {DR} before:");
    list(DR).await;
    snaps::hold_instances(&drill_instance, true);
    println!();
    let mark = stack.calls().len();
    run(&snapshotter, sample("events/snapshot/snapshot-check.json")).await;
    println!("   AWS calls made: {}", stack.calls()[mark..].join(" -> "));
    println!("   {SOURCE} after:");
    list(SOURCE).await;
    println!("   {DR} after:");
    list(DR).await;
    println!(
        "   drill instance {drill_instance} in {DR}: {}",
        snaps::instance_status(DR, &drill_instance)
            .await
            .unwrap_or_else(|| "none".into())
    );
    print_pages(stack).await;

    println!("== 16. The restore drill");
    println!("   prod/db/orders was rotated after the backup was taken: its AWSCURRENT password is not in the");
    println!(
        "   backup, its AWSPREVIOUS one is. Its host is production's, which the drill never uses."
    );
    stack
        .edit_secret(&secret, |v| {
            v["password"] = json!("rotated-after-the-backup")
        })
        .await;
    snaps::finish_instance(DR, &drill_instance, "available");
    snaps::point_at(DR, &drill_instance, pg.port);
    println!("   RDS finishes the restore (the demo points its endpoint at the TLS PostgreSQL on 127.0.0.1:{},", pg.port);
    println!("   verified against the harness CA) and the rule in {DR} forwards events/snapshot/drill-instance-restored.json");
    let mark = stack.calls().len();
    run(
        &snapshotter,
        sample("events/snapshot/drill-instance-restored.json"),
    )
    .await;
    println!(
        "   AWS calls made: {} (AWSCURRENT was refused, AWSPREVIOUS logged in)",
        stack.calls()[mark..].join(" -> ")
    );
    let copy = snaps::snapshot(DR, Db::Instance(db), &copy_id)
        .await
        .expect("the drilled copy");
    println!(
        "   {copy_id}: {}={}",
        tag::DRILL,
        copy.tags
            .get(tag::DRILL)
            .map(String::as_str)
            .unwrap_or("none")
    );
    let status = snaps::instance_status(DR, &drill_instance).await;
    println!(
        "   drill instance {drill_instance}: {} (no final snapshot)",
        status.as_deref().unwrap_or("gone")
    );
    if status.is_some() {
        snaps::finish_instance(DR, &drill_instance, "deleted");
    }
    snaps::hold_instances(&drill_instance, false);
    print_pages(stack).await;

    println!("== 17. Failures page: a DR copy is cancelled (events/snapshot/db-snapshot-copy-cancelled.json, RDS-EVENT-0061)");
    run(
        &snapshotter,
        sample("events/snapshot/db-snapshot-copy-cancelled.json"),
    )
    .await;
    println!("\n   and the function configured without AUTOPILOT_SNAPSHOT_DR_KMS_KEY meets an encrypted snapshot:");
    let keyless = Snapshotter::new(&stack.sdk, config(false)).expect("snapshotter");
    let id = "before-index-rebuild-7";
    snaps::manual_snapshot(SOURCE, Db::Instance(db), id, &[]).await;
    let mut created = sample("events/snapshot/db-snapshot-manual-created.json");
    let arn = format!("arn:aws:rds:{SOURCE}:{ACCOUNT}:snapshot:{id}");
    created["resources"] = json!([arn]);
    created["detail"]["SourceArn"] = json!(arn);
    created["detail"]["SourceIdentifier"] = json!(id);
    run(&keyless, created).await;
    print_pages(stack).await;
    dr_key
}

/// Runs one snapshot invocation in-process and prints its outcomes.
async fn run(snapshotter: &snapshot::Snapshotter, event: Value) -> Report {
    match snapshotter
        .handle(LambdaEvent::new(event, Context::default()))
        .await
    {
        Ok(report) => {
            print_report(&report);
            report
        }
        Err(e) => {
            eprintln!("invocation failed: {e}");
            std::process::exit(1);
        }
    }
}

/// A sample event from `events/`.
fn sample(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join(path)).unwrap()).unwrap()
}

async fn invoke(deployer: &Deployer, event: Value) -> Report {
    match deployer
        .handle(LambdaEvent::new(event, Context::default()))
        .await
    {
        Ok(report) => report,
        Err(e) => {
            eprintln!("invocation failed: {e}");
            std::process::exit(1);
        }
    }
}

fn print_report(report: &Report) {
    for o in &report.outcomes {
        println!("   [{}] {}: {}", o.action, o.resource, o.reason);
    }
}

async fn print_pages(stack: &Stack) {
    let pages = stack.pages().await;
    println!("\n   On-call received {} page(s):", pages.len());
    for p in pages {
        println!(
            "   +- {} ({} {}, key {})",
            p.subject,
            p.severity,
            p.action(),
            p.dedup_key()
        );
        if let Some(details) = p.body["payload"]["custom_details"].as_object() {
            for (k, v) in details {
                match v {
                    Value::Array(items) => {
                        println!("   |  {k}:");
                        for i in items {
                            println!("   |    - {}", i.as_str().unwrap_or_default());
                        }
                    }
                    other => println!("   |  {k}: {}", other.as_str().unwrap_or_default()),
                }
            }
        }
    }
    println!();
}
