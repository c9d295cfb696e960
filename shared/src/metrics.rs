//! autopilot's own metrics, in CloudWatch's embedded metric format (EMF), and
//! the heartbeat every function answers on a schedule.
//!
//! Counts go through the `metrics` facade to `metrics_cloudwatch_embedded`'s
//! collector, which writes each document as one JSON line. Lambda sends stdout
//! to CloudWatch Logs, which extracts the metrics (docs/reliability.md,
//! "autopilot watching itself"). The crate's `lambda` feature is not used: it
//! pulls in lambda_http and a lambda_runtime with default features, so
//! each `main.rs` runs its handler through [`flushed`], which writes the
//! invocation's counts to stdout before Lambda gets the answer.
//!
//! Every metric is in the [`NAMESPACE`] namespace with one dimension,
//! [`FUNCTION`] (rotation steps add [`STEP`]). Its value is the deployed
//! function's name (`AWS_LAMBDA_FUNCTION_NAME`), so two stacks in one account
//! never count into each other's metrics or alarms. Outside Lambda it is the
//! function's own name, e.g. `autopilot-deploy`.
//!
//! A process has one collector ([`init`]); without it every count is a no-op.

use crate::aws::AwsCallError;
use crate::invocation::{Coded, Outcome};
use metrics_cloudwatch_embedded::Collector;
use serde_json::Value;
use std::future::Future;
use std::io::Write;
use std::sync::OnceLock;

/// The CloudWatch namespace of every autopilot metric.
pub const NAMESPACE: &str = "autopilot";
/// The one dimension of every metric: the function's deployed name.
pub const FUNCTION: &str = "Function";
/// The second dimension of rotate's step counts: the step's name (four values).
pub const STEP: &str = "Step";
/// How the names of autopilot's alarms on itself start (`template.yaml`). They
/// page on-call themselves, so remediate leaves them alone.
pub const SELF_ALARM_PREFIX: &str = "autopilot-self-";

/// Every metric autopilot emits. All are counts; all but the rotation steps
/// have the one dimension [`FUNCTION`].
pub mod name {
    /// deploy: a service update started for a push.
    pub const DEPLOYS_STARTED: &str = "DeploysStarted";
    /// deploy: a deployment autopilot started completed (ECS's verdict).
    pub const DEPLOYS_SUCCEEDED: &str = "DeploysSucceeded";
    /// deploy: a deployment autopilot started failed (ECS's verdict).
    pub const DEPLOYS_FAILED: &str = "DeploysFailed";
    /// remediate: a runbook's action was carried out.
    pub const REMEDIATIONS_TAKEN: &str = "RemediationsTaken";
    /// remediate: a guardrail refused an action.
    pub const REMEDIATIONS_REFUSED: &str = "RemediationsRefused";
    /// remediate: an action was tried and AWS refused or failed it.
    pub const REMEDIATIONS_FAILED: &str = "RemediationsFailed";
    /// rotate: a step (dimension `Step`) finished.
    pub const ROTATION_STEPS_FINISHED: &str = "RotationStepsFinished";
    /// rotate: a step (dimension `Step`) failed.
    pub const ROTATION_STEPS_FAILED: &str = "RotationStepsFailed";
    /// snapshot: a cross-region copy was requested.
    pub const COPIES_STARTED: &str = "SnapshotCopiesStarted";
    /// snapshot: a copy could not be requested, or RDS cancelled it.
    pub const COPIES_FAILED: &str = "SnapshotCopiesFailed";
    /// snapshot: retention deleted one of autopilot's snapshots or copies.
    pub const SNAPSHOTS_DELETED: &str = "SnapshotsDeleted";
    /// Any function: a page was published to the on-call topic.
    pub const PAGES_SENT: &str = "PagesSent";
    /// Any function: publishing a page failed (the invocation fails and is retried).
    pub const PAGES_FAILED: &str = "PagesFailed";
    /// Any function: the heartbeat reached every dependency.
    pub const HEARTBEAT: &str = "Heartbeat";

    /// Every metric, for describing their unit once.
    pub const ALL: &[&str] = &[
        DEPLOYS_STARTED,
        DEPLOYS_SUCCEEDED,
        DEPLOYS_FAILED,
        REMEDIATIONS_TAKEN,
        REMEDIATIONS_REFUSED,
        REMEDIATIONS_FAILED,
        ROTATION_STEPS_FINISHED,
        ROTATION_STEPS_FAILED,
        COPIES_STARTED,
        COPIES_FAILED,
        SNAPSHOTS_DELETED,
        PAGES_SENT,
        PAGES_FAILED,
        HEARTBEAT,
    ];

