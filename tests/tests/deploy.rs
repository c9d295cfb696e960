//! The deploy function end to end against the emulator: real SDK clients over HTTP.

use autopilot_shared::{Failure, Report};
use autopilot_tests::*;
use deploy::Deployer;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};

/// A production-shaped stack: repository `backend` with `v1.4.1` running on `prod/backend`.
struct World {
    stack: Stack,
    repo: String,
    cluster: String,
    family: String,
    service: String,
    service_arn: String,
    old_revision: String,
    /// The digest of `v1.4.1`, the image the service runs at first.
    old_digest: String,
}

impl World {
    async fn new(test: &str) -> Self {
        let stack = Stack::new(test).await;
        let repo = stack.repository("backend").await;
        let old_digest = stack.push(&repo, "v1.4.1").await;
        let cluster = stack.cluster("prod").await;
        let family = stack.name("backend");
        let td = stack
            .task_definition(&family, "app", &stack.image(&repo, "v1.4.1"))
            .await;
        let old_revision = td.task_definition_arn().unwrap().to_string();
        let service = "backend".to_string();
        let service_arn = stack.service(&cluster, &service, &old_revision).await;
        Self {
            stack,
            repo,
            cluster,
            family,
            service,
            service_arn,
            old_revision,
            old_digest,
        }
    }

    fn mapping(&self) -> Value {
        json!([{"repository": self.repo, "tags": ["v*"], "cluster": self.cluster, "service": self.service, "container": "app"}])
    }

    async fn deployer(&self, services: Value, dry_run: bool) -> Deployer {
        Deployer::new(&self.stack.sdk, self.stack.config(services, dry_run))
    }

