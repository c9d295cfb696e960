//! rotate: Secrets Manager's rotation function for PostgreSQL credentials and
//! random secrets, a drop-in for the AWS sample rotation Lambdas.
//!
//! Secrets Manager calls it four times per rotation with the same token:
//! createSecret, setSecret, testSecret, finishSecret. Every step first checks the
//! secret's versions (`plan::preflight`), is safe to repeat, and never logs or
//! pages a secret value. After finishSecret it rewrites dependent secrets and
//! redeploys the ECS services that read the secret.

pub mod config;
pub mod db;
pub mod plan;
mod run;
pub mod secret;
pub mod sql;

use crate::config::Config;
use crate::db::Tls;
use crate::plan::Step;
use crate::run::Run;
use autopilot_shared::aws::{self, AwsCallError};
use autopilot_shared::events::{self, EventError};
use autopilot_shared::invocation::{self, Coded, Failure, Report};
use autopilot_shared::pager::PageError;
use autopilot_shared::Pager;
use aws_config::SdkConfig;
use aws_lambda_events::secretsmanager::SecretsManagerSecretRotationEvent;
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use std::sync::Mutex;

pub const FUNCTION: &str = "autopilot-rotate";

/// rotate's own `errorType` codes, beside the shared ones.
pub mod code {
    /// The step must not run: rotation disabled, token not pending, a secret or
    /// configuration that cannot be used, or a check that failed.
    pub const ROTATION_REFUSED: &str = "autopilot.RotationRefused";
    /// The database refused a login or a statement.
    pub const DATABASE_FAILED: &str = "autopilot.DatabaseFailed";
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The event is not a rotation event, or names an unknown step.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The step must not run (rotation disabled, token not pending, bad secret or configuration).
    #[error("{0}")]
    Protocol(String),
    #[error(transparent)]
    Aws(#[from] AwsCallError),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error(transparent)]
    Page(#[from] PageError),
}

impl Coded for RotateError {
    fn code(&self) -> &'static str {
        match self {
            RotateError::Event(e) => e.code(),
            RotateError::Protocol(_) => code::ROTATION_REFUSED,
            RotateError::Aws(e) => e.code(),
            RotateError::Db(_) => code::DATABASE_FAILED,
            RotateError::Page(e) => e.code(),
        }
    }
}

/// The rotate function: configuration, clients and TLS roots, built once per cold start.
#[derive(Debug, Clone)]
pub struct Rotator {
    sm: aws_sdk_secretsmanager::Client,
    ecs: aws_sdk_ecs::Client,
    pager: Pager,
    config: Config,
    tls: Tls,
}

impl Rotator {
    pub fn new(sdk: &SdkConfig, config: Config) -> Result<Self, String> {
        let tls = Tls::load(config.db_ca_bundle.as_deref())?;
        let sdk = aws::for_function(sdk, FUNCTION);
        Ok(Self {
            sm: aws_sdk_secretsmanager::Client::new(&sdk),
            ecs: aws_sdk_ecs::Client::new(&sdk),
            pager: Pager::for_function(&sdk, &config.common, FUNCTION),
            config,
            tls,
        })
    }

    /// The Lambda handler.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Report, Failure> {
        let work = Box::pin(self.dispatch(event.payload));
        invocation::run(FUNCTION, &event.context, work).await
    }

    async fn dispatch(&self, payload: Value) -> Result<Report, Failure> {
        let parsed: SecretsManagerSecretRotationEvent =
            events::parse(payload, "Secrets Manager rotation event")
                .map_err(|e| Failure::of(&e))?;
        invocation::record_resource(&parsed.secret_id);
        let Some(step) = Step::parse(&parsed.step) else {
            return Err(Failure::of(&EventError::Malformed {
                what: "Secrets Manager rotation event".into(),
                path: "Step".into(),
                message: format!(
                    "`{}` is not createSecret, setSecret, testSecret or finishSecret",
                    parsed.step
                ),
            }));
        };
        let run = Run {
            rotator: self,
            secret_id: parsed.secret_id.clone(),
            token: parsed.client_request_token.clone(),
            step,
            seen: Mutex::new(Vec::new()),
            name: Mutex::new(parsed.secret_id.clone()),
            strategy: Mutex::new(None),
        };
        match run.step().await {
            Ok(outcome) => Ok(Report {
                event: step.as_str().to_string(),
                dry_run: self.config.common.dry_run,
                outcomes: vec![outcome],
            }),
            Err(e) => Err(run.fail(e).await),
        }
    }
}
