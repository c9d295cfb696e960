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
    assert_eq!(
        tag("autopilot:deployment-id"),
        None,
        "a push records no deployment id: its verdict does"
    );
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
    assert_eq!(p.detail("Deployment").as_str(), primary.id());
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
    let second = invoke(&deployer, event.clone()).await.unwrap();
    let third = invoke(&deployer, event).await.unwrap();

    assert_eq!(actions(&first), vec!["deploy"]);
    // The push made no call after its page, so nothing in AWS tells a delivery
    // after it from a retry after a crash before it: the second delivery of the
    // same event pages again, under the same incident, and records the
    // deployment; from then on a delivery changes nothing.
    assert_eq!(actions(&second), vec!["announce"], "{second:?}");
    assert_eq!(
        second.outcomes[0].detail("deployment_id"),
        first.outcomes[0].detail("deployment_id")
    );
    assert_eq!(actions(&third), vec!["skip"], "{third:?}");
    assert!(
        third.outcomes[0].reason.contains("already running"),
        "{}",
        third.outcomes[0].reason
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
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert_eq!(
        pages[0].dedup_key(),
        pages[1].dedup_key(),
        "the same started incident"
    );
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
    assert_eq!(err.code, "autopilot.AwsCallRefused");
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
    w.stack.fail_next("Publish", MAX_ATTEMPTS, "InternalError");

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
    w.stack
        .set_pushed_at(&w.repo, &w.old_digest, 1_699_999_000.0);
    w.stack.set_pushed_at(&w.repo, &older, 1_700_000_000.0);
    w.stack.set_pushed_at(&w.repo, &newer, 1_700_000_060.0);

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

    // The schedule's own input from template.yaml, at Scheduler's time format.
    let in_minutes = |m: i64| {
        (chrono::Utc::now() + chrono::Duration::minutes(m))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let early = invoke(&deployer, sweep_event(&in_minutes(1)))
        .await
        .unwrap();
    assert_eq!(actions(&early), vec!["ignore"]);

    let late = in_minutes(31);
    let report = invoke(&deployer, sweep_event(&late)).await.unwrap();
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

    let revision = report.outcomes[0].detail("revision").unwrap();
    let tags = revision_tags(&w, revision).await;
    let id = report.outcomes[0].detail("deployment_id").unwrap();
    assert_eq!(
        tags.get("autopilot:timeout-warned").map(String::as_str),
        Some(id)
    );
    assert_eq!(
        tags.get("autopilot:deployment-id").map(String::as_str),
        Some(id),
        "the sweep adopted the push's deployment and recorded it"
    );

    let again = invoke(&deployer, sweep_event(&late)).await.unwrap();
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

/// The AWS calls one deploy of one service makes, as a multiset. The closing note
/// of the deploy issues (#9) quotes this list; a change here is a change in cost.
/// One DescribeTaskDefinition (of the family: its latest ACTIVE revision is the
/// one the service runs), no polling, and no TagResource: the deployment id is
/// recorded with the verdict.
#[tokio::test]
async fn one_deploy_makes_six_aws_calls() {
    let w = World::new("call_count").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let mark = w.stack.calls().len();

    let report = invoke(&deployer, push_event(&w.repo, "v1.4.2", &digest))
        .await
        .unwrap();

    assert_eq!(report.actions(), vec!["deploy"]);
    assert_eq!(
        multiset(&w.stack.calls()[mark..]),
        multiset(&[
            "DescribeServices",
            "DescribeTaskDefinition",
            "DescribeImages",
            "RegisterTaskDefinition",
            "UpdateService",
            "Publish",
        ])
    );
}

/// The calls a verdict makes: COMPLETED 4, FAILED 6 (its stopped tasks), and the
/// rollback's verdict, ignored, 3 (the revision it runs is not the family's latest).
#[tokio::test]
async fn a_verdict_makes_four_aws_calls_and_a_failed_one_six() {
    let w = World::new("verdict_calls").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let first = w.stack.push(&w.repo, "v1.4.2").await;
    let report = invoke(&deployer, push_event(&w.repo, "v1.4.2", &first))
        .await
        .unwrap();
    let first_id = report.outcomes[0]
        .detail("deployment_id")
        .unwrap()
        .to_string();
    let first_revision = report.outcomes[0].detail("revision").unwrap().to_string();
    complete_deployment(&w, &first_id);
    let mark = w.stack.calls().len();
    let completed = invoke(
        &deployer,
        verdict_event(&w, &first_id, "SERVICE_DEPLOYMENT_COMPLETED"),
    )
    .await
    .unwrap();
    assert_eq!(completed.actions(), vec!["notify"], "{completed:?}");
    assert_eq!(
        multiset(&w.stack.calls()[mark..]),
        multiset(&[
            "DescribeServices",
            "DescribeTaskDefinition",
            "Publish",
            "TagResource"
        ])
    );

    let second = w.stack.push(&w.repo, "v1.4.3").await;
    let report = invoke(&deployer, push_event(&w.repo, "v1.4.3", &second))
        .await
        .unwrap();
    let second_id = report.outcomes[0]
        .detail("deployment_id")
        .unwrap()
        .to_string();
    let rollback_id = fail_deployment(&w, &second_id, &first_revision);
    let mark = w.stack.calls().len();
    let failed = invoke(
        &deployer,
        verdict_event(&w, &second_id, "SERVICE_DEPLOYMENT_FAILED"),
    )
    .await
    .unwrap();
    assert_eq!(failed.actions(), vec!["notify"], "{failed:?}");
    assert_eq!(
        multiset(&w.stack.calls()[mark..]),
        multiset(&[
            "DescribeServices",
            "DescribeTaskDefinition",
            "ListTasks",
            "DescribeTasks",
            "Publish",
            "TagResource",
        ])
    );

    let mark = w.stack.calls().len();
    let rollback = invoke(
        &deployer,
        verdict_event(&w, &rollback_id, "SERVICE_DEPLOYMENT_COMPLETED"),
    )
    .await
    .unwrap();
    assert_eq!(rollback.actions(), vec!["ignore"], "{rollback:?}");
    assert_eq!(
        multiset(&w.stack.calls()[mark..]),
        multiset(&[
            "DescribeServices",
            "DescribeTaskDefinition",
            "DescribeTaskDefinition"
        ])
    );
}

/// Plays a FAILED deployment with the circuit breaker's rollback to `rollback_to`,
/// and returns the rollback deployment's id.
fn fail_deployment(w: &World, deployment_id: &str, rollback_to: &str) -> String {
    let outcome = bridge(
        "/_bridge/ecs/deployment",
        json!({"cluster": w.cluster, "service": w.service, "deploymentId": deployment_id, "outcome": "FAILED",
               "reason": "ECS deployment circuit breaker: tasks failed to start.",
               "stoppedReasons": ["Essential container in task exited"],
               "rollbackTo": rollback_to}),
    );
    outcome["rollbackDeploymentId"]
        .as_str()
        .unwrap()
        .to_string()
}

fn complete_deployment(w: &World, deployment_id: &str) {
    bridge(
        "/_bridge/ecs/deployment",
        json!({"cluster": w.cluster, "service": w.service, "deploymentId": deployment_id, "outcome": "COMPLETED"}),
    );
}

fn verdict_event(w: &World, deployment_id: &str, event_name: &str) -> Value {
    deployment_event(&w.service_arn, deployment_id, event_name, "")
}

fn count(calls: &[String], op: &str) -> usize {
    calls.iter().filter(|c| *c == op).count()
}

/// Operations and how often each was called, whatever the order.
fn multiset<S: AsRef<str>>(calls: &[S]) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for c in calls {
        *counts.entry(c.as_ref().to_string()).or_insert(0) += 1;
    }
    counts
}

/// A revision's tags, by key.
async fn revision_tags(w: &World, revision: &str) -> std::collections::BTreeMap<String, String> {
    let (_, tags) = w.stack.describe_task_definition(revision).await;
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect()
}

/// Forces a new deployment of the service's revision (as rotate, or someone in
/// the console, does) and returns its id.
async fn force_new_deployment(w: &World) -> String {
    let out = w
        .stack
        .ecs
        .update_service()
        .cluster(&w.cluster)
        .service(&w.service)
        .force_new_deployment(true)
        .send()
        .await
        .expect("force new deployment");
    out.service()
        .unwrap()
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .and_then(|d| d.id())
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_failed_stopped_task_lookup_is_named_and_the_failed_page_still_goes() {
    let w = World::new("lookup_fails").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let report = invoke(&deployer, push_event(&w.repo, "v1.4.2", &digest))
        .await
        .unwrap();
    let deployment_id = report.outcomes[0]
        .detail("deployment_id")
        .unwrap()
        .to_string();
    fail_deployment(&w, &deployment_id, &w.old_revision);
    w.stack.pages().await;
    w.stack.fail_next("ListTasks", 1, "AccessDeniedException");

    let report = invoke(
        &deployer,
        verdict_event(&w, &deployment_id, "SERVICE_DEPLOYMENT_FAILED"),
    )
    .await
    .unwrap();

    assert_eq!(report.actions(), vec!["notify"], "{report:?}");
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].severity, "critical");
    let stopped = pages[0].detail("Stopped tasks").as_str().unwrap();
    assert!(
        stopped.starts_with("unavailable: ListTasks") && stopped.contains("AccessDeniedException"),
        "{stopped}"
    );
    assert_eq!(
        pages[0].detail("Restored revision"),
        &json!(format!(
            "{}:1 (rolled back by the circuit breaker)",
            w.family
        ))
    );
}

