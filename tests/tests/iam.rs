//! Every AWS operation a function made anywhere in the suite is granted to that
//! function by `template.yaml`. moto checks no IAM, so this is what stands
//! between the tests and an AccessDenied in production.
//!
//! The emulator of every test binary logs each call a function makes (its SDK app
//! name and the SigV4 signing service) under `target/aws-calls/`. The check reads
//! them all, so it runs after the rest of the suite: `make test` runs it last, with
//! `--ignored`.

use autopilot_tests::call_log_dir;
use autopilot_tests::template::properties;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The function's logical id in the template, by its SDK app name.
const FUNCTIONS: &[(&str, &str)] = &[
    ("autopilot-deploy", "DeployFunction"),
    ("autopilot-rotate", "RotateFunction"),
    ("autopilot-pagerduty", "PagerDutyRelayFunction"),
    ("autopilot-remediate", "RemediateFunction"),
    ("autopilot-snapshot", "SnapshotFunction"),
];

/// Calls the suite must have seen, so the check cannot pass on an empty log.
const EXPECTED: &[(&str, &str)] = &[
    ("autopilot-deploy", "ecs:UpdateService"),
    ("autopilot-deploy", "ecs:ListTasks"),
    ("autopilot-deploy", "sns:Publish"),
    ("autopilot-rotate", "secretsmanager:PutSecretValue"),
    ("autopilot-rotate", "rds:DescribeDBInstances"),
    ("autopilot-rotate", "ecs:UpdateService"),
    ("autopilot-pagerduty", "secretsmanager:GetSecretValue"),
    ("autopilot-remediate", "cloudwatch:DescribeAlarms"),
    ("autopilot-remediate", "dynamodb:PutItem"),
    ("autopilot-snapshot", "rds:DescribeDBSnapshots"),
    ("autopilot-snapshot", "rds:CopyDBSnapshot"),
];

/// Every AWS call remediate's code makes, by SigV4 signing name: what the
/// template must grant it before any integration test has run.
const REMEDIATE_CALLS: &[(&str, &str)] = &[
    ("monitoring", "DescribeAlarms"),
    ("monitoring", "ListTagsForResource"),
    ("monitoring", "GetMetricData"),
    ("dynamodb", "GetItem"),
    ("dynamodb", "PutItem"),
    ("dynamodb", "DeleteItem"),
    ("dynamodb", "Query"),
    ("ecs", "DescribeServices"),
    ("ecs", "UpdateService"),
    ("ecs", "DescribeTaskDefinition"),
    ("application-autoscaling", "DescribeScalableTargets"),
    ("application-autoscaling", "RegisterScalableTarget"),
    ("rds", "DescribeDBInstances"),
    ("rds", "ModifyDBInstance"),
    ("sns", "Publish"),
    ("sns", "GetTopicAttributes"),
];

/// Every AWS call snapshot's code makes (functions/snapshot/src: observe, apply,
/// drill, and the pager), by SigV4 signing name.
const SNAPSHOT_CALLS: &[(&str, &str)] = &[
    ("rds", "DescribeDBSnapshots"),
    ("rds", "DescribeDBClusterSnapshots"),
    ("rds", "DescribeDBInstances"),
    ("rds", "DescribeAccountAttributes"),
    ("rds", "CreateDBSnapshot"),
    ("rds", "CreateDBClusterSnapshot"),
    ("rds", "CopyDBSnapshot"),
    ("rds", "CopyDBClusterSnapshot"),
    ("rds", "AddTagsToResource"),
    ("rds", "DeleteDBSnapshot"),
    ("rds", "DeleteDBClusterSnapshot"),
    ("rds", "RestoreDBInstanceFromDBSnapshot"),
    ("rds", "DeleteDBInstance"),
    ("secretsmanager", "GetSecretValue"),
    ("sns", "Publish"),
    ("sns", "GetTopicAttributes"),
];

/// Permissions snapshot needs that are not calls of its own: the permission-only
/// action of a cross-region copy, and what RDS and Secrets Manager do with KMS
/// keys on its behalf (Service Authorization Reference for Amazon RDS; RDS User
/// Guide, "AWS KMS key management").
const SNAPSHOT_ON_ITS_BEHALF: &[&str] = &[
    "rds:CrossRegionCommunication",
    "kms:CreateGrant",
    "kms:DescribeKey",
    "kms:Decrypt",
];

/// The IAM prefix of a SigV4 signing name, where they differ. CloudWatch signs as
/// `monitoring`; Application Auto Scaling signs as `application-autoscaling`, its
/// IAM prefix too, as do the other services the functions call.
fn iam_prefix(service: &str) -> &str {
    match service {
        "monitoring" => "cloudwatch",
        other => other,
    }
}

/// Every `prefix:Operation` each function called, from every binary's call log.
fn called() -> BTreeMap<String, BTreeSet<String>> {
    let dir = call_log_dir();
    let mut calls: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run the whole suite first (make test)",
            dir.display()
        )
    }) {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            let call: Value = serde_json::from_str(line).unwrap();
            calls
                .entry(call["function"].as_str().unwrap().to_string())
                .or_default()
                .insert(format!(
                    "{}:{}",
                    iam_prefix(call["service"].as_str().unwrap()),
                    call["operation"].as_str().unwrap()
                ));
        }
    }
    calls
}

