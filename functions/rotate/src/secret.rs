//! The RDS secret JSON that the console and RDS write, read and written without
//! losing fields autopilot does not know. `Debug` never shows the password.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// `{"engine", "host", "port", "username", "password", "dbname", "masterarn"}` plus
/// autopilot's `sslmode` and anything else the secret holds.
#[derive(Clone, PartialEq, Deserialize, Serialize)]
pub struct DbSecret {
    #[serde(default)]
    pub engine: Option<String>,
    pub host: String,
    #[serde(default = "default_port", deserialize_with = "port")]
    pub port: u16,
    pub username: String,
    pub password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dbname: Option<String>,
    /// The admin secret's ARN, for the alternating-users strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masterarn: Option<String>,
    /// `disable` allows plaintext; absent, or anything else autopilot accepts, means verified TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslmode: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn default_port() -> u16 {
    5432
}

/// RDS writes the port as a number; people write it as a string.
fn port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| serde::de::Error::custom(format!("port {n} is not a TCP port"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("port `{s}` is not a TCP port"))),
        other => Err(serde::de::Error::custom(format!(
            "port {other} is not a TCP port"
        ))),
    }
}

impl fmt::Debug for DbSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbSecret")
            .field("engine", &self.engine)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("dbname", &self.dbname)
            .field("masterarn", &self.masterarn)
            .field("sslmode", &self.sslmode)
            .finish_non_exhaustive()
    }
}

impl DbSecret {
    /// Parses a secret string; the error names the field, never a value.
    pub fn parse(secret_name: &str, text: &str) -> Result<Self, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            // serde_json's messages quote the offending value for some errors; keep only its category.
            let kind = match e.inner().classify() {
                serde_json::error::Category::Data => e
                    .inner()
                    .to_string()
                    .split(" at line")
                    .next()
                    .unwrap_or("invalid")
                    .to_string(),
                _ => "is not a JSON object".to_string(),
            };
            let kind = if kind.starts_with("invalid type") || kind.starts_with("invalid value") {
                "has the wrong type".to_string()
            } else {
                kind
            };
            format!("secret {secret_name} is not an RDS secret JSON: {path}: {kind}")
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn dbname(&self) -> &str {
        self.dbname.as_deref().unwrap_or("postgres")
    }

    /// Whether the secret explicitly allows a plaintext connection.
    pub fn plaintext_allowed(&self) -> Result<bool, String> {
        match self.sslmode.as_deref() {
            None | Some("verify-full") | Some("require") => Ok(false),
            Some("disable") => Ok(true),
            Some(other) => Err(format!(
                "sslmode `{other}` is not one of verify-full, require, disable"
            )),
        }
    }
}

/// The admin secret alternating users log in with (`masterarn`). A secret RDS
/// manages (`ManageMasterUserPassword`) holds only `username` and `password`; its
/// endpoint then comes from RDS, never from the app secret.
#[derive(Clone, PartialEq, Deserialize)]
pub struct AdminSecret {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default, deserialize_with = "optional_port")]
    pub port: Option<u16>,
    /// `disable` allows plaintext for the admin's connection; nothing else does.
    #[serde(default)]
    pub sslmode: Option<String>,
    /// The database the admin logs in to: its own, never the app's (an app user
    /// owns its database and could set what sessions there run with). Default `postgres`.
    #[serde(default)]
    pub dbname: Option<String>,
}

fn optional_port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    port(d).map(Some)
}

impl fmt::Debug for AdminSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminSecret")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("sslmode", &self.sslmode)
            .field("dbname", &self.dbname)
            .finish()
    }
}

impl AdminSecret {
    /// Parses an admin secret; the error names the field, never a value.
    pub fn parse(secret_name: &str, text: &str) -> Result<Self, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            format!(
                "admin secret {secret_name} is not a JSON object with username and password: {}",
                e.path()
            )
        })
    }

    /// How to log in as the admin to `endpoint`: its own database and its own TLS
    /// setting, never the app secret's. Roles are cluster-wide, so everything the
    /// admin does works from there.
    pub fn login(&self, endpoint: &Endpoint) -> DbSecret {
        DbSecret {
            engine: None,
            host: endpoint.host.clone(),
            port: endpoint.port,
            username: self.username.clone(),
            password: self.password.clone(),
            dbname: Some(self.dbname.clone().unwrap_or_else(|| "postgres".into())),
            masterarn: None,
            sslmode: self.sslmode.clone(),
            extra: Map::new(),
        }
    }
}

/// Where a database listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl DbSecret {
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            host: self.host.clone(),
            port: self.port,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_rds_writes_and_keeps_unknown_fields() {
        let text = r#"{"engine":"postgres","host":"db.example","port":5432,"username":"app","password":"p4ss","dbname":"orders","dbInstanceIdentifier":"prod-db"}"#;
        let s = DbSecret::parse("prod/db", text).unwrap();
        assert_eq!((s.port, s.dbname()), (5432, "orders"));
        let back: Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(back["dbInstanceIdentifier"], "prod-db");
        assert_eq!(back["password"], "p4ss");
    }

    #[test]
    fn port_may_be_a_string() {
        let s = DbSecret::parse(
            "x",
            r#"{"host":"h","port":"6432","username":"u","password":"p"}"#,
        )
        .unwrap();
        assert_eq!(s.port, 6432);
    }

    #[test]
    fn debug_and_errors_never_show_the_password() {
        let s = DbSecret::parse(
            "x",
            r#"{"host":"h","username":"u","password":"hunter2-secret"}"#,
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        let err =
            DbSecret::parse("x", r#"{"host":"h","username":"u","password":12345678}"#).unwrap_err();
        assert!(!err.contains("12345678"), "{err}");
        assert!(err.contains("password"), "{err}");
        let err = DbSecret::parse("x", r#"{"host":"h","username":"u"}"#).unwrap_err();
        assert!(err.contains("password"), "{err}");
    }

    #[test]
    fn an_rds_managed_admin_secret_has_no_host_and_its_debug_no_password() {
        let a = AdminSecret::parse(
            "rds!db-1",
            r#"{"username":"admin","password":"s3cret-admin"}"#,
        )
        .unwrap();
        assert_eq!((a.host.as_deref(), a.port), (None, None));
        assert!(!format!("{a:?}").contains("s3cret-admin"));
        let a = AdminSecret::parse(
            "m",
            r#"{"username":"admin","password":"p","host":"db","port":"6432"}"#,
        )
        .unwrap();
        assert_eq!((a.host.as_deref(), a.port), (Some("db"), Some(6432)));
        let login = a.login(&Endpoint {
            host: "db".into(),
            port: 6432,
        });
        assert_eq!(
            (login.dbname(), login.sslmode.as_deref()),
            ("postgres", None),
            "the admin's own database, never the app's"
        );
        let err = AdminSecret::parse("m", r#"{"username":"admin"}"#).unwrap_err();
        assert!(err.contains("password"), "{err}");
    }

    #[test]
    fn tls_is_required_unless_disabled_explicitly() {
        let mut s = DbSecret::parse("x", r#"{"host":"h","username":"u","password":"p"}"#).unwrap();
        assert_eq!(s.plaintext_allowed(), Ok(false));
        s.sslmode = Some("disable".into());
        assert_eq!(s.plaintext_allowed(), Ok(true));
        s.sslmode = Some("prefer".into());
        assert!(
            s.plaintext_allowed().is_err(),
            "no silent fallback to plaintext"
        );
    }
}
