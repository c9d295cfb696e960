//! The SAM template lints clean and wires every setting the code reads.

use autopilot_shared::config::{DRY_RUN, TOPIC_ARN};
use autopilot_tests::root;
use autopilot_tests::template::{
    dr_region, event_pattern, pattern_matches, properties, rule_pattern, scheduled_event, template,
};
use remediate::alarm::{self, Input, State};
use serde_json::{json, Value};
use snapshot::event::{self as snapshot_event, Input as SnapshotInput};
use std::process::Command;

#[test]
fn cfn_lint_is_clean() {
    let lint = root().join(".venv/bin/cfn-lint");
    let out = Command::new(&lint)
        .arg(root().join("template.yaml"))
        .arg(root().join("dr-region.yaml"))
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
        snapshot::config::DATABASES,
        snapshot::config::DR_REGION,
        snapshot::config::DR_KMS_KEY,
        snapshot::config::COPY_LIMIT,
        snapshot::config::COPY_TIMEOUT_HOURS,
        snapshot::config::RETENTION_DAYS,
        snapshot::config::DR_RETENTION_DAYS,
        snapshot::config::KEEP,
        snapshot::config::QUOTA_WARN_PERCENT,
        snapshot::config::DRILL_INTERVAL_DAYS,
        snapshot::config::DRILL_INSTANCE_CLASS,
        snapshot::config::DRILL_SUBNET_GROUP,
        snapshot::config::DRILL_SECURITY_GROUPS,
        snapshot::config::DRILL_TIMEOUT_HOURS,
    ] {
        assert!(
            template.contains(&format!("{var}:")),
            "template.yaml does not set {var}"
        );
    }
    // The snapshot function sets each of its variables itself, the CA bundle too.
    let own = properties("SnapshotFunction")["Environment"]["Variables"]
        .as_object()
        .expect("SnapshotFunction sets variables");
    for var in [
        snapshot::config::DATABASES,
        snapshot::config::DR_REGION,
        snapshot::config::DR_KMS_KEY,
        snapshot::config::COPY_LIMIT,
        snapshot::config::COPY_TIMEOUT_HOURS,
        snapshot::config::RETENTION_DAYS,
        snapshot::config::DR_RETENTION_DAYS,
        snapshot::config::KEEP,
        snapshot::config::QUOTA_WARN_PERCENT,
        snapshot::config::DRILL_INTERVAL_DAYS,
        snapshot::config::DRILL_INSTANCE_CLASS,
        snapshot::config::DRILL_SUBNET_GROUP,
        snapshot::config::DRILL_SECURITY_GROUPS,
        snapshot::config::DRILL_TIMEOUT_HOURS,
        snapshot::config::DB_CA_BUNDLE,
    ] {
        assert!(own.contains_key(var), "SnapshotFunction does not set {var}");
    }
    for binary in ["deploy", "rotate", "pagerduty", "remediate", "snapshot"] {
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

// ---------------------------------------------------------------------------
// snapshot
// ---------------------------------------------------------------------------

const SNAPSHOT_EVENT: &str = "RDS DB Snapshot Event";
const CLUSTER_SNAPSHOT_EVENT: &str = "RDS DB Cluster Snapshot Event";
const INSTANCE_EVENT: &str = "RDS DB Instance Event";
const DR: &str = "us-west-2";

/// An RDS event as EventBridge delivers it; `event_id` `None` leaves `EventID` out,
/// as older events do.
fn rds_event(
    detail_type: &str,
    region: &str,
    id: &str,
    event_id: Option<&str>,
    message: &str,
) -> Value {
    let mut detail = json!({
        "EventCategories": ["notification"],
        "SourceIdentifier": id,
        "Date": "2026-11-24T03:12:00.000Z",
        "Message": message,
    });
    if let Some(e) = event_id {
        detail["EventID"] = json!(e);
    }
    json!({
        "version": "0",
        "id": "68f6e973-1a0c-d37b-f2f2-94a7f62ffd4e",
        "detail-type": detail_type,
        "source": "aws.rds",
        "account": "123456789012",
        "time": "2026-11-24T03:12:00Z",
        "region": region,
        "resources": [],
        "detail": detail
    })
}

/// The samples under events/snapshot/, by file name.
fn snapshot_samples() -> Vec<(String, Value)> {
    let Ok(dir) = std::fs::read_dir(root().join("events/snapshot")) else {
        return Vec::new();
    };
    let mut samples: Vec<(String, Value)> = dir
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".json") && !name.starts_with("malformed-")
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

fn snapshot_rule() -> Value {
    event_pattern("SnapshotFunction", "SnapshotEvents", &[], &[])
}

fn drill_rule() -> Value {
    event_pattern("SnapshotFunction", "DrillInstanceEvents", &[], &[])
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("a list: {v}"))
        .iter()
        .filter_map(|e| match e {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o.get("prefix").and_then(Value::as_str).map(str::to_string),
            _ => None,
        })
        .collect()
}