#[tokio::test]
async fn stopped_tasks_are_those_of_the_failed_deployment_only() {
    let w = World::new("stopped_filter").await;
    let deployer = w.deployer(w.mapping(), false).await;
    // A first deploy fails (its tasks stop), then a second one fails too.
    let first = w.stack.push(&w.repo, "v1.4.2").await;
    let report = invoke(&deployer, push_event(&w.repo, "v1.4.2", &first))
        .await
        .unwrap();
    let first_id = report.outcomes[0]
        .detail("deployment_id")
        .unwrap()
        .to_string();
    fail_deployment(&w, &first_id, &w.old_revision);
    let second = w.stack.push(&w.repo, "v1.4.3").await;
    let report = invoke(&deployer, push_event(&w.repo, "v1.4.3", &second))
        .await
        .unwrap();
    let second_id = report.outcomes[0]
        .detail("deployment_id")
        .unwrap()
        .to_string();
    bridge(
        "/_bridge/ecs/deployment",
        json!({"cluster": w.cluster, "service": w.service, "deploymentId": second_id, "outcome": "FAILED",
               "reason": "ECS deployment circuit breaker: tasks failed to start.",
               "stoppedReasons": ["Task failed container health checks", "Task failed container health checks", "Task failed container health checks"],
               "rollbackTo": w.old_revision}),
    );
    w.stack.pages().await;

    invoke(
        &deployer,
        verdict_event(&w, &second_id, "SERVICE_DEPLOYMENT_FAILED"),
    )
    .await
    .unwrap();

    let pages = w.stack.pages().await;
    let stopped = pages[0].detail("Stopped tasks").as_array().unwrap();
    assert_eq!(stopped.len(), 3, "{stopped:?}");
    assert!(
        stopped
            .iter()
            .all(|s| s.as_str().unwrap().contains("health checks")),
        "the first deployment's stopped task is not this one's: {stopped:?}"
    );
}

