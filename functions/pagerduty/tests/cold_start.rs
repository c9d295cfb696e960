//! A bad configuration stops the cold start with a message naming the variable.

use std::process::Command;

#[test]
fn a_plain_http_url_fails_the_cold_start_naming_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_pagerduty"))
        .env_clear()
        .env("AUTOPILOT_PAGERDUTY_ROUTING_KEY_SECRET", "oncall/pagerduty")
        .env(
            "AUTOPILOT_PAGERDUTY_URL",
            "http://events.pagerduty.com/v2/enqueue",
        )
        .output()
        .expect("run the pagerduty binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("AUTOPILOT_PAGERDUTY_URL"), "{text}");
}
