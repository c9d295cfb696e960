//! autopilot watching itself (issue #10; docs/reliability.md): the EMF metrics
//! every function emits, checked against the embedded metric format
//! specification; each heartbeat schedule's own `Input` run through its handler
//! against the emulator, with its dependencies there and with one broken; and
//! the alarms and the dashboard in `template.yaml`.
//!
//! The metrics collector is the process's one recorder, so the tests that count
//! and flush take turns ([`TURN`]); the template tests need no emulator.

use autopilot_shared::metrics::{self, name};
use autopilot_shared::pager::{Action, Page, Severity};
use autopilot_shared::{Failure, Pager, Report};
use autopilot_tests::logs::{capture, Captured};
use autopilot_tests::snapshots::{self as rds, DR, SOURCE};
use autopilot_tests::template::{properties, scheduled_event, template};
use autopilot_tests::{Stack, REGION};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tokio::sync::Mutex;

/// Tests that count and flush metrics take turns: every count between two
/// flushes of one test is that test's.
static TURN: Mutex<()> = Mutex::const_new(());

/// Every function: its logical id, its own name (the `Function` dimension
/// outside Lambda), the template condition it exists under.
const FUNCTIONS: &[(&str, &str, Option<&str>)] = &[
    ("DeployFunction", deploy::FUNCTION, None),
    ("RotateFunction", rotate::FUNCTION, None),
    ("RemediateFunction", remediate::FUNCTION, None),
    (
        "SnapshotFunction",
        snapshot::FUNCTION,
        Some("HasSnapshotDatabases"),
    ),
    (
        "PagerDutyRelayFunction",
        pagerduty::FUNCTION,
        Some("HasPagerDuty"),
    ),
];

const TIME: &str = "2026-11-24T10:05:00Z";

/// The EMF lines counted since the last flush, each checked against the
/// specification.
fn flushed() -> Vec<Value> {
    metrics::init();
    let mut out = Vec::new();
    metrics::flush_to(&mut out).expect("flush");
    let text = String::from_utf8(out).expect("EMF lines are UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "every document ends its line: {text}"
    );
    text.lines()
        .map(|line| {
            let errors = metrics::emf_errors(line);
            assert!(errors.is_empty(), "not EMF: {line}\n{errors:#?}");
            serde_json::from_str(line).expect("JSON")
        })
        .collect()
}

