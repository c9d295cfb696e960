//! The remediate function end to end against the emulator: real alarms in
//! CloudWatch, real guardrail writes in DynamoDB, real SDK clients over HTTP.

use autopilot_shared::record::Record;
use autopilot_shared::{Failure, Report};
use autopilot_tests::alarms::{alarm_event, sample, AlarmSpec, Form};
use autopilot_tests::*;
use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use aws_sdk_cloudwatch::types::{ComparisonOperator, Statistic};
use lambda_runtime::{Context, LambdaEvent};
use remediate::config as rc;
use remediate::Remediator;
use serde_json::{json, Value};

/// A production-shaped service `prod/web` running 2 tasks, with bounds 2–10 and step 2.
struct World {
    stack: Stack,
    table: String,
    cluster: String,
    service: String,
    family: String,
    revision: String,
}

impl World {
    async fn new(test: &str) -> Self {
        Self::running(Stack::new(test).await, "nginx:1.27").await
    }

    /// The world with `prod/web` running `image`.
    async fn running(stack: Stack, image: &str) -> Self {
        let table = stack.guard_table().await;
        let cluster = stack.cluster("prod").await;
        let family = stack.name("web");
        let td = stack.task_definition(&family, "app", image).await;
        let revision = td.task_definition_arn().unwrap().to_string();
        let service = stack.name("web");
        stack.service(&cluster, &service, &revision).await;
        stack.settle_service(&cluster, &service).await;
        Self {
            stack,
            table,
            cluster,
            service,
            family,
            revision,
        }
    }

    fn resource(&self) -> String {
        format!("ecs:{}/{}", self.cluster, self.service)
    }

    fn services(&self) -> String {
        json!([{"cluster": self.cluster, "service": self.service, "min": 2, "max": 10, "step": 2,
                "targetGroups": [format!("targetgroup/{}/0123456789abcdef", self.service)],
                "loadBalancers": [format!("app/{}-alb/0123456789abcdef", self.service)]}])
        .to_string()
    }

    fn remediator_with(&self, vars: &[(&str, String)]) -> Remediator {
        let mut all = vec![(rc::SERVICES, self.services())];
        all.extend(vars.iter().cloned());
        Remediator::new(
            &self.stack.sdk,
            self.stack.remediate_config(&self.table, &all),
        )
    }

    fn remediator(&self) -> Remediator {
        self.remediator_with(&[])
    }

    async fn cpu_alarm(&self) -> String {
        self.stack
            .alarm(AlarmSpec::ecs_cpu(
                "web-cpu-high",
                &self.cluster,
                &self.service,
            ))
            .await
    }

    async fn memory_alarm(&self) -> String {
        self.stack
            .alarm(AlarmSpec::ecs(
                "web-memory-high",
                "MemoryUtilization",
                85.0,
                &self.cluster,
                &self.service,
            ))
            .await
    }

    /// Moves `alarm` to `state` and delivers that transition in `form`.
    async fn fire(
        &self,
        r: &Remediator,
        alarm: &str,
        state: &str,
        form: Form,
    ) -> Result<Report, Failure> {
        self.stack.set_alarm(alarm, state).await;
        self.deliver(r, alarm, state, form).await
    }

    /// Delivers `alarm`'s current transition, as CloudWatch would in `form`.
    async fn deliver(
        &self,
        r: &Remediator,
        alarm: &str,
        state: &str,
        form: Form,
    ) -> Result<Report, Failure> {
        invoke(r, self.stack.alarm_event(form, alarm, state).await).await
    }

    async fn desired(&self) -> i32 {
        self.stack
            .describe_service(&self.cluster, &self.service)
            .await
            .desired_count()
    }

    fn update_services(&self) -> usize {
        self.stack
            .calls()
            .iter()
            .filter(|c| *c == "UpdateService")
            .count()
    }
}

async fn invoke(r: &Remediator, event: Value) -> Result<Report, Failure> {
    r.handle(LambdaEvent::new(event, Context::default())).await
}

fn only(report: &Report) -> &autopilot_shared::Outcome {
    assert_eq!(report.outcomes.len(), 1, "{report:?}");
    &report.outcomes[0]
}

