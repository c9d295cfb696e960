//! The rotate function against the emulator's Secrets Manager and a real PostgreSQL.

use autopilot_shared::config::DRY_RUN;
use autopilot_shared::{Failure, Report};
use autopilot_tests::postgres::{ident, literal, postgres, Postgres};
use autopilot_tests::rotation::*;
use autopilot_tests::*;
use autopilot_tests::{logs, template};
use lambda_runtime::{Context, LambdaEvent};
use rotate::config;
use rotate::Rotator;
use serde_json::{json, Value};

struct Fixture {
    stack: Stack,
    pg: &'static Postgres,
    rotator: Rotator,
}

impl Fixture {
    async fn new(test: &str, rotations: impl Fn(&Stack) -> Value) -> Self {
        let stack = Stack::new(test).await;
        let pg = postgres();
        let rotator =
            Rotator::new(&stack.sdk, stack.rotation_config(rotations(&stack))).expect("rotator");
        Self { stack, pg, rotator }
    }

    /// A login role with a password, named after the stack.
    async fn user(&self, base: &str, password: &str) -> String {
        let user = self.stack.name(base).replace('-', "_");
        self.pg
            .exec(&format!(
                "CREATE ROLE {} LOGIN PASSWORD {}",
                ident(&user),
                literal(password)
            ))
            .await;
        user
    }

    async fn secret(&self, base: &str, value: &Value) -> String {
        self.stack.create_secret(base, &value.to_string()).await
    }

    async fn step(&self, step: &str, arn: &str, token: &str) -> Result<Report, Failure> {
        self.rotator
            .handle(LambdaEvent::new(
                rotation_event(step, arn, token),
                Context::default(),
            ))
            .await
    }

    /// One whole rotation, as Secrets Manager runs it.
    async fn rotate(&self, arn: &str) -> String {
        let token = self.stack.start_rotation(arn).await;
        for step in STEPS {
            self.step(step, arn, &token)
                .await
                .unwrap_or_else(|e| panic!("{step}: {e}"));
        }
        self.stack.end_rotation(arn, &token).await;
        token
    }

    async fn creds(&self, arn: &str, stage: &str) -> Option<(String, String)> {
        let v: Value = serde_json::from_str(&self.stack.secret_value(arn, stage).await?).ok()?;
        Some((
            v["username"].as_str()?.to_string(),
            v["password"].as_str()?.to_string(),
        ))
    }

    async fn logs_in(&self, arn: &str, stage: &str) -> bool {
        match self.creds(arn, stage).await {
            Some((u, p)) => self.pg.can_login(&u, &p).await,
            None => false,
        }
    }
}

fn single_user(stack: &Stack, base: &str) -> Value {
    json!([{"secret": stack.name(base), "strategy": "postgres-single-user"}])
}

#[tokio::test]
async fn single_user_rotation_changes_the_password_with_no_value_in_pages() {
    let f = Fixture::new("single_user", |s| single_user(s, "db")).await;
    let user = f.user("app", "old-password-1").await;
    let arn = f
        .secret("db", &rds_secret(f.pg.port, &user, "old-password-1"))
        .await;

    let token = f.rotate(&arn).await;

    let (u, new_password) = f.creds(&arn, "AWSCURRENT").await.unwrap();
    assert_eq!(u, user);
    assert_ne!(new_password, "old-password-1");
    assert_eq!(new_password.len(), 32);
    assert!(
        new_password
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)),
        "URL-safe by default"
    );
    assert!(
        f.pg.can_login(&user, &new_password).await,
        "AWSCURRENT logs in"
    );
    assert!(
        !f.pg.can_login(&user, "old-password-1").await,
        "the old password is refused"
    );
    assert_eq!(
        f.creds(&arn, "AWSPREVIOUS").await.unwrap().1,
        "old-password-1"
    );
    assert_eq!(
        f.stack.stages(&arn).await[&token],
        vec!["AWSCURRENT".to_string()]
    );

    let pages = f.stack.pages().await;
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert_eq!(
        (pages[0].severity.as_str(), pages[0].action()),
        ("info", "resolve")
    );
    assert!(
        pages[0].summary().starts_with("Rotated"),
        "{}",
        pages[0].summary()
    );
    let text = format!("{pages:?}");
    assert!(
        !text.contains(&new_password) && !text.contains("old-password-1"),
        "a page carries a password"
    );
}

#[tokio::test]
async fn every_step_is_safe_to_run_twice() {
    let f = Fixture::new("idempotent", |s| single_user(s, "db")).await;
    let user = f.user("app", "old-password-2").await;
    let arn = f
        .secret("db", &rds_secret(f.pg.port, &user, "old-password-2"))
        .await;
    let token = f.stack.start_rotation(&arn).await;

    f.step("createSecret", &arn, &token).await.unwrap();
    let pending = f.stack.secret_value(&arn, "AWSPENDING").await.unwrap();
    let again = f.step("createSecret", &arn, &token).await.unwrap();
    assert_eq!(again.actions(), vec!["skip"], "{again:?}");
    assert_eq!(
        f.stack.secret_value(&arn, "AWSPENDING").await.unwrap(),
        pending,
        "one pending value per token"
    );
    for step in [
        "setSecret",
        "setSecret",
        "testSecret",
        "testSecret",
        "finishSecret",
        "finishSecret",
    ] {
        f.step(step, &arn, &token)
            .await
            .unwrap_or_else(|e| panic!("{step}: {e}"));
    }
    let (_, password) = f.creds(&arn, "AWSCURRENT").await.unwrap();
    assert!(f.pg.can_login(&user, &password).await);
    assert_eq!(
        f.creds(&arn, "AWSPREVIOUS").await.unwrap().1,
        "old-password-2",
        "a second finish does not move AWSPREVIOUS"
    );
    // A step replayed after the rotation ended does nothing.
    f.stack.end_rotation(&arn, &token).await;
    assert_eq!(
        f.step("setSecret", &arn, &token).await.unwrap().actions(),
        vec!["skip"]
    );
}

/// Crash after each step in turn (the step's work is done but Secrets Manager
/// sees a failure and retries it), then let the protocol run on. Between steps,
/// some staged version always logs in; AWSCURRENT does except between setSecret
/// and finishSecret, the window single-user rotation cannot avoid with one password per role.
#[tokio::test]
async fn crash_after_any_step_recovers_and_never_locks_everyone_out() {
    let f = Fixture::new("crash_matrix", |s| single_user(s, "db")).await;
    for (crash_after, crashed) in STEPS.iter().enumerate() {
        let old = format!("old-password-crash-{crash_after}");
        let user = f.user(&format!("app{crash_after}"), &old).await;
        let arn = f
            .secret(
                &format!("db{crash_after}"),
                &rds_secret(f.pg.port, &user, &old),
            )
            .await;
        // These secrets are not in AUTOPILOT_ROTATIONS: the strategy comes from their JSON.
        let token = f.stack.start_rotation(&arn).await;
        let mut schedule: Vec<&str> = STEPS.to_vec();
        schedule.insert(crash_after + 1, crashed);
        for (i, step) in schedule.iter().enumerate() {
            let result = f.step(step, &arn, &token).await;
            result.unwrap_or_else(|e| panic!("crash after {crashed}: {step}: {e}"));
            let current = f.logs_in(&arn, "AWSCURRENT").await;
            let previous = f.logs_in(&arn, "AWSPREVIOUS").await;
            let pending = f.logs_in(&arn, "AWSPENDING").await;
            assert!(
                current || previous || pending,
                "crash after {}: nobody logs in after step {i} ({step})",
                crashed
            );
            let in_window = matches!(*step, "setSecret" | "testSecret");
            assert!(
                current || in_window,
                "crash after {}: AWSCURRENT cannot log in after {step}",
                crashed
            );
        }
        f.stack.end_rotation(&arn, &token).await;
        assert!(f.logs_in(&arn, "AWSCURRENT").await);
        assert!(
            !f.pg.can_login(&user, &old).await,
            "crash after {}: old password still works",
            crashed
        );
    }
}

