//! `template.yaml` (and `dr-region.yaml`) as the tests read them: decoded by
//! cfn-lint (the set-up's venv), so CloudFormation's short forms (`!Ref`,
//! `!Sub`) come back as their long forms, and the events their schedules send
//! and rules take, built from what they configure.

use crate::{python, root, ACCOUNT, REGION};
use serde_json::Value;
use std::process::Command;
use std::sync::OnceLock;

/// A template of the repository's root, as JSON.
fn load(file: &str) -> Value {
    let script = "import json, sys\n\
                  from cfnlint.decode import cfn_yaml\n\
                  json.dump(cfn_yaml.load(sys.argv[1]), sys.stdout)";
    let out = Command::new(python())
        .args(["-c", script])
        .arg(root().join(file))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run `make setup`", python().display()));
    assert!(
        out.status.success(),
        "decoding {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("template as JSON")
}

/// The whole template as JSON.
pub fn template() -> &'static Value {
    static TEMPLATE: OnceLock<Value> = OnceLock::new();
    TEMPLATE.get_or_init(|| load("template.yaml"))
}

/// `dr-region.yaml`, the stack of the DR region, as JSON.
pub fn dr_region() -> &'static Value {
    static TEMPLATE: OnceLock<Value> = OnceLock::new();
    TEMPLATE.get_or_init(|| load("dr-region.yaml"))
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

/// The `EventPattern` of the `EventBridgeRule` event `event` of `function`, as
/// CloudFormation resolves it for a stack whose parameters are `parameters` and
/// whose conditions are `conditions`: `Ref` to a parameter becomes its value,
/// `Fn::If` takes the branch of its condition, and `AWS::NoValue` leaves the key out.
pub fn event_pattern(
    function: &str,
    event: &str,
    parameters: &[(&str, &str)],
    conditions: &[(&str, bool)],
) -> Value {
    let e = &properties(function)["Events"][event];
    assert_eq!(
        e["Type"], "EventBridgeRule",
        "{function}.{event} is not an EventBridgeRule event"
    );
    resolve(&e["Properties"]["Pattern"], parameters, conditions)
        .unwrap_or_else(|| panic!("{function}.{event} has no Pattern"))
}

/// The `EventPattern` of the `AWS::Events::Rule` resource `rule` of `template`,
/// resolved as [`event_pattern`] resolves a function's.
pub fn rule_pattern(
    template: &Value,
    rule: &str,
    parameters: &[(&str, &str)],
    conditions: &[(&str, bool)],
) -> Value {
    let r = &template["Resources"][rule];
    assert_eq!(r["Type"], "AWS::Events::Rule", "{rule} is not a rule");
    resolve(&r["Properties"]["EventPattern"], parameters, conditions)
        .unwrap_or_else(|| panic!("{rule} has no EventPattern"))
}

