//! A local Lambda Runtime API and the function process it serves.
//!
//! Each spawned process gets a server of its own on its own loopback port, so
//! every `/next` request belongs to the process that made it. The server turns
//! the protocol into [`Signal`]s; [`Function`] waits on them (never on a
//! timer): a process is ready for an event once its `/next` request has
//! arrived, and an invocation ends when its `/response` or `/error` arrives.
//!
//! Protocol (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>):
//! `GET /2018-06-01/runtime/invocation/next` answers the event with
//! `Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms`, `-Invoked-Function-Arn` and
//! `-Trace-Id`; `POST …/invocation/<id>/response` and `…/<id>/error` end it;
//! `POST …/init/error` reports a failed init.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

const API: &str = "/2018-06-01/runtime";

/// How long the bench waits for a word from a process before it gives up. Not
/// synchronisation: a safety net so a hung function fails the run instead of
/// hanging it.
const SILENCE_LIMIT: Duration = Duration::from_secs(300);

/// What the server saw.
enum Signal {
    /// A `/next` request, parked until the bench hands it an event.
    Next {
        at: Instant,
        deliver: oneshot::Sender<Invocation>,
    },
    /// `/response` (`ok`) or `/error` for request `id`, fully read at `at`.
    Reply {
        id: String,
        at: Instant,
        ok: bool,
        body: Bytes,
    },
    /// `/init/error`.
    InitError { body: Bytes },
}

struct Invocation {
    id: String,
    body: Bytes,
}

/// One invocation's answer.
pub struct Reply {
    /// `/response` rather than `/error`.
    pub ok: bool,
    /// The response (a `Report`) or the error document (`errorType`, `errorMessage`).
    pub body: Value,
    /// From handing the event to the parked `/next` to the end of the reply.
    pub elapsed: Duration,
    /// When the reply was read.
    pub at: Instant,
}

impl Reply {
    /// A short description of the outcome: the report's actions, or the error type.
    pub fn summary(&self) -> String {
        if !self.ok {
            return format!(
                "error {}",
                self.body["errorType"].as_str().unwrap_or("(no errorType)")
            );
        }
        let actions: Vec<&str> = self.body["outcomes"]
            .as_array()
            .map(|o| o.iter().filter_map(|o| o["action"].as_str()).collect())
            .unwrap_or_default();
        if actions.is_empty() {
            return "no outcome".into();
        }
        let mut counted: Vec<(String, usize)> = Vec::new();
        for a in actions {
            match counted.iter_mut().find(|(x, _)| x == a) {
                Some((_, n)) => *n += 1,
                None => counted.push((a.to_string(), 1)),
            }
        }
        counted
            .into_iter()
            .map(|(a, n)| if n == 1 { a } else { format!("{a} ×{n}") })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The first outcome's reason, or the error message: for console diagnostics.
    pub fn reason(&self) -> String {
        if self.ok {
            self.body["outcomes"][0]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        } else {
            self.body["errorMessage"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
    }
}

/// What a function process is started with.
pub struct Spec {
    /// `deploy`, `rotate`, …
    pub name: &'static str,
    pub binary: PathBuf,
    /// The whole environment (the process starts with an empty one), less
    /// `AWS_LAMBDA_RUNTIME_API`, which [`Function::spawn`] adds.
    pub env: Vec<(String, String)>,
    /// Where its stdout and stderr (the JSON logs) are appended.
    pub log: PathBuf,
}

/// A function process and its Runtime API.
pub struct Function {
    pub name: &'static str,
    child: tokio::process::Child,
    signals: mpsc::UnboundedReceiver<Signal>,
    parked: Option<oneshot::Sender<Invocation>>,
    server: JoinHandle<()>,
    /// Just before the process was spawned.
    pub spawned: Instant,
    log: PathBuf,
    invocations: u64,
}

impl Function {
    /// Starts the Runtime API on a free loopback port, then the process.
    pub async fn spawn(spec: &Spec) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the runtime API");
        let port = listener.local_addr().expect("runtime API address").port();
        let (tx, signals) = mpsc::unbounded_channel();
        let arn = format!(
            "arn:aws:lambda:{}:{}:function:autopilot-{}",
            autopilot_tests::REGION,
            autopilot_tests::ACCOUNT,
            spec.name
        );
        let server = tokio::spawn(serve(listener, tx, arn));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .unwrap_or_else(|e| panic!("open {}: {e}", spec.log.display()));
        let mut command = tokio::process::Command::new(&spec.binary);
        command
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .kill_on_drop(true);
        let spawned = Instant::now();
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", spec.binary.display()));
        Self {
            name: spec.name,
            child,
            signals,
            parked: None,
            server,
            spawned,
            log: spec.log.clone(),
            invocations: 0,
        }
    }

    /// The next thing the server saw; panics if the process exits or falls silent.
    async fn signal(&mut self) -> Signal {
        let silence = tokio::time::sleep(SILENCE_LIMIT);
        tokio::pin!(silence);
        tokio::select! {
            signal = self.signals.recv() => signal.expect("the runtime API server stopped"),
            status = self.child.wait() => panic!(
                "{} exited ({status:?}); its log: {}\n{}",
                self.name,
                self.log.display(),
                tail(&self.log)
            ),
            _ = &mut silence => panic!(
                "{} said nothing to its runtime API for {} s; its log: {}\n{}",
                self.name,
                SILENCE_LIMIT.as_secs(),
                self.log.display(),
                tail(&self.log)
            ),
        }
    }

    /// Waits until the process has asked for an event (`/next`); returns when the request arrived.
    pub async fn ready(&mut self) -> Instant {
        match self.signal().await {
            Signal::Next { at, deliver } => {
                self.parked = Some(deliver);
                at
            }
            Signal::InitError { body } => panic!(
                "{} failed its init: {}\nlog: {}\n{}",
                self.name,
                String::from_utf8_lossy(&body),
                self.log.display(),
                tail(&self.log)
            ),
            Signal::Reply { id, .. } => panic!("{}: a reply to {id} nobody sent", self.name),
        }
    }

    /// Hands `event` to the parked `/next` (waiting for one first) and waits for the reply.
    pub async fn invoke(&mut self, event: &Value) -> Reply {
        if self.parked.is_none() {
            self.ready().await;
        }
        let deliver = self.parked.take().expect("a parked /next");
        self.invocations += 1;
        let id = format!("bench-{}-{:06}", self.name, self.invocations);
        let body = Bytes::from(serde_json::to_vec(event).expect("event JSON"));
        let start = Instant::now();
        if deliver
            .send(Invocation {
                id: id.clone(),
                body,
            })
            .is_err()
        {
            panic!("{}: its /next request went away", self.name);
        }
        match self.signal().await {
            Signal::Reply {
                id: replied,
                at,
                ok,
                body,
            } if replied == id => {
                let body = serde_json::from_slice(&body)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).to_string()));
                Reply {
                    ok,
                    body,
                    elapsed: at.saturating_duration_since(start),
                    at,
                }
            }
            Signal::Reply { id: other, .. } => {
                panic!("{}: a reply to {other} while {id} ran", self.name)
            }
            Signal::Next { .. } => {
                panic!("{}: asked for an event before answering {id}", self.name)
            }
            Signal::InitError { body } => panic!(
                "{}: init error during {id}: {}",
                self.name,
                String::from_utf8_lossy(&body)
            ),
        }
    }

    /// The process's peak resident set (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("a running process");
        peak_rss_kib(pid).unwrap_or_else(|| panic!("no VmHWM for {} (pid {pid})", self.name))
    }

    /// Stops the process once it is idle again (its next `/next` arrived) and
    /// returns its peak RSS in KiB, read just before it is killed.
    pub async fn stop(mut self) -> u64 {
        if self.parked.is_none() {
            self.ready().await;
        }
        let peak = self.peak_rss_kib();
        let _ = self.child.kill().await;
        self.server.abort();
        peak
    }
}

