//! A bad configuration stops the cold start with a message naming the field,
//! before the runtime asks for any event.

use std::process::Command;

fn cold_start(services: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_deploy"))
        .env_clear()
        .env(
            "AUTOPILOT_TOPIC_ARN",
            "arn:aws:sns:us-east-1:123456789012:oncall",
        )
        .env("AUTOPILOT_SERVICES", services)
        .output()
        .expect("run the deploy binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_bad_service_mapping_fails_the_cold_start_naming_the_field() {
    let (ok, text) = cold_start(
        r#"[{"repository":"backend","cluster":"prod","service":"api","container":"app","tags":["v 1"]}]"#,
    );
    assert!(!ok, "{text}");
    assert!(text.contains("AUTOPILOT_SERVICES[0].tags[0]"), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("bad configuration"))
        .expect("a JSON log line");
    let json: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
    assert_eq!(json["level"], "ERROR");
}

#[test]
fn a_missing_topic_fails_the_cold_start_naming_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_deploy"))
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("AUTOPILOT_TOPIC_ARN"), "{text}");
}
