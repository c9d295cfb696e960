//! One invocation of the rotation function: the preflight, the four steps and
//! the follow-up after finishSecret. Every secret value read is remembered so
//! that errors can be scrubbed of it before they are logged or paged.

use crate::config::{RotationTarget, Strategy};
use crate::db;
use crate::plan::{
    self, Preflight, Step, Versions, AWSCURRENT, AWSPENDING, AWSPREVIOUS, CONSUMERS_REDEPLOYED,
};
use crate::secret::DbSecret;
use crate::{RotateError, Rotator};
use autopilot_shared::aws::AwsCallError;
use autopilot_shared::invocation::{Coded, Failure, Outcome};
use serde_json::Value;
use std::sync::Mutex;

/// One invocation: the event, and every secret value read so far (to scrub from errors).
pub(crate) struct Run<'a> {
    pub(crate) rotator: &'a Rotator,
    pub(crate) secret_id: String,
    pub(crate) token: String,
    pub(crate) step: Step,
    pub(crate) seen: Mutex<Vec<String>>,
    pub(crate) name: Mutex<String>,
    pub(crate) strategy: Mutex<Option<Strategy>>,
}

impl Run<'_> {
    fn name(&self) -> String {
        self.name.lock().map(|n| n.clone()).unwrap_or_default()
    }

    fn report(&self, action: &str, reason: impl Into<String>) -> Outcome {
        Outcome::new(self.name(), action, reason).with("version", &self.token)
    }

    /// Replaces every secret value read in this invocation (and its JSON fields) with `***`.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        if let Ok(seen) = self.seen.lock() {
            let mut values: Vec<&String> = seen.iter().filter(|v| v.len() >= 4).collect();
            values.sort_by_key(|v| std::cmp::Reverse(v.len()));
            for v in values {
                out = out.replace(v.as_str(), "***");
            }
        }
        out
    }

    fn remember(&self, value: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(value.to_string());
            if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(value) {
                for v in map.values() {
                    if let Value::String(s) = v {
                        seen.push(s.clone());
                    }
                }
            }
        }
    }

    /// Pages on-call with the step and the scrubbed error, and returns the error Lambda reports.
    pub(crate) async fn fail(&self, e: RotateError) -> Failure {
        let error = Failure {
            code: e.code(),
            message: self.scrub(&e.to_string()),
        };
        let strategy = self.strategy.lock().ok().and_then(|s| *s);
        let page = plan::failure_page(
            &self.name(),
            strategy,
            self.step,
            &self.token,
            &error.message,
        );
        if let Err(page_error) = self.rotator.pager.send(&page).await {
            tracing::error!(error = %page_error, "could not page the failure");
        }
        error
    }

    async fn versions(&self) -> Result<Versions, RotateError> {
        let out = self
            .rotator
            .sm
            .describe_secret()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(AwsCallError::of("DescribeSecret", &self.secret_id))?;
        if let (Some(name), Ok(mut n)) = (out.name(), self.name.lock()) {
            *n = name.to_string();
        }
        Ok(Versions {
            rotation_enabled: out.rotation_enabled().unwrap_or(false),
            stages: out.version_ids_to_stages().cloned().unwrap_or_default(),
        })
    }

    /// A version's value, by stage (and version id when given). None if it has no value.
    async fn value(
        &self,
        secret: &str,
        stage: &str,
        version: Option<&str>,
    ) -> Result<Option<String>, RotateError> {
        let result = self
            .rotator
            .sm
            .get_secret_value()
            .secret_id(secret)
            .version_stage(stage)
            .set_version_id(version.map(str::to_string))
            .send()
            .await;
        match result {
            Ok(out) => {
                let value = out.secret_string().map(str::to_string);
                if let Some(v) = &value {
                    self.remember(v);
                }
                Ok(value)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(AwsCallError::of("GetSecretValue", secret)(e).into()),
        }
    }

    async fn required(
        &self,
        secret: &str,
        stage: &str,
        version: Option<&str>,
    ) -> Result<String, RotateError> {
        self.value(secret, stage, version)
            .await?
            .ok_or_else(|| RotateError::Protocol(format!("secret {secret} has no {stage} value")))
    }

    async fn db_secret(
        &self,
        secret: &str,
        stage: &str,
        version: Option<&str>,
    ) -> Result<DbSecret, RotateError> {
        let text = self.required(secret, stage, version).await?;
        DbSecret::parse(secret, &text).map_err(RotateError::Protocol)
    }

    fn target(&self) -> Option<&RotationTarget> {
        self.rotator.config.rotation_for(&self.secret_id)
    }

    fn strategy_of(&self, value: &str) -> Result<Strategy, RotateError> {
        let s = plan::strategy(self.target(), value)
            .map_err(|m| RotateError::Protocol(format!("secret {} {m}", self.name())))?;
        if let Ok(mut slot) = self.strategy.lock() {
            *slot = Some(s);
        }
        Ok(s)
    }

    async fn move_label(
        &self,
        secret: &str,
        label: &str,
        to: &str,
        from: Option<&str>,
    ) -> Result<(), RotateError> {
        self.rotator
            .sm
            .update_secret_version_stage()
            .secret_id(secret)
            .version_stage(label)
            .move_to_version_id(to)
            .set_remove_from_version_id(from.filter(|f| *f != to).map(str::to_string))
            .send()
            .await
            .map_err(AwsCallError::of("UpdateSecretVersionStage", secret))?;
        Ok(())
    }

    pub(crate) async fn step(&self) -> Result<Outcome, RotateError> {
        let versions = self.versions().await?;
        let name = self.name();
        match plan::preflight(self.step, &name, &self.token, &versions) {
            Preflight::Refuse(reason) => return Err(RotateError::Protocol(reason)),
            Preflight::AlreadyCurrent if self.step == Step::Finish => {
                return self.after_finish(&versions).await
            }
            Preflight::AlreadyCurrent => {
                return Ok(self.report(
                    "skip",
                    format!("version {} is already AWSCURRENT", self.token),
                ))
            }
            Preflight::Adopt { abandoned } => {
                tracing::warn!(action = "adopt_pending", abandoned = %abandoned, reason = "an abandoned rotation left AWSPENDING on another version", "moving AWSPENDING to this rotation");
                if !self.rotator.config.common.dry_run {
                    self.move_label(&self.secret_id, AWSPENDING, &self.token, Some(&abandoned))
                        .await?;
                }
            }
            Preflight::Proceed => {}
        }
        if self.rotator.config.common.dry_run {
            return self.dry_run().await;
        }
        match self.step {
            Step::Create => self.create().await,
            Step::Set => self.set().await,
            Step::Test => self.test().await,
            Step::Finish => {
                let holder = versions.holder(AWSCURRENT).map(str::to_string);
                self.move_label(&self.secret_id, AWSCURRENT, &self.token, holder.as_deref())
                    .await?;
                tracing::info!(
                    action = "finish",
                    reason = "the tested version becomes AWSCURRENT; the old one AWSPREVIOUS",
                    "AWSCURRENT moved"
                );
                // after_finish reads only the consumers label, which the move left alone.
                self.after_finish(&versions).await
            }
        }
    }

    async fn dry_run(&self) -> Result<Outcome, RotateError> {
        if self.step == Step::Create {
            let current = self.required(&self.secret_id, AWSCURRENT, None).await?;
            let strategy = self.strategy_of(&current)?;
            self.rotator
                .pager
                .send(&plan::dry_run_page(&self.name(), strategy))
                .await?;
        }
        Ok(self.report(
            "dry-run",
            format!("would run {}; nothing changed", self.step),
        ))
    }

    async fn create(&self) -> Result<Outcome, RotateError> {
        let current = self.required(&self.secret_id, AWSCURRENT, None).await?;
        let strategy = self.strategy_of(&current)?;
        let policy = self
            .target()
            .map(|t| t.password.clone())
            .unwrap_or_default();
        let password = self
            .rotator
            .sm
            .get_random_password()
            .password_length(policy.length)
            .exclude_characters(&policy.exclude_characters)
            .require_each_included_type(true)
            .send()
            .await
            .map_err(AwsCallError::of("GetRandomPassword", &self.secret_id))?
            .random_password()
            .map(str::to_string)
            .ok_or_else(|| {
                RotateError::Protocol("GetRandomPassword returned no password".into())
            })?;
        self.remember(&password);
        let key = self.target().and_then(|t| t.key.as_deref());
        let pending = plan::pending_value(strategy, key, &current, &password, &self.name())
            .map_err(RotateError::Protocol)?;
        self.remember(&pending);
        // The token is the idempotency key: a second put with another value is
        // refused, which means the pending value was already created.
        let put = self
            .rotator
            .sm
            .put_secret_value()
            .secret_id(&self.secret_id)
            .client_request_token(&self.token)
            .secret_string(pending)
            .version_stages(AWSPENDING)
            .send()
            .await;
        match put {
            Ok(_) => Ok(self.report(
                "create",
                format!("created the AWSPENDING value ({})", strategy.as_str()),
            )),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_exists_exception()) =>
            {
                Ok(self.report(
                    "skip",
                    "the AWSPENDING value was already created for this token",
                ))
            }
            Err(e) => Err(AwsCallError::of("PutSecretValue", &self.secret_id)(e).into()),
        }
    }

    async fn set(&self) -> Result<Outcome, RotateError> {
        let pending_text = self
            .required(&self.secret_id, AWSPENDING, Some(&self.token))
            .await?;
        match self.strategy_of(&pending_text)? {
            Strategy::Random => {
                Ok(self.report("skip", "a random secret has no external system to set"))
            }
            Strategy::PostgresSingleUser => {
                let pending =
                    DbSecret::parse(&self.name(), &pending_text).map_err(RotateError::Protocol)?;
                self.set_single_user(&pending).await
            }
            Strategy::PostgresAlternatingUsers => {
                let pending =
                    DbSecret::parse(&self.name(), &pending_text).map_err(RotateError::Protocol)?;
                self.set_alternating(&pending).await
            }
        }
    }

    async fn set_single_user(&self, pending: &DbSecret) -> Result<Outcome, RotateError> {
        let tls = &self.rotator.tls;
        if db::check_login(pending, tls).await.is_ok() {
            return Ok(self.report(
                "skip",
                format!("the pending password of {} already works", pending.username),
            ));
        }
        let current = self.db_secret(&self.secret_id, AWSCURRENT, None).await?;
        if current.username != pending.username
            || current.host != pending.host
            || current.port != pending.port
        {
            return Err(RotateError::Protocol(format!(
                "the pending secret of {} names another user or host than AWSCURRENT; refusing to set it",
                self.name()
            )));
        }
        let client = match db::connect(pending, &current.username, &current.password, tls).await {
            Ok(client) => client,
            Err(current_error) => {
                tracing::warn!(action = "login", reason = %current_error, "AWSCURRENT cannot log in; trying AWSPREVIOUS");
                let previous = self.value(&self.secret_id, AWSPREVIOUS, None).await?;
                let previous = previous
                    .map(|p| DbSecret::parse(&self.name(), &p))
                    .transpose()
                    .map_err(RotateError::Protocol)?
                    .filter(|p| p.username == pending.username);
                match previous {
                    Some(p) => db::connect(pending, &p.username, &p.password, tls).await?,
                    None => return Err(current_error.into()),
                }
            }
        };
        db::set_password(&client, &pending.host, &pending.username, &pending.password).await?;
        tracing::info!(action = "set_password", user = %pending.username, reason = "the user changes its own password", "password set");
        Ok(self.report("set", format!("set the password of {}", pending.username)))
    }

    async fn set_alternating(&self, pending: &DbSecret) -> Result<Outcome, RotateError> {
        let master_arn = pending.masterarn.clone().ok_or_else(|| {
            RotateError::Protocol(format!(
                "secret {} has no masterarn, which alternating users need",
                self.name()
            ))
        })?;
        let master = self.db_secret(&master_arn, AWSCURRENT, None).await?;
        let client = db::connect(
            pending,
            &master.username,
            &master.password,
            &self.rotator.tls,
        )
        .await?;
        let host = &pending.host;
        let created = db::ensure_login_role(&client, host, &pending.username).await?;
        db::set_password(&client, host, &pending.username, &pending.password).await?;
        let original = plan::original_username(&pending.username).to_string();
        let clone = format!("{original}_clone");
        // Both users exist now: the pending one was just ensured, the other is AWSCURRENT.
        // An original created only now has no grants yet; copying its (empty) set
        // would strip the clone that is in use, so that first sync is skipped.
        let sync = if created && pending.username == original {
            tracing::warn!(action = "sync_privileges", user = %original, reason = "the original user was just created and holds no grants yet", "privilege sync skipped");
            db::Sync::default()
        } else {
            db::sync_privileges(&client, host, &original, &clone).await?
        };
        tracing::info!(
            action = "set_password",
            user = %pending.username,
            created,
            granted = sync.granted,
            revoked = sync.revoked,
            reason = "the idle user gets the new password; the clone's privileges are re-synced from the original",
            "password set"
        );
        Ok(self.report(
            "set",
            format!(
                "set the password of {}{}; {} privilege(s) granted to and {} revoked from {clone} to match {original}",
                pending.username,
                if created { " (created)" } else { "" },
                sync.granted,
                sync.revoked
            ),
        ))
    }

    async fn test(&self) -> Result<Outcome, RotateError> {
        let pending_text = self
            .required(&self.secret_id, AWSPENDING, Some(&self.token))
            .await?;
        match self.strategy_of(&pending_text)? {
            Strategy::Random => {
                let key = self.target().and_then(|t| t.key.as_deref());
                plan::check_random(key, &pending_text, &self.name())
                    .map_err(RotateError::Protocol)?;
                Ok(self.report("test", "the pending value is well formed"))
            }
            _ => {
                let pending =
                    DbSecret::parse(&self.name(), &pending_text).map_err(RotateError::Protocol)?;
                db::check_login(&pending, &self.rotator.tls).await?;
                Ok(self.report(
                    "test",
                    format!("{} logs in with the pending password", pending.username),
                ))
            }
        }
    }

    /// After AWSCURRENT has moved: rewrite dependent secrets, redeploy consumers, tell on-call.
    /// Safe to repeat: a dependent already right is left alone, consumers are redeployed once per version.
    async fn after_finish(&self, versions: &Versions) -> Result<Outcome, RotateError> {
        let target = self.target().cloned();
        let dependents = target
            .as_ref()
            .map(|t| t.dependents.clone())
            .unwrap_or_default();
        let consumers = target
            .as_ref()
            .map(|t| t.consumers.clone())
            .unwrap_or_default();
        // The new value is read only when something is built from it, or to learn
        // the strategy of a secret that is not configured.
        let (strategy, creds) = match &target {
            Some(t) if dependents.is_empty() => (t.strategy, None),
            _ => {
                let current = self
                    .required(&self.secret_id, AWSCURRENT, Some(&self.token))
                    .await?;
                let strategy = self.strategy_of(&current)?;
                let creds = match strategy {
                    Strategy::Random => None,
                    _ => Some(
                        DbSecret::parse(&self.name(), &current).map_err(RotateError::Protocol)?,
                    ),
                };
                (strategy, creds)
            }
        };
        let mut rewritten = Vec::new();
        if let Some(creds) = &creds {
            for dependent in &dependents {
                let existing = self.value(&dependent.secret, AWSCURRENT, None).await?;
                let value = plan::dependent_value(dependent, existing.as_deref(), creds)
                    .map_err(RotateError::Protocol)?;
                self.remember(&value);
                if existing.as_deref() == Some(value.as_str()) {
                    continue;
                }
                self.rotator
                    .sm
                    .put_secret_value()
                    .secret_id(&dependent.secret)
                    .client_request_token(&self.token)
                    .secret_string(value)
                    .send()
                    .await
                    .map_err(AwsCallError::of("PutSecretValue", &dependent.secret))?;
                tracing::info!(action = "rewrite_dependent", dependent = %dependent.secret, reason = "built from the rotated credentials", "dependent secret rewritten");
                rewritten.push(dependent.secret.clone());
            }
        }
        let mut redeployed = Vec::new();
        if !consumers.is_empty() && !versions.consumers_redeployed(&self.token) {
            for c in &consumers {
                let key = format!("{}/{}", c.cluster, c.service);
                self.rotator
                    .ecs
                    .update_service()
                    .cluster(&c.cluster)
                    .service(&c.service)
                    .force_new_deployment(true)
                    .send()
                    .await
                    .map_err(AwsCallError::of("UpdateService", &key))?;
                tracing::info!(action = "redeploy", resource = %key, reason = "new tasks read the new secret value", "consumer redeployed");
                redeployed.push(key);
            }
            let holder = versions.holder(CONSUMERS_REDEPLOYED).map(str::to_string);
            self.move_label(
                &self.secret_id,
                CONSUMERS_REDEPLOYED,
                &self.token,
                holder.as_deref(),
            )
            .await?;
        }
        let page = plan::success_page(&plan::Rotated {
            secret_name: &self.name(),
            strategy,
            token: &self.token,
            username: creds.as_ref().map(|c| c.username.as_str()),
            dependents: dependents.iter().map(|d| d.secret.clone()).collect(),
            consumers: consumers
                .iter()
                .map(|c| format!("{}/{}", c.cluster, c.service))
                .collect(),
        });
        self.rotator.pager.send(&page).await?;
        Ok(self.report(
            "finish",
            format!(
                "AWSCURRENT is version {}; {} dependent secret(s) rewritten, {} service(s) redeployed",
                self.token,
                rewritten.len(),
                redeployed.len()
            ),
        ))
    }
}