/// VmHWM of `pid` from /proc, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The last lines of a log, for a failure message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

async fn serve(listener: TcpListener, tx: mpsc::UnboundedSender<Signal>, arn: String) {
    while let Ok((stream, _)) = listener.accept().await {
        let tx = tx.clone();
        let arn = arn.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let tx = tx.clone();
                let arn = arn.clone();
                async move { Ok::<_, Infallible>(route(request, &tx, &arn).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

async fn route(
    request: Request<Incoming>,
    tx: &mpsc::UnboundedSender<Signal>,
    arn: &str,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let Some(path) = path.strip_prefix(API) else {
        return empty(StatusCode::NOT_FOUND);
    };
    let method = request.method().clone();
    if method == Method::GET && path == "/invocation/next" {
        let at = Instant::now();
        let (deliver, delivered) = oneshot::channel();
        if tx.send(Signal::Next { at, deliver }).is_err() {
            return empty(StatusCode::GONE);
        }
        let Ok(invocation) = delivered.await else {
            return empty(StatusCode::GONE);
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let deadline = now.as_millis() + 900_000;
        let trace = format!(
            "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
            now.as_secs(),
            now.as_nanos(),
            now.subsec_nanos()
        );
        return Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("lambda-runtime-aws-request-id", &invocation.id)
            .header("lambda-runtime-deadline-ms", deadline.to_string())
            .header("lambda-runtime-invoked-function-arn", arn)
            .header("lambda-runtime-trace-id", trace)
            .body(Full::new(invocation.body))
            .expect("a valid response");
    }
    if method != Method::POST {
        return empty(StatusCode::METHOD_NOT_ALLOWED);
    }
    let body = match request.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return empty(StatusCode::BAD_REQUEST),
    };
    let at = Instant::now();
    let signal = if path == "/init/error" {
        Signal::InitError { body }
    } else if let Some(rest) = path.strip_prefix("/invocation/") {
        match rest.rsplit_once('/') {
            Some((id, "response")) => Signal::Reply {
                id: id.to_string(),
                at,
                ok: true,
                body,
            },
            Some((id, "error")) => Signal::Reply {
                id: id.to_string(),
                at,
                ok: false,
                body,
            },
            _ => return empty(StatusCode::NOT_FOUND),
        }
    } else {
        return empty(StatusCode::NOT_FOUND);
    };
    let _ = tx.send(signal);
    empty(StatusCode::ACCEPTED)
}

/// A stand-in HTTP endpoint answering every POST to `path` with `status` and
/// `body`, and anything else with 404: PagerDuty's Events API for the relay.
/// Returns its port; it serves until the bench exits.
pub async fn stub(path: &'static str, status: u16, body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind stub");
    let port = listener.local_addr().expect("stub address").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| async move {
                    let hit = request.method() == Method::POST && request.uri().path() == path;
                    let _ = request.into_body().collect().await;
                    let response = if hit {
                        Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(body.as_bytes())))
                            .expect("a valid response")
                    } else {
                        empty(StatusCode::NOT_FOUND)
                    };
                    Ok::<_, Infallible>(response)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}