    async fn current_revision(&self) -> String {
        self.stack
            .describe_service(&self.cluster, &self.service)
            .await
            .task_definition()
            .unwrap()
            .to_string()
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

fn push_event(repo: &str, tag: &str, digest: &str) -> Value {
    ecr_event(repo, Some(tag), digest, "PUSH", "SUCCESS")
}

#[tokio::test]
async fn a_push_deploys_the_service_pinned_by_digest_and_tells_on_call() {
    let w = World::new("push_deploys").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let digest = w.stack.push(&w.repo, "v1.4.2").await;

    let report = invoke(&deployer, push_event(&w.repo, "v1.4.2", &digest))
        .await
        .unwrap();

    assert_eq!(actions(&report), vec!["deploy"], "{report:?}");
    let new_revision = report.outcomes[0].detail("revision").unwrap().to_string();
    assert_eq!(w.current_revision().await, new_revision);
    let (td, tags) = w.stack.describe_task_definition(&new_revision).await;
    let app = td
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some("app"))
        .unwrap();
    assert_eq!(
        app.image().unwrap(),
        format!(
            "{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{}@{digest}",
            w.repo
        )
    );

    let service = w.stack.describe_service(&w.cluster, &w.service).await;
    let primary = service
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .unwrap();
    assert_eq!(primary.task_definition(), Some(new_revision.as_str()));
    assert_eq!(report.outcomes[0].detail("deployment_id"), primary.id());
    let breaker = service
        .deployment_configuration()
        .unwrap()
        .deployment_circuit_breaker()
        .unwrap();
    assert!(
        breaker.enable() && breaker.rollback(),
        "circuit breaker and rollback are on by default"
    );
    assert_eq!(
        service
            .deployment_configuration()
            .unwrap()
            .maximum_percent(),
        Some(200),
        "the rest of the configuration is kept"
    );
    let tag = |k: &str| {
        tags.iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    assert_eq!(tag("autopilot:deployment-id").as_deref(), primary.id());
    assert_eq!(
        tag("autopilot:previous-revision"),
        Some(w.old_revision.clone())
    );

    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1, "{pages:?}");
    let p = &pages[0];
    assert_eq!((p.severity.as_str(), p.action()), ("info", "trigger"));
    assert!(
        p.summary().contains(&format!("{}:v1.4.2", w.repo)),
        "{}",
        p.summary()
    );
    assert_eq!(
        p.detail("Service"),
        &json!(format!("{}/{}", w.cluster, w.service))
    );
    assert_eq!(p.detail("Digest"), &json!(digest));
    assert_eq!(
        p.detail("Previous revision"),
        &json!(format!("{}:1", w.family))
    );
    assert_eq!(p.detail("New revision"), &json!(format!("{}:2", w.family)));
    assert!(p.subject.len() <= 100 && p.subject.is_ascii());
}

#[tokio::test]
async fn the_new_revision_equals_the_old_except_the_image() {
    let w = World::new("clone_fields").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let digest = w.stack.push(&w.repo, "v2.0.0").await;
    let report = invoke(&deployer, push_event(&w.repo, "v2.0.0", &digest))
        .await
        .unwrap();
    let new_revision = report.outcomes[0].detail("revision").unwrap().to_string();

    let (old, old_tags) = w.stack.describe_task_definition(&w.old_revision).await;
    let (new, new_tags) = w.stack.describe_task_definition(&new_revision).await;

    // Read-only fields differ by nature; everything RegisterTaskDefinition accepts must not.
    let mut expected = old.clone();
    expected.task_definition_arn = new.task_definition_arn.clone();
    expected.revision = new.revision;
    expected.registered_at = new.registered_at;
    expected.registered_by = new.registered_by.clone();
    expected.status = new.status.clone();
    expected.requires_attributes = new.requires_attributes.clone();
    expected.compatibilities = new.compatibilities.clone();
    expected.container_definitions.as_mut().unwrap()[0].image = Some(format!(
        "{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{}@{digest}",
        w.repo
    ));
    assert_eq!(new, expected);
    // Spot-check the fields a production task definition cannot lose.
    let app = &new.container_definitions()[0];
    assert_eq!(app.secrets()[0].name(), "DATABASE_URL");
    assert!(app.health_check().is_some() && app.log_configuration().is_some());
    assert_eq!(app.port_mappings()[0].container_port(), Some(8080));
    assert!(new.task_role_arn().is_some() && new.execution_role_arn().is_some());
    assert!(
        new.proxy_configuration().is_some()
            && new.runtime_platform().is_some()
            && new.ephemeral_storage().is_some()
    );
    assert_eq!(
        new.container_definitions()[1],
        old.container_definitions()[1],
        "other containers untouched"
    );

    assert!(old_tags.iter().any(|t| t.key() == Some("team")));
    assert!(
        new_tags
            .iter()
            .any(|t| t.key() == Some("team") && t.value() == Some("payments")),
        "user tags are copied"
    );
}

#[tokio::test]
async fn one_image_fans_out_to_every_matching_service() {
    let w = World::new("fan_out").await;
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
    let eu = s.cluster("prod-eu").await;
    s.service(&eu, "backend", &w.old_revision).await;
    let staging = s.cluster("staging").await;
    s.service(&staging, "backend", &w.old_revision).await;
    let mapping = json!([
        {"repository": w.repo, "tags": ["v*"], "cluster": w.cluster, "service": "backend", "container": "app"},
        {"repository": w.repo, "tags": ["v*"], "cluster": w.cluster, "service": "worker", "container": "worker"},
        {"repository": w.repo, "tags": ["v*"], "cluster": eu, "service": "backend", "container": "app"},
        {"repository": w.repo, "tags": ["main-*"], "cluster": staging, "service": "backend", "container": "app"},
    ]);
    let deployer = w.deployer(mapping, false).await;
    let digest = s.push(&w.repo, "v1.5.0").await;

    let report = invoke(&deployer, push_event(&w.repo, "v1.5.0", &digest))
        .await
        .unwrap();

    assert_eq!(
        actions(&report),
        vec!["deploy", "deploy", "deploy"],
        "{report:?}"
    );
    for (cluster, service) in [
        (&w.cluster, "backend"),
        (&w.cluster, "worker"),
        (&eu, "backend"),
    ] {
        let current = s
            .describe_service(cluster, service)
            .await
            .task_definition()
            .unwrap()
            .to_string();
        let (td, _) = s.describe_task_definition(&current).await;
        assert!(
            td.container_definitions()[0]
                .image()
                .unwrap()
                .ends_with(&digest),
            "{cluster}/{service}"
        );
    }
    assert_eq!(
        s.describe_service(&staging, "backend")
            .await
            .task_definition(),
        Some(w.old_revision.as_str()),
        "main-* does not match v1.5.0"
    );
    assert_eq!(s.pages().await.len(), 3);
}

#[tokio::test]
async fn the_same_event_twice_deploys_once() {
    let w = World::new("duplicate").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let event = push_event(&w.repo, "v1.4.2", &digest);
    let mark = w.stack.calls().len();

    let first = invoke(&deployer, event.clone()).await.unwrap();
    let second = invoke(&deployer, event).await.unwrap();

    assert_eq!(actions(&first), vec!["deploy"]);
    assert_eq!(actions(&second), vec!["skip"]);
    assert!(
        second.outcomes[0].reason.contains("already running"),
        "{}",
        second.outcomes[0].reason
    );
    assert_eq!(
        w.stack.revisions(&w.family).await.len(),
        2,
        "one new revision"
    );
    let calls = w.stack.calls()[mark..].to_vec();
    let count = |op: &str| calls.iter().filter(|c| *c == op).count();
    assert_eq!(
        (count("RegisterTaskDefinition"), count("UpdateService")),
        (1, 1),
        "{calls:?}"
    );
    assert_eq!(w.stack.pages().await.len(), 1, "one started page");
}

#[tokio::test]
async fn a_retry_after_a_failed_update_reuses_the_registered_revision() {
    let w = World::new("half_done").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let event = push_event(&w.repo, "v1.4.2", &digest);
    w.stack
        .fail_next("UpdateService", 1, "AccessDeniedException");

    let err = invoke(&deployer, event.clone()).await.unwrap_err();
    assert_eq!(err.code, "autopilot.AwsCallFailed");
    assert!(err.to_string().contains("UpdateService"), "{err}");
    assert_eq!(
        w.current_revision().await,
        w.old_revision,
        "the service was not touched"
    );
    assert_eq!(w.stack.revisions(&w.family).await.len(), 2);

    let retry = invoke(&deployer, event).await.unwrap();
    assert_eq!(actions(&retry), vec!["deploy"]);
    assert!(
        retry.outcomes[0].reason.contains("reusing"),
        "{}",
        retry.outcomes[0].reason
    );
    assert_eq!(
        w.stack.revisions(&w.family).await.len(),
        2,
        "no second registration"
    );
    assert_eq!(
        w.current_revision().await,
        retry.outcomes[0].detail("revision").unwrap().to_string()
    );
    assert_eq!(w.stack.pages().await.len(), 1);
}

#[tokio::test]
async fn a_failed_page_fails_the_invocation_and_the_retry_announces() {
    let w = World::new("page_fails").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let event = push_event(&w.repo, "v1.4.2", &digest);
    w.stack.fail_next("Publish", 1, "InternalError");

    let err = invoke(&deployer, event.clone()).await.unwrap_err();
    assert_eq!(err.code, "autopilot.PageFailed");
    assert!(w.stack.pages().await.is_empty());

    let retry = invoke(&deployer, event.clone()).await.unwrap();
    assert_eq!(actions(&retry), vec!["announce"], "{retry:?}");
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1);
    assert_eq!(
        pages[0].detail("Deployment").as_str(),
        retry.outcomes[0].detail("deployment_id")
    );
    assert_eq!(w.stack.revisions(&w.family).await.len(), 2);

