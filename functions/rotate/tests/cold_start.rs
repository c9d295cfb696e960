//! A bad configuration stops the cold start with a message naming the field.

use std::process::Command;

fn cold_start(vars: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rotate"))
        .env_clear()
        .env(
            "AUTOPILOT_TOPIC_ARN",
            "arn:aws:sns:us-east-1:123456789012:oncall",
        )
        .envs(vars.iter().copied())
        .output()
        .expect("run the rotate binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_bad_rotation_entry_fails_the_cold_start_naming_the_field() {
    let (ok, text) = cold_start(&[(
        "AUTOPILOT_ROTATIONS",
        r#"[{"secret":"prod/db","strategy":"mysql"}]"#,
    )]);
    assert!(!ok, "{text}");
    assert!(text.contains("AUTOPILOT_ROTATIONS[0].strategy"), "{text}");
}

#[test]
fn a_missing_ca_bundle_fails_the_cold_start_naming_the_file() {
    let (ok, text) = cold_start(&[(
        "AUTOPILOT_DB_CA_BUNDLE",
        "/nonexistent/rds-global-bundle.pem",
    )]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("/nonexistent/rds-global-bundle.pem"),
        "{text}"
    );
}