#[tokio::test]
async fn cpu_high_scales_out_ok_resolves_and_the_sweep_scales_back_in_after_the_cooldown() {
    let w = World::new("cpu_scale").await;
    let r = w.remediator();
    let alarm = w.cpu_alarm().await;
    let report = w
        .fire(&r, &alarm, "ALARM", Form::EventBridge)
        .await
        .unwrap();
    let o = only(&report);
    assert_eq!(o.action, "act", "{o:?}");
    assert_eq!(o.detail("before"), Some("desired count 2"));
    assert_eq!(o.detail("after"), Some("desired count 4"));
    assert_eq!(w.desired().await, 4);
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].severity, "warning");
    assert_eq!(pages[0].action(), "trigger");
    assert_eq!(pages[0].detail("Before"), "desired count 2");
    assert_eq!(pages[0].detail("After"), "desired count 4");
    assert_eq!(pages[0].detail("Bounds"), "desired count 2–10, step 2");
    let key = pages[0].dedup_key().to_string();

    // OK inside the cooldown: the page resolves, the count stays until the cooldown ends.
    let report = w.fire(&r, &alarm, "OK", Form::EventBridge).await.unwrap();
    assert_eq!(only(&report).action, "resolve");
    assert!(only(&report).reason.contains("cooldown"), "{report:?}");
    assert_eq!(w.desired().await, 4);
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1);
    assert_eq!(
        (pages[0].action(), pages[0].dedup_key()),
        ("resolve", key.as_str())
    );

    // The sweep before the cooldown ends waits; after it, scales in to the baseline.
    let sweep =
        template::scheduled_event("RemediateFunction", "ScaleInSweep", "2026-11-24T03:20:00Z");
    let report = invoke(&r, sweep.clone()).await.unwrap();
    assert_eq!(
        report
            .outcomes
            .iter()
            .find(|o| o.resource == w.resource())
            .unwrap()
            .action,
        "wait"
    );
    w.stack.end_cooldown(&w.table, &w.resource()).await;
    let report = invoke(&r, sweep.clone()).await.unwrap();
    let o = report
        .outcomes
        .iter()
        .find(|o| o.resource == w.resource())
        .unwrap();
    assert_eq!(
        (o.action.as_str(), o.detail("after")),
        ("scale-in", Some("desired count 2")),
        "{o:?}"
    );
    assert_eq!(w.desired().await, 2);
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].severity, "info");
    // Back at the baseline: the service leaves the sweep's list.
    let report = invoke(&r, sweep).await.unwrap();
    assert!(
        report.outcomes.iter().all(|o| o.resource != w.resource()),
        "{report:?}"
    );

    let audit = w.stack.audit(&w.table, &w.resource()).await;
    let decisions: Vec<&str> = audit
        .iter()
        .map(|a| a["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["act", "resolve", "scale-in"], "{audit:?}");
    assert!(audit.iter().all(|a| a["expires_at"].as_f64().unwrap()
        > chrono::Utc::now().timestamp() as f64 + 80.0 * 86400.0));
}

#[tokio::test]
async fn the_three_deliveries_of_one_transition_act_once() {
    let w = World::new("deliveries").await;
    let r = w.remediator();
    let alarm = w.cpu_alarm().await;
    let sns = w.fire(&r, &alarm, "ALARM", Form::Sns).await.unwrap();
    assert_eq!(only(&sns).action, "act");
    assert_eq!(only(&sns).detail("delivery"), Some("sns"));
    for form in [Form::Direct, Form::EventBridge, Form::Sns] {
        let again = invoke(&r, w.stack.alarm_event(form, &alarm, "ALARM").await)
            .await
            .unwrap();
        assert_eq!(only(&again).action, "ignore", "{form:?}: {again:?}");
        assert!(only(&again).reason.starts_with("duplicate"), "{again:?}");
    }
    assert_eq!(w.desired().await, 4);
    assert_eq!(w.update_services(), 1);
    assert_eq!(w.stack.pages().await.len(), 1);
}

#[tokio::test]
async fn two_alarms_on_one_service_at_once_take_exactly_one_action() {
    let w = World::new("concurrent").await;
    let r = w.remediator();
    let cpu = w.cpu_alarm().await;
    let memory = w.memory_alarm().await;
    w.stack.set_alarm(&cpu, "ALARM").await;
    w.stack.set_alarm(&memory, "ALARM").await;
    let (a, b) = (
        w.stack.alarm_event(Form::EventBridge, &cpu, "ALARM").await,
        w.stack
            .alarm_event(Form::EventBridge, &memory, "ALARM")
            .await,
    );
    // Slow the guard reads so the two invocations overlap for real.
    w.stack.slow("GetItem", 0.3);
    let (ra, rb) = tokio::join!(invoke(&r, a), invoke(&r, b));
    let actions: Vec<String> = [ra.unwrap(), rb.unwrap()]
        .iter()
        .map(|r| only(r).action.clone())
        .collect();
    let mut sorted = actions.clone();
    sorted.sort();
    assert_eq!(sorted, ["act", "refuse"], "{actions:?}");
    assert_eq!(w.update_services(), 1);
    assert_eq!(w.desired().await, 4);
    let pages = w.stack.pages().await;
    let refused = pages
        .iter()
        .find(|p| p.summary().contains("refused"))
        .expect("a refusal page");
    assert!(
        refused.summary().contains("cooldown until"),
        "{}",
        refused.summary()
    );
}

#[tokio::test]
async fn the_same_event_delivered_twice_at_once_acts_once() {
    let w = World::new("same_twice").await;
    let r = w.remediator();
    let alarm = w.cpu_alarm().await;
    w.stack.set_alarm(&alarm, "ALARM").await;
    let event = w
        .stack
        .alarm_event(Form::EventBridge, &alarm, "ALARM")
        .await;
    w.stack.slow("GetItem", 0.3);
    let (a, b) = tokio::join!(invoke(&r, event.clone()), invoke(&r, event.clone()));
    // One acts; the other finds the claim (and fails, to be retried) or the handled transition.
    assert!(a.is_ok() || b.is_ok());
    for result in [&a, &b] {
        match result {
            Ok(report) => assert!(
                ["act", "ignore"].contains(&only(report).action.as_str()),
                "{report:?}"
            ),
            Err(f) => assert_eq!(f.code, "autopilot.RemediationInProgress", "{f:?}"),
        }
    }
    assert_eq!(w.update_services(), 1);
    // The retry Lambda makes later finds the transition handled.
    let retry = invoke(&r, event).await.unwrap();
    assert_eq!(only(&retry).action, "ignore");
    assert_eq!(w.update_services(), 1);
    assert_eq!(w.desired().await, 4);
}

#[tokio::test]
async fn a_flapping_alarm_stops_automatic_action() {
    let w = World::new("flapping").await;
    let r = w.remediator_with(&[
        (rc::FLAP_LIMIT, "3".into()),
        (rc::COOLDOWN_SECONDS, "1".into()),
    ]);
    let alarm = w.cpu_alarm().await;
    let mut last = None;
    for state in ["ALARM", "OK", "ALARM", "OK"] {
        w.stack.set_alarm(&alarm, state).await;
        last = Some(
            invoke(
                &r,
                w.stack.alarm_event(Form::EventBridge, &alarm, state).await,
            )
            .await
            .unwrap(),
        );
    }
    assert_eq!(only(last.as_ref().unwrap()).action, "resolve");
    w.stack.pages().await;
    let report = w
        .fire(&r, &alarm, "ALARM", Form::EventBridge)
        .await
        .unwrap();
    assert_eq!(only(&report).action, "refuse");
    assert!(only(&report).reason.starts_with("flapping"), "{report:?}");
    let pages = w.stack.pages().await;
    assert!(
        pages[0].summary().contains("flapping"),
        "{}",
        pages[0].summary()
    );
}

#[tokio::test]
async fn no_scaling_while_a_deployment_is_in_flight() {
    let w = World::new("in_flight").await;
    let r = w.remediator();
    w.stack
        .ecs
        .update_service()
        .cluster(&w.cluster)
        .service(&w.service)
        .force_new_deployment(true)
        .send()
        .await
        .unwrap();
    let alarm = w.cpu_alarm().await;
    let report = w
        .fire(&r, &alarm, "ALARM", Form::EventBridge)
        .await
        .unwrap();
    assert_eq!(only(&report).action, "refuse");
    assert!(
        only(&report).reason.contains("is in progress"),
        "{report:?}"
    );
    assert_eq!(w.desired().await, 2);
    assert_eq!(
        w.update_services(),
        1,
        "only the test's own forced deployment"
    );
}

#[tokio::test]
async fn scaling_never_passes_the_bounds() {
    let w = World::new("bounds").await;
    let r = w.remediator_with(&[
        (rc::MAX_ACTIONS, "10".into()),
        (rc::FLAP_LIMIT, "20".into()),
    ]);
    let alarm = w.cpu_alarm().await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        // A new ALARM transition each time, after the cooldown of the last action.
        w.stack.set_alarm(&alarm, "OK").await;
        w.stack.set_alarm(&alarm, "ALARM").await;
        w.stack.end_cooldown(&w.table, &w.resource()).await;
        let report = w
            .deliver(&r, &alarm, "ALARM", Form::EventBridge)
            .await
            .unwrap();
        seen.push((
            only(&report).action.clone(),
            only(&report).reason.clone(),
            w.desired().await,
        ));
    }
    let counts: Vec<i32> = seen.iter().map(|s| s.2).collect();
    assert_eq!(counts, [4, 6, 8, 10, 10], "{seen:?}");
    assert_eq!(seen[4].0, "refuse");
    assert!(seen[4].1.starts_with("at maximum"), "{seen:?}");
}

