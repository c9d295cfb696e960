//! rotate: Secrets Manager's rotation function for PostgreSQL credentials and
//! random secrets, a drop-in for the AWS sample rotation Lambdas.
//!
//! Secrets Manager calls it four times per rotation with the same token:
//! createSecret, setSecret, testSecret, finishSecret. Every step first checks that
//! the token is this rotation's (`plan::preflight`; setSecret and testSecret by
//! reading the token's version under AWSPENDING, which Secrets Manager refuses
//! otherwise), is safe to repeat, and never logs or pages a secret value. After finishSecret it rewrites dependent secrets and
//! redeploys the ECS services that read the secret; the `rotate-followup`
//! scheduled task finishes that follow-up when a failure left it owed. The
//! `rotate-heartbeat` scheduled task reads the topic and the configured secrets
//! and counts a heartbeat (`autopilot_shared::metrics`). A scheduled task always
//! has an EventBridge `source`, which Secrets Manager's rotation request never
//! has, so neither is taken for the other.

mod cache;
pub mod config;
pub mod db;
pub mod password;
pub mod plan;
mod run;
pub mod secret;
pub mod sql;

use crate::config::Config;
use crate::db::Tls;
use crate::plan::Step;
use crate::run::Run;
use autopilot_shared::aws::{self, AwsCallError};
use autopilot_shared::events::{self, EventError, ScheduledTask, SCHEDULED_TASK};
use autopilot_shared::invocation::{self, Coded, Failure, Outcome, Report};
use autopilot_shared::metrics::{self, name};
use autopilot_shared::pager::PageError;
use autopilot_shared::Pager;
use aws_config::SdkConfig;
use aws_lambda_events::secretsmanager::SecretsManagerSecretRotationEvent;
use lambda_runtime::LambdaEvent;
use serde_json::Value;

pub const FUNCTION: &str = "autopilot-rotate";

/// The follow-up check's task name in its schedule's input (`template.yaml`).
pub const FOLLOWUP_TASK: &str = "rotate-followup";

/// The heartbeat schedule's task (the `Heartbeat` schedule of RotateFunction in `template.yaml`).
pub const HEARTBEAT_TASK: &str = "rotate-heartbeat";

/// A secret that changed this recently may have a finishSecret running (rotate's
/// timeout is 60 s); the follow-up check leaves it to the next run.
const RECENTLY_CHANGED_SECS: i64 = 120;

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
    rds: aws_sdk_rds::Client,
    sns: aws_sdk_sns::Client,
    pager: Pager,
    config: Config,
    tls: Tls,
    /// Pending values this sandbox wrote or read, for finishSecret (`cache`).
    pending: cache::PendingValues,
}

impl Rotator {
    pub fn new(sdk: &SdkConfig, config: Config) -> Result<Self, String> {
        let tls = Tls::load(config.db_ca_bundle.as_deref())?;
        let sdk = aws::for_function(sdk, FUNCTION);
        Ok(Self {
            sm: aws_sdk_secretsmanager::Client::new(&sdk),
            ecs: aws_sdk_ecs::Client::new(&sdk),
            rds: aws_sdk_rds::Client::new(&sdk),
            sns: aws_sdk_sns::Client::new(&sdk),
            pager: Pager::for_function(&sdk, &config.common, FUNCTION),
            config,
            tls,
            pending: cache::PendingValues::default(),
        })
    }