/// The value of `metric` of `function` in `docs` (summed over documents), if any.
fn counted(docs: &[Value], function: &str, metric: &str) -> Option<u64> {
    let values: Vec<u64> = docs
        .iter()
        .filter(|d| d[metrics::FUNCTION] == function)
        .filter_map(|d| d.get(metric).and_then(Value::as_u64))
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn invocation(payload: Value) -> LambdaEvent<Value> {
    LambdaEvent::new(payload, Context::default())
}

fn heartbeat(logical_id: &str) -> Value {
    scheduled_event(logical_id, "Heartbeat", TIME)
}

/// What a heartbeat that answered must show: one `check` per dependency named,
/// one Heartbeat counted for `function`, nothing published to the topic.
fn assert_beat(
    stack: &Stack,
    function: &str,
    report: Result<Report, Failure>,
    dependencies: &[&str],
) {
    let report = report.unwrap_or_else(|f| panic!("{function}'s heartbeat failed: {f:?}"));
    for d in dependencies {
        assert!(
            report
                .outcomes
                .iter()
                .any(|o| o.action == "check" && o.resource.contains(d)),
            "{function} did not check {d}: {report:?}"
        );
    }
    let docs = flushed();
    assert_eq!(
        counted(&docs, function, name::HEARTBEAT),
        Some(1),
        "{function}: {docs:#?}"
    );
    assert!(
        !stack.calls().iter().any(|c| c.contains("Publish")),
        "a heartbeat that answered pages no one: {:?}",
        stack.calls()
    );
}

/// What a heartbeat with a broken dependency must show. The invocation answers
/// Ok: a failed one would be retried by Lambda and then fill the dead-letter
/// queue, whose alarm would then stay in ALARM and page no one about a real
/// event dead-lettered later. The report names the dependency with the action
/// `unreachable` and the AWS error; an ERROR line names it too; no Heartbeat is
/// counted, so the heartbeat alarm fires; nothing is published.
fn assert_no_beat(
    stack: &Stack,
    function: &str,
    report: Result<Report, Failure>,
    logs: &Captured,
    dependency: &str,
) {
    let report = report.unwrap_or_else(|f| {
        panic!("{function}: a heartbeat with a broken dependency failed its invocation: {f:?}")
    });
    let down: Vec<_> = report
        .outcomes
        .iter()
        .filter(|o| o.action == metrics::UNREACHABLE)
        .collect();
    assert!(
        down.iter()
            .any(|o| o.resource.contains(dependency) && !o.reason.is_empty()),
        "{function}: no `unreachable` outcome names {dependency}: {report:?}"
    );
    for o in &down {
        assert!(
            o.detail("error_type")
                .is_some_and(|t| t.starts_with("autopilot.AwsCall")),
            "{function}: {o:?}"
        );
    }
    let lines = logs.lines();
    assert!(
        lines.iter().any(|l| l["level"] == "ERROR"
            && l["dependency"]
                .as_str()
                .is_some_and(|d| d.contains(dependency))
            && l["error"].as_str().is_some_and(|e| !e.is_empty())),
        "{function}: no ERROR line names {dependency} and its error: {lines:#?}"
    );
    assert_eq!(
        counted(&flushed(), function, name::HEARTBEAT),
        None,
        "{function} counted a heartbeat with {dependency} down"
    );
    assert!(
        !stack.calls().iter().any(|c| c.contains("Publish")),
        "a heartbeat pages no one: {:?}",
        stack.calls()
    );
}

// ---- the heartbeats, from the template's own schedules ----

fn deploy_services(stack: &Stack, cluster: &str, repository: &str) -> Value {
    json!([{"repository": repository, "cluster": cluster, "service": stack.name("api"),
            "container": "app"}])
}

#[tokio::test]
async fn deploys_heartbeat_reads_the_topic_ecs_and_ecr_and_counts() {
    let _turn = TURN.lock().await;
    flushed();
    let stack = Stack::new("beat_deploy").await;
    let cluster = stack.cluster("prod").await;
    let repository = stack.repository("api").await;
    let f = deploy::Deployer::new(
        &stack.sdk,
        stack.config(deploy_services(&stack, &cluster, &repository), false),
    );
    let report = f.handle(invocation(heartbeat("DeployFunction"))).await;
    assert_beat(
        &stack,
        deploy::FUNCTION,
        report,
        &[&stack.topic_arn, &cluster, &repository],
    );
    let calls = stack.calls();
    for op in ["GetTopicAttributes", "DescribeServices", "DescribeImages"] {
        assert!(calls.iter().any(|c| c.contains(op)), "{op}: {calls:?}");
    }
}

#[tokio::test]
async fn deploys_heartbeat_without_its_topic_answers_ok_naming_it_and_counts_no_heartbeat() {
    let _turn = TURN.lock().await;
    flushed();
    let stack = Stack::new("beat_deploy_topic").await;
    let cluster = stack.cluster("prod").await;
    let repository = stack.repository("api").await;
    let gone = format!("{}-gone", stack.topic_arn);
    let config = deploy::config::Config::from_lookup(autopilot_shared::config::lookup_from(vec![
        (
            autopilot_shared::config::TOPIC_ARN.to_string(),
            gone.clone(),
        ),
        (
            deploy::config::SERVICES.to_string(),
            deploy_services(&stack, &cluster, &repository).to_string(),
        ),
    ]))
    .expect("configuration");
    let f = deploy::Deployer::new(&stack.sdk, config);
    let (report, logs) = capture(f.handle(invocation(heartbeat("DeployFunction")))).await;
    assert_no_beat(
        &stack,
        deploy::FUNCTION,
        report,
        &logs,
        &format!("SNS topic {gone}"),
    );
}

#[tokio::test]
async fn rotates_heartbeat_describes_each_secret_and_writes_nothing() {
    let _turn = TURN.lock().await;
    flushed();
    let stack = Stack::new("beat_rotate").await;
    let secret = stack.create_secret("token", "s3cr3t-value").await;
    let f = rotate::Rotator::new(
        &stack.sdk,
        stack.rotation_config(json!([{"secret": secret, "strategy": "random"}])),
    )
    .expect("rotate cold start");
    // A heartbeat with a rotation request's fields is still the heartbeat: it
    // has an EventBridge source, which Secrets Manager's request never has.
    let mut event = heartbeat("RotateFunction");
    event["SecretId"] = json!(secret);
    event["ClientRequestToken"] = json!("a1b2c3d4-5678-90ab-cdef-EXAMPLE11111");
    event["Step"] = json!("createSecret");
    let report = f.handle(invocation(event)).await;
    assert_beat(
        &stack,
        rotate::FUNCTION,
        report,
        &[&stack.topic_arn, &secret],
    );
    let calls = stack.calls();
    assert!(
        calls.iter().any(|c| c.contains("DescribeSecret")),
        "{calls:?}"
    );
    for write in [
        "PutSecretValue",
        "UpdateSecretVersionStage",
        "GetSecretValue",
    ] {
        assert!(
            !calls.iter().any(|c| c.contains(write)),
            "the heartbeat called {write}: {calls:?}"
        );
    }
}

#[tokio::test]
async fn rotates_heartbeat_without_its_secret_answers_ok_naming_it_and_counts_no_heartbeat() {
    let _turn = TURN.lock().await;
    flushed();
    let stack = Stack::new("beat_rotate_gone").await;
    let secret = stack.name("never-created");
    let f = rotate::Rotator::new(
        &stack.sdk,
        stack.rotation_config(json!([{"secret": secret, "strategy": "random"}])),
    )
    .expect("rotate cold start");
    let (report, logs) = capture(f.handle(invocation(heartbeat("RotateFunction")))).await;
    assert_no_beat(
        &stack,
        rotate::FUNCTION,
        report,
        &logs,
        &format!("secret {secret}"),
    );
}

#[tokio::test]
async fn a_rotation_request_is_never_taken_for_a_heartbeat() {
    let _turn = TURN.lock().await;
    flushed();
    let stack = Stack::new("beat_rotate_request").await;
    let secret = stack.name("never-created");
    let f = rotate::Rotator::new(
        &stack.sdk,
        stack.rotation_config(json!([{"secret": secret, "strategy": "random"}])),
    )
    .expect("rotate cold start");
    // Secrets Manager's request, carrying the heartbeat's detail as well: no
    // `source`, so it is a rotation step, counted as one.
    let mut request = autopilot_tests::rotation::rotation_event(
        "createSecret",
        &secret,
        "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
    );
    request["detail"] = heartbeat("RotateFunction")["detail"].clone();
    let failure = f
        .handle(invocation(request))
        .await
        .expect_err("the secret does not exist");
    assert!(failure.message.contains("DescribeSecret"), "{failure:?}");
    let docs = flushed();
    assert_eq!(counted(&docs, rotate::FUNCTION, name::HEARTBEAT), None);
    let failed = docs
        .iter()
        .find(|d| d.get(name::ROTATION_STEPS_FAILED).is_some())
        .unwrap_or_else(|| panic!("no failed step counted: {docs:#?}"));
    assert_eq!(failed[metrics::STEP], "createSecret");
    assert_eq!(failed[metrics::FUNCTION], rotate::FUNCTION);
}

#[tokio::test]
async fn remediates_heartbeat_reads_its_table_and_cloudwatch() {
    let _turn = TURN.lock().await;
    flushed();
    let stack = Stack::new("beat_remediate").await;
    let table = stack.guard_table().await;
    let f = remediate::Remediator::new(&stack.sdk, stack.remediate_config(&table, &[]));
    let report = f.handle(invocation(heartbeat("RemediateFunction"))).await;
    assert_beat(
        &stack,
        remediate::FUNCTION,
        report,
        &[&table, "CloudWatch alarms"],
    );
}

#[tokio::test]
async fn remediates_heartbeat_without_its_table_answers_ok_naming_it_and_counts_no_heartbeat() {
    let _turn = TURN.lock().await;
    flushed();
    let stack = Stack::new("beat_remediate_table").await;
    let table = stack.name("no-such-table");
    let f = remediate::Remediator::new(&stack.sdk, stack.remediate_config(&table, &[]));
    let (report, logs) = capture(f.handle(invocation(heartbeat("RemediateFunction")))).await;
    assert_no_beat(
        &stack,
        remediate::FUNCTION,
        report,
        &logs,
        &format!("DynamoDB table {table}"),
    );
}

#[tokio::test]
async fn remediate_leaves_autopilots_own_alarms_alone() {
    let stack = Stack::new("self_alarm").await;
    let table = stack.guard_table().await;
    let f = remediate::Remediator::new(&stack.sdk, stack.remediate_config(&table, &[]));
    let name = format!("{}stack-deploy-errors", metrics::SELF_ALARM_PREFIX);
    let event = autopilot_tests::alarms::alarm_event(
        autopilot_tests::alarms::Form::EventBridge,
        &name,
        &format!("arn:aws:cloudwatch:{REGION}:123456789012:alarm:{name}"),
        "ALARM",
        TIME,
    );
    let report = f.handle(invocation(event)).await.expect("ignored");
    assert_eq!(report.actions(), ["ignore"], "{report:?}");
}

fn snapshot_function(stack: &Stack, databases: Value) -> snapshot::Snapshotter {
    let config =
        snapshot::config::Config::from_lookup(autopilot_shared::config::lookup_from(vec![
            (
                autopilot_shared::config::TOPIC_ARN.to_string(),
                stack.topic_arn.clone(),
            ),
            (snapshot::config::AWS_REGION.to_string(), SOURCE.to_string()),
            (
                snapshot::config::DATABASES.to_string(),
                databases.to_string(),
            ),
            (snapshot::config::DR_REGION.to_string(), DR.to_string()),
            (snapshot::config::DR_KMS_KEY.to_string(), rds::kms_key(DR)),
        ]))
        .expect("snapshot configuration");
    snapshot::Snapshotter::new(&stack.sdk, config).expect("snapshot cold start")
}

#[tokio::test]
async fn snapshots_heartbeat_reads_both_regions() {
    let _turn = TURN.lock().await;
    flushed();
    let stack = Stack::new("beat_snapshot").await;
    let db = stack.name("orders");
    rds::create_instance(SOURCE, &db, false).await;
    let f = snapshot_function(&stack, json!([{"instance": db}]));
    let report = f.handle(invocation(heartbeat("SnapshotFunction"))).await;
    assert_beat(&stack, snapshot::FUNCTION, report, &[&db, DR]);
}

#[tokio::test]
async fn snapshots_heartbeat_refused_by_rds_answers_ok_naming_the_database() {
    let _turn = TURN.lock().await;
    flushed();
    let stack = Stack::new("beat_snapshot_refused").await;
    let db = stack.name("orders");
    rds::create_instance(SOURCE, &db, false).await;
    let f = snapshot_function(&stack, json!([{"instance": db}]));
    stack.fail_next("DescribeDBSnapshots", 1, "AccessDenied");
    let (report, logs) = capture(f.handle(invocation(heartbeat("SnapshotFunction")))).await;
    stack.clear_faults(&stack.prefix);
    assert_no_beat(&stack, snapshot::FUNCTION, report, &logs, &db);
}

const ROUTING_KEY: &str = "R0ut1ngKeyR0ut1ngKeyR0ut1ngKey12";

fn relay(stack: &Stack, secret: &str) -> pagerduty::Relay {
    let config = pagerduty::config::Config::from_lookup(|k| {
        (k == pagerduty::config::ROUTING_KEY_SECRET).then(|| secret.to_string())
    })
    .expect("relay configuration");
    pagerduty::Relay::new(&stack.sdk, config)
}

#[tokio::test]
async fn the_relays_heartbeat_reads_the_routing_key_and_posts_nothing() {
    let _turn = TURN.lock().await;
    flushed();
    let stack = Stack::new("beat_relay").await;
    stack.create_secret("pagerduty", ROUTING_KEY).await;
    let secret = stack.name("pagerduty");
    // No PagerDuty is listening: a post would fail the invocation.
    let f = relay(&stack, &secret);
    let report = f
        .handle(invocation(heartbeat("PagerDutyRelayFunction")))
        .await;
    let text = format!("{report:?}");
    assert!(
        !text.contains(ROUTING_KEY),
        "the routing key leaked: {text}"
    );
    assert_beat(&stack, pagerduty::FUNCTION, report, &[&secret]);
}

#[tokio::test]
async fn the_relays_heartbeat_without_its_secret_answers_ok_naming_it_and_counts_no_heartbeat() {
    let _turn = TURN.lock().await;
    flushed();
    let stack = Stack::new("beat_relay_gone").await;
    let secret = stack.name("pagerduty");
    let f = relay(&stack, &secret);
    let (report, logs) = capture(f.handle(invocation(heartbeat("PagerDutyRelayFunction")))).await;
    assert_no_beat(&stack, pagerduty::FUNCTION, report, &logs, &secret);
}

#[tokio::test]
async fn each_handler_refuses_the_heartbeat_of_another() {
    let stack = Stack::new("beat_other").await;
    let before = stack.calls().len();
    let deploy = deploy::Deployer::new(&stack.sdk, stack.config(json!([]), false));
    let refused = deploy
        .handle(invocation(heartbeat("RemediateFunction")))
        .await
        .expect_err("not deploy's task");
    assert_eq!(refused.code, "autopilot.MalformedEvent", "{refused:?}");
    let table = stack.name("guard");
    let remediate = remediate::Remediator::new(&stack.sdk, stack.remediate_config(&table, &[]));
    let refused = remediate
        .handle(invocation(heartbeat("DeployFunction")))
        .await
        .expect_err("not remediate's task");
    assert_eq!(refused.code, "autopilot.MalformedEvent", "{refused:?}");
    let rotate = rotate::Rotator::new(&stack.sdk, stack.rotation_config(json!([])))
        .expect("rotate cold start");
    let refused = rotate
        .handle(invocation(heartbeat("DeployFunction")))
        .await
        .expect_err("not rotate's task");
    assert_eq!(refused.code, "autopilot.MalformedEvent", "{refused:?}");
    let relay = relay(&stack, &stack.name("pagerduty"));
    let refused = relay
        .handle(invocation(heartbeat("DeployFunction")))
        .await
        .expect_err("not the relay's task");
    assert_eq!(refused.code, "autopilot.MalformedEvent", "{refused:?}");
    assert_eq!(
        stack.calls().len(),
        before,
        "a refused event reads nothing: {:?}",
        stack.calls()
    );
}

// ---- metrics the pager counts ----

#[tokio::test]
async fn the_pager_counts_pages_sent_and_failed() {
    let _turn = TURN.lock().await;
    flushed();
    let stack = Stack::new("pages_counted").await;
    let page = Page::new(
        Action::Trigger,
        Severity::Warning,
        "test.page",
        "prod/api",
        "a page to count",
    )
    .dedup_key("autopilot-test/prod/api");
    let sns = aws_sdk_sns::Client::new(&stack.sdk);
    Pager::new(sns.clone(), &stack.topic_arn, deploy::FUNCTION)
        .send(&page)
        .await
        .expect("published");
    Pager::new(sns, format!("{}-gone", stack.topic_arn), deploy::FUNCTION)
        .send(&page)
        .await
        .expect_err("no such topic");
    let docs = flushed();
    assert_eq!(counted(&docs, deploy::FUNCTION, name::PAGES_SENT), Some(1));
    assert_eq!(
        counted(&docs, deploy::FUNCTION, name::PAGES_FAILED),
        Some(1)
    );
    let directive = &docs[0]["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], metrics::NAMESPACE);
    assert_eq!(directive["Dimensions"], json!([[metrics::FUNCTION]]));
}

// ---- template.yaml ----

fn resources() -> &'static serde_json::Map<String, Value> {
    template()["Resources"].as_object().expect("Resources")
}

fn alarms() -> BTreeMap<&'static str, &'static Value> {
    resources()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|(id, r)| (id.as_str(), r))
        .collect()
}

