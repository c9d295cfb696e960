//! Storms (issue #10): a storm of duplicate and out-of-order pushes for one
//! service, and hundreds of alarm flips across resources, delivered the way
//! production delivers them (template.yaml decides: one at a time where the
//! function's concurrency is reserved to 1, concurrently where it is not, with
//! Lambda's retries of a failed invocation).

use autopilot_shared::{Failure, Report};
use autopilot_tests::alarms::{alarm_event, AlarmSpec, Form};
use autopilot_tests::*;
use aws_sdk_cloudwatch::types::{ComparisonOperator, Statistic};
use deploy::Deployer;
use lambda_runtime::{Context, LambdaEvent};
use remediate::config as rc;
use remediate::Remediator;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// How many times Lambda retries a failed asynchronous invocation of `function`
/// (its `EventInvokeConfig` in template.yaml) before the dead-letter queue keeps it.
fn lambda_retries(function: &str) -> usize {
    template::properties(function)["EventInvokeConfig"]["MaximumRetryAttempts"]
        .as_u64()
        .unwrap_or_else(|| panic!("{function} sets MaximumRetryAttempts")) as usize
}

/// A parameter's default in template.yaml, as a deployed stack has it unless overridden.
fn default_parameter(name: &str) -> String {
    let d = &template::template()["Parameters"][name]["Default"];
    d.as_str()
        .map(str::to_string)
        .or_else(|| d.as_i64().map(|n| n.to_string()))
        .unwrap_or_else(|| panic!("template.yaml has no default for {name}: {d}"))
}

fn count(calls: &[String], op: &str) -> usize {
    calls.iter().filter(|c| *c == op).count()
}

// ---------------------------------------------------------------------------
// The push storm
// ---------------------------------------------------------------------------

/// One image of the storm's repository, with when ECR says it was pushed.
struct Image {
    tag: &'static str,
    digest: String,
    pushed_at: f64,
}

