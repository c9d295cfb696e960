//! pagerduty's world: the routing key's secret, a stand-in for PagerDuty's
//! Events API v2 on loopback (202 to every enqueue), and the SNS deliveries of
//! real pages. events/ has no sample for the relay: its events are made as the
//! pagerduty tests make them, from pages autopilot's pager published to a
//! topic of their own and SNS delivered.

use super::vars;
use crate::measure::{Case, Step, World};
use crate::runtime::stub;
use autopilot_shared::pager::{Action, Page, Pager, Severity};
use autopilot_tests::Stack;
use serde_json::{json, Value};
use std::sync::Arc;

const ROUTING_KEY: &str = "R0ut1ngKeyR0ut1ngKeyR0ut1ngKey12";
const TRIGGER: &str = "SNS: critical page (trigger)";
const RESOLVE: &str = "SNS: its resolve";
const INFO: &str = "SNS: info page (no incident)";

pub struct PagerDuty {
    secret: String,
    url: String,
    /// The SNS events, by case.
    events: Vec<(&'static str, Value)>,
}

/// What SNS invokes a subscribed Lambda with for a delivered message.
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

impl PagerDuty {
    pub async fn new(stack: Arc<Stack>) -> Self {
        let secret = stack
            .create_secret("pagerduty/routing-key", ROUTING_KEY)
            .await;
        let port = stub(
            "/v2/enqueue",
            202,
            r#"{"status":"success","message":"Event processed","dedup_key":"bench"}"#,
        )
        .await;
        // A topic and capture queue of its own: the shared one carries every other function's pages.
        let own = Stack::new("bench-pagerduty").await;
        let pager = Pager::new(own.sns.clone(), &own.topic_arn, "autopilot-deploy");
        let incident = |action: Action, severity: Severity, summary: &str| {
            Page::new(action, severity, "deploy.failed", "prod/backend", summary)
                .dedup_key("autopilot/deploy/prod/backend/sha256:7f5b2640fe6f")
                .group("prod")
                .fact(
                    "Reason",
                    "ECS deployment circuit breaker: tasks failed to start.",
                )
                .fact("Revision", "backend:42")
        };
        let mut events = Vec::new();
        for (case, page) in [
            (
                TRIGGER,
                incident(
                    Action::Trigger,
                    Severity::Critical,
                    "Deploy FAILED: backend:v1.4.2 on prod/backend",
                ),
            ),
            (
                RESOLVE,
                incident(
                    Action::Resolve,
                    Severity::Critical,
                    "Deploy FAILED: backend:v1.4.2 on prod/backend",
                ),
            ),
            (
                INFO,
                incident(
                    Action::Trigger,
                    Severity::Info,
                    "Deploying backend:v1.4.2 to prod/backend",
                ),
            ),
        ] {
            pager.send(&page).await.expect("publish a page");
            let envelope = own.envelopes().await.pop().expect("SNS delivered the page");
            events.push((case, sns_event(&envelope, &own.topic_arn)));
        }
        Self {
            secret,
            url: format!("http://127.0.0.1:{port}/v2/enqueue"),
            events,
        }
    }
}

impl World for PagerDuty {
    fn name(&self) -> &'static str {
        "pagerduty"
    }

    fn env(&self) -> Vec<(String, String)> {
        vars(&[
            (pagerduty::config::ROUTING_KEY_SECRET, self.secret.clone()),
            (pagerduty::config::URL, self.url.clone()),
        ])
    }

    fn cases(&self) -> Vec<Case> {
        vec![
            Case::as_is(TRIGGER),
            Case::as_is(RESOLVE),
            Case::as_is(INFO),
        ]
    }

    fn cold_case(&self) -> &'static str {
        TRIGGER
    }

    async fn prepare(&mut self, case: &str, _serial: usize) -> Vec<Step> {
        let event = self
            .events
            .iter()
            .find(|(c, _)| *c == case)
            .map(|(_, e)| e.clone())
            .expect("a pagerduty case");
        vec![Step::timed(case, event)]
    }
}