/// The alarm on `metric` of `namespace` whose dimension `dimension` is `value`.
fn alarm_on(namespace: &str, metric: &str, dimension: &str, value: &Value) -> &'static Value {
    let found: Vec<_> = alarms()
        .into_values()
        .filter(|a| {
            let p = &a["Properties"];
            p["Namespace"] == namespace
                && p["MetricName"] == metric
                && p["Dimensions"] == json!([{"Name": dimension, "Value": value}])
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "alarms on {namespace} {metric} {dimension}={value}: {found:#?}"
    );
    found[0]
}

#[test]
fn every_alarm_pages_and_resolves_on_the_on_call_topic() {
    let alarms = alarms();
    assert!(alarms.len() >= 16, "{alarms:#?}");
    for (id, a) in alarms {
        let p = &a["Properties"];
        let topic = json!([{"Ref": "OnCallTopic"}]);
        assert_eq!(p["AlarmActions"], topic, "{id}");
        assert_eq!(p["OKActions"], topic, "{id}");
        assert!(
            p["AlarmDescription"].as_str().is_some_and(|d| d.len() > 20),
            "{id} says what it means"
        );
        // Named so remediate leaves it alone (it pages on-call itself).
        let name = p["AlarmName"]["Fn::Sub"].as_str().unwrap_or_default();
        assert!(
            name.starts_with(metrics::SELF_ALARM_PREFIX) && name.contains("${AWS::StackName}"),
            "{id}: {name}"
        );
    }
}

