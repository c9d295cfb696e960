//! Captures the JSON log lines a piece of code writes, for assertions.

use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    /// Every line written so far, parsed; panics on a line that is not JSON.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .expect("logs are UTF-8")
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Runs `f` with the production JSON subscriber writing into the returned buffer.
/// The subscriber is the current thread's default, so use a current-thread runtime.
pub async fn capture<F: std::future::Future>(f: F) -> (F::Output, Captured) {
    capture_at("info", f).await
}

/// [`capture`] at the log level an operator sets in `AWS_LAMBDA_LOG_LEVEL`.
pub async fn capture_at<F: std::future::Future>(level: &str, f: F) -> (F::Output, Captured) {
    let buffer = Captured::default();
    let subscriber = autopilot_shared::logging::json_subscriber(buffer.clone(), level);
    let _guard = tracing::subscriber::set_default(subscriber);
    let out = f.await;
    (out, buffer)
}
