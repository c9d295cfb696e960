//! The SAM template lints clean and wires every setting the code reads.

use autopilot_shared::config::{DRY_RUN, TOPIC_ARN};
use autopilot_tests::root;
use autopilot_tests::template::{
    event_pattern, pattern_matches, properties, scheduled_event, template,
};
use remediate::alarm::{self, Input, State};
use serde_json::{json, Value};
use std::process::Command;

#[test]
fn cfn_lint_is_clean() {
    let lint = root().join(".venv/bin/cfn-lint");
    let out = Command::new(&lint)
        .arg(root().join("template.yaml"))
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run `make setup`", lint.display()));
    assert!(
        out.status.success(),
        "cfn-lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_template_sets_every_variable_the_configuration_reads() {
    let template = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    for var in [
        TOPIC_ARN,
        DRY_RUN,
        deploy::config::SERVICES,
        deploy::config::DEPLOY_TIMEOUT_MINUTES,
        deploy::config::DEPLOY_CONCURRENCY,
        rotate::config::ROTATIONS,
        rotate::config::DB_CA_BUNDLE,
    ] {
        assert!(
            template.contains(&format!("{var}:")),
            "template.yaml does not set {var}"
        );
    }
    for var in [
        pagerduty::config::ROUTING_KEY_SECRET,
        pagerduty::config::URL,
        remediate::config::TABLE,
        remediate::config::SERVICES,
        remediate::config::DATABASES,
        remediate::config::RUNBOOKS,
        remediate::config::COOLDOWN_SECONDS,
        remediate::config::MAX_ACTIONS,
        remediate::config::ACTION_WINDOW_MINUTES,
        remediate::config::FLAP_LIMIT,
        remediate::config::FLAP_WINDOW_MINUTES,
        remediate::config::ROLLBACK_WINDOW_MINUTES,
        remediate::config::INSUFFICIENT_DATA,
        remediate::config::AUDIT_TTL_DAYS,
    ] {
        assert!(
            template.contains(&format!("{var}:")),
            "template.yaml does not set {var}"
        );
    }
    for binary in ["deploy", "rotate", "pagerduty", "remediate"] {
        assert!(
            template.contains(&format!("Binary: {binary}")),
            "template.yaml does not build {binary}"
        );
    }
}

/// Secrets under a customer managed key: rotate may decrypt and encrypt with the
/// configured keys only, and only through Secrets Manager.
#[test]
fn rotate_uses_secret_keys_only_through_secrets_manager() {
    let policies = properties("RotateFunction")["Policies"].clone();
    let statement = policies
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["Statement"].as_array())
        .flatten()
        .filter_map(|s| s.get("Fn::If").map(|b| b[1].clone()))
        .find(|s| s["Sid"] == "SecretKeysThroughSecretsManager")
        .expect("a KMS statement for SecretKmsKeyArns");
    assert_eq!(
        statement["Action"],
        serde_json::json!(["kms:Decrypt", "kms:GenerateDataKey"])
    );
    assert_eq!(
        statement["Resource"],
        serde_json::json!({"Ref": "SecretKmsKeyArns"})
    );
    assert_eq!(
        statement["Condition"]["StringEquals"]["kms:ViaService"],
        serde_json::json!({"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"})
    );
}

/// What remediate reads with the template's defaults is what it reads with no
/// setting at all: the parameters' defaults are the code's.
#[test]
fn remediate_parameter_defaults_are_the_code_defaults() {
    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:oncall";
    const TABLE: &str = "autopilot-RemediateGuardTable-1A2B3C";
    let globals = &template()["Globals"]["Function"]["Environment"]["Variables"];
    let own = &properties("RemediateFunction")["Environment"]["Variables"];
    let mut vars: Vec<(String, String)> = Vec::new();
    for (name, value) in globals
        .as_object()
        .unwrap()
        .iter()
        .chain(own.as_object().unwrap())
    {
        let value = match value["Ref"].as_str() {
            Some("OnCallTopic") => TOPIC.to_string(),
            Some("RemediateGuardTable") => TABLE.to_string(),
            Some(parameter) => match &template()["Parameters"][parameter]["Default"] {
                Value::String(s) => s.clone(),
                Value::Null => panic!("{name}: parameter {parameter} has no default"),
                other => other.to_string(),
            },
            None => value.as_str().expect("a plain value").to_string(),
        };
        vars.push((name.clone(), value));
    }
    let lookup = |vars: Vec<(String, String)>| {
        move |key: &str| vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    };
    let from_template = remediate::config::Config::from_lookup(lookup(vars)).unwrap();
    let bare = remediate::config::Config::from_lookup(lookup(vec![
        (TOPIC_ARN.to_string(), TOPIC.to_string()),
        (remediate::config::TABLE.to_string(), TABLE.to_string()),
    ]))
    .unwrap();
    assert_eq!(from_template, bare);
}

/// A claim older than the lease is taken over, so no invocation may outlive it.
#[test]
fn remediate_times_out_before_its_claim_lease() {
    let timeout = properties("RemediateFunction")["Timeout"]
        .as_i64()
        .expect("RemediateFunction sets its own Timeout");
    assert!(
        timeout < remediate::guard::CLAIM_LEASE_SECONDS,
        "Timeout {timeout} s is not under the claim lease ({} s)",
        remediate::guard::CLAIM_LEASE_SECONDS
    );
}