    let again = invoke(&deployer, event).await.unwrap();
    assert_eq!(actions(&again), vec!["skip"]);
    assert!(w.stack.pages().await.is_empty());
}

#[tokio::test]
async fn an_older_push_arriving_late_does_not_roll_back() {
    let w = World::new("out_of_order").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let older = w.stack.push(&w.repo, "v1.4.2").await;
    let newer = w.stack.push(&w.repo, "v1.4.3").await;
    w.stack.set_pushed_at(&w.repo, &w.old_digest, 1_699_999_000);
    w.stack.set_pushed_at(&w.repo, &older, 1_700_000_000);
    w.stack.set_pushed_at(&w.repo, &newer, 1_700_000_060);

    let report = invoke(&deployer, push_event(&w.repo, "v1.4.3", &newer))
        .await
        .unwrap();
    assert_eq!(actions(&report), vec!["deploy"]);
    let deployed = w.current_revision().await;

    let late = invoke(&deployer, push_event(&w.repo, "v1.4.2", &older))
        .await
        .unwrap();
    assert_eq!(actions(&late), vec!["skip"]);
    assert!(
        late.outcomes[0].reason.starts_with("older push"),
        "{}",
        late.outcomes[0].reason
    );
    assert_eq!(w.current_revision().await, deployed);
    assert_eq!(w.stack.revisions(&w.family).await.len(), 2);
}