fn acts_on(event: &Value) -> bool {
    matches!(
        snapshot_event::parse(event.clone()),
        Ok(SnapshotInput::Snapshot { .. })
    )
}

/// The rule takes exactly the snapshot events whose EventID the handler acts on:
/// every EventID from RDS-EVENT-0000 to 0999, on instance and cluster snapshots.
#[test]
fn the_snapshot_rule_takes_exactly_the_event_ids_the_handler_acts_on() {
    let pattern = snapshot_rule();
    for n in 0..1000 {
        let event_id = format!("RDS-EVENT-{n:04}");
        for detail_type in [SNAPSHOT_EVENT, CLUSTER_SNAPSHOT_EVENT] {
            let event = rds_event(
                detail_type,
                REGION_SOURCE,
                "autopilot-orders-db-202611240300",
                Some(&event_id),
                "some message",
            );
            assert_eq!(
                pattern_matches(&pattern, &event),
                acts_on(&event),
                "{detail_type} {event_id}: the rule and the handler disagree"
            );
        }
    }
}

const REGION_SOURCE: &str = "us-east-1";

/// Events without an EventID are recognised by their Message, so the rule must
/// let them through on the Message, and only those the handler acts on.
#[test]
fn the_snapshot_rule_takes_events_without_an_event_id_by_their_message() {
    let pattern = snapshot_rule();
    let branches = pattern["detail"]["$or"]
        .as_array()
        .expect("detail.$or: by EventID, or by Message when there is none");
    let by_message = branches
        .iter()
        .find(|b| b.get("Message").is_some())
        .expect("a branch on Message");
    assert_eq!(by_message["EventID"], json!([{"exists": false}]));
    let prefixes = strings(&by_message["Message"]);
    assert!(!prefixes.is_empty());
    for prefix in &prefixes {
        for detail_type in [SNAPSHOT_EVENT, CLUSTER_SNAPSHOT_EVENT] {
            let event = rds_event(
                detail_type,
                REGION_SOURCE,
                "orders-db-keep",
                None,
                &format!("{prefix} orders-db-keep"),
            );
            assert!(pattern_matches(&pattern, &event), "{prefix}");
            assert!(acts_on(&event), "{prefix}: the handler ignores it");
            // With an EventID, the Message no longer decides.
            let other = rds_event(
                detail_type,
                REGION_SOURCE,
                "orders-db-keep",
                Some("RDS-EVENT-0041"),
                prefix,
            );
            assert!(!pattern_matches(&pattern, &other), "{prefix} with 0041");
        }
    }
    for message in ["Deleted manual snapshot", "Creating manual snapshot", ""] {
        let event = rds_event(SNAPSHOT_EVENT, REGION_SOURCE, "x", None, message);
        assert!(!pattern_matches(&pattern, &event), "{message}");
        assert!(!acts_on(&event), "{message}");
    }
}

