//! The fault matrix (issue #10): every function, every AWS call it makes, every
//! fault of `autopilot_tests::faults`, through a fault-injecting proxy between the
//! function's SDK clients and the emulator. After each case, with Lambda's retries
//! of a failed invocation, the function's invariants must hold.
//!
//! The calls are not listed by hand: a fault-free run through the proxy finds the
//! operations the function makes, and the matrix covers each of them.

use autopilot_shared::invocation::code;
use autopilot_shared::{Failure, Report};
use autopilot_tests::faults::{
    self, cases, run_matrix, with_lambda_retries, Attempt, Case, Fault, FaultProxy,
};
use autopilot_tests::worlds::{DeployWorld, RemediateWorld, RotateWorld, SnapshotWorld};
use autopilot_tests::*;
use autopilot_tests::{postgres, rotation};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;

/// Cases of one function run this many at a time.
const PARALLEL: usize = 4;

/// What Lambda's attempts at one event must show under a fault:
/// - a failed invocation has a retryable error type: AWS's failure passed on
///   (`AwsCallFailed`), a page that could not be published, or several of those;
///   never `AwsCallRefused` (the faults are all transient), never a malformed event;
/// - a fault the SDK's retries absorb does not fail the invocation, except on the
///   operations in `not_repeated`, which the function deliberately does not let the
///   SDK repeat once sent (`shared::aws::NotRepeatedIfSent`): there the invocation
///   fails, and Lambda's retry must finish the work;
/// - a page that could not be published fails the invocation (so Lambda retries it
///   or it reaches the dead-letter queue): it is never dropped;
/// - once AWS recovers, Lambda's retries finish the work.
fn check_failures(
    case: Option<&Case>,
    not_repeated: &[&str],
    attempts: &[Attempt<Report, Failure>],
) -> Result<(), String> {
    for failure in attempts.iter().filter_map(|a| a.answer.as_ref().err()) {
        let allowed = [
            code::AWS_CALL_FAILED,
            code::PAGE_FAILED,
            code::PARTIAL_FAILURE,
        ];
        if !allowed.contains(&failure.code) {
            return Err(format!(
                "failed as {} (a transient fault must be retryable): {}",
                failure.code, failure.message
            ));
        }
    }
    if let (Some(case), Some(first)) = (case, attempts.first()) {
        let not_retried =
            not_repeated.contains(&case.operation.as_str()) && case.fault != Fault::Latency;
        let absorbed = !case.outlasts_the_sdk() && !not_retried;
        if absorbed && first.answer.is_err() {
            return Err(format!(
                "the SDK's retries should have absorbed the fault, but the invocation failed: {:?}",
                first.answer.as_ref().err()
            ));
        }
        let unpublished = first
            .calls
            .iter()
            .filter(|c| c.operation == "Publish" && c.fault == Some(case.fault))
            .count();
        if case.outlasts_the_sdk() && unpublished >= case.count as usize && first.answer.is_ok() {
            return Err(format!(
                "{unpublished} attempts to publish a page failed, and the invocation succeeded: the page is lost"
            ));
        }
    }
    match attempts.last().map(|a| &a.answer) {
        Some(Ok(_)) => Ok(()),
        other => Err(format!(
            "Lambda's retries did not finish the work once AWS recovered: {other:?}"
        )),
    }
}

/// The matrix of one scenario: a fault-free run, which must make the `expected`
/// calls among those it makes, then every fault on every call it made.
async fn matrix(
    function: &str,
    expected: &[&str],
    scenario: impl AsyncFn(Option<&Case>) -> Result<Vec<String>, String>,
) {
    let operations = scenario(None)
        .await
        .unwrap_or_else(|e| panic!("{function}, fault-free: {e}"));
    for expected in expected {
        assert!(
            operations.iter().any(|o| o == expected),
            "{function}, fault-free, made no {expected}: {operations:?}"
        );
    }
    run_matrix(function, cases(&operations), PARALLEL, async |case| {
        scenario(Some(case)).await.map(|_| ())
    })
    .await;
}

