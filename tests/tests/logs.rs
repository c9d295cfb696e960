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
    rotation::full_rotation_logs_no_secret_value("rotation_logs", "info").await;
}