/// Every sample RDS event under events/snapshot/ is taken by one of snapshot's
/// rules, and is one the handler acts on; the scheduled ones are what the
/// template's schedules send.
#[test]
fn every_snapshot_sample_is_taken_by_a_rule_or_sent_by_a_schedule() {
    let samples = snapshot_samples();
    if samples.is_empty() {
        return;
    }
    let (snapshots, drills) = (snapshot_rule(), drill_rule());
    let time = "2026-11-24T03:00:00Z";
    let backup = scheduled_event("SnapshotFunction", "DailyBackup", time);
    let check = scheduled_event("SnapshotFunction", "HourlyCheck", time);
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    for (name, event) in &samples {
        let parsed = snapshot_event::parse(event.clone())
            .unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
        match parsed {
            SnapshotInput::Snapshot { .. } => {
                assert!(pattern_matches(&snapshots, event), "{name}: {snapshots}");
                assert!(!pattern_matches(&drills, event), "{name}");
            }
            SnapshotInput::Drill { .. } => {
                assert!(pattern_matches(&drills, event), "{name}: {drills}");
                assert!(!pattern_matches(&snapshots, event), "{name}");
            }
            SnapshotInput::Schedule { backup: b, .. } => {
                let sent = if b { &backup } else { &check };
                assert_eq!(keys(event), keys(sent), "{name}");
                for key in ["version", "source", "detail-type", "detail"] {
                    assert_eq!(event[key], sent[key], "{name}: {key}");
                }
            }
            SnapshotInput::Ignore { reason, .. } => panic!("{name} is ignored: {reason}"),
        }
    }
}

/// Scheduler's Input is the envelope the handler takes, with the scheduled
/// time in `time` (the backup names its snapshots after it).
#[test]
fn the_snapshot_schedules_send_the_backup_and_the_check() {
    let time = "2026-11-24T03:00:00Z";
    for (event, backup) in [("DailyBackup", true), ("HourlyCheck", false)] {
        let sent = scheduled_event("SnapshotFunction", event, time);
        match snapshot_event::parse(sent.clone()) {
            Ok(SnapshotInput::Schedule { backup: b, time: t }) => {
                assert_eq!(b, backup, "{event}");
                assert_eq!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), time);
            }
            other => panic!("{event}: {other:?}"),
        }
        let task = if backup {
            snapshot_event::BACKUP_TASK
        } else {
            snapshot_event::CHECK_TASK
        };
        assert_eq!(sent["detail"], json!({ "task": task }));
        let deploy = scheduled_event("DeployFunction", "StaleDeploymentSweep", time);
        for key in ["version", "source", "detail-type", "time"] {
            assert_eq!(sent[key], deploy[key], "{event}: {key}");
        }
    }
    let p = properties("SnapshotFunction");
    assert_eq!(
        p["Events"]["DailyBackup"]["Properties"]["ScheduleExpression"],
        json!({"Ref": "SnapshotBackupScheduleExpression"})
    );
    assert_eq!(
        template()["Parameters"]["SnapshotBackupScheduleExpression"]["Default"],
        "cron(0 3 * * ? *)"
    );
}

#[test]
fn the_drill_rule_takes_drill_instance_events_only() {
    let pattern = drill_rule();
    let drill = rds_event(
        INSTANCE_EVENT,
        DR,
        "autopilot-drill-orders-db",
        Some("RDS-EVENT-0005"),
        "DB instance created",
    );
    assert!(pattern_matches(&pattern, &drill));
    assert!(matches!(
        snapshot_event::parse(drill),
        Ok(SnapshotInput::Drill { .. })
    ));
    let production = rds_event(
        INSTANCE_EVENT,
        REGION_SOURCE,
        "orders-db",
        Some("RDS-EVENT-0002"),
        "Finished DB Instance backup",
    );
    assert!(!pattern_matches(&pattern, &production));
    assert!(!pattern_matches(&snapshot_rule(), &production));
}

