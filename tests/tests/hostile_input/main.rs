//! Hostile and malformed input (issue #10). Property tests over every way
//! outside data reaches autopilot:
//!
//! - every function's handler, given arbitrary JSON, or a real sample event
//!   (`events/`) with fields replaced, removed or filled with hostile strings,
//!   answers with a report or a coded `autopilot.*` error and a message, and
//!   never panics;
//! - every function's configuration parser, given hostile variables, gives a
//!   configuration or an error naming the variable, and never panics;
//! - every page, whatever its fields hold (unicode, control characters, huge
//!   values), renders into a Publish request SNS accepts.
//!
//! The handlers' SDK clients point at a closed loopback port with one attempt: a
//! mutated event that is still valid gets as far as its first AWS call, which
//! fails at once, and the failure path (its page included) runs too.
//!
//! Cases per property: `AUTOPILOT_HOSTILE_CASES` (default 128 in `make test`);
//! `make fuzz` runs many more (docs/reliability.md has the count).

use autopilot_shared::config::{lookup_from, ConfigError};
use autopilot_shared::pager::{render, Action, Page, Severity, SUBJECT_LIMIT};
use aws_config::SdkConfig;
mod strategies;

use lambda_runtime::{Context, LambdaEvent};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, RngSeed, TestCaseError, TestRunner};
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use strategies::*;

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:autopilot-oncall";