/// One event under `case`, as Lambda delivers it: the fault armed, the invocation
/// retried while it fails ([`with_lambda_retries`]), and [`check_failures`] on
/// the attempts, which are returned.
async fn deliver(
    proxy: &FaultProxy,
    case: Option<&Case>,
    not_repeated: &[&str],
    invoke: impl AsyncFn() -> Result<Report, Failure>,
) -> Result<Vec<Attempt<Report, Failure>>, String> {
    if let Some(c) = case {
        proxy.arm(&c.operation, c.fault, c.count);
    }
    let attempts = with_lambda_retries(proxy, invoke).await;
    check_failures(case, not_repeated, &attempts)?;
    Ok(attempts)
}

/// The operations the case made, once it is known that its fault was injected.
fn finish(proxy: &FaultProxy, case: Option<&Case>) -> Result<Vec<String>, String> {
    match case {
        Some(case) if !proxy.injected(case) => Err("the fault was never injected".into()),
        _ => Ok(proxy.operations()),
    }
}

// ---------------------------------------------------------------------------
// deploy: a push of v1.4.2 to prod/backend, which runs v1.4.1
// ---------------------------------------------------------------------------

/// RegisterTaskDefinition has no client token: deploy does not let the SDK repeat it.
const DEPLOY_NOT_REPEATED: &[&str] = &["RegisterTaskDefinition"];