#[test]
fn every_queue_has_a_depth_alarm() {
    let queues: Vec<&String> = resources()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::SQS::Queue")
        .map(|(id, _)| id)
        .collect();
    assert!(queues.iter().any(|q| *q == "DeadLetterQueue"), "{queues:?}");
    for q in queues {
        let p = &alarm_on(
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "QueueName",
            &json!({"Fn::GetAtt": [q, "QueueName"]}),
        )["Properties"];
        assert_eq!(p["Threshold"], 0, "{q}");
        assert_eq!(p["ComparisonOperator"], "GreaterThanThreshold", "{q}");
        assert_eq!(p["Statistic"], "Maximum", "{q}");
        assert_eq!(p["EvaluationPeriods"], 1, "{q}: one message is enough");
    }
}

#[test]
fn every_function_is_watched_for_errors_throttles_and_its_heartbeat() {
    let functions: Vec<&String> = resources()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(id, _)| id)
        .collect();
    for f in &functions {
        assert!(
            FUNCTIONS.iter().any(|(id, _, _)| id == f),
            "{f} is not watched here: add it to FUNCTIONS"
        );
    }
    for (id, _, condition) in FUNCTIONS {
        assert_eq!(
            resources()[*id].get("Condition").and_then(Value::as_str),
            *condition,
            "{id}'s condition"
        );
        let me = json!({"Ref": id});
        for metric in ["Errors", "Throttles"] {
            let a = alarm_on("AWS/Lambda", metric, "FunctionName", &me);
            assert_eq!(a.get("Condition").and_then(Value::as_str), *condition);
            let p = &a["Properties"];
            assert_eq!(p["Statistic"], "Sum", "{id} {metric}");
            assert_eq!(
                p["TreatMissingData"], "notBreaching",
                "no invocations is fine"
            );
            // Both page only when it lasts: in each of 3 consecutive periods of
            // 5 minutes (DatapointsToAlarm 3 of EvaluationPeriods 3).
            assert_eq!(
                (
                    &p["Period"],
                    &p["EvaluationPeriods"],
                    &p["DatapointsToAlarm"]
                ),
                (&json!(300), &json!(3), &json!(3)),
                "{id} {metric}"
            );
        }
        // Errors: Sum >= 1 in each period. One failed invocation, which Lambda
        // retries 1 and 2 minutes later, spans at most 2 periods: errors that
        // heal themselves (a delivery race, a deliberate failure for a retry)
        // page no one, and an event that fails every retry pages through the
        // dead-letter-queue alarm.
        let errors = &alarm_on("AWS/Lambda", "Errors", "FunctionName", &me)["Properties"];
        assert_eq!(
            (&errors["ComparisonOperator"], &errors["Threshold"]),
            (&json!("GreaterThanOrEqualToThreshold"), &json!(1)),
            "{id} Errors"
        );
        let description = errors["AlarmDescription"].as_str().unwrap_or_default();
        for says in ["three 5-minute periods", "retry", "dead-letter-queue alarm"] {
            assert!(description.contains(says), "{id} Errors: {description}");
        }
        let throttles = &alarm_on("AWS/Lambda", "Throttles", "FunctionName", &me)["Properties"];
        assert_eq!(
            (&throttles["ComparisonOperator"], &throttles["Threshold"]),
            (&json!("GreaterThanThreshold"), &json!(0)),
            "{id} Throttles"
        );
        let beat = alarm_on(metrics::NAMESPACE, name::HEARTBEAT, metrics::FUNCTION, &me);
        assert_eq!(beat.get("Condition").and_then(Value::as_str), *condition);
        let p = &beat["Properties"];
        assert_eq!(p["Statistic"], "Sum");
        assert_eq!(p["Threshold"], 1);
        assert_eq!(p["ComparisonOperator"], "LessThanThreshold");
        // The dead-man's switch: no heartbeat at all is what it is for.
        assert_eq!(p["TreatMissingData"], "breaching", "{id}");
        // Missing for 15 minutes: three periods of the 5-minute schedule.
        assert_eq!(
            (
                &p["Period"],
                &p["EvaluationPeriods"],
                &p["DatapointsToAlarm"]
            ),
            (&json!(300), &json!(3), &json!(3)),
            "{id}"
        );
        let schedule = &properties(id)["Events"]["Heartbeat"]["Properties"];
        assert_eq!(schedule["ScheduleExpression"], "rate(5 minutes)", "{id}");
    }
}