/// One function: its name, its valid configuration, and how to build its handler.
struct Function {
    name: &'static str,
    env: Vec<(&'static str, String)>,
    samples: Vec<Value>,
    /// Every `errorType` the function may answer with.
    codes: Vec<&'static str>,
}

/// The `errorType`s every function shares, plus `own`.
fn codes(own: &[&'static str]) -> Vec<&'static str> {
    use autopilot_shared::invocation::code::*;
    let mut all = vec![
        MALFORMED_EVENT,
        UNSUPPORTED_EVENT,
        AWS_CALL_FAILED,
        AWS_CALL_REFUSED,
        PAGE_FAILED,
        PARTIAL_FAILURE,
    ];
    all.extend_from_slice(own);
    all
}

type Handler = Box<dyn Fn(Value) -> Pin<Box<dyn Future<Output = Outcome>>>>;

/// What one invocation answered: `Ok` or the Lambda error's code and message.
type Outcome = Result<(), (String, String)>;

fn functions() -> Vec<Function> {
    let all = samples();
    let pick = |prefixes: &[&str]| -> Vec<Value> {
        all.iter()
            .filter(|(path, _)| prefixes.iter().any(|p| path.starts_with(p)))
            .map(|(_, v)| v.clone())
            .collect()
    };
    let page = Page::new(
        Action::Trigger,
        Severity::Critical,
        "deploy.failed",
        "prod/backend",
        "deploy of backend failed",
    )
    .source("autopilot-deploy")
    .dedup_key("autopilot-deploy/prod/backend")
    .fact("reason", "tasks failed to start");
    let relayed = json!({"Records": [{
        "EventSource": "aws:sns", "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{TOPIC}:6f0d3b8e-2c41-4b7a-9e55-1a2b3c4d5e6f"),
        "Sns": {"Type": "Notification", "MessageId": "5a1f8c3e-9b2d-5e7a-a4c6-1d8e3f0b2a95",
                "TopicArn": TOPIC, "Subject": "[autopilot] deploy of backend failed",
                "Message": autopilot_shared::pager::machine_json(&page).to_string(),
                "Timestamp": "2026-11-24T03:00:41.032Z", "SignatureVersion": "1",
                "Signature": "c2ln", "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/x.pem",
                "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
                "MessageAttributes": {}}}]});
    vec![
        Function {
            name: "deploy",
            env: vec![(
                deploy::config::SERVICES,
                json!([{"repository": "backend", "cluster": "prod", "service": "backend",
                        "container": "app"}])
                .to_string(),
            )],
            samples: pick(&["ecr-", "ecs-", "deploy-", "malformed-ecr", "malformed-ecs"]),
            codes: codes(&[]),
        },
        Function {
            name: "rotate",
            env: vec![(
                rotate::config::ROTATIONS,
                json!([{"secret": "prod/db/app", "strategy": "postgres-single-user",
                        "dependents": [{"secret": "prod/db/url", "format": "url"}],
                        "consumers": [{"cluster": "prod", "service": "backend"}]}])
                .to_string(),
            )],
            samples: pick(&["rotation-", "malformed-rotation"]),
            codes: codes(&[
                rotate::code::ROTATION_REFUSED,
                rotate::code::DATABASE_FAILED,
            ]),
        },
        Function {
            name: "remediate",
            env: vec![
                (remediate::config::TABLE, "autopilot-guardrails".into()),
                (
                    remediate::config::SERVICES,
                    json!([{"cluster": "prod", "service": "web", "min": 2, "max": 10, "step": 2,
                            "loadBalancers": ["app/web-alb/0123456789abcdef", "legacy-elb"]}])
                    .to_string(),
                ),
                (
                    remediate::config::DATABASES,
                    json!([{"instance": "orders-db", "growPercent": 20, "maxAllocatedGiB": 1000}])
                        .to_string(),
                ),
            ],
            samples: pick(&["remediate/"]),
            codes: codes(&[remediate::error::BUSY]),
        },
        Function {
            name: "snapshot",
            env: vec![
                ("AWS_REGION", "us-east-1".into()),
                (
                    snapshot::config::DATABASES,
                    json!([{"instance": "orders-db"}, {"cluster": "orders-aurora"}]).to_string(),
                ),
                (snapshot::config::DR_REGION, "us-west-2".into()),
                (
                    snapshot::config::DR_KMS_KEY,
                    "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
                        .into(),
                ),
            ],
            samples: pick(&["snapshot/"]),
            codes: codes(&[]),
        },
        Function {
            name: "pagerduty",
            env: vec![(
                pagerduty::config::ROUTING_KEY_SECRET,
                "autopilot/pagerduty".into(),
            )],
            samples: vec![relayed],
            codes: codes(&[]),
        },
    ]
}

/// The function's configuration from `vars` plus the on-call topic.
fn lookup(vars: &[(&'static str, Option<String>)]) -> impl Fn(&str) -> Option<String> {
    let mut pairs = vec![(
        autopilot_shared::config::TOPIC_ARN.to_string(),
        TOPIC.to_string(),
    )];
    pairs.extend(
        vars.iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v))),
    );
    lookup_from(pairs)
}

/// The function's handler, built as its `main` builds it, from `vars`.
fn build(
    sdk: &SdkConfig,
    name: &str,
    vars: &[(&'static str, Option<String>)],
) -> Result<Handler, String> {
    let lookup = lookup(vars);
    let text = |e: ConfigError| e.to_string();
    // Each function's handler type is its own; the closure around it is the same.
    macro_rules! handler {
        ($built:expr) => {{
            let h = std::rc::Rc::new($built);
            Box::new(move |v| {
                let h = h.clone();
                Box::pin(async move { answer(h.handle(invocation(v)).await) })
                    as Pin<Box<dyn Future<Output = Outcome>>>
            }) as Handler
        }};
    }
    Ok(match name {
        "deploy" => handler!(deploy::Deployer::new(
            sdk,
            deploy::config::Config::from_lookup(lookup).map_err(text)?,
        )),
        "rotate" => handler!(rotate::Rotator::new(
            sdk,
            rotate::config::Config::from_lookup(lookup).map_err(text)?,
        )?),
        "remediate" => handler!(remediate::Remediator::new(
            sdk,
            remediate::config::Config::from_lookup(lookup).map_err(text)?,
        )),
        "snapshot" => handler!(snapshot::Snapshotter::new(
            sdk,
            snapshot::config::Config::from_lookup(lookup).map_err(text)?,
        )?),
        "pagerduty" => handler!(pagerduty::Relay::new(
            sdk,
            pagerduty::config::Config::from_lookup(lookup).map_err(text)?,
        )),
        other => return Err(format!("no function {other}")),
    })
}

fn invocation(payload: Value) -> LambdaEvent<Value> {
    let mut context = Context::default();
    context.request_id = "hostile".into();
    LambdaEvent::new(payload, context)
}

fn answer<T>(result: Result<T, autopilot_shared::invocation::Failure>) -> Outcome {
    result
        .map(|_| ())
        .map_err(|f| (f.code.to_string(), f.message))
}

/// What every answer must be: success, or one of the function's error types with
/// a message. `input_errors_only`: the input cannot be an event the function acts
/// on, so it must be refused as malformed or unsupported, before any AWS call.
fn check_answer(
    function: &Function,
    outcome: &Outcome,
    event: &Value,
    input_errors_only: bool,
) -> Result<(), TestCaseError> {
    use autopilot_shared::invocation::code::{MALFORMED_EVENT, UNSUPPORTED_EVENT};
    if let Err((code, message)) = outcome {
        prop_assert!(
            function.codes.contains(&code.as_str()),
            "{}: error type {code:?} is not one it declares, for {event}",
            function.name
        );
        prop_assert!(
            !input_errors_only || [MALFORMED_EVENT, UNSUPPORTED_EVENT].contains(&code.as_str()),
            "{}: {code} ({message}) for input that is no event: {event}",
            function.name
        );
        prop_assert!(
            !message.trim().is_empty(),
            "{code} with no message, for {event}"
        );
    }
    Ok(())
}

/// A current-thread runtime, as Lambda's.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn runner() -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases: cases(),
        // `make test` runs the same cases every time; `make fuzz` (which sets the
        // count) explores new ones on every run.
        rng_seed: if std::env::var_os("AUTOPILOT_HOSTILE_CASES").is_some() {
            RngSeed::Random
        } else {
            RngSeed::Fixed(0x6175_746f_7069_6c74)
        },
        failure_persistence: None,
        // A failing case with a 70,000-character field shrinks for ever otherwise.
        max_shrink_time: 30_000,
        max_shrink_iters: 2_000,
        ..RunnerConfig::default()
    })
}