/// The sweep's schedule sends what remediate takes as its sweep, in the envelope
/// deploy's sweep schedule sends.
#[test]
fn the_remediate_sweep_schedule_sends_the_sweep_task() {
    let time = "2026-11-24T10:05:00Z";
    let sent = scheduled_event("RemediateFunction", "ScaleInSweep", time);
    assert_eq!(alarm::parse(sent.clone()).unwrap(), Input::Sweep);
    assert_eq!(sent["detail"], json!({"task": alarm::SWEEP_TASK}));
    assert_eq!(sent["time"], time);
    let deploy = scheduled_event("DeployFunction", "StaleDeploymentSweep", time);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&sent), keys(&deploy));
    for key in ["version", "source", "detail-type", "time"] {
        assert_eq!(sent[key], deploy[key], "{key}");
    }
}

/// An alarm state change as EventBridge delivers it (CloudWatch user guide,
/// "Alarm events and EventBridge").
fn alarm_event(name: &str) -> Value {
    json!({
        "version": "0",
        "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "123456789012",
        "time": "2026-11-24T10:05:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}")],
        "detail": {
            "alarmName": name,
            "state": {
                "value": "ALARM",
                "reason": "Threshold Crossed",
                "timestamp": "2026-11-24T10:05:00.000+0000"
            },
            "previousState": {
                "value": "OK",
                "reason": "Threshold Crossed",
                "timestamp": "2026-11-24T09:05:00.000+0000"
            },
            "configuration": {"metrics": []}
        }
    })
}

/// The EventBridge samples under events/remediate/, as the handler takes them.
fn eventbridge_samples() -> Vec<(String, Value)> {
    let Ok(dir) = std::fs::read_dir(root().join("events/remediate")) else {
        return Vec::new();
    };
    let mut samples: Vec<(String, Value)> = dir
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".eventbridge.json") && !name.starts_with("malformed-")
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), value)
        })
        .collect();
    samples.sort_by(|a, b| a.0.cmp(&b.0));
    samples
}

#[test]
fn the_alarm_rule_takes_every_alarm_state_change_without_a_prefix() {
    let pattern = event_pattern(
        "RemediateFunction",
        "AlarmStateChange",
        &[],
        &[("HasRemediateAlarmNamePrefix", false)],
    );
    let mut events = vec![("inline".to_string(), alarm_event("ecs-web-cpu-high"))];
    events.extend(eventbridge_samples());
    for (name, event) in &events {
        assert!(pattern_matches(&pattern, event), "{name}: {pattern}");
        match alarm::parse(event.clone()) {
            Ok(Input::Alarms(triggers)) => assert_eq!(triggers.len(), 1, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    let ecr_push: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("events/ecr-push.json")).unwrap(),
    )
    .unwrap();
    assert!(!pattern_matches(&pattern, &ecr_push));
}

#[test]
fn the_alarm_name_prefix_narrows_the_alarm_rule() {
    let pattern = event_pattern(
        "RemediateFunction",
        "AlarmStateChange",
        &[("RemediateAlarmNamePrefix", "autopilot-")],
        &[("HasRemediateAlarmNamePrefix", true)],
    );
    let ours = alarm_event("autopilot-web-cpu-high");
    assert!(pattern_matches(&pattern, &ours), "{pattern}");
    let Ok(Input::Alarms(triggers)) = alarm::parse(ours) else {
        panic!("the sample does not parse");
    };
    assert_eq!(triggers[0].state, State::Alarm);
    assert!(!pattern_matches(&pattern, &alarm_event("web-cpu-high")));
}

/// The guardrail table is keyed and expires items as the code writes them, and
/// outlives the stack.
#[test]
fn the_guardrail_table_has_the_keys_and_ttl_the_code_writes() {
    let table = &template()["Resources"]["RemediateGuardTable"];
    assert_eq!(table["Type"], "AWS::DynamoDB::Table");
    assert_eq!(table["DeletionPolicy"], "Retain");
    assert_eq!(table["UpdateReplacePolicy"], "Retain");
    let p = properties("RemediateGuardTable");
    assert_eq!(p["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        p["KeySchema"],
        json!([
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"}
        ])
    );
    assert_eq!(
        p["AttributeDefinitions"],
        json!([
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"}
        ])
    );
    assert_eq!(
        p["TimeToLiveSpecification"],
        json!({"AttributeName": "expires_at", "Enabled": true})
    );
    assert_eq!(
        p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    assert_eq!(p["SSESpecification"]["SSEEnabled"], true);
    assert_eq!(
        properties("RemediateFunction")["Environment"]["Variables"][remediate::config::TABLE],
        json!({"Ref": "RemediateGuardTable"})
    );
}

/// Alarms invoke remediate as their Lambda action only from this account and
/// region (CloudWatch user guide, "Invoke a Lambda function from an alarm").
#[test]
fn alarms_of_this_account_may_invoke_remediate_as_their_action() {
    let p = properties("RemediateAlarmActionPermission");
    assert_eq!(p["Principal"], "lambda.alarms.cloudwatch.amazonaws.com");
    assert_eq!(p["Action"], "lambda:InvokeFunction");
    assert_eq!(
        p["FunctionName"],
        json!({"Fn::GetAtt": ["RemediateFunction", "Arn"]})
    );
    assert_eq!(p["SourceAccount"], json!({"Ref": "AWS::AccountId"}));
    let source = p["SourceArn"]["Fn::Sub"].as_str().expect("SourceArn: !Sub");
    assert!(
        source.starts_with(
            "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:"
        ),
        "{source}"
    );
}
