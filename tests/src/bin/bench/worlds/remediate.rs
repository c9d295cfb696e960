//! remediate's world: service `prod/web` (2 tasks, bounds 2–10, step 2, behind
//! the samples' target group and load balancers), instance `orders-db`, the
//! guardrail table, and a real CloudWatch alarm for every sample's alarm name.
//!
//! Every iteration is a new transition of the alarm on a world put back as it
//! was: the guardrail table emptied, the service at 2 tasks with its deployment
//! finished. CloudWatch moves the alarm (OK, then the sample's state) and the
//! sample is re-stamped with that transition's time, as CloudWatch would send
//! it; a redelivery of it is then a handled transition.

use super::{orders_db, sample, vars, ORDERS_DB};
use crate::measure::{Case, Step, World};
use autopilot_shared::record::Record;
use autopilot_tests::alarms::AlarmSpec;
use autopilot_tests::{bridge, digest, Stack, REGION};
use aws_sdk_cloudwatch::types::{
    AlarmType, ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricStat, StateValue,
    Statistic,
};
use lambda_runtime::{Context, LambdaEvent};
use remediate::Remediator;
use serde_json::{json, Value};
use std::sync::Arc;

const CLUSTER: &str = "prod";
const SERVICE: &str = "web";
const TARGET_GROUP: &str = "targetgroup/web/0123456789abcdef";
const ALB: &str = "app/web-alb/0123456789abcdef";
const ELB: &str = "legacy-elb";

/// The samples, and how each iteration makes it real work.
const SAMPLES: [(&str, &str); 21] = [
    ("ecs-cpu-high.eventbridge.json", SCALE_OUT),
    ("ecs-cpu-high.sns.json", SCALE_OUT),
    ("ecs-cpu-high.direct.json", SCALE_OUT),
    ("ecs-memory-high.eventbridge.json", SCALE_OUT),
    ("ecs-cpu-ok.eventbridge.json", AFTER_ALARM),
    ("ecs-cpu-ok.sns.json", AFTER_ALARM),
    ("ecs-cpu-ok.direct.json", AFTER_ALARM),
    ("ecs-cpu-insufficient-data.eventbridge.json", TRANSITION),
    ("alb-unhealthy-hosts.eventbridge.json", TRANSITION),
    ("alb-5xx.eventbridge.json", AFTER_DEPLOY),
    ("alb-5xx.sns.json", AFTER_DEPLOY),
    ("alb-5xx-rate.eventbridge.json", TRANSITION),
    ("elb-5xx.eventbridge.json", AFTER_DEPLOY),
    ("rds-storage-low.eventbridge.json", NEW_DB),
    ("rds-storage-low.direct.json", NEW_DB),
    ("rds-cpu-high.eventbridge.json", TRANSITION),
    ("rds-connections-high.eventbridge.json", TRANSITION),
    ("elasticache-evictions.eventbridge.json", TRANSITION),
    ("composite.eventbridge.json", TRANSITION),
    ("malformed-alarm.eventbridge.json", ""),
    ("malformed-alarm.sns.json", ""),
];
const TRANSITION: &str = "a new transition of the alarm each time, guardrails and service reset";
const SCALE_OUT: &str =
    "a new transition each time; guardrails reset and the service back at 2 tasks";
const AFTER_ALARM: &str =
    "a new OK each time, after the alarm's ALARM scaled out (handled untimed)";
const AFTER_DEPLOY: &str =
    "a new transition each time, after a new deploy by autopilot to roll back (made untimed)";
const NEW_DB: &str =
    "a new transition each time, on a new 20 GiB orders-db (RDS allows one change per 6 hours)";

pub struct Remediate {
    stack: Arc<Stack>,
    table: String,
    family_revision: String,
    services: String,
    databases: String,
    /// The handler in this process, for the ALARM an OK sample follows.
    remediator: Remediator,
}

fn dims(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

fn spec<'a>(
    name: &'a str,
    namespace: &'a str,
    metric: &'a str,
    dimensions: Vec<(&'a str, String)>,
    statistic: Statistic,
    comparison: ComparisonOperator,
    threshold: f64,
) -> AlarmSpec<'a> {
    AlarmSpec {
        base: name,
        namespace,
        metric,
        dimensions,
        statistic,
        comparison,
        threshold,
        tags: vec![],
    }
}

