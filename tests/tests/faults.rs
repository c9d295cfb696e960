//! The fault matrix (issue #10): every function, every AWS call it makes, every
//! fault of `autopilot_tests::faults`, through a fault-injecting proxy between the
//! function's SDK clients and the emulator. After each case, with Lambda's retries
//! of a failed invocation, the function's invariants must hold.
//!
//! The calls are not listed by hand: a fault-free run through the proxy finds the
//! operations the function makes, and the matrix covers each of them.

use autopilot_shared::invocation::code;
use autopilot_shared::{Failure, Report};
use autopilot_tests::faults::{cases, run_matrix, with_lambda_retries, Case, Fault, FaultProxy};
use autopilot_tests::*;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};

/// Cases of one function run this many at a time.
const PARALLEL: usize = 4;

/// The error types a failed invocation may have under a fault: AWS's failure,
/// passed on as retryable, a page that could not be published, or several of those.
/// Never `AwsCallRefused` (the faults are all transient), never a malformed event.
///
/// A fault the SDK's retries absorb must not fail the invocation, except on the
/// operations in `not_repeated`, which the function deliberately does not let the
/// SDK repeat once sent (`shared::aws::NotRepeatedIfSent`): there the invocation
/// fails, and Lambda's retry must finish the work.
fn check_failures(
    case: Option<&Case>,
    not_repeated: &[&str],
    answers: &[Result<Report, Failure>],
) -> Result<(), String> {
    for failure in answers.iter().filter_map(|a| a.as_ref().err()) {
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
    if let Some(case) = case {
        let absorbed = !case.outlasts_the_sdk()
            && !(not_repeated.contains(&case.operation.as_str()) && case.fault != Fault::Latency);
        if absorbed && answers.first().is_some_and(Result::is_err) {
            return Err(format!(
                "the SDK's retries should have absorbed the fault, but the invocation failed: {:?}",
                answers[0].as_ref().err()
            ));
        }
    }
    match answers.last() {
        Some(Ok(_)) => Ok(()),
        other => Err(format!(
            "Lambda's retries did not finish the work once AWS recovered: {other:?}"
        )),
    }
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

struct DeployWorld {
    stack: Stack,
    repo: String,
    cluster: String,
    family: String,
}

impl DeployWorld {
    async fn new() -> Self {
        let stack = Stack::new("faults-deploy").await;
        let repo = stack.repository("backend").await;
        stack.push(&repo, "v1.4.1").await;
        let cluster = stack.cluster("prod").await;
        let family = stack.name("backend");
        let td = stack
            .task_definition(&family, "app", &stack.image(&repo, "v1.4.1"))
            .await;
        stack
            .service(&cluster, "backend", td.task_definition_arn().unwrap())
            .await;
        Self {
            stack,
            repo,
            cluster,
            family,
        }
    }

    fn mapping(&self) -> Value {
        json!([{"repository": self.repo, "tags": ["v*"], "cluster": self.cluster, "service": "backend", "container": "app"}])
    }

    /// The family's revision that runs `tag` (the one a rollback restores).
    async fn revision_running(&self, tag: &str) -> String {
        let image = self.stack.image(&self.repo, tag);
        for arn in self.stack.revisions(&self.family).await {
            let (td, _) = self.stack.describe_task_definition(&arn).await;
            if td
                .container_definitions()
                .iter()
                .any(|c| c.image() == Some(image.as_str()))
            {
                return arn;
            }
        }
        panic!("no revision of {} runs {image}", self.family)
    }

    /// The family's revisions whose app container runs `digest`.
    async fn revisions_of(&self, digest: &str) -> Vec<String> {
        let mut found = Vec::new();
        for arn in self.stack.revisions(&self.family).await {
            let (td, _) = self.stack.describe_task_definition(&arn).await;
            if td
                .container_definitions()
                .iter()
                .any(|c| c.image().is_some_and(|i| i.ends_with(digest)))
            {
                found.push(arn);
            }
        }
        found
    }
}

/// RegisterTaskDefinition has no client token: deploy does not let the SDK repeat it.
const DEPLOY_NOT_REPEATED: &[&str] = &["RegisterTaskDefinition"];

/// One push under `case`: deploy's invariants. Never two revisions for one push;
/// never a rollback to an older image; the service ends on the new image, and
/// on-call was told it started.
async fn deploy_case(case: Option<&Case>) -> Result<Vec<String>, String> {
    let w = DeployWorld::new().await;
    let proxy = FaultProxy::start();
    let deployer = deploy::Deployer::new(
        &proxy.sdk_config().await,
        w.stack.config(w.mapping(), false),
    );
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let event = ecr_event(&w.repo, Some("v1.4.2"), &digest, "PUSH", "SUCCESS");
    if let Some(c) = case {
        proxy.arm(&c.operation, c.fault, c.count);
    }
    let answers = with_lambda_retries(&proxy, async || {
        deployer
            .handle(LambdaEvent::new(event.clone(), Context::default()))
            .await
    })
    .await;
    check_failures(case, DEPLOY_NOT_REPEATED, &answers)?;

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
        .filter_map(|a| a.as_ref().ok())
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
    if let Some(c) = case {
        proxy.arm(&c.operation, c.fault, c.count);
    }
    let answers = with_lambda_retries(&proxy, async || {
        deployer
            .handle(LambdaEvent::new(verdict.clone(), Context::default()))
            .await
    })
    .await;
    check_failures(case, DEPLOY_NOT_REPEATED, &answers)?;
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
    let operations = deploy_case(None).await.expect("the fault-free push");
    for expected in [
        "DescribeServices",
        "RegisterTaskDefinition",
        "UpdateService",
        "Publish",
        "ListTasks",
        "DescribeTasks",
    ] {
        assert!(
            operations.iter().any(|o| o == expected),
            "the fault-free push made no {expected}: {operations:?}"
        );
    }
    run_matrix("deploy", cases(&operations), PARALLEL, async |case| {
        deploy_case(Some(case)).await.map(|_| ())
    })
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
    use remediate::config as rc;
    let stack = Stack::new("faults-remediate").await;
    let table = stack.guard_table().await;
    let cluster = stack.cluster("prod").await;
    let service = stack.name("web");
    let td = stack
        .task_definition(&stack.name("web"), "app", "nginx:1.27")
        .await;
    stack
        .service(&cluster, &service, td.task_definition_arn().unwrap())
        .await;
    stack.settle_service(&cluster, &service).await;
    let services =
        json!([{"cluster": cluster, "service": service, "min": 2, "max": 10, "step": 2}]);
    let proxy = FaultProxy::start();
    let remediator = remediate::Remediator::new(
        &proxy.sdk_config().await,
        stack.remediate_config(&table, &[(rc::SERVICES, services.to_string())]),
    );
    let alarm = stack
        .alarm(AlarmSpec::ecs_cpu("web-cpu-high", &cluster, &service))
        .await;
    let resource = format!("ecs:{cluster}/{service}");

    let mut trigger_key = None;
    for state in ["ALARM", "OK"] {
        stack.set_alarm(&alarm, state).await;
        let event = stack.alarm_event(Form::EventBridge, &alarm, state).await;
        if let Some(c) = case {
            proxy.arm(&c.operation, c.fault, c.count);
        }
        let answers = with_lambda_retries(&proxy, async || {
            remediator
                .handle(LambdaEvent::new(event.clone(), Context::default()))
                .await
        })
        .await;
        check_failures(case, &[], &answers)?;
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
        .audit(&table, &resource)
        .await
        .iter()
        .filter_map(|a| a["decision"].as_str().map(str::to_string))
        .collect();
    let count = |d: &str| decisions.iter().filter(|x| *x == d).count();
    let desired = stack
        .describe_service(&cluster, &service)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remediate_keeps_its_invariants_under_every_fault() {
    let operations = remediate_case(None).await.expect("the fault-free alarm");
    for expected in ["DescribeAlarms", "GetItem", "UpdateService", "Publish"] {
        assert!(
            operations.iter().any(|o| o == expected),
            "the fault-free alarm made no {expected}: {operations:?}"
        );
    }
    run_matrix("remediate", cases(&operations), PARALLEL, async |case| {
        remediate_case(Some(case)).await.map(|_| ())
    })
    .await;
}
