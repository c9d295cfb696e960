//! One invocation of the rotation function: the preflight, the four steps and
//! the follow-up after finishSecret. Every secret value read is remembered so
//! that errors can be scrubbed of it before they are logged or paged; names
//! (host, port, user, database) are not secrets and stay, so on-call can act.

use crate::config::{RotationTarget, Strategy};
use crate::db;
use crate::plan::{
    self, Preflight, Step, Versions, AWSCURRENT, AWSPENDING, AWSPREVIOUS, FOLLOWUP_PENDING,
};
use crate::secret::{AdminSecret, DbSecret, Endpoint};
use crate::{RotateError, Rotator};
use autopilot_shared::aws::{AwsCallError, NotRepeatedIfSent};
use autopilot_shared::invocation::{Coded, Failure, Outcome};
use serde_json::Value;
use std::sync::Mutex;

/// Fields of a secret JSON that name things rather than hold a secret: kept in
/// errors and pages. Every other string field is treated as a secret value.
const NAME_FIELDS: &[&str] = &[
    "engine",
    "host",
    "port",
    "username",
    "dbname",
    "masterarn",
    "sslmode",
    "dbInstanceIdentifier",
    "dbClusterIdentifier",
];

/// The RDS tags on a secret RDS manages, naming the database it belongs to.
const RDS_INSTANCE_TAG: &str = "aws:rds:primaryDBInstanceArn";
const RDS_CLUSTER_TAG: &str = "aws:rds:primaryDBClusterArn";

/// One invocation: the event, and every secret value read so far (to scrub from errors).
pub(crate) struct Run<'a> {
    pub(crate) rotator: &'a Rotator,
    pub(crate) secret_id: String,
    pub(crate) token: String,
    pub(crate) step: Step,
    pub(crate) seen: Mutex<Vec<String>>,
    pub(crate) name: Mutex<String>,
    /// The secret's ARN as Secrets Manager answered it: the key of cached values.
    pub(crate) arn: Mutex<Option<String>>,
    pub(crate) strategy: Mutex<Option<Strategy>>,
}

impl<'a> Run<'a> {
    pub(crate) fn new(rotator: &'a Rotator, secret_id: &str, token: &str, step: Step) -> Self {
        Self {
            rotator,
            secret_id: secret_id.to_string(),
            token: token.to_string(),
            step,
            seen: Mutex::new(Vec::new()),
            // Until Secrets Manager names it: the name in the ARN Secrets Manager
            // sent, so a page for a step that failed before any answer still has
            // the incident key of the secret's name, which success resolves.
            name: Mutex::new(
                crate::config::secret_name(secret_id)
                    .unwrap_or(secret_id)
                    .to_string(),
            ),
            arn: Mutex::new(None),
            strategy: Mutex::new(None),
        }
    }

    fn name(&self) -> String {
        self.name.lock().map(|n| n.clone()).unwrap_or_default()
    }

    fn report(&self, action: &str, reason: impl Into<String>) -> Outcome {
        Outcome::new(self.name(), action, reason).with("version", &self.token)
    }

    /// Records the secret's name and ARN from a Secrets Manager answer.
    fn identify(&self, name: Option<&str>, arn: Option<&str>) {
        if let (Some(name), Ok(mut n)) = (name, self.name.lock()) {
            *n = name.to_string();
        }
        if let (Some(arn), Ok(mut a)) = (arn, self.arn.lock()) {
            *a = Some(arn.to_string());
        }
    }

    fn arn(&self) -> Option<String> {
        self.arn.lock().ok().and_then(|a| a.clone())
    }

    /// Keeps this token's pending value, of a version created at `created` (epoch
    /// seconds), for a later step on this sandbox.
    fn cache_pending(&self, value: &str, created: i64) {
        if let Some(arn) = self.arn() {
            let now = chrono::Utc::now().timestamp();
            self.rotator
                .pending
                .put(&arn, &self.token, value, created, now);
        }
    }