#[test]
fn the_on_call_topics_key_lets_cloudwatch_alarms_publish() {
    assert_eq!(
        properties("OnCallTopic")["KmsMasterKeyId"],
        json!({"Ref": "OnCallTopicKey"}),
        "alias/aws/sns cannot be used by CloudWatch alarms"
    );
    let statements = properties("OnCallTopicKey")["KeyPolicy"]["Statement"]
        .as_array()
        .expect("key policy");
    let cloudwatch = statements
        .iter()
        .find(|s| s["Principal"]["Service"] == "cloudwatch.amazonaws.com")
        .expect("a statement for CloudWatch");
    assert_eq!(cloudwatch["Effect"], "Allow");
    assert_eq!(
        cloudwatch["Action"],
        json!(["kms:Decrypt", "kms:GenerateDataKey*"])
    );
    // Confused deputy: only this account's alarms of this stack on itself.
    assert_eq!(
        cloudwatch["Condition"],
        json!({
            "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
            "ArnLike": {"aws:SourceArn": {"Fn::Sub": SELF_ALARM_ARNS}},
        })
    );
    // ... which covers every alarm the template has, so none is left unable to page.
    let pattern = SELF_ALARM_ARNS.strip_suffix('*').expect("a prefix pattern");
    for (id, a) in alarms() {
        let name = a["Properties"]["AlarmName"]["Fn::Sub"]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: AlarmName is not an Fn::Sub"));
        let arn = format!(
            "arn:${{AWS::Partition}}:cloudwatch:${{AWS::Region}}:${{AWS::AccountId}}:alarm:{name}"
        );
        assert!(
            arn.starts_with(pattern),
            "{id}: {arn} is not {SELF_ALARM_ARNS}"
        );
        assert!(!arn[pattern.len()..].contains("${"), "{id}: {arn}");
    }
    // Publishers in the account use it through SNS, as they did alias/aws/sns.
    let through_sns = statements
        .iter()
        .find(|s| s["Principal"]["AWS"] == "*")
        .expect("a statement for the account's publishers");
    assert_eq!(
        through_sns["Condition"]["StringEquals"]["kms:CallerAccount"],
        json!({"Ref": "AWS::AccountId"})
    );
}