/// What snapshot reads with the template's defaults is what it reads with no
/// setting at all, with and without a DR region.
#[test]
fn snapshot_parameter_defaults_are_the_code_defaults() {
    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:oncall";
    const DATABASES: &str = r#"[{"instance":"orders-db"},{"cluster":"orders-aurora"}]"#;
    let parameter = |name: &str, set: &[(&str, &str)]| -> String {
        if let Some((_, v)) = set.iter().find(|(p, _)| *p == name) {
            return v.to_string();
        }
        match &template()["Parameters"][name]["Default"] {
            Value::String(s) => s.clone(),
            Value::Null => panic!("parameter {name} has no default"),
            other => other.to_string(),
        }
    };
    let from_template = |set: &[(&str, &str)]| {
        let globals = &template()["Globals"]["Function"]["Environment"]["Variables"];
        let own = &properties("SnapshotFunction")["Environment"]["Variables"];
        let mut vars: Vec<(String, String)> = vec![("AWS_REGION".into(), REGION_SOURCE.into())];
        for (name, value) in globals
            .as_object()
            .unwrap()
            .iter()
            .chain(own.as_object().unwrap())
        {
            let value = resolve_env(value, &|p| match p {
                "OnCallTopic" => TOPIC.to_string(),
                p => parameter(p, set),
            });
            vars.push((name.clone(), value));
        }
        snapshot::config::Config::from_lookup(move |key| {
            vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        })
        .unwrap()
    };
    let bare = |extra: &[(&str, &str)]| {
        let mut vars = vec![
            (TOPIC_ARN.to_string(), TOPIC.to_string()),
            ("AWS_REGION".to_string(), REGION_SOURCE.to_string()),
            (
                snapshot::config::DATABASES.to_string(),
                DATABASES.to_string(),
            ),
        ];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        snapshot::config::Config::from_lookup(move |key| {
            vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        })
        .unwrap()
    };
    assert_eq!(
        from_template(&[("SnapshotDatabases", DATABASES)]),
        bare(&[])
    );
    assert_eq!(
        from_template(&[("SnapshotDatabases", DATABASES), ("SnapshotDrRegion", DR)]),
        bare(&[(snapshot::config::DR_REGION, DR)])
    );
    // An own DR retention, and without it the source region's.
    let c = from_template(&[
        ("SnapshotDatabases", DATABASES),
        ("SnapshotRetentionDays", "14"),
    ]);
    assert_eq!((c.retention_days, c.dr_retention_days), (14, 14));
    let c = from_template(&[
        ("SnapshotDatabases", DATABASES),
        ("SnapshotRetentionDays", "14"),
        ("SnapshotDrRetentionDays", "30"),
    ]);
    assert_eq!((c.retention_days, c.dr_retention_days), (14, 30));
}

/// An environment value of the template: a `Ref`, a plain value, or an `Fn::If`
/// on whether a parameter is set.
fn resolve_env(value: &Value, parameter: &dyn Fn(&str) -> String) -> String {
    if let Some(name) = value["Ref"].as_str() {
        return parameter(name);
    }
    if let Some(branches) = value["Fn::If"].as_array() {
        let condition = branches[0].as_str().unwrap();
        let c = &template()["Conditions"][condition];
        // Conditions of the form !Not [!Equals [!Ref P, ""]].
        let p = c["Fn::Not"][0]["Fn::Equals"][0]["Ref"]
            .as_str()
            .unwrap_or_else(|| panic!("condition {condition} is not `P is set`: {c}"));
        let holds = !parameter(p).is_empty();
        return resolve_env(&branches[if holds { 1 } else { 2 }], parameter);
    }
    value.as_str().expect("a plain value").to_string()
}

