//! Pages as on-call receives them: through SNS into each stack's SQS queue.

use crate::Stack;
use serde_json::Value;

/// A page as on-call's SQS subscription received it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub subject: String,
    /// The PagerDuty-shaped JSON (the `sqs` key of the message).
    pub body: Value,
    pub severity: String,
}

impl Captured {
    pub fn summary(&self) -> &str {
        self.body["payload"]["summary"].as_str().unwrap_or_default()
    }
    pub fn detail(&self, key: &str) -> &Value {
        &self.body["payload"]["custom_details"][key]
    }
    pub fn action(&self) -> &str {
        self.body["event_action"].as_str().unwrap_or_default()
    }
    pub fn dedup_key(&self) -> &str {
        self.body["dedup_key"].as_str().unwrap_or_default()
    }
}

impl Stack {
    /// Every page received since the last call, oldest first.
    pub async fn pages(&self) -> Vec<Captured> {
        self.envelopes()
            .await
            .into_iter()
            .map(|envelope| {
                let body: Value =
                    serde_json::from_str(envelope["Message"].as_str().unwrap_or_default())
                        .unwrap_or_else(|e| {
                            panic!("page body is not the machine JSON: {e}: {envelope}")
                        });
                Captured {
                    subject: envelope["Subject"].as_str().unwrap_or_default().to_string(),
                    severity: envelope["MessageAttributes"]["severity"]["Value"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    body,
                }
            })
            .collect()
    }

    /// The SNS envelopes of every page received since the last call, oldest first.
    pub async fn envelopes(&self) -> Vec<Value> {
        let mut pages = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("receive pages");
            if out.messages().is_empty() {
                return pages;
            }
            for m in out.messages() {
                let envelope: Value =
                    serde_json::from_str(m.body().unwrap_or_default()).expect("SNS envelope");
                pages.push(envelope);
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete page");
            }
        }
    }
}