#[tokio::test]
async fn dry_run_pages_would_and_changes_nothing() {
    let w = World::new("dry_run").await;
    let r = w.remediator_with(&[(autopilot_shared::config::DRY_RUN, "true".into())]);
    let alarm = w.cpu_alarm().await;
    let report = w.fire(&r, &alarm, "ALARM", Form::Direct).await.unwrap();
    assert!(report.dry_run);
    assert_eq!(only(&report).action, "act");
    assert_eq!(w.desired().await, 2);
    assert_eq!(w.update_services(), 0);
    let pages = w.stack.pages().await;
    assert!(
        pages[0].summary().contains("would scale-out"),
        "{}",
        pages[0].summary()
    );
    assert_eq!(pages[0].detail("Dry run"), "yes: nothing was changed");
    assert_eq!(
        w.stack.guard(&w.table, &w.resource()).await.version,
        None,
        "no claim in dry-run"
    );
}

#[tokio::test]
async fn insufficient_data_warns_by_default_and_is_silent_when_ignored() {
    let w = World::new("insufficient").await;
    let alarm = w.cpu_alarm().await;
    w.stack.set_alarm(&alarm, "INSUFFICIENT_DATA").await;
    let event = w
        .stack
        .alarm_event(Form::EventBridge, &alarm, "INSUFFICIENT_DATA")
        .await;
    let report = invoke(&w.remediator(), event.clone()).await.unwrap();
    assert_eq!(only(&report).action, "warn");
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].severity, "warning");
    assert!(pages[0].summary().contains("INSUFFICIENT_DATA"));
    let w2 = World::new("insufficient_ignored").await;
    let alarm = w2.cpu_alarm().await;
    w2.stack.set_alarm(&alarm, "INSUFFICIENT_DATA").await;
    let r = w2.remediator_with(&[(rc::INSUFFICIENT_DATA, "ignore".into())]);
    let report = invoke(
        &r,
        w2.stack
            .alarm_event(Form::EventBridge, &alarm, "INSUFFICIENT_DATA")
            .await,
    )
    .await
    .unwrap();
    assert_eq!(only(&report).action, "ignore");
    assert!(w2.stack.pages().await.is_empty());
    assert_eq!(w.update_services() + w2.update_services(), 0);
}