    /// The metrics each function emits, by its own name (its `FUNCTION`
    /// constant): what the dashboard shows for it.
    pub const BY_FUNCTION: &[(&str, &[&str])] = &[
        (
            "autopilot-deploy",
            &[
                DEPLOYS_STARTED,
                DEPLOYS_SUCCEEDED,
                DEPLOYS_FAILED,
                PAGES_SENT,
                PAGES_FAILED,
                HEARTBEAT,
            ],
        ),
        (
            "autopilot-rotate",
            &[
                ROTATION_STEPS_FINISHED,
                ROTATION_STEPS_FAILED,
                PAGES_SENT,
                PAGES_FAILED,
                HEARTBEAT,
            ],
        ),
        (
            "autopilot-remediate",
            &[
                REMEDIATIONS_TAKEN,
                REMEDIATIONS_REFUSED,
                REMEDIATIONS_FAILED,
                PAGES_SENT,
                PAGES_FAILED,
                HEARTBEAT,
            ],
        ),
        (
            "autopilot-snapshot",
            &[
                COPIES_STARTED,
                COPIES_FAILED,
                SNAPSHOTS_DELETED,
                PAGES_SENT,
                PAGES_FAILED,
                HEARTBEAT,
            ],
        ),
        ("autopilot-pagerduty", &[HEARTBEAT]),
    ];
}

static COLLECTOR: OnceLock<&'static Collector> = OnceLock::new();

/// Installs the EMF collector as the process's metrics recorder, once; later
/// calls keep the first. Every metric is described as a count.
pub fn init() {
    if COLLECTOR.get().is_some() {
        return;
    }
    let built = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(NAMESPACE)
        .init();
    match built {
        Ok(collector) => {
            let _ = COLLECTOR.set(collector);
            for metric in name::ALL {
                metrics::describe_counter!(*metric, metrics::Unit::Count, "");
            }
        }
        // Another recorder was installed first: counts go there, none is lost silently.
        Err(e) => {
            tracing::warn!(error = %e, reason = "a metrics recorder is already installed", "no EMF metrics")
        }
    }
}

/// The value of the [`FUNCTION`] dimension for `function`: the deployed name
/// Lambda gives the process, else `function` itself.
pub fn dimension(function: &str) -> String {
    static DEPLOYED: OnceLock<Option<String>> = OnceLock::new();
    let deployed = DEPLOYED.get_or_init(|| std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok());
    dimension_of(function, deployed.as_deref())
}

fn dimension_of(function: &str, deployed: Option<&str>) -> String {
    match deployed.map(str::trim) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => function.to_string(),
    }
}

/// Adds one to `metric` of `function` (its own name, e.g. `autopilot-deploy`).
pub fn count(function: &str, metric: &'static str) {
    metrics::counter!(metric, FUNCTION => dimension(function)).increment(1);
}

/// Adds one to rotate's `metric` for `step` (createSecret, setSecret, …).
pub fn count_step(function: &str, metric: &'static str, step: &'static str) {
    metrics::counter!(metric, FUNCTION => dimension(function), STEP => step).increment(1);
}

/// Writes the counts since the last flush as EMF lines to `writer`, one JSON
/// document per line. Nothing when nothing was counted or no collector is installed.
pub fn flush_to(writer: &mut impl Write) -> std::io::Result<()> {
    match COLLECTOR.get() {
        Some(collector) => collector.flush(writer),
        None => Ok(()),
    }
}

/// Writes the counts since the last flush to stdout: whole lines in one write,
/// so no log line can land inside a document.
pub fn flush() {
    let mut lines = Vec::new();
    let written = flush_to(&mut lines).and_then(|()| {
        if lines.is_empty() {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&lines)?;
        out.flush()
    });
    if let Err(e) = written {
        tracing::warn!(error = %e, reason = "stdout refused the EMF lines", "metrics not written");
    }
}

/// Runs one invocation and then [`flush`]es its metrics, before the runtime
/// sends Lambda the answer (after it the sandbox may be frozen). `main.rs`
/// wraps every handler call in it.
pub async fn flushed<F: Future>(work: F) -> F::Output {
    let out = work.await;
    flush();
    out
}