#[tokio::test]
async fn failed_aws_calls_mid_step_are_retried_to_completion() {
    let f = Fixture::new("aws_faults", |s| single_user(s, "db")).await;
    let user = f.user("app", "old-password-3").await;
    let arn = f
        .secret("db", &rds_secret(f.pg.port, &user, "old-password-3"))
        .await;
    let token = f.stack.start_rotation(&arn).await;

    f.stack
        .fail_next("PutSecretValue", MAX_ATTEMPTS, "InternalServiceError");
    let err = f.step("createSecret", &arn, &token).await.unwrap_err();
    assert_eq!(err.code, "autopilot.AwsCallFailed");
    f.step("createSecret", &arn, &token).await.unwrap();
    f.step("setSecret", &arn, &token).await.unwrap();
    f.step("testSecret", &arn, &token).await.unwrap();
    f.stack.fail_next(
        "UpdateSecretVersionStage",
        MAX_ATTEMPTS,
        "InternalServiceError",
    );
    assert!(f.step("finishSecret", &arn, &token).await.is_err());
    assert!(f.logs_in(&arn, "AWSPENDING").await);
    f.step("finishSecret", &arn, &token).await.unwrap();
    assert!(f.logs_in(&arn, "AWSCURRENT").await);

    let pages = f.stack.pages().await;
    let failures: Vec<_> = pages.iter().filter(|p| p.severity == "critical").collect();
    assert_eq!(failures.len(), 2, "{pages:?}");
    assert_eq!(failures[0].detail("Step"), &json!("createSecret"));
    assert_eq!(failures[1].detail("Step"), &json!("finishSecret"));
    assert!(failures[0]
        .detail("Error")
        .as_str()
        .unwrap()
        .contains("PutSecretValue"));
    assert_eq!(
        pages.last().unwrap().action(),
        "resolve",
        "success resolves the incident"
    );
    assert_eq!(pages.last().unwrap().dedup_key(), failures[0].dedup_key());
}

#[tokio::test]
async fn a_hostile_user_name_is_quoted_and_nothing_else_happens() {
    let f = Fixture::new("hostile", |s| single_user(s, "db")).await;
    let user = format!(
        "{}we\"ird user; DROP TABLE canary; --",
        f.stack.prefix.replace('-', "_")
    );
    let old = "old'pass\"word;--";
    f.pg.exec(&format!(
        "CREATE TABLE IF NOT EXISTS canary (x int); CREATE ROLE {} LOGIN PASSWORD {}",
        ident(&user),
        literal(old)
    ))
    .await;
    let arn = f.secret("db", &rds_secret(f.pg.port, &user, old)).await;

    f.rotate(&arn).await;

    let (_, password) = f.creds(&arn, "AWSCURRENT").await.unwrap();
    assert!(f.pg.can_login(&user, &password).await);
    assert!(!f.pg.can_login(&user, old).await);
    let admin = f.pg.admin().await;
    assert!(
        admin
            .query_one("SELECT count(*) FROM canary", &[])
            .await
            .is_ok(),
        "the canary table survived"
    );
    let roles: i64 = admin
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&user])
        .await
        .unwrap()
        .get(0);
    assert_eq!(roles, 1);
}

#[tokio::test]
async fn tls_is_required_unless_the_secret_disables_it() {
    let f = Fixture::new("tls_required", |s| single_user(s, "db")).await;
    let user = f.user("app", "old-password-4").await;
    let mut value = rds_secret(f.pg.port, &user, "old-password-4");
    value.as_object_mut().unwrap().remove("sslmode");
    let arn = f.secret("db", &value).await;
    let token = f.stack.start_rotation(&arn).await;
    f.step("createSecret", &arn, &token).await.unwrap();

    let err = f.step("setSecret", &arn, &token).await.unwrap_err();

    assert_eq!(err.code, "autopilot.DatabaseFailed", "{}", err.message);
    assert!(
        err.message.to_lowercase().contains("tls"),
        "{}",
        err.message
    );
    assert!(
        f.pg.can_login(&user, "old-password-4").await,
        "nothing changed on the server"
    );
    let pages = f.stack.pages().await;
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].severity, "critical");
    assert_eq!(pages[0].detail("Step"), &json!("setSecret"));
    assert!(pages[0].detail("Secret").as_str().unwrap().ends_with("-db"));
}

#[tokio::test]
async fn an_abandoned_pending_version_is_cleaned_up_instead_of_blocking() {
    let f = Fixture::new("stuck", |s| single_user(s, "db")).await;
    let user = f.user("app", "old-password-5").await;
    let arn = f
        .secret("db", &rds_secret(f.pg.port, &user, "old-password-5"))
        .await;
    // An earlier rotation created its pending value and was abandoned.
    let abandoned = f.stack.start_rotation(&arn).await;
    f.step("createSecret", &arn, &abandoned).await.unwrap();
    // A new rotation starts, but AWSPENDING is still on the abandoned version.
    let token = f.stack.start_rotation(&arn).await;
    f.stack
        .sm()
        .update_secret_version_stage()
        .secret_id(&arn)
        .version_stage("AWSPENDING")
        .move_to_version_id(&abandoned)
        .remove_from_version_id(&token)
        .send()
        .await
        .unwrap();

    for step in STEPS {
        f.step(step, &arn, &token)
            .await
            .unwrap_or_else(|e| panic!("{step}: {e}"));
    }

    let stages = f.stack.stages(&arn).await;
    assert!(stages[&token].contains(&"AWSCURRENT".to_string()));
    assert!(
        !stages
            .get(&abandoned)
            .is_some_and(|s| s.contains(&"AWSPENDING".to_string())),
        "{stages:?}"
    );
    assert!(f.logs_in(&arn, "AWSCURRENT").await);
}

