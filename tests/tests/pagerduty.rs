//! Pages reach PagerDuty: the relay, subscribed to the on-call topic, posts each
//! page's Events v2 document with the routing key from its secret to a local
//! receiver that checks requests as PagerDuty's `/v2/enqueue` does.

use autopilot_shared::pager::{Action, Page, Pager, Severity};
use autopilot_tests::*;
use lambda_runtime::{Context, LambdaEvent};
use pagerduty::Relay;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROUTING_KEY: &str = "R0ut1ngKeyR0ut1ngKeyR0ut1ngKey12";

/// A stand-in for PagerDuty's Events API v2: JSON only, the routing key, the
/// required fields; 202 for a valid event, 400 otherwise, or the status it is told.
#[derive(Clone, Default)]
struct Receiver {
    events: Arc<Mutex<Vec<Value>>>,
    status: Arc<Mutex<Option<u16>>>,
}

impl Receiver {
    async fn start(&self) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let this = self.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let this = this.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (head, body) = loop {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        if let Some((head, body)) = text.split_once("\r\n\r\n") {
                            let length = head
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap())
                                })
                                .unwrap_or(0);
                            if body.len() >= length {
                                break (head.to_string(), body.to_string());
                            }
                        }
                    };
                    let status = this.judge(&head, &body);
                    let reply = if status == 202 {
                        r#"{"status":"success","message":"Event processed"}"#
                    } else {
                        r#"{"status":"invalid event","message":"Event object is invalid"}"#
                    };
                    let _ = socket
                        .write_all(
                            format!(
                                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                                reply.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                });
            }
        });
        port
    }

    fn judge(&self, head: &str, body: &str) -> u16 {
        let head = head.to_ascii_lowercase();
        let Ok(event) = serde_json::from_str::<Value>(body) else {
            return 400;
        };
        let valid = head.starts_with("post /v2/enqueue ")
            && head.contains("content-type: application/json")
            && event["routing_key"] == ROUTING_KEY
            && ["trigger", "resolve"].contains(&event["event_action"].as_str().unwrap_or(""))
            && event["dedup_key"].as_str().is_some_and(|k| k.len() <= 255)
            && (event["event_action"] == "resolve"
                || ["summary", "source", "severity"]
                    .iter()
                    .all(|f| event["payload"][f].is_string()));
        if !valid {
            return 400;
        }
        if let Some(status) = *self.status.lock().unwrap() {
            return status;
        }
        self.events.lock().unwrap().push(event);
        202
    }
}

/// What SNS invokes a subscribed Lambda with, for a message SNS delivered (the
/// shape of the Lambda developer guide's sample SNS event). The machine document
/// is the message's `lambda` key; the SQS capture carries the same document.
fn sns_event(envelope: &Value, topic_arn: &str) -> Value {
    json!({"Records": [{
        "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{topic_arn}:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55"),
        "EventSource": "aws:sns",
        "Sns": {
            "SignatureVersion": "1",
            "Timestamp": envelope["Timestamp"],
            "Signature": "EXAMPLE",
            "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-EXAMPLE.pem",
            "MessageId": envelope["MessageId"],
            "Message": envelope["Message"],
            "MessageAttributes": envelope["MessageAttributes"],
            "Type": "Notification",
            "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
            "TopicArn": topic_arn,
            "Subject": envelope["Subject"],
        }
    }]})
}

async fn relay(stack: &Stack, port: u16) -> Relay {
    stack.create_secret("pagerduty", ROUTING_KEY).await;
    let config = pagerduty::config::Config::from_lookup(|k| match k {
        pagerduty::config::ROUTING_KEY_SECRET => Some(stack.name("pagerduty")),
        pagerduty::config::URL => Some(format!("http://127.0.0.1:{port}/v2/enqueue")),
        _ => None,
    })
    .unwrap();
    Relay::new(&stack.sdk, config)
}

fn incident(action: Action) -> Page {
    Page::new(
        action,
        Severity::Critical,
        "deploy.failed",
        "prod/backend",
        "Deploy FAILED: backend:v1.4.2 on prod/backend",
    )
    .dedup_key("autopilot/deploy/prod/backend/sha256:abc")
    .group("prod")
    .fact("Reason", "tasks failed to start")
}