/// What the deploy function was handed, in order.
enum Delivery {
    /// A push event, delivered once.
    Push(&'static str, Value),
    /// A push whose invocation fails (`operation` denied, as while an IAM change
    /// propagates: the SDK does not retry it); Lambda retries it later.
    Failing(&'static str, Value, &'static str),
    /// Lambda's retry of the failed invocation.
    LambdaRetry(&'static str),
    /// The cluster's side: ECS finishes the service's PRIMARY deployment.
    Complete(&'static str),
    /// The COMPLETED event of the deployment of the image at this index.
    Verdict(&'static str, usize),
}

/// The digest a revision's `app` container runs.
async fn digest_of(stack: &Stack, revision: &str, images: &[Image]) -> String {
    let (td, _) = stack.describe_task_definition(revision).await;
    let image = td
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some("app"))
        .and_then(|c| c.image())
        .expect("app container")
        .to_string();
    match image.rsplit_once('@') {
        Some((_, digest)) => digest.to_string(),
        None => {
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
            images
                .iter()
                .find(|i| i.tag == tag)
                .map(|i| i.digest.clone())
                .unwrap_or_else(|| panic!("no image for {image}"))
        }
    }
}

async fn invoke_deploy(deployer: &Deployer, event: Value) -> Result<Report, Failure> {
    deployer
        .handle(LambdaEvent::new(event, Context::default()))
        .await
}

/// At least 20 deliveries of ECR pushes for one service: the same push
/// delivered again (same event id), the same digest under other event ids (a
/// push repeated), older images arriving after newer ones, a failed invocation
/// retried by Lambda after other events went through, and the deployments'
/// verdicts delivered twice and out of order. DeployFunction's concurrency is
/// reserved to 1, so each invocation finishes before the next starts.
#[tokio::test]
async fn a_push_storm_ends_in_exactly_one_deploy_of_the_newest_image() {
    assert_eq!(
        template::properties("DeployFunction")["ReservedConcurrentExecutions"],
        json!(1),
        "deploy's pushes are delivered one at a time because the template says so"
    );
    let retries = lambda_retries("DeployFunction");
    let stack = Stack::new("push_storm").await;
    let repo = stack.repository("backend").await;
    let cluster = stack.cluster("prod").await;
    let family = stack.name("backend");
    let service = "backend".to_string();

    // v1.0.0 runs; v1.1.0, v1.2.0 and v1.3.0 were pushed after it, in that order.
    let t0 = 1_795_000_000.0;
    let mut images = Vec::new();
    for (n, tag) in ["v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0"]
        .into_iter()
        .enumerate()
    {
        let digest = stack.push(&repo, tag).await;
        let pushed_at = t0 + 100.0 * n as f64 + 0.25;
        stack.set_pushed_at(&repo, &digest, pushed_at);
        images.push(Image {
            tag,
            digest,
            pushed_at,
        });
    }
    let td = stack
        .task_definition(&family, "app", &stack.image(&repo, "v1.0.0"))
        .await;
    let first_revision = td.task_definition_arn().unwrap().to_string();
    let service_arn = stack.service(&cluster, &service, &first_revision).await;
    let mapping = json!([{"repository": repo, "tags": ["v*"], "cluster": cluster, "service": service, "container": "app"}]);
    let deployer = Deployer::new(&stack.sdk, stack.config(mapping, false));

    // Each push event as EventBridge delivers it: its own id, the time of the push.
    let push = |image: usize, id: &str| {
        let i = &images[image];
        let time = chrono::DateTime::from_timestamp(i.pushed_at as i64, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        push_event_at(
            &repo,
            i.tag,
            &i.digest,
            &format!("{}-{id}", stack.prefix),
            &time,
        )
    };
    let (b, c, d) = (1, 2, 3);
    let e_b = push(b, "push-b");
    let e_b2 = push(b, "push-b-again");
    let e_c = push(c, "push-c");
    let e_c2 = push(c, "push-c-again");
    let e_d = push(d, "push-d");
    // The same digest under another event id (the push repeated), a little later.
    let mut e_d2 = push(d, "push-d-again");
    e_d2["time"] = json!(
        chrono::DateTime::from_timestamp(images[d].pushed_at as i64 + 30, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );

    use Delivery::*;
    let steps = vec![
        Push("C", e_c.clone()),
        Push("B, late", e_b.clone()),
        Push("C again", e_c.clone()),
        Push("C again", e_c.clone()),
        Push("B again", e_b.clone()),
        Complete("C's deployment completes; its event comes late"),
        Failing("D, UpdateService denied", e_d.clone(), "UpdateService"),
        Push("B pushed again", e_b2.clone()),
        Push("D pushed again", e_d2.clone()),
        Push("D again", e_d.clone()),
        LambdaRetry("Lambda retries D"),
        Push("C again", e_c.clone()),
        Push("D pushed again, again", e_d2.clone()),
        Push("B again", e_b.clone()),
        Push("C pushed again", e_c2.clone()),
        Complete("D's deployment completes"),
        Verdict("D COMPLETED", d),
        Verdict("D COMPLETED again", d),
        Push("D again", e_d.clone()),
        Push("B again", e_b.clone()),
        Push("C pushed again", e_c2.clone()),
        Verdict("C COMPLETED, late", c),
        Verdict("C COMPLETED, late, again", c),
        Push("D pushed again", e_d2.clone()),
        Push("B pushed again", e_b2.clone()),
        Push("C again", e_c.clone()),
        Push("D again", e_d.clone()),
    ];

    let mark = stack.calls().len();
    let pushed_at = |digest: &str| {
        images
            .iter()
            .find(|i| i.digest == digest)
            .map(|i| i.pushed_at)
            .unwrap()
    };
    let mut current = digest_of(&stack, &first_revision, &images).await;
    let mut pushes_delivered = 0;
    let mut verdicts_delivered = 0;
    // The failed invocation Lambda holds for a retry, and how many it made.
    let mut failed: Option<(Value, usize)> = None;
    let mut updates_to: Vec<String> = Vec::new();
    // The deployment autopilot started for each digest, from its reports.
    let mut deployments: BTreeMap<String, String> = BTreeMap::new();
    let mut log = Vec::new();
    for step in steps {
        let before_calls = stack.calls().len();
        let (label, result) = match step {
            Complete(label) => {
                let s = stack.describe_service(&cluster, &service).await;
                let primary = s
                    .deployments()
                    .iter()
                    .find(|d| d.status() == Some("PRIMARY"))
                    .and_then(|d| d.id())
                    .unwrap()
                    .to_string();
                bridge(
                    "/_bridge/ecs/deployment",
                    json!({"cluster": cluster, "service": service, "deploymentId": primary, "outcome": "COMPLETED"}),
                );
                log.push(format!("{label}: {primary}"));
                continue;
            }
            Verdict(label, image) => {
                verdicts_delivered += 1;
                let id = deployments.get(&images[image].digest).unwrap_or_else(|| {
                    panic!("{label}: no deployment of {}\n{log:#?}", images[image].tag)
                });
                let event = deployment_event(&service_arn, id, "SERVICE_DEPLOYMENT_COMPLETED", "");
                (label, invoke_deploy(&deployer, event).await)
            }
            Push(label, event) => {
                pushes_delivered += 1;
                (label, invoke_deploy(&deployer, event).await)
            }
            Failing(label, event, operation) => {
                pushes_delivered += 1;
                stack.fail_next(operation, 1, "AccessDeniedException");
                let result = invoke_deploy(&deployer, event.clone()).await;
                assert!(result.is_err(), "{label}: {result:?}");
                failed = Some((event, 0));
                (label, result)
            }
            LambdaRetry(label) => {
                pushes_delivered += 1;
                let (event, retried) = failed.take().expect("a failed invocation to retry");
                assert!(retried < retries, "Lambda retries {retries} times");
                let result = invoke_deploy(&deployer, event.clone()).await;
                if result.is_err() {
                    failed = Some((event, retried + 1));
                }
                (label, result)
            }
        };
        let calls = stack.calls()[before_calls..].to_vec();
        let running = stack
            .describe_service(&cluster, &service)
            .await
            .task_definition()
            .unwrap()
            .to_string();
        let now = digest_of(&stack, &running, &images).await;
        let updates = count(&calls, "UpdateService");
        assert!(
            updates <= 1,
            "{label}: one service, one update at most: {calls:?}"
        );
        if updates == 1 {
            // Never an update to an image older than the one running.
            assert!(
                pushed_at(&now) > pushed_at(&current),
                "{label}: updated the service from {current} to the older {now}\n{log:#?}"
            );
            updates_to.push(now.clone());
        } else {
            assert_eq!(
                now, current,
                "{label}: the service changed without an update"
            );
        }
        match &result {
            Ok(report) => {
                for o in report.outcomes.iter().filter(|o| o.action == "deploy") {
                    let (id, rev) = (
                        o.detail("deployment_id").unwrap(),
                        o.detail("revision").unwrap(),
                    );
                    deployments.insert(digest_of(&stack, rev, &images).await, id.to_string());
                }
                log.push(format!("{label}: {:?}", report.actions()));
            }
            Err(f) => {
                // Only the injected fault fails an invocation; Lambda retries it.
                assert!(
                    f.to_string().contains("UpdateService"),
                    "{label}: {f:?}\n{log:#?}"
                );
                log.push(format!("{label}: failed ({})", f.code));
            }
        }
        current = now;
    }
    assert!(
        failed.is_none(),
        "the failed invocation was retried: {log:#?}"
    );
    assert!(pushes_delivered >= 20, "{pushes_delivered} push deliveries");

    let newest = &images[d].digest;
    assert_eq!(
        &current, newest,
        "the service ends on the newest image: {log:#?}"
    );
    assert_eq!(
        updates_to.iter().filter(|u| *u == newest).count(),
        1,
        "exactly one UpdateService to the newest image: {log:#?}"
    );
    let calls = stack.calls()[mark..].to_vec();
    // C was delivered first and deployed (no rollback later); D once.
    assert_eq!(
        (
            count(&calls, "RegisterTaskDefinition"),
            count(&calls, "UpdateService")
        ),
        (2, 2),
        "{log:#?}"
    );
    let revisions = stack.revisions(&family).await;
    let mut for_newest = 0;
    for r in &revisions {
        let (_, tags) = stack.describe_task_definition(r).await;
        if tags
            .iter()
            .any(|t| t.key() == Some("autopilot:image-digest") && t.value() == Some(newest))
        {
            for_newest += 1;
        }
    }
    assert_eq!(
        for_newest, 1,
        "one revision for the newest image: {revisions:?}\n{log:#?}"
    );
    assert_eq!(revisions.len(), 3, "v1.0.0's, C's and D's: {revisions:?}");

    // What on-call received, as docs/deploy.md says: one "Deploying" page for
    // D; for C, its page and one more when the same event came again before
    // any verdict (the same incident); each COMPLETED resolves its incident once.
    let pages = stack.pages().await;
    let key = |digest: &str| format!("autopilot/deploy/{cluster}/{service}/{digest}");
    let of = |digest: &str, action: &str| {
        pages
            .iter()
            .filter(|p| p.dedup_key() == key(digest) && p.action() == action)
            .count()
    };
    let summary: Vec<String> = pages
        .iter()
        .map(|p| format!("{} {} {}", p.action(), p.severity, p.summary()))
        .collect();
    assert_eq!(of(newest, "trigger"), 1, "{summary:#?}\n{log:#?}");
    assert_eq!(of(newest, "resolve"), 1, "{summary:#?}");
    assert_eq!(of(&images[c].digest, "trigger"), 2, "{summary:#?}");
    assert_eq!(of(&images[c].digest, "resolve"), 1, "{summary:#?}");
    assert_eq!(pages.len(), 5, "{summary:#?}");
    let keys: BTreeSet<&str> = pages.iter().map(|p| p.dedup_key()).collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    println!(
        "push storm: {pushes_delivered} push deliveries, {verdicts_delivered} verdict deliveries; {} RegisterTaskDefinition, {} UpdateService; {} pages",
        count(&calls, "RegisterTaskDefinition"),
        count(&calls, "UpdateService"),
        pages.len()
    );
}

// ---------------------------------------------------------------------------
// The alarm storm
// ---------------------------------------------------------------------------

/// The guardrail variables remediate gets from template.yaml, at the template's defaults.
fn template_guardrails() -> Vec<(&'static str, String)> {
    let vars = &template::properties("RemediateFunction")["Environment"]["Variables"];
    [
        rc::COOLDOWN_SECONDS,
        rc::MAX_ACTIONS,
        rc::ACTION_WINDOW_MINUTES,
        rc::FLAP_LIMIT,
        rc::FLAP_WINDOW_MINUTES,
    ]
    .into_iter()
    .map(|var| {
        let parameter = vars[var]["Ref"]
            .as_str()
            .unwrap_or_else(|| panic!("RemediateFunction sets {var} from a parameter"));
        (var, default_parameter(parameter))
    })
    .collect()
}

/// One alarm of the storm: how its state changes reach remediate (EventBridge
/// always, by template.yaml's rule; SNS when its actions notify the alarm topic;
/// the Lambda alarm action when it invokes the function), and how often it flips.
struct Flapper {
    alarm: String,
    resource: String,
    forms: Vec<Form>,
    flips: usize,
}

/// One delivery to remediate and what it answered.
struct Delivered {
    alarm: String,
    how: String,
    result: Result<Report, Failure>,
}

async fn invoke_remediate(r: &Remediator, event: Value) -> Result<Report, Failure> {
    r.handle(LambdaEvent::new(event, Context::default())).await
}

/// Flips `f.alarm` between ALARM and OK `f.flips` times, as CloudWatch's
/// evaluations would, and delivers each state change in every form it is wired
/// for, concurrently, before the next evaluation flips it again. Now and then
/// EventBridge delivers a change twice, or late: after the next flip (the alarm
/// is in the other state by then), or after the next two (the same state as the
/// event, but a later change of it). A failed invocation is retried by Lambda
/// `retries` times, after the storm has moved on.
async fn flap(stack: Arc<Stack>, r: Remediator, f: Flapper, retries: usize) -> Vec<Delivered> {
    let mut delivered = Vec::new();
    // Late deliveries, and the flip they come with.
    let mut late: Vec<(usize, Value)> = Vec::new();
    let mut failed: Vec<(String, Value)> = Vec::new();
    for i in 0..f.flips {
        let state = if i % 2 == 0 { "ALARM" } else { "OK" };
        stack.set_alarm(&f.alarm, state).await;
        let (arn, time) = stack.alarm_now(&f.alarm).await;
        let event = |form: Form| alarm_event(form, &f.alarm, &arn, state, &time);
        let mut batch: Vec<(String, Value)> = f
            .forms
            .iter()
            .map(|form| (format!("{form:?}"), event(*form)))
            .collect();
        if i % 4 == 1 {
            batch.push(("EventBridge, twice".into(), event(Form::EventBridge)));
        }
        let (now, later): (Vec<_>, Vec<_>) = late.drain(..).partition(|(due, _)| *due == i);
        late = later;
        batch.extend(
            now.into_iter()
                .map(|(_, e)| ("EventBridge, late".to_string(), e)),
        );
        if i % 6 == 2 {
            late.push((i + 1, event(Form::EventBridge)));
        }
        if i % 10 == 5 {
            late.push((i + 2, event(Form::EventBridge)));
        }
        let mut set = tokio::task::JoinSet::new();
        for (how, e) in batch {
            let r = r.clone();
            set.spawn(async move {
                let result = invoke_remediate(&r, e.clone()).await;
                (how, e, result)
            });
        }
        while let Some(joined) = set.join_next().await {
            let (how, e, result) = joined.expect("delivery task");
            if result.is_err() {
                failed.push((how.clone(), e));
            }
            delivered.push(Delivered {
                alarm: f.alarm.clone(),
                how,
                result,
            });
        }
    }
    for (_, e) in late.drain(..) {
        let result = invoke_remediate(&r, e.clone()).await;
        if result.is_err() {
            failed.push(("EventBridge, late".into(), e));
        }
        delivered.push(Delivered {
            alarm: f.alarm.clone(),
            how: "EventBridge, late".into(),
            result,
        });
    }
    for attempt in 1..=retries {
        for (how, e) in std::mem::take(&mut failed) {
            let how = format!("{how}, Lambda retry {attempt}");
            let result = invoke_remediate(&r, e.clone()).await;
            if result.is_err() {
                failed.push((how.clone(), e));
            }
            delivered.push(Delivered {
                alarm: f.alarm.clone(),
                how,
                result,
            });
        }
    }
    delivered
}

/// Hundreds of ALARM/OK flips across four resources (three services, one
/// database; one service with two alarms), delivered to remediate as
/// template.yaml wires it: EventBridge for every alarm, SNS or the Lambda alarm
/// action for some, concurrently (its concurrency is not reserved), with
/// duplicates, late deliveries and Lambda's retries, under the template's
/// default guardrails.
#[tokio::test]
async fn an_alarm_storm_takes_bounded_actions_and_pages_one_incident_per_alarm() {
    assert!(
        template::properties("RemediateFunction")
            .get("ReservedConcurrentExecutions")
            .is_none(),
        "remediate's concurrency is not reserved: its deliveries run at once"
    );
    let retries = lambda_retries("RemediateFunction");
    let rails = template_guardrails();
    let rail = |var: &str| -> i64 {
        rails
            .iter()
            .find(|(k, _)| *k == var)
            .unwrap()
            .1
            .parse()
            .unwrap()
    };
    let (cooldown, max_actions, action_window, flap_limit) = (
        rail(rc::COOLDOWN_SECONDS),
        rail(rc::MAX_ACTIONS),
        rail(rc::ACTION_WINDOW_MINUTES) * 60,
        rail(rc::FLAP_LIMIT),
    );

    let stack = Stack::new("alarm_storm").await;
    let table = stack.guard_table().await;
    let cluster = stack.cluster("prod").await;
    let mut services = Vec::new();
    for base in ["web", "api", "worker"] {
        let family = stack.name(base);
        let td = stack.task_definition(&family, "app", "nginx:1.27").await;
        let service = stack.name(base);
        stack
            .service(&cluster, &service, td.task_definition_arn().unwrap())
            .await;
        stack.settle_service(&cluster, &service).await;
        services.push(service);
    }
    let (web, api, worker) = (&services[0], &services[1], &services[2]);
    let instance = stack.name("orders-db");
    stack
        .rds()
        .create_db_instance()
        .db_instance_identifier(&instance)
        .db_instance_class("db.t4g.medium")
        .engine("postgres")
        .allocated_storage(100)
        .master_username("app")
        .master_user_password("not-a-real-password-1")
        .send()
        .await
        .expect("create instance");
    let bounds: Vec<Value> = services
        .iter()
        .map(|s| {
            json!({"cluster": cluster, "service": s, "min": 2, "max": 10, "step": 2,
                        "targetGroups": [format!("targetgroup/{s}/0123456789abcdef")]})
        })
        .collect();
    let mut vars = rails.clone();
    vars.push((rc::SERVICES, json!(bounds).to_string()));
    vars.push((
        rc::DATABASES,
        json!([{"instance": instance, "growPercent": 20, "maxAllocatedGiB": 500}]).to_string(),
    ));
    let r = Remediator::new(&stack.sdk, stack.remediate_config(&table, &vars));

    let ecs = |s: &str| format!("ecs:{cluster}/{s}");
    let flappers = vec![
        Flapper {
            alarm: stack
                .alarm(AlarmSpec::ecs_cpu("web-cpu-high", &cluster, web))
                .await,
            resource: ecs(web),
            forms: vec![Form::EventBridge, Form::Sns],
            flips: 30,
        },
        Flapper {
            alarm: stack
                .alarm(AlarmSpec::ecs(
                    "web-memory-high",
                    "MemoryUtilization",
                    85.0,
                    &cluster,
                    web,
                ))
                .await,
            resource: ecs(web),
            forms: vec![Form::EventBridge],
            flips: 30,
        },
        Flapper {
            alarm: stack
                .alarm(AlarmSpec {
                    base: "api-unhealthy-hosts",
                    namespace: "AWS/ApplicationELB",
                    metric: "UnHealthyHostCount",
                    dimensions: vec![
                        ("TargetGroup", format!("targetgroup/{api}/0123456789abcdef")),
                        ("LoadBalancer", format!("app/{api}-alb/0123456789abcdef")),
                    ],
                    statistic: Statistic::Maximum,
                    comparison: ComparisonOperator::GreaterThanThreshold,
                    threshold: 0.0,
                    tags: vec![],
                })
                .await,
            resource: ecs(api),
            forms: vec![Form::EventBridge, Form::Direct],
            flips: 60,
        },
        Flapper {
            alarm: stack
                .alarm(AlarmSpec::ecs_cpu("worker-cpu-high", &cluster, worker))
                .await,
            resource: ecs(worker),
            forms: vec![Form::EventBridge],
            flips: 60,
        },
        Flapper {
            alarm: stack
                .alarm(AlarmSpec {
                    base: "orders-db-storage-low",
                    namespace: "AWS/RDS",
                    metric: "FreeStorageSpace",
                    dimensions: vec![("DBInstanceIdentifier", instance.clone())],
                    statistic: Statistic::Minimum,
                    comparison: ComparisonOperator::LessThanThreshold,
                    threshold: 10.0 * 1024.0 * 1024.0 * 1024.0,
                    tags: vec![],
                })
                .await,
            resource: format!("rds:{instance}"),
            forms: vec![Form::EventBridge, Form::Direct],
            flips: 60,
        },
    ];
    let alarms: BTreeMap<String, String> = flappers
        .iter()
        .map(|f| (f.alarm.clone(), f.resource.clone()))
        .collect();
    let resources: BTreeSet<String> = alarms.values().cloned().collect();
    let flips: usize = flappers.iter().map(|f| f.flips).sum();

    let started = std::time::Instant::now();
    let stack = Arc::new(stack);
    let mut storms = tokio::task::JoinSet::new();
    for f in flappers {
        storms.spawn(flap(stack.clone(), r.clone(), f, retries));
    }
    let mut delivered = Vec::new();
    while let Some(d) = storms.join_next().await {
        delivered.extend(d.expect("storm task"));
    }
    let elapsed = started.elapsed();
    // Every state change answered within the storm; the figures below hold only
    // while it lasted less than the cooldown (the template's is 10 minutes).
    assert!(elapsed.as_secs() < cooldown as u64, "{elapsed:?}");

    // Nothing lost: every delivery Lambda gave up on would be in the dead-letter queue.
    let lost: Vec<String> = delivered
        .iter()
        .filter(|d| d.result.is_err())
        .filter(|d| d.how.ends_with(&format!("Lambda retry {retries}")))
        .map(|d| format!("{} {}: {:?}", d.alarm, d.how, d.result.as_ref().err()))
        .collect();
    assert!(lost.is_empty(), "dead-lettered: {lost:#?}");
    let failures = delivered.iter().filter(|d| d.result.is_err()).count();
    for d in delivered.iter().filter_map(|d| d.result.as_ref().err()) {
        assert_eq!(d.code, "autopilot.RemediationInProgress", "{d:?}");
    }

    let outcomes: Vec<(&str, &autopilot_shared::Outcome)> = delivered
        .iter()
        .filter_map(|d| d.result.as_ref().ok().map(|r| (d.alarm.as_str(), r)))
        .flat_map(|(a, r)| r.outcomes.iter().map(move |o| (a, o)))
        .collect();
    // Each state change is decided on by the first delivery to record it, and
    // acts at most once; the others are duplicates, stale, or find the claim and
    // are retried by Lambda. Pages sent for each state change, by its deliveries:
    let mut paged: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut acted: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (alarm, o) in &outcomes {
        let Some(t) = o.detail("transition") else {
            continue; // stale: another state change than the alarm's now
        };
        if o.reason.starts_with("duplicate") {
            continue;
        }
        *paged.entry((alarm, t)).or_default() += usize::from(o.detail("page").is_some());
        if ["act", "resume", "failed"].contains(&o.action.as_str()) {
            *acted.entry((alarm, t)).or_default() += 1;
        }
    }
    let twice: Vec<_> = acted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "acted more than once: {twice:?}");

    // Actions: bounded per resource, never two inside the cooldown, never past the bounds.
    let mut actions = 0;
    for resource in &resources {
        let audit = stack.audit(&table, resource).await;
        let mut acted: Vec<chrono::DateTime<chrono::Utc>> = audit
            .iter()
            .filter(|a| a["decision"] == "act" || a["decision"] == "resume")
            .map(|a| a["time"].as_str().unwrap().parse().unwrap())
            .collect();
        acted.sort();
        assert!(!acted.is_empty(), "{resource}: the first ALARM acts");
        for pair in acted.windows(2) {
            assert!(
                (pair[1] - pair[0]).num_milliseconds() >= cooldown * 1000,
                "{resource}: two actions inside the {cooldown} s cooldown: {acted:?}"
            );
        }
        for (i, t) in acted.iter().enumerate() {
            let in_window = acted[i..]
                .iter()
                .filter(|u| (**u - *t).num_seconds() < action_window)
                .count();
            assert!(
                in_window as i64 <= max_actions,
                "{resource}: {in_window} actions in {action_window} s: {acted:?}"
            );
        }
        actions += acted.len();
    }
    let calls = stack.calls();
    if std::env::var_os("STORM_PROFILE").is_some() {
        let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &calls {
            *ops.entry(c.as_str()).or_default() += 1;
        }
        println!("{} calls: {ops:?}", calls.len());
    }
    // Each action is one write to AWS: scale-outs and the restart are
    // UpdateService, the storage growth ModifyDBInstance; the test made none.
    assert_eq!(
        count(&calls, "UpdateService") + count(&calls, "ModifyDBInstance"),
        actions,
        "{calls:?}"
    );
    for s in &services {
        let desired = stack.describe_service(&cluster, s).await.desired_count();
        assert!((2..=10).contains(&desired), "{s}: desired count {desired}");
    }

    // Pages: what on-call received, under one dedup key per alarm; none for a
    // duplicate or a stale delivery; and a flapping alarm stays one incident:
    // counted as PagerDuty does (the relay skips info triggers; a trigger opens
    // an incident unless its key has one open; a resolve closes it).
    let pages = stack.pages().await;
    let sent: usize = paged.values().sum();
    assert_eq!(pages.len(), sent, "every page sent reached on-call, once");
    let keys: BTreeSet<&str> = pages.iter().map(|p| p.dedup_key()).collect();
    let expected: BTreeSet<String> = alarms
        .keys()
        .map(|a| format!("autopilot-remediate/{a}"))
        .collect();
    assert_eq!(
        keys,
        expected.iter().map(String::as_str).collect(),
        "one dedup key per alarm"
    );
    let mut open: BTreeMap<&str, bool> = BTreeMap::new();
    let mut incidents: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &pages {
        let key = p.dedup_key();
        *per_key.entry(key).or_default() += 1;
        match p.action() {
            "trigger" if p.severity == "info" => {}
            "trigger" => {
                if !open.insert(key, true).unwrap_or(false) {
                    *incidents.entry(key).or_default() += 1;
                }
            }
            "resolve" => {
                open.insert(key, false);
            }
            other => panic!("page action {other}"),
        }
    }
    // Before an alarm counts as flapping, each ALARM after an OK is an incident
    // of its own (the first ALARM, and each one up to the flap limit); from the
    // first page that says it flaps, it stays that one incident, whatever the
    // number of flips. So pages stop too: at most the changes up to the flap
    // limit and one more are paged, by each of the deliveries in flight at once.
    let most = (flap_limit / 2 + 1) as usize;
    for (key, n) in &incidents {
        assert!(*n <= most, "{key}: {n} incidents, more than {most}");
        assert_eq!(
            open.get(key),
            Some(&true),
            "{key}: still flapping when the storm ends"
        );
    }
    let in_flight = 4; // its forms (up to 2), a duplicate, a late one
    for (key, n) in &per_key {
        let bound = (flap_limit as usize + 2) * in_flight;
        assert!(*n <= bound, "{key}: {n} pages, more than {bound}");
    }
    let triggers = pages.iter().filter(|p| p.action() == "trigger").count();
    let resolves = pages.iter().filter(|p| p.action() == "resolve").count();
    let repeated = paged.values().filter(|n| **n > 1).count();

    let stale = outcomes
        .iter()
        .filter(|(_, o)| o.action == "ignore" && o.reason.starts_with("stale"))
        .count();
    let duplicates = outcomes
        .iter()
        .filter(|(_, o)| o.action == "ignore" && o.reason.starts_with("duplicate"))
        .count();
    println!(
        "alarm storm: {flips} flips of {} alarms on {} resources; {} deliveries ({failures} failed and retried by Lambda), {} state changes decided, {duplicates} duplicates, {stale} stale; {actions} actions; {} pages ({triggers} triggers, {resolves} resolves; {repeated} state changes paged by two deliveries at once), {} incidents; {elapsed:.1?}",
        alarms.len(),
        resources.len(),
        delivered.len(),
        paged.len(),
        pages.len(),
        incidents.values().sum::<usize>()
    );
}
