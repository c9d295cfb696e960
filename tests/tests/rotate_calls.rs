//! How many Secrets Manager calls a rotation makes, step by step (the AWS sample
//! makes 14 for a single user). Secrets Manager runs the four steps back to back,
//! so they usually reach one warm Lambda sandbox: one `Rotator` for all four. A
//! new `Rotator` per step is a cold sandbox each time, where finishSecret cannot
//! use the pending value createSecret wrote and reads it (one call more).
//!
//! Every Secrets Manager call names the secret, so each test counts the calls
//! that mention its own stack's names, and the tests may run in parallel.

use autopilot_shared::config::DRY_RUN;
use autopilot_tests::postgres::{ident, literal, postgres};
use autopilot_tests::rotation::{rds_secret, rotation_event, STEPS};
use autopilot_tests::*;
use lambda_runtime::{Context, LambdaEvent};
use rotate::config::{Config, ROTATIONS};
use rotate::Rotator;
use serde_json::json;

const SECRETS_MANAGER: &[&str] = &[
    "DescribeSecret",
    "GetSecretValue",
    "GetRandomPassword",
    "PutSecretValue",
    "UpdateSecretVersionStage",
];

/// This stack's Secrets Manager calls so far, in order.
fn sm_calls(stack: &Stack) -> Vec<String> {
    bridge(
        "/_bridge/calls",
        json!({"match": format!("{}-", stack.prefix)}),
    )["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .filter(|c| SECRETS_MANAGER.contains(&c.as_str()))
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Sandbox {
    /// One Rotator for the four steps.
    Warm,
    /// A new Rotator for every step.
    Cold,
}

/// Runs one whole rotation of `arn` and returns each step's Secrets Manager calls.
async fn rotation_calls(
    stack: &Stack,
    config: &Config,
    arn: &str,
    sandbox: Sandbox,
) -> Vec<(&'static str, Vec<String>)> {
    let token = stack.start_rotation(arn).await;
    let warm = Rotator::new(&stack.sdk, config.clone()).unwrap();
    let mut per_step = Vec::new();
    for step in STEPS {
        let cold;
        let rotator = match sandbox {
            Sandbox::Warm => &warm,
            Sandbox::Cold => {
                cold = Rotator::new(&stack.sdk, config.clone()).unwrap();
                &cold
            }
        };
        let before = sm_calls(stack).len();
        rotator
            .handle(LambdaEvent::new(
                rotation_event(step, arn, &token),
                Context::default(),
            ))
            .await
            .unwrap_or_else(|e| panic!("{step}: {}", e.message));
        per_step.push((step, sm_calls(stack)[before..].to_vec()));
    }
    let stages = stack.stages(arn).await;
    let promoted = stages[&token].contains(&"AWSCURRENT".to_string());
    assert_eq!(promoted, !config.common.dry_run, "{stages:?}");
    stack.end_rotation(arn, &token).await;
    per_step
}

fn calls(per_step: &[(&'static str, Vec<String>)]) -> Vec<(&'static str, usize)> {
    per_step.iter().map(|(s, c)| (*s, c.len())).collect()
}

fn ops(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

const CREATE: &[&str] = &["DescribeSecret", "GetSecretValue", "PutSecretValue"];
const FINISH_WARM: &[&str] = &["DescribeSecret", "UpdateSecretVersionStage"];
const FINISH_COLD: &[&str] = &[
    "DescribeSecret",
    "GetSecretValue",
    "UpdateSecretVersionStage",
];

async fn single_user(test: &str) -> (Stack, Config, String) {
    let stack = Stack::new(test).await;
    let (_, arn) = stack.database_user(postgres(), "db", "old-password").await;
    let config = stack
        .rotation_config(json!([{"secret": stack.name("db"), "strategy": "postgres-single-user"}]));
    (stack, config, arn)
}

#[tokio::test]
async fn a_single_user_rotation_on_a_warm_sandbox_makes_eight_calls() {
    let (stack, config, arn) = single_user("calls_warm").await;

    let per_step = rotation_calls(&stack, &config, &arn, Sandbox::Warm).await;

    assert_eq!(
        per_step,
        vec![
            ("createSecret", ops(CREATE)),
            ("setSecret", ops(&["GetSecretValue", "GetSecretValue"])),
            ("testSecret", ops(&["GetSecretValue"])),
            ("finishSecret", ops(FINISH_WARM)),
        ]
    );
    assert_eq!(
        calls(&per_step),
        vec![
            ("createSecret", 3),
            ("setSecret", 2),
            ("testSecret", 1),
            ("finishSecret", 2)
        ]
    );
    assert_eq!(per_step.iter().map(|(_, c)| c.len()).sum::<usize>(), 8);
}

#[tokio::test]
async fn a_single_user_rotation_on_a_cold_sandbox_each_step_makes_nine_calls() {
    let (stack, config, arn) = single_user("calls_cold").await;

    let per_step = rotation_calls(&stack, &config, &arn, Sandbox::Cold).await;

    assert_eq!(
        per_step,
        vec![
            ("createSecret", ops(CREATE)),
            ("setSecret", ops(&["GetSecretValue", "GetSecretValue"])),
            ("testSecret", ops(&["GetSecretValue"])),
            ("finishSecret", ops(FINISH_COLD)),
        ]
    );
    assert_eq!(per_step.iter().map(|(_, c)| c.len()).sum::<usize>(), 9);
}

/// Alternating users: setSecret also reads the admin secret (`masterarn`).
#[tokio::test]
async fn an_alternating_users_rotation_makes_nine_calls_warm_and_ten_cold() {
    let stack = Stack::new("calls_alternating").await;
    let pg = postgres();
    let admin = stack.name("admin").replace('-', "_");
    pg.exec(&format!(
        "CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}",
        ident(&admin),
        literal("admin-password")
    ))
    .await;
    let master = stack
        .create_secret(
            "admin",
            &rds_secret(pg.port, &admin, "admin-password").to_string(),
        )
        .await;
    let user = stack.name("app").replace('-', "_");
    pg.exec(&format!(
        "CREATE ROLE {} LOGIN PASSWORD {}",
        ident(&user),
        literal("old-password")
    ))
    .await;
    let mut value = rds_secret(pg.port, &user, "old-password");
    value["masterarn"] = json!(master);
    let arn = stack.create_secret("db", &value.to_string()).await;
    let config = stack.rotation_config(
        json!([{"secret": stack.name("db"), "strategy": "postgres-alternating-users"}]),
    );
    let set = ops(&["GetSecretValue", "GetSecretValue", "GetSecretValue"]);

    let warm = rotation_calls(&stack, &config, &arn, Sandbox::Warm).await;
    let cold = rotation_calls(&stack, &config, &arn, Sandbox::Cold).await;

    assert_eq!(
        warm,
        vec![
            ("createSecret", ops(CREATE)),
            ("setSecret", set.clone()),
            ("testSecret", ops(&["GetSecretValue"])),
            ("finishSecret", ops(FINISH_WARM)),
        ]
    );
    assert_eq!(warm.iter().map(|(_, c)| c.len()).sum::<usize>(), 9);
    assert_eq!(
        calls(&cold),
        vec![
            ("createSecret", 3),
            ("setSecret", 3),
            ("testSecret", 1),
            ("finishSecret", 3)
        ]
    );
}

/// A random secret: nothing to set, so setSecret only reads the pending value.
#[tokio::test]
async fn a_random_secret_rotation_makes_seven_calls_warm_and_eight_cold() {
    let stack = Stack::new("calls_random").await;
    let arn = stack.create_secret("token", "old-token").await;
    let config =
        stack.rotation_config(json!([{"secret": stack.name("token"), "strategy": "random"}]));

    let warm = rotation_calls(&stack, &config, &arn, Sandbox::Warm).await;
    let cold = rotation_calls(&stack, &config, &arn, Sandbox::Cold).await;

    assert_eq!(
        warm,
        vec![
            ("createSecret", ops(CREATE)),
            ("setSecret", ops(&["GetSecretValue"])),
            ("testSecret", ops(&["GetSecretValue"])),
            ("finishSecret", ops(FINISH_WARM)),
        ]
    );
    assert_eq!(
        calls(&cold),
        vec![
            ("createSecret", 3),
            ("setSecret", 1),
            ("testSecret", 1),
            ("finishSecret", 3)
        ]
    );
}

/// A dry run reads and changes nothing: each step checks the versions, and
/// createSecret reads AWSCURRENT to name the strategy in its page.
#[tokio::test]
async fn a_dry_run_makes_five_calls() {
    let stack = Stack::new("calls_dry_run").await;
    let (_, arn) = stack.database_user(postgres(), "db", "old-password").await;
    let config = stack.rotate_config_with(&[
        (
            ROTATIONS,
            json!([{"secret": stack.name("db"), "strategy": "postgres-single-user"}]).to_string(),
        ),
        (DRY_RUN, "true".into()),
    ]);

    let per_step = rotation_calls(&stack, &config, &arn, Sandbox::Warm).await;

    assert_eq!(
        per_step,
        vec![
            ("createSecret", ops(&["DescribeSecret", "GetSecretValue"])),
            ("setSecret", ops(&["DescribeSecret"])),
            ("testSecret", ops(&["DescribeSecret"])),
            ("finishSecret", ops(&["DescribeSecret"])),
        ]
    );
}