#[tokio::test]
async fn refuses_a_token_that_is_not_pending_and_a_disabled_rotation() {
    let f = Fixture::new("refusals", |s| single_user(s, "db")).await;
    let user = f.user("app", "old-password-6").await;
    let arn = f
        .secret("db", &rds_secret(f.pg.port, &user, "old-password-6"))
        .await;
    let err = f.step("createSecret", &arn, &token()).await.unwrap_err();
    assert_eq!(err.code, "autopilot.RotationRefused");
    assert!(err.message.contains("not enabled"), "{}", err.message);
    let t = f.stack.start_rotation(&arn).await;
    let err = f.step("setSecret", &arn, &token()).await.unwrap_err();
    assert!(err.message.contains("not a version"), "{}", err.message);
    let err = f
        .rotator
        .handle(LambdaEvent::new(
            rotation_event("dropSecret", &arn, &t),
            Context::default(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code, "autopilot.MalformedEvent");
    assert!(err.message.contains("dropSecret"), "{}", err.message);
    let err = f
        .rotator
        .handle(LambdaEvent::new(
            json!({"Step": "createSecret"}),
            Context::default(),
        ))
        .await
        .unwrap_err();
    assert!(err.message.contains("SecretId"), "{}", err.message);
    assert!(f.pg.can_login(&user, "old-password-6").await);
}

#[tokio::test]
async fn random_secrets_rotate_whole_or_by_key() {
    let f = Fixture::new("random", |s| {
        json!([{"secret": s.name("jwt"), "strategy": "random", "key": "signing_key", "password": {"length": 64}},
               {"secret": s.name("token"), "strategy": "random"}])
    })
    .await;
    let jwt = f
        .secret("jwt", &json!({"signing_key": "old-key", "kid": "2026-11"}))
        .await;
    let plain = f.stack.create_secret("token", "old-token").await;

    f.rotate(&jwt).await;
    f.rotate(&plain).await;

    let v: Value =
        serde_json::from_str(&f.stack.secret_value(&jwt, "AWSCURRENT").await.unwrap()).unwrap();
    assert_eq!(v["signing_key"].as_str().unwrap().len(), 64);
    assert_eq!(v["kid"], "2026-11", "other keys are kept");
    let t = f.stack.secret_value(&plain, "AWSCURRENT").await.unwrap();
    assert!(t != "old-token" && t.len() == 32);
    assert_eq!(
        f.stack.secret_value(&plain, "AWSPREVIOUS").await.unwrap(),
        "old-token"
    );
}

#[tokio::test]
async fn alternating_users_never_lock_out_and_keep_grants_in_sync() {
    let f = Fixture::new(
        "alternating",
        |s| json!([{"secret": s.name("db"), "strategy": "postgres-alternating-users"}]),
    )
    .await;
    let p = f.stack.prefix.replace('-', "_");
    let admin_user = f.user("admin", "admin-password").await;
    let user = f.user("app", "old-password-7").await;
    let (schema, reader) = (format!("{p}_orders"), format!("{p}_readers"));
    f.pg.exec(&format!(
        "ALTER ROLE {admin} CREATEROLE;
         CREATE SCHEMA {schema}; CREATE TABLE {schema}.items (id int); CREATE TABLE {schema}.audit (id int);
         CREATE ROLE {reader}; GRANT {reader} TO {user};
         GRANT USAGE ON SCHEMA {schema} TO {user}; GRANT SELECT, INSERT ON {schema}.items TO {user};
         GRANT ALL ON SCHEMA {schema} TO {admin}; GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO {admin} WITH GRANT OPTION;
         GRANT {reader} TO {admin} WITH ADMIN OPTION; GRANT USAGE ON SCHEMA {schema} TO {admin} WITH GRANT OPTION",
        admin = ident(&admin_user),
        user = ident(&user),
        schema = ident(&schema),
        reader = ident(&reader),
    ))
    .await;
    let master = f
        .secret(
            "admin",
            &rds_secret(f.pg.port, &admin_user, "admin-password"),
        )
        .await;
    let mut value = rds_secret(f.pg.port, &user, "old-password-7");
    value["masterarn"] = json!(master);
    let arn = f.secret("db", &value).await;
    let clone = format!("{user}_clone");

    // First rotation: the clone is created with the original's grants and becomes current.
    let token = f.stack.start_rotation(&arn).await;
    for step in STEPS {
        f.step(step, &arn, &token)
            .await
            .unwrap_or_else(|e| panic!("{step}: {e}"));
        assert!(
            f.logs_in(&arn, "AWSCURRENT").await,
            "AWSCURRENT logs in after {step}"
        );
    }
    f.stack.end_rotation(&arn, &token).await;
    assert_eq!(f.creds(&arn, "AWSCURRENT").await.unwrap().0, clone);
    assert!(
        f.pg.can_login(&user, "old-password-7").await,
        "the previous user keeps working"
    );
    let (_, clone_password) = f.creds(&arn, "AWSCURRENT").await.unwrap();
    let c = f.pg.login(&clone, &clone_password).await.unwrap();
    c.batch_execute(&format!(
        "INSERT INTO {}.items VALUES (1); SELECT * FROM {}.items",
        ident(&schema),
        ident(&schema)
    ))
    .await
    .expect("clone has the original's table grants");
    let member: bool = c
        .query_one("SELECT pg_has_role($1, $2, 'MEMBER')", &[&clone, &reader])
        .await
        .unwrap()
        .get(0);
    assert!(member, "clone is in the original's roles");

    // Grants drift on the original between rotations; the next rotation re-syncs the clone.
    f.pg.exec(&format!(
        "REVOKE INSERT ON {s}.items FROM {u}; GRANT SELECT ON {s}.audit TO {u}",
        s = ident(&schema),
        u = ident(&user)
    ))
    .await;
    let token = f.rotate(&arn).await;
    assert_eq!(
        f.creds(&arn, "AWSCURRENT").await.unwrap().0,
        user,
        "back to the original user"
    );
    assert!(f.logs_in(&arn, "AWSCURRENT").await && f.logs_in(&arn, "AWSPREVIOUS").await);
    let c = f.pg.login(&clone, &clone_password).await.unwrap();
    assert!(
        c.batch_execute(&format!("INSERT INTO {}.items VALUES (2)", ident(&schema)))
            .await
            .is_err(),
        "revoked from the clone too"
    );
    c.batch_execute(&format!("SELECT * FROM {}.audit", ident(&schema)))
        .await
        .expect("granted to the clone too");
    assert!(f.stack.stages(&arn).await[&token].contains(&"AWSCURRENT".to_string()));
}

#[tokio::test]
async fn alternating_users_check_the_identifier_limit() {
    let f = Fixture::new(
        "long_name",
        |s| json!([{"secret": s.name("db"), "strategy": "postgres-alternating-users"}]),
    )
    .await;
    let long = format!("{}_{}", f.stack.prefix.replace('-', "_"), "u".repeat(50));
    let long = &long[..60];
    let mut value = rds_secret(f.pg.port, long, "pw-pw-pw-pw");
    value["masterarn"] = json!("arn:aws:secretsmanager:us-east-1:123456789012:secret:admin-AbCdEf");
    let arn = f.secret("db", &value).await;
    let token = f.stack.start_rotation(&arn).await;
    let err = f.step("createSecret", &arn, &token).await.unwrap_err();
    assert!(
        err.message.contains("66 bytes") && err.message.contains("63"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn dependents_are_rewritten_and_consumers_redeployed_once() {
    let f = Fixture::new("dependents", |s| {
        json!([{"secret": s.name("db"), "strategy": "postgres-single-user",
                "dependents": [{"secret": s.name("db-url"), "format": "url"},
                               {"secret": s.name("app-config"), "format": "json", "key": "database_url"}],
                "consumers": [{"cluster": s.name("prod"), "service": "backend"}]}])
    })
    .await;
    let user = f.user("app", "old-password-8").await;
    let arn = f
        .secret("db", &rds_secret(f.pg.port, &user, "old-password-8"))
        .await;
    let url = f
        .stack
        .create_secret(
            "db-url",
            &format!(
                "postgres://{user}:old-password-8@127.0.0.1:{}/postgres?sslmode=disable",
                f.pg.port
            ),
        )
        .await;
    let cfg = f
        .stack
        .create_secret(
            "app-config",
            &json!({"database_url": "postgres://x:y@h:1/d", "pool": 5}).to_string(),
        )
        .await;
    let repo = f.stack.repository("backend").await;
    let cluster = f.stack.cluster("prod").await;
    let td = f
        .stack
        .task_definition(&f.stack.name("backend"), "app", &f.stack.image(&repo, "v1"))
        .await;
    f.stack
        .service(&cluster, "backend", td.task_definition_arn().unwrap())
        .await;
    let deployments = |s: aws_sdk_ecs::types::Service| s.deployments().len();
    let before = deployments(f.stack.describe_service(&cluster, "backend").await);

    let token = f.rotate(&arn).await;

    let (_, password) = f.creds(&arn, "AWSCURRENT").await.unwrap();
    let new_url = f.stack.secret_value(&url, "AWSCURRENT").await.unwrap();
    assert_eq!(
        new_url,
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/postgres?sslmode=disable",
            f.pg.port
        )
    );
    let c: Value =
        serde_json::from_str(&f.stack.secret_value(&cfg, "AWSCURRENT").await.unwrap()).unwrap();
    assert_eq!(
        c["database_url"],
        json!(format!(
            "postgres://{user}:{password}@127.0.0.1:{}/postgres",
            f.pg.port
        ))
    );
    assert_eq!(c["pool"], 5);
    assert_eq!(
        deployments(f.stack.describe_service(&cluster, "backend").await),
        before + 1,
        "one forced deployment"
    );

    // finishSecret retried (say, after a failed page): nothing is done twice.
    f.step("finishSecret", &arn, &token).await.unwrap();
    assert_eq!(
        deployments(f.stack.describe_service(&cluster, "backend").await),
        before + 1
    );
    let versions = f.stack.stages(&url).await;
    assert_eq!(
        versions.len(),
        2,
        "one new version of the dependent: {versions:?}"
    );
    let pages = f.stack.pages().await;
    let last = pages.last().unwrap();
    assert_eq!(
        last.detail("Services redeployed")[0],
        json!(format!("{cluster}/backend"))
    );
    assert!(!format!("{pages:?}").contains(&password));
}

/// Against a TLS-only server: the configured CA bundle verifies it and the
/// rotation succeeds; with the system trust store the same server is refused,
/// and nothing falls back to plaintext.
#[tokio::test]
async fn verified_tls_rotates_and_an_unknown_ca_is_refused() {
    use autopilot_tests::postgres::postgres_tls;
    let pg = postgres_tls();
    let stack = Stack::new("tls_verified").await;
    let user = stack.name("app").replace('-', "_");
    pg.exec(&format!(
        "CREATE ROLE {} LOGIN PASSWORD {}",
        ident(&user),
        literal("old-password-tls")
    ))
    .await;
    let mut value = rds_secret(pg.port, &user, "old-password-tls");
    value.as_object_mut().unwrap().remove("sslmode");
    let arn = stack.create_secret("db", &value.to_string()).await;
    let rotator = |ca: Option<String>| {
        let vars: Vec<(&str, String)> = ca
            .into_iter()
            .map(|ca| (config::DB_CA_BUNDLE, ca))
            .collect();
        Rotator::new(&stack.sdk, stack.rotate_config_with(&vars)).unwrap()
    };
    let run = |r: &Rotator, step: &'static str, token: String| {
        let event = LambdaEvent::new(rotation_event(step, &arn, &token), Context::default());
        let r = r.clone();
        async move { r.handle(event).await }
    };

    let untrusting = rotator(None);
    let token = stack.start_rotation(&arn).await;
    run(&untrusting, "createSecret", token.clone())
        .await
        .unwrap();
    let err = run(&untrusting, "setSecret", token.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code, "autopilot.DatabaseFailed");
    assert!(
        err.message.to_lowercase().contains("certificate"),
        "{}",
        err.message
    );
    assert!(pg.can_login(&user, "old-password-tls").await);

    let trusting = rotator(pg.ca.clone());
    for step in ["setSecret", "testSecret", "finishSecret"] {
        run(&trusting, step, token.clone())
            .await
            .unwrap_or_else(|e| panic!("{step}: {}", e.message));
    }
    let new: Value =
        serde_json::from_str(&stack.secret_value(&arn, "AWSCURRENT").await.unwrap()).unwrap();
    assert!(pg.can_login(&user, new["password"].as_str().unwrap()).await);
    assert!(!pg.can_login(&user, "old-password-tls").await);
}

#[tokio::test]
async fn dry_run_notifies_and_changes_nothing() {
    let stack = Stack::new("rotate_dry_run").await;
    let pg = postgres();
    let (user, arn) = stack.database_user(pg, "db", "old-password-dry").await;
    let config = stack.rotate_config_with(&[
        (
            config::ROTATIONS,
            json!([{"secret": stack.name("db"), "strategy": "postgres-single-user"}]).to_string(),
        ),
        (DRY_RUN, "true".into()),
    ]);
    let rotator = Rotator::new(&stack.sdk, config).unwrap();
    let token = stack.start_rotation(&arn).await;

    for step in STEPS {
        let report = rotator
            .handle(LambdaEvent::new(
                rotation_event(step, &arn, &token),
                Context::default(),
            ))
            .await
            .unwrap();
        assert_eq!(report.actions(), vec!["dry-run"], "{step}: {report:?}");
    }

    assert!(
        pg.can_login(&user, "old-password-dry").await,
        "the password is unchanged"
    );
    let current: Value =
        serde_json::from_str(&stack.secret_value(&arn, "AWSCURRENT").await.unwrap()).unwrap();
    assert_eq!(current["password"], "old-password-dry");
    assert!(!stack.stages(&arn).await[&token].contains(&"AWSCURRENT".to_string()));
    let pages = stack.pages().await;
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert!(
        pages[0].summary().starts_with("[dry-run] would rotate"),
        "{}",
        pages[0].summary()
    );
}

/// The crash matrix for alternating users, the zero-outage strategy: whatever
/// step is retried, AWSCURRENT logs in at every point, and so does AWSPREVIOUS
/// once there is one.
#[tokio::test]
async fn alternating_users_crash_matrix_never_loses_awscurrent() {
    let f = Fixture::new("crash_alternating", |_| json!([])).await;
    let admin = f.user("admin", "admin-password").await;
    f.pg.exec(&format!("ALTER ROLE {} CREATEROLE", ident(&admin)))
        .await;
    let master = f
        .secret("admin", &rds_secret(f.pg.port, &admin, "admin-password"))
        .await;
    for (crash_after, crashed) in STEPS.iter().enumerate() {
        let old = format!("old-password-alt-{crash_after}");
        let user = f.user(&format!("alt{crash_after}"), &old).await;
        let mut value = rds_secret(f.pg.port, &user, &old);
        value["masterarn"] = json!(master);
        // Not configured: the masterarn in the JSON selects alternating users.
        let arn = f.secret(&format!("alt-db{crash_after}"), &value).await;
        let token = f.stack.start_rotation(&arn).await;
        let mut schedule: Vec<&str> = STEPS.to_vec();
        schedule.insert(crash_after + 1, crashed);
        for step in schedule {
            f.step(step, &arn, &token)
                .await
                .unwrap_or_else(|e| panic!("crash after {crashed}: {step}: {e}"));
            assert!(
                f.logs_in(&arn, "AWSCURRENT").await,
                "crash after {crashed}: AWSCURRENT cannot log in after {step}"
            );
        }
        f.stack.end_rotation(&arn, &token).await;
        assert_eq!(
            f.creds(&arn, "AWSCURRENT").await.unwrap().0,
            format!("{user}_clone")
        );
        assert!(f.logs_in(&arn, "AWSCURRENT").await && f.logs_in(&arn, "AWSPREVIOUS").await);
    }
}

/// An alternating-users pair with an admin, as in production: the app user owns
/// its tables (its migrations made them), the admin can create roles.
struct Pair {
    user: String,
    admin: String,
    master_arn: String,
    arn: String,
}

impl Fixture {
    async fn pair(&self, tag: &str) -> Pair {
        let admin = self.user(&format!("{tag}admin"), "admin-password").await;
        self.pg
            .exec(&format!("ALTER ROLE {} CREATEROLE", ident(&admin)))
            .await;
        let user = self.user(&format!("{tag}app"), &format!("old-{tag}")).await;
        self.pg
            .exec(&format!(
                "GRANT CREATE ON SCHEMA public TO {}",
                ident(&user)
            ))
            .await;
        let master_arn = self
            .secret(
                &format!("{tag}admin"),
                &rds_secret(self.pg.port, &admin, "admin-password"),
            )
            .await;
        let mut value = rds_secret(self.pg.port, &user, &format!("old-{tag}"));
        value["masterarn"] = json!(master_arn);
        let arn = self.secret(&format!("{tag}db"), &value).await;
        Pair {
            user,
            admin,
            master_arn,
            arn,
        }
    }

    /// Starts a rotation, runs createSecret, then overwrites the pending value with
    /// `tamper` applied, as anyone allowed to put a value in the secret could.
    async fn tampered(&self, arn: &str, tamper: impl Fn(&mut Value)) -> String {
        let token = self.stack.start_rotation(arn).await;
        let mut pending: Value =
            serde_json::from_str(&self.stack.secret_value(arn, "AWSCURRENT").await.unwrap())
                .unwrap();
        pending["username"] = json!(format!("{}_clone", pending["username"].as_str().unwrap()));
        pending["password"] = json!("pending-password-1");
        tamper(&mut pending);
        self.stack
            .sm()
            .put_secret_value()
            .secret_id(arn)
            .client_request_token(&token)
            .secret_string(pending.to_string())
            .version_stages("AWSPENDING")
            .send()
            .await
            .expect("stage the pending value");
        token
    }

    async fn role_exists(&self, role: &str) -> bool {
        self.pg
            .admin()
            .await
            .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&role])
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 1
    }
}

/// A TCP listener standing in for a host an attacker controls: it counts the
/// connections it gets.
async fn decoy() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(socket);
        }
    });
    (port, hits)
}