/// The snapshot function exists only when configured, runs one invocation at a
/// time, and has the time for a drill's login.
#[test]
fn the_snapshot_function_is_conditional_serial_and_has_time_for_a_drill() {
    let r = &template()["Resources"]["SnapshotFunction"];
    assert_eq!(r["Condition"], "HasSnapshotDatabases");
    let p = properties("SnapshotFunction");
    assert_eq!(p["Timeout"], 120);
    assert_eq!(p["ReservedConcurrentExecutions"], 1);
    assert_eq!(
        p["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Destination"],
        json!({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]})
    );
    assert_eq!(p["VpcConfig"]["Fn::If"][0], "HasSnapshotVpc");
    for event in ["SnapshotEvents", "DrillInstanceEvents"] {
        assert_eq!(
            p["Events"][event]["Properties"]["DeadLetterConfig"]["Arn"],
            json!({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}),
            "{event}"
        );
        // EventBridge may put what it could not deliver on the queue.
        let allowed = &properties("DeadLetterQueuePolicy")["PolicyDocument"]["Statement"][0]
            ["Condition"]["ArnEquals"]["aws:SourceArn"];
        let arn = json!({"Fn::GetAtt": [format!("SnapshotFunction{event}"), "Arn"]});
        assert!(
            allowed
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["Fn::If"][1] == arn),
            "{event} may not use the dead-letter queue"
        );
    }
}

/// The statements of a function's inline policy, each `Fn::If` taken as set.
fn statements(logical_id: &str) -> Vec<Value> {
    properties(logical_id)["Policies"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["Statement"].as_array())
        .flatten()
        .map(|s| s.get("Fn::If").map_or_else(|| s.clone(), |b| b[1].clone()))
        .collect()
}

fn statement(logical_id: &str, sid: &str) -> Value {
    statements(logical_id)
        .into_iter()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("{logical_id} has no statement {sid}"))
}

/// The ARN patterns of a statement, `Fn::Sub` text as written (`Fn::If` as set).
fn resources(statement: &Value) -> Vec<String> {
    let one = |r: &Value| -> Option<String> {
        let r = r.get("Fn::If").map_or(r, |b| &b[1]);
        r["Fn::Sub"]
            .as_str()
            .or(r.as_str())
            .map(str::to_string)
            .or_else(|| r["Ref"].as_str().map(|p| format!("Ref:{p}")))
    };
    match &statement["Resource"] {
        Value::Array(list) => list.iter().filter_map(one).collect(),
        other => one(other).into_iter().collect(),
    }
}