#[tokio::test]
async fn events_that_are_not_ours_are_ignored_and_change_nothing() {
    let w = World::new("ignored").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let digest = w.stack.push(&w.repo, "feature-x").await;
    let other = w.stack.repository("other").await;
    let mark = w.stack.calls().len();
    let cases = [
        (
            push_event(&w.repo, "feature-x", &digest),
            "matches no tag pattern",
        ),
        (push_event(&other, "v1.0.0", &digest), "not mapped"),
        (
            ecr_event(&w.repo, Some("v9.9.9"), &digest, "DELETE", "SUCCESS"),
            "not a push",
        ),
        (
            ecr_event(&w.repo, Some("v9.9.9"), &digest, "PUSH", "FAILURE"),
            "did not succeed",
        ),
        (
            ecr_event(&w.repo, None, &digest, "PUSH", "SUCCESS"),
            "untagged",
        ),
        (
            deployment_event(
                &w.service_arn,
                "ecs-svc/1",
                "SERVICE_DEPLOYMENT_IN_PROGRESS",
                "",
            ),
            "carries no verdict",
        ),
        (
            deployment_event(
                &format!(
                    "arn:aws:ecs:{REGION}:{ACCOUNT}:service/{}/unmapped",
                    w.cluster
                ),
                "ecs-svc/1",
                "SERVICE_DEPLOYMENT_COMPLETED",
                "",
            ),
            "not mapped",
        ),
    ];
    for (event, why) in cases {
        let report = invoke(&deployer, event).await.unwrap();
        assert_eq!(actions(&report), vec!["ignore"], "{why}: {report:?}");
        assert!(
            report.outcomes[0].reason.contains(why),
            "{why}: {}",
            report.outcomes[0].reason
        );
    }
    assert_eq!(w.current_revision().await, w.old_revision);
    assert_eq!(w.stack.revisions(&w.family).await.len(), 1);
    assert!(w.stack.pages().await.is_empty());
    let calls = w.stack.calls()[mark..].to_vec();
    assert!(
        !calls
            .iter()
            .any(|c| c == "RegisterTaskDefinition" || c == "UpdateService" || c == "TagResource"),
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_failed_deployment_pages_critical_and_a_rollback_is_never_success() {
    let w = World::new("failed_verdict").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let report = invoke(&deployer, push_event(&w.repo, "v1.4.2", &digest))
        .await
        .unwrap();
    let deployment_id = report.outcomes[0]
        .detail("deployment_id")
        .unwrap()
        .to_string();
    let failed_revision = report.outcomes[0].detail("revision").unwrap().to_string();
    w.stack.pages().await;

    // The cluster's side: tasks crash, the circuit breaker trips and rolls back.
    let outcome = bridge(
        "/_bridge/ecs/deployment",
        json!({"cluster": w.cluster, "service": w.service, "deploymentId": deployment_id, "outcome": "FAILED",
               "reason": "ECS deployment circuit breaker: tasks failed to start.",
               "stoppedReasons": ["Essential container in task exited", "Task failed container health checks"],
               "rollbackTo": w.old_revision}),
    );
    let reason = "ECS deployment circuit breaker: tasks failed to start.";
    let failed = deployment_event(
        &w.service_arn,
        &deployment_id,
        "SERVICE_DEPLOYMENT_FAILED",
        reason,
    );

    let report = invoke(&deployer, failed.clone()).await.unwrap();
    assert_eq!(actions(&report), vec!["notify"], "{report:?}");
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1);
    let p = &pages[0];
    assert_eq!((p.severity.as_str(), p.action()), ("critical", "trigger"));
    assert!(p.summary().contains("FAILED"), "{}", p.summary());
    assert_eq!(p.detail("Reason"), &json!(reason));
    assert_eq!(
        p.detail("Failed revision"),
        &json!(failed_revision.rsplit('/').next().unwrap())
    );
    assert_eq!(
        p.detail("Restored revision"),
        &json!(format!(
            "{}:1 (rolled back by the circuit breaker)",
            w.family
        ))
    );
    assert_eq!(p.detail("Image"), &json!(format!("{}:v1.4.2", w.repo)));
    let stopped = p.detail("Stopped tasks").as_array().unwrap();
    assert_eq!(stopped.len(), 2, "{stopped:?}");
    assert!(stopped.iter().any(|s| s
        .as_str()
        .unwrap()
        .contains("Essential container in task exited")));

    // The rollback deployment completing is not a success of ours; a repeated FAILED is not paged twice.
    let rollback_id = outcome["rollbackDeploymentId"].as_str().unwrap();
    let rolled_back = invoke(
        &deployer,
        deployment_event(
            &w.service_arn,
            rollback_id,
            "SERVICE_DEPLOYMENT_COMPLETED",
            "",
        ),
    )
    .await
    .unwrap();
    assert_eq!(actions(&rolled_back), vec!["ignore"], "{rolled_back:?}");
    let repeated = invoke(&deployer, failed).await.unwrap();
    assert_eq!(actions(&repeated), vec!["ignore"], "{repeated:?}");
    assert!(w.stack.pages().await.is_empty());
}

#[tokio::test]
async fn a_completed_deployment_resolves_the_incident() {
    let w = World::new("completed_verdict").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let report = invoke(&deployer, push_event(&w.repo, "v1.4.2", &digest))
        .await
        .unwrap();
    let deployment_id = report.outcomes[0]
        .detail("deployment_id")
        .unwrap()
        .to_string();
    let started = w.stack.pages().await;
    bridge(
        "/_bridge/ecs/deployment",
        json!({"cluster": w.cluster, "service": w.service, "deploymentId": deployment_id, "outcome": "COMPLETED"}),
    );

    let completed = deployment_event(
        &w.service_arn,
        &deployment_id,
        "SERVICE_DEPLOYMENT_COMPLETED",
        "ECS deployment completed.",
    );
    let report = invoke(&deployer, completed.clone()).await.unwrap();
    assert_eq!(actions(&report), vec!["notify"]);
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1);
    assert_eq!(
        (pages[0].severity.as_str(), pages[0].action()),
        ("info", "resolve")
    );
    assert_eq!(
        pages[0].dedup_key(),
        started[0].dedup_key(),
        "the resolve closes the started incident"
    );
    assert!(pages[0].subject.contains("RESOLVED"));

    assert_eq!(
        actions(&invoke(&deployer, completed).await.unwrap()),
        vec!["ignore"]
    );
}

