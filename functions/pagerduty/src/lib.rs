//! pagerduty: relays autopilot's pages from the on-call SNS topic to PagerDuty's
//! Events API v2.
//!
//! Why a relay: SNS delivers to an HTTPS endpoint only once the endpoint has
//! confirmed the subscription ("Amazon SNS doesn't send notifications to this
//! endpoint until the subscription is confirmed", SNS developer guide), raw
//! delivery included, and PagerDuty's `/v2/enqueue` cannot confirm one; without
//! raw delivery the body is SNS's own envelope, which PagerDuty does not take;
//! and an Events v2 body must carry the `routing_key`. So the topic invokes this
//! function (a Lambda subscription needs no confirmation), which adds the
//! routing key from a secret to the PagerDuty document every page already
//! carries (the `lambda` key of the message) and posts it.
//!
//! A rejected or failed post fails the invocation: Lambda retries it, then the
//! dead-letter queue keeps it. The routing key never reaches a log or an error.
//!
//! The `pagerduty-heartbeat` scheduled task reads the routing key's secret again
//! and counts a heartbeat (`autopilot_shared::metrics`); it posts nothing.

pub mod config;

use crate::config::Config;
use autopilot_shared::aws::{self, AwsCallError};
use autopilot_shared::events::{self, EventError};
use autopilot_shared::invocation::{self, code, Coded, Failure, Outcome, Report};
use autopilot_shared::metrics;
use aws_config::SdkConfig;
use aws_lambda_events::sns::SnsEvent;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::OnceCell;

pub const FUNCTION: &str = "autopilot-pagerduty";

/// The heartbeat schedule's task (the `Heartbeat` schedule of PagerDutyRelayFunction in `template.yaml`).
pub const HEARTBEAT_TASK: &str = "pagerduty-heartbeat";

/// PagerDuty answers within seconds; a hung post fails and is retried.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error(transparent)]
    Aws(#[from] AwsCallError),
    /// PagerDuty refused the event, or could not be reached.
    #[error("PagerDuty did not accept {dedup_key}: {message}")]
    Delivery { dedup_key: String, message: String },
}

impl Coded for RelayError {
    fn code(&self) -> &'static str {
        match self {
            RelayError::Event(e) => e.code(),
            RelayError::Aws(e) => e.code(),
            RelayError::Delivery { .. } => code::PAGE_FAILED,
        }
    }
}

impl From<RelayError> for Failure {
    fn from(e: RelayError) -> Self {
        Failure::of(&e)
    }
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// The relay: configuration and clients, built once per cold start.
#[derive(Clone)]
pub struct Relay {
    sm: aws_sdk_secretsmanager::Client,
    http: std::sync::Arc<OnceCell<Client<Https, Full<Bytes>>>>,
    config: Config,
    routing_key: std::sync::Arc<OnceCell<String>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Relay {
    pub fn new(sdk: &SdkConfig, config: Config) -> Self {
        let sdk = aws::for_function(sdk, FUNCTION);
        Self {
            sm: aws_sdk_secretsmanager::Client::new(&sdk),
            http: std::sync::Arc::new(OnceCell::new()),
            config,
            routing_key: std::sync::Arc::new(OnceCell::new()),
        }
    }

    /// The Lambda handler.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Report, Failure> {
        let work = Box::pin(self.relay(event.payload));
        invocation::run(FUNCTION, &event.context, work).await
    }