#[tokio::test]
async fn a_redelivered_push_does_not_redeploy_a_digest_that_failed() {
    let w = World::new("redelivered").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let event = push_event_at(&w.repo, "v1.4.2", &digest, "push-1", "2026-11-23T10:00:00Z");
    let report = invoke(&deployer, event.clone()).await.unwrap();
    let deployment_id = report.outcomes[0]
        .detail("deployment_id")
        .unwrap()
        .to_string();
    fail_deployment(&w, &deployment_id, &w.old_revision);
    invoke(
        &deployer,
        verdict_event(&w, &deployment_id, "SERVICE_DEPLOYMENT_FAILED"),
    )
    .await
    .unwrap();
    w.stack.pages().await;
    let mark = w.stack.calls().len();

    // A Lambda retry or a dead-letter redrive of the same push event.
    let again = invoke(&deployer, event).await.unwrap();

    assert_eq!(again.actions(), vec!["skip"], "{again:?}");
    let reason = &again.outcomes[0].reason;
    assert!(
        reason.contains("already deployed") && reason.contains("failed"),
        "{reason}"
    );
    assert_eq!(w.current_revision().await, w.old_revision);
    let calls = w.stack.calls()[mark..].to_vec();
    assert_eq!(
        (
            count(&calls, "RegisterTaskDefinition"),
            count(&calls, "UpdateService")
        ),
        (0, 0),
        "{calls:?}"
    );
    assert!(w.stack.pages().await.is_empty());

    // A new push of the same digest (a deliberate retry) deploys, on a revision of its own.
    let retry = push_event_at(&w.repo, "v1.4.2", &digest, "push-2", "2026-11-23T11:00:00Z");
    let report = invoke(&deployer, retry).await.unwrap();
    assert_eq!(report.actions(), vec!["deploy"], "{report:?}");
    assert_eq!(w.stack.revisions(&w.family).await.len(), 3);
    assert_eq!(
        w.current_revision().await,
        report.outcomes[0].detail("revision").unwrap()
    );
}

/// Two autopilot deploys in a row; the second fails and the circuit breaker rolls
/// back onto the first. That rollback completing is not autopilot's deploy
/// succeeding, and must not overwrite the first revision's record.
#[tokio::test]
async fn a_rollback_onto_an_earlier_autopilot_revision_gets_no_verdict() {
    let w = World::new("rollback_onto_ours").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let first = w.stack.push(&w.repo, "v1.4.2").await;
    let report = invoke(&deployer, push_event(&w.repo, "v1.4.2", &first))
        .await
        .unwrap();
    let first_revision = report.outcomes[0].detail("revision").unwrap().to_string();
    let first_id = report.outcomes[0]
        .detail("deployment_id")
        .unwrap()
        .to_string();
    complete_deployment(&w, &first_id);
    invoke(
        &deployer,
        verdict_event(&w, &first_id, "SERVICE_DEPLOYMENT_COMPLETED"),
    )
    .await
    .unwrap();
    let second = w.stack.push(&w.repo, "v1.4.3").await;
    let report = invoke(&deployer, push_event(&w.repo, "v1.4.3", &second))
        .await
        .unwrap();
    let second_id = report.outcomes[0]
        .detail("deployment_id")
        .unwrap()
        .to_string();
    let rollback_id = fail_deployment(&w, &second_id, &first_revision);
    invoke(
        &deployer,
        verdict_event(&w, &second_id, "SERVICE_DEPLOYMENT_FAILED"),
    )
    .await
    .unwrap();
    w.stack.pages().await;

    let report = invoke(
        &deployer,
        verdict_event(&w, &rollback_id, "SERVICE_DEPLOYMENT_COMPLETED"),
    )
    .await
    .unwrap();

    assert_eq!(report.actions(), vec!["ignore"], "{report:?}");
    assert!(
        report.outcomes[0].reason.contains("another deployment"),
        "{}",
        report.outcomes[0].reason
    );
    assert!(w.stack.pages().await.is_empty(), "no RESOLVED page");
    let (_, tags) = w.stack.describe_task_definition(&first_revision).await;
    let verdict = tags
        .iter()
        .find(|t| t.key() == Some("autopilot:verdict"))
        .and_then(|t| t.value());
    assert_eq!(verdict, Some(format!("COMPLETED {first_id}").as_str()));
}