/// The alarms that may use the on-call topic's key through CloudWatch: this
/// stack's alarms on itself, in its account and region.
const SELF_ALARM_ARNS: &str =
    "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:autopilot-self-${AWS::StackName}-*";

/// Lambda filters JSON application logs by level (INFO unless
/// `ApplicationLogLevel` says otherwise) and reads a line without a `level` as
/// INFO (Lambda developer guide, "Log-level filtering"). EMF lines have none:
/// a level above INFO would drop every metric, and every heartbeat alarm would fire.
#[test]
fn no_function_filters_out_its_emf_lines() {
    let globals = &template()["Globals"]["Function"]["LoggingConfig"];
    let mut configs = vec![("Globals", globals)];
    for (id, _, _) in FUNCTIONS {
        configs.push((id, &properties(id)["LoggingConfig"]));
    }
    for (id, config) in configs {
        if id != "Globals" {
            assert_eq!(config["LogFormat"], "JSON", "{id}: {config}");
        }
        match config.get("ApplicationLogLevel") {
            None => {}
            Some(Value::String(level)) => assert!(
                ["TRACE", "DEBUG", "INFO"].contains(&level.as_str()),
                "{id}: ApplicationLogLevel {level} drops the EMF lines, which Lambda reads as INFO"
            ),
            Some(other) => panic!(
                "{id}: ApplicationLogLevel {other} is not a literal this test can hold to INFO or below"
            ),
        }
    }
}

