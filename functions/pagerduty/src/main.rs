//! The pagerduty relay Lambda: logging, configuration, clients, then the runtime loop.

use autopilot_shared::{aws, logging};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use pagerduty::config::Config;
use pagerduty::Relay;
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logging::init();
    let config =
        Config::from_env().inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    let relay = Relay::new(&aws::sdk_config().await, config);
    let relay = &relay;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        relay.handle(event).await
    }))
    .await
}