#[tokio::test]
async fn a_tampered_pending_secret_never_gets_the_admin_credentials_used() {
    let f = Fixture::new("tampered", |_| json!([])).await;
    let p = f.pair("t").await;
    let (decoy_port, hits) = decoy().await;
    type Tamper = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "another user",
            Box::new(|v| v["username"] = json!("postgres")),
            "names user postgres",
        ),
        (
            "the user in use",
            Box::new(|v| {
                let user = v["username"]
                    .as_str()
                    .unwrap()
                    .trim_end_matches("_clone")
                    .to_string();
                v["username"] = json!(user)
            }),
            "rotates to",
        ),
        (
            "another host",
            Box::new(move |v| v["port"] = json!(decoy_port)),
            "names database 127.0.0.1",
        ),
        (
            "another database",
            Box::new(|v| v["dbname"] = json!("template1")),
            "names database name template1",
        ),
        (
            "another admin secret",
            Box::new(|v| {
                v["masterarn"] =
                    json!("arn:aws:secretsmanager:us-east-1:123456789012:secret:other-AbCdEf")
            }),
            "admin secret",
        ),
    ];
    for (what, tamper, says) in cases {
        let token = f.tampered(&p.arn, tamper).await;
        let err = f.step("setSecret", &p.arn, &token).await.unwrap_err();
        assert_eq!(
            err.code, "autopilot.RotationRefused",
            "{what}: {}",
            err.message
        );
        assert!(err.message.contains(says), "{what}: {}", err.message);
        assert!(
            !f.role_exists(&format!("{}_clone", p.user)).await,
            "{what}: no role created"
        );
        assert!(!f.role_exists("postgres_clone").await);
        f.stack.end_rotation(&p.arn, &token).await;
    }
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing reached the decoy"
    );
    let pages = f.stack.pages().await;
    assert!(pages.iter().all(|p| p.severity == "critical"), "{pages:?}");
    assert_eq!(pages.len(), 5);
}

