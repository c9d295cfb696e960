//! No secret value in any test's logs (issue #10). Every test binary that starts the
//! emulator writes all its log lines, at DEBUG, through the production JSON
//! subscriber to `target/test-logs/`, and the emulator's bridge writes every
//! SecretString anyone put in Secrets Manager to `target/test-secrets/`: the
//! fixtures' passwords, the passwords rotate generated, dependent URLs, admin
//! secrets. This test, run by `make test` after the whole suite (it is ignored
//! otherwise: alone, it would read whatever an earlier run left), looks for every
//! such value in every log line.

use autopilot_tests::{secret_log_dir, test_log_dir, PLAINTEXT_SECRET};
use serde_json::Value;
use std::collections::BTreeSet;

/// Values shorter than this are not looked for: a fixture's `pool: 5` or a
/// username would match by chance, and no password autopilot makes or accepts is
/// this short.
const MIN_LEN: usize = 8;

/// The secret values a SecretString holds: the whole string, every `password` (any
/// key naming one) of a JSON secret, and the password of a URL (`scheme://user:
/// password@host`). Usernames, hosts and ports are not secrets.
fn secret_values(secret: &str) -> Vec<String> {
    let mut values = vec![secret.to_string()];
    if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(secret) {
        for (key, value) in fields {
            if let Some(text) = value.as_str() {
                if key.to_ascii_lowercase().contains("password") {
                    values.push(text.to_string());
                }
                values.extend(url_password(text));
            }
        }
    }
    values.extend(url_password(secret));
    values.retain(|v| v.chars().count() >= MIN_LEN);
    // As a JSON log line would hold it: a secret JSON logged as a string field is
    // escaped (`{\"password\":…`), and would not match the raw text.
    let escaped: Vec<String> = values
        .iter()
        .filter_map(|v| {
            let quoted = serde_json::to_string(v).ok()?;
            let inner = quoted[1..quoted.len() - 1].to_string();
            (inner != *v).then_some(inner)
        })
        .collect();
    values.extend(escaped);
    values
}

fn url_password(text: &str) -> Option<String> {
    let rest = text.split_once("://")?.1;
    let userinfo = rest.split('@').next().filter(|_| rest.contains('@'))?;
    Some(userinfo.split_once(':')?.1.to_string())
}

fn read_dir_lines(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}; run `make test`", dir.display()))
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().to_string();
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        lines.extend(text.lines().map(|l| (name.clone(), l.to_string())));
    }
    lines
}

/// The log lines holding any of `secrets`, found in one pass (Aho-Corasick).
fn leaks(secrets: &BTreeSet<String>, logs: &[(String, String)]) -> Vec<String> {
    let finder = aho_corasick::AhoCorasick::new(secrets).expect("a matcher of the secrets");
    logs.iter()
        .filter(|(_, line)| finder.is_match(line))
        .map(|(file, line)| format!("{file}: a secret value in {line}"))
        .collect()
}

#[test]
#[ignore = "run by `make test` after the whole suite"]
fn no_secret_value_reaches_any_test_log() {
    let mut secrets = BTreeSet::new();
    for (_, line) in read_dir_lines(&secret_log_dir()) {
        let entry: Value = serde_json::from_str(&line).expect("a secret log line is JSON");
        if let Some(value) = entry["value"].as_str() {
            secrets.extend(secret_values(value));
        }
    }
    secrets.insert(PLAINTEXT_SECRET.to_string());
    let logs = read_dir_lines(&test_log_dir());
    // A check that saw nothing proves nothing: the suite rotates, so it writes
    // secrets, and every handler logs.
    assert!(
        secrets.len() > 50,
        "only {} secret values seen",
        secrets.len()
    );
    assert!(logs.len() > 1_000, "only {} log lines seen", logs.len());

    let leaks = leaks(&secrets, &logs);
    println!(
        "{} log lines of {} binaries checked against {} secret values",
        logs.len(),
        std::fs::read_dir(test_log_dir())
            .map(|d| d.count())
            .unwrap_or(0),
        secrets.len()
    );
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

#[test]
fn the_values_of_a_secret_are_its_passwords_and_the_whole_string() {
    let rds = r#"{"engine":"postgres","host":"db.internal","username":"app","password":"s3cret-pass-word","port":5432}"#;
    let values = secret_values(rds);
    assert!(values.contains(&rds.to_string()));
    assert!(values.contains(&"s3cret-pass-word".to_string()));
    assert!(!values.iter().any(|v| v == "app" || v == "db.internal"));
    let url = "postgres://app:url-pass-1234@db.internal:5432/orders";
    assert!(secret_values(url).contains(&"url-pass-1234".to_string()));
    let nested = r#"{"database_url":"postgres://u:nested-pass-99@h/d","pool":5}"#;
    assert!(secret_values(nested).contains(&"nested-pass-99".to_string()));
    let master = r#"{"masterPassword":"admin-password-1"}"#;
    assert!(secret_values(master).contains(&"admin-password-1".to_string()));
    assert_eq!(secret_values("short"), Vec::<String>::new());
    let escaped = r#"{\"engine\":\"postgres\",\"host\":\"db.internal\",\"username\":\"app\",\"password\":\"s3cret-pass-word\",\"port\":5432}"#;
    assert!(values.contains(&escaped.to_string()), "{values:?}");
}

#[test]
fn a_line_holding_a_secret_is_a_leak_and_others_are_not() {
    let secrets: BTreeSet<String> = ["s3cret-pass-word".to_string()].into();
    let logs = vec![
        (
            "a".to_string(),
            r#"{"action":"set","user":"app"}"#.to_string(),
        ),
        (
            "b".to_string(),
            r#"{"error":"login as app with s3cret-pass-word failed"}"#.to_string(),
        ),
    ];
    let found = leaks(&secrets, &logs);
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("b: "), "{found:?}");
}
