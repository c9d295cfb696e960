//! The local AWS harness for the integration tests and the demo.
//!
//! Core: [`emulator`] (moto server and its bridges, SDK configuration, the
//! bridge's control calls), [`Stack`] (one test's names, clients, on-call topic
//! and configuration, the call log and fault injection) and [`pages`] (what
//! on-call received). Fixtures per area: [`ecs`], [`events`], [`template`],
//! [`rotation`], [`postgres`], [`alarms`], [`snapshots`]; [`logs`] captures log lines;
//! [`faults`] puts a fault-injecting proxy between a function and the emulator.
//!
//! One emulator serves a whole test binary; every [`Stack`] uses names of its own,
//! so tests run in parallel without resetting each other's state.

pub mod alarms;
pub mod ecs;
pub mod emulator;
pub mod events;
pub mod faults;
pub mod logs;
pub mod pages;
pub mod postgres;
pub mod rotation;
pub mod snapshots;
pub mod template;
pub mod worlds;

pub use emulator::*;
pub use events::*;
pub use pages::Captured;

use aws_config::SdkConfig;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The value of a secret that fixtures put in a task definition's plain environment.
pub const PLAINTEXT_SECRET: &str = "sk_live_plaintext_sentinel_4f2a9c";

/// One test's world: its own names, on-call topic and capture queue.
pub struct Stack {
    pub sdk: SdkConfig,
    pub ecs: aws_sdk_ecs::Client,
    pub ecr: aws_sdk_ecr::Client,
    pub sns: aws_sdk_sns::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// Unique per stack; every resource name starts with it.
    pub prefix: String,
    pub topic_arn: String,
    pub queue_url: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Stack {
    pub async fn new(test: &str) -> Self {
        Self::with_topic(test, false).await
    }

    /// A stack whose on-call topic (and capture queue) is FIFO when `fifo`.
    pub async fn with_topic(test: &str, fifo: bool) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        Self::create(format!("{}-{n}", test.replace('_', "-")), fifo).await
    }

    /// A stack with plain names (`backend`, `prod`, `oncall`), as in `events/`; for the demo.
    pub async fn unprefixed() -> Self {
        Self::create(String::new(), false).await
    }

    async fn create(prefix: String, fifo: bool) -> Self {
        let sdk = sdk_config().await;
        let sns = aws_sdk_sns::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let suffix = if fifo { ".fifo" } else { "" };
        let name = |base: &str| {
            if prefix.is_empty() {
                base.to_string()
            } else {
                format!("{prefix}-{base}")
            }
        };
        let mut topic = sns
            .create_topic()
            .name(format!("{}{suffix}", name("oncall")));
        let mut queue = sqs
            .create_queue()
            .queue_name(format!("{}{suffix}", name("pages")));
        if fifo {
            topic = topic.attributes("FifoTopic", "true");
            queue = queue.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
        }
        let topic_arn = topic
            .send()
            .await
            .expect("create topic")
            .topic_arn()
            .unwrap()
            .to_string();
        let queue_url = queue
            .send()
            .await
            .expect("create queue")
            .queue_url()
            .unwrap()
            .to_string();
        let queue_arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}{suffix}", name("pages"));
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .send()
            .await
            .expect("subscribe queue");
        Self {
            ecs: aws_sdk_ecs::Client::new(&sdk),
            ecr: aws_sdk_ecr::Client::new(&sdk),
            sdk,
            sns,
            sqs,
            prefix,
            topic_arn,
            queue_url,
        }
    }

    /// A resource name of this stack.
    pub fn name(&self, base: &str) -> String {
        if self.prefix.is_empty() {
            base.to_string()
        } else {
            format!("{}-{base}", self.prefix)
        }
    }

    /// A configuration lookup holding this stack's topic plus the given variables,
    /// for a function's `Config::from_lookup`, validated as at a cold start.
    pub fn lookup(&self, vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
        let mut pairs = vec![(
            autopilot_shared::config::TOPIC_ARN.to_string(),
            self.topic_arn.clone(),
        )];
        pairs.extend(vars.iter().map(|(k, v)| (k.to_string(), v.clone())));
        autopilot_shared::config::lookup_from(pairs)
    }

    /// deploy's configuration for this stack's topic plus the given variables.
    pub fn deploy_config_with(&self, vars: &[(&str, String)]) -> deploy::config::Config {
        deploy::config::Config::from_lookup(self.lookup(vars)).expect("valid deploy configuration")
    }

    /// deploy's configuration for this stack's topic and the given service mapping.
    pub fn config(&self, services: Value, dry_run: bool) -> deploy::config::Config {
        self.deploy_config_with(&[
            (deploy::config::SERVICES, services.to_string()),
            (autopilot_shared::config::DRY_RUN, dry_run.to_string()),
        ])
    }

    /// rotate's configuration for this stack's topic plus the given variables.
    pub fn rotate_config_with(&self, vars: &[(&str, String)]) -> rotate::config::Config {
        rotate::config::Config::from_lookup(self.lookup(vars)).expect("valid rotate configuration")
    }

    /// rotate's configuration for this stack's topic and the given rotations.
    pub fn rotation_config(&self, rotations: Value) -> rotate::config::Config {
        self.rotate_config_with(&[(rotate::config::ROTATIONS, rotations.to_string())])
    }

    /// The AWS operations made so far whose request mentions this stack, in order.
    pub fn calls(&self) -> Vec<String> {
        let out = bridge("/_bridge/calls", json!({"match": self.prefix}));
        out["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    }

    /// Makes the next `count` calls of `operation` that mention this stack fail.
    pub fn fail_next(&self, operation: &str, count: u32, code: &str) {
        self.fail_matching(operation, count, code, &self.prefix);
    }

    /// Makes the next `count` calls of `operation` whose request contains `needle`
    /// fail with `code`. `needle` must be unique to the test (start it with the prefix).
    pub fn fail_matching(&self, operation: &str, count: u32, code: &str, needle: &str) {
        bridge(
            "/_bridge/fault",
            json!({"operation": operation, "count": count, "match": needle, "code": code, "status": status_of(code)}),
        );
    }

    /// Drops the faults still pending for requests containing `needle`.
    pub fn clear_faults(&self, needle: &str) {
        bridge("/_bridge/fault/clear", json!({"match": needle}));
    }

    /// Delays this stack's calls of `operation` by `seconds`, counting how many are in flight.
    pub fn slow(&self, operation: &str, seconds: f64) {
        bridge(
            "/_bridge/slow",
            json!({"operation": operation, "match": self.prefix, "seconds": seconds}),
        );
    }

    /// The most of this stack's slowed calls of `operation` ever in flight at once.
    pub fn max_in_flight(&self, operation: &str) -> u64 {
        bridge(
            "/_bridge/inflight",
            json!({"operation": operation, "match": self.prefix}),
        )["max"]
            .as_u64()
            .unwrap()
    }
}

/// The HTTP status AWS sends with an error code: 500 for the services' internal
/// errors (`InternalServiceError`, `InternalFailure`, `InternalError`), 503 for
/// `ServiceUnavailable*`, 400 for the rest (refusals and throttling). The SDK
/// classifies a failure by both, so a fault with the wrong status would test the
/// wrong path.
pub fn status_of(code: &str) -> u16 {
    if code.starts_with("Internal") {
        500
    } else if code.starts_with("ServiceUnavailable") {
        503
    } else {
        400
    }
}