#[tokio::test]
async fn a_deployment_without_a_verdict_warns_once_with_the_service_events() {
    let w = World::new("timeout").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    invoke(&deployer, push_event(&w.repo, "v1.4.2", &digest))
        .await
        .unwrap();
    w.stack.pages().await;
    let message = "(service backend) was unable to place a task because no container instance met all of its requirements.";
    bridge(
        "/_bridge/ecs/service-event",
        json!({"cluster": w.cluster, "service": w.service, "message": message}),
    );

    let in_minutes = |m: i64| (chrono::Utc::now() + chrono::Duration::minutes(m)).to_rfc3339();
    let early = invoke(&deployer, scheduled_event(&in_minutes(1)))
        .await
        .unwrap();
    assert_eq!(actions(&early), vec!["ignore"]);

    let late = in_minutes(31);
    let report = invoke(&deployer, scheduled_event(&late)).await.unwrap();
    assert_eq!(actions(&report), vec!["warn"], "{report:?}");
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].severity, "warning");
    assert!(
        pages[0].summary().contains("no verdict after"),
        "{}",
        pages[0].summary()
    );
    let events = pages[0].detail("Recent service events").as_array().unwrap();
    assert!(events[0]
        .as_str()
        .unwrap()
        .contains("unable to place a task"));

    let again = invoke(&deployer, scheduled_event(&late)).await.unwrap();
    assert_eq!(actions(&again), vec!["ignore"]);
    assert!(w.stack.pages().await.is_empty());
}

