//! A fault-injecting HTTP proxy between a function's SDK clients and the emulator.
//!
//! Each [`FaultProxy`] listens on its own loopback port, so one test's faults never
//! reach another's calls, and forwards every request to the emulator unless a rule
//! picks a fault for it. Faults are chosen per AWS operation: either the next N calls
//! of an operation ([`FaultProxy::arm`]), or each call with a probability drawn from a
//! seeded generator keyed by operation and call number ([`FaultProxy::seeded`]), so a
//! run is reproducible from its seed.
//!
//! The faults are the ones AWS clients meet:
//! - throttling: `400 ThrottlingException` (`Throttling` for the query protocol of RDS
//!   and SNS, the code those services send);
//! - `500 InternalFailure` and `503 ServiceUnavailable`;
//! - a connection reset before the request reaches AWS, or after AWS has carried it
//!   out but before the answer arrives (the call happened; the caller cannot know);
//! - added latency below the SDK's attempt timeout;
//! - a timeout: the call is carried out and its answer held past the attempt timeout.
//!
//! Error answers are rendered by the emulator's bridge (`x-autopilot-fault` header),
//! which knows each service's protocol (JSON, query XML, CBOR for CloudWatch).

use aws_config::SdkConfig;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The attempt timeout of the SDK clients built by [`FaultProxy::sdk_config`]: short
/// enough that a matrix of timeouts runs in seconds, long enough that a loaded CI
/// machine's emulator answers well inside it.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a [`Fault::Timeout`] holds an answer: past [`ATTEMPT_TIMEOUT`].
const HOLD: Duration = Duration::from_millis(4_000);

/// One fault, as AWS clients meet it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// `400 ThrottlingException` (query protocol: `Throttling`).
    Throttle,
    /// `500 InternalFailure`.
    Internal,
    /// `503 ServiceUnavailable`.
    Unavailable,
    /// The connection is reset before the request is forwarded: AWS never saw it.
    ResetBefore,
    /// The request is carried out, then the connection is reset before the answer.
    ResetAfter,
    /// The answer comes 300 ms late, inside the attempt timeout.
    Latency,
    /// The request is carried out and its answer held past the attempt timeout.
    Timeout,
}

impl Fault {
    pub const ALL: [Fault; 7] = [
        Fault::Throttle,
        Fault::Internal,
        Fault::Unavailable,
        Fault::ResetBefore,
        Fault::ResetAfter,
        Fault::Latency,
        Fault::Timeout,
    ];

    /// The error code and HTTP status the bridge answers with, for the answer faults.
    fn answer(self, query_protocol: bool) -> Option<(&'static str, u16)> {
        match (self, query_protocol) {
            (Fault::Throttle, true) => Some(("Throttling", 400)),
            (Fault::Throttle, false) => Some(("ThrottlingException", 400)),
            (Fault::Internal, _) => Some(("InternalFailure", 500)),
            (Fault::Unavailable, true) => Some(("ServiceUnavailable", 503)),
            (Fault::Unavailable, false) => Some(("ServiceUnavailableException", 503)),
            _ => None,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Fault::Throttle => "throttling",
            Fault::Internal => "500",
            Fault::Unavailable => "503",
            Fault::ResetBefore => "reset before the call",
            Fault::ResetAfter => "reset after the call",
            Fault::Latency => "latency",
            Fault::Timeout => "timeout",
        };
        f.write_str(name)
    }
}

/// One request the proxy saw: its operation and the fault it was given, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub operation: String,
    pub fault: Option<Fault>,
}

impl Call {
    /// Whether the emulator carried the call out (it may still have failed there).
    pub fn reached_aws(&self) -> bool {
        !matches!(
            self.fault,
            Some(Fault::Throttle | Fault::Internal | Fault::Unavailable | Fault::ResetBefore)
        )
    }
}

#[derive(Debug)]
struct Armed {
    operation: String,
    fault: Fault,
    /// Calls of the operation let through before the fault starts.
    skip: u32,
    remaining: u32,
}

#[derive(Debug)]
struct Seeded {
    seed: u64,
    /// Out of 1,000 calls.
    per_mille: u64,
    faults: Vec<Fault>,
    /// Operations never faulted by the seed (e.g. the capture of pages).
    spare: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    armed: Vec<Armed>,
    seeded: Option<Seeded>,
    /// Calls seen per operation, the seeded generator's counter.
    counts: BTreeMap<String, u64>,
    calls: Vec<Call>,
}

