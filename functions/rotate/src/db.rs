//! PostgreSQL: connecting (verified TLS unless a secret says `sslmode: disable`),
//! setting passwords, linking the two users of an alternating pair, and proving
//! a user can use what the pair owns.
//!
//! Passwords are sent as SCRAM-SHA-256 verifiers computed here, never as
//! plaintext, so they cannot surface in the server's statement logs.

use crate::secret::DbSecret;
use crate::sql::{quote_ident, quote_literal};
pub use autopilot_shared::postgres::Tls;
use std::time::Duration;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Session settings every connection starts with, whatever the database and role set.
const SESSION_OPTIONS: &str = "-c search_path=pg_catalog,pg_temp -c standard_conforming_strings=on";

/// A database operation failed. The message carries the server's words, which
/// name users and objects but never a password (none is ever sent in clear).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{action} on {host} failed: {message}")]
pub struct DbError {
    pub action: String,
    pub host: String,
    pub message: String,
}

fn db_error(action: &str, host: &str, e: &tokio_postgres::Error) -> DbError {
    let message = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
    };
    DbError {
        action: action.to_string(),
        host: host.to_string(),
        message,
    }
}

/// Logs in as `user` with `password` to the database `secret` describes.
pub async fn connect(
    secret: &DbSecret,
    user: &str,
    password: &str,
    tls: &Tls,
) -> Result<Client, DbError> {
    let host = format!("{}:{}", secret.host, secret.port);
    let action = format!("login as {user}");
    let plaintext = secret.plaintext_allowed().map_err(|message| DbError {
        action: action.clone(),
        host: host.clone(),
        message,
    })?;
    let mut config = tokio_postgres::Config::new();
    config
        .host(&secret.host)
        .port(secret.port)
        .user(user)
        .password(password)
        .dbname(secret.dbname())
        .application_name("autopilot-rotate")
        // Set at connect, these override what the database or role sets: a
        // search_path an app user chose cannot put its objects before the catalog
        // for statements run with the admin's rights, and literals are quoted as
        // `quote_literal` expects.
        .options(SESSION_OPTIONS)
        .connect_timeout(CONNECT_TIMEOUT);
    let client = if plaintext {
        config.ssl_mode(SslMode::Disable);
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| db_error(&action, &host, &e))?;
        tokio::spawn(connection);
        client
    } else {
        // Require: no fallback to plaintext. rustls verifies the chain and the host name.
        config.ssl_mode(SslMode::Require);
        let make = tls.connector();
        let (client, connection) = config
            .connect(make)
            .await
            .map_err(|e| db_error(&action, &host, &e))?;
        tokio::spawn(connection);
        client
    };
    Ok(client)
}

/// Logs in with the secret's own user and password and runs a query.
pub async fn check_login(secret: &DbSecret, tls: &Tls) -> Result<(), DbError> {
    let client = connect(secret, &secret.username, &secret.password, tls).await?;
    client
        .simple_query("SELECT 1")
        .await
        .map_err(|e| db_error(&format!("query as {}", secret.username), &secret.host, &e))?;
    Ok(())
}

/// Sets `user`'s password, sent as a SCRAM-SHA-256 verifier.
pub async fn set_password(
    client: &Client,
    host: &str,
    user: &str,
    password: &str,
) -> Result<(), DbError> {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let statement = format!(
        "ALTER ROLE {} WITH PASSWORD {}",
        quote_ident(user),
        quote_literal(&verifier)
    );
    client
        .batch_execute(&statement)
        .await
        .map_err(|e| db_error(&format!("set the password of {user}"), host, &e))
}

/// Creates `user` as a login role if it does not exist yet.
pub async fn ensure_login_role(client: &Client, host: &str, user: &str) -> Result<bool, DbError> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&user],
        )
        .await
        .map_err(|e| db_error(&format!("look up role {user}"), host, &e))?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE ROLE {} WITH LOGIN", quote_ident(user)))
            .await
            .map_err(|e| db_error(&format!("create role {user}"), host, &e))?;
    }
    Ok(!exists)
}

/// How the two users of an alternating pair were linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The pending user was made a member of the current one, acting as it.
    ActsAs,
    /// The pending user is the one the other acts as: it acts as itself.
    Owner,
}