    async fn relay(&self, payload: Value) -> Result<Report, RelayError> {
        if metrics::is_task(&payload, HEARTBEAT_TASK) {
            return self.heartbeat().await;
        }
        let event: SnsEvent = events::parse(payload, "SNS event")?;
        let mut outcomes = Vec::new();
        for (i, record) in event.records.iter().enumerate() {
            let message = &record.sns.message;
            let mut document = match (pagerduty_document(message), alarm_document(message)) {
                (Ok(document), _) => document,
                (Err(_), Some(Some(document))) => document,
                (Err(_), Some(None)) => {
                    outcomes.push(Outcome::new(
                        "cloudwatch-alarm",
                        "skip",
                        "an alarm notification of INSUFFICIENT_DATA opens and closes nothing",
                    ));
                    continue;
                }
                (Err(message), None) => {
                    return Err(EventError::Malformed {
                        what: "SNS event".into(),
                        path: format!("Records[{i}].Sns.Message"),
                        message,
                    }
                    .into())
                }
            };
            let dedup_key = document["dedup_key"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            invocation::record_resource(&dedup_key);
            // An info trigger ("deploying", a dry-run) is news, not an incident: in
            // PagerDuty every trigger opens one. Resolves always go, to close any.
            if document["event_action"] == "trigger" && document["payload"]["severity"] == "info" {
                outcomes.push(Outcome::new(
                    dedup_key,
                    "skip",
                    "an info page opens no incident in PagerDuty",
                ));
                continue;
            }
            document["routing_key"] = Value::String(self.routing_key().await?.to_string());
            let status = self.post(&document, &dedup_key).await?;
            outcomes.push(Outcome::new(
                dedup_key,
                "relay",
                format!(
                    "PagerDuty accepted the {} ({status})",
                    document["event_action"].as_str().unwrap_or("event")
                ),
            ));
        }
        Ok(Report {
            event: "SNS Notification".into(),
            dry_run: false,
            outcomes,
        })
    }

    /// The routing key, read from its secret once per cold start.
    async fn routing_key(&self) -> Result<&str, RelayError> {
        let key = self
            .routing_key
            .get_or_try_init(|| async { Ok::<_, RelayError>(self.read_routing_key().await?) })
            .await?;
        Ok(key)
    }

    /// Reads the routing key from its secret (AWSCURRENT) and checks its form.
    async fn read_routing_key(&self) -> Result<String, AwsCallError> {
        let secret = &self.config.routing_key_secret;
        let out = self
            .sm
            .get_secret_value()
            .secret_id(secret)
            .version_stage("AWSCURRENT")
            .send()
            .await
            .map_err(AwsCallError::of("GetSecretValue", secret))?;
        config::routing_key(secret, out.secret_string().unwrap_or_default())
            .map_err(|m| AwsCallError::new("GetSecretValue", secret, m))
    }

    /// The heartbeat: the routing key's secret is read again (not the copy
    /// this sandbox keeps) and must hold a routing key; the key is dropped
    /// unlogged. Posts nothing to PagerDuty, so no incident opens.
    async fn heartbeat(&self) -> Result<Report, RelayError> {
        invocation::record_resource(HEARTBEAT_TASK);
        let secret = &self.config.routing_key_secret;
        let read = self.read_routing_key().await.map(|_| ());
        let outcomes = metrics::heartbeat(
            FUNCTION,
            vec![(format!("the routing key's secret {secret}"), read)],
        );
        Ok(Report {
            event: format!("Scheduled Task {HEARTBEAT_TASK}"),
            dry_run: false,
            outcomes,
        })
    }

    /// The HTTPS client, built on the first event that posts. Reading the system's
    /// trust store is most of what a cold start would otherwise spend (the SDK's own
    /// client defers it the same way), and an event the relay skips never needs it.
    /// Verified TLS against the system's roots; plain HTTP only where the
    /// configuration allows it (a loopback receiver in tests).
    async fn http(&self) -> Result<&Client<Https, Full<Bytes>>, String> {
        self.http
            .get_or_try_init(|| async {
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_native_roots()
                    .map_err(|e| format!("TLS roots: {e}"))?
                    .https_or_http()
                    .enable_http1()
                    .build();
                Ok(Client::builder(TokioExecutor::new()).build(https))
            })
            .await
    }

    async fn post(&self, document: &Value, dedup_key: &str) -> Result<u16, RelayError> {
        let fail = |message: String| RelayError::Delivery {
            dedup_key: dedup_key.to_string(),
            message,
        };
        let http = self.http().await.map_err(fail)?;
        let request = hyper::Request::post(self.config.url.as_str())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(document.to_string())))
            .map_err(|e| fail(e.to_string()))?;
        let response = tokio::time::timeout(POST_TIMEOUT, http.request(request))
            .await
            .map_err(|_| {
                fail(format!(
                    "no answer from {} within {POST_TIMEOUT:?}",
                    self.config.url
                ))
            })?
            .map_err(|e| fail(format!("{}: {e}", self.config.url)))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        if status == 202 {
            tracing::info!(action = "relay", resource = %dedup_key, status, reason = "PagerDuty accepted the event", "relayed to PagerDuty");
            return Ok(status);
        }
        // 400: the event is invalid (not retried by PagerDuty's own clients, but the
        // dead-letter queue keeps it); 429 and 5xx: retried.
        let key = document["routing_key"].as_str().unwrap_or_default();
        let body: String = body.replace(key, "***").chars().take(500).collect();
        Err(fail(format!("HTTP {status}: {body}")))
    }
}