#[tokio::test]
async fn an_app_secret_pointing_elsewhere_never_receives_the_admin_password() {
    let f = Fixture::new("confused_deputy", |_| json!([])).await;
    let p = f.pair("d").await;
    let (decoy_port, hits) = decoy().await;
    // The app secret itself (AWSCURRENT) is rewritten to name the decoy host.
    f.stack
        .edit_secret(&p.arn, |v| v["port"] = json!(decoy_port))
        .await;
    let token = f.stack.start_rotation(&p.arn).await;
    f.step("createSecret", &p.arn, &token).await.unwrap();

    let err = f.step("setSecret", &p.arn, &token).await.unwrap_err();

    assert_eq!(err.code, "autopilot.RotationRefused", "{}", err.message);
    assert!(
        err.message.contains(&format!("127.0.0.1:{decoy_port}"))
            && err.message.contains("admin password"),
        "{}",
        err.message
    );
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no connection to the decoy"
    );
    let _ = p.admin;
}

#[tokio::test]
async fn the_current_credentials_must_log_in_before_the_admin_is_used() {
    let f = Fixture::new("current_first", |_| json!([])).await;
    let p = f.pair("c").await;
    // Someone changed the user's password outside the rotation: AWSCURRENT is stale.
    f.pg.exec(&format!(
        "ALTER ROLE {} PASSWORD 'changed-by-hand'",
        ident(&p.user)
    ))
    .await;
    let token = f.stack.start_rotation(&p.arn).await;
    f.step("createSecret", &p.arn, &token).await.unwrap();

    let err = f.step("setSecret", &p.arn, &token).await.unwrap_err();

    assert_eq!(err.code, "autopilot.RotationRefused", "{}", err.message);
    assert!(err.message.contains("does not log in"), "{}", err.message);
    assert!(!f.role_exists(&format!("{}_clone", p.user)).await);
}

#[tokio::test]
async fn the_admin_connects_with_tls_unless_its_own_secret_says_otherwise() {
    let f = Fixture::new("admin_tls", |_| json!([])).await;
    let p = f.pair("s").await;
    // The admin secret asks for TLS (no sslmode); the app secret allows plaintext.
    f.stack
        .edit_secret(&p.master_arn, |v| {
            v.as_object_mut().unwrap().remove("sslmode");
        })
        .await;
    let token = f.stack.start_rotation(&p.arn).await;
    f.step("createSecret", &p.arn, &token).await.unwrap();

    let err = f.step("setSecret", &p.arn, &token).await.unwrap_err();

    assert_eq!(err.code, "autopilot.DatabaseFailed", "{}", err.message);
    assert!(
        err.message.to_lowercase().contains("tls"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains(&format!("login as {}", p.admin)),
        "names the admin user: {}",
        err.message
    );
    assert!(!f.role_exists(&format!("{}_clone", p.user)).await);
}

/// An admin secret RDS manages holds only username and password; its database
/// comes from RDS (DescribeDBInstances), and must be the app secret's. It carries
/// no `sslmode`, so the admin connects with verified TLS: the TLS-only server.
#[tokio::test]
async fn an_rds_managed_admin_secret_rotates_through_the_rds_endpoint() {
    use autopilot_tests::postgres::postgres_tls;
    let pg = postgres_tls();
    let stack = Stack::new("rds_admin").await;
    let rotator = Rotator::new(
        &stack.sdk,
        stack.rotate_config_with(&[(config::DB_CA_BUNDLE, pg.ca.clone().unwrap())]),
    )
    .unwrap();
    let f = Fixture { stack, pg, rotator };
    let admin = f.stack.name("master").replace('-', "_");
    let instance = f.stack.name("db");
    let rds = aws_sdk_rds::Client::new(&f.stack.sdk);
    let created = rds
        .create_db_instance()
        .db_instance_identifier(&instance)
        .engine("postgres")
        .db_instance_class("db.t4g.micro")
        .allocated_storage(20)
        .master_username(&admin)
        .manage_master_user_password(true)
        .send()
        .await
        .expect("create the instance");
    let master_arn = created
        .db_instance()
        .and_then(|i| i.master_user_secret())
        .and_then(|s| s.secret_arn())
        .expect("RDS made a master secret")
        .to_string();
    let master: Value = serde_json::from_str(
        &f.stack
            .secret_value(&master_arn, "AWSCURRENT")
            .await
            .unwrap(),
    )
    .unwrap();
    let mut keys: Vec<_> = master.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        vec!["password", "username"],
        "an RDS-managed secret has no host"
    );
    f.pg.exec(&format!(
        "CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}",
        ident(&admin),
        literal(master["password"].as_str().unwrap())
    ))
    .await;
    bridge(
        "/_bridge/rds/endpoint",
        json!({"instance": instance, "address": "127.0.0.1", "port": f.pg.port}),
    );
    let user = f.user("app", "old-password-rds").await;
    let mut value = rds_secret(f.pg.port, &user, "old-password-rds");
    value.as_object_mut().unwrap().remove("sslmode");
    value["masterarn"] = json!(master_arn);
    let arn = f.secret("db", &value).await;

    f.rotate(&arn).await;

    let (clone, password) = f.creds(&arn, "AWSCURRENT").await.unwrap();
    assert_eq!(clone, format!("{user}_clone"));
    assert!(f.pg.can_login(&clone, &password).await);

    // The same admin secret for an app secret that names another host is refused.
    let mut elsewhere = value.clone();
    elsewhere["host"] = json!("localhost");
    let arn = f.secret("elsewhere", &elsewhere).await;
    let token = f.stack.start_rotation(&arn).await;
    f.step("createSecret", &arn, &token).await.unwrap();
    let err = f.step("setSecret", &arn, &token).await.unwrap_err();
    assert!(
        err.message.contains("is for 127.0.0.1") && err.message.contains("localhost"),
        "{}",
        err.message
    );
}

