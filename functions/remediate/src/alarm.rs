//! Alarms in, however they are wired: the EventBridge `CloudWatch Alarm State
//! Change` event, the classic alarm action through an SNS topic, and the direct
//! Lambda alarm action. Each becomes one [`Trigger`].
//!
//! A trigger is only a hint that an alarm changed state. SNS messages can be
//! published by anyone allowed on the topic, and any delivery can arrive late or
//! twice, so remediate acts on the alarm as CloudWatch describes it now
//! ([`Alarm`], read by `observe`), never on what the event claims.

use autopilot_shared::events::{self, EventError, ScheduledTask, SCHEDULED_TASK};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// The EventBridge alarm event.
pub const ALARM_STATE_CHANGE: (&str, &str) = ("aws.cloudwatch", "CloudWatch Alarm State Change");
/// The scheduled task that scales services back in once their alarm is OK.
pub const SWEEP_TASK: &str = "remediate-sweep";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "ALARM")]
    Alarm,
    #[serde(rename = "INSUFFICIENT_DATA")]
    InsufficientData,
}

impl State {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "OK" => Some(State::Ok),
            "ALARM" => Some(State::Alarm),
            "INSUFFICIENT_DATA" => Some(State::InsufficientData),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Alarm => "ALARM",
            State::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the alarm reached the function; for logs only, runbooks never see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    EventBridge,
    Sns,
    Direct,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::EventBridge => "eventbridge",
            Delivery::Sns => "sns",
            Delivery::Direct => "lambda-action",
        }
    }
}

/// What an event says about an alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub alarm_name: String,
    pub alarm_arn: Option<String>,
    /// The region code the alarm lives in, when the event tells it.
    pub region: Option<String>,
    pub state: State,
    /// When the alarm entered `state`, by the event.
    pub state_time: Option<DateTime<Utc>>,
    pub delivery: Delivery,
}

/// What one invocation was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Alarms(Vec<Trigger>),
    Sweep,
}