/// A CloudWatch alarm notification (autopilot's alarms on itself publish to
/// the on-call topic in CloudWatch's own JSON) as a PagerDuty event: ALARM
/// triggers and OK resolves, keyed by the alarm's name. `None`: not an alarm
/// notification; `Some(None)`: one that opens and closes nothing
/// (INSUFFICIENT_DATA).
pub fn alarm_document(message: &str) -> Option<Option<Value>> {
    let alarm: Value = serde_json::from_str(message).ok()?;
    let name = alarm.get("AlarmName")?.as_str().filter(|n| !n.is_empty())?;
    let state = alarm.get("NewStateValue")?.as_str()?;
    let action = match state {
        "ALARM" => "trigger",
        "OK" => "resolve",
        _ => return Some(None),
    };
    let reason = alarm
        .get("NewStateReason")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let source = alarm
        .get("AlarmArn")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("cloudwatch");
    let document = serde_json::json!({
        "event_action": action,
        // PagerDuty takes a dedup_key of at most 255 characters, a summary of 1,024.
        "dedup_key": bounded(&format!("cloudwatch-alarm/{name}"), 255),
        "payload": {
            "summary": bounded(&format!("{name} is {state}: {reason}"), 1024),
            "source": bounded(source, 255),
            "severity": "error",
            "component": bounded(name, 255),
            "custom_details": {
                "description": alarm.get("AlarmDescription").cloned().unwrap_or(Value::Null),
                "reason": reason,
            },
        },
    });
    pagerduty_document(&document.to_string()).ok().map(Some)
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn bounded(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// The PagerDuty Events v2 document a page carries as its SNS message (the
/// `lambda` key of autopilot's `MessageStructure=json` messages), checked for the
/// fields PagerDuty requires.
pub fn pagerduty_document(message: &str) -> Result<Value, String> {
    let doc: Value = serde_json::from_str(message)
        .map_err(|_| "is not an autopilot page (not JSON)".to_string())?;
    let action = doc["event_action"].as_str().unwrap_or_default();
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        return Err(format!(
            "event_action `{action}` is not trigger, acknowledge or resolve"
        ));
    }
    if action == "trigger" {
        for field in ["summary", "source", "severity"] {
            if doc["payload"][field].as_str().is_none_or(str::is_empty) {
                return Err(format!("payload.{field} is missing"));
            }
        }
    }
    if doc["dedup_key"]
        .as_str()
        .is_none_or(|k| k.is_empty() || k.len() > 255)
    {
        return Err("dedup_key is missing or longer than 255 characters".into());
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alarm_notification_triggers_and_resolves_by_the_alarms_name() {
        let notification = |state: &str| {
            serde_json::json!({"AlarmName": "autopilot-self-prod-deploy-heartbeat",
                "AlarmDescription": "deploy has not proved it reaches its dependencies",
                "NewStateValue": state, "NewStateReason": "Threshold Crossed: no datapoints",
                "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:autopilot-self-prod-deploy-heartbeat",
                "OldStateValue": "OK"})
            .to_string()
        };
        let fired = alarm_document(&notification("ALARM")).unwrap().unwrap();
        assert_eq!(fired["event_action"], "trigger");
        assert_eq!(
            fired["dedup_key"],
            "cloudwatch-alarm/autopilot-self-prod-deploy-heartbeat"
        );
        assert!(fired["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("is ALARM: Threshold Crossed"));
        let ok = alarm_document(&notification("OK")).unwrap().unwrap();
        assert_eq!(ok["event_action"], "resolve");
        assert_eq!(ok["dedup_key"], fired["dedup_key"]);
        assert_eq!(
            alarm_document(&notification("INSUFFICIENT_DATA")),
            Some(None)
        );
        // autopilot's own pages are not alarm notifications.
        assert_eq!(alarm_document("{\"event_action\": \"trigger\"}"), None);
        assert_eq!(alarm_document("not json"), None);
        let long = "é".repeat(300);
        let doc = alarm_document(
            &serde_json::json!({"AlarmName": long, "NewStateValue": "ALARM"}).to_string(),
        )
        .unwrap()
        .unwrap();
        assert!(doc["dedup_key"].as_str().unwrap().len() <= 255);
    }
    use autopilot_shared::pager::{machine_json, Action, Page, Severity};

    #[test]
    fn a_page_is_a_valid_pagerduty_event() {
        let page = Page::new(
            Action::Trigger,
            Severity::Critical,
            "deploy.failed",
            "prod/api",
            "Deploy FAILED",
        )
        .dedup_key("autopilot/deploy/prod/api/sha256:1")
        .source("autopilot-deploy");
        let doc = pagerduty_document(&machine_json(&page).to_string()).unwrap();
        assert_eq!(doc["payload"]["severity"], "critical");
        for (message, why) in [
            ("not json", "not JSON"),
            (r#"{"event_action":"page","dedup_key":"k"}"#, "event_action"),
            (
                r#"{"event_action":"trigger","dedup_key":"k","payload":{"source":"s","severity":"info"}}"#,
                "payload.summary",
            ),
            (r#"{"event_action":"resolve"}"#, "dedup_key"),
        ] {
            let err = pagerduty_document(message).unwrap_err();
            assert!(err.contains(why), "{message}: {err}");
        }
    }
}
