//! The remediate Lambda: logging, configuration, clients, then the runtime loop, each
//! invocation's metrics flushed to stdout as it ends (`shared::metrics`).

use autopilot_shared::{aws, logging, metrics};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use remediate::config::Config;
use remediate::Remediator;
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logging::init();
    metrics::init();
    let config =
        Config::from_env().inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    let remediator = Remediator::new(&aws::sdk_config().await, config);
    let remediator = &remediator;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        metrics::flushed(remediator.handle(event)).await
    }))
    .await
}