/// Makes `pending` able to do everything `current` does, whoever owns the objects,
/// touching only `pending` (the user in use is never changed).
///
/// PostgreSQL refuses circular membership, so the two users cannot each be a
/// member of the other. Instead one user of the pair is the owner identity and the
/// other acts as it: it is a member of the owner (`GRANT owner TO other`, as the
/// AWS sample grants) and its sessions run as the owner (`ALTER ROLE other SET
/// role = owner`). So it holds the owner's rights, an owner's implicit ones
/// included, and whatever its migrations create belongs to the owner, and to both.
///
/// If `current` already acts as `pending`, `pending` is the owner: it acts as
/// itself. Otherwise `pending` becomes a member of `current` and acts as it.
pub async fn link_pair(
    client: &Client,
    host: &str,
    current: &str,
    pending: &str,
) -> Result<Link, DbError> {
    let member_of = |role: &str, member: &str| {
        let (role, member) = (role.to_string(), member.to_string());
        async move {
            client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m \
                       JOIN pg_catalog.pg_roles r ON r.oid = m.roleid \
                       JOIN pg_catalog.pg_roles u ON u.oid = m.member \
                      WHERE r.rolname = $1 AND u.rolname = $2)",
                    &[&role, &member],
                )
                .await
                .map(|row| row.get::<_, bool>(0))
                .map_err(|e| db_error(&format!("read the memberships of {member}"), host, &e))
        }
    };
    if member_of(pending, current).await? {
        client
            .batch_execute(&format!("ALTER ROLE {} RESET role", quote_ident(pending)))
            .await
            .map_err(|e| db_error(&format!("let {pending} act as itself"), host, &e))?;
        return Ok(Link::Owner);
    }
    // PostgreSQL 16 gives a membership INHERIT and SET options; one without SET
    // would make the login-time `SET role` fail. There the grant is always made,
    // with both, which also mends an existing grant; before 16 both are implied.
    let version: i32 = client
        .query_one(
            "SELECT pg_catalog.current_setting('server_version_num')::int",
            &[],
        )
        .await
        .map(|row| row.get(0))
        .map_err(|e| db_error("read the server version", host, &e))?;
    let mut statements = Vec::new();
    if version >= 160_000 {
        statements.push(format!(
            "GRANT {} TO {} WITH INHERIT TRUE, SET TRUE",
            quote_ident(current),
            quote_ident(pending)
        ));
    } else if !member_of(current, pending).await? {
        statements.push(format!(
            "GRANT {} TO {}",
            quote_ident(current),
            quote_ident(pending)
        ));
    }
    statements.push(format!(
        "ALTER ROLE {} SET role = {}",
        quote_ident(pending),
        quote_literal(current)
    ));
    client
        .batch_execute(&statements.join(";\n"))
        .await
        .map_err(|e| db_error(&format!("let {pending} act as {current}"), host, &e))?;
    Ok(Link::ActsAs)
}

/// What the logged-in session cannot do to objects the given users own: read and
/// write their tables, read their views and sequences, use their schemas. Empty
/// when it can do everything, e.g. `public.orders (owned by app): INSERT`.
const MISSING_ACCESS: &str = "
SELECT format('%s (owned by %s): %s', object, owner, string_agg(privilege, ', ' ORDER BY privilege))
  FROM (
    SELECT format('%I.%I', n.nspname, c.relname) AS object, r.rolname AS owner, p.privilege
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
      CROSS JOIN LATERAL unnest(CASE c.relkind
          WHEN 'S' THEN ARRAY['USAGE']
          WHEN 'v' THEN ARRAY['SELECT'] WHEN 'm' THEN ARRAY['SELECT']
          ELSE ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'] END) AS p(privilege)
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND r.rolname = ANY($1)
       AND NOT CASE c.relkind
             WHEN 'S' THEN pg_catalog.has_sequence_privilege(current_user, c.oid, p.privilege)
             ELSE pg_catalog.has_table_privilege(current_user, c.oid, p.privilege) END
    UNION ALL
    SELECT format('schema %I', n.nspname), r.rolname, 'USAGE'
      FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
     WHERE r.rolname = ANY($1) AND NOT pg_catalog.has_schema_privilege(current_user, n.oid, 'USAGE')
  ) missing
 GROUP BY object, owner ORDER BY object LIMIT 20";

/// Logs in with the secret's own user and proves it can use what `owners` own:
/// read and write their tables, not only `SELECT 1`.
pub async fn check_access(
    secret: &DbSecret,
    owners: &[&str],
    tls: &Tls,
) -> Result<Vec<String>, DbError> {
    let client = connect(secret, &secret.username, &secret.password, tls).await?;
    let owners: Vec<String> = owners.iter().map(|o| o.to_string()).collect();
    let rows = client
        .query(MISSING_ACCESS, &[&owners])
        .await
        .map_err(|e| {
            db_error(
                &format!("check the privileges of {}", secret.username),
                &secret.host,
                &e,
            )
        })?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}