/// Runs `property` over `strategy` and panics with the smallest failing case.
fn check<S: Strategy>(
    what: &str,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let mut runner = runner();
    let started = std::time::Instant::now();
    if let Err(e) = runner.run(&strategy, property) {
        panic!("{what}: {e}");
    }
    count_cases(what, cases(), started.elapsed());
}

/// Every handler, each event through a current-thread runtime as Lambda's.
fn fuzz_handlers(
    what: &str,
    input_errors_only: bool,
    events: impl Fn(&Function) -> BoxedStrategy<Value>,
) {
    let runtime = runtime();
    let sdk = runtime.block_on(unreachable_sdk());
    for function in functions() {
        let vars: Vec<_> = function
            .env
            .iter()
            .map(|(k, v)| (*k, Some(v.clone())))
            .collect();
        let handler = build(&sdk, function.name, &vars).unwrap_or_else(|e| {
            panic!("{}: the valid configuration is refused: {e}", function.name)
        });
        check(
            &format!("{} {what}", function.name),
            events(&function),
            |event| {
                let outcome = runtime.block_on(handler(event.clone()));
                check_answer(&function, &outcome, &event, input_errors_only)
            },
        );
    }
}

#[test]
fn handlers_answer_arbitrary_json_without_panicking() {
    // Keys come from the samples, so a value can still be a valid event (a rotation
    // event is four strings), and any answer the function declares is fine.
    fuzz_handlers("arbitrary JSON", false, |_| arbitrary_json().boxed());
}

#[test]
fn handlers_answer_mutated_real_events_without_panicking() {
    fuzz_handlers("mutated samples", false, |f| {
        mutated(f.samples.clone()).boxed()
    });
}

#[test]
fn handlers_refuse_what_is_no_event_before_any_aws_call() {
    fuzz_handlers("non-objects", true, |_| {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any_string().prop_map(Value::String),
            proptest::collection::vec(arbitrary_json(), 0..4).prop_map(Value::Array),
        ]
        .boxed()
    });
}