impl State {
    fn pick(&mut self, operation: &str) -> Option<Fault> {
        let n = self.counts.entry(operation.to_string()).or_default();
        *n += 1;
        let n = *n;
        if let Some(i) = self.armed.iter().position(|a| a.operation == operation) {
            let armed = &mut self.armed[i];
            if armed.skip > 0 {
                armed.skip -= 1;
                return None;
            }
            let fault = armed.fault;
            armed.remaining -= 1;
            if armed.remaining == 0 {
                self.armed.remove(i);
            }
            return Some(fault);
        }
        let seeded = self.seeded.as_ref()?;
        if seeded.faults.is_empty() || seeded.spare.iter().any(|s| s == operation) {
            return None;
        }
        let draw = splitmix(seeded.seed ^ hash(operation) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        (draw % 1_000 < seeded.per_mille)
            .then(|| seeded.faults[((draw / 1_000) % seeded.faults.len() as u64) as usize])
    }
}

/// SplitMix64: a fixed, well-mixed function of its input, so a seed and a call's
/// operation and number always pick the same fault.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a: stable across runs and platforms, unlike the standard library's hasher.
fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A proxy of its own, in front of the test binary's emulator.
pub struct FaultProxy {
    port: u16,
    state: Arc<Mutex<State>>,
}

/// The proxies' runtime: a thread of its own, so a proxy outlives the test runtime
/// that started it and keeps answering while that runtime blocks.
fn runtime() -> &'static tokio::runtime::Handle {
    static RUNTIME: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .expect("the fault proxy's runtime");
        let handle = runtime.handle().clone();
        std::thread::spawn(move || runtime.block_on(std::future::pending::<()>()));
        handle
    })
}