/// The CA is trusted, but the host name (127.0.0.2) is not in the server's
/// certificate: refused, never downgraded.
#[tokio::test]
async fn a_certificate_for_another_host_name_is_refused() {
    use autopilot_tests::postgres::postgres_tls;
    let pg = postgres_tls();
    let stack = Stack::new("tls_name").await;
    let rotator = Rotator::new(
        &stack.sdk,
        stack.rotate_config_with(&[(config::DB_CA_BUNDLE, pg.ca.clone().unwrap())]),
    )
    .unwrap();
    let f = Fixture { stack, pg, rotator };
    let user = f.user("app", "old-password-name").await;
    let mut value = rds_secret(f.pg.port, &user, "old-password-name");
    value.as_object_mut().unwrap().remove("sslmode");
    value["host"] = json!("127.0.0.2");
    let arn = f.secret("db", &value).await;
    let token = f.stack.start_rotation(&arn).await;
    f.step("createSecret", &arn, &token).await.unwrap();

    let err = f.step("setSecret", &arn, &token).await.unwrap_err();

    assert_eq!(err.code, "autopilot.DatabaseFailed", "{}", err.message);
    let text = err.message.to_lowercase();
    assert!(
        text.contains("certificate") && text.contains("not valid for name"),
        "{}",
        err.message
    );
    assert!(f.pg.can_login(&user, "old-password-name").await);
}

/// Tables created by the app user itself (as migrations do), over two rotations,
/// so both users have been current: each can read and write everything.
#[tokio::test]
async fn the_alternating_pair_shares_what_either_user_creates() {
    let f = Fixture::new("owners", |_| json!([])).await;
    let p = f.pair("o").await;
    let clone = format!("{}_clone", p.user);
    let (schema_table, clone_table) = (format!("{}_orders", p.user), format!("{}_items", p.user));
    f.pg.login(&p.user, "old-o")
        .await
        .unwrap()
        // A serial column: the table comes with a sequence the pair owns too.
        .batch_execute(&format!(
            "CREATE TABLE {} (id serial)",
            ident(&schema_table)
        ))
        .await
        .unwrap();

    f.rotate(&p.arn).await;
    let (user, password) = f.creds(&p.arn, "AWSCURRENT").await.unwrap();
    assert_eq!(user, clone);
    let c = f.pg.login(&clone, &password).await.unwrap();
    c.batch_execute(&format!(
        "INSERT INTO {t} VALUES (1); UPDATE {t} SET id = 2; CREATE TABLE {n} (id int); INSERT INTO {n} VALUES (1)",
        t = ident(&schema_table),
        n = ident(&clone_table)
    ))
    .await
    .expect("the clone uses the app's table and migrates");

    f.rotate(&p.arn).await;
    let (user, password) = f.creds(&p.arn, "AWSCURRENT").await.unwrap();
    assert_eq!(user, p.user);
    let a = f.pg.login(&p.user, &password).await.unwrap();
    a.batch_execute(&format!(
        "INSERT INTO {t} VALUES (3); DELETE FROM {n}; SELECT * FROM {t}",
        t = ident(&schema_table),
        n = ident(&clone_table)
    ))
    .await
    .expect("the app uses what the clone created");
    let (_, previous) = f.creds(&p.arn, "AWSPREVIOUS").await.unwrap();
    f.pg.login(&clone, &previous)
        .await
        .unwrap()
        .batch_execute(&format!("INSERT INTO {} VALUES (4)", ident(&clone_table)))
        .await
        .expect("AWSPREVIOUS still works");
}

/// testSecret proves the pending user can use what the pair owns; a pair whose
/// ownership is split (a clone from an older rotator that owns its own table) is
/// refused there, before AWSCURRENT moves, naming the table.
#[tokio::test]
async fn test_secret_refuses_a_user_that_cannot_use_what_the_pair_owns() {
    let f = Fixture::new("split_owner", |_| json!([])).await;
    let p = f.pair("x").await;
    let clone = format!("{}_clone", p.user);
    let table = format!("{}_legacy", p.user);
    f.pg.exec(&format!(
        "CREATE ROLE {c} LOGIN PASSWORD 'legacy-clone'; GRANT CREATE ON SCHEMA public TO {c}",
        c = ident(&clone)
    ))
    .await;
    f.pg.login(&clone, "legacy-clone")
        .await
        .unwrap()
        .batch_execute(&format!("CREATE TABLE {} (id int)", ident(&table)))
        .await
        .unwrap();
    let token = f.stack.start_rotation(&p.arn).await;
    for step in ["createSecret", "setSecret"] {
        f.step(step, &p.arn, &token).await.unwrap();
    }

    let err = f.step("testSecret", &p.arn, &token).await.unwrap_err();

    assert_eq!(err.code, "autopilot.RotationRefused", "{}", err.message);
    assert!(
        err.message
            .contains(&format!("public.{table} (owned by {clone})"))
            && err.message.contains("INSERT"),
        "{}",
        err.message
    );
    assert_eq!(f.creds(&p.arn, "AWSCURRENT").await.unwrap().0, p.user);
}

#[tokio::test]
async fn finish_secret_promotes_only_credentials_that_log_in() {
    let f = Fixture::new("finish_gate", |s| single_user(s, "db")).await;
    let user = f.user("app", "old-password-fg").await;
    let arn = f
        .secret("db", &rds_secret(f.pg.port, &user, "old-password-fg"))
        .await;
    let token = f.stack.start_rotation(&arn).await;
    f.step("createSecret", &arn, &token).await.unwrap();

    // A manual or replayed finishSecret before setSecret made the password work.
    let err = f.step("finishSecret", &arn, &token).await.unwrap_err();

    assert_eq!(err.code, "autopilot.RotationRefused", "{}", err.message);
    assert!(err.message.contains("do not log in"), "{}", err.message);
    assert_eq!(
        f.creds(&arn, "AWSCURRENT").await.unwrap().1,
        "old-password-fg"
    );
    assert!(f.logs_in(&arn, "AWSCURRENT").await);
    let pages = f.stack.pages().await;
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].severity, "critical");
    assert!(!format!("{pages:?}").contains("old-password-fg"));
}