#[tokio::test]
async fn a_stale_or_forged_event_does_not_act() {
    let w = World::new("stale").await;
    let r = w.remediator();
    let alarm = w.cpu_alarm().await;
    w.stack.set_alarm(&alarm, "OK").await;
    // The event claims ALARM; CloudWatch says OK.
    let event = w.stack.alarm_event(Form::Sns, &alarm, "ALARM").await;
    let report = invoke(&r, event).await.unwrap();
    assert_eq!(only(&report).action, "ignore");
    assert!(only(&report).reason.starts_with("stale"), "{report:?}");
    // An alarm that does not exist.
    let (arn, time) = w.stack.alarm_now(&alarm).await;
    let forged = alarm_event(
        Form::Sns,
        &w.stack.name("no-such-alarm"),
        &arn,
        "ALARM",
        &time,
    );
    assert_eq!(only(&invoke(&r, forged).await.unwrap()).action, "ignore");
    assert_eq!(w.update_services(), 0);
    assert!(w.stack.pages().await.is_empty());
}

#[tokio::test]
async fn malformed_alarms_fail_naming_the_field() {
    let w = World::new("malformed").await;
    let r = w.remediator();
    let err = invoke(&r, sample("malformed-alarm.eventbridge.json"))
        .await
        .unwrap_err();
    assert_eq!(err.code, "autopilot.MalformedEvent");
    assert!(err.message.contains("alarmName"), "{err:?}");
    let err = invoke(&r, sample("malformed-alarm.sns.json"))
        .await
        .unwrap_err();
    assert_eq!(err.code, "autopilot.MalformedEvent");
    assert!(err.message.contains("Records[0].Sns.Message"), "{err:?}");
}

#[tokio::test]
async fn a_failed_action_pages_critical_with_the_error() {
    let w = World::new("failed").await;
    let r = w.remediator();
    let alarm = w.cpu_alarm().await;
    w.stack.set_alarm(&alarm, "ALARM").await;
    w.stack
        .fail_next("UpdateService", 1, "AccessDeniedException");
    let report = w
        .deliver(&r, &alarm, "ALARM", Form::EventBridge)
        .await
        .unwrap();
    assert_eq!(only(&report).action, "failed");
    let pages = w.stack.pages().await;
    assert_eq!(pages[0].severity, "critical");
    assert!(
        pages[0].summary().contains("FAILED"),
        "{}",
        pages[0].summary()
    );
    assert!(pages[0]
        .detail("Why")
        .as_str()
        .unwrap()
        .contains("AccessDeniedException"));
    assert_eq!(w.desired().await, 2);
}