impl Remediate {
    pub async fn new(stack: Arc<Stack>) -> Self {
        let table = stack.guard_table().await;
        stack.cluster(CLUSTER).await;
        let td = stack.task_definition(SERVICE, "app", "nginx:1.27").await;
        let family_revision = td.task_definition_arn().unwrap().to_string();
        stack.service(CLUSTER, SERVICE, &family_revision).await;
        stack.settle_service(CLUSTER, SERVICE).await;
        orders_db().await;

        use ComparisonOperator::{GreaterThanThreshold as Gt, LessThanThreshold as Lt};
        let alb = dims(&[("TargetGroup", TARGET_GROUP), ("LoadBalancer", ALB)]);
        let db = dims(&[("DBInstanceIdentifier", ORDERS_DB)]);
        for s in [
            AlarmSpec::ecs_cpu("web-cpu-high", CLUSTER, SERVICE),
            AlarmSpec::ecs(
                "web-memory-high",
                "MemoryUtilization",
                85.0,
                CLUSTER,
                SERVICE,
            ),
            spec(
                "web-unhealthy-hosts",
                "AWS/ApplicationELB",
                "UnHealthyHostCount",
                alb.clone(),
                Statistic::Maximum,
                Gt,
                0.0,
            ),
            spec(
                "web-5xx",
                "AWS/ApplicationELB",
                "HTTPCode_Target_5XX_Count",
                alb.clone(),
                Statistic::Sum,
                Gt,
                10.0,
            ),
            spec(
                "legacy-5xx",
                "AWS/ELB",
                "HTTPCode_Backend_5XX",
                dims(&[("LoadBalancerName", ELB)]),
                Statistic::Sum,
                Gt,
                10.0,
            ),
            spec(
                "orders-db-storage-low",
                "AWS/RDS",
                "FreeStorageSpace",
                db.clone(),
                Statistic::Minimum,
                Lt,
                10737418240.0,
            ),
            spec(
                "orders-db-cpu-high",
                "AWS/RDS",
                "CPUUtilization",
                db.clone(),
                Statistic::Average,
                Gt,
                80.0,
            ),
            spec(
                "orders-db-connections-high",
                "AWS/RDS",
                "DatabaseConnections",
                db.clone(),
                Statistic::Average,
                Gt,
                180.0,
            ),
            spec(
                "cache-evictions",
                "AWS/ElastiCache",
                "Evictions",
                dims(&[("CacheClusterId", "cache-001")]),
                Statistic::Sum,
                Gt,
                0.0,
            ),
        ] {
            stack.alarm(s).await;
        }
        // The metric math alarm: 100 * 5XX / requests.
        let metric = |name: &str| {
            let mut m = Metric::builder()
                .namespace("AWS/ApplicationELB")
                .metric_name(name);
            for (k, v) in [("TargetGroup", TARGET_GROUP), ("LoadBalancer", ALB)] {
                m = m.dimensions(Dimension::builder().name(k).value(v).build());
            }
            MetricStat::builder()
                .metric(m.build())
                .period(300)
                .stat("Sum")
                .build()
        };
        let cw = stack.cloudwatch();
        if let Err(e) = cw
            .put_metric_alarm()
            .alarm_name("web-5xx-rate")
            .alarm_description("web 5XX rate above 5% of requests")
            .evaluation_periods(1)
            .threshold(5.0)
            .comparison_operator(Gt)
            .metrics(
                MetricDataQuery::builder()
                    .id("e1")
                    .expression("100 * m1 / m2")
                    .label("5XX rate (%)")
                    .return_data(true)
                    .build(),
            )
            .metrics(
                MetricDataQuery::builder()
                    .id("m1")
                    .metric_stat(metric("HTTPCode_Target_5XX_Count"))
                    .return_data(false)
                    .build(),
            )
            .metrics(
                MetricDataQuery::builder()
                    .id("m2")
                    .metric_stat(metric("RequestCount"))
                    .return_data(false)
                    .build(),
            )
            .send()
            .await
        {
            println!(
                "  remediate: the emulator refused the metric math alarm: {}",
                aws_sdk_cloudwatch::error::DisplayErrorContext(&e)
            );
        }
        if let Err(e) = cw
            .put_composite_alarm()
            .alarm_name("web-composite")
            .alarm_rule("ALARM(\"web-cpu-high\") AND ALARM(\"web-5xx\")")
            .send()
            .await
        {
            println!(
                "  remediate: the emulator refused the composite alarm: {}",
                aws_sdk_cloudwatch::error::DisplayErrorContext(&e)
            );
        }

        let services =
            json!([{"cluster": CLUSTER, "service": SERVICE, "min": 2, "max": 10, "step": 2,
                               "targetGroups": [TARGET_GROUP], "loadBalancers": [ALB, ELB]}])
            .to_string();
        let databases =
            json!([{"instance": ORDERS_DB, "growPercent": 20, "maxAllocatedGiB": 1000}])
                .to_string();
        let config = stack.remediate_config(
            &table,
            &[
                (remediate::config::SERVICES, services.clone()),
                (remediate::config::DATABASES, databases.clone()),
            ],
        );
        let remediator = Remediator::new(&stack.sdk, config);
        Self {
            stack,
            table,
            family_revision,
            services,
            databases,
            remediator,
        }
    }