impl FaultProxy {
    /// A new proxy in front of the emulator, with no faults armed.
    pub fn start() -> Self {
        let upstream = crate::emulator().port;
        let std_listener =
            std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind the fault proxy");
        std_listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let port = std_listener.local_addr().expect("proxy address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        runtime().spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("a tokio listener");
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            while let Ok((stream, _)) = listener.accept().await {
                let reset = Arc::new(AtomicBool::new(false));
                let io = Resettable {
                    stream,
                    reset: reset.clone(),
                };
                let state = shared.clone();
                let client = client.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = state.clone();
                        let client = client.clone();
                        let reset = reset.clone();
                        async move { forward(request, upstream, &state, &client, &reset).await }
                    });
                    // A reset ends the connection with an error: that is the point.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(io), service)
                        .await;
                });
            }
        });
        Self { port, state }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The harness's SDK configuration pointed at this proxy: the production loader
    /// (attempts, retry classification, timeouts) with the attempt timeout cut to
    /// [`ATTEMPT_TIMEOUT`] and the backoff to milliseconds, so a matrix of faults runs
    /// in make test. The number of attempts, the bound under test, is production's.
    pub async fn sdk_config(&self) -> SdkConfig {
        use aws_config::timeout::TimeoutConfig;
        autopilot_shared::aws::loader()
            .endpoint_url(self.endpoint())
            .region(aws_config::Region::new(crate::REGION))
            .credentials_provider(aws_sdk_sns::config::Credentials::new(
                "test", "test", None, None, "harness",
            ))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .operation_timeout(Duration::from_secs(30))
                    .build(),
            )
            .retry_config(crate::quick_retries())
            .load()
            .await
    }

    /// Gives the next `count` calls of `operation` the fault.
    pub fn arm(&self, operation: &str, fault: Fault, count: u32) {
        self.arm_after(operation, 0, fault, count);
    }

    /// Lets `skip` calls of `operation` through, then gives the next `count` the fault.
    pub fn arm_after(&self, operation: &str, skip: u32, fault: Fault, count: u32) {
        if count > 0 {
            self.lock().armed.push(Armed {
                operation: operation.to_string(),
                fault,
                skip,
                remaining: count,
            });
        }
    }

    /// Gives each call, but those of `spare` operations, one of `faults` with a
    /// probability of `per_mille`/1000, drawn from `seed`, the operation and the
    /// call's number for that operation.
    pub fn seeded(&self, seed: u64, per_mille: u64, faults: &[Fault], spare: &[&str]) {
        self.lock().seeded = Some(Seeded {
            seed,
            per_mille,
            faults: faults.to_vec(),
            spare: spare.iter().map(|s| s.to_string()).collect(),
        });
    }

    /// Drops every armed and seeded fault: what Lambda's retry meets once AWS recovers.
    pub fn heal(&self) {
        let mut state = self.lock();
        state.armed.clear();
        state.seeded = None;
    }

    /// Every call so far, in the order the proxy received them.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The distinct operations called so far, in the order first called.
    pub fn operations(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for call in self.calls() {
            if !seen.contains(&call.operation) {
                seen.push(call.operation);
            }
        }
        seen
    }

    /// Whether `case`'s fault reached at least one call: a case that injected
    /// nothing proves nothing.
    pub fn injected(&self, case: &Case) -> bool {
        self.calls()
            .iter()
            .any(|c| c.operation == case.operation && c.fault == Some(case.fault))
    }

    /// Forgets the calls seen so far (faults stay).
    pub fn forget(&self) {
        self.lock().calls.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The AWS operation of a request, as the bridge reads it: `X-Amz-Target` (JSON
/// protocols), the path of Smithy RPC v2 CBOR (`/service/<S>/operation/<Op>`), or
/// the query protocol's `Action`. The second value says whether it is the query protocol.
fn operation(request: &hyper::http::request::Parts, body: &[u8]) -> Option<(String, bool)> {
    if let Some(target) = request.headers.get("x-amz-target") {
        let target = target.to_str().ok()?;
        return Some((target.rsplit('.').next()?.to_string(), false));
    }
    if let Some(op) = request.uri.path().split("/operation/").nth(1) {
        return Some((op.to_string(), false));
    }
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .map(|op| (op.to_string(), true))
}

type Reply = Response<Full<Bytes>>;

async fn forward(
    request: Request<Incoming>,
    upstream: u16,
    state: &Mutex<State>,
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    reset: &AtomicBool,
) -> Result<Reply, std::io::Error> {
    let (mut parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let picked = operation(&parts, &body).map(|(op, query)| {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        let fault = state.pick(&op);
        state.calls.push(Call {
            operation: op,
            fault,
        });
        (fault, query)
    });
    let (fault, query) = picked.unwrap_or((None, false));
    if fault == Some(Fault::ResetBefore) {
        reset.store(true, Ordering::SeqCst);
        return Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    }
    if let Some((code, status)) = fault.and_then(|f| f.answer(query)) {
        let value = format!("{code} {status}");
        parts.headers.insert(
            "x-autopilot-fault",
            value.parse().map_err(std::io::Error::other)?,
        );
    }
    if fault == Some(Fault::Latency) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let uri = format!(
        "http://127.0.0.1:{upstream}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    parts.uri = uri.parse().map_err(std::io::Error::other)?;
    let answer = client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(std::io::Error::other)?;
    let (parts, body) = answer.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    match fault {
        Some(Fault::ResetAfter) => {
            reset.store(true, Ordering::SeqCst);
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
        }
        Some(Fault::Timeout) => {
            tokio::time::sleep(HOLD).await;
            Ok(Response::from_parts(parts, Full::new(body)))
        }
        _ => Ok(Response::from_parts(parts, Full::new(body))),
    }
}

/// A client connection that ends with a TCP reset (RST, `SO_LINGER` 0) instead of a
/// clean close once a fault asked for it: what a client sees when a load balancer or
/// AWS drops a connection.
struct Resettable {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for Resettable {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for Resettable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Resettable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.reset.load(Ordering::SeqCst) {
            // No FIN before the RST the drop sends.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// One cell of the fault matrix: `fault` on the next `count` calls of `operation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub operation: String,
    pub fault: Fault,
    pub count: u32,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} × {} on {}", self.count, self.fault, self.operation)
    }
}

impl Case {
    /// Whether the fault can still be standing when the SDK gives up, so that the
    /// invocation fails and Lambda's retry must finish the work.
    pub fn outlasts_the_sdk(&self) -> bool {
        self.count >= crate::MAX_ATTEMPTS && self.fault != Fault::Latency
    }
}

/// Every fault on every operation, each with the number of calls that exercises
/// its hardest path:
/// - throttling, 503 and a reset after the call: on every attempt the SDK makes,
///   so the invocation fails and Lambda's retry must finish the work (after a reset
///   after the call, AWS has carried out every one of those attempts);
/// - 500, a reset before the call and a timeout: once, which the SDK's retry absorbs
///   (after a timeout, AWS carried the first attempt out, and the retry repeats it);
/// - latency: on every call.
pub fn cases(operations: &[String]) -> Vec<Case> {
    let every = crate::MAX_ATTEMPTS;
    operations
        .iter()
        .flat_map(|operation| {
            Fault::ALL.iter().map(move |&fault| Case {
                operation: operation.clone(),
                fault,
                count: match fault {
                    Fault::Throttle | Fault::Unavailable | Fault::ResetAfter => every,
                    Fault::Internal | Fault::ResetBefore | Fault::Timeout => 1,
                    Fault::Latency => 1_000,
                },
            })
        })
        .collect()
}

/// Lambda's retries of an asynchronous invocation (`MaximumRetryAttempts: 2` in
/// template.yaml): the first attempt, then up to two more while it fails.
pub const LAMBDA_ATTEMPTS: usize = 3;

/// One invocation: its answer and the calls it made.
#[derive(Debug)]
pub struct Attempt<T, E> {
    pub answer: Result<T, E>,
    pub calls: Vec<Call>,
}

/// Runs `invoke` once and keeps the calls it made.
pub async fn attempt<T, E>(
    proxy: &FaultProxy,
    invoke: impl AsyncFnOnce() -> Result<T, E>,
) -> Attempt<T, E> {
    let before = proxy.calls().len();
    let answer = invoke().await;
    let calls = proxy.calls().split_off(before);
    Attempt { answer, calls }
}

/// Runs `invoke` as Lambda runs an asynchronously invoked function: again while it
/// fails, up to [`LAMBDA_ATTEMPTS`] in all. AWS recovers after the first failure
/// ([`FaultProxy::heal`]), so the retries show whether the work converges. Returns
/// every attempt. One invocation at a time per proxy: the calls of concurrent ones
/// would mix.
pub async fn with_lambda_retries<T, E>(
    proxy: &FaultProxy,
    invoke: impl AsyncFn() -> Result<T, E>,
) -> Vec<Attempt<T, E>> {
    let mut attempts = Vec::new();
    for _ in 0..LAMBDA_ATTEMPTS {
        let this = attempt(proxy, async || invoke().await).await;
        let failed = this.answer.is_err();
        attempts.push(this);
        if !failed {
            break;
        }
        proxy.heal();
    }
    attempts
}

/// Runs every case, `parallel` at a time, and fails listing every broken invariant.
/// `run` returns `Err` with what broke.
pub async fn run_matrix(
    function: &str,
    cases: Vec<Case>,
    parallel: usize,
    run: impl AsyncFn(&Case) -> Result<(), String>,
) {
    use futures::stream::{self, StreamExt};
    let total = cases.len();
    let started = std::time::Instant::now();
    let run = &run;
    let broken: Vec<String> = stream::iter(cases)
        .map(|case| async move { run(&case).await.err().map(|e| format!("{case}: {e}")) })
        .buffer_unordered(parallel)
        .filter_map(|e| async move { e })
        .collect()
        .await;
    // Shown with --nocapture: the figures of docs/reliability.md.
    println!(
        "{function}: {total} fault cases in {:.0} s, {} broke an invariant",
        started.elapsed().as_secs_f64(),
        broken.len()
    );
    assert!(
        broken.is_empty(),
        "{function}: {} of {total} fault cases broke an invariant:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_picks_the_same_faults_every_time() {
        let picks = |seed| {
            let mut state = State {
                seeded: Some(Seeded {
                    seed,
                    per_mille: 300,
                    faults: Fault::ALL.to_vec(),
                    spare: vec!["Publish".into()],
                }),
                ..State::default()
            };
            (0..200)
                .map(|i| {
                    state.pick(if i % 2 == 0 {
                        "UpdateService"
                    } else {
                        "Publish"
                    })
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(picks(7), picks(7));
        assert_ne!(picks(7), picks(8));
        let faulted = picks(7).iter().filter(|f| f.is_some()).count();
        // 100 UpdateService calls at 30 %; Publish is spared.
        assert!((15..=45).contains(&faulted), "{faulted}");
        assert!(picks(7).iter().skip(1).step_by(2).all(Option::is_none));
    }

    #[test]
    fn armed_faults_take_the_next_calls_of_their_operation_only() {
        let mut state = State::default();
        state.armed.push(Armed {
            operation: "UpdateService".into(),
            fault: Fault::Throttle,
            skip: 1,
            remaining: 2,
        });
        assert_eq!(state.pick("DescribeServices"), None);
        assert_eq!(state.pick("UpdateService"), None, "skipped");
        assert_eq!(state.pick("UpdateService"), Some(Fault::Throttle));
        assert_eq!(state.pick("UpdateService"), Some(Fault::Throttle));
        assert_eq!(state.pick("UpdateService"), None);
    }
}
