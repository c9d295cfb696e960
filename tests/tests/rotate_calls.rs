//! How many Secrets Manager calls one full single-user rotation makes (the AWS
//! sample makes 14). finishSecret reads the pending value to check it logs in
//! before AWSCURRENT moves: 12. Alone in its binary, with its own emulator, so the count
//! holds only this rotation's calls.

use autopilot_tests::postgres::postgres;
use autopilot_tests::rotation::{rotation_event, STEPS};
use autopilot_tests::*;
use lambda_runtime::{Context, LambdaEvent};

const SECRETS_MANAGER: &[&str] = &[
    "DescribeSecret",
    "GetSecretValue",
    "GetRandomPassword",
    "PutSecretValue",
    "UpdateSecretVersionStage",
];

#[tokio::test]
async fn a_single_user_rotation_makes_twelve_secrets_manager_calls() {
    let stack = Stack::new("sm_calls").await;
    let pg = postgres();
    let (_, arn) = stack.database_user(pg, "db", "old-password").await;
    let rotations =
        serde_json::json!([{"secret": stack.name("db"), "strategy": "postgres-single-user"}]);
    let rotator = rotate::Rotator::new(&stack.sdk, stack.rotation_config(rotations)).unwrap();
    let token = stack.start_rotation(&arn).await;
    let mark = bridge("/_bridge/calls", serde_json::json!({"match": ""}))["calls"]
        .as_array()
        .unwrap()
        .len();

    let mut per_step = Vec::new();
    for step in STEPS {
        let before = bridge("/_bridge/calls", serde_json::json!({"match": ""}))["calls"]
            .as_array()
            .unwrap()
            .len();
        rotator
            .handle(LambdaEvent::new(
                rotation_event(step, &arn, &token),
                Context::default(),
            ))
            .await
            .unwrap();
        let calls = bridge("/_bridge/calls", serde_json::json!({"match": ""}))["calls"]
            .as_array()
            .unwrap()[before..]
            .to_vec();
        per_step.push((
            step,
            calls
                .iter()
                .filter(|c| SECRETS_MANAGER.contains(&c.as_str().unwrap()))
                .count(),
        ));
    }

    let calls: Vec<String> = bridge("/_bridge/calls", serde_json::json!({"match": ""}))["calls"]
        .as_array()
        .unwrap()[mark..]
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .filter(|c| SECRETS_MANAGER.contains(&c.as_str()))
        .collect();
    assert_eq!(
        per_step,
        vec![
            ("createSecret", 4),
            ("setSecret", 3),
            ("testSecret", 2),
            ("finishSecret", 3)
        ],
        "{calls:?}"
    );
    assert_eq!(calls.len(), 12, "{calls:?}");
}
