//! A real PostgreSQL for the rotation tests: one throwaway server per test binary,
//! started by `harness/pg_run.py` on a free loopback port with SCRAM logins, and
//! gone (with its data directory) when the test process exits.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use tokio_postgres::NoTls;

/// The superuser's password of the throwaway server (not a secret: the server lives for one test run).
pub const ADMIN_PASSWORD: &str = "harness-admin-password";

pub struct Postgres {
    pub port: u16,
    /// For a TLS-only server: the PEM file of the CA that signed its certificate.
    pub ca: Option<String>,
    _child: Mutex<Child>,
}

/// The plaintext server most tests use.
pub fn postgres() -> &'static Postgres {
    static PG: OnceLock<Postgres> = OnceLock::new();
    PG.get_or_init(|| start(false))
}

/// A server that takes only verified-TLS connections, with a CA of its own.
pub fn postgres_tls() -> &'static Postgres {
    static PG: OnceLock<Postgres> = OnceLock::new();
    PG.get_or_init(|| start(true))
}

fn start(tls: bool) -> Postgres {
    let script = crate::root().join("tests/harness/pg_run.py");
    let mut command = Command::new(crate::python());
    command.arg(&script).arg(ADMIN_PASSWORD);
    if tls {
        command.arg("--tls");
    }
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}; run `make setup`", script.display()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("pg_run prints its port");
    let mut words = line.split_whitespace();
    let port = match (words.next(), words.next().and_then(|p| p.parse().ok())) {
        (Some("PORT"), Some(port)) => port,
        _ => panic!("PostgreSQL did not start: {line:?}"),
    };
    let ca = match (words.next(), words.next()) {
        (Some("CA"), Some(path)) => Some(path.to_string()),
        _ => None,
    };
    Postgres {
        port,
        ca,
        _child: Mutex::new(child),
    }
}

impl Postgres {
    /// A connection as `user`, or the server's refusal. Over the Unix socket for
    /// the TLS-only server (fixtures only; the function under test always uses TCP).
    pub async fn login(
        &self,
        user: &str,
        password: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        self.login_to("postgres", user, password).await
    }

    /// A connection as `user` to database `dbname`.
    pub async fn login_to(
        &self,
        dbname: &str,
        user: &str,
        password: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(dbname);
        match &self.ca {
            Some(ca) => config.host_path(
                std::path::Path::new(ca)
                    .parent()
                    .expect("CA in the server's directory"),
            ),
            None => config.host("127.0.0.1"),
        };
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    pub async fn can_login(&self, user: &str, password: &str) -> bool {
        match self.login(user, password).await {
            Ok(c) => c.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        }
    }

    /// The superuser connection fixtures use.
    pub async fn admin(&self) -> tokio_postgres::Client {
        self.login("postgres", ADMIN_PASSWORD)
            .await
            .expect("superuser login")
    }

    /// Runs SQL as the superuser.
    pub async fn exec(&self, sql: &str) {
        self.admin()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// `"name"` with quotes doubled, for fixtures' SQL.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with quotes doubled, for fixtures' SQL.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
