//! The rotate Lambda: logging, configuration, clients, then the runtime loop, each
//! invocation's metrics flushed to stdout as it ends (`shared::metrics`).

use autopilot_shared::{aws, logging, metrics};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use rotate::config::Config;
use rotate::Rotator;
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logging::init();
    metrics::init();
    let config =
        Config::from_env().inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    let rotator = Rotator::new(&aws::sdk_config().await, config)
        .inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    let rotator = &rotator;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        metrics::flushed(rotator.handle(event)).await
    }))
    .await
}