    /// This token's pending value if this sandbox wrote or read it, registered
    /// with the scrubber as a read would be.
    fn cached_pending(&self) -> Option<String> {
        let now = chrono::Utc::now().timestamp();
        let value = self.rotator.pending.get(&self.arn()?, &self.token, now)?;
        self.remember(&value);
        Some(value)
    }

    /// The token's version is AWSCURRENT: its value is no longer pending.
    fn forget_pending(&self) {
        if let Some(arn) = self.arn() {
            self.rotator.pending.forget(&arn, &self.token);
        }
    }

    fn already_current(&self) -> Outcome {
        self.forget_pending();
        self.report(
            "skip",
            format!(
                "version {} is already AWSCURRENT and nothing is owed",
                self.token
            ),
        )
    }

    /// Replaces every secret value read in this invocation with `***`: whole secret
    /// strings, and their JSON fields other than [`NAME_FIELDS`].
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
                for (key, v) in &map {
                    if let (Value::String(s), false) = (v, NAME_FIELDS.contains(&key.as_str())) {
                        seen.push(s.clone());
                        // As it appears inside a connection URL.
                        seen.push(plan::percent_encode(s));
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

    pub(crate) async fn versions(&self) -> Result<Versions, RotateError> {
        let out = self
            .rotator
            .sm
            .describe_secret()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(AwsCallError::of("DescribeSecret", &self.secret_id))?;
        self.identify(out.name(), out.arn());
        Ok(Versions {
            rotation_enabled: out.rotation_enabled().unwrap_or(false),
            last_changed: out.last_changed_date().map(|d| d.secs()),
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

    /// Takes `label` off `version`.
    async fn remove_label(&self, label: &str, version: &str) -> Result<(), RotateError> {
        self.rotator
            .sm
            .update_secret_version_stage()
            .secret_id(&self.secret_id)
            .version_stage(label)
            .remove_from_version_id(version)
            .send()
            .await
            .map_err(AwsCallError::of(
                "UpdateSecretVersionStage",
                &self.secret_id,
            ))?;
        Ok(())
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
        if !self.rotator.config.common.dry_run && matches!(self.step, Step::Set | Step::Test) {
            return self.pending_step().await;
        }
        let versions = self.versions().await?;
        let name = self.name();
        match plan::preflight(self.step, &name, &self.token, &versions) {
            Preflight::Refuse(reason) => return Err(RotateError::Protocol(reason)),
            Preflight::AlreadyCurrent
                if self.step == Step::Finish && versions.followup_pending(&self.token) =>
            {
                self.forget_pending();
                if self.rotator.config.common.dry_run {
                    return self.dry_run().await;
                }
                return self.follow_up(None, Some(&self.token)).await;
            }
            Preflight::AlreadyCurrent => return Ok(self.already_current()),
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
            Step::Finish => self.finish(&versions).await,
            // Set and test read the pending version themselves (above); only a
            // dry run comes this way, and it has returned.
            Step::Set | Step::Test => self.pending_step().await,
        }
    }

    /// setSecret and testSecret. One GetSecretValue of the token's version under
    /// AWSPENDING is the check and the read at once: Secrets Manager answers it only
    /// if that version holds AWSPENDING (a version id and a stage "must refer to the
    /// same secret version", GetSecretValue API reference). Only when it is refused
    /// does DescribeSecret say why, through the same preflight as the other steps.
    async fn pending_step(&self) -> Result<Outcome, RotateError> {
        match self.read_pending().await? {
            Ok(pending) if self.step == Step::Set => self.set(pending).await,
            Ok(pending) => self.test(pending).await,
            Err(done) => Ok(done),
        }
    }

    /// The token's AWSPENDING value, or, when the token is already AWSCURRENT, the
    /// outcome that the step has nothing to do. Refuses what the preflight refuses.
    async fn read_pending(&self) -> Result<Result<String, Outcome>, RotateError> {
        let result = self
            .rotator
            .sm
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_id(&self.token)
            .version_stage(AWSPENDING)
            .send()
            .await;
        let refused = match result {
            Ok(out) => {
                self.identify(out.name(), out.arn());
                let has = |label: &str| out.version_stages().iter().any(|s| s == label);
                // As the preflight: AWSPENDING stays on the finished version until
                // Secrets Manager removes it, and a replayed step there does nothing.
                if has(AWSCURRENT) {
                    return Ok(Err(self.already_current()));
                }
                if out.version_id() == Some(self.token.as_str()) && has(AWSPENDING) {
                    let value = out.secret_string().ok_or_else(|| self.no_pending_value())?;
                    self.remember(value);
                    if let Some(created) = out.created_date() {
                        self.cache_pending(value, created.secs());
                    }
                    return Ok(Ok(value.to_string()));
                }
                // Not the version asked for, which AWS never answers: the preflight decides.
                None
            }
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    s.is_resource_not_found_exception() || s.is_invalid_request_exception()
                }) =>
            {
                Some(e)
            }
            Err(e) => return Err(AwsCallError::of("GetSecretValue", &self.secret_id)(e).into()),
        };
        let versions = self.versions().await?;
        match plan::preflight(self.step, &self.name(), &self.token, &versions) {
            Preflight::Refuse(reason) => Err(RotateError::Protocol(reason)),
            Preflight::AlreadyCurrent => Ok(Err(self.already_current())),
            // AWSPENDING, yet unreadable: no value yet (createSecret has not put
            // one), or a refusal for another reason, which fails the step as is.
            Preflight::Proceed | Preflight::Adopt { .. } => match refused {
                Some(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_invalid_request_exception()) =>
                {
                    Err(AwsCallError::of("GetSecretValue", &self.secret_id)(e).into())
                }
                _ => Err(self.no_pending_value()),
            },
        }
    }

    fn no_pending_value(&self) -> RotateError {
        RotateError::Protocol(format!(
            "secret {} has no {AWSPENDING} value",
            self.secret_id
        ))
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
        let password = crate::password::generate(&policy).map_err(|e| {
            RotateError::Protocol(format!(
                "cannot make a password for secret {}: {e}",
                self.name()
            ))
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
            .secret_string(&pending)
            .version_stages(AWSPENDING)
            .send()
            .await;
        match put {
            Ok(out) => {
                // The version now holds this value, for good (see `cache`).
                self.identify(out.name(), out.arn());
                if out.version_id() == Some(self.token.as_str()) {
                    self.cache_pending(&pending, chrono::Utc::now().timestamp());
                }
                Ok(self.report(
                    "create",
                    format!("created the AWSPENDING value ({})", strategy.as_str()),
                ))
            }
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

    async fn set(&self, pending_text: String) -> Result<Outcome, RotateError> {
        match self.strategy_of(&pending_text)? {
            Strategy::Random => {
                Ok(self.report("skip", "a random secret has no external system to set"))
            }
            strategy => {
                let pending =
                    DbSecret::parse(&self.name(), &pending_text).map_err(RotateError::Protocol)?;
                let current = self.db_secret(&self.secret_id, AWSCURRENT, None).await?;
                plan::check_pending(strategy, &current, &pending, &self.name())
                    .map_err(RotateError::Protocol)?;
                if strategy == Strategy::PostgresSingleUser {
                    self.set_single_user(&current, &pending).await
                } else {
                    self.set_alternating(&current, &pending).await
                }
            }
        }
    }

    async fn set_single_user(
        &self,
        current: &DbSecret,
        pending: &DbSecret,
    ) -> Result<Outcome, RotateError> {
        let tls = &self.rotator.tls;
        if db::check_login(pending, tls).await.is_ok() {
            return Ok(self.report(
                "skip",
                format!("the pending password of {} already works", pending.username),
            ));
        }
        let client = match db::connect(current, &current.username, &current.password, tls).await {
            Ok(client) => client,
            Err(current_error) => {
                tracing::warn!(action = "login", reason = %current_error, "AWSCURRENT cannot log in; trying AWSPREVIOUS");
                let previous = self.value(&self.secret_id, AWSPREVIOUS, None).await?;
                let previous = previous
                    .map(|p| DbSecret::parse(&self.name(), &p))
                    .transpose()
                    .map_err(RotateError::Protocol)?
                    .filter(|p| p.username == current.username);
                match previous {
                    Some(p) => db::connect(current, &p.username, &p.password, tls).await?,
                    None => return Err(current_error.into()),
                }
            }
        };
        db::set_password(&client, &pending.host, &pending.username, &pending.password).await?;
        tracing::info!(action = "set_password", user = %pending.username, reason = "the user changes its own password", "password set");
        Ok(self.report("set", format!("set the password of {}", pending.username)))
    }

    /// Sets the idle user's password with the admin credentials, after checking, as
    /// the AWS sample rotator does, that the admin password goes only to the admin's
    /// own database and that the credentials being rotated are real.
    async fn set_alternating(
        &self,
        current: &DbSecret,
        pending: &DbSecret,
    ) -> Result<Outcome, RotateError> {
        let tls = &self.rotator.tls;
        let master_arn = current.masterarn.clone().ok_or_else(|| {
            RotateError::Protocol(format!(
                "secret {} has no masterarn, which alternating users need",
                self.name()
            ))
        })?;
        let admin_text = self.required(&master_arn, AWSCURRENT, None).await?;
        let admin = AdminSecret::parse(&master_arn, &admin_text).map_err(RotateError::Protocol)?;
        let admin_endpoint = match &admin.host {
            Some(host) => Endpoint {
                host: host.clone(),
                port: admin.port.unwrap_or(5432),
            },
            None => self.rds_endpoint(&master_arn).await?,
        };
        plan::check_admin_endpoint(&admin_endpoint, &current.endpoint(), &master_arn)
            .map_err(RotateError::Protocol)?;
        db::check_login(current, tls).await.map_err(|e| {
            RotateError::Protocol(format!(
                "AWSCURRENT of {} does not log in ({e}); refusing to use the admin credentials for it",
                self.name()
            ))
        })?;
        let login = admin.login(&admin_endpoint);
        let client = db::connect(&login, &admin.username, &admin.password, tls).await?;
        let host = &admin_endpoint.host;
        let created = db::ensure_login_role(&client, host, &pending.username).await?;
        db::set_password(&client, host, &pending.username, &pending.password).await?;
        let link = db::link_pair(&client, host, &current.username, &pending.username).await?;
        let linked = match link {
            db::Link::ActsAs => format!(
                "{} is a member of {} and its sessions act as it",
                pending.username, current.username
            ),
            db::Link::Owner => format!(
                "{} acts as itself; {} acts as it",
                pending.username, current.username
            ),
        };
        tracing::info!(
            action = "set_password",
            user = %pending.username,
            created,
            reason = %linked,
            "password set"
        );
        Ok(self.report(
            "set",
            format!(
                "set the password of {}{}; {linked}",
                pending.username,
                if created { " (created)" } else { "" },
            ),
        ))
    }

    /// The endpoint of the database an RDS-managed admin secret belongs to, from
    /// RDS itself (the secret holds only a user name and a password).
    async fn rds_endpoint(&self, master_arn: &str) -> Result<Endpoint, RotateError> {
        let described = self
            .rotator
            .sm
            .describe_secret()
            .secret_id(master_arn)
            .send()
            .await
            .map_err(AwsCallError::of("DescribeSecret", master_arn))?;
        let tag = |key: &str| {
            described
                .tags()
                .iter()
                .find(|t| t.key().is_some_and(|k| k.eq_ignore_ascii_case(key)))
                .and_then(|t| t.value())
                .map(str::to_string)
        };
        let no_endpoint = |what: &str| {
            RotateError::Protocol(format!(
                "admin secret {master_arn} has no host, and RDS reports no endpoint for {what}"
            ))
        };
        if let Some(arn) = tag(RDS_INSTANCE_TAG) {
            let out = self
                .rotator
                .rds
                .describe_db_instances()
                .db_instance_identifier(&arn)
                .send()
                .await
                .map_err(AwsCallError::of("DescribeDBInstances", &arn))?;
            let endpoint = out
                .db_instances()
                .first()
                .and_then(|i| i.endpoint())
                .ok_or_else(|| no_endpoint(&arn))?;
            return Ok(Endpoint {
                host: endpoint
                    .address()
                    .ok_or_else(|| no_endpoint(&arn))?
                    .to_string(),
                port: endpoint
                    .port()
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(5432),
            });
        }
        if let Some(arn) = tag(RDS_CLUSTER_TAG) {
            let out = self
                .rotator
                .rds
                .describe_db_clusters()
                .db_cluster_identifier(&arn)
                .send()
                .await
                .map_err(AwsCallError::of("DescribeDBClusters", &arn))?;
            let cluster = out.db_clusters().first().ok_or_else(|| no_endpoint(&arn))?;
            return Ok(Endpoint {
                host: cluster
                    .endpoint()
                    .ok_or_else(|| no_endpoint(&arn))?
                    .to_string(),
                port: cluster
                    .port()
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(5432),
            });
        }
        Err(RotateError::Protocol(format!(
            "admin secret {master_arn} has no host, and no {RDS_INSTANCE_TAG} or {RDS_CLUSTER_TAG} tag to find its database by"
        )))
    }

    async fn test(&self, pending_text: String) -> Result<Outcome, RotateError> {
        let strategy = self.strategy_of(&pending_text)?;
        if strategy == Strategy::Random {
            let key = self.target().and_then(|t| t.key.as_deref());
            plan::check_random(key, &pending_text, &self.name()).map_err(RotateError::Protocol)?;
            return Ok(self.report("test", "the pending value is well formed"));
        }
        let pending =
            DbSecret::parse(&self.name(), &pending_text).map_err(RotateError::Protocol)?;
        if strategy == Strategy::PostgresSingleUser {
            db::check_login(&pending, &self.rotator.tls).await?;
            return Ok(self.report(
                "test",
                format!("{} logs in with the pending password", pending.username),
            ));
        }
        let other =
            plan::next_username(strategy, &pending.username).map_err(RotateError::Protocol)?;
        let missing = db::check_access(
            &pending,
            &[pending.username.as_str(), other.as_str()],
            &self.rotator.tls,
        )
        .await?;
        if !missing.is_empty() {
            return Err(RotateError::Protocol(format!(
                "{} logs in but cannot use what {} and {other} own: {}",
                pending.username,
                pending.username,
                missing.join("; ")
            )));
        }
        Ok(self.report(
            "test",
            format!(
                "{} logs in and can read and write what {} and {other} own",
                pending.username, pending.username
            ),
        ))
    }

    /// Moves AWSCURRENT to the tested version, then does the follow-up. Only
    /// credentials that work are promoted: a manual or replayed finishSecret for a
    /// version setSecret never made work is refused, so AWSCURRENT always logs in.
    async fn finish(&self, versions: &Versions) -> Result<Outcome, RotateError> {
        // The preflight has just seen the token hold AWSPENDING; its value is the one
        // this sandbox wrote or read, if it did, as a version's value never changes.
        let pending_text = match self.cached_pending() {
            Some(value) => value,
            None => {
                self.required(&self.secret_id, AWSPENDING, Some(&self.token))
                    .await?
            }
        };
        match self.strategy_of(&pending_text)? {
            Strategy::Random => {
                let key = self.target().and_then(|t| t.key.as_deref());
                plan::check_random(key, &pending_text, &self.name())
                    .map_err(RotateError::Protocol)?;
            }
            _ => {
                let pending =
                    DbSecret::parse(&self.name(), &pending_text).map_err(RotateError::Protocol)?;
                db::check_login(&pending, &self.rotator.tls)
                    .await
                    .map_err(|e| {
                        RotateError::Protocol(format!(
                            "the pending credentials of {} do not log in ({e}); refusing to make them AWSCURRENT",
                            self.name()
                        ))
                    })?;
            }
        }
        let owed = self
            .target()
            .is_some_and(|t| !t.dependents.is_empty() || !t.consumers.is_empty());
        if owed {
            let holder = versions.holder(FOLLOWUP_PENDING).map(str::to_string);
            self.move_label(
                &self.secret_id,
                FOLLOWUP_PENDING,
                &self.token,
                holder.as_deref(),
            )
            .await?;
        }
        let holder = versions.holder(AWSCURRENT).map(str::to_string);
        self.move_label(&self.secret_id, AWSCURRENT, &self.token, holder.as_deref())
            .await?;
        self.forget_pending();
        tracing::info!(
            action = "finish",
            reason = "the tested version becomes AWSCURRENT; the old one AWSPREVIOUS",
            "AWSCURRENT moved"
        );
        self.follow_up(Some(pending_text), owed.then_some(&self.token))
            .await
    }

    /// After AWSCURRENT has moved to this version: rewrite dependent secrets,
    /// redeploy consumers, take the follow-up label off `label_on`, tell on-call.
    /// Safe to repeat: a dependent already right is left alone; the label shows
    /// what is still owed, so a later finishSecret or the scheduled check finishes
    /// work a failure left.
    pub(crate) async fn follow_up(
        &self,
        value: Option<String>,
        label_on: Option<&str>,
    ) -> Result<Outcome, RotateError> {
        let target = self.target().cloned();
        let dependents = target
            .as_ref()
            .map(|t| t.dependents.clone())
            .unwrap_or_default();
        let consumers = target
            .as_ref()
            .map(|t| t.consumers.clone())
            .unwrap_or_default();
        let current = match value {
            Some(v) => v,
            None => {
                self.required(&self.secret_id, AWSCURRENT, Some(&self.token))
                    .await?
            }
        };
        let strategy = self.strategy_of(&current)?;
        let creds = match strategy {
            Strategy::Random => None,
            _ => Some(DbSecret::parse(&self.name(), &current).map_err(RotateError::Protocol)?),
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
                // One token per (rotation, content): a retry of this write is
                // idempotent, and a write of other content (someone edited the
                // dependent meanwhile) is a new version, not a refused token.
                self.rotator
                    .sm
                    .put_secret_value()
                    .secret_id(&dependent.secret)
                    .client_request_token(plan::dependent_token(&self.token, &value))
                    .secret_string(value)
                    .send()
                    .await
                    .map_err(AwsCallError::of("PutSecretValue", &dependent.secret))?;
                tracing::info!(action = "rewrite_dependent", dependent = %dependent.secret, reason = "built from the rotated credentials", "dependent secret rewritten");
                rewritten.push(dependent.secret.clone());
            }
        }
        let mut redeployed = Vec::new();
        for c in &consumers {
            let key = format!("{}/{}", c.cluster, c.service);
            // A forced deployment is no absolute value: the SDK does not repeat it
            // once sent, so a lost answer cannot start a second rolling restart.
            self.rotator
                .ecs
                .update_service()
                .cluster(&c.cluster)
                .service(&c.service)
                .force_new_deployment(true)
                .customize()
                .config_override(
                    aws_sdk_ecs::config::Builder::default().retry_classifier(NotRepeatedIfSent),
                )
                .send()
                .await
                .map_err(AwsCallError::of("UpdateService", &key))?;
            tracing::info!(action = "redeploy", resource = %key, reason = "new tasks read the new secret value", "consumer redeployed");
            redeployed.push(key);
        }
        if let Some(version) = label_on {
            self.remove_label(FOLLOWUP_PENDING, version).await?;
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
