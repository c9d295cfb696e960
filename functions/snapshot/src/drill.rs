//! The restore drill's check: log in to the restored copy over verified TLS
//! with a user and password from Secrets Manager, and run the configured
//! read-only query.
//!
//! The host is the restored instance's endpoint as RDS reports it, never the
//! secret's `host` (that is the production database). The secret's AWSCURRENT
//! password is tried first; if a rotation happened after the backup was taken,
//! the backup still holds the AWSPREVIOUS one, so that is tried next.

use crate::config::Drill;
use crate::model::DrillInstance;
use autopilot_shared::postgres::Tls;
use serde::Deserialize;
use std::time::Duration;
use tokio_postgres::config::SslMode;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The check query may run at most this long.
const STATEMENT_TIMEOUT: &str = "60s";
/// SQLSTATE invalid_password: the only login failure worth a second password.
const INVALID_PASSWORD: &str = "28P01";

/// The parts of a database secret the drill uses.
#[derive(Deserialize)]
pub struct Login {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub dbname: Option<String>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Login {{ username: {:?}, password: <redacted> }}",
            self.username
        )
    }
}

/// Reads the drill's secret at `stage`; `None` when that stage does not exist.
pub async fn login(
    sm: &aws_sdk_secretsmanager::Client,
    secret: &str,
    stage: &str,
) -> Result<Option<Login>, String> {
    let out = match sm
        .get_secret_value()
        .secret_id(secret)
        .version_stage(stage)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception())
                && stage != "AWSCURRENT" =>
        {
            return Ok(None)
        }
        Err(e) => {
            return Err(format!(
                "GetSecretValue on {secret} ({stage}) failed: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            ))
        }
    };
    let text = out
        .secret_string()
        .ok_or_else(|| format!("secret {secret} ({stage}) holds no string"))?;
    // The serde error would quote the input; say only which field is wrong.
    serde_json::from_str::<Login>(text).map(Some).map_err(|e| {
        format!(
            "secret {secret} ({stage}) is not JSON with username and password (line {}, column {})",
            e.line(),
            e.column()
        )
    })
}

/// Logs in to the drill instance and runs the check: the number it returned.
pub async fn check(
    sm: &aws_sdk_secretsmanager::Client,
    tls: &Tls,
    drill: &Drill,
    instance: &DrillInstance,
) -> Result<i64, String> {
    let (host, port) = instance
        .endpoint
        .clone()
        .ok_or_else(|| format!("{} has no endpoint yet", instance.id))?;
    let current = login(sm, &drill.secret, "AWSCURRENT")
        .await?
        .ok_or_else(|| format!("secret {} has no AWSCURRENT version", drill.secret))?;
    match run(&host, port, &current, drill, tls).await {
        Err(Failure::BadPassword(first)) => {
            let Some(previous) = login(sm, &drill.secret, "AWSPREVIOUS").await? else {
                return Err(first);
            };
            run(&host, port, &previous, drill, tls)
                .await
                .map_err(|e| match e {
                    Failure::BadPassword(m) | Failure::Other(m) => {
                        format!("{m} (AWSCURRENT was refused too: {first})")
                    }
                })
        }
        Err(Failure::Other(m)) => Err(m),
        Ok(n) => Ok(n),
    }
}

enum Failure {
    BadPassword(String),
    Other(String),
}

fn describe(action: &str, host: &str, e: &tokio_postgres::Error) -> Failure {
    let text = match e.as_db_error() {
        Some(db) => format!(
            "{action} on {host} failed: {}: {}",
            db.code().code(),
            db.message()
        ),
        None => {
            let mut text = format!("{action} on {host} failed: {e}");
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
    };
    if e.as_db_error()
        .is_some_and(|d| d.code().code() == INVALID_PASSWORD)
    {
        Failure::BadPassword(text)
    } else {
        Failure::Other(text)
    }
}

async fn run(
    host: &str,
    port: u16,
    login: &Login,
    drill: &Drill,
    tls: &Tls,
) -> Result<i64, Failure> {
    let database = drill
        .database
        .clone()
        .or_else(|| login.dbname.clone())
        .unwrap_or_else(|| "postgres".into());
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port)
        .user(&login.username)
        .password(&login.password)
        .dbname(&database)
        .application_name("autopilot-snapshot-drill")
        .connect_timeout(CONNECT_TIMEOUT)
        // Verified TLS, no fallback: rustls checks the chain and the host name.
        .ssl_mode(SslMode::Require);
    let endpoint = format!("{host}:{port}");
    let action = format!("login as {} to {database}", login.username);
    let (client, connection) = config
        .connect(tls.connector())
        .await
        .map_err(|e| describe(&action, &endpoint, &e))?;
    tokio::spawn(connection);
    let query = format!("run the check `{}`", drill.query);
    client
        .batch_execute(&format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'"
        ))
        .await
        .map_err(|e| describe(&query, &endpoint, &e))?;
    // The extended protocol takes one statement: the check cannot smuggle a second.
    let row = client
        .query_one(drill.query.as_str(), &[])
        .await
        .map_err(|e| describe(&query, &endpoint, &e))?;
    let value = row
        .try_get::<_, i64>(0)
        .or_else(|_| row.try_get::<_, i32>(0).map(i64::from))
        .map_err(|e| {
            Failure::Other(format!(
                "{query}: the first column is not a whole number: {e}"
            ))
        })?;
    let _ = client.batch_execute("ROLLBACK").await;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_never_prints_its_password() {
        let l: Login =
            serde_json::from_str(r#"{"username":"app","password":"hunter2-secret"}"#).unwrap();
        assert!(!format!("{l:?}").contains("hunter2"));
    }
}
