//! Driving a rotation as Secrets Manager does. moto's RotateSecret cannot invoke
//! a Lambda: it stages a valueless AWSPENDING version under the token and then
//! fails to find the function. The tests catch that and call the four steps
//! themselves, then remove AWSPENDING from the finished version, as Secrets
//! Manager does once a rotation completes.

use crate::{digest, Stack, ACCOUNT, REGION};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const STEPS: [&str; 4] = ["createSecret", "setSecret", "testSecret", "finishSecret"];

static TOKENS: AtomicUsize = AtomicUsize::new(0);

/// A fresh ClientRequestToken shaped like the UUIDs Secrets Manager uses.
pub fn token() -> String {
    let n = TOKENS.fetch_add(1, Ordering::SeqCst);
    let h = digest(&format!("token-{n}-{}", std::process::id()));
    let h = &h["sha256:".len()..];
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The event Secrets Manager sends for one step.
pub fn rotation_event(step: &str, secret_arn: &str, token: &str) -> Value {
    json!({"Step": step, "SecretId": secret_arn, "ClientRequestToken": token})
}

/// An RDS-style secret for a user of the harness PostgreSQL (plaintext allowed explicitly).
pub fn rds_secret(port: u16, user: &str, password: &str) -> Value {
    json!({"engine": "postgres", "host": "127.0.0.1", "port": port, "username": user, "password": password,
           "dbname": "postgres", "sslmode": "disable"})
}

impl Stack {
    pub fn sm(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.sdk)
    }

    /// Creates a secret holding `value` and returns its ARN.
    pub async fn create_secret(&self, base: &str, value: &str) -> String {
        self.sm()
            .create_secret()
            .name(self.name(base))
            .secret_string(value)
            .send()
            .await
            .expect("create secret")
            .arn()
            .unwrap()
            .to_string()
    }

    /// Starts a rotation as Secrets Manager does and returns its token.
    pub async fn start_rotation(&self, secret_arn: &str) -> String {
        let token = token();
        let result = self
            .sm()
            .rotate_secret()
            .secret_id(secret_arn)
            .client_request_token(&token)
            .rotation_lambda_arn(format!(
                "arn:aws:lambda:{REGION}:{ACCOUNT}:function:autopilot-rotate"
            ))
            .rotation_rules(
                aws_sdk_secretsmanager::types::RotationRulesType::builder()
                    .automatically_after_days(30)
                    .build(),
            )
            .send()
            .await;
        // moto stages AWSPENDING under the token, enables rotation, then fails to invoke the function.
        if let Err(e) = result {
            let text = aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string();
            assert!(text.contains("ResourceNotFound"), "RotateSecret: {text}");
        }
        token
    }

    /// What Secrets Manager does after finishSecret succeeds: AWSPENDING leaves the version.
    pub async fn end_rotation(&self, secret_arn: &str, token: &str) {
        self.sm()
            .update_secret_version_stage()
            .secret_id(secret_arn)
            .version_stage("AWSPENDING")
            .remove_from_version_id(token)
            .send()
            .await
            .expect("remove AWSPENDING");
    }

    pub async fn secret_value(&self, secret: &str, stage: &str) -> Option<String> {
        self.sm()
            .get_secret_value()
            .secret_id(secret)
            .version_stage(stage)
            .send()
            .await
            .ok()
            .and_then(|o| o.secret_string().map(str::to_string))
    }

    /// Puts a new AWSCURRENT value: the current JSON changed by `edit`, as anyone
    /// allowed to write the secret could.
    pub async fn edit_secret(&self, secret: &str, edit: impl FnOnce(&mut Value)) {
        let mut value: Value =
            serde_json::from_str(&self.secret_value(secret, "AWSCURRENT").await.unwrap())
                .expect("a JSON secret");
        edit(&mut value);
        self.sm()
            .put_secret_value()
            .secret_id(secret)
            .secret_string(value.to_string())
            .send()
            .await
            .expect("put the edited value");
    }

    pub async fn stages(&self, secret: &str) -> HashMap<String, Vec<String>> {
        self.sm()
            .describe_secret()
            .secret_id(secret)
            .send()
            .await
            .expect("describe secret")
            .version_ids_to_stages()
            .cloned()
            .unwrap_or_default()
    }
}

impl Stack {
    /// A login role of the harness PostgreSQL named after this stack, and an RDS
    /// secret `base` holding its credentials. Returns (user, secret ARN).
    pub async fn database_user(
        &self,
        pg: &crate::postgres::Postgres,
        base: &str,
        password: &str,
    ) -> (String, String) {
        use crate::postgres::{ident, literal};
        let user = self.name("app").replace('-', "_");
        pg.exec(&format!(
            "CREATE ROLE {} LOGIN PASSWORD {}",
            ident(&user),
            literal(password)
        ))
        .await;
        let arn = self
            .create_secret(base, &rds_secret(pg.port, &user, password).to_string())
            .await;
        (user, arn)
    }
}

/// A full single-user rotation with a dependent URL, its logs captured at `level`:
/// no password, old or new, nor the URL, reaches a log line or a page.
pub async fn full_rotation_logs_no_secret_value(name: &str, level: &str) {
    use crate::postgres::postgres;
    use lambda_runtime::{Context, LambdaEvent};

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

    let (_, logs) = crate::logs::capture_at(level, async {
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