/// The action of a heartbeat's outcome for a dependency that did not answer.
pub const UNREACHABLE: &str = "unreachable";

/// The heartbeat: each dependency the function checked, with the result of
/// its cheap read-only call, as one outcome per dependency: `check` for one
/// that answered, [`UNREACHABLE`] (with the AWS error as its reason) for one
/// that did not. When all answered it counts [`name::HEARTBEAT`].
///
/// A dependency that did not answer never fails the invocation. A failed
/// invocation would be retried by Lambda and then land in the dead-letter
/// queue, whose alarm would sit in ALARM until someone deleted it, so a real
/// event dead-lettered later would page no one. Instead each dependency that
/// did not answer is logged at ERROR with its AWS error, and no heartbeat is
/// counted, so the function's heartbeat alarm fires within its window.
pub fn heartbeat(function: &str, checks: Vec<(String, Result<(), AwsCallError>)>) -> Vec<Outcome> {
    let mut answered = true;
    let outcomes = checks
        .into_iter()
        .map(|(dependency, result)| match result {
            Ok(()) => Outcome::new(dependency, "check", "answered the heartbeat's read"),
            Err(e) => {
                answered = false;
                tracing::error!(
                    dependency = %dependency,
                    operation = e.operation,
                    error_type = e.code(),
                    error = %e,
                    action = UNREACHABLE,
                    "heartbeat: a dependency did not answer; no heartbeat is counted"
                );
                Outcome::new(dependency, UNREACHABLE, e.to_string())
                    .with("operation", e.operation)
                    .with("error_type", e.code())
            }
        })
        .collect();
    if answered {
        count(function, name::HEARTBEAT);
    }
    outcomes
}

/// The heartbeat's check of the on-call topic: GetTopicAttributes (TopicArn, its
/// one required parameter) reads the topic without publishing, so no one is paged.
///
/// It proves that the topic exists and that the function's credentials, grant
/// and network path reach SNS. It does not prove that a page can be published:
/// reading attributes never uses the topic's KMS key, so a disabled or deleted
/// key, or a key policy that no longer lets the function or CloudWatch use it,
/// passes this check while every publish fails.
pub async fn check_topic(
    sns: &aws_sdk_sns::Client,
    topic_arn: &str,
) -> (String, Result<(), AwsCallError>) {
    let result = sns
        .get_topic_attributes()
        .topic_arn(topic_arn)
        .send()
        .await
        .map(|_| ())
        .map_err(AwsCallError::of("GetTopicAttributes", topic_arn));
    (format!("SNS topic {topic_arn}"), result)
}

/// Whether `payload` is the scheduled-task envelope asking for `task`: a quick
/// look for functions whose own parser comes later (remediate's alarms).
pub fn is_task(payload: &Value, task: &str) -> bool {
    let (source, detail_type) = crate::events::SCHEDULED_TASK;
    payload.get("source").and_then(Value::as_str) == Some(source)
        && payload.get("detail-type").and_then(Value::as_str) == Some(detail_type)
        && payload
            .get("detail")
            .and_then(|d| d.get("task"))
            .and_then(Value::as_str)
            == Some(task)
}