#[tokio::test]
async fn one_unreadable_service_does_not_block_the_rest_of_a_fan_out() {
    let w = World::new("fan_out_fault").await;
    let s = &w.stack;
    let locked = s.name("locked");
    let worker_td = s
        .task_definition(&s.name("worker"), "worker", &s.image(&w.repo, "v1.4.1"))
        .await;
    s.service(
        &w.cluster,
        "worker",
        worker_td.task_definition_arn().unwrap(),
    )
    .await;
    let locked_td = s
        .task_definition(&s.name("locked"), "app", &s.image(&w.repo, "v1.4.1"))
        .await;
    s.service(
        &w.cluster,
        &locked,
        locked_td.task_definition_arn().unwrap(),
    )
    .await;
    let mapping = json!([
        {"repository": w.repo, "cluster": w.cluster, "service": "backend", "container": "app"},
        {"repository": w.repo, "cluster": w.cluster, "service": "worker", "container": "worker"},
        {"repository": w.repo, "cluster": w.cluster, "service": locked, "container": "app"},
    ]);
    let deployer = w.deployer(mapping, false).await;
    let digest = s.push(&w.repo, "v1.4.2").await;
    let event = push_event(&w.repo, "v1.4.2", &digest);
    // IAM does not grant DescribeServices on one service (say its ARN is missing from ServiceArns).
    s.fail_matching("DescribeServices", 1000, "AccessDeniedException", &locked);
    let mark = s.calls().len();

    let err = invoke(&deployer, event.clone()).await.unwrap_err();

    assert_eq!(err.code, "autopilot.AwsCallRefused", "{err}");
    assert!(err.message.contains("DescribeServices"), "{err}");
    for service in ["backend", "worker"] {
        let (td, _) = s
            .describe_task_definition(
                s.describe_service(&w.cluster, service)
                    .await
                    .task_definition()
                    .unwrap(),
            )
            .await;
        assert!(
            td.container_definitions()[0]
                .image()
                .unwrap()
                .ends_with(&digest),
            "{service} was deployed"
        );
    }
    let pages = s.pages().await;
    let warning: Vec<_> = pages.iter().filter(|p| p.severity == "warning").collect();
    assert_eq!(warning.len(), 1, "{pages:?}");
    assert!(
        warning[0].summary().contains(&locked),
        "{}",
        warning[0].summary()
    );
    assert!(warning[0]
        .detail("Reason")
        .as_str()
        .unwrap()
        .contains("AccessDeniedException"));

    // The invocation fails, so the deployments it started are recorded at once:
    // Lambda's retry finds them announced.
    for service in ["backend", "worker"] {
        let revision = s
            .describe_service(&w.cluster, service)
            .await
            .task_definition()
            .unwrap()
            .to_string();
        let primary = s.describe_service(&w.cluster, service).await.deployments()[0]
            .id()
            .unwrap()
            .to_string();
        assert_eq!(
            revision_tags(&w, &revision)
                .await
                .get("autopilot:deployment-id"),
            Some(&primary),
            "{service}"
        );
    }

    // The retry does only what is left; what is done is not done again, nor paged.
    let mark_retry = s.calls().len();
    invoke(&deployer, event.clone()).await.unwrap_err();
    let calls = s.calls()[mark_retry..].to_vec();
    assert_eq!(
        (
            count(&calls, "RegisterTaskDefinition"),
            count(&calls, "UpdateService")
        ),
        (0, 0),
        "{calls:?}"
    );
    let pages = s.pages().await;
    assert!(
        pages.iter().all(|p| p.severity == "warning"),
        "only the unreadable service is paged again: {pages:?}"
    );

    // Once IAM is fixed, the next retry deploys the last service and succeeds.
    s.clear_faults(&locked);
    let report = invoke(&deployer, event).await.unwrap();
    assert_eq!(
        report.actions(),
        vec!["skip", "skip", "deploy"],
        "{report:?}"
    );
    let calls = s.calls()[mark..].to_vec();
    assert_eq!(count(&calls, "UpdateService"), 3, "{calls:?}");
}

