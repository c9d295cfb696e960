//! rotate: Secrets Manager's rotation function for PostgreSQL credentials and
//! random secrets, a drop-in for the AWS sample rotation Lambdas.
//!
//! Secrets Manager calls it four times per rotation with the same token:
//! createSecret, setSecret, testSecret, finishSecret. Every step first checks the
//! secret's versions (`plan::preflight`), is safe to repeat, and never logs or
//! pages a secret value. After finishSecret it rewrites dependent secrets and
//! redeploys the ECS services that read the secret.

pub mod db;
pub mod plan;
mod run;
pub mod secret;
pub mod sql;

use crate::db::Tls;
use crate::plan::Step;
use crate::run::Run;
use autopilot_shared::aws::AwsCallError;
use autopilot_shared::pager::PageError;
use autopilot_shared::{Config, Pager};
use aws_config::SdkConfig;
use aws_lambda_events::secretsmanager::SecretsManagerSecretRotationEvent;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::Value;
use std::sync::Mutex;
use tracing::Instrument;

pub const FUNCTION: &str = "autopilot-rotate";

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The event is not a rotation event, or names an unknown step.
    #[error("malformed rotation event: {0}")]
    Event(String),
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

impl RotateError {
    pub fn error_type(&self) -> &'static str {
        match self {
            RotateError::Event(_) => "autopilot.MalformedEvent",
            RotateError::Protocol(_) => "autopilot.RotationRefused",
            RotateError::Aws(_) => "autopilot.AwsCallFailed",
            RotateError::Db(_) => "autopilot.DatabaseFailed",
            RotateError::Page(_) => "autopilot.PageFailed",
        }
    }
}

/// What a failed invocation reports: the error's type and its text with every
/// secret value seen during the invocation replaced.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub error_type: &'static str,
    pub message: String,
}

impl From<StepError> for Diagnostic {
    fn from(e: StepError) -> Self {
        Diagnostic {
            error_type: e.error_type.to_string(),
            error_message: e.message,
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    pub step: String,
    pub secret: String,
    pub action: String,
    pub reason: String,
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
        Ok(Self {
            sm: aws_sdk_secretsmanager::Client::new(sdk),
            ecs: aws_sdk_ecs::Client::new(sdk),
            pager: Pager::new(aws_sdk_sns::Client::new(sdk), &config.topic_arn, FUNCTION),
            config,
            tls,
        })
    }

    /// The Lambda handler.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<StepReport, StepError> {
        let request_id = event.context.request_id.clone();
        let parsed: SecretsManagerSecretRotationEvent =
            serde_path_to_error::deserialize(event.payload).map_err(|e| StepError {
                error_type: "autopilot.MalformedEvent",
                message: format!("malformed rotation event: {}: {}", e.path(), e.inner()),
            })?;
        let span = tracing::info_span!("invocation", request_id = %request_id, function = FUNCTION, resource = %parsed.secret_id, step = %parsed.step);
        async {
            let Some(step) = Step::parse(&parsed.step) else {
                let e = StepError {
                    error_type: "autopilot.MalformedEvent",
                    message: format!("malformed rotation event: Step: `{}` is not createSecret, setSecret, testSecret or finishSecret", parsed.step),
                };
                tracing::error!(error_type = e.error_type, error = %e, "invocation failed");
                return Err(e);
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
                Ok(report) => {
                    tracing::info!(action = %report.action, reason = %report.reason, "step done");
                    Ok(report)
                }
                Err(e) => Err(run.fail(e).await),
            }
        }
        .instrument(span)
        .await
    }
}
