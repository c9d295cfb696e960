//! Log tests live in their own binary: tracing caches per-callsite interest
//! process-wide, so a test thread without a subscriber can hide events from a
//! capturing one. Here every test captures.

use autopilot_tests::*;
use deploy::Deployer;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;

#[tokio::test]
async fn every_decision_is_a_json_log_line_with_request_resource_action_and_reason() {
    let stack = Stack::new("logs").await;
    let repo = stack.repository("backend").await;
    stack.push(&repo, "v1.4.1").await;
    let cluster = stack.cluster("prod").await;
    let td = stack
        .task_definition(&stack.name("backend"), "app", &stack.image(&repo, "v1.4.1"))
        .await;
    stack
        .service(&cluster, "backend", td.task_definition_arn().unwrap())
        .await;
    let mapping =
        json!([{"repository": repo, "cluster": cluster, "service": "backend", "container": "app"}]);
    let deployer = Deployer::new(&stack.sdk, stack.config(mapping, false));
    let digest = stack.push(&repo, "v1.4.2").await;
    let event = ecr_event(&repo, Some("v1.4.2"), &digest, "PUSH", "SUCCESS");
    let mut context = Context::default();
    context.request_id = "req-42".into();

    let (report, logs) = logs::capture(deployer.handle(LambdaEvent::new(event, context))).await;
    report.unwrap();

    let lines = logs.lines();
    let resource = format!("{cluster}/backend");
    for action in ["register", "update_service", "page", "deploy"] {
        let line = lines
            .iter()
            .find(|l| l["action"] == action)
            .unwrap_or_else(|| panic!("no `{action}` line in {}", logs.text()));
        assert_eq!(line["span"]["request_id"], "req-42", "{line}");
        assert_eq!(line["span"]["function"], "autopilot-deploy", "{line}");
        if action != "register" {
            assert_eq!(line["resource"], json!(resource), "{line}");
        }
    }
    assert!(
        !logs.text().contains(PLAINTEXT_SECRET),
        "a value from the task definition's environment reached the logs"
    );
    let pages = format!("{:?}", stack.pages().await);
    assert!(!pages.is_empty() && !pages.contains(PLAINTEXT_SECRET));
    let decision = lines.iter().find(|l| l["action"] == "deploy").unwrap();
    assert!(
        decision["reason"].as_str().unwrap().contains("was pushed"),
        "{decision}"
    );
}

/// A full rotation, its logs and its pages: no password, old or new, appears anywhere.
#[tokio::test]
async fn a_full_rotation_logs_no_secret_value() {
    full_rotation_logs_no_secret_value("rotation_logs", "info").await;
}

/// The same at TRACE, the most an operator can set in `AWS_LAMBDA_LOG_LEVEL`, with
/// the two variables the SDK's own TRACE lines tell them to set to see more. The SDK
/// logs request and response bodies at TRACE (`signing request`, `read HTTP
/// response body`) and redacts the sensitive ones unless `LOG_SIGNABLE_BODY` or
/// `LOG_SENSITIVE_BODIES` is true: then PutSecretValue's new password and
/// GetSecretValue's answer would be in the logs. tracing's `max_level_debug`
/// (Cargo.toml) compiles every TRACE line out, so no variable can bring them back.
#[tokio::test]
async fn a_full_rotation_logs_no_secret_value_even_at_trace() {
    // Read by the SDK on every request; the other tests here log no more for it.
    std::env::set_var("LOG_SENSITIVE_BODIES", "true");
    std::env::set_var("LOG_SIGNABLE_BODY", "true");
    full_rotation_logs_no_secret_value("rotation_trace", "trace").await;
}

async fn full_rotation_logs_no_secret_value(name: &str, level: &str) {
    use autopilot_tests::postgres::postgres;
    use autopilot_tests::rotation::{rotation_event, STEPS};

    let stack = Stack::new(name).await;
    let pg = postgres();
    let old = "old-secret-in-logs-check";
    let (user, arn) = stack.database_user(pg, "db", old).await;
    let url = stack
        .create_secret(
            "db-url",
            &format!("postgres://{user}:{old}@127.0.0.1:{}/postgres", pg.port),
        )
        .await;
    let rotations = json!([{"secret": stack.name("db"), "strategy": "postgres-single-user",
                            "dependents": [{"secret": stack.name("db-url"), "format": "url"}]}]);
    let rotator = rotate::Rotator::new(&stack.sdk, stack.rotation_config(rotations)).unwrap();
    let token = stack.start_rotation(&arn).await;

    let (_, logs) = logs::capture_at(level, async {
        for step in STEPS {
            let mut context = Context::default();
            context.request_id = format!("req-{step}");
            rotator
                .handle(LambdaEvent::new(
                    rotation_event(step, &arn, &token),
                    context,
                ))
                .await
                .unwrap();
        }
        // A failing step logs its error too: replay setSecret with a token that is not pending.
        let _ = rotator
            .handle(LambdaEvent::new(
                rotation_event("setSecret", &arn, "not-a-token-not-a-token-not-a-token"),
                Context::default(),
            ))
            .await;
    })
    .await;

    let new: serde_json::Value =
        serde_json::from_str(&stack.secret_value(&arn, "AWSCURRENT").await.unwrap()).unwrap();
    let new_password = new["password"].as_str().unwrap().to_string();
    let dependent = stack.secret_value(&url, "AWSCURRENT").await.unwrap();
    let text = logs.text();
    let pages = format!("{:?}", stack.pages().await);
    for value in [old, new_password.as_str(), dependent.as_str()] {
        assert!(!text.contains(value), "a secret value reached the logs");
        assert!(!pages.contains(value), "a secret value reached a page");
    }
    let lines = logs.lines();
    let set = lines
        .iter()
        .find(|l| l["action"] == "set_password")
        .expect("setSecret logs its action");
    assert_eq!(set["span"]["request_id"], "req-setSecret");
    assert_eq!(set["span"]["function"], "autopilot-rotate");
    assert!(set["reason"].as_str().is_some());
}