    /// Empties the guardrail table: no cooldown, no claim, no recent transitions.
    async fn reset_guardrails(&self) {
        let db = self.stack.dynamodb();
        let items = db
            .scan()
            .table_name(&self.table)
            .send()
            .await
            .expect("scan the guardrail table");
        for item in items.items() {
            db.delete_item()
                .table_name(&self.table)
                .key("pk", item["pk"].clone())
                .key("sk", item["sk"].clone())
                .send()
                .await
                .expect("delete a guardrail item");
        }
    }

    /// `prod/web` back at 2 tasks with its deployment finished.
    async fn reset_service(&self) {
        self.stack
            .ecs
            .update_service()
            .cluster(CLUSTER)
            .service(SERVICE)
            .desired_count(2)
            .send()
            .await
            .expect("reset the desired count");
        self.stack.settle_service(CLUSTER, SERVICE).await;
    }

    /// A new revision of `web` deployed as deploy does, with its record: what a
    /// 5XX alarm rolls back (as the remediate tests' `deploy_like_autopilot`).
    async fn deploy_like_autopilot(&self, serial: usize) {
        let current = self
            .stack
            .describe_service(CLUSTER, SERVICE)
            .await
            .task_definition()
            .unwrap_or(&self.family_revision)
            .to_string();
        let td = self
            .stack
            .task_definition(SERVICE, "app", &format!("nginx:1.28.{serial}"))
            .await;
        let new = td.task_definition_arn().unwrap().to_string();
        let out = self
            .stack
            .ecs
            .update_service()
            .cluster(CLUSTER)
            .service(SERVICE)
            .task_definition(&new)
            .send()
            .await
            .expect("deploy the new revision");
        let deployment = out.service().unwrap().deployments()[0]
            .id()
            .unwrap()
            .to_string();
        let record = Record {
            repository: "web".into(),
            image_tag: format!("1.28.{serial}"),
            digest: digest(&format!("web-1.28.{serial}")),
            previous: current,
            service: format!("{CLUSTER}/{SERVICE}"),
            push_event: Some(format!("push-{serial}")),
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
                .key(autopilot_shared::record::tag::DEPLOYMENT)
                .value(&deployment)
                .build(),
        );
        self.stack
            .ecs
            .tag_resource()
            .resource_arn(&new)
            .set_tags(Some(tags))
            .send()
            .await
            .expect("tag the revision with its record");
    }

    /// A new `orders-db` of 20 GiB whose storage was never changed.
    async fn new_orders_db(&self) {
        let rds = autopilot_tests::snapshots::rds(REGION).await;
        rds.delete_db_instance()
            .db_instance_identifier(ORDERS_DB)
            .skip_final_snapshot(true)
            .delete_automated_backups(true)
            .send()
            .await
            .expect("delete orders-db");
        orders_db().await;
        tokio::task::block_in_place(|| {
            bridge(
                "/_bridge/rds/storage-modified",
                json!({"region": REGION, "instance": ORDERS_DB, "hoursAgo": null}),
            )
        });
    }

    /// Moves alarm `name` to `state` (through OK, so it is a new transition) and
    /// returns its ARN and the transition's time, as CloudWatch stamps events.
    async fn transition(&self, name: &str, state: &str) -> (String, String) {
        let cw = self.stack.cloudwatch();
        for s in ["OK", state] {
            if let Err(e) = cw
                .set_alarm_state()
                .alarm_name(name)
                .state_value(StateValue::from(s))
                .state_reason(format!("Threshold Crossed: the bench set {name} to {s}"))
                .send()
                .await
            {
                println!(
                    "  remediate: cannot set {name} to {s}: {}",
                    aws_sdk_cloudwatch::error::DisplayErrorContext(&e)
                );
            }
        }
        let out = cw
            .describe_alarms()
            .alarm_names(name)
            .alarm_types(AlarmType::MetricAlarm)
            .alarm_types(AlarmType::CompositeAlarm)
            .send()
            .await
            .expect("describe the alarm");
        let (arn, t) = match (out.metric_alarms().first(), out.composite_alarms().first()) {
            (Some(a), _) => (a.alarm_arn(), a.state_updated_timestamp()),
            (None, Some(a)) => (a.alarm_arn(), a.state_updated_timestamp()),
            (None, None) => (None, None),
        };
        let arn = arn.map(str::to_string).unwrap_or_else(|| {
            format!(
                "arn:aws:cloudwatch:{REGION}:{}:alarm:{name}",
                autopilot_tests::ACCOUNT
            )
        });
        let time = t
            .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
            .unwrap_or_else(chrono::Utc::now)
            .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
            .to_string();
        (arn, time)
    }
}