/// snapshot writes only autopilot's snapshots and drill instances, by name;
/// "*" only where the Service Authorization Reference leaves no choice.
#[test]
fn snapshot_writes_only_what_autopilot_names() {
    const SRC: &str = "arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:";
    const DRA: &str = "arn:${AWS::Partition}:rds:${SnapshotDrRegion}:${AWS::AccountId}:";
    let own = resources(&statement(
        "SnapshotFunction",
        "OwnSnapshotsInTheSourceRegion",
    ));
    assert_eq!(
        own,
        [
            format!("{SRC}snapshot:autopilot-*"),
            format!("{SRC}cluster-snapshot:autopilot-*")
        ]
    );
    let copies = resources(&statement("SnapshotFunction", "OwnCopiesInTheDrRegion"));
    assert_eq!(
        copies,
        [
            format!("{DRA}snapshot:autopilot-dr-*"),
            format!("{DRA}cluster-snapshot:autopilot-dr-*")
        ]
    );
    let copy = resources(&statement("SnapshotFunction", "CopyToTheDrRegion"));
    for target in &copies {
        assert!(copy.contains(target), "copies go to {target}");
    }
    assert!(
        copy.iter()
            .all(|r| r.starts_with(SRC) || copies.contains(r)),
        "a copy lands only on an autopilot-dr-* name: {copy:?}"
    );
    let drills = statement("SnapshotFunction", "FollowAndRemoveDrillInstances");
    assert_eq!(resources(&drills), [format!("{DRA}db:autopilot-drill-*")]);
    let restore = resources(&statement("SnapshotFunction", "RestoreDrillInstances"));
    assert!(restore.contains(&format!("{DRA}db:autopilot-drill-*")));
    assert!(restore.contains(&format!("{DRA}snapshot:autopilot-dr-*")));
    assert!(restore.iter().all(|r| r.starts_with(DRA)), "{restore:?}");
    // Every delete is of one of those.
    for s in statements("SnapshotFunction") {
        let actions = match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a.iter().map(|a| a.as_str().unwrap().to_string()).collect(),
            other => panic!("{other}"),
        };
        if actions.iter().any(|a| a.starts_with("rds:Delete")) {
            assert!(
                resources(&s).iter().all(|r| r.ends_with(":autopilot-*")
                    || r.ends_with(":autopilot-dr-*")
                    || r.ends_with(":autopilot-drill-*")),
                "{}: {s}",
                s["Sid"]
            );
        }
        if resources(&s).iter().any(|r| r == "*") {
            assert!(
                actions == ["rds:DescribeAccountAttributes"]
                    || actions == ["rds:CrossRegionCommunication"],
                "\"*\" for {actions:?}: the reference gives these resource types"
            );
        }
        if actions.iter().any(|a| a.starts_with("kms:")) {
            assert!(
                s["Condition"]["StringEquals"]["kms:ViaService"].is_string()
                    || s["Condition"]["StringEquals"]["kms:ViaService"].is_array()
                    || s["Condition"]["StringEquals"]["kms:ViaService"].is_object(),
                "{}: a key only through its service",
                s["Sid"]
            );
        }
    }
    let dr_key = statement("SnapshotFunction", "DrKeyThroughRds");
    assert_eq!(
        dr_key["Condition"]["StringEquals"]["kms:ViaService"],
        json!({"Fn::Sub": "rds.${SnapshotDrRegion}.amazonaws.com"})
    );
    assert_eq!(
        dr_key["Action"],
        json!(["kms:CreateGrant", "kms:DescribeKey"])
    );
}

/// Deploy's pre-deploy snapshots: grants and the rule only when
/// DeploySnapshotInstanceArns is set, scoped to deploy's own snapshots.
#[test]
fn deploy_snapshots_only_when_configured_and_only_its_own() {
    let conditional: Vec<Value> = properties("DeployFunction")["Policies"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["Statement"].as_array())
        .flatten()
        .filter_map(|s| s.get("Fn::If").cloned())
        .filter(|b| b[0] == "HasDeploySnapshots")
        .map(|b| {
            assert_eq!(b[2], json!({"Ref": "AWS::NoValue"}));
            b[1].clone()
        })
        .collect();
    assert_eq!(conditional.len(), 2, "{conditional:?}");
    let instances = statement(
        "DeployFunction",
        "SnapshotTheConfiguredInstancesBeforeDeploys",
    );
    assert_eq!(
        instances["Resource"],
        json!({"Ref": "DeploySnapshotInstanceArns"})
    );
    let own = statement("DeployFunction", "PreDeploySnapshots");
    assert_eq!(
        resources(&own),
        ["arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:snapshot:autopilot-*-predeploy-*"]
    );
    let pre_deploy_id = autopilot_shared::backup::pre_deploy_id(
        "orders-db",
        chrono::DateTime::parse_from_rfc3339("2026-11-24T03:10:42Z")
            .unwrap()
            .into(),
        "sha256:abcdef0123456789",
    );
    assert!(
        autopilot_shared::backup::is_pre_deploy_id(&pre_deploy_id)
            && pre_deploy_id.starts_with("autopilot-")
            && pre_deploy_id.contains("-predeploy-"),
        "{pre_deploy_id} is not covered by autopilot-*-predeploy-*"
    );
    for id in [
        "DeploySnapshotCreatedRule",
        "DeploySnapshotCreatedPermission",
    ] {
        assert_eq!(
            template()["Resources"][id]["Condition"],
            "HasDeploySnapshots",
            "{id}"
        );
    }
    let pattern = rule_pattern(template(), "DeploySnapshotCreatedRule", &[], &[]);
    let created = rds_event(
        SNAPSHOT_EVENT,
        REGION_SOURCE,
        &pre_deploy_id,
        Some("RDS-EVENT-0042"),
        "Manual snapshot created",
    );
    assert!(pattern_matches(&pattern, &created));
    let old = rds_event(
        SNAPSHOT_EVENT,
        REGION_SOURCE,
        &pre_deploy_id,
        None,
        "Manual snapshot created",
    );
    assert!(pattern_matches(&pattern, &old));
    for (id, event_id) in [
        (pre_deploy_id.as_str(), "RDS-EVENT-0041"),
        ("before-migration-42", "RDS-EVENT-0042"),
    ] {
        let other = rds_event(SNAPSHOT_EVENT, REGION_SOURCE, id, Some(event_id), "x");
        assert!(!pattern_matches(&pattern, &other), "{id} {event_id}");
    }
    let target = &properties("DeploySnapshotCreatedRule")["Targets"][0];
    assert_eq!(
        target["Arn"],
        json!({"Fn::GetAtt": ["DeployFunction", "Arn"]})
    );
    assert_eq!(
        target["DeadLetterConfig"]["Arn"],
        json!({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]})
    );
    assert_eq!(
        properties("DeploySnapshotCreatedPermission")["SourceArn"],
        json!({"Fn::GetAtt": ["DeploySnapshotCreatedRule", "Arn"]})
    );
}

