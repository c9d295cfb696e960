//! One world per function, as the fault matrix (`tests/tests/faults.rs`) and the
//! soak (`src/bin/soak.rs`) drive them: each on a [`Stack`] of its own, made with
//! the harness's fixtures, with the function's configuration for it.
//!
//! - [`DeployWorld`]: `prod/backend` (container `app`) running `backend:v1.4.1`,
//!   mapped for tags `v*`;
//! - [`RemediateWorld`]: services of cluster `prod` at 2 tasks, settled, and the
//!   guardrail table;
//! - [`RotateWorld`]: an alternating-users PostgreSQL secret with its admin
//!   secret, a dependent URL and a consumer service;
//! - [`SnapshotWorld`]: an encrypted instance in the source region, copied to
//!   the DR region with a key of its own.

use crate::postgres::{self, ident, literal};
use crate::snapshots::{self as rds, Db, DR, SOURCE};
use crate::{rotation, Stack};
use aws_config::SdkConfig;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// deploy
// ---------------------------------------------------------------------------

/// `prod/backend` (container `app`) running `backend:v1.4.1`.
pub struct DeployWorld {
    pub stack: Stack,
    pub repo: String,
    pub cluster: String,
    pub family: String,
    pub service: String,
    pub service_arn: String,
}

impl DeployWorld {
    pub async fn new(test: &str) -> Self {
        let stack = Stack::new(test).await;
        let repo = stack.repository("backend").await;
        stack.push(&repo, "v1.4.1").await;
        let cluster = stack.cluster("prod").await;
        let family = stack.name("backend");
        let td = stack
            .task_definition(&family, "app", &stack.image(&repo, "v1.4.1"))
            .await;
        let service = "backend".to_string();
        let service_arn = stack
            .service(&cluster, &service, td.task_definition_arn().unwrap())
            .await;
        Self {
            stack,
            repo,
            cluster,
            family,
            service,
            service_arn,
        }
    }

    /// deploy's service map: the repository's `v*` tags to the service's `app`.
    pub fn mapping(&self) -> Value {
        json!([{"repository": self.repo, "tags": ["v*"], "cluster": self.cluster, "service": self.service, "container": "app"}])
    }

    /// The deploy function for this world, its clients on `sdk`.
    pub fn deployer(&self, sdk: &SdkConfig) -> deploy::Deployer {
        deploy::Deployer::new(sdk, self.stack.config(self.mapping(), false))
    }

    /// The revision the service runs now.
    pub async fn running(&self) -> String {
        self.stack
            .describe_service(&self.cluster, &self.service)
            .await
            .task_definition()
            .unwrap_or_default()
            .to_string()
    }

    /// The family's revision that runs `tag` (the one a rollback restores).
    pub async fn revision_running(&self, tag: &str) -> String {
        let image = self.stack.image(&self.repo, tag);
        for arn in self.stack.revisions(&self.family).await {
            let (td, _) = self.stack.describe_task_definition(&arn).await;
            if td
                .container_definitions()
                .iter()
                .any(|c| c.image() == Some(image.as_str()))
            {
                return arn;
            }
        }
        panic!("no revision of {} runs {image}", self.family)
    }

    /// The family's revisions whose app container runs `digest`.
    pub async fn revisions_of(&self, digest: &str) -> Vec<String> {
        let mut found = Vec::new();
        for arn in self.stack.revisions(&self.family).await {
            let (td, _) = self.stack.describe_task_definition(&arn).await;
            if td
                .container_definitions()
                .iter()
                .any(|c| c.image().is_some_and(|i| i.ends_with(digest)))
            {
                found.push(arn);
            }
        }
        found
    }
}

// ---------------------------------------------------------------------------
// remediate
// ---------------------------------------------------------------------------

/// Services of cluster `prod`, each at 2 tasks with its deployment settled, and
/// the guardrail table.
pub struct RemediateWorld {
    pub stack: Stack,
    pub table: String,
    pub cluster: String,
    /// The services' names (the stack's name of each base given).
    pub services: Vec<String>,
}

impl RemediateWorld {
    pub async fn new(test: &str, bases: &[&str]) -> Self {
        let stack = Stack::new(test).await;
        let table = stack.guard_table().await;
        let cluster = stack.cluster("prod").await;
        let mut services = Vec::new();
        for base in bases {
            let service = stack.name(base);
            let td = stack
                .task_definition(&stack.name(base), "app", "nginx:1.27")
                .await;
            stack
                .service(&cluster, &service, td.task_definition_arn().unwrap())
                .await;
            stack.settle_service(&cluster, &service).await;
            services.push(service);
        }
        Self {
            stack,
            table,
            cluster,
            services,
        }
    }