#[tokio::test]
async fn unhealthy_hosts_restart_the_mapped_service() {
    let w = World::new("restart").await;
    let r = w.remediator();
    let before = w
        .stack
        .describe_service(&w.cluster, &w.service)
        .await
        .deployments()[0]
        .id()
        .unwrap()
        .to_string();
    let alarm = w
        .stack
        .alarm(AlarmSpec {
            base: "web-unhealthy-hosts",
            namespace: "AWS/ApplicationELB",
            metric: "UnHealthyHostCount",
            dimensions: vec![
                (
                    "TargetGroup",
                    format!("targetgroup/{}/0123456789abcdef", w.service),
                ),
                (
                    "LoadBalancer",
                    format!("app/{}-alb/0123456789abcdef", w.service),
                ),
            ],
            statistic: Statistic::Maximum,
            comparison: ComparisonOperator::GreaterThanThreshold,
            threshold: 0.0,
            tags: vec![],
        })
        .await;
    let report = w
        .fire(&r, &alarm, "ALARM", Form::EventBridge)
        .await
        .unwrap();
    assert_eq!(only(&report).action, "act", "{report:?}");
    let after = w.stack.describe_service(&w.cluster, &w.service).await;
    assert_ne!(
        after.deployments()[0].id().unwrap(),
        before,
        "a new deployment replaces the tasks"
    );
    assert_eq!(after.desired_count(), 2);
}

/// Registers the next revision as deploy would, with its record, and starts its deployment.
async fn deploy_like_autopilot(w: &World) -> (String, String) {
    let td = w
        .stack
        .task_definition(&w.family, "app", "nginx:1.28")
        .await;
    let new = td.task_definition_arn().unwrap().to_string();
    let out = w
        .stack
        .ecs
        .update_service()
        .cluster(&w.cluster)
        .service(&w.service)
        .task_definition(&new)
        .send()
        .await
        .unwrap();
    let deployment = out.service().unwrap().deployments()[0]
        .id()
        .unwrap()
        .to_string();
    let record = Record {
        repository: "web".into(),
        image_tag: "1.28".into(),
        digest: digest("web-1.28"),
        previous: w.revision.clone(),
        service: format!("{}/{}", w.cluster, w.service),
        push_event: Some("push-1".into()),
        push_event_time: None,
        deployment_id: Some(deployment.clone()),
        verdict: None,
        timeout_warned: None,
    };
    let mut tags: Vec<aws_sdk_ecs::types::Tag> = record
        .registration_pairs()
        .into_iter()
        .map(|(k, v)| aws_sdk_ecs::types::Tag::builder().key(k).value(v).build())
        .collect();
    tags.push(
        aws_sdk_ecs::types::Tag::builder()
            .key("autopilot:deployment-id")
            .value(&deployment)
            .build(),
    );
    w.stack
        .ecs
        .tag_resource()
        .resource_arn(&new)
        .set_tags(Some(tags))
        .send()
        .await
        .unwrap();
    (new, deployment)
}

async fn five_xx_alarm(w: &World) -> String {
    w.stack
        .alarm(AlarmSpec {
            base: "web-5xx",
            namespace: "AWS/ApplicationELB",
            metric: "HTTPCode_Target_5XX_Count",
            dimensions: vec![(
                "LoadBalancer",
                format!("app/{}-alb/0123456789abcdef", w.service),
            )],
            statistic: Statistic::Sum,
            comparison: ComparisonOperator::GreaterThanThreshold,
            threshold: 10.0,
            tags: vec![],
        })
        .await
}

#[tokio::test]
async fn five_xx_after_autopilots_deploy_rolls_back_even_while_it_rolls_out() {
    let w = World::new("rollback").await;
    let r = w.remediator();
    let (new, _) = deploy_like_autopilot(&w).await;
    let alarm = five_xx_alarm(&w).await;
    let report = w
        .fire(&r, &alarm, "ALARM", Form::EventBridge)
        .await
        .unwrap();
    let o = only(&report);
    assert_eq!(o.action, "act", "{o:?}");
    assert_eq!(
        o.detail("after"),
        Some(format!("task definition {}", w.revision.rsplit('/').next().unwrap()).as_str())
    );
    let service = w.stack.describe_service(&w.cluster, &w.service).await;
    assert_eq!(service.task_definition(), Some(w.revision.as_str()));
    assert_ne!(service.task_definition(), Some(new.as_str()));
    let pages = w.stack.pages().await;
    assert!(
        pages[0].summary().contains("rollback"),
        "{}",
        pages[0].summary()
    );
}