#[test]
fn configuration_parsers_name_the_bad_variable_and_never_panic() {
    let sdk = runtime().block_on(unreachable_sdk());
    for function in functions() {
        let env = function.env.clone();
        let strategy = proptest::collection::vec(variable_change(), env.len());
        check(
            &format!("{} configuration", function.name),
            strategy,
            |changes| {
                let vars: Vec<(&'static str, Option<String>)> = env
                    .iter()
                    .zip(&changes)
                    .map(|((k, v), change)| (*k, change.apply(v)))
                    .collect();
                match build(&sdk, function.name, &vars) {
                    Ok(_) => Ok(()),
                    Err(message) => {
                        let changed: Vec<&str> = env
                            .iter()
                            .zip(&changes)
                            .filter(|(_, change)| !matches!(change, VariableChange::Keep))
                            .map(|((var, _), _)| *var)
                            .collect();
                        let field = message
                            .strip_prefix("invalid configuration: ")
                            .unwrap_or_default();
                        // The field is the variable at fault; where two disagree (the
                        // DR region is the function's own), the error names the
                        // other one in its message.
                        let (at, why) = field.split_once(": ").unwrap_or((field, ""));
                        prop_assert!(
                            changed
                                .iter()
                                .any(|var| at.starts_with(var) || why.contains(var)),
                            "{}: the error names none of the changed variables {changed:?}: {message}",
                            function.name
                        );
                        Ok(())
                    }
                }
            },
        );
    }
}

#[test]
fn every_page_renders_into_a_publish_sns_accepts() {
    // Pages of every size: a few huge fields, or lists long enough to be cut.
    let page = (
        proptest::collection::vec(any_string(), 5),
        proptest::collection::vec((any_string(), any_string()), 0..20),
        proptest::collection::vec(
            (
                hostile_string(),
                prop_oneof![
                    proptest::collection::vec(hostile_string(), 0..40),
                    proptest::collection::vec(huge_string(), 0..12),
                ],
            ),
            0..5,
        ),
        proptest::sample::select(vec![
            Severity::Critical,
            Severity::Error,
            Severity::Warning,
            Severity::Info,
        ]),
        (any::<bool>(), any::<bool>()),
    );
    check(
        "pages",
        page,
        |(texts, facts, lists, severity, (resolve, fifo))| {
            let action = if resolve {
                Action::Resolve
            } else {
                Action::Trigger
            };
            let [summary, component, class, source, key] =
                <[String; 5]>::try_from(texts).map_err(|_| TestCaseError::fail("five texts"))?;
            let mut page = Page::new(action, severity, &class, &component, summary)
                .source(source)
                .dedup_key(key);
            for (label, value) in &facts {
                page = page.fact(label, value);
            }
            for (label, items) in lists {
                page = page.list(&label, items);
            }
            let publication = render(&page, fifo);
            let subject = &publication.subject;
            prop_assert!(!subject.is_empty() && subject.chars().count() <= SUBJECT_LIMIT);
            prop_assert!(
                subject.chars().all(|c| c.is_ascii_graphic() || c == ' '),
                "subject {subject:?}"
            );
            prop_assert!(
                publication.message.len() <= SNS_MESSAGE_LIMIT - attributes_size(&publication),
                "message of {} bytes",
                publication.message.len()
            );
            let document: Value = serde_json::from_str(&publication.message)
                .map_err(|e| TestCaseError::fail(format!("message is not JSON: {e}")))?;
            let fields = document
                .as_object()
                .ok_or_else(|| TestCaseError::fail("message is not an object"))?;
            prop_assert!(fields["default"].is_string());
            prop_assert!(fields.values().all(Value::is_string));
            // What each protocol's subscriber gets, once SNS has unescaped it.
            for (protocol, text) in fields {
                let text = text.as_str().unwrap_or_default();
                prop_assert!(
                    text.chars().all(sqs_char),
                    "the {protocol} message has a character SQS refuses"
                );
            }
            let machine: Value = serde_json::from_str(fields["sqs"].as_str().unwrap_or_default())
                .map_err(|e| {
                TestCaseError::fail(format!("the sqs message is not JSON: {e}"))
            })?;
            prop_assert_eq!(&machine["payload"]["severity"], severity.as_str());
            // What the PagerDuty relay is given: a page with a key, a summary and a
            // source is one it forwards.
            let filled = |v: &Value| v.as_str().is_some_and(|s| !s.is_empty());
            if filled(&machine["dedup_key"])
                && filled(&machine["payload"]["summary"])
                && filled(&machine["payload"]["source"])
            {
                let relayed = fields["lambda"].as_str().unwrap_or_default();
                let forwarded = pagerduty::pagerduty_document(relayed);
                prop_assert!(
                    forwarded.is_ok(),
                    "the relay refuses it: {:?}",
                    forwarded.err()
                );
            }
            prop_assert!(publication.attributes.len() <= 10);
            for (name, value) in &publication.attributes {
                prop_assert!(sns_text(value), "attribute {name} = {value:?}");
            }
            if let Some(ids) = &publication.fifo {
                for id in [&ids.group_id, &ids.deduplication_id] {
                    prop_assert!(
                        !id.is_empty()
                            && id.chars().count() <= 128
                            && id.chars().all(|c| c.is_ascii_graphic()),
                        "FIFO id {id:?}"
                    );
                }
            }
            Ok(())
        },
    );
}