#[tokio::test]
async fn dry_run_plans_and_notifies_but_changes_nothing() {
    let w = World::new("dry_run").await;
    let deployer = w.deployer(w.mapping(), true).await;
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let mark = w.stack.calls().len();

    let report = invoke(&deployer, push_event(&w.repo, "v1.4.2", &digest))
        .await
        .unwrap();

    assert!(report.dry_run);
    assert_eq!(actions(&report), vec!["would-deploy"]);
    assert_eq!(w.current_revision().await, w.old_revision);
    assert_eq!(w.stack.revisions(&w.family).await.len(), 1);
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1);
    assert!(
        pages[0].summary().starts_with("[dry-run] would deploy"),
        "{}",
        pages[0].summary()
    );
    let calls = w.stack.calls()[mark..].to_vec();
    assert!(
        !calls.iter().any(
            |c| ["RegisterTaskDefinition", "UpdateService", "TagResource"].contains(&c.as_str())
        ),
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_mapped_service_that_cannot_be_deployed_warns_and_the_rest_deploy() {
    let w = World::new("refused").await;
    let mapping = json!([
        {"repository": w.repo, "cluster": w.cluster, "service": w.service, "container": "app"},
        {"repository": w.repo, "cluster": w.cluster, "service": "ghost", "container": "app"},
        {"repository": w.repo, "cluster": w.stack.name("nocluster"), "service": "backend", "container": "app"},
    ]);
    let deployer = w.deployer(mapping, false).await;
    let digest = w.stack.push(&w.repo, "v1.4.2").await;

    let report = invoke(&deployer, push_event(&w.repo, "v1.4.2", &digest))
        .await
        .unwrap();

    assert_eq!(
        actions(&report),
        vec!["deploy", "refuse", "refuse"],
        "{report:?}"
    );
    assert!(
        report.outcomes[1].reason.contains("ghost not found"),
        "{}",
        report.outcomes[1].reason
    );
    let pages = w.stack.pages().await;
    let warnings: Vec<_> = pages.iter().filter(|p| p.severity == "warning").collect();
    assert_eq!(warnings.len(), 2);
    assert!(warnings[0]
        .detail("Reason")
        .as_str()
        .unwrap()
        .contains("not found"));
}

#[tokio::test]
async fn malformed_and_unknown_events_fail_naming_the_problem() {
    let w = World::new("malformed").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let cases = [
        (
            json!({"source": "aws.ecr", "detail": {}}),
            "autopilot.MalformedEvent",
            "detail-type",
        ),
        (
            json!("not an object"),
            "autopilot.MalformedEvent",
            "EventBridge event",
        ),
        (
            json!({"detail-type": "ECR Image Action", "source": "aws.ecr", "detail": {"result": "SUCCESS", "action-type": "PUSH", "image-digest": "sha256:x"}}),
            "autopilot.MalformedEvent",
            "repository-name",
        ),
        (
            json!({"detail-type": "ECS Deployment State Change", "source": "aws.ecs", "resources": [], "detail": {"eventType": "INFO", "eventName": "SERVICE_DEPLOYMENT_COMPLETED", "deploymentId": "ecs-svc/1"}}),
            "autopilot.MalformedEvent",
            "resources[0]",
        ),
        (
            json!({"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2", "detail": {}}),
            "autopilot.UnsupportedEvent",
            "aws.ec2",
        ),
    ];
    for (event, kind, names) in cases {
        let err = invoke(&deployer, event).await.unwrap_err();
        assert_eq!(err.code, kind, "{err}");
        assert!(err.to_string().contains(names), "{names}: {err}");
    }
}

/// The AWS calls one deploy of one service makes, in order. The closing note of
/// the deploy issue quotes this list; a change here is a change in cost.
#[tokio::test]
async fn one_deploy_makes_eight_aws_calls() {
    let w = World::new("call_count").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let mark = w.stack.calls().len();

    invoke(&deployer, push_event(&w.repo, "v1.4.2", &digest))
        .await
        .unwrap();

    let calls = w.stack.calls()[mark..].to_vec();
    assert_eq!(
        calls,
        vec![
            "DescribeServices",
            "DescribeTaskDefinition",
            "DescribeTaskDefinition",
            "DescribeImages",
            "RegisterTaskDefinition",
            "UpdateService",
            "Publish",
            "TagResource",
        ]
    );
}