/// A push deployed by deploy itself records no deployment id (its verdict
/// does): a 5XX alarm while that deployment still rolls out, before any verdict,
/// rolls back all the same, recognising autopilot's deployment from ECS's times.
#[tokio::test]
async fn five_xx_during_a_push_deploy_before_its_verdict_rolls_back() {
    let stack = Stack::new("rollback_unrecorded").await;
    let repo = stack.repository("web").await;
    stack.push(&repo, "v1").await;
    let image = stack.image(&repo, "v1");
    let w = World::running(stack, &image).await;
    let deployer = deploy::Deployer::new(
        &w.stack.sdk,
        w.stack.config(
            json!([{"repository": repo, "tags": ["v*"], "cluster": w.cluster, "service": w.service, "container": "app"}]),
            false,
        ),
    );
    let digest = w.stack.push(&repo, "v2").await;
    let report = deployer
        .handle(LambdaEvent::new(
            ecr_event(&repo, Some("v2"), &digest, "PUSH", "SUCCESS"),
            Context::default(),
        ))
        .await
        .unwrap();
    assert_eq!(report.outcomes[0].action, "deploy", "{report:?}");
    let new = report.outcomes[0].detail("revision").unwrap().to_string();
    let (_, tags) = w.stack.describe_task_definition(&new).await;
    assert!(
        !tags
            .iter()
            .any(|t| t.key() == Some("autopilot:deployment-id")),
        "the push recorded no deployment id: {tags:?}"
    );
    let service = w.stack.describe_service(&w.cluster, &w.service).await;
    let primary = service
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .unwrap();
    assert_eq!(primary.task_definition(), Some(new.as_str()));
    assert_eq!(
        primary.rollout_state().map(|r| r.as_str()),
        Some("IN_PROGRESS"),
        "no verdict yet"
    );
    let deploy_pages = w.stack.pages().await;
    assert_eq!(deploy_pages.len(), 1, "deploy's page: {deploy_pages:?}");

    let r = w.remediator();
    let alarm = five_xx_alarm(&w).await;
    let report = w
        .fire(&r, &alarm, "ALARM", Form::EventBridge)
        .await
        .unwrap();
    let o = only(&report);
    assert_eq!(o.action, "act", "{o:?}");
    let service = w.stack.describe_service(&w.cluster, &w.service).await;
    assert_eq!(service.task_definition(), Some(w.revision.as_str()));
    assert!(
        o.detail("after")
            .is_some_and(|a| a.ends_with(w.revision.rsplit('/').next().unwrap())),
        "{o:?}"
    );
    let pages = w.stack.pages().await;
    assert!(
        pages.len() == 1 && pages[0].summary().contains("rollback"),
        "{pages:?}"
    );
}

#[tokio::test]
async fn five_xx_without_a_recent_autopilot_deploy_pages_only() {
    let w = World::new("no_rollback").await;
    let r = w.remediator();
    let alarm = five_xx_alarm(&w).await;
    let report = w
        .fire(&r, &alarm, "ALARM", Form::EventBridge)
        .await
        .unwrap();
    assert_eq!(only(&report).action, "page");
    assert!(
        only(&report).reason.contains("not deployed by autopilot"),
        "{report:?}"
    );
    assert_eq!(w.update_services(), 0);
    let pages = w.stack.pages().await;
    assert_eq!(pages[0].severity, "error");
}

#[tokio::test]
async fn with_an_auto_scaling_target_the_minimum_is_raised_and_restored() {
    let w = World::new("autoscaling").await;
    let r = w.remediator();
    let id = format!("service/{}/{}", w.cluster, w.service);
    let aas = w.stack.autoscaling();
    aas.register_scalable_target()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(&id)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .min_capacity(2)
        .max_capacity(6)
        .send()
        .await
        .unwrap();
    let min = || async {
        aas.describe_scalable_targets()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_ids(&id)
            .send()
            .await
            .unwrap()
            .scalable_targets()[0]
            .min_capacity()
    };
    let alarm = w.cpu_alarm().await;
    let report = w
        .fire(&r, &alarm, "ALARM", Form::EventBridge)
        .await
        .unwrap();
    assert_eq!(
        only(&report).detail("after"),
        Some("auto scaling minimum 4 (maximum 6)"),
        "{report:?}"
    );
    assert_eq!(min().await, 4);
    assert_eq!(
        w.update_services(),
        0,
        "the service's count is left to Application Auto Scaling"
    );
    w.stack.set_alarm(&alarm, "OK").await;
    w.stack.end_cooldown(&w.table, &w.resource()).await;
    let report = w
        .deliver(&r, &alarm, "OK", Form::EventBridge)
        .await
        .unwrap();
    assert_eq!(
        only(&report).detail("after"),
        Some("auto scaling minimum 2 (maximum 6)"),
        "{report:?}"
    );
    assert_eq!(min().await, 2);
}

struct Db {
    stack: Stack,
    table: String,
    instance: String,
}

