//! Fixtures for remediate: the guardrail table, real CloudWatch alarms in the
//! emulator (through the CBOR bridge), and alarm events in each delivery form,
//! built from the samples in `events/remediate/` as AWS documents them.

use crate::{bridge, root, Stack, REGION};
use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, StateValue, Statistic, Tag};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use remediate::config::{self as rconfig, Config};
use remediate::guard::{Guard, Versioned};
use remediate::store::Store;
use serde_json::{json, Value};

/// How an alarm reaches the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    EventBridge,
    Sns,
    Direct,
}

/// A metric alarm to create.
pub struct AlarmSpec<'a> {
    pub base: &'a str,
    pub namespace: &'a str,
    pub metric: &'a str,
    pub dimensions: Vec<(&'a str, String)>,
    pub statistic: Statistic,
    pub comparison: ComparisonOperator,
    pub threshold: f64,
    pub tags: Vec<(&'a str, &'a str)>,
}

impl<'a> AlarmSpec<'a> {
    /// `CPUUtilization > 80` on an ECS service, as production guides set it.
    pub fn ecs_cpu(base: &'a str, cluster: &str, service: &str) -> Self {
        Self::ecs(base, "CPUUtilization", 80.0, cluster, service)
    }

    pub fn ecs(
        base: &'a str,
        metric: &'a str,
        threshold: f64,
        cluster: &str,
        service: &str,
    ) -> Self {
        Self {
            base,
            namespace: "AWS/ECS",
            metric,
            dimensions: vec![
                ("ClusterName", cluster.into()),
                ("ServiceName", service.into()),
            ],
            statistic: Statistic::Average,
            comparison: ComparisonOperator::GreaterThanThreshold,
            threshold,
            tags: Vec::new(),
        }
    }
}