/// A dependent write fails after AWSCURRENT moved. Secrets Manager may never call
/// finishSecret again; the scheduled follow-up check (the template's schedule)
/// finds the owed work and finishes it.
#[tokio::test]
async fn a_follow_up_that_failed_after_the_label_moved_converges() {
    let f = Fixture::new("followup", |s| {
        json!([{"secret": s.name("db"), "strategy": "postgres-single-user",
                "dependents": [{"secret": s.name("db-url"), "format": "url"}],
                "consumers": [{"cluster": s.name("prod"), "service": "backend"}]}])
    })
    .await;
    let user = f.user("app", "old-password-fu").await;
    let arn = f
        .secret("db", &rds_secret(f.pg.port, &user, "old-password-fu"))
        .await;
    let url = f
        .stack
        .create_secret("db-url", "postgresql://x:y@127.0.0.1:1/postgres")
        .await;
    let repo = f.stack.repository("backend").await;
    let cluster = f.stack.cluster("prod").await;
    let td = f
        .stack
        .task_definition(&f.stack.name("backend"), "app", &f.stack.image(&repo, "v1"))
        .await;
    f.stack
        .service(&cluster, "backend", td.task_definition_arn().unwrap())
        .await;
    let deployments = || async {
        f.stack
            .describe_service(&cluster, "backend")
            .await
            .deployments()
            .len()
    };
    let before = deployments().await;
    let token = f.stack.start_rotation(&arn).await;
    for step in ["createSecret", "setSecret", "testSecret"] {
        f.step(step, &arn, &token).await.unwrap();
    }
    f.stack.fail_matching(
        "PutSecretValue",
        MAX_ATTEMPTS,
        "InternalServiceError",
        &f.stack.name("db-url"),
    );

    assert!(f.step("finishSecret", &arn, &token).await.is_err());
    let (_, password) = f.creds(&arn, "AWSCURRENT").await.unwrap();
    assert!(
        f.pg.can_login(&user, &password).await,
        "AWSCURRENT moved and works"
    );
    assert!(!f
        .stack
        .secret_value(&url, "AWSCURRENT")
        .await
        .unwrap()
        .contains(&password));
    assert!(f.stack.stages(&arn).await[&token].contains(&"AUTOPILOT_FOLLOWUP_PENDING".to_string()));
    assert_eq!(deployments().await, before);
    // The rotation failed, so Secrets Manager leaves AWSPENDING where it is (on the
    // version that is now also AWSCURRENT) and does not call finishSecret again.
    f.stack.pages().await;

    // Scheduler's time format; the check leaves a secret changed in the last two minutes alone.
    let schedule = |minutes: i64| {
        let time = (chrono::Utc::now() + chrono::Duration::minutes(minutes))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        template::scheduled_event("RotateFunction", "FollowUpCheck", &time)
    };
    let report = f
        .rotator
        .handle(LambdaEvent::new(schedule(0), Context::default()))
        .await
        .unwrap();
    assert_eq!(report.actions(), vec!["skip"], "just changed: {report:?}");
    let report = f
        .rotator
        .handle(LambdaEvent::new(schedule(15), Context::default()))
        .await
        .unwrap();

    assert_eq!(report.actions(), vec!["finish"], "{report:?}");
    assert!(f
        .stack
        .secret_value(&url, "AWSCURRENT")
        .await
        .unwrap()
        .contains(&password));
    assert_eq!(deployments().await, before + 1);
    assert!(!f.stack.stages(&arn).await[&token].contains(&"AUTOPILOT_FOLLOWUP_PENDING".to_string()));
    let pages = f.stack.pages().await;
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].action(), "resolve");

    // Nothing is owed any more: the next check does nothing.
    let report = f
        .rotator
        .handle(LambdaEvent::new(schedule(30), Context::default()))
        .await
        .unwrap();
    assert_eq!(report.actions(), vec!["skip"]);
    assert_eq!(deployments().await, before + 1);
}

/// A step fails after the secrets were read, with an AWS error that echoes a
/// value (validation errors quote their input). The value is scrubbed from the
/// error, the logs and the page; names (secret, user, host) stay.
#[tokio::test]
async fn a_failure_after_the_secrets_were_read_scrubs_values_not_names() {
    let f = Fixture::new("scrub", |s| single_user(s, "db")).await;
    let old = "old-password-echoed-9f3c";
    let user = f.user("app", old).await;
    let arn = f.secret("db", &rds_secret(f.pg.port, &user, old)).await;
    let token = f.stack.start_rotation(&arn).await;
    bridge(
        "/_bridge/fault",
        json!({"operation": "PutSecretValue", "count": 1, "match": f.stack.prefix, "status": 400,
               "code": "ValidationException",
               "message": format!("1 validation error detected: Value '{{\"password\":\"{old}\",\"username\":\"{user}\"}}' at 'secretString' failed to satisfy constraint")}),
    );

    let (result, logs) = logs::capture(f.step("createSecret", &arn, &token)).await;

    let err = result.unwrap_err();
    assert!(!err.message.contains(old), "{}", err.message);
    assert!(err.message.contains("***"), "{}", err.message);
    assert!(!logs.text().contains(old), "a value reached the logs");
    let pages = f.stack.pages().await;
    assert!(
        !format!("{pages:?}").contains(old),
        "a value reached a page"
    );
    let error = pages[0].detail("Error").as_str().unwrap();
    assert!(error.contains(&user), "the user's name stays: {error}");
}

#[tokio::test]
async fn a_refused_login_names_the_user_and_the_host() {
    let f = Fixture::new("names_kept", |s| single_user(s, "db")).await;
    let user = f.user("app", "old-password-nk").await;
    let mut value = rds_secret(f.pg.port, &user, "old-password-nk");
    value.as_object_mut().unwrap().remove("sslmode");
    let arn = f.secret("db", &value).await;
    let token = f.stack.start_rotation(&arn).await;
    f.step("createSecret", &arn, &token).await.unwrap();
    f.step("setSecret", &arn, &token).await.unwrap_err();

    let pages = f.stack.pages().await;
    let error = pages[0].detail("Error").as_str().unwrap();
    assert!(
        error.contains(&format!("login as {user} on 127.0.0.1:{}", f.pg.port)),
        "{error}"
    );
}

/// The app user owns its database and can set what sessions there run with. A
/// search_path that puts its own `pg_roles` before the catalog must not run its
/// code with the admin's rights: the admin logs in to its own database, with
/// search_path and string quoting fixed at connect.
#[tokio::test]
async fn an_app_user_cannot_hijack_the_admin_through_its_own_database() {
    let f = Fixture::new("hijack", |_| json!([])).await;
    let p = f.pair("h").await;
    let db = format!("{}_db", p.user);
    f.pg.exec(&format!(
        "CREATE DATABASE {} OWNER {}",
        ident(&db),
        ident(&p.user)
    ))
    .await;
    let app = f.pg.login_to(&db, &p.user, "old-h").await.unwrap();
    app.batch_execute(&format!(
        "CREATE SCHEMA evil;
         CREATE FUNCTION evil.escalate() RETURNS boolean LANGUAGE plpgsql AS $f$
           BEGIN EXECUTE format('ALTER ROLE %I CREATEROLE', {user}); RETURN true; END $f$;
         CREATE VIEW evil.pg_roles AS SELECT * FROM pg_catalog.pg_roles WHERE evil.escalate();
         ALTER DATABASE {db} SET search_path = evil, pg_catalog",
        user = literal(&p.user),
        db = ident(&db),
    ))
    .await
    .unwrap();
    f.stack
        .edit_secret(&p.arn, |v| v["dbname"] = json!(db))
        .await;

    f.rotate(&p.arn).await;

    let escalated: bool =
        f.pg.admin()
            .await
            .query_one(
                "SELECT rolcreaterole FROM pg_roles WHERE rolname = $1",
                &[&p.user],
            )
            .await
            .unwrap()
            .get(0);
    assert!(
        !escalated,
        "the app user's code ran with the admin's rights"
    );
    assert!(f.logs_in(&p.arn, "AWSCURRENT").await);
}