// ---------------------------------------------------------------------------
// dr-region.yaml
// ---------------------------------------------------------------------------

/// The DR region's stack forwards copy finished (0060, 0197), copy cancelled
/// (0061, 0190) and drill instance events to the source region's default bus,
/// where snapshot's own rules take each of them; created events stay there.
#[test]
fn the_dr_region_stack_forwards_copy_and_drill_events_to_the_source_bus() {
    let dr = dr_region();
    let snapshots = rule_pattern(dr, "SnapshotEventsRule", &[], &[]);
    let drills = rule_pattern(dr, "DrillInstanceEventsRule", &[], &[]);
    let (main_snapshots, main_drills) = (snapshot_rule(), drill_rule());
    for event_id in ["0060", "0197", "0061", "0190"] {
        for detail_type in [SNAPSHOT_EVENT, CLUSTER_SNAPSHOT_EVENT] {
            let event = rds_event(
                detail_type,
                DR,
                "autopilot-dr-rds-orders-db-2026-11-24-03-10",
                Some(&format!("RDS-EVENT-{event_id}")),
                "x",
            );
            assert!(
                pattern_matches(&snapshots, &event),
                "{detail_type} {event_id}"
            );
            assert!(pattern_matches(&main_snapshots, &event), "{event_id}");
            assert!(acts_on(&event), "{event_id}");
        }
    }
    for event_id in ["0042", "0091", "0075", "0169", "0041"] {
        let event = rds_event(
            SNAPSHOT_EVENT,
            DR,
            "x",
            Some(&format!("RDS-EVENT-{event_id}")),
            "x",
        );
        assert!(
            !pattern_matches(&snapshots, &event),
            "{event_id} is forwarded"
        );
    }
    // Without an EventID, by the Message, as the main rule and the handler read it.
    let old = rds_event(
        SNAPSHOT_EVENT,
        DR,
        "autopilot-dr-x",
        None,
        "Finished copy of snapshot x from region us-east-1",
    );
    assert!(pattern_matches(&snapshots, &old) && pattern_matches(&main_snapshots, &old));
    // Whatever is forwarded, the main stack takes.
    for n in 0..1000 {
        let event = rds_event(
            SNAPSHOT_EVENT,
            DR,
            "x",
            Some(&format!("RDS-EVENT-{n:04}")),
            "x",
        );
        if pattern_matches(&snapshots, &event) {
            assert!(pattern_matches(&main_snapshots, &event), "RDS-EVENT-{n:04}");
        }
    }
    let drill = rds_event(
        INSTANCE_EVENT,
        DR,
        "autopilot-drill-orders-db",
        Some("RDS-EVENT-0043"),
        "Restored from snapshot autopilot-dr-x",
    );
    assert!(pattern_matches(&drills, &drill) && pattern_matches(&main_drills, &drill));
    let production = rds_event(
        INSTANCE_EVENT,
        DR,
        "orders-db-replica",
        Some("RDS-EVENT-0002"),
        "x",
    );
    assert!(!pattern_matches(&drills, &production));
    // The DR region samples, as RDS sends them there.
    for (name, event) in snapshot_samples() {
        if event["region"] != DR {
            continue;
        }
        assert!(
            pattern_matches(&snapshots, &event) || pattern_matches(&drills, &event),
            "{name} is not forwarded"
        );
    }
}