/// The units CloudWatch takes (`MetricDatum` in the CloudWatch API reference),
/// which the EMF specification requires of a metric's `Unit`.
pub const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// What is wrong with one log line as an EMF document, by the "Specification:
/// Embedded metric format" of the CloudWatch user guide; empty when nothing is.
///
/// The line is one JSON object. Its `_aws` member holds only `Timestamp` (epoch
/// milliseconds) and `CloudWatchMetrics`, an array of directives holding only
/// `Namespace`, `Dimensions` (an array of dimension sets, each an array of at
/// most 30 names) and `Metrics` (at most 100 definitions of `Name` and an
/// optional `Unit` from [`UNITS`] and `StorageResolution` of 1 or 60). Every
/// dimension is a top-level string member; every metric a top-level number, or
/// an array of at most 100 numbers.
pub fn emf_errors(line: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let root: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return vec![format!("not one JSON value: {e}")],
    };
    let Some(root) = root.as_object() else {
        return vec!["the document is not a JSON object".into()];
    };
    // The CloudWatch Logs event limit the specification applies to EMF documents.
    if line.len() > 1024 * 1024 {
        errors.push(format!(
            "{} bytes: over the 1 MB log event limit",
            line.len()
        ));
    }
    let Some(aws) = root.get("_aws").and_then(Value::as_object) else {
        return vec!["no `_aws` object".into()];
    };
    for key in aws.keys() {
        if key != "Timestamp" && key != "CloudWatchMetrics" {
            errors.push(format!(
                "`_aws` has a member the specification does not define: {key}"
            ));
        }
    }
    match aws.get("Timestamp").and_then(Value::as_u64) {
        // Between 2001 and 2286 in milliseconds: a count of seconds would be far below.
        Some(t) if (1_000_000_000_000..10_000_000_000_000).contains(&t) => {}
        Some(t) => errors.push(format!("Timestamp {t} is not epoch milliseconds")),
        None => errors.push("no numeric `_aws.Timestamp`".into()),
    }
    let Some(directives) = aws.get("CloudWatchMetrics").and_then(Value::as_array) else {
        errors.push("no `_aws.CloudWatchMetrics` array".into());
        return errors;
    };
    for (i, directive) in directives.iter().enumerate() {
        let at = format!("CloudWatchMetrics[{i}]");
        let Some(directive) = directive.as_object() else {
            errors.push(format!("{at} is not an object"));
            continue;
        };
        for key in directive.keys() {
            if !["Namespace", "Dimensions", "Metrics"].contains(&key.as_str()) {
                errors.push(format!(
                    "{at} has a member the specification does not define: {key}"
                ));
            }
        }
        match directive.get("Namespace").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n.len() <= 255 && !n.starts_with(':') => {}
            other => errors.push(format!("{at}.Namespace is not 1-255 characters: {other:?}")),
        }
        match directive.get("Dimensions").and_then(Value::as_array) {
            None => errors.push(format!("{at}.Dimensions is not an array")),
            Some(sets) => {
                for (j, set) in sets.iter().enumerate() {
                    let Some(set) = set.as_array() else {
                        errors.push(format!("{at}.Dimensions[{j}] is not an array"));
                        continue;
                    };
                    if set.len() > 30 {
                        errors.push(format!(
                            "{at}.Dimensions[{j}] has {} dimensions, over 30",
                            set.len()
                        ));
                    }
                    for dimension in set {
                        let Some(name) = dimension.as_str() else {
                            errors.push(format!(
                                "{at}.Dimensions[{j}] holds a non-string {dimension}"
                            ));
                            continue;
                        };
                        match root.get(name) {
                            Some(Value::String(v)) if !v.trim().is_empty() && v.len() <= 1024 => {}
                            other => errors.push(format!(
                                "dimension {name} is not a top-level string of 1-1024 characters: {other:?}"
                            )),
                        }
                    }
                }
            }
        }
        let Some(metrics) = directive.get("Metrics").and_then(Value::as_array) else {
            errors.push(format!("{at}.Metrics is not an array"));
            continue;
        };
        if metrics.len() > 100 {
            errors.push(format!(
                "{at}.Metrics has {} definitions, over 100",
                metrics.len()
            ));
        }
        for (j, metric) in metrics.iter().enumerate() {
            let Some(metric) = metric.as_object() else {
                errors.push(format!("{at}.Metrics[{j}] is not an object"));
                continue;
            };
            for key in metric.keys() {
                if !["Name", "Unit", "StorageResolution"].contains(&key.as_str()) {
                    errors.push(format!(
                        "{at}.Metrics[{j}] has a member the specification does not define: {key}"
                    ));
                }
            }
            if let Some(unit) = metric.get("Unit") {
                if !unit.as_str().is_some_and(|u| UNITS.contains(&u)) {
                    errors.push(format!(
                        "{at}.Metrics[{j}].Unit {unit} is not a CloudWatch unit"
                    ));
                }
            }
            if let Some(r) = metric.get("StorageResolution") {
                if r.as_u64() != Some(1) && r.as_u64() != Some(60) {
                    errors.push(format!(
                        "{at}.Metrics[{j}].StorageResolution {r} is neither 1 nor 60"
                    ));
                }
            }
            let Some(name) = metric.get("Name").and_then(Value::as_str) else {
                errors.push(format!("{at}.Metrics[{j}] has no Name"));
                continue;
            };
            if name.is_empty() || name.len() > 255 {
                errors.push(format!("metric name {name:?} is not 1-255 characters"));
            }
            match root.get(name) {
                Some(Value::Number(_)) => {}
                Some(Value::Array(values)) if values.len() <= 100 && values.iter().all(Value::is_number) => {}
                other => errors.push(format!(
                    "metric {name} is not a top-level number or array of at most 100 numbers: {other:?}"
                )),
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    /// The collector is the process's one recorder: tests that count and flush take turns.
    static TURN: Mutex<()> = Mutex::new(());

    fn take() -> Vec<Value> {
        init();
        let mut out = Vec::new();
        flush_to(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        text.lines()
            .map(|l| {
                let errors = emf_errors(l);
                assert!(errors.is_empty(), "{l}: {errors:?}");
                serde_json::from_str(l).unwrap()
            })
            .collect()
    }

    #[test]
    fn counts_flush_as_emf_lines_with_the_function_dimension() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        take();
        count("autopilot-test", name::PAGES_SENT);
        count("autopilot-test", name::PAGES_SENT);
        count_step(
            "autopilot-test",
            name::ROTATION_STEPS_FINISHED,
            "createSecret",
        );
        let docs = take();
        assert_eq!(docs.len(), 2, "one document per dimension set: {docs:?}");
        let pages = docs
            .iter()
            .find(|d| d.get(name::PAGES_SENT).is_some())
            .expect("the pages document");
        assert_eq!(pages[name::PAGES_SENT], 2);
        assert_eq!(pages[FUNCTION], "autopilot-test");
        let directive = &pages["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([[FUNCTION]]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": name::PAGES_SENT, "Unit": "Count"}])
        );
        let steps = docs
            .iter()
            .find(|d| d.get(name::ROTATION_STEPS_FINISHED).is_some())
            .expect("the steps document");
        assert_eq!(steps[STEP], "createSecret");
        assert_eq!(
            steps["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[FUNCTION, STEP]])
        );
        // Counted once: the next flush has nothing.
        assert!(take().is_empty());
    }

    /// The log lines written while `f` runs, through the production subscriber.
    fn logged<T>(f: impl FnOnce() -> T) -> (T, Vec<Value>) {
        #[derive(Clone, Default)]
        struct Lines(std::sync::Arc<Mutex<Vec<u8>>>);
        impl Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = crate::logging::json_subscriber(move || writer.clone(), "info");
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let parsed = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (out, parsed)
    }

    #[test]
    fn a_heartbeat_counts_only_when_every_dependency_answers() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        take();
        let refused = AwsCallError {
            operation: "GetTopicAttributes",
            resource: "arn:aws:sns:us-east-1:123456789012:oncall".into(),
            message: "NotFound".into(),
            retryable: false,
        };
        // A dependency that did not answer: an outcome naming it and why, an
        // ERROR line with the AWS error, and no heartbeat. Never an error.
        let (outcomes, lines) = logged(|| {
            heartbeat(
                "autopilot-test",
                vec![
                    ("ECS".into(), Ok(())),
                    ("the on-call topic".into(), Err(refused)),
                ],
            )
        });
        assert_eq!(outcomes.len(), 2, "{outcomes:?}");
        assert_eq!(
            (outcomes[0].resource.as_str(), outcomes[0].action.as_str()),
            ("ECS", "check")
        );
        let down = &outcomes[1];
        assert_eq!(
            (down.resource.as_str(), down.action.as_str()),
            ("the on-call topic", UNREACHABLE)
        );
        assert!(
            down.reason.contains("GetTopicAttributes") && down.reason.contains("NotFound"),
            "{down:?}"
        );
        assert_eq!(down.detail("error_type"), Some("autopilot.AwsCallRefused"));
        let errors: Vec<&Value> = lines.iter().filter(|l| l["level"] == "ERROR").collect();
        assert_eq!(errors.len(), 1, "{lines:#?}");
        assert_eq!(errors[0]["dependency"], "the on-call topic");
        assert!(
            errors[0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("NotFound")),
            "{lines:#?}"
        );
        assert!(
            take().is_empty(),
            "a heartbeat with a dependency down counts nothing"
        );
        let outcomes = heartbeat("autopilot-test", vec![("ECS".into(), Ok(()))]);
        assert_eq!(outcomes[0].resource, "ECS");
        let docs = take();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0][name::HEARTBEAT], 1);
    }

    #[test]
    fn the_dimension_is_the_deployed_name_when_lambda_gives_one() {
        assert_eq!(dimension_of("autopilot-deploy", None), "autopilot-deploy");
        assert_eq!(
            dimension_of("autopilot-deploy", Some("")),
            "autopilot-deploy"
        );
        assert_eq!(
            dimension_of("autopilot-deploy", Some("prod-DeployFunction-1AB2")),
            "prod-DeployFunction-1AB2"
        );
    }

    #[test]
    fn only_the_named_task_is_a_task() {
        let event = |task: &str| {
            json!({"version": "0", "id": "1", "source": "autopilot.scheduler",
                   "detail-type": "Scheduled Task", "detail": {"task": task}})
        };
        assert!(is_task(&event("deploy-heartbeat"), "deploy-heartbeat"));
        assert!(!is_task(&event("deploy-sweep"), "deploy-heartbeat"));
        let mut other = event("deploy-heartbeat");
        other["source"] = json!("aws.ecr");
        assert!(!is_task(&other, "deploy-heartbeat"));
        assert!(!is_task(&json!("deploy-heartbeat"), "deploy-heartbeat"));
    }

    #[test]
    fn every_function_metric_is_a_known_metric() {
        for (function, metrics) in name::BY_FUNCTION {
            for m in *metrics {
                assert!(name::ALL.contains(m), "{function}: {m}");
            }
        }
    }

    #[test]
    fn the_checker_refuses_what_the_specification_refuses() {
        let good = json!({"_aws": {"Timestamp": 1_700_000_000_000u64, "CloudWatchMetrics": [
            {"Namespace": "autopilot", "Dimensions": [["Function"]],
             "Metrics": [{"Name": "PagesSent", "Unit": "Count"}]}]},
            "Function": "autopilot-deploy", "PagesSent": 1});
        assert_eq!(emf_errors(&good.to_string()), Vec::<String>::new());
        let broken = |edit: &dyn Fn(&mut Value)| {
            let mut doc = good.clone();
            edit(&mut doc);
            emf_errors(&doc.to_string())
        };
        let cases: Vec<(&str, Vec<String>)> = vec![
            (
                "seconds",
                broken(&|d| d["_aws"]["Timestamp"] = json!(1_700_000_000)),
            ),
            (
                "no timestamp",
                broken(&|d| {
                    d["_aws"].as_object_mut().unwrap().remove("Timestamp");
                }),
            ),
            (
                "unit",
                broken(&|d| {
                    d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Pages")
                }),
            ),
            (
                "missing dimension",
                broken(&|d| {
                    d.as_object_mut().unwrap().remove("Function");
                }),
            ),
            ("numeric dimension", broken(&|d| d["Function"] = json!(7))),
            (
                "missing value",
                broken(&|d| {
                    d.as_object_mut().unwrap().remove("PagesSent");
                }),
            ),
            ("string value", broken(&|d| d["PagesSent"] = json!("1"))),
            (
                "101 values",
                broken(&|d| d["PagesSent"] = json!(vec![1; 101])),
            ),
            (
                "31 dimensions",
                broken(&|d| {
                    let names: Vec<String> = (0..31).map(|i| format!("D{i}")).collect();
                    for n in &names {
                        d[n] = json!("x");
                    }
                    d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = json!([names]);
                }),
            ),
            (
                "101 metrics",
                broken(&|d| {
                    let defs: Vec<Value> =
                        (0..101).map(|i| json!({"Name": format!("M{i}")})).collect();
                    for i in 0..101 {
                        d[format!("M{i}")] = json!(1);
                    }
                    d["_aws"]["CloudWatchMetrics"][0]["Metrics"] = json!(defs);
                }),
            ),
            (
                "extra member",
                broken(&|d| d["_aws"]["CloudWatchMetrics"][0]["Extra"] = json!(1)),
            ),
            (
                "dimensions not nested",
                broken(&|d| d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = json!(["Function"])),
            ),
            (
                "empty namespace",
                broken(&|d| d["_aws"]["CloudWatchMetrics"][0]["Namespace"] = json!("")),
            ),
        ];
        for (case, errors) in cases {
            assert!(!errors.is_empty(), "{case}: accepted");
        }
        assert!(!emf_errors("not json").is_empty());
        assert!(!emf_errors("[1]").is_empty());
        assert!(!emf_errors(&json!({"PagesSent": 1}).to_string()).is_empty());
    }
}