impl Db {
    async fn new(test: &str, max_allocated: Option<i32>) -> Self {
        let stack = Stack::new(test).await;
        let table = stack.guard_table().await;
        let instance = stack.name("orders-db");
        let mut req = stack
            .rds()
            .create_db_instance()
            .db_instance_identifier(&instance)
            .db_instance_class("db.t4g.medium")
            .engine("postgres")
            .allocated_storage(100)
            .master_username("app")
            .master_user_password("not-a-real-password-1");
        if let Some(max) = max_allocated {
            req = req.max_allocated_storage(max);
        }
        req.send().await.expect("create instance");
        Self {
            stack,
            table,
            instance,
        }
    }

    fn remediator(&self) -> Remediator {
        let dbs = json!([{"instance": self.instance, "growPercent": 20, "maxAllocatedGiB": 500}])
            .to_string();
        Remediator::new(
            &self.stack.sdk,
            self.stack
                .remediate_config(&self.table, &[(rc::DATABASES, dbs)]),
        )
    }

    async fn alarm(
        &self,
        base: &str,
        metric: &str,
        comparison: ComparisonOperator,
        threshold: f64,
    ) -> String {
        self.stack
            .alarm(AlarmSpec {
                base,
                namespace: "AWS/RDS",
                metric,
                dimensions: vec![("DBInstanceIdentifier", self.instance.clone())],
                statistic: Statistic::Minimum,
                comparison,
                threshold,
                tags: vec![],
            })
            .await
    }

    async fn allocated(&self) -> i32 {
        let out = self
            .stack
            .rds()
            .describe_db_instances()
            .db_instance_identifier(&self.instance)
            .send()
            .await
            .unwrap();
        let db = &out.db_instances()[0];
        db.pending_modified_values()
            .and_then(|p| p.allocated_storage())
            .or(db.allocated_storage())
            .unwrap()
    }
}

#[tokio::test]
async fn low_free_storage_grows_it_once_per_six_hours() {
    let d = Db::new("storage", None).await;
    let r = d.remediator();
    let alarm = d
        .alarm(
            "storage-low",
            "FreeStorageSpace",
            ComparisonOperator::LessThanThreshold,
            10.0 * 1024.0 * 1024.0 * 1024.0,
        )
        .await;
    d.stack.set_alarm(&alarm, "ALARM").await;
    let report = invoke(&r, d.stack.alarm_event(Form::Direct, &alarm, "ALARM").await)
        .await
        .unwrap();
    assert_eq!(
        only(&report).detail("after"),
        Some("120 GiB allocated"),
        "{report:?}"
    );
    assert_eq!(d.allocated().await, 120);
    // A new ALARM after the cooldown, inside RDS's six hours: page only, and why.
    d.stack.set_alarm(&alarm, "OK").await;
    d.stack.set_alarm(&alarm, "ALARM").await;
    d.stack
        .end_cooldown(&d.table, &format!("rds:{}", d.instance))
        .await;
    let report = invoke(&r, d.stack.alarm_event(Form::Direct, &alarm, "ALARM").await)
        .await
        .unwrap();
    assert_eq!(only(&report).action, "page", "{report:?}");
    assert!(only(&report).reason.contains("6 hours"), "{report:?}");
    assert_eq!(d.allocated().await, 120);
}

#[tokio::test]
async fn storage_autoscaling_pages_only() {
    let d = Db::new("storage_auto", Some(1000)).await;
    let alarm = d
        .alarm(
            "storage-low",
            "FreeStorageSpace",
            ComparisonOperator::LessThanThreshold,
            1e10,
        )
        .await;
    d.stack.set_alarm(&alarm, "ALARM").await;
    let report = invoke(
        &d.remediator(),
        d.stack
            .alarm_event(Form::EventBridge, &alarm, "ALARM")
            .await,
    )
    .await
    .unwrap();
    assert_eq!(only(&report).action, "page");
    assert!(
        only(&report).reason.contains("storage autoscaling is on"),
        "{report:?}"
    );
    assert_eq!(d.allocated().await, 100);
}

#[tokio::test]
async fn database_cpu_pages_with_its_recent_datapoints() {
    let d = Db::new("db_cpu", None).await;
    let alarm = d
        .alarm(
            "cpu-high",
            "CPUUtilization",
            ComparisonOperator::GreaterThanThreshold,
            80.0,
        )
        .await;
    let now = chrono::Utc::now();
    let cw = d.stack.cloudwatch();
    for (minutes_ago, value) in [(3, 91.0), (2, 95.5), (1, 97.0)] {
        cw.put_metric_data()
            .namespace("AWS/RDS")
            .metric_data(
                aws_sdk_cloudwatch::types::MetricDatum::builder()
                    .metric_name("CPUUtilization")
                    .dimensions(
                        aws_sdk_cloudwatch::types::Dimension::builder()
                            .name("DBInstanceIdentifier")
                            .value(&d.instance)
                            .build(),
                    )
                    .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
                        (now - chrono::Duration::minutes(minutes_ago)).timestamp(),
                    ))
                    .value(value)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    d.stack.set_alarm(&alarm, "ALARM").await;
    let report = invoke(
        &d.remediator(),
        d.stack
            .alarm_event(Form::EventBridge, &alarm, "ALARM")
            .await,
    )
    .await
    .unwrap();
    assert_eq!(only(&report).action, "page");
    let pages = d.stack.pages().await;
    let points = pages[0].detail("Recent datapoints").to_string();
    assert!(
        points.contains("97") && points.contains("95.50"),
        "{points}"
    );
    assert!(pages[0]
        .detail("Metric")
        .as_str()
        .unwrap()
        .contains("AWS/RDS CPUUtilization"));
}