/// One push under `case`: deploy's invariants. Never two revisions for one push;
/// never a rollback to an older image; the service ends on the new image, and
/// on-call was told it started.
async fn deploy_case(case: Option<&Case>) -> Result<Vec<String>, String> {
    let w = DeployWorld::new("faults-deploy").await;
    let proxy = FaultProxy::start();
    let deployer = w.deployer(&proxy.sdk_config().await);
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let event = ecr_event(&w.repo, Some("v1.4.2"), &digest, "PUSH", "SUCCESS");
    let answers = deliver(&proxy, case, DEPLOY_NOT_REPEATED, async || {
        deployer
            .handle(LambdaEvent::new(event.clone(), Context::default()))
            .await
    })
    .await?;

    let revisions = w.revisions_of(&digest).await;
    if revisions.len() != 1 {
        return Err(format!(
            "{} revisions registered for one push: {revisions:?}",
            revisions.len()
        ));
    }
    let running = w
        .stack
        .describe_service(&w.cluster, "backend")
        .await
        .task_definition()
        .unwrap_or_default()
        .to_string();
    if running != revisions[0] {
        return Err(format!(
            "the service runs {running}, not the pushed image's {}",
            revisions[0]
        ));
    }
    let pages = w.stack.pages().await;
    let started: Vec<_> = pages
        .iter()
        .filter(|p| p.body["payload"]["class"] == "deploy.started")
        .collect();
    if started.is_empty() {
        return Err(format!(
            "on-call was not told the deploy started; pages: {:?}",
            pages.iter().map(|p| p.summary()).collect::<Vec<_>>()
        ));
    }
    if started
        .iter()
        .any(|p| p.dedup_key() != started[0].dedup_key())
    {
        return Err("the started pages of one push have different dedup keys".into());
    }

    // The verdict, under the same fault: the circuit breaker fails the deployment and
    // rolls back; on-call hears why, once the retries are done.
    let deployment_id = answers
        .iter()
        .filter_map(|a| a.answer.as_ref().ok())
        .flat_map(|r| r.outcomes.iter())
        .find_map(|o| o.detail("deployment_id"))
        .map(str::to_string)
        .ok_or("no deployment id in the push's report")?;
    let old = w.revision_running("v1.4.1").await;
    let reason = "ECS deployment circuit breaker: tasks failed to start.";
    bridge(
        "/_bridge/ecs/deployment",
        json!({"cluster": w.cluster, "service": "backend", "deploymentId": deployment_id, "outcome": "FAILED",
               "reason": reason, "stoppedReasons": ["Essential container in task exited"], "rollbackTo": old}),
    );
    let service_arn = format!(
        "arn:aws:ecs:{REGION}:{ACCOUNT}:service/{}/backend",
        w.cluster
    );
    let verdict = deployment_event(
        &service_arn,
        &deployment_id,
        "SERVICE_DEPLOYMENT_FAILED",
        reason,
    );
    deliver(&proxy, case, DEPLOY_NOT_REPEATED, async || {
        deployer
            .handle(LambdaEvent::new(verdict.clone(), Context::default()))
            .await
    })
    .await?;
    let failed: Vec<_> = w
        .stack
        .pages()
        .await
        .into_iter()
        .filter(|p| p.body["payload"]["class"] == "deploy.failed")
        .collect();
    if failed.is_empty() || failed.iter().any(|p| p.severity != "critical") {
        return Err(format!(
            "on-call was not paged critical for the failed deployment: {:?}",
            failed.iter().map(|p| p.summary()).collect::<Vec<_>>()
        ));
    }
    if !failed.iter().all(|p| p.detail("Reason") == &json!(reason)) {
        return Err("the failed page does not carry ECS's reason".into());
    }
    finish(&proxy, case)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_keeps_its_invariants_under_every_fault() {
    matrix(
        "deploy",
        &[
            "DescribeServices",
            "RegisterTaskDefinition",
            "UpdateService",
            "Publish",
            "ListTasks",
            "DescribeTasks",
        ],
        deploy_case,
    )
    .await;
}

#[test]
fn every_fault_is_in_the_matrix_with_the_count_that_tests_its_hardest_path() {
    let all = cases(&["UpdateService".to_string()]);
    assert_eq!(all.len(), Fault::ALL.len());
    let outlasting: Vec<Fault> = all
        .iter()
        .filter(|c| c.outlasts_the_sdk())
        .map(|c| c.fault)
        .collect();
    assert_eq!(
        outlasting,
        vec![Fault::Throttle, Fault::Unavailable, Fault::ResetAfter]
    );
}

// ---------------------------------------------------------------------------
// remediate: prod/web at 2 tasks (bounds 2–10, step 2); its CPU alarm fires, then clears
// ---------------------------------------------------------------------------

/// One ALARM then OK under `case`: remediate's invariants. Never beyond the bounds;
/// never two actions inside the cooldown (Lambda's retries of the ALARM included);
/// never silent: on-call is paged the action, and the OK resolves that page.
async fn remediate_case(case: Option<&Case>) -> Result<Vec<String>, String> {
    use autopilot_tests::alarms::{AlarmSpec, Form};
    let w = RemediateWorld::new("faults-remediate", &["web"]).await;
    let (stack, table, cluster, service) = (&w.stack, &w.table, &w.cluster, &w.services[0]);
    let proxy = FaultProxy::start();
    let remediator = w.remediator(&proxy.sdk_config().await, &[]);
    let alarm = stack
        .alarm(AlarmSpec::ecs_cpu("web-cpu-high", cluster, service))
        .await;
    let resource = w.resource(service);

    let mut trigger_key = None;
    for state in ["ALARM", "OK"] {
        stack.set_alarm(&alarm, state).await;
        let event = stack.alarm_event(Form::EventBridge, &alarm, state).await;
        deliver(&proxy, case, &[], async || {
            remediator
                .handle(LambdaEvent::new(event.clone(), Context::default()))
                .await
        })
        .await?;
        let pages = stack.pages().await;
        let wanted = if state == "ALARM" {
            "trigger"
        } else {
            "resolve"
        };
        let Some(page) = pages.iter().find(|p| p.action() == wanted) else {
            return Err(format!(
                "no {wanted} page for {state}: {:?}",
                pages.iter().map(|p| p.summary()).collect::<Vec<_>>()
            ));
        };
        match &trigger_key {
            None => trigger_key = Some(page.dedup_key().to_string()),
            Some(key) if key != page.dedup_key() => {
                return Err(format!(
                    "OK resolved {}, not the incident {key} the action opened",
                    page.dedup_key()
                ))
            }
            Some(_) => {}
        }
    }
    // One action for one alarm: taken (one step, 2 to 4), or failed without effect
    // and paged as failed (a fault that outlasted the SDK's retries on the action's
    // own call). Never two, never beyond the bounds.
    let decisions: Vec<String> = stack
        .audit(table, &resource)
        .await
        .iter()
        .filter_map(|a| a["decision"].as_str().map(str::to_string))
        .collect();
    let count = |d: &str| decisions.iter().filter(|x| *x == d).count();
    let desired = stack
        .describe_service(cluster, service)
        .await
        .desired_count();
    match (count("act"), count("failed"), desired) {
        (1, 0, 4) => {}
        (0, 1, 2) if case.is_some_and(Case::outlasts_the_sdk) => {}
        (acts, failed, desired) => {
            return Err(format!(
                "{acts} actions taken and {failed} failed for one alarm, and prod/web wants \
                 {desired} tasks (one step of 2 from 2 is 4): {decisions:?}"
            ))
        }
    }
    finish(&proxy, case)
}

/// One unhealthy-hosts ALARM under `case`: the restart runbook, a forced
/// deployment, which is no absolute value and which remediate does not let the
/// SDK repeat. Each restart audited as taken is exactly one new deployment (never
/// two for one alarm, Lambda's retries included); one that failed without effect
/// is audited and paged as failed, and only a fault on UpdateService itself may
/// cause that.
async fn restart_case(case: Option<&Case>) -> Result<Vec<String>, String> {
    use autopilot_tests::alarms::{AlarmSpec, Form};
    use aws_sdk_cloudwatch::types::{ComparisonOperator, Statistic};
    let w = RemediateWorld::new("faults-restart", &["web"]).await;
    let (stack, table, cluster, service) = (&w.stack, &w.table, &w.cluster, &w.services[0]);
    let services = json!([{"cluster": cluster, "service": service, "min": 2, "max": 10, "step": 2,
        "targetGroups": [format!("targetgroup/{service}/0123456789abcdef")],
        "loadBalancers": [format!("app/{service}-alb/0123456789abcdef")]}]);
    let proxy = FaultProxy::start();
    let remediator = remediate::Remediator::new(
        &proxy.sdk_config().await,
        stack.remediate_config(
            table,
            &[(remediate::config::SERVICES, services.to_string())],
        ),
    );
    let deployments = async || {
        stack
            .describe_service(cluster, service)
            .await
            .deployments()
            .len()
    };
    let before = deployments().await;
    let alarm = stack
        .alarm(AlarmSpec {
            base: "web-unhealthy-hosts",
            namespace: "AWS/ApplicationELB",
            metric: "UnHealthyHostCount",
            dimensions: vec![
                (
                    "TargetGroup",
                    format!("targetgroup/{service}/0123456789abcdef"),
                ),
                (
                    "LoadBalancer",
                    format!("app/{service}-alb/0123456789abcdef"),
                ),
            ],
            statistic: Statistic::Maximum,
            comparison: ComparisonOperator::GreaterThanThreshold,
            threshold: 0.0,
            tags: vec![],
        })
        .await;
    stack.set_alarm(&alarm, "ALARM").await;
    let event = stack.alarm_event(Form::EventBridge, &alarm, "ALARM").await;
    deliver(&proxy, case, &["UpdateService"], async || {
        remediator
            .handle(LambdaEvent::new(event.clone(), Context::default()))
            .await
    })
    .await?;
    let pages = stack.pages().await;
    if !pages.iter().any(|p| p.action() == "trigger") {
        return Err("on-call was not paged for the restart".into());
    }
    let decisions: Vec<String> = stack
        .audit(table, &w.resource(service))
        .await
        .iter()
        .filter_map(|a| a["decision"].as_str().map(str::to_string))
        .collect();
    let count = |d: &str| decisions.iter().filter(|x| *x == d).count();
    let restarts = deployments().await - before;
    let on_the_call = case.is_some_and(|c| c.operation == "UpdateService");
    match (count("act"), count("failed"), restarts) {
        (1, 0, 1) => {}
        (0, 1, 0) if on_the_call => {}
        (acts, failed, restarts) => {
            return Err(format!(
                "{acts} restarts taken and {failed} failed for one alarm, and ECS started \
                 {restarts} deployments: {decisions:?}"
            ))
        }
    }
    finish(&proxy, case)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remediate_restarts_once_under_every_fault() {
    matrix("remediate restart", &["UpdateService"], restart_case).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remediate_keeps_its_invariants_under_every_fault() {
    matrix(
        "remediate",
        &["DescribeAlarms", "GetItem", "UpdateService", "Publish"],
        remediate_case,
    )
    .await;
}

// ---------------------------------------------------------------------------
// rotate: an alternating-users PostgreSQL secret with a dependent URL and a consumer
// ---------------------------------------------------------------------------

/// The consumer's forced deployment: rotate does not let the SDK repeat it.
const ROTATE_NOT_REPEATED: &[&str] = &["UpdateService"];

/// One rotation under `case`, each step retried as Secrets Manager retries a failed
/// rotation: rotate's invariants. AWSCURRENT logs in after every invocation, failed
/// ones included (alternating users: the strategy that promises it; single user
/// cannot, docs/rotate.md); the protocol converges once AWS recovers: the other
/// user is AWSCURRENT with a new password that logs in, the previous user still
/// logs in, the dependent URL holds the new credentials, the consumer was redeployed.
async fn rotate_case(case: Option<&Case>) -> Result<Vec<String>, String> {
    let w = RotateWorld::new("faults-rotate").await;
    let (stack, arn, url, user, old) = (&w.stack, &w.arn, &w.url, &w.user, w.old.as_str());
    let pg = postgres::postgres();
    let deployments = async || w.deployments().await;
    let before = deployments().await;
    let proxy = FaultProxy::start();
    let rotator = w.rotator(&proxy.sdk_config().await)?;
    let token = stack.start_rotation(arn).await;
    if let Some(c) = case {
        proxy.arm(&c.operation, c.fault, c.count);
    }
    for step in rotation::STEPS {
        let event = rotation::rotation_event(step, arn, &token);
        let mut answers = Vec::new();
        for _ in 0..faults::LAMBDA_ATTEMPTS {
            let this = faults::attempt(&proxy, async || {
                rotator
                    .handle(LambdaEvent::new(event.clone(), Context::default()))
                    .await
            })
            .await;
            w.logs_in("AWSCURRENT")
                .await
                .map_err(|e| format!("after {step} ({:?}): {e}", this.answer))?;
            let failed = this.answer.is_err();
            answers.push(this);
            if !failed {
                break;
            }
            proxy.heal();
        }
        check_failures(case, ROTATE_NOT_REPEATED, &answers).map_err(|e| format!("{step}: {e}"))?;
    }
    stack.end_rotation(arn, &token).await;

    let (current, password) = w.creds("AWSCURRENT").await?;
    if current != format!("{user}_clone") || password == old {
        return Err(format!(
            "the rotation finished with {current} current, not the clone with a new password"
        ));
    }
    w.logs_in("AWSCURRENT").await?;
    if !pg.can_login(user, old).await {
        return Err("the previous user no longer logs in".into());
    }
    let dependent = stack
        .secret_value(url, "AWSCURRENT")
        .await
        .unwrap_or_default();
    if !dependent.contains(&format!("{current}:{password}@")) {
        return Err("the dependent URL does not hold the new credentials".into());
    }
    if deployments().await <= before {
        return Err("the consumer was not redeployed".into());
    }
    finish(&proxy, case)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_keeps_its_invariants_under_every_fault() {
    matrix(
        "rotate",
        &[
            "DescribeSecret",
            "GetSecretValue",
            "PutSecretValue",
            "UpdateSecretVersionStage",
            "UpdateService",
        ],
        rotate_case,
    )
    .await;
}

// ---------------------------------------------------------------------------
// snapshot: retention in both regions and a new snapshot to copy, in one check
// ---------------------------------------------------------------------------

/// The hourly check under `case`, after a fault-free one copied everything and
/// time passed: retention is due in both regions (autopilot's snapshots 30, 20, 10
/// and 0 days old; a foreign one, a foreign name wearing autopilot's tag and an
/// automated one 60 days old), and one new snapshot of autopilot's must be copied.
/// snapshot's invariants: never a deleted snapshot that retention keeps, never a
/// lost copy. Deletions cannot be undone, so once Lambda's retries and the next
/// hourly check are done, both regions must hold exactly what the fault-free run
/// leaves.
async fn snapshot_case(
    case: Option<&Case>,
) -> Result<(Vec<String>, Vec<String>, Vec<String>), String> {
    use autopilot_shared::backup;
    use autopilot_tests::snapshots::{self as rds, Db, DR, SOURCE};
    const DAY: i64 = 86_400;
    let now = chrono::Utc::now().timestamp();
    let w = SnapshotWorld::new("faults-snapshot").await;
    let (stack, db) = (&w.stack, &w.db);
    let ours = SnapshotWorld::ours;
    let manual = async |id: &str, tags: &[(&str, String)]| w.manual(id, tags).await;
    let ours_ids: Vec<String> = (1..=4)
        .map(|i| format!("autopilot-{db}-20261101000{i}"))
        .collect();
    for id in &ours_ids {
        manual(id, &ours(db)).await;
    }
    let foreign = format!("{}-nightly", stack.prefix);
    manual(&foreign, &[]).await;
    let disguised = format!("{}-disguised", stack.prefix);
    manual(&disguised, &ours(db)).await;
    let auto_id = format!("rds:{db}-2026-11-01-03-10");
    rds::automated_snapshot(SOURCE, Db::Instance(db), &auto_id, now - 3600);
    let config = |sdk: &aws_config::SdkConfig| {
        w.snapshotter(
            sdk,
            &[
                (snapshot::config::COPY_LIMIT, "20"),
                (snapshot::config::KEEP, "2"),
            ],
        )
    };
    let check = json!({
        "version": "0", "id": "schedule-snapshot-check", "detail-type": "Scheduled Task",
        "source": "autopilot.scheduler", "account": ACCOUNT,
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": SOURCE, "resources": [], "detail": {"task": "snapshot-check"}
    });
    config(&stack.sdk)
        .handle(LambdaEvent::new(check.clone(), Context::default()))
        .await
        .map_err(|e| format!("the fault-free first check: {e}"))?;
    for (id, age) in ours_ids.iter().zip([30 * DAY, 20 * DAY, 10 * DAY, 3600]) {
        rds::set_snapshot_time(SOURCE, id, false, now - age);
        rds::set_snapshot_time(DR, &backup::dr_copy_id(id, false), false, now - age);
    }
    for id in [&foreign, &disguised, &auto_id] {
        rds::set_snapshot_time(SOURCE, id, false, now - 60 * DAY);
        rds::set_snapshot_time(DR, &backup::dr_copy_id(id, false), false, now - 60 * DAY);
    }
    manual(&format!("autopilot-{db}-20261206000"), &ours(db)).await;

    let proxy = FaultProxy::start();
    let function = config(&proxy.sdk_config().await);
    deliver(&proxy, case, &[], async || {
        function
            .handle(LambdaEvent::new(check.clone(), Context::default()))
            .await
    })
    .await?;
    finish(&proxy, case)?;
    // The next hourly check, with AWS well: a retry above saw the new copy and a
    // run without one did not, so only the state both converge to compares.
    function
        .handle(LambdaEvent::new(check.clone(), Context::default()))
        .await
        .map_err(|e| format!("the next check: {e}"))?;
    Ok((proxy.operations(), w.ids(SOURCE).await, w.ids(DR).await))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_keeps_its_invariants_under_every_fault() {
    use autopilot_tests::snapshots::{set_quota, DR, SOURCE};
    // Every case's world takes 7 manual snapshots in each Region of the one
    // emulator: a quota as if each world had an account of its own.
    for region in [SOURCE, DR] {
        set_quota(region, "ManualSnapshots", Some(1_000_000));
    }
    let (operations, source, dr) = snapshot_case(None).await.expect("the fault-free check");
    for expected in ["DescribeDBSnapshots", "CopyDBSnapshot", "DeleteDBSnapshot"] {
        assert!(
            operations.iter().any(|o| o == expected),
            "the fault-free check made no {expected}: {operations:?}"
        );
    }
    // What retention keeps in the source region: autopilot's newest two (the new
    // one and the hour-old one; the rest are past the retention days), the foreign,
    // disguised and automated ones, whatever their age.
    assert_eq!(
        source,
        [
            "P-disguised",
            "P-nightly",
            "autopilot-P-orders-202611010004",
            "autopilot-P-orders-20261206000",
            "rds:P-orders-2026-11-01-03-10"
        ],
    );
    assert!(
        dr.iter().any(|id| id.contains("20261206000")),
        "the new copy: {dr:?}"
    );
    let (source, dr) = (&source, &dr);
    run_matrix("snapshot", cases(&operations), PARALLEL, async |case| {
        let (_, s, d) = snapshot_case(Some(case)).await?;
        if &s != source {
            return Err(format!("source region holds {s:?}, not {source:?}"));
        }
        if &d != dr {
            return Err(format!("DR region holds {d:?}, not {dr:?}"));
        }
        Ok(())
    })
    .await;
}

/// The soak's finding, replayed: the answer to the write that claims the service is
/// lost, the SDK repeats the write, and the repeat fails the version check against
/// the invocation's own claim, which then looks like another invocation's. Every
/// delivery of the transition answers RemediationInProgress until the claim's
/// lease has passed; then two deliveries resume it at once, and exactly one acts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_answer_was_lost_is_resumed_by_one_delivery_only() {
    use autopilot_tests::alarms::{AlarmSpec, Form};
    let w = RemediateWorld::new("faults-claim", &["web"]).await;
    let (stack, table, cluster, service) = (&w.stack, &w.table, &w.cluster, &w.services[0]);
    let proxy = FaultProxy::start();
    let remediator = w.remediator(&proxy.sdk_config().await, &[]);
    let alarm = stack
        .alarm(AlarmSpec::ecs_cpu("web-cpu-high", cluster, service))
        .await;
    stack.set_alarm(&alarm, "ALARM").await;
    let event = stack.alarm_event(Form::EventBridge, &alarm, "ALARM").await;
    let invoke = async || {
        remediator
            .handle(LambdaEvent::new(event.clone(), Context::default()))
            .await
    };
    // The transition's record goes through; the claim's answer is lost once.
    proxy.arm_after("PutItem", 1, Fault::ResetAfter, 1);
    let first = invoke().await;
    assert_eq!(
        first.as_ref().err().map(|f| f.code),
        Some("autopilot.RemediationInProgress"),
        "{first:?}"
    );
    assert_eq!(
        stack
            .describe_service(cluster, service)
            .await
            .desired_count(),
        2
    );

    // Lambda's retries come minutes later: the claim is past its lease.
    let resource = w.resource(service);
    let claim = stack.guard(table, &resource).await.value.claim;
    assert!(
        claim.is_some_and(|c| c.result.is_none()),
        "the lost write's claim"
    );
    w.age_claims(300).await;
    stack.slow("GetItem", 0.3);
    proxy.forget();
    let (a, b) = tokio::join!(invoke(), invoke());
    let acted = proxy
        .calls()
        .iter()
        .filter(|c| c.operation == "UpdateService")
        .count();
    assert_eq!(acted, 1, "two deliveries resumed one claim: {a:?} {b:?}");
    for answer in [&a, &b] {
        if let Err(f) = answer {
            assert_eq!(f.code, "autopilot.RemediationInProgress", "{f:?}");
        }
    }
    assert!(a.is_ok() || b.is_ok(), "{a:?} {b:?}");
    assert_eq!(
        stack
            .describe_service(cluster, service)
            .await
            .desired_count(),
        4
    );
}