/// Both rules target the source region's default bus with a role that may put
/// events there and nowhere else, and keep what they could not deliver.
#[test]
fn the_dr_region_stack_puts_events_only_on_the_source_bus() {
    let dr = dr_region();
    let bus = json!({"Fn::Sub": "arn:${AWS::Partition}:events:${SourceRegion}:${AWS::AccountId}:event-bus/default"});
    for rule in ["SnapshotEventsRule", "DrillInstanceEventsRule"] {
        let targets = dr["Resources"][rule]["Properties"]["Targets"]
            .as_array()
            .unwrap();
        assert_eq!(targets.len(), 1, "{rule}");
        assert_eq!(targets[0]["Arn"], bus, "{rule}");
        assert_eq!(
            targets[0]["RoleArn"],
            json!({"Fn::GetAtt": ["ForwardingRole", "Arn"]}),
            "{rule}"
        );
        assert_eq!(
            targets[0]["DeadLetterConfig"]["Arn"],
            json!({"Fn::GetAtt": ["ForwardingDeadLetterQueue", "Arn"]}),
            "{rule}"
        );
    }
    let role = &dr["Resources"]["ForwardingRole"]["Properties"];
    assert_eq!(
        role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"],
        "events.amazonaws.com"
    );
    let policies = role["Policies"].as_array().unwrap();
    assert_eq!(policies.len(), 1);
    let statements = policies[0]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(statements[0]["Action"], "events:PutEvents");
    assert_eq!(statements[0]["Resource"], bus);
    // Not deployable in the source region itself, where it would loop.
    assert!(dr["Rules"]["NotTheSourceRegion"]["Assertions"].is_array());
}

/// Every inline policy keeps a statement when every condition is false (IAM
/// refuses a policy with none: MalformedPolicyDocument), and rotate, which makes
/// its passwords itself, is not allowed GetRandomPassword.
#[test]
fn every_inline_policy_has_an_unconditional_statement_and_rotate_makes_its_own_passwords() {
    let resources = &template()["Resources"];
    let functions: Vec<&String> = resources
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(id, _)| id)
        .collect();
    assert!(functions.len() >= 5, "{functions:?}");
    for id in functions {
        let Some(policies) = resources[id]["Properties"]["Policies"].as_array() else {
            continue;
        };
        for policy in policies.iter().filter(|p| p["Statement"].is_array()) {
            let unconditional = policy["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s.get("Fn::If").is_none())
                .count();
            assert!(unconditional > 0, "{id}: an inline policy can end up empty");
        }
    }
    for s in statements("RotateFunction") {
        let actions = match &s["Action"] {
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            Value::String(one) => vec![one.as_str()],
            _ => vec![],
        };
        if actions.contains(&"secretsmanager:GetRandomPassword") {
            assert_eq!(s["Effect"], "Deny", "{s}");
        }
    }
}