#[tokio::test]
async fn an_unreadable_service_still_pages_and_the_invocation_is_retried() {
    let w = World::new("unreadable").await;
    let r = w.remediator();
    let alarm = w.cpu_alarm().await;
    w.stack.set_alarm(&alarm, "ALARM").await;
    w.stack
        .fail_next("DescribeServices", 1, "AccessDeniedException");
    let err = w
        .deliver(&r, &alarm, "ALARM", Form::EventBridge)
        .await
        .unwrap_err();
    assert_eq!(err.code, "autopilot.AwsCallRefused", "{err:?}");
    let pages = w.stack.pages().await;
    assert_eq!(pages.len(), 1);
    let why = pages[0].detail("Why").as_str().unwrap().to_string();
    assert!(
        why.contains("could not read") && why.contains("AccessDeniedException"),
        "{why}"
    );
    // The retry acts.
    let report = w
        .deliver(&r, &alarm, "ALARM", Form::EventBridge)
        .await
        .unwrap();
    assert_eq!(only(&report).action, "act");
    assert_eq!(w.desired().await, 4);
}

#[tokio::test]
async fn no_scale_in_while_an_alarm_refused_in_the_cooldown_still_fires() {
    let w = World::new("scale_in_waits").await;
    let r = w.remediator();
    let cpu = w.cpu_alarm().await;
    let memory = w.memory_alarm().await;
    w.stack.set_alarm(&cpu, "ALARM").await;
    w.deliver(&r, &cpu, "ALARM", Form::EventBridge)
        .await
        .unwrap();
    let refused = w
        .fire(&r, &memory, "ALARM", Form::EventBridge)
        .await
        .unwrap();
    assert_eq!(only(&refused).action, "refuse");
    w.stack.set_alarm(&cpu, "OK").await;
    w.deliver(&r, &cpu, "OK", Form::EventBridge).await.unwrap();
    w.stack.end_cooldown(&w.table, &w.resource()).await;
    let sweep =
        template::scheduled_event("RemediateFunction", "ScaleInSweep", "2026-11-24T03:20:00Z");
    let report = invoke(&r, sweep.clone()).await.unwrap();
    let o = report
        .outcomes
        .iter()
        .find(|o| o.resource == w.resource())
        .unwrap();
    assert_eq!(o.action, "wait", "{o:?}");
    assert!(o.reason.contains(&memory), "{o:?}");
    assert_eq!(w.desired().await, 4);
    // Once memory is OK too, the sweep scales in.
    w.stack.set_alarm(&memory, "OK").await;
    let report = invoke(&r, sweep).await.unwrap();
    let o = report
        .outcomes
        .iter()
        .find(|o| o.resource == w.resource())
        .unwrap();
    assert_eq!(o.action, "scale-in", "{o:?}");
    assert_eq!(w.desired().await, 2);
}

/// The calls one scale-out makes, in order, pinned so they never grow unnoticed.
#[tokio::test]
async fn a_scale_out_makes_exactly_these_aws_calls() {
    let w = World::new("calls").await;
    let r = w.remediator();
    let alarm = w.cpu_alarm().await;
    w.stack.set_alarm(&alarm, "ALARM").await;
    let event = w
        .stack
        .alarm_event(Form::EventBridge, &alarm, "ALARM")
        .await;
    let before = w.stack.calls().len();
    invoke(&r, event).await.unwrap();
    let calls = w.stack.calls()[before..].to_vec();
    eprintln!("scale-out calls: {calls:?}");
    assert_eq!(
        calls,
        [
            "DescribeAlarms",
            "ListTagsForResource",
            "GetItem",
            "PutItem",
            "GetItem",
            "DescribeServices",
            "DescribeScalableTargets",
            "PutItem",
            "UpdateService",
            "GetItem",
            "PutItem",
            "PutItem",
            "GetMetricData",
            "PutItem",
            "Publish",
            "GetItem",
            "PutItem",
        ]
    );
}