/// The actions a function's policies allow: inline statements (either branch of
/// an `Fn::If`), and the SAM policy templates the template uses.
fn granted(logical_id: &str) -> Vec<String> {
    let mut actions = Vec::new();
    for policy in properties(logical_id)["Policies"].as_array().unwrap() {
        let policy = policy.as_object().unwrap();
        if policy.contains_key("SNSPublishMessagePolicy") {
            actions.push("sns:Publish".to_string());
        }
        if policy.contains_key("SQSSendMessagePolicy") {
            actions.push("sqs:SendMessage".to_string());
        }
        let Some(statements) = policy.get("Statement").and_then(Value::as_array) else {
            continue;
        };
        for statement in statements {
            let statement = match statement.get("Fn::If") {
                Some(branches) => &branches[1],
                None => statement,
            };
            if statement["Effect"] != "Allow" {
                continue;
            }
            match &statement["Action"] {
                Value::String(a) => actions.push(a.clone()),
                Value::Array(list) => {
                    actions.extend(list.iter().map(|a| a.as_str().unwrap().to_string()))
                }
                other => panic!("{logical_id}: Action {other}"),
            }
        }
    }
    actions
}

/// IAM action matching: case-insensitive, with `*` wildcards.
fn allows(pattern: &str, action: &str) -> bool {
    let (pattern, action) = (pattern.to_ascii_lowercase(), action.to_ascii_lowercase());
    match pattern.split_once('*') {
        None => pattern == action,
        Some((head, tail)) => action.starts_with(head) && action[head.len()..].ends_with(tail),
    }
}

#[test]
#[ignore = "reads the call log of the whole suite: `make test` runs it after the rest"]
fn every_call_a_function_makes_is_granted_by_the_template() {
    let called = called();
    for (function, action) in EXPECTED {
        assert!(
            called.get(*function).is_some_and(|c| c.contains(*action)),
            "the suite never saw {function} call {action}; is the call log complete? {called:#?}"
        );
    }
    let mut missing = Vec::new();
    for (function, logical_id) in FUNCTIONS {
        let granted = granted(logical_id);
        for action in called.get(*function).into_iter().flatten() {
            if !granted.iter().any(|g| allows(g, action)) {
                missing.push(format!("{logical_id} ({function}) calls {action}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "template.yaml does not grant:\n{}",
        missing.join("\n")
    );
    let unknown: Vec<_> = called
        .keys()
        .filter(|f| !FUNCTIONS.iter().any(|(name, _)| name == f))
        .collect();
    assert!(
        unknown.is_empty(),
        "calls from functions the check does not know: {unknown:?}"
    );
}

#[test]
fn action_patterns_match_as_iam_does() {
    assert!(allows("ecs:UpdateService", "ecs:UpdateService"));
    assert!(allows("ecs:Describe*", "ecs:DescribeServices"));
    assert!(allows("sqs:SendMessage*", "sqs:SendMessage"));
    assert!(!allows(
        "ecs:UpdateService",
        "ecs:UpdateServicePrimaryTaskSet"
    ));
    assert!(!allows("ecs:Describe*", "ecr:DescribeImages"));
}

#[test]
fn signing_names_map_to_iam_prefixes() {
    assert_eq!(iam_prefix("monitoring"), "cloudwatch");
    assert_eq!(
        iam_prefix("application-autoscaling"),
        "application-autoscaling"
    );
    assert_eq!(iam_prefix("dynamodb"), "dynamodb");
}

/// The grant check above needs a full run's call log; this one holds the template
/// to every call in remediate's code on its own.
#[test]
fn the_template_grants_remediate_every_call_its_code_makes() {
    let granted = granted("RemediateFunction");
    let missing: Vec<String> = REMEDIATE_CALLS
        .iter()
        .map(|(service, operation)| format!("{}:{operation}", iam_prefix(service)))
        .filter(|action| !granted.iter().any(|g| allows(g, action)))
        .collect();
    assert!(
        missing.is_empty(),
        "template.yaml does not grant RemediateFunction: {missing:?}"
    );
    // And nothing else, no wildcard either: the list above and the dead-letter queue.
    let extra: Vec<&String> = granted
        .iter()
        .filter(|g| {
            *g != "sqs:SendMessage"
                && !REMEDIATE_CALLS.iter().any(|(service, operation)| {
                    // Exactly a call: a wildcard grant counts as extra.
                    allows(&format!("{}:{operation}", iam_prefix(service)), g)
                })
        })
        .collect();
    assert!(
        extra.is_empty(),
        "RemediateFunction is granted actions its code does not call: {extra:?}"
    );
}

/// The grant check above needs a full run's call log; this one holds the template
/// to every call in snapshot's code on its own, and to nothing more.
#[test]
fn the_template_grants_snapshot_every_call_its_code_makes() {
    let granted = granted("SnapshotFunction");
    let missing: Vec<String> = SNAPSHOT_CALLS
        .iter()
        .map(|(service, operation)| format!("{}:{operation}", iam_prefix(service)))
        .chain(SNAPSHOT_ON_ITS_BEHALF.iter().map(|a| a.to_string()))
        .filter(|action| !granted.iter().any(|g| allows(g, action)))
        .collect();
    assert!(
        missing.is_empty(),
        "template.yaml does not grant SnapshotFunction: {missing:?}"
    );
    let extra: Vec<&String> = granted
        .iter()
        .filter(|g| {
            *g != "sqs:SendMessage"
                && !SNAPSHOT_ON_ITS_BEHALF.contains(&g.as_str())
                && !SNAPSHOT_CALLS.iter().any(|(service, operation)| {
                    allows(&format!("{}:{operation}", iam_prefix(service)), g)
                })
        })
        .collect();
    assert!(
        extra.is_empty(),
        "SnapshotFunction is granted actions its code does not call: {extra:?}"
    );
}