#[tokio::test]
async fn a_trigger_and_its_resolve_reach_pagerduty_with_the_routing_key() {
    let stack = Stack::new("pd_relay").await;
    let receiver = Receiver::default();
    let port = receiver.start().await;
    let relay = relay(&stack, port).await;
    let pager = Pager::new(stack.sns.clone(), &stack.topic_arn, "autopilot-deploy");
    let mut started = incident(Action::Trigger);
    started.severity = Severity::Info;
    started.summary = "Deploying backend:v1.4.2 to prod/backend".into();
    pager.send(&started).await.unwrap();
    pager.send(&incident(Action::Trigger)).await.unwrap();
    pager.send(&incident(Action::Resolve)).await.unwrap();

    // SQS does not keep order: hand the relay triggers before the resolve, as SNS published them.
    let mut envelopes = stack.envelopes().await;
    envelopes.sort_by_key(|e| e["Message"].as_str().unwrap().contains("\"resolve\""));
    let (results, logs) = logs::capture(async {
        let mut results = Vec::new();
        for envelope in envelopes {
            results.push(
                relay
                    .handle(LambdaEvent::new(
                        sns_event(&envelope, &stack.topic_arn),
                        Context::default(),
                    ))
                    .await,
            );
        }
        results
    })
    .await;

    let mut actions: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().unwrap().actions()[0].to_string())
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        vec!["relay", "relay", "skip"],
        "an info trigger opens no incident"
    );
    let events = receiver.events.lock().unwrap().clone();
    assert_eq!(
        events
            .iter()
            .map(|e| e["event_action"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["trigger", "resolve"]
    );
    assert_eq!(events[0]["dedup_key"], events[1]["dedup_key"]);
    assert_eq!(events[0]["payload"]["severity"], "critical");
    assert_eq!(events[0]["payload"]["source"], "autopilot-deploy");
    assert_eq!(
        events[0]["payload"]["custom_details"]["Reason"],
        "tasks failed to start"
    );
    assert!(
        !logs.text().contains(ROUTING_KEY),
        "the routing key reached the logs"
    );
}

#[tokio::test]
async fn a_refused_or_throttled_post_fails_so_lambda_retries_it() {
    let stack = Stack::new("pd_refused").await;
    let receiver = Receiver::default();
    let port = receiver.start().await;
    let relay = relay(&stack, port).await;
    Pager::new(stack.sns.clone(), &stack.topic_arn, "autopilot-deploy")
        .send(&incident(Action::Trigger))
        .await
        .unwrap();
    let envelope = stack.envelopes().await.remove(0);
    *receiver.status.lock().unwrap() = Some(429);

    let err = relay
        .handle(LambdaEvent::new(
            sns_event(&envelope, &stack.topic_arn),
            Context::default(),
        ))
        .await
        .unwrap_err();

    assert_eq!(err.code, "autopilot.PageFailed", "{}", err.message);
    assert!(err.message.contains("HTTP 429"), "{}", err.message);
    assert!(!err.message.contains(ROUTING_KEY));

    // Once PagerDuty takes events again, the retry delivers it.
    *receiver.status.lock().unwrap() = None;
    relay
        .handle(LambdaEvent::new(
            sns_event(&envelope, &stack.topic_arn),
            Context::default(),
        ))
        .await
        .unwrap();
    assert_eq!(receiver.events.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_message_that_is_not_a_page_is_refused_naming_the_field() {
    let stack = Stack::new("pd_malformed").await;
    let receiver = Receiver::default();
    let port = receiver.start().await;
    let relay = relay(&stack, port).await;
    let mut event = sns_event(
        &json!({"Message": "hello", "MessageId": "1", "Timestamp": "2026-11-24T10:00:00.000Z", "MessageAttributes": {}}),
        &stack.topic_arn,
    );
    event["Records"][0]["Sns"]["Subject"] = Value::Null;

    let err = relay
        .handle(LambdaEvent::new(event, Context::default()))
        .await
        .unwrap_err();

    assert_eq!(err.code, "autopilot.MalformedEvent", "{}", err.message);
    assert!(
        err.message.contains("Records[0].Sns.Message"),
        "{}",
        err.message
    );
    assert!(receiver.events.lock().unwrap().is_empty());
}
