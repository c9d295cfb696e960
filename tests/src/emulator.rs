//! The local AWS emulator: moto server with the bridges in `harness/moto_bridge.py`,
//! on a free loopback port, one per test binary, and the SDK configuration that
//! points at it. It exits when the test process does.

pub use autopilot_shared::aws::MAX_ATTEMPTS;
use aws_config::{Region, SdkConfig};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python that has moto: `AUTOPILOT_PYTHON`, else the set-up's venv.
pub fn python() -> PathBuf {
    std::env::var_os("AUTOPILOT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"))
}

/// Where every emulator of the suite logs the AWS calls autopilot's functions make
/// (one file per test binary); `make test` empties it first, and the IAM test reads it.
pub fn call_log_dir() -> PathBuf {
    target_dir().join("aws-calls")
}

/// Where every emulator of the suite logs each SecretString written to Secrets
/// Manager, and where every test binary writes its log lines (one file per binary
/// in each); `make test` empties both first, and `tests/tests/secrets_in_logs.rs`
/// looks for each secret value in every log line.
pub fn secret_log_dir() -> PathBuf {
    target_dir().join("test-secrets")
}

/// See [`secret_log_dir`].
pub fn test_log_dir() -> PathBuf {
    target_dir().join("test-logs")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// This test binary's name and process, for its files in the suite's log folders.
fn binary_file() -> String {
    format!(
        "{}-{}.jsonl",
        std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().to_string()))
            .unwrap_or_default(),
        std::process::id()
    )
}

/// Sends every log line of this process (functions, SDK, harness) at DEBUG, through
/// the production JSON subscriber, to this binary's file under [`test_log_dir`]. A
/// test that captures its own lines (`logs::capture`) sets a subscriber of its
/// thread, which takes precedence for its scope.
fn record_logs() {
    // Test binaries only (cargo puts them in `deps/`): the demo and the bench keep
    // their output, and their timings, to themselves.
    let is_test = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().and_then(|d| d.file_name()).map(|n| n == "deps"))
        .unwrap_or(false);
    if !is_test {
        return;
    }
    let dir = test_log_dir();
    let file = std::fs::create_dir_all(&dir)
        .and_then(|_| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(binary_file()))
        })
        .unwrap_or_else(|e| panic!("open the test log in {}: {e}", dir.display()));
    let subscriber = autopilot_shared::logging::json_subscriber(Mutex::new(file), "debug");
    // Another global subscriber (a binary of its own making) keeps its place.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

pub struct Emulator {
    pub port: u16,
    _child: Mutex<Child>,
}

impl Emulator {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The test binary's emulator, started on first use. It exits when the test process does.
pub fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(|| {
        record_logs();
        let script = root().join("tests/harness/moto_bridge.py");
        let log = call_log_dir().join(binary_file());
        let secrets = secret_log_dir().join(binary_file());
        std::fs::create_dir_all(call_log_dir()).expect("create the call log directory");
        std::fs::create_dir_all(secret_log_dir()).expect("create the secret log directory");
        let mut child = Command::new(python())
            .arg(&script)
            .env("AUTOPILOT_CALL_LOG", &log)
            .env("AUTOPILOT_SECRET_LOG", &secrets)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} with {}: {e}; run `make setup`",
                    script.display(),
                    python().display()
                )
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("emulator prints its port");
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("emulator did not report a port: {line:?}"));
        Emulator {
            port,
            _child: Mutex::new(child),
        }
    })
}

/// SDK configuration pointing at the emulator, with dummy credentials.
/// The production loader (timeouts, retries), pointed at the emulator. Only the
/// backoff between attempts is cut to milliseconds, so a test of a call that fails
/// every one of its [`MAX_ATTEMPTS`] attempts does not sleep for seconds; the number
/// of attempts and what is retried are production's.
pub async fn sdk_config() -> SdkConfig {
    autopilot_shared::aws::loader()
        .retry_config(quick_retries())
        .endpoint_url(emulator().endpoint())
        .region(Region::new(REGION))
        .credentials_provider(aws_sdk_sns::config::Credentials::new(
            "test", "test", None, None, "harness",
        ))
        .load()
        .await
}

/// Production's retries ([`MAX_ATTEMPTS`], the standard mode's classification) with
/// millisecond backoff.
pub fn quick_retries() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(std::time::Duration::from_millis(5))
        .with_max_backoff(std::time::Duration::from_millis(40))
}

/// POSTs JSON to one of the bridge's control endpoints.
pub fn bridge(path: &str, body: Value) -> Value {
    let body = body.to_string();
    let mut stream =
        TcpStream::connect(("127.0.0.1", emulator().port)).expect("connect to emulator");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write to emulator");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read from emulator");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "bridge {path}: {head}\n{body}"
    );
    serde_json::from_str(body).unwrap_or_else(|e| panic!("bridge {path} answered {body:?}: {e}"))
}

/// `sha256:` + the hash of `seed`: a realistic, distinct digest per image.
pub fn digest(seed: &str) -> String {
    let hex: String = Sha256::digest(seed.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}
