//! The rotate Lambda: logging, configuration, clients, then the runtime loop.

use autopilot_shared::{aws, logging};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use rotate::config::Config;
use rotate::Rotator;
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logging::init();
    let config =
        Config::from_env().inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    let rotator = Rotator::new(&aws::sdk_config().await, config)
        .inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    let rotator = &rotator;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        rotator.handle(event).await
    }))
    .await
}