#[tokio::test]
async fn pushes_in_the_same_second_are_ordered_by_ecr_precision_then_event_time() {
    let w = World::new("same_second").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let older = w.stack.push(&w.repo, "v1.4.2").await;
    let newer = w.stack.push(&w.repo, "v1.4.3").await;
    w.stack
        .set_pushed_at(&w.repo, &w.old_digest, 1_699_999_000.0);
    w.stack.set_pushed_at(&w.repo, &older, 1_700_000_000.100);
    w.stack.set_pushed_at(&w.repo, &newer, 1_700_000_000.900);

    // The newer push's event arrives first; the older one's after it.
    let report = invoke(&deployer, push_event(&w.repo, "v1.4.3", &newer))
        .await
        .unwrap();
    assert_eq!(report.actions(), vec!["deploy"]);
    let deployed = w.current_revision().await;
    let late = invoke(&deployer, push_event(&w.repo, "v1.4.2", &older))
        .await
        .unwrap();
    assert_eq!(late.actions(), vec!["skip"], "{late:?}");
    assert!(late.outcomes[0].reason.starts_with("older push"));
    assert_eq!(w.current_revision().await, deployed);

    // Same instant in ECR: the push events' own times decide.
    let third = w.stack.push(&w.repo, "v1.4.4").await;
    let fourth = w.stack.push(&w.repo, "v1.4.5").await;
    w.stack.set_pushed_at(&w.repo, &third, 1_700_000_100.5);
    w.stack.set_pushed_at(&w.repo, &fourth, 1_700_000_100.5);
    let report = invoke(
        &deployer,
        push_event_at(&w.repo, "v1.4.5", &fourth, "push-5", "2026-11-23T10:00:02Z"),
    )
    .await
    .unwrap();
    assert_eq!(report.actions(), vec!["deploy"]);
    let deployed = w.current_revision().await;
    let late = invoke(
        &deployer,
        push_event_at(&w.repo, "v1.4.4", &third, "push-4", "2026-11-23T10:00:01Z"),
    )
    .await
    .unwrap();
    assert_eq!(late.actions(), vec!["skip"], "{late:?}");
    assert!(
        late.outcomes[0].reason.contains("same instant"),
        "{}",
        late.outcomes[0].reason
    );
    assert_eq!(w.current_revision().await, deployed);
}

#[tokio::test]
async fn a_large_fan_out_is_bounded_and_throttling_is_retried() {
    let w = World::new("bounded").await;
    let s = &w.stack;
    let mut mapping = vec![];
    for i in 0..12 {
        let name = format!("svc{i}");
        s.service(&w.cluster, &name, &w.old_revision).await;
        mapping.push(json!({"repository": w.repo, "cluster": w.cluster, "service": name, "container": "app"}));
    }
    let config = s.deploy_config_with(&[
        (deploy::config::SERVICES, json!(mapping).to_string()),
        (deploy::config::DEPLOY_CONCURRENCY, "3".into()),
    ]);
    let deployer = Deployer::new(&s.sdk, config);
    let digest = s.push(&w.repo, "v1.4.2").await;
    s.slow("UpdateService", 0.3);
    // ECS throttles three times; the SDK backs off and tries again (a 4th attempt:
    // more than the SDK's default of 3).
    s.fail_next("UpdateService", 3, "ThrottlingException");
    let mark = s.calls().len();

    let report = invoke(&deployer, push_event(&w.repo, "v1.4.2", &digest))
        .await
        .unwrap();

    assert_eq!(report.actions(), vec!["deploy"; 12], "{report:?}");
    let in_flight = s.max_in_flight("UpdateService");
    assert!(
        (2..=3).contains(&in_flight),
        "at most 3 services at once, and more than one: {in_flight}"
    );
    let calls = s.calls()[mark..].to_vec();
    assert_eq!(count(&calls, "UpdateService"), 12, "{calls:?}");
    assert_eq!(
        count(&calls, "DescribeServices"),
        2,
        "12 services in batches of 10"
    );
}

#[tokio::test]
async fn an_ec2_task_definition_keeps_what_fargate_refuses() {
    let w = World::new("ec2_clone").await;
    let s = &w.stack;
    let family = s.name("ec2-backend");
    let td = s
        .ec2_task_definition(&family, "app", &s.image(&w.repo, "v1.4.1"))
        .await;
    s.service(&w.cluster, "ec2", td.task_definition_arn().unwrap())
        .await;
    let mapping =
        json!([{"repository": w.repo, "cluster": w.cluster, "service": "ec2", "container": "app"}]);
    let deployer = w.deployer(mapping, false).await;
    let digest = s.push(&w.repo, "v1.4.2").await;

    let report = invoke(&deployer, push_event(&w.repo, "v1.4.2", &digest))
        .await
        .unwrap();

    let (new, _) = s
        .describe_task_definition(report.outcomes[0].detail("revision").unwrap())
        .await;
    assert_eq!(new.placement_constraints(), td.placement_constraints());
    assert!(!new.placement_constraints().is_empty());
    assert_eq!(new.ipc_mode(), td.ipc_mode());
    assert_eq!(new.pid_mode(), td.pid_mode());
    assert_eq!(new.network_mode(), td.network_mode());
    assert!(new.container_definitions()[0]
        .image()
        .unwrap()
        .ends_with(&digest));
}

/// The harness refuses what AWS refuses, so a fixture or a call of the code that
/// AWS would reject cannot pass here.
#[tokio::test]
async fn the_emulator_refuses_what_aws_refuses() {
    let w = World::new("strict").await;
    let s = &w.stack;
    let err = s
        .ecs
        .list_tasks()
        .cluster(&w.cluster)
        .started_by("ecs-svc/1")
        .desired_status(aws_sdk_ecs::types::DesiredStatus::Stopped)
        .send()
        .await
        .unwrap_err();
    let text = aws_sdk_ecs::error::DisplayErrorContext(&err).to_string();
    assert!(text.contains("must be the only filter"), "{text}");

    let err = s
        .ecs
        .register_task_definition()
        .family(s.name("bad"))
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .ipc_mode(aws_sdk_ecs::types::IpcMode::None)
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("app")
                .image("x")
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    let text = aws_sdk_ecs::error::DisplayErrorContext(&err).to_string();
    assert!(text.contains("ipcMode"), "{text}");

    let err = s
        .ecs
        .create_service()
        .cluster(&w.cluster)
        .service_name("no-network")
        .task_definition(&w.old_revision)
        .desired_count(1)
        .send()
        .await
        .unwrap_err();
    let text = aws_sdk_ecs::error::DisplayErrorContext(&err).to_string();
    assert!(
        text.contains("Network Configuration must be provided"),
        "{text}"
    );
}