/// `value` with `Ref` and `Fn::If` resolved; `None` for `AWS::NoValue`.
fn resolve(
    value: &Value,
    parameters: &[(&str, &str)],
    conditions: &[(&str, bool)],
) -> Option<Value> {
    match value {
        Value::Object(o) if o.contains_key("Ref") => {
            let name = o["Ref"].as_str().expect("Ref of a name");
            if name == "AWS::NoValue" {
                return None;
            }
            let (_, v) = parameters
                .iter()
                .find(|(p, _)| *p == name)
                .unwrap_or_else(|| panic!("no value given for parameter {name}"));
            Some(Value::String(v.to_string()))
        }
        Value::Object(o) if o.contains_key("Fn::If") => {
            let branches = o["Fn::If"].as_array().expect("Fn::If of a list");
            let name = branches[0].as_str().expect("Fn::If on a condition name");
            let (_, holds) = conditions
                .iter()
                .find(|(c, _)| *c == name)
                .unwrap_or_else(|| panic!("no value given for condition {name}"));
            resolve(
                &branches[if *holds { 1 } else { 2 }],
                parameters,
                conditions,
            )
        }
        Value::Object(o) => Some(Value::Object(
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), resolve(v, parameters, conditions)?)))
                .collect(),
        )),
        Value::Array(a) => Some(Value::Array(
            a.iter()
                .filter_map(|v| resolve(v, parameters, conditions))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

/// Whether EventBridge would match `event` against `pattern`: every field the
/// pattern names must be in the event, a list matches when one of its entries
/// does (an exact value, `{"prefix": ...}`, or `{"exists": ...}`), objects
/// match field by field, and `"$or"` matches when one of its patterns does.
/// Other content filters are not supported here and fail the test.
pub fn pattern_matches(pattern: &Value, event: &Value) -> bool {
    let Value::Object(fields) = pattern else {
        panic!("a pattern is an object: {pattern}");
    };
    fields.iter().all(|(key, expected)| {
        if key == "$or" {
            let branches = expected.as_array().expect("$or takes a list of patterns");
            return branches.iter().any(|b| pattern_matches(b, event));
        }
        let Some(actual) = event.get(key) else {
            // Only `{"exists": false}` matches a field the event does not have.
            return expected.as_array().is_some_and(|a| {
                a.iter()
                    .any(|e| e.get("exists") == Some(&Value::Bool(false)))
            });
        };
        match expected {
            Value::Object(_) => pattern_matches(expected, actual),
            Value::Array(allowed) => {
                let values = match actual {
                    Value::Array(values) => values.clone(),
                    one => vec![one.clone()],
                };
                values
                    .iter()
                    .any(|v| allowed.iter().any(|a| entry_matches(a, v)))
            }
            other => panic!("pattern field {key} is neither a list nor an object: {other}"),
        }
    })
}

fn entry_matches(entry: &Value, value: &Value) -> bool {
    match entry {
        Value::Object(filter) => match (filter.get("prefix"), filter.get("exists"), filter.len()) {
            (Some(Value::String(prefix)), None, 1) => value
                .as_str()
                .is_some_and(|v| v.starts_with(prefix.as_str())),
            // The field is there (absent fields are handled by the caller).
            (None, Some(Value::Bool(exists)), 1) => *exists,
            _ => panic!("content filter not supported by this check: {entry}"),
        },
        literal => literal == value,
    }
}

/// Every identity policy `template.yaml` gives a role, as written, with the logical
/// id of the resource that holds it: each entry of a SAM function's `Policies` (an
/// inline policy with a `Statement`, a SAM policy template such as
/// `{"SNSPublishMessagePolicy": {...}}`, or a managed policy's name or ARN); each
/// `PolicyDocument` of an `AWS::IAM::Role`, `AWS::IAM::Policy` or
/// `AWS::IAM::ManagedPolicy`, and each of a role's `ManagedPolicyArns`. `Fn::If` is
/// left as written. What SAM adds to the roles it makes (the Lambda basic execution
/// and VPC access managed policies, the event sources' policies) is not here.
pub fn identity_policies() -> Vec<(String, &'static Value)> {
    let mut policies = Vec::new();
    let resources = template()["Resources"]
        .as_object()
        .expect("template.yaml has Resources");
    for (id, resource) in resources {
        let p = &resource["Properties"];
        let mut add = |v: &'static Value| match v {
            Value::Array(list) => policies.extend(list.iter().map(|e| (id.clone(), e))),
            Value::Null => {}
            one => policies.push((id.clone(), one)),
        };
        match resource["Type"].as_str() {
            Some("AWS::Serverless::Function") => add(&p["Policies"]),
            Some("AWS::IAM::Role") => {
                for inline in p["Policies"].as_array().into_iter().flatten() {
                    add(&inline["PolicyDocument"]);
                }
                add(&p["ManagedPolicyArns"]);
            }
            Some("AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy") => add(&p["PolicyDocument"]),
            _ => {}
        }
    }
    policies
}
