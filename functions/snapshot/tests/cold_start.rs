//! A bad configuration stops the cold start with a message naming the field.

use std::process::Command;

fn cold_start(vars: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_snapshot"))
        .env_clear()
        .env(
            "AUTOPILOT_TOPIC_ARN",
            "arn:aws:sns:us-east-1:123456789012:oncall",
        )
        .env("AWS_REGION", "us-east-1")
        .envs(vars.iter().copied())
        .output()
        .expect("run the snapshot binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn missing_databases_fail_the_cold_start_naming_the_variable() {
    let (ok, text) = cold_start(&[]);
    assert!(!ok, "{text}");
    assert!(text.contains("AUTOPILOT_SNAPSHOT_DATABASES"), "{text}");
}

#[test]
fn a_dr_key_in_the_wrong_region_fails_the_cold_start() {
    let (ok, text) = cold_start(&[
        (
            "AUTOPILOT_SNAPSHOT_DATABASES",
            r#"[{"instance":"orders-db"}]"#,
        ),
        ("AUTOPILOT_SNAPSHOT_DR_REGION", "us-west-2"),
        (
            "AUTOPILOT_SNAPSHOT_DR_KMS_KEY",
            "arn:aws:kms:us-east-1:123456789012:key/abc",
        ),
    ]);
    assert!(!ok, "{text}");
    assert!(text.contains("AUTOPILOT_SNAPSHOT_DR_KMS_KEY"), "{text}");
    assert!(text.contains("regional"), "{text}");
}

#[test]
fn an_unreadable_ca_bundle_fails_the_cold_start() {
    let (ok, text) = cold_start(&[
        (
            "AUTOPILOT_SNAPSHOT_DATABASES",
            r#"[{"instance":"orders-db"}]"#,
        ),
        ("AUTOPILOT_DB_CA_BUNDLE", "/nonexistent/ca.pem"),
    ]);
    assert!(!ok, "{text}");
    assert!(text.contains("AUTOPILOT_DB_CA_BUNDLE"), "{text}");
}