/// Recognises the payload and parses it; errors name the bad field.
pub fn parse(payload: Value) -> Result<Input, EventError> {
    if payload.get("Records").is_some() {
        return sns(payload).map(Input::Alarms);
    }
    if payload.get("alarmData").is_some() {
        return direct(payload).map(|t| Input::Alarms(vec![t]));
    }
    let envelope = events::envelope(payload)?;
    if events::is(&envelope, ALARM_STATE_CHANGE) {
        let detail: EventBridgeDetail = events::detail(&envelope, ALARM_STATE_CHANGE)?;
        let state = state(&detail.state.value, "detail.state.value")?;
        return Ok(Input::Alarms(vec![Trigger {
            alarm_arn: envelope.resources.as_ref().and_then(|r| r.first().cloned()),
            region: envelope.region.clone(),
            alarm_name: detail.alarm_name,
            state,
            state_time: time(&detail.state.timestamp),
            delivery: Delivery::EventBridge,
        }]));
    }
    if events::is(&envelope, SCHEDULED_TASK) {
        let task: ScheduledTask = events::detail(&envelope, SCHEDULED_TASK)?;
        if task.task == SWEEP_TASK {
            return Ok(Input::Sweep);
        }
        return Err(EventError::Malformed {
            what: "Scheduled Task detail".into(),
            path: "task".into(),
            message: format!(
                "`{}` is not a remediate task (expected `{SWEEP_TASK}`)",
                task.task
            ),
        });
    }
    Err(EventError::Unsupported {
        event_source: envelope.source,
        detail_type: envelope.detail_type,
        expected: format!(
            "CloudWatch Alarm State Change (EventBridge, SNS or the Lambda alarm action) and the `{SWEEP_TASK}` scheduled task"
        ),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventBridgeDetail {
    alarm_name: String,
    state: EventState,
}

#[derive(Debug, Deserialize)]
struct EventState {
    value: String,
    #[serde(default)]
    timestamp: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DirectAction {
    source: String,
    #[serde(default)]
    alarm_arn: Option<String>,
    #[serde(default)]
    region: Option<String>,
    alarm_data: EventBridgeDetail,
}

fn direct(payload: Value) -> Result<Trigger, EventError> {
    let action: DirectAction = events::parse(payload, "Lambda alarm action")?;
    if action.source != "aws.cloudwatch" {
        return Err(EventError::Unsupported {
            event_source: action.source,
            detail_type: "(alarm action)".into(),
            expected: "the CloudWatch Lambda alarm action (source aws.cloudwatch)".into(),
        });
    }
    let state = state(&action.alarm_data.state.value, "alarmData.state.value")?;
    Ok(Trigger {
        alarm_name: action.alarm_data.alarm_name,
        alarm_arn: action.alarm_arn,
        region: action.region,
        state,
        state_time: time(&action.alarm_data.state.timestamp),
        delivery: Delivery::Direct,
    })
}

#[derive(Debug, Deserialize)]
struct SnsEvent {
    #[serde(rename = "Records")]
    records: Vec<SnsRecord>,
}

#[derive(Debug, Deserialize)]
struct SnsRecord {
    #[serde(rename = "EventSource")]
    event_source: String,
    #[serde(rename = "Sns")]
    sns: SnsMessage,
}

#[derive(Debug, Deserialize)]
struct SnsMessage {
    #[serde(rename = "Message")]
    message: String,
}

/// The classic alarm notification: what CloudWatch publishes to an SNS topic.
#[derive(Debug, Deserialize)]
struct ClassicAlarm {
    #[serde(rename = "AlarmName")]
    alarm_name: String,
    #[serde(rename = "AlarmArn", default)]
    alarm_arn: Option<String>,
    #[serde(rename = "NewStateValue")]
    new_state_value: String,
    #[serde(rename = "StateChangeTime", default)]
    state_change_time: String,
    /// A long name such as "US East (N. Virginia)", not a region code.
    #[serde(rename = "Region", default)]
    region: Option<String>,
}

fn sns(payload: Value) -> Result<Vec<Trigger>, EventError> {
    let event: SnsEvent = events::parse(payload, "SNS event")?;
    if event.records.is_empty() {
        return Err(malformed("SNS event", "Records", "holds no record"));
    }
    let mut triggers = Vec::new();
    for (i, record) in event.records.into_iter().enumerate() {
        if record.event_source != "aws:sns" {
            return Err(malformed(
                "SNS event",
                &format!("Records[{i}].EventSource"),
                &format!("`{}` is not aws:sns", record.event_source),
            ));
        }
        let path = format!("Records[{i}].Sns.Message");
        let message: Value = serde_json::from_str(&record.sns.message).map_err(|e| {
            malformed(
                "SNS event",
                &path,
                &format!("is not a CloudWatch alarm notification (JSON): {e}"),
            )
        })?;
        let alarm: ClassicAlarm =
            events::parse(message, "SNS alarm notification").map_err(|e| match e {
                EventError::Malformed {
                    what,
                    path: inner,
                    message,
                } => EventError::Malformed {
                    what,
                    path: format!("{path}.{inner}"),
                    message,
                },
                other => other,
            })?;
        let state = state(&alarm.new_state_value, &format!("{path}.NewStateValue"))?;
        let region = alarm
            .alarm_arn
            .as_deref()
            .and_then(region_of_arn)
            .map(str::to_string)
            .or_else(|| {
                alarm
                    .region
                    .as_deref()
                    .and_then(region_code)
                    .map(str::to_string)
            });
        triggers.push(Trigger {
            alarm_name: alarm.alarm_name,
            alarm_arn: alarm.alarm_arn,
            region,
            state,
            state_time: time(&alarm.state_change_time),
            delivery: Delivery::Sns,
        });
    }
    Ok(triggers)
}

fn malformed(what: &str, path: &str, message: &str) -> EventError {
    EventError::Malformed {
        what: what.into(),
        path: path.into(),
        message: message.into(),
    }
}

fn state(value: &str, path: &str) -> Result<State, EventError> {
    State::parse(value).ok_or_else(|| {
        malformed(
            "alarm",
            path,
            &format!("`{value}` is not OK, ALARM or INSUFFICIENT_DATA"),
        )
    })
}

/// CloudWatch writes `2026-11-24T03:00:00.000+0000` (no colon in the offset).
pub fn time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The region field of an ARN (`arn:aws:cloudwatch:us-east-1:…`).
pub fn region_of_arn(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    // `then`, not `then_some`: the index must not be evaluated for a short ARN.
    (parts.len() == 6 && parts[0] == "arn" && !parts[3].is_empty()).then(|| parts[3])
}

/// The region code of a long region name as SNS alarm notifications write it.
pub fn region_code(long_name: &str) -> Option<&'static str> {
    const REGIONS: &[(&str, &str)] = &[
        ("US East (N. Virginia)", "us-east-1"),
        ("US East (Ohio)", "us-east-2"),
        ("US West (N. California)", "us-west-1"),
        ("US West (Oregon)", "us-west-2"),
        ("Africa (Cape Town)", "af-south-1"),
        ("Asia Pacific (Hong Kong)", "ap-east-1"),
        ("Asia Pacific (Hyderabad)", "ap-south-2"),
        ("Asia Pacific (Jakarta)", "ap-southeast-3"),
        ("Asia Pacific (Malaysia)", "ap-southeast-5"),
        ("Asia Pacific (Melbourne)", "ap-southeast-4"),
        ("Asia Pacific (Mumbai)", "ap-south-1"),
        ("Asia Pacific (Osaka)", "ap-northeast-3"),
        ("Asia Pacific (Seoul)", "ap-northeast-2"),
        ("Asia Pacific (Singapore)", "ap-southeast-1"),
        ("Asia Pacific (Sydney)", "ap-southeast-2"),
        ("Asia Pacific (Thailand)", "ap-southeast-7"),
        ("Asia Pacific (Tokyo)", "ap-northeast-1"),
        ("Canada (Central)", "ca-central-1"),
        ("Canada West (Calgary)", "ca-west-1"),
        ("EU (Frankfurt)", "eu-central-1"),
        ("EU (Ireland)", "eu-west-1"),
        ("EU (London)", "eu-west-2"),
        ("EU (Milan)", "eu-south-1"),
        ("EU (Paris)", "eu-west-3"),
        ("EU (Spain)", "eu-south-2"),
        ("EU (Stockholm)", "eu-north-1"),
        ("EU (Zurich)", "eu-central-2"),
        ("Europe (Frankfurt)", "eu-central-1"),
        ("Europe (Ireland)", "eu-west-1"),
        ("Europe (London)", "eu-west-2"),
        ("Europe (Milan)", "eu-south-1"),
        ("Europe (Paris)", "eu-west-3"),
        ("Europe (Spain)", "eu-south-2"),
        ("Europe (Stockholm)", "eu-north-1"),
        ("Europe (Zurich)", "eu-central-2"),
        ("Israel (Tel Aviv)", "il-central-1"),
        ("Mexico (Central)", "mx-central-1"),
        ("Middle East (Bahrain)", "me-south-1"),
        ("Middle East (UAE)", "me-central-1"),
        ("South America (Sao Paulo)", "sa-east-1"),
        ("South America (São Paulo)", "sa-east-1"),
        ("AWS GovCloud (US-East)", "us-gov-east-1"),
        ("AWS GovCloud (US-West)", "us-gov-west-1"),
    ];
    REGIONS
        .iter()
        .find(|(name, _)| *name == long_name)
        .map(|(_, code)| *code)
}

/// The alarm as CloudWatch describes it now: what runbooks act on.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    pub name: String,
    pub arn: String,
    pub state: State,
    pub state_updated: DateTime<Utc>,
    pub reason: String,
    pub description: String,
    pub kind: Kind,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// One metric, one statistic, one threshold.
    Metric(Metric),
    /// A metric-math or multi-metric alarm: no single resource to act on.
    Math,
    /// A composite alarm: its rule over other alarms.
    Composite { rule: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub namespace: String,
    pub name: String,
    pub dimensions: BTreeMap<String, String>,
    /// `Average`, `Sum`, … or an extended statistic such as `p99`.
    pub statistic: String,
    pub period: i32,
    pub threshold: Option<f64>,
    pub comparison: String,
    pub evaluation_periods: i32,
}

impl Metric {
    pub fn dimension(&self, name: &str) -> Option<&str> {
        self.dimensions.get(name).map(String::as_str)
    }

    /// Whether the alarm fires when the metric is high (`GreaterThan…`).
    pub fn fires_when_high(&self) -> bool {
        self.comparison.starts_with("GreaterThan")
    }

    /// `AWS/ECS CPUUtilization (Average over 60 s) GreaterThanThreshold 80`.
    pub fn describe(&self) -> String {
        let threshold = self.threshold.map(|t| format!(" {t}")).unwrap_or_default();
        format!(
            "{} {} ({} over {} s) {}{threshold}",
            self.namespace, self.name, self.statistic, self.period, self.comparison
        )
    }
}

impl Alarm {
    pub fn metric(&self) -> Option<&Metric> {
        match &self.kind {
            Kind::Metric(m) => Some(m),
            _ => None,
        }
    }

    /// Identifies this state change: every delivery of it, in any form, maps to
    /// the same transition, and a later change of state to another.
    pub fn transition(&self) -> String {
        format!("{}@{}", self.state, self.state_updated.timestamp_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eventbridge(state: &str) -> Value {
        json!({
            "version": "0", "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
            "detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
            "account": "123456789012", "time": "2026-11-24T03:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-cpu-high"],
            "detail": {
                "alarmName": "web-cpu-high",
                "state": {"value": state, "reason": "r", "reasonData": "{}", "timestamp": "2026-11-24T03:00:00.000+0000"},
                "previousState": {"value": "OK", "reason": "r", "timestamp": "2026-11-24T02:00:00.000+0000"},
                "configuration": {"metrics": []}
            }
        })
    }

    fn sns_of(message: &str) -> Value {
        json!({"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0",
            "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:alarms:1",
            "Sns": {"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:123456789012:alarms",
                    "Subject": "ALARM", "Message": message, "Timestamp": "2026-11-24T03:00:01.000Z"}}]})
    }

    #[test]
    fn the_three_deliveries_give_one_trigger() {
        let Input::Alarms(eb) = parse(eventbridge("ALARM")).unwrap() else {
            panic!()
        };
        let message = json!({
            "AlarmName": "web-cpu-high", "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-cpu-high",
            "NewStateValue": "ALARM", "OldStateValue": "OK", "StateChangeTime": "2026-11-24T03:00:00.000+0000",
            "Region": "US East (N. Virginia)", "Trigger": {}
        });
        let Input::Alarms(sn) = parse(sns_of(&message.to_string())).unwrap() else {
            panic!()
        };
        let direct = json!({"source": "aws.cloudwatch",
            "alarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-cpu-high",
            "accountId": "123456789012", "time": "2026-11-24T03:00:00.000+0000", "region": "us-east-1",
            "alarmData": {"alarmName": "web-cpu-high",
                "state": {"value": "ALARM", "reason": "r", "timestamp": "2026-11-24T03:00:00.000+0000"},
                "configuration": {}}});
        let Input::Alarms(dr) = parse(direct).unwrap() else {
            panic!()
        };
        for t in [&eb[0], &sn[0], &dr[0]] {
            assert_eq!(t.alarm_name, "web-cpu-high");
            assert_eq!(t.state, State::Alarm);
            assert_eq!(t.region.as_deref(), Some("us-east-1"));
            assert_eq!(t.state_time, time("2026-11-24T03:00:00Z"));
        }
        assert_eq!(
            [eb[0].delivery, sn[0].delivery, dr[0].delivery],
            [Delivery::EventBridge, Delivery::Sns, Delivery::Direct]
        );
    }

    #[test]
    fn an_sns_region_without_an_arn_is_mapped_from_its_long_name() {
        let message = json!({"AlarmName": "a", "NewStateValue": "OK", "Region": "EU (Ireland)"});
        let Input::Alarms(t) = parse(sns_of(&message.to_string())).unwrap() else {
            panic!()
        };
        assert_eq!(t[0].region.as_deref(), Some("eu-west-1"));
        assert_eq!(region_code("Nowhere (Central)"), None);
    }

    #[test]
    fn malformed_alarms_name_the_field() {
        let mut e = eventbridge("ALARM");
        e["detail"].as_object_mut().unwrap().remove("alarmName");
        let err = parse(e).unwrap_err().to_string();
        assert!(err.contains("alarmName"), "{err}");
        let err = parse(eventbridge("PANIC")).unwrap_err().to_string();
        assert!(
            err.contains("detail.state.value") && err.contains("PANIC"),
            "{err}"
        );
        let err = parse(sns_of("not json")).unwrap_err().to_string();
        assert!(err.contains("Records[0].Sns.Message"), "{err}");
        let err = parse(sns_of(r#"{"NewStateValue":"OK"}"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("Records[0].Sns.Message.AlarmName"), "{err}");
        let err = parse(json!({"Records": []})).unwrap_err().to_string();
        assert!(err.contains("Records"), "{err}");
        let err =
            parse(json!({"source": "aws.cloudwatch", "alarmData": {"state": {"value": "OK"}}}))
                .unwrap_err()
                .to_string();
        assert!(err.contains("alarmData.alarmName"), "{err}");
    }

    #[test]
    fn other_events_are_unsupported_and_the_sweep_is_recognised() {
        let mut e = eventbridge("ALARM");
        e["detail-type"] = json!("ECR Image Action");
        assert!(matches!(parse(e), Err(EventError::Unsupported { .. })));
        let sweep = json!({"version": "0", "id": "x", "detail-type": "Scheduled Task",
            "source": "autopilot.scheduler", "account": "123456789012", "time": "2026-11-24T03:00:00Z",
            "region": "us-east-1", "resources": [], "detail": {"task": "remediate-sweep"}});
        assert_eq!(parse(sweep.clone()).unwrap(), Input::Sweep);
        let mut other = sweep;
        other["detail"]["task"] = json!("deploy-sweep");
        assert!(matches!(parse(other), Err(EventError::Malformed { .. })));
    }

    #[test]
    fn cloudwatch_timestamps_parse_with_and_without_a_colon() {
        assert_eq!(
            time("2026-11-24T03:00:00.989+0000"),
            time("2026-11-24T03:00:00.989Z")
        );
        assert!(time("yesterday").is_none());
        assert_eq!(
            region_of_arn("arn:aws:cloudwatch:eu-west-1:1:alarm:a:b"),
            Some("eu-west-1")
        );
        // Found by tests/tests/hostile_input: a short ARN panicked.
        for short in ["", "x", "arn:aws", "arn:aws:cloudwatch:eu-west-1:1"] {
            assert_eq!(region_of_arn(short), None, "{short}");
        }
    }
}