    /// The Lambda handler.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Report, Failure> {
        let work = Box::pin(self.dispatch(event.payload));
        invocation::run(FUNCTION, &event.context, work).await
    }

    async fn dispatch(&self, payload: Value) -> Result<Report, Failure> {
        // Secrets Manager's rotation event has no EventBridge `source`; a schedule's has.
        if payload.get("source").is_some() {
            return self.on_schedule(payload).await.map_err(|e| Failure::of(&e));
        }
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
        let run = Run::new(self, &parsed.secret_id, &parsed.client_request_token, step);
        match run.step().await {
            Ok(outcome) => {
                metrics::count_step(FUNCTION, name::ROTATION_STEPS_FINISHED, step.as_str());
                Ok(Report {
                    event: step.as_str().to_string(),
                    dry_run: self.config.common.dry_run,
                    outcomes: vec![outcome],
                })
            }
            Err(e) => {
                metrics::count_step(FUNCTION, name::ROTATION_STEPS_FAILED, step.as_str());
                Err(run.fail(e).await)
            }
        }
    }

    /// The `rotate-followup` scheduled task: for every configured secret with
    /// dependents or consumers, finish the follow-up its AWSCURRENT version still
    /// owes (a failure after AWSCURRENT moved, which Secrets Manager may never
    /// call again). Each secret's failure is paged; the invocation fails if any did.
    async fn on_schedule(&self, payload: Value) -> Result<Report, RotateError> {
        let envelope = events::envelope(payload)?;
        if !events::is(&envelope, SCHEDULED_TASK) {
            return Err(EventError::Unsupported {
                event_source: envelope.source.clone(),
                detail_type: envelope.detail_type.clone(),
                expected: format!(
                    "Secrets Manager rotation events and the `{FOLLOWUP_TASK}` and `{HEARTBEAT_TASK}` scheduled tasks"
                ),
            }
            .into());
        }
        let task: ScheduledTask = events::detail(&envelope, SCHEDULED_TASK)?;
        if task.task == HEARTBEAT_TASK {
            return Ok(Report {
                event: envelope.detail_type.clone(),
                dry_run: self.config.common.dry_run,
                outcomes: self.heartbeat().await?,
            });
        }
        if task.task != FOLLOWUP_TASK {
            return Err(EventError::Malformed {
                what: "Scheduled Task detail".into(),
                path: "task".into(),
                message: format!(
                    "`{}` is not a task of rotate's; it runs `{FOLLOWUP_TASK}` and `{HEARTBEAT_TASK}`",
                    task.task
                ),
            }
            .into());
        }
        // The schedule's own time, as Scheduler sets it.
        let now = envelope
            .time
            .map_or_else(|| chrono::Utc::now().timestamp(), |t| t.timestamp());
        let mut outcomes = Vec::new();
        let mut failed = Vec::new();
        for target in &self.config.rotations {
            if target.dependents.is_empty() && target.consumers.is_empty() {
                continue;
            }
            match self.follow_up_owed(&target.secret, now).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(failure) => failed.push(failure.message),
            }
        }
        if !failed.is_empty() {
            return Err(RotateError::Protocol(format!(
                "the follow-up of {} secret(s) failed: {}",
                failed.len(),
                failed.join("; ")
            )));
        }
        Ok(Report {
            event: envelope.detail_type.clone(),
            dry_run: self.config.common.dry_run,
            outcomes,
        })
    }

    /// Finishes the follow-up `secret`'s AWSCURRENT version owes, if it owes one.
    async fn follow_up_owed(&self, secret: &str, now: i64) -> Result<Outcome, Failure> {
        let probe = Run::new(self, secret, "", Step::Finish);
        let versions = match probe.versions().await {
            Ok(v) => v,
            Err(e) => return Err(probe.fail(e).await),
        };
        let Some(holder) = versions.holder(plan::FOLLOWUP_PENDING).map(str::to_string) else {
            return Ok(Outcome::new(secret, "skip", "no follow-up is owed"));
        };
        if let Some(changed) = versions
            .last_changed
            .filter(|c| now - c < RECENTLY_CHANGED_SECS)
        {
            return Ok(Outcome::new(
                secret,
                "skip",
                format!(
                    "changed {}s ago: a finishSecret may be running; the next check takes it",
                    now - changed
                ),
            ));
        }
        // The label on AWSCURRENT: its follow-up is owed. On another version that
        // is still AWSPENDING: a rotation is under way, and its finishSecret owes it.
        // On any other version (a finishSecret that moved the label and then failed
        // to move AWSCURRENT): what AWSCURRENT owed may not have been done, so the
        // follow-up of AWSCURRENT is done, and the stray label removed.
        let current = versions.holder(plan::AWSCURRENT).map(str::to_string);
        let Some(current) = current else {
            return Ok(Outcome::new(
                secret,
                "skip",
                "the secret has no AWSCURRENT version",
            ));
        };
        if holder != current && versions.is_pending(&holder) {
            return Ok(Outcome::new(
                secret,
                "skip",
                format!(
                    "version {holder} is still being rotated; its finishSecret owes the follow-up"
                ),
            ));
        }
        if self.config.common.dry_run {
            return Ok(Outcome::new(
                secret,
                "dry-run",
                format!("would finish the follow-up of version {current}"),
            ));
        }
        let run = Run::new(self, secret, &current, Step::Finish);
        tracing::warn!(action = "follow_up", resource = %secret, version = %current, reason = "AWSCURRENT moved but its follow-up did not finish", "finishing the follow-up");
        match run.follow_up(None, Some(&holder)).await {
            Ok(outcome) => Ok(outcome),
            Err(e) => Err(run.fail(e).await),
        }
    }

    /// The heartbeat: the on-call topic (GetTopicAttributes) and each configured
    /// secret (DescribeSecret: metadata and staging labels, never a value), from
    /// the function's own network (its VPC endpoints or NAT). Writes nothing,
    /// pages no one; counts a heartbeat when every read answered.
    async fn heartbeat(&self) -> Result<Vec<Outcome>, RotateError> {
        invocation::record_resource(HEARTBEAT_TASK);
        let mut checks = vec![metrics::check_topic(&self.sns, &self.config.common.topic_arn).await];
        for target in &self.config.rotations {
            let result = self
                .sm
                .describe_secret()
                .secret_id(&target.secret)
                .send()
                .await
                .map(|_| ())
                .map_err(AwsCallError::of("DescribeSecret", &target.secret));
            checks.push((format!("secret {}", target.secret), result));
        }
        Ok(metrics::heartbeat(FUNCTION, checks))
    }
}
