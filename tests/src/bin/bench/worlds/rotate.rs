//! rotate's world: secret `prod/db/app` for the login role `app` of the
//! harness's TLS-only PostgreSQL (verified against its CA, as RDS's bundle is
//! in production), rotated single-user through the four steps.

use super::{sample, uuid, vars};
use crate::measure::{Case, Step, World};
use autopilot_tests::postgres::{ident, literal, postgres_tls};
use autopilot_tests::Stack;
use serde_json::json;
use std::sync::Arc;

/// The four steps' samples, in the order Secrets Manager calls them.
pub const STEPS: [&str; 4] = [
    "events/rotation-createSecret.json",
    "events/rotation-setSecret.json",
    "events/rotation-testSecret.json",
    "events/rotation-finishSecret.json",
];
const ROTATION: &str = "events/rotation-*.json";

pub struct Rotate {
    stack: Arc<Stack>,
    arn: String,
    ca: String,
    /// The rotation in progress, whose AWSPENDING `after` clears.
    token: Option<String>,
}

impl Rotate {
    pub async fn new(stack: Arc<Stack>) -> Self {
        let pg = postgres_tls();
        let ca = pg.ca.clone().expect("the TLS server's CA");
        let password = "initial-password-0001";
        pg.exec(&format!(
            "CREATE ROLE {} LOGIN PASSWORD {}",
            ident("app"),
            literal(password)
        ))
        .await;
        let secret = json!({"engine": "postgres", "host": "127.0.0.1", "port": pg.port,
                            "username": "app", "password": password, "dbname": "postgres"});
        let arn = stack
            .create_secret("prod/db/app", &secret.to_string())
            .await;
        Self {
            stack,
            arn,
            ca,
            token: None,
        }
    }
}

impl World for Rotate {
    fn name(&self) -> &'static str {
        "rotate"
    }

    fn env(&self) -> Vec<(String, String)> {
        vars(&[
            (
                autopilot_shared::config::TOPIC_ARN,
                self.stack.topic_arn.clone(),
            ),
            (
                rotate::config::ROTATIONS,
                json!([{"secret": "prod/db/app", "strategy": "postgres-single-user"}]).to_string(),
            ),
            (rotate::config::DB_CA_BUNDLE, self.ca.clone()),
        ])
    }

    fn cases(&self) -> Vec<Case> {
        vec![
            Case::fresh(
                ROTATION,
                "a new rotation each time: RotateSecret stages AWSPENDING under a new token",
            ),
            Case::as_is("events/malformed-rotation.json"),
        ]
    }

    fn cold_case(&self) -> &'static str {
        ROTATION
    }

    async fn prepare(&mut self, case: &str, serial: usize) -> Vec<Step> {
        if case != ROTATION {
            return vec![Step::timed(case, sample(case))];
        }
        let token = self.stack.start_rotation(&self.arn).await;
        let steps = STEPS
            .iter()
            .map(|file| {
                let mut event = sample(file);
                event["SecretId"] = json!(self.arn);
                event["ClientRequestToken"] = json!(token);
                event["RotationToken"] = json!(uuid(&format!("rotation-token-{serial}")));
                Step::timed(*file, event)
            })
            .collect();
        self.token = Some(token);
        steps
    }

    async fn after(&mut self, _case: &str) {
        if let Some(token) = self.token.take() {
            self.stack.end_rotation(&self.arn, &token).await;
        }
    }
}
