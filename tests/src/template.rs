//! `template.yaml` as the tests read it: decoded by cfn-lint (the set-up's venv),
//! so CloudFormation's short forms (`!Ref`, `!Sub`) come back as their long
//! forms, and the events its schedules send, built from what it configures.

use crate::{python, root, ACCOUNT, REGION};
use serde_json::Value;
use std::process::Command;
use std::sync::OnceLock;

/// The whole template as JSON.
pub fn template() -> &'static Value {
    static TEMPLATE: OnceLock<Value> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let script = "import json, sys\n\
                      from cfnlint.decode import cfn_yaml\n\
                      json.dump(cfn_yaml.load(sys.argv[1]), sys.stdout)";
        let out = Command::new(python())
            .args(["-c", script])
            .arg(root().join("template.yaml"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; run `make setup`", python().display()));
        assert!(
            out.status.success(),
            "decoding template.yaml: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("template as JSON")
    })
}

/// A resource's `Properties`.
pub fn properties(logical_id: &str) -> &'static Value {
    let p = &template()["Resources"][logical_id]["Properties"];
    assert!(p.is_object(), "template.yaml has no resource {logical_id}");
    p
}

/// What EventBridge Scheduler sends to the function for the `ScheduleV2` event
/// `event` of `function`, invoked at `scheduled_time` (RFC 3339, as Scheduler
/// writes it: `2026-11-24T10:05:00Z`).
///
/// Scheduler has no envelope of its own: a templated Lambda target receives the
/// schedule's `Input`, with the context attributes replaced ("EventBridge Scheduler
/// replaces each keyword with its respective value when your schedule invokes the
/// target", Scheduler user guide). Without an `Input` it sends a default payload of
/// its own, which no handler takes, so a schedule without one fails here.
pub fn scheduled_event(function: &str, event: &str, scheduled_time: &str) -> Value {
    let e = &properties(function)["Events"][event];
    assert_eq!(
        e["Type"], "ScheduleV2",
        "{function}.{event} is not a ScheduleV2 event"
    );
    let input = match &e["Properties"]["Input"] {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("Fn::Sub") => o["Fn::Sub"]
            .as_str()
            .expect("Fn::Sub of a string")
            .replace("${AWS::AccountId}", ACCOUNT)
            .replace("${AWS::Region}", REGION)
            .replace("${AWS::Partition}", "aws"),
        other => panic!(
            "{function}.{event} has no Input ({other}): Scheduler would send its own default payload, which the handler does not take"
        ),
    };
    let arn = format!("arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{function}-{event}");
    let rendered = input
        .replace("<aws.scheduler.scheduled-time>", scheduled_time)
        .replace("<aws.scheduler.execution-id>", "d32c5kddcf5bb8c3")
        .replace("<aws.scheduler.schedule-arn>", &arn)
        .replace("<aws.scheduler.attempt-number>", "1");
    serde_json::from_str(&rendered)
        .unwrap_or_else(|e| panic!("{function}.{event} Input is not JSON ({e}): {rendered}"))
}
