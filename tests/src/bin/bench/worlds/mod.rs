//! The worlds the functions run in: the state each sample event needs, made
//! with the harness's fixtures (as `demo.rs` does), and how each iteration gets
//! fresh work. All names are the samples' own (`backend`, `prod`, `orders-db`),
//! on one unprefixed [`Stack`].

pub mod deploy;
pub mod pagerduty;
pub mod remediate;
pub mod rotate;
pub mod snapshot;

use autopilot_tests::{digest, root, Stack, REGION};
use aws_sdk_rds::error::ProvideErrorMetadata;
use serde_json::Value;

/// A sample event from `events/`.
pub fn sample(path: &str) -> Value {
    let file = root().join(path);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// A UUID-shaped id, distinct per `seed`, as EventBridge and Secrets Manager give.
pub fn uuid(seed: &str) -> String {
    let h = digest(seed);
    let h = &h["sha256:".len()..];
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `{"k": v}` pairs of configuration as the process environment takes them.
pub fn vars(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// The RDS instance `orders-db` (encrypted PostgreSQL, 20 GiB), which both
/// remediate's storage alarms and snapshot's backups are about; made when missing.
pub async fn orders_db() {
    let rds = autopilot_tests::snapshots::rds(REGION).await;
    match rds
        .describe_db_instances()
        .db_instance_identifier(ORDERS_DB)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if e.code() == Some("DBInstanceNotFound") => {
            autopilot_tests::snapshots::create_instance(REGION, ORDERS_DB, true).await;
        }
        Err(e) => panic!("describe {ORDERS_DB}: {:?}", e.code()),
    }
}

pub const ORDERS_DB: &str = "orders-db";

/// Empties the stack's on-call capture queue, so thousands of pages do not pile up.
pub async fn drain_pages(stack: &Stack) {
    let _ = stack
        .sqs
        .purge_queue()
        .queue_url(&stack.queue_url)
        .send()
        .await;
}