/// Issue #9 (a): the push's own deployment completed but its verdict event was
/// lost. Past the window a forced redeployment of the same revision reaches a verdict:
/// it is not autopilot's deployment, so nothing is paged and nothing recorded.
#[tokio::test]
async fn a_deployment_of_the_revision_outside_the_window_is_not_adopted() {
    let w = World::new("outside_window").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let report = invoke(&deployer, push_event(&w.repo, "v1.4.2", &digest))
        .await
        .unwrap();
    let revision = report.outcomes[0].detail("revision").unwrap().to_string();
    let ours = report.outcomes[0]
        .detail("deployment_id")
        .unwrap()
        .to_string();
    complete_deployment(&w, &ours); // its COMPLETED event never arrives
                                    // A minute past the window after the revision was registered, someone forces a new deployment of it.
    let past_the_window =
        chrono::Utc::now().timestamp() as f64 - (deploy::plan::adopt::WINDOW_SECS + 60) as f64;
    bridge(
        "/_bridge/ecs/registered-at",
        json!({"taskDefinition": revision, "epoch": past_the_window}),
    );
    let forced = force_new_deployment(&w).await;
    complete_deployment(&w, &forced); // ECS lists only the forced deployment now
    w.stack.pages().await;

    for verdict in ["SERVICE_DEPLOYMENT_COMPLETED", "SERVICE_DEPLOYMENT_FAILED"] {
        let report = invoke(&deployer, verdict_event(&w, &forced, verdict))
            .await
            .unwrap();
        assert_eq!(report.actions(), vec!["ignore"], "{report:?}");
        let reason = &report.outcomes[0].reason;
        assert!(
            reason.contains("record names no deployment yet")
                && reason.contains("not the deployment autopilot started"),
            "{reason}"
        );
    }
    assert!(w.stack.pages().await.is_empty(), "no page");
    let tags = revision_tags(&w, &revision).await;
    assert_eq!(tags.get("autopilot:deployment-id"), None);
    assert_eq!(tags.get("autopilot:verdict"), None);
}

/// Within the window, a deployment of the revision made after autopilot moved the
/// service on is not autopilot's either: here the circuit breaker rolls a failed
/// second deploy back onto the first revision, whose own verdict event was lost.
/// The rollback completing is not the first deploy succeeding.
#[tokio::test]
async fn a_rollback_onto_a_revision_whose_verdict_was_lost_gets_no_verdict() {
    let w = World::new("rollback_unrecorded").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let first = w.stack.push(&w.repo, "v1.4.2").await;
    let report = invoke(&deployer, push_event(&w.repo, "v1.4.2", &first))
        .await
        .unwrap();
    let first_revision = report.outcomes[0].detail("revision").unwrap().to_string();
    let first_id = report.outcomes[0]
        .detail("deployment_id")
        .unwrap()
        .to_string();
    complete_deployment(&w, &first_id); // its COMPLETED event never arrives
    let second = w.stack.push(&w.repo, "v1.4.3").await;
    let report = invoke(&deployer, push_event(&w.repo, "v1.4.3", &second))
        .await
        .unwrap();
    let second_id = report.outcomes[0]
        .detail("deployment_id")
        .unwrap()
        .to_string();
    let rollback_id = fail_deployment(&w, &second_id, &first_revision);
    let failed = invoke(
        &deployer,
        verdict_event(&w, &second_id, "SERVICE_DEPLOYMENT_FAILED"),
    )
    .await
    .unwrap();
    assert_eq!(failed.actions(), vec!["notify"], "{failed:?}");
    complete_deployment(&w, &rollback_id); // ECS lists only the rollback now
    w.stack.pages().await;

    let report = invoke(
        &deployer,
        verdict_event(&w, &rollback_id, "SERVICE_DEPLOYMENT_COMPLETED"),
    )
    .await
    .unwrap();

    assert_eq!(report.actions(), vec!["ignore"], "{report:?}");
    assert!(
        report.outcomes[0]
            .reason
            .contains("rollback or someone else's"),
        "{}",
        report.outcomes[0].reason
    );
    assert!(w.stack.pages().await.is_empty(), "no RESOLVED page");
    let tags = revision_tags(&w, &first_revision).await;
    assert_eq!(tags.get("autopilot:deployment-id"), None);
    assert_eq!(tags.get("autopilot:verdict"), None);
}