/// The PagerDuty relay cannot page about itself: the stack says, in its
/// outputs, when it is the only channel of the alarms on autopilot itself.
#[test]
fn the_outputs_warn_when_the_relay_is_the_only_channel() {
    let value = &template()["Outputs"]["SelfAlarmChannels"]["Value"];
    for endpoint in [true, false] {
        for pagerduty in [true, false] {
            let conditions = [("HasOnCallEndpoint", endpoint), ("HasPagerDuty", pagerduty)];
            let text = render(value, &conditions);
            assert_eq!(
                text.starts_with("WARNING") && text.contains("OnCallEndpoint"),
                pagerduty && !endpoint,
                "{conditions:?}: {text}"
            );
        }
    }
    // Alarm notifications carry no message attributes: no subscriber is told to filter on one.
    let topic = template()["Outputs"]["OnCallTopicArn"]["Description"]
        .as_str()
        .unwrap_or_default();
    assert!(topic.contains("carry no attributes"), "{topic}");
}

/// The dashboard body as CloudFormation renders it for a stack whose
/// conditions are `conditions`: `Fn::Join` of strings, `Fn::Sub` with every
/// `${Name}` a resource's or the region, `Fn::If` on a condition.
fn render(value: &Value, conditions: &[(&str, bool)]) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("Fn::Join") => {
            let parts = o["Fn::Join"].as_array().expect("Fn::Join");
            let separator = parts[0].as_str().expect("separator");
            parts[1]
                .as_array()
                .expect("list")
                .iter()
                .map(|v| render(v, conditions))
                .collect::<Vec<_>>()
                .join(separator)
        }
        Value::Object(o) if o.contains_key("Fn::If") => {
            let branches = o["Fn::If"].as_array().expect("Fn::If");
            let name = branches[0].as_str().expect("condition");
            let (_, holds) = conditions
                .iter()
                .find(|(c, _)| *c == name)
                .unwrap_or_else(|| panic!("no value for condition {name}"));
            render(&branches[if *holds { 1 } else { 2 }], conditions)
        }
        Value::Object(o) if o.contains_key("Fn::Sub") => {
            let text = o["Fn::Sub"].as_str().expect("Fn::Sub of a string");
            let mut out = String::new();
            let mut rest = text;
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let end = rest[start..].find('}').expect("closed ${}") + start;
                let name = &rest[start + 2..end];
                out.push_str(&match name {
                    "AWS::Region" => REGION.to_string(),
                    "DeadLetterQueue.QueueName" => "autopilot-DeadLetterQueue-1".to_string(),
                    other => {
                        assert!(
                            resources().contains_key(other),
                            "${{{other}}} names no resource"
                        );
                        format!("stack-{other}-1")
                    }
                });
                rest = &rest[end + 1..];
            }
            out.push_str(rest);
            out
        }
        other => panic!("not supported in the dashboard body: {other}"),
    }
}