    /// remediate's service map: every service with bounds 2–10 and a step of 2.
    pub fn bounds(&self) -> Value {
        let bounds: Vec<Value> = self
            .services
            .iter()
            .map(|s| json!({"cluster": self.cluster, "service": s, "min": 2, "max": 10, "step": 2}))
            .collect();
        json!(bounds)
    }

    /// remediate's configuration for this world: the service map and `vars`.
    pub fn config(&self, vars: &[(&str, String)]) -> remediate::config::Config {
        let mut all = vec![(remediate::config::SERVICES, self.bounds().to_string())];
        all.extend(vars.iter().cloned());
        self.stack.remediate_config(&self.table, &all)
    }

    /// The remediate function for this world, its clients on `sdk`, with the
    /// service map and `vars`.
    pub fn remediator(&self, sdk: &SdkConfig, vars: &[(&str, String)]) -> remediate::Remediator {
        remediate::Remediator::new(sdk, self.config(vars))
    }

    /// The guardrails' key of a service: `ecs:<cluster>/<service>`.
    pub fn resource(&self, service: &str) -> String {
        format!("ecs:{}/{service}", self.cluster)
    }

    /// Makes every claim a failed invocation left unsettled `seconds` older, as
    /// `alarms::end_cooldown` moves a test's time: Lambda retries a failed event a
    /// minute, then two, later, and a retry that finds the claim past its 120 s
    /// lease resumes it. Tests do not wait for that; they age the claim.
    pub async fn age_claims(&self, seconds: i64) {
        for service in &self.services {
            let resource = self.resource(service);
            let mut guard = self.stack.guard(&self.table, &resource).await;
            if let Some(claim) = guard.value.claim.as_mut().filter(|c| c.result.is_none()) {
                claim.at -= seconds;
                self.stack
                    .guard_store(&self.table)
                    .put(
                        remediate::store::guard_key(&resource),
                        &guard.value,
                        guard.version,
                    )
                    .await
                    .expect("age the claim");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// rotate
// ---------------------------------------------------------------------------

/// An alternating-users PostgreSQL secret (`db`, for the harness PostgreSQL's role
/// `<prefix>_app`, its admin in `admin`), a dependent URL secret (`db-url`) and a
/// consumer service (`prod/backend`).
pub struct RotateWorld {
    pub stack: Stack,
    /// The rotated secret's ARN.
    pub arn: String,
    /// The dependent URL secret's ARN.
    pub url: String,
    /// The first user of the pair (the other is `<user>_clone`).
    pub user: String,
    /// The first user's password before any rotation.
    pub old: String,
    pub cluster: String,
}

impl RotateWorld {
    pub async fn new(test: &str) -> Self {
        let stack = Stack::new(test).await;
        let pg = postgres::postgres();
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
                &rotation::rds_secret(pg.port, &admin, "admin-password").to_string(),
            )
            .await;
        let old = "old-password-faults".to_string();
        let user = stack.name("app").replace('-', "_");
        pg.exec(&format!(
            "CREATE ROLE {} LOGIN PASSWORD {}",
            ident(&user),
            literal(&old)
        ))
        .await;
        let mut value = rotation::rds_secret(pg.port, &user, &old);
        value["masterarn"] = json!(master);
        let arn = stack.create_secret("db", &value.to_string()).await;
        let url = stack
            .create_secret(
                "db-url",
                &format!(
                    "postgres://{user}:{old}@127.0.0.1:{}/postgres?sslmode=disable",
                    pg.port
                ),
            )
            .await;
        let repo = stack.repository("backend").await;
        let cluster = stack.cluster("prod").await;
        let td = stack
            .task_definition(&stack.name("backend"), "app", &stack.image(&repo, "v1"))
            .await;
        stack
            .service(&cluster, "backend", td.task_definition_arn().unwrap())
            .await;
        Self {
            stack,
            arn,
            url,
            user,
            old,
            cluster,
        }
    }

    /// The rotate function for this world, its clients on `sdk`, as at a cold start.
    pub fn rotator(&self, sdk: &SdkConfig) -> Result<rotate::Rotator, String> {
        let rotations = json!([{"secret": self.stack.name("db"), "strategy": "postgres-alternating-users",
            "dependents": [{"secret": self.stack.name("db-url"), "format": "url"}],
            "consumers": [{"cluster": self.cluster, "service": "backend"}]}]);
        rotate::Rotator::new(sdk, self.stack.rotation_config(rotations))
            .map_err(|e| format!("cold start: {e}"))
    }

    /// How many deployments the consumer service lists.
    pub async fn deployments(&self) -> usize {
        self.stack
            .describe_service(&self.cluster, "backend")
            .await
            .deployments()
            .len()
    }

    /// The secret's credentials at `stage`.
    pub async fn creds(&self, stage: &str) -> Result<(String, String), String> {
        let value: Value = self
            .stack
            .secret_value(&self.arn, stage)
            .await
            .and_then(|v| serde_json::from_str(&v).ok())
            .ok_or(format!("{stage} is unreadable"))?;
        match (value["username"].as_str(), value["password"].as_str()) {
            (Some(user), Some(password)) => Ok((user.to_string(), password.to_string())),
            _ => Err(format!("{stage} lost its username or password")),
        }
    }

    /// Whether the secret's credentials at `stage` log in to the harness PostgreSQL.
    pub async fn logs_in(&self, stage: &str) -> Result<(), String> {
        let (user, password) = self.creds(stage).await?;
        if postgres::postgres().can_login(&user, &password).await {
            Ok(())
        } else {
            Err(format!("{stage} ({user}) does not log in"))
        }
    }
}

// ---------------------------------------------------------------------------
// snapshot
// ---------------------------------------------------------------------------

/// An encrypted PostgreSQL instance `<prefix>-orders` in the source region, and a
/// KMS key of the DR region for its copies.
pub struct SnapshotWorld {
    pub stack: Stack,
    pub db: String,
    pub dr_key: String,
}

impl SnapshotWorld {
    pub async fn new(test: &str) -> Self {
        let stack = Stack::new(test).await;
        let db = format!("{}-orders", stack.prefix);
        rds::create_instance(SOURCE, &db, true).await;
        Self {
            stack,
            db,
            dr_key: rds::kms_key(DR),
        }
    }

    /// The tags of autopilot's daily snapshot of `db`.
    pub fn ours(db: &str) -> Vec<(&'static str, String)> {
        use autopilot_shared::backup::{self, tag};
        vec![
            (tag::CREATED_BY, backup::BY_SNAPSHOT.to_string()),
            (tag::REASON, backup::reason::SCHEDULED.to_string()),
            (tag::DB, db.to_string()),
        ]
    }

    /// A manual snapshot `id` of the instance, taken now with `tags`; its ARN.
    pub async fn manual(&self, id: &str, tags: &[(&str, String)]) -> String {
        let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
        rds::manual_snapshot(SOURCE, Db::Instance(&self.db), id, &tags).await
    }

    /// snapshot's configuration for this world: the instance, the DR region and
    /// key, and `extra` variables over those.
    pub fn config(&self, extra: &[(&str, &str)]) -> snapshot::config::Config {
        use snapshot::config;
        let mut pairs: Vec<(String, String)> = vec![
            ("AUTOPILOT_TOPIC_ARN".into(), self.stack.topic_arn.clone()),
            (config::AWS_REGION.into(), SOURCE.into()),
            (
                config::DATABASES.into(),
                json!([{"instance": self.db}]).to_string(),
            ),
            (config::DR_REGION.into(), DR.into()),
            (config::DR_KMS_KEY.into(), self.dr_key.clone()),
        ];
        for (k, v) in extra {
            pairs.retain(|(key, _)| key != k);
            pairs.push((k.to_string(), v.to_string()));
        }
        config::Config::from_lookup(autopilot_shared::config::lookup_from(pairs))
            .expect("snapshot configuration")
    }

    /// The snapshot function for this world, its clients on `sdk`, configured as
    /// [`SnapshotWorld::config`].
    pub fn snapshotter(&self, sdk: &SdkConfig, extra: &[(&str, &str)]) -> snapshot::Snapshotter {
        snapshot::Snapshotter::new(sdk, self.config(extra)).expect("snapshot cold start")
    }

    /// The instance's snapshots in `region`, by id with the stack's prefix taken
    /// out (so two worlds compare), sorted.
    pub async fn ids(&self, region: &str) -> Vec<String> {
        let mut ids: Vec<String> = rds::snapshots(region, Db::Instance(&self.db))
            .await
            .into_iter()
            .map(|s| s.id.replace(&self.stack.prefix, "P"))
            .collect();
        ids.sort();
        ids
    }
}
