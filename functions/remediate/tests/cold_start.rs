//! A bad configuration stops the cold start with a message naming the field.

use std::process::Command;

fn cold_start(vars: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_remediate"))
        .env_clear()
        .env(
            "AUTOPILOT_TOPIC_ARN",
            "arn:aws:sns:us-east-1:123456789012:oncall",
        )
        .envs(vars.iter().copied())
        .output()
        .expect("run the remediate binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_missing_table_fails_the_cold_start_naming_the_variable() {
    let (ok, text) = cold_start(&[]);
    assert!(!ok, "{text}");
    assert!(text.contains("AUTOPILOT_REMEDIATE_TABLE"), "{text}");
}

#[test]
fn bounds_that_are_not_a_range_fail_the_cold_start_naming_the_field() {
    let (ok, text) = cold_start(&[
        ("AUTOPILOT_REMEDIATE_TABLE", "autopilot-guard"),
        (
            "AUTOPILOT_REMEDIATE_SERVICES",
            r#"[{"cluster":"prod","service":"web","min":8,"max":4}]"#,
        ),
    ]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("AUTOPILOT_REMEDIATE_SERVICES[0].max"),
        "{text}"
    );
}