/// Issue #9 (b): RegisterTaskDefinition and UpdateService done, then the
/// invocation stops before its page. The retry pages, with the deployment id
/// UpdateService returned, records the deployment, and deploys nothing again.
#[tokio::test]
async fn a_crash_between_update_service_and_the_page_is_finished_by_the_retry() {
    let w = World::new("crash_window").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let event = push_event(&w.repo, "v1.4.2", &digest);
    w.stack.fail_next("Publish", MAX_ATTEMPTS, "InternalError");

    let err = invoke(&deployer, event.clone()).await.unwrap_err();
    assert_eq!(err.code, "autopilot.PageFailed", "{err}");
    assert!(w.stack.pages().await.is_empty());
    let revision = w.current_revision().await;
    assert_ne!(revision, w.old_revision, "UpdateService ran");
    let service = w.stack.describe_service(&w.cluster, &w.service).await;
    let started = service.deployments()[0].id().unwrap().to_string();
    assert_eq!(
        revision_tags(&w, &revision)
            .await
            .get("autopilot:deployment-id"),
        None
    );
    let mark = w.stack.calls().len();

    let retry = invoke(&deployer, event).await.unwrap();

    assert_eq!(retry.actions(), vec!["announce"], "{retry:?}");
    assert_eq!(
        retry.outcomes[0].detail("deployment_id"),
        Some(started.as_str())
    );
    assert_eq!(
        multiset(&w.stack.calls()[mark..]),
        multiset(&[
            "DescribeServices",
            "DescribeTaskDefinition",
            "DescribeImages",
            "Publish",
            "TagResource",
        ]),
        "no second registration or UpdateService"
    );
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert_eq!(pages[0].detail("Deployment"), &json!(started));
    assert_eq!(
        revision_tags(&w, &revision)
            .await
            .get("autopilot:deployment-id"),
        Some(&started)
    );
    assert_eq!(w.current_revision().await, revision);
    assert_eq!(w.stack.revisions(&w.family).await.len(), 2);
}

/// Issue #9 (c): the push records no deployment id; its deployment's verdict is
/// recognised from ECS's facts, paged, and recorded with the id.
#[tokio::test]
async fn the_verdict_adopts_the_deployment_the_push_started_and_records_it() {
    let w = World::new("adopt").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let report = invoke(&deployer, push_event(&w.repo, "v1.4.2", &digest))
        .await
        .unwrap();
    let revision = report.outcomes[0].detail("revision").unwrap().to_string();
    let id = report.outcomes[0]
        .detail("deployment_id")
        .unwrap()
        .to_string();
    assert_eq!(
        revision_tags(&w, &revision)
            .await
            .get("autopilot:deployment-id"),
        None
    );
    let started = w.stack.pages().await;
    complete_deployment(&w, &id);

    let completed = verdict_event(&w, &id, "SERVICE_DEPLOYMENT_COMPLETED");
    let report = invoke(&deployer, completed.clone()).await.unwrap();

    assert_eq!(report.actions(), vec!["notify"], "{report:?}");
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].action(), "resolve");
    assert_eq!(pages[0].dedup_key(), started[0].dedup_key());
    let tags = revision_tags(&w, &revision).await;
    assert_eq!(tags.get("autopilot:deployment-id"), Some(&id));
    assert_eq!(
        tags.get("autopilot:verdict"),
        Some(&format!("COMPLETED {id}"))
    );
    // From now on the record names it: a repeated event is told once, and another
    // deployment of the revision is not autopilot's.
    assert_eq!(
        invoke(&deployer, completed).await.unwrap().actions(),
        vec!["ignore"]
    );
    let forced = force_new_deployment(&w).await;
    let report = invoke(
        &deployer,
        verdict_event(&w, &forced, "SERVICE_DEPLOYMENT_COMPLETED"),
    )
    .await
    .unwrap();
    assert!(
        report.outcomes[0].reason.contains("another deployment"),
        "{report:?}"
    );
    assert!(w.stack.pages().await.is_empty());
}

/// Another mapped service (a canary) pointed at the push's revision within the
/// window: its verdict does not adopt the record written for the service the
/// push deployed, so that service's own verdict is still told and recorded.
#[tokio::test]
async fn another_services_deployment_of_the_revision_is_not_adopted() {
    let w = World::new("adopt_canary").await;
    let canary = "canary".to_string();
    let canary_arn = w.stack.service(&w.cluster, &canary, &w.old_revision).await;
    let mut mapping = w.mapping();
    mapping.as_array_mut().unwrap().push(json!(
        {"repository": w.repo, "tags": ["canary-*"], "cluster": w.cluster, "service": canary, "container": "app"}
    ));
    let deployer = w.deployer(mapping, false).await;
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let report = invoke(&deployer, push_event(&w.repo, "v1.4.2", &digest))
        .await
        .unwrap();
    assert_eq!(actions(&report), vec!["deploy"], "{report:?}");
    let revision = report.outcomes[0].detail("revision").unwrap().to_string();
    let ours = report.outcomes[0]
        .detail("deployment_id")
        .unwrap()
        .to_string();
    w.stack.pages().await;
    // Someone points the canary at the same revision, seconds after it was registered.
    let out = w
        .stack
        .ecs
        .update_service()
        .cluster(&w.cluster)
        .service(&canary)
        .task_definition(&revision)
        .send()
        .await
        .expect("point the canary at the revision");
    let theirs = out
        .service()
        .unwrap()
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .and_then(|d| d.id())
        .unwrap()
        .to_string();
    bridge(
        "/_bridge/ecs/deployment",
        json!({"cluster": w.cluster, "service": canary, "deploymentId": theirs, "outcome": "COMPLETED"}),
    );
    let report = invoke(
        &deployer,
        deployment_event(&canary_arn, &theirs, "SERVICE_DEPLOYMENT_COMPLETED", ""),
    )
    .await
    .unwrap();
    assert_eq!(report.actions(), vec!["ignore"], "{report:?}");
    let reason = &report.outcomes[0].reason;
    assert!(
        reason.contains(&format!("registered for {}/backend", w.cluster))
            && reason.contains("not the deployment autopilot started"),
        "{reason}"
    );
    assert!(w.stack.pages().await.is_empty(), "no page for the canary");
    let tags = revision_tags(&w, &revision).await;
    assert_eq!(tags.get("autopilot:deployment-id"), None);
    assert_eq!(tags.get("autopilot:verdict"), None);

    // The service the push deployed still gets its verdict, and records it.
    complete_deployment(&w, &ours);
    let report = invoke(
        &deployer,
        verdict_event(&w, &ours, "SERVICE_DEPLOYMENT_COMPLETED"),
    )
    .await
    .unwrap();
    assert_eq!(report.actions(), vec!["notify"], "{report:?}");
    assert_eq!(w.stack.pages().await.len(), 1);
    let tags = revision_tags(&w, &revision).await;
    assert_eq!(tags.get("autopilot:deployment-id"), Some(&ours));
}