#[test]
fn the_dashboard_is_json_and_shows_every_function() {
    let dashboards: Vec<&String> = resources()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Dashboard")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(dashboards.len(), 1, "one dashboard: {dashboards:?}");
    let body = &properties(dashboards[0])["DashboardBody"];
    for snapshot in [true, false] {
        for pagerduty in [true, false] {
            let conditions = [
                ("HasSnapshotDatabases", snapshot),
                ("HasPagerDuty", pagerduty),
            ];
            let text = render(body, &conditions);
            let dashboard: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{conditions:?}: not JSON ({e}): {text}"));
            let widgets = dashboard["widgets"].as_array().expect("widgets");
            let rows: Vec<&Value> = widgets
                .iter()
                .inspect(|w| {
                    assert_eq!(w["type"], "metric", "{w}");
                    assert_eq!(w["properties"]["region"], REGION, "{w}");
                })
                .flat_map(|w| w["properties"]["metrics"].as_array().expect("metrics"))
                .collect();
            let shows = |namespace: &str, metric: &str, dims: &[&str]| {
                rows.iter().any(|r| {
                    let r: Vec<&str> = r
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(Value::as_str)
                        .collect();
                    r.len() >= 2 + dims.len()
                        && r[0] == namespace
                        && r[1] == metric
                        && r[2..2 + dims.len()] == *dims
                })
            };
            assert!(shows(
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                &["QueueName", "autopilot-DeadLetterQueue-1"]
            ));
            for (id, function, condition) in FUNCTIONS {
                let deployed = format!("stack-{id}-1");
                let present = match *condition {
                    Some("HasSnapshotDatabases") => snapshot,
                    Some("HasPagerDuty") => pagerduty,
                    _ => true,
                };
                assert_eq!(text.contains(&deployed), present, "{id} in {conditions:?}");
                if !present {
                    continue;
                }
                for metric in ["Errors", "Throttles", "Duration"] {
                    assert!(
                        shows("AWS/Lambda", metric, &["FunctionName", &deployed]),
                        "{id} {metric}"
                    );
                }
                let (_, emitted) = name::BY_FUNCTION
                    .iter()
                    .find(|(f, _)| f == function)
                    .expect("the function's metrics");
                for metric in *emitted {
                    assert!(
                        shows(metrics::NAMESPACE, metric, &[metrics::FUNCTION, &deployed]),
                        "{id} {metric} in {conditions:?}"
                    );
                }
            }
            for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
                for metric in [name::ROTATION_STEPS_FINISHED, name::ROTATION_STEPS_FAILED] {
                    assert!(shows(
                        metrics::NAMESPACE,
                        metric,
                        &[
                            metrics::FUNCTION,
                            "stack-RotateFunction-1",
                            metrics::STEP,
                            step
                        ]
                    ));
                }
            }
        }
    }
}

#[test]
fn the_heartbeat_schedules_send_each_function_its_own_task() {
    for (id, task) in [
        ("DeployFunction", deploy::HEARTBEAT_TASK),
        ("RotateFunction", rotate::HEARTBEAT_TASK),
        ("RemediateFunction", remediate::HEARTBEAT_TASK),
        ("SnapshotFunction", snapshot::HEARTBEAT_TASK),
        ("PagerDutyRelayFunction", pagerduty::HEARTBEAT_TASK),
    ] {
        let event = heartbeat(id);
        assert!(metrics::is_task(&event, task), "{id}: {event}");
        let schedule = &properties(id)["Events"]["Heartbeat"]["Properties"];
        assert_eq!(
            schedule["DeadLetterConfig"]["Arn"],
            json!({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}),
            "{id}"
        );
    }
}

#[test]
fn the_heartbeat_reads_the_topic_only_where_it_is_granted() {
    // deploy and rotate read the topic; their grant is GetTopicAttributes on
    // the topic alone.
    for id in ["DeployFunction", "RotateFunction"] {
        let statement = properties(id)["Policies"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["Statement"].as_array())
            .flatten()
            .find(|s| s["Sid"] == "HeartbeatReadsTheOnCallTopic")
            .unwrap_or_else(|| panic!("{id} may not read the topic"));
        assert_eq!(statement["Action"], "sns:GetTopicAttributes");
        assert_eq!(statement["Resource"], json!({"Ref": "OnCallTopic"}));
    }
}