/// setSecret and testSecret read the token's version under AWSPENDING in one
/// call, which Secrets Manager refuses unless that version holds AWSPENDING. A
/// refused read falls back to the preflight, which names the reason: a token that
/// is not pending is refused as before, and one not yet created has no value.
#[tokio::test]
async fn set_and_test_refuse_a_token_that_is_not_pending_and_name_why() {
    let f = Fixture::new("not_pending", |s| single_user(s, "db")).await;
    let user = f.user("app", "old-password-np").await;
    let arn = f
        .secret("db", &rds_secret(f.pg.port, &user, "old-password-np"))
        .await;
    let token = f.stack.start_rotation(&arn).await;

    // Before createSecret the version has no value.
    let err = f.step("setSecret", &arn, &token).await.unwrap_err();
    assert_eq!(err.code, "autopilot.RotationRefused", "{}", err.message);
    assert!(
        err.message.contains("has no AWSPENDING value"),
        "{}",
        err.message
    );

    // A new rotation moves AWSPENDING to its own version: the emulator then
    // refuses the read of this token's version under AWSPENDING, as AWS does.
    f.step("createSecret", &arn, &token).await.unwrap();
    let other = f.stack.start_rotation(&arn).await;
    let stages = f.stack.stages(&arn).await;
    assert!(
        stages[&other].contains(&"AWSPENDING".to_string())
            && !stages[&token].contains(&"AWSPENDING".to_string()),
        "{stages:?}"
    );
    let read = f
        .stack
        .sm()
        .get_secret_value()
        .secret_id(&arn)
        .version_id(&token)
        .version_stage("AWSPENDING")
        .send()
        .await
        .unwrap_err();
    assert!(
        read.as_service_error()
            .is_some_and(|e| e.is_invalid_request_exception()),
        "{read:?}"
    );
    for step in ["setSecret", "testSecret"] {
        let err = f.step(step, &arn, &token).await.unwrap_err();
        assert_eq!(err.code, "autopilot.RotationRefused", "{}", err.message);
        assert!(
            err.message
                .contains(&format!("is not AWSPENDING (version {other} is)")),
            "{step}: {}",
            err.message
        );
    }
    assert!(
        f.pg.can_login(&user, "old-password-np").await,
        "nothing changed on the server"
    );
}

/// After a successful rotation AWSPENDING may stay on the new AWSCURRENT version
/// (RotateSecret API reference). A setSecret or testSecret replayed then does
/// nothing, as the preflight says, rather than checking the current value as a
/// pending one (which, for alternating users, would be refused as tampered).
#[tokio::test]
async fn a_step_replayed_on_the_finished_version_does_nothing() {
    let f = Fixture::new("replayed", |_| json!([])).await;
    let p = f.pair("r").await;
    let token = f.stack.start_rotation(&p.arn).await;
    for step in STEPS {
        f.step(step, &p.arn, &token).await.unwrap();
    }
    let stages = f.stack.stages(&p.arn).await;
    assert!(
        stages[&token].contains(&"AWSPENDING".to_string())
            && stages[&token].contains(&"AWSCURRENT".to_string()),
        "{stages:?}"
    );
    f.stack.pages().await;

    for step in STEPS {
        let report = f.step(step, &p.arn, &token).await.unwrap();
        assert_eq!(report.actions(), vec!["skip"], "{step}: {report:?}");
    }
    assert!(f.stack.pages().await.is_empty());
    assert!(f.logs_in(&p.arn, "AWSCURRENT").await);
}

/// On a warm sandbox finishSecret takes the pending value createSecret wrote
/// instead of reading it again. It still logs in with it before promoting it, and
/// it is still scrubbed from errors, logs and pages.
#[tokio::test]
async fn finish_secret_on_a_warm_sandbox_uses_the_value_it_wrote_and_scrubs_it() {
    let f = Fixture::new("warm_finish", |s| single_user(s, "db")).await;
    let user = f.user("app", "old-password-wf").await;
    let arn = f
        .secret("db", &rds_secret(f.pg.port, &user, "old-password-wf"))
        .await;
    let token = f.stack.start_rotation(&arn).await;
    for step in ["createSecret", "setSecret", "testSecret"] {
        f.step(step, &arn, &token).await.unwrap();
    }
    let (_, pending) = f.creds(&arn, "AWSPENDING").await.unwrap();
    bridge(
        "/_bridge/fault",
        json!({"operation": "UpdateSecretVersionStage", "count": 1, "match": f.stack.prefix,
               "status": 400, "code": "ValidationException",
               "message": format!("1 validation error detected: Value '{pending}' failed to satisfy constraint")}),
    );
    let before = f.stack.calls().len();

    let (result, logs) = logs::capture(f.step("finishSecret", &arn, &token)).await;

    let err = result.unwrap_err();
    let calls = f.stack.calls()[before..].to_vec();
    assert!(
        !calls.contains(&"GetSecretValue".to_string()),
        "the pending value was read again: {calls:?}"
    );
    assert!(!err.message.contains(&pending), "{}", err.message);
    assert!(err.message.contains("***"), "{}", err.message);
    assert!(!logs.text().contains(&pending), "a value reached the logs");
    let pages = f.stack.pages().await;
    assert!(
        !format!("{pages:?}").contains(&pending),
        "a value reached a page"
    );

    f.step("finishSecret", &arn, &token).await.unwrap();
    assert_eq!(f.creds(&arn, "AWSCURRENT").await.unwrap().1, pending);
    assert!(f.logs_in(&arn, "AWSCURRENT").await);
}

/// setSecret no longer asks DescribeSecret before its read; when that read fails,
/// the page still names the secret by its name (from the ARN), so its incident is
/// the one the rotation's success resolves.
#[tokio::test]
async fn a_set_secret_failing_at_its_first_read_pages_the_incident_success_resolves() {
    let f = Fixture::new("first_read", |s| single_user(s, "db")).await;
    let user = f.user("app", "old-password-fr").await;
    let arn = f
        .secret("db", &rds_secret(f.pg.port, &user, "old-password-fr"))
        .await;
    let token = f.stack.start_rotation(&arn).await;
    f.step("createSecret", &arn, &token).await.unwrap();
    f.stack
        .fail_next("GetSecretValue", MAX_ATTEMPTS, "InternalServiceError");

    let err = f.step("setSecret", &arn, &token).await.unwrap_err();

    assert_eq!(err.code, "autopilot.AwsCallFailed", "{}", err.message);
    for step in ["setSecret", "testSecret", "finishSecret"] {
        f.step(step, &arn, &token).await.unwrap();
    }
    let pages = f.stack.pages().await;
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert_eq!(pages[0].severity, "critical");
    assert_eq!(pages[0].detail("Secret"), &json!(f.stack.name("db")));
    assert_eq!(pages[1].action(), "resolve");
    assert_eq!(pages[1].dedup_key(), pages[0].dedup_key());
}
