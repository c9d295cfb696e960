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

    if serve {
        println!("Emulator stays up for local invokes:");
        println!("   AWS_ENDPOINT_URL={} AWS_REGION={REGION} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \\", emulator().endpoint());
        println!("   AUTOPILOT_TOPIC_ARN={} AUTOPILOT_SERVICES='[{{\"repository\":\"backend\",\"cluster\":\"prod\",\"service\":\"backend\",\"container\":\"app\"}}]' cargo lambda watch", stack.topic_arn);
        println!("   cargo lambda invoke deploy --data-file events/ecr-push-untagged.json");
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