/// A FAILED event handled after ECS dropped the drained deployment from the
/// service: the deployment is found by its stopped tasks, adopted and paged.
#[tokio::test]
async fn a_late_failed_verdict_finds_the_drained_deployment_by_its_stopped_tasks() {
    let w = World::new("drained").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let report = invoke(&deployer, push_event(&w.repo, "v1.4.2", &digest))
        .await
        .unwrap();
    let revision = report.outcomes[0].detail("revision").unwrap().to_string();
    let id = report.outcomes[0]
        .detail("deployment_id")
        .unwrap()
        .to_string();
    fail_deployment(&w, &id, &w.old_revision);
    bridge(
        "/_bridge/ecs/drain",
        json!({"cluster": w.cluster, "service": w.service, "deploymentId": id}),
    );
    w.stack.pages().await;

    let report = invoke(
        &deployer,
        verdict_event(&w, &id, "SERVICE_DEPLOYMENT_FAILED"),
    )
    .await
    .unwrap();

    assert_eq!(report.actions(), vec!["notify"], "{report:?}");
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].severity, "critical");
    let stopped = pages[0].detail("Stopped tasks").as_array().unwrap();
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    let tags = revision_tags(&w, &revision).await;
    assert_eq!(tags.get("autopilot:deployment-id"), Some(&id));
    assert_eq!(tags.get("autopilot:verdict"), Some(&format!("FAILED {id}")));
}

/// The push is redelivered after its deployment failed and was rolled back, but
/// before the FAILED verdict recorded it: the service still lists the failed
/// deployment, so the same push is not deployed again.
#[tokio::test]
async fn a_push_redelivered_before_its_failed_verdict_does_not_deploy_again() {
    let w = World::new("redelivered_early").await;
    let deployer = w.deployer(w.mapping(), false).await;
    let digest = w.stack.push(&w.repo, "v1.4.2").await;
    let event = push_event_at(&w.repo, "v1.4.2", &digest, "push-1", "2026-11-23T10:00:00Z");
    let report = invoke(&deployer, event.clone()).await.unwrap();
    let id = report.outcomes[0]
        .detail("deployment_id")
        .unwrap()
        .to_string();
    fail_deployment(&w, &id, &w.old_revision);
    w.stack.pages().await;
    let mark = w.stack.calls().len();

    let again = invoke(&deployer, event).await.unwrap();

    assert_eq!(again.actions(), vec!["skip"], "{again:?}");
    let reason = &again.outcomes[0].reason;
    assert!(
        reason.contains("already deployed") && reason.contains(&id),
        "{reason}"
    );
    let calls = w.stack.calls()[mark..].to_vec();
    assert_eq!(
        (
            count(&calls, "RegisterTaskDefinition"),
            count(&calls, "UpdateService")
        ),
        (0, 0),
        "{calls:?}"
    );
    assert_eq!(w.current_revision().await, w.old_revision);
    assert!(w.stack.pages().await.is_empty());
}

/// The window in which a verdict adopts a push's deployment is one attempt of
/// the function (its timeout in template.yaml), plus the clock allowance: a
/// retry that deploys an earlier attempt's revision records the id at once.
#[test]
fn the_adoption_window_is_the_function_timeout() {
    use deploy::plan::adopt::{CLOCK_SKEW_SECS, FUNCTION_TIMEOUT_SECS, WINDOW_SECS};
    assert_eq!(WINDOW_SECS, FUNCTION_TIMEOUT_SECS + CLOCK_SKEW_SECS);
    let deploy = template::properties("DeployFunction");
    let timeout = deploy["Timeout"]
        .as_i64()
        .or_else(|| template::template()["Globals"]["Function"]["Timeout"].as_i64());
    assert_eq!(timeout, Some(FUNCTION_TIMEOUT_SECS));
}