impl Stack {
    pub fn cloudwatch(&self) -> aws_sdk_cloudwatch::Client {
        aws_sdk_cloudwatch::Client::new(&self.sdk)
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    pub fn autoscaling(&self) -> aws_sdk_applicationautoscaling::Client {
        aws_sdk_applicationautoscaling::Client::new(&self.sdk)
    }

    pub fn rds(&self) -> aws_sdk_rds::Client {
        aws_sdk_rds::Client::new(&self.sdk)
    }

    /// The guardrail table as template.yaml creates it: `pk`/`sk`, TTL on `expires_at`.
    pub async fn guard_table(&self) -> String {
        let name = self.name("guard");
        let db = self.dynamodb();
        db.create_table()
            .table_name(&name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .send()
            .await
            .expect("create guard table");
        db.update_time_to_live()
            .table_name(&name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(true)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("enable TTL");
        name
    }

    /// remediate's configuration for this stack's topic and table plus `vars`.
    pub fn remediate_config(&self, table: &str, vars: &[(&str, String)]) -> Config {
        let mut all = vec![(rconfig::TABLE, table.to_string())];
        all.extend(vars.iter().cloned());
        Config::from_lookup(self.lookup(&all)).expect("valid remediate configuration")
    }

    /// Creates a metric alarm (in state INSUFFICIENT_DATA, as CloudWatch does) and returns its name.
    pub async fn alarm(&self, spec: AlarmSpec<'_>) -> String {
        let name = self.name(spec.base);
        let mut request = self
            .cloudwatch()
            .put_metric_alarm()
            .alarm_name(&name)
            .namespace(spec.namespace)
            .metric_name(spec.metric)
            .statistic(spec.statistic)
            .period(60)
            .evaluation_periods(3)
            .threshold(spec.threshold)
            .comparison_operator(spec.comparison);
        for (k, v) in &spec.dimensions {
            request = request.dimensions(Dimension::builder().name(*k).value(v).build());
        }
        for (k, v) in &spec.tags {
            request = request.tags(Tag::builder().key(*k).value(*v).build());
        }
        request.send().await.expect("put metric alarm");
        name
    }

    /// Moves an alarm to `state`, as CloudWatch's evaluation would.
    pub async fn set_alarm(&self, name: &str, state: &str) {
        self.cloudwatch()
            .set_alarm_state()
            .alarm_name(name)
            .state_value(StateValue::from(state))
            .state_reason(format!("Threshold Crossed: test set {name} to {state}"))
            .send()
            .await
            .expect("set alarm state");
    }

    /// The alarm's ARN and the time of its last state change, as the event carries them.
    pub async fn alarm_now(&self, name: &str) -> (String, String) {
        let out = self
            .cloudwatch()
            .describe_alarms()
            .alarm_names(name)
            .send()
            .await
            .expect("describe alarm");
        let alarm = out.metric_alarms().first().expect("alarm exists");
        let t = alarm.state_updated_timestamp().expect("state timestamp");
        let time = chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
            .to_string();
        (alarm.alarm_arn().unwrap_or_default().to_string(), time)
    }

    /// The alarm's current transition as it reaches the function in `form`.
    pub async fn alarm_event(&self, form: Form, name: &str, state: &str) -> Value {
        let (arn, time) = self.alarm_now(name).await;
        alarm_event(form, name, &arn, state, &time)
    }

    /// Finishes the service's deployment as COMPLETED, as a healthy cluster would.
    pub async fn settle_service(&self, cluster: &str, service: &str) {
        let s = self.describe_service(cluster, service).await;
        let id = s.deployments()[0].id().unwrap().to_string();
        bridge(
            "/_bridge/ecs/deployment",
            json!({"cluster": cluster, "service": service, "deploymentId": id, "outcome": "COMPLETED"}),
        );
    }

    /// The guardrail store the function uses, for reading and time-travelling its state.
    pub fn guard_store(&self, table: &str) -> Store {
        Store::new(self.dynamodb(), table)
    }

    /// The resource's guardrail state.
    pub async fn guard(&self, table: &str, resource: &str) -> Versioned<Guard> {
        remediate::read_guard(&self.guard_store(table), resource)
            .await
            .expect("read guard")
    }

    /// Ends the resource's cooldown now, as if it had passed: rewrites the item
    /// the way the function does (a conditional put on its version).
    pub async fn end_cooldown(&self, table: &str, resource: &str) {
        let mut g = self.guard(table, resource).await;
        let past = chrono::Utc::now().timestamp() - 1;
        g.value.cooldown_until = Some(past);
        if let Some(c) = g.value.claim.as_mut() {
            c.at = c.at.min(past - 600);
        }
        let key = (format!("resource#{resource}"), "guard");
        assert!(
            self.guard_store(table)
                .put(key, &g.value, g.version)
                .await
                .expect("rewrite guard"),
            "the guard item changed while a test rewrote it"
        );
    }

    /// The audit trail of a resource (or `alarm:<name>`), oldest first.
    pub async fn audit(&self, table: &str, subject: &str) -> Vec<Value> {
        let out = self
            .dynamodb()
            .query()
            .table_name(table)
            .key_condition_expression("pk = :p")
            .expression_attribute_values(":p", AttributeValue::S(format!("audit#{subject}")))
            .send()
            .await
            .expect("query audit");
        out.items()
            .iter()
            .map(|item| {
                let mut v = serde_json::Map::new();
                for (k, a) in item {
                    let value = match a {
                        AttributeValue::S(s) => json!(s),
                        AttributeValue::N(n) => json!(n.parse::<f64>().unwrap_or_default()),
                        AttributeValue::Bool(b) => json!(b),
                        _ => json!(null),
                    };
                    v.insert(k.clone(), value);
                }
                Value::Object(v)
            })
            .collect()
    }
}

fn attr(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .unwrap()
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .unwrap()
}

/// A sample from `events/remediate/`.
pub fn sample(file: &str) -> Value {
    let path = root().join("events/remediate").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The ECS CPU sample of `form`, rewritten for alarm `name` (ARN `arn`) entering
/// `state` at `time` (CloudWatch's `…+0000` format).
pub fn alarm_event(form: Form, name: &str, arn: &str, state: &str, time: &str) -> Value {
    let file = match form {
        Form::EventBridge => "ecs-cpu-high.eventbridge.json",
        Form::Sns => "ecs-cpu-high.sns.json",
        Form::Direct => "ecs-cpu-high.direct.json",
    };
    let mut event = sample(file);
    match form {
        Form::EventBridge => {
            event["region"] = json!(REGION);
            event["resources"] = json!([arn]);
            event["detail"]["alarmName"] = json!(name);
            event["detail"]["state"]["value"] = json!(state);
            event["detail"]["state"]["timestamp"] = json!(time);
        }
        Form::Direct => {
            event["alarmArn"] = json!(arn);
            event["region"] = json!(REGION);
            event["alarmData"]["alarmName"] = json!(name);
            event["alarmData"]["state"]["value"] = json!(state);
            event["alarmData"]["state"]["timestamp"] = json!(time);
        }
        Form::Sns => {
            let record = &mut event["Records"][0]["Sns"];
            let mut message: Value =
                serde_json::from_str(record["Message"].as_str().unwrap()).unwrap();
            message["AlarmName"] = json!(name);
            message["AlarmArn"] = json!(arn);
            message["NewStateValue"] = json!(state);
            message["StateChangeTime"] = json!(time);
            record["Message"] = json!(message.to_string());
        }
    }
    event
}