/// The alarm name and state a sample carries, by its delivery.
fn alarm_of(event: &Value) -> (String, String) {
    if let Some(detail) = event.get("detail") {
        return (
            detail["alarmName"].as_str().unwrap_or_default().into(),
            detail["state"]["value"].as_str().unwrap_or_default().into(),
        );
    }
    if let Some(data) = event.get("alarmData") {
        return (
            data["alarmName"].as_str().unwrap_or_default().into(),
            data["state"]["value"].as_str().unwrap_or_default().into(),
        );
    }
    let message: Value = serde_json::from_str(
        event["Records"][0]["Sns"]["Message"]
            .as_str()
            .unwrap_or_default(),
    )
    .unwrap_or_default();
    (
        message["AlarmName"].as_str().unwrap_or_default().into(),
        message["NewStateValue"].as_str().unwrap_or_default().into(),
    )
}

/// The sample stamped with the alarm's ARN and this transition's time.
fn restamp(mut event: Value, arn: &str, time: &str) -> Value {
    if event.get("detail").is_some() {
        event["resources"] = json!([arn]);
        event["region"] = json!(REGION);
        event["detail"]["state"]["timestamp"] = json!(time);
    } else if event.get("alarmData").is_some() {
        event["alarmArn"] = json!(arn);
        event["region"] = json!(REGION);
        event["alarmData"]["state"]["timestamp"] = json!(time);
    } else {
        let record = &mut event["Records"][0]["Sns"];
        let mut message: Value =
            serde_json::from_str(record["Message"].as_str().unwrap_or_default())
                .unwrap_or_default();
        message["AlarmArn"] = json!(arn);
        message["StateChangeTime"] = json!(time);
        record["Message"] = json!(message.to_string());
    }
    event
}

impl World for Remediate {
    fn name(&self) -> &'static str {
        "remediate"
    }

    fn env(&self) -> Vec<(String, String)> {
        vars(&[
            (
                autopilot_shared::config::TOPIC_ARN,
                self.stack.topic_arn.clone(),
            ),
            (remediate::config::TABLE, self.table.clone()),
            (remediate::config::SERVICES, self.services.clone()),
            (remediate::config::DATABASES, self.databases.clone()),
        ])
    }

    fn cases(&self) -> Vec<Case> {
        SAMPLES
            .iter()
            .map(|(file, how)| {
                let name: &'static str =
                    Box::leak(format!("events/remediate/{file}").into_boxed_str());
                if how.is_empty() {
                    Case::as_is(name)
                } else {
                    Case::fresh(name, how)
                }
            })
            .collect()
    }

    fn cold_case(&self) -> &'static str {
        "events/remediate/ecs-cpu-high.eventbridge.json"
    }

    async fn prepare(&mut self, case: &str, serial: usize) -> Vec<Step> {
        let file = case.trim_start_matches("events/remediate/");
        let how = SAMPLES
            .iter()
            .find(|(f, _)| *f == file)
            .map(|(_, how)| *how)
            .unwrap_or_default();
        let event = sample(case);
        if how.is_empty() {
            return vec![Step::timed(case, event)];
        }
        self.reset_guardrails().await;
        self.reset_service().await;
        match how {
            AFTER_DEPLOY => self.deploy_like_autopilot(serial).await,
            NEW_DB => self.new_orders_db().await,
            AFTER_ALARM => {
                let (arn, time) = self.transition("web-cpu-high", "ALARM").await;
                let alarm = restamp(
                    sample("events/remediate/ecs-cpu-high.eventbridge.json"),
                    &arn,
                    &time,
                );
                if let Err(e) = self
                    .remediator
                    .handle(LambdaEvent::new(alarm, Context::default()))
                    .await
                {
                    println!("  remediate: the ALARM before an OK failed: {e:?}");
                }
            }
            _ => {}
        }
        let (name, state) = alarm_of(&event);
        let (arn, time) = if how == AFTER_ALARM {
            // ALARM → OK only: the alarm is in ALARM from the untimed step.
            let cw = self.stack.cloudwatch();
            cw.set_alarm_state()
                .alarm_name(&name)
                .state_value(StateValue::from(state.as_str()))
                .state_reason("Threshold Crossed: the bench set it back to OK")
                .send()
                .await
                .expect("set the alarm to OK");
            let (arn, time) = self.stack.alarm_now(&name).await;
            (arn, time)
        } else {
            self.transition(&name, &state).await
        };
        vec![Step::timed(case, restamp(event, &arn, &time))]
    }
}
