//! PostgreSQL: connecting (verified TLS unless a secret says `sslmode: disable`),
//! setting passwords, and keeping a clone user's privileges equal to the original's.
//!
//! Passwords are sent as SCRAM-SHA-256 verifiers computed here, never as
//! plaintext, so they cannot surface in the server's statement logs.

use crate::secret::DbSecret;
use crate::sql::{quote_ident, quote_literal};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Trust roots for database TLS, loaded once per cold start.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// The CA bundle at `path` (for RDS: the global bundle), or the system trust store.
    pub fn load(path: Option<&str>) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        match path {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("CA bundle {path}: {e}"))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("CA bundle {path}: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("CA bundle {path}: {e}"))?;
                }
                if roots.is_empty() {
                    return Err(format!("CA bundle {path} holds no certificate"));
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
        })
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
        let make = tokio_postgres_rustls::MakeRustlsConnect::new((*tls.config).clone());
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
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&user])
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

/// Privileges that can appear in an ACL; anything else read back is refused, not spliced into SQL.
const PRIVILEGES: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
    "USAGE",
    "CREATE",
    "CONNECT",
    "TEMPORARY",
    "EXECUTE",
    "MAINTAIN",
];

/// Every role membership and object privilege granted directly to a role, with
/// object names quoted by the server (`format('%I')`, `regprocedure`).
const GRANTS: &str = "
SELECT kind, object, privilege FROM (
  SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind,
         format('%I.%I', n.nspname, c.relname) AS object, a.privilege_type AS privilege, a.grantee
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
   WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p', 'S')
  UNION ALL
  SELECT 'SCHEMA', format('%I', n.nspname), a.privilege_type, a.grantee
    FROM pg_namespace n, aclexplode(n.nspacl) a
  UNION ALL
  SELECT 'DATABASE', format('%I', d.datname), a.privilege_type, a.grantee
    FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = current_database()
  UNION ALL
  SELECT 'ROUTINE', p.oid::regprocedure::text, a.privilege_type, a.grantee
    FROM pg_proc p, aclexplode(p.proacl) a
  UNION ALL
  SELECT 'ROLE', format('%I', r.rolname), 'MEMBER', m.member
    FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
) g WHERE g.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1)";

type Grant = (String, String, String);

async fn grants(client: &Client, host: &str, role: &str) -> Result<BTreeSet<Grant>, DbError> {
    let rows = client
        .query(GRANTS, &[&role])
        .await
        .map_err(|e| db_error(&format!("read the privileges of {role}"), host, &e))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
            )
        })
        .collect())
}

/// What changed when `clone` was made equal to `original`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sync {
    pub granted: usize,
    pub revoked: usize,
}

/// Makes `clone`'s memberships and direct object privileges equal to `original`'s:
/// grants what is missing and revokes what the original no longer has, so the two
/// users never drift apart between rotations.
pub async fn sync_privileges(
    client: &Client,
    host: &str,
    original: &str,
    clone: &str,
) -> Result<Sync, DbError> {
    let want = grants(client, host, original).await?;
    let have = grants(client, host, clone).await?;
    let target = quote_ident(clone);
    let mut statements = Vec::new();
    for (kind, object, privilege) in want.difference(&have) {
        statements.push(grant_sql("GRANT", kind, object, privilege, &target, "TO")?);
    }
    for (kind, object, privilege) in have.difference(&want) {
        statements.push(grant_sql(
            "REVOKE", kind, object, privilege, &target, "FROM",
        )?);
    }
    let sync = Sync {
        granted: want.difference(&have).count(),
        revoked: have.difference(&want).count(),
    };
    if !statements.is_empty() {
        client
            .batch_execute(&statements.join(";\n"))
            .await
            .map_err(|e| {
                db_error(
                    &format!("copy the privileges of {original} to {clone}"),
                    host,
                    &e,
                )
            })?;
    }
    Ok(sync)
}

fn grant_sql(
    verb: &str,
    kind: &str,
    object: &str,
    privilege: &str,
    role: &str,
    preposition: &str,
) -> Result<String, DbError> {
    if kind == "ROLE" {
        return Ok(format!("{verb} {object} {preposition} {role}"));
    }
    if !PRIVILEGES.contains(&privilege) {
        return Err(DbError {
            action: format!("copy privilege {privilege} on {object}"),
            host: String::new(),
            message: "unknown privilege".into(),
        });
    }
    Ok(format!(
        "{verb} {privilege} ON {kind} {object} {preposition} {role}"
    ))
}
