//! Drives one function's measurements: cold starts (each a new process) and
//! then, in one warm process, every case of its world, each repeated with
//! fresh work, timed, its AWS calls counted once at the emulator.

use crate::runtime::{Function, Reply, Spec};
use autopilot_tests::{bridge, emulator, REGION};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How many times to repeat.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Cold starts per function.
    pub cold_runs: usize,
    /// Timed invocations per event (after one untimed warm-up).
    pub warm_runs: usize,
}

/// One invocation a case makes in an iteration, timed and counted.
pub struct Step {
    /// The sample it is (`events/…`), or what it is when there is none.
    pub label: String,
    pub event: Value,
}

impl Step {
    pub fn timed(label: impl Into<String>, event: Value) -> Self {
        Self {
            label: label.into(),
            event,
        }
    }
}

/// An event (or a sequence of them) a world can deliver again and again.
pub struct Case {
    /// Names the case to its world; usually the sample's path.
    pub name: &'static str,
    /// Also time each timed step delivered a second time, right after the first:
    /// the redelivery an idempotent handler answers without doing the work again.
    pub redelivery: bool,
    /// How each iteration gets real work, for the report ("" when the sample is
    /// delivered as it is).
    pub fresh: &'static str,
}

impl Case {
    pub fn as_is(name: &'static str) -> Self {
        Self {
            name,
            redelivery: false,
            fresh: "",
        }
    }

    pub fn fresh(name: &'static str, how: &'static str) -> Self {
        Self {
            name,
            redelivery: true,
            fresh: how,
        }
    }
}

/// A function's world: the state its events need, and the events.
#[allow(async_fn_in_trait)]
pub trait World {
    /// `deploy`, `rotate`, …: the package and binary name.
    fn name(&self) -> &'static str;
    /// The function's own configuration (`AUTOPILOT_*`, and anything else its
    /// main reads besides the AWS and Lambda variables every function gets).
    fn env(&self) -> Vec<(String, String)>;
    fn cases(&self) -> Vec<Case>;
    /// The case whose first step is each cold start's first event.
    fn cold_case(&self) -> &'static str;
    /// The steps of one iteration of `case`; `serial` is unique per call, for fresh ids.
    async fn prepare(&mut self, case: &str, serial: usize) -> Vec<Step>;
    /// Puts the world back after an iteration (outside every timing).
    async fn after(&mut self, _case: &str) {}
}

/// What one event measured.
#[derive(Debug, Clone)]
pub struct Timing {
    pub label: String,
    pub fresh_how: &'static str,
    /// Milliseconds, one per timed iteration.
    pub fresh: Vec<f64>,
    pub redelivery: Vec<f64>,
    /// The outcome of the counted iteration (the report's actions, or the error type).
    pub outcome: String,
    pub redelivery_outcome: String,
    /// Timed iterations whose outcome differed from the counted one, and the first such outcome.
    pub varied: usize,
    pub varied_to: String,
    /// The AWS operations the counted invocation made, in order.
    pub calls: Vec<String>,
    pub redelivery_calls: Vec<String>,
}

/// Everything measured for one function.
#[derive(Debug, Clone)]
pub struct FunctionRun {
    pub name: &'static str,
    /// The cold starts' first event.
    pub cold_event: String,
    pub cold_outcome: String,
    /// Spawn → first `/next`, ms.
    pub init: Vec<f64>,
    /// Spawn → first response, ms.
    pub first_response: Vec<f64>,
    /// VmHWM of each cold-start process (after its first events), KiB.
    pub cold_rss: Vec<u64>,
    /// VmHWM of the warm process after every event, KiB.
    pub warm_rss: u64,
    pub timings: Vec<Timing>,
    /// Invocations the warm process handled (setup and warm-ups included).
    pub invocations: usize,
    pub wall: Duration,
}

impl FunctionRun {
    /// The largest peak RSS of any of its processes, KiB.
    pub fn peak_rss(&self) -> u64 {
        self.cold_rss
            .iter()
            .copied()
            .chain([self.warm_rss])
            .max()
            .unwrap_or_default()
    }
}

/// The memory size every function has in template.yaml (`Globals`).
const MEMORY_MB: &str = "256";

/// The environment every function gets, as Lambda sets it, plus the emulator.
pub fn lambda_env(name: &str) -> Vec<(String, String)> {
    let function = format!("autopilot-{name}");
    [
        ("AWS_ENDPOINT_URL", emulator().endpoint()),
        ("AWS_REGION", REGION.to_string()),
        ("AWS_DEFAULT_REGION", REGION.to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", function.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", MEMORY_MB.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function}"),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/24/[$LATEST]0123456789abcdef0123456789abcdef".to_string(),
        ),
        ("TZ", ":UTC".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Every AWS call the emulator has seen, in order.
fn calls() -> Vec<String> {
    let out = tokio::task::block_in_place(|| bridge("/_bridge/calls", json!({"match": ""})));
    out["calls"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Invokes `event` and returns its reply and the calls it made (counted when `count`).
async fn invoke_counted(f: &mut Function, event: &Value, count: bool) -> (Reply, Vec<String>) {
    let before = count.then(|| calls().len());
    let reply = f.invoke(event).await;
    let made = match before {
        Some(n) => calls().get(n..).map(<[String]>::to_vec).unwrap_or_default(),
        None => Vec::new(),
    };
    (reply, made)
}

/// Measures `world`'s function with `binary`; logs go to `log`.
pub async fn run<W: World>(
    world: &mut W,
    binary: PathBuf,
    log: PathBuf,
    settings: Settings,
) -> FunctionRun {
    let started = Instant::now();
    let name = world.name();
    let mut env = lambda_env(name);
    env.extend(world.env());
    let spec = Spec {
        name,
        binary,
        env,
        log,
    };
    let mut serial = 0usize;
    let mut next_serial = || {
        serial += 1;
        serial
    };

    // Cold starts: a new process each, its first event straight away.
    let cold_case = world.cold_case();
    let mut run = FunctionRun {
        name,
        cold_event: String::new(),
        cold_outcome: String::new(),
        init: Vec::new(),
        first_response: Vec::new(),
        cold_rss: Vec::new(),
        warm_rss: 0,
        timings: Vec::new(),
        invocations: 0,
        wall: Duration::ZERO,
    };
    for _ in 0..settings.cold_runs {
        let steps = world.prepare(cold_case, next_serial()).await;
        assert!(!steps.is_empty(), "{name}: the cold case has no step");
        let mut f = Function::spawn(&spec).await;
        let ready = f.ready().await;
        run.init
            .push(ms(ready.saturating_duration_since(f.spawned)));
        for (i, step) in steps.iter().enumerate() {
            let reply = f.invoke(&step.event).await;
            if i == 0 {
                run.first_response
                    .push(ms(reply.at.saturating_duration_since(f.spawned)));
                run.cold_event = step.label.clone();
                run.cold_outcome = reply.summary();
            }
        }
        world.after(cold_case).await;
        run.cold_rss.push(f.stop().await);
    }
    println!(
        "  {name}: {} cold starts, init median {:.2} ms",
        run.init.len(),
        crate::report::median(&run.init)
    );

    // Warm: one process for every case.
    let mut f = Function::spawn(&spec).await;
    f.ready().await;
    for case in world.cases() {
        let case_started = Instant::now();
        // Iteration 0 warms the path up and is not timed; 1 is also counted.
        for iteration in 0..=settings.warm_runs {
            let steps = world.prepare(case.name, next_serial()).await;
            for step in &steps {
                let count = iteration == 1;
                let (reply, made) = invoke_counted(&mut f, &step.event, count).await;
                run.invocations += 1;
                let again = if case.redelivery {
                    run.invocations += 1;
                    Some(invoke_counted(&mut f, &step.event, count).await)
                } else {
                    None
                };
                if iteration == 0 {
                    continue;
                }
                let t = match run.timings.iter_mut().position(|t| t.label == step.label) {
                    Some(i) => &mut run.timings[i],
                    None => {
                        run.timings.push(Timing {
                            label: step.label.clone(),
                            fresh_how: case.fresh,
                            fresh: Vec::new(),
                            redelivery: Vec::new(),
                            outcome: String::new(),
                            redelivery_outcome: String::new(),
                            varied: 0,
                            varied_to: String::new(),
                            calls: Vec::new(),
                            redelivery_calls: Vec::new(),
                        });
                        run.timings.last_mut().expect("just pushed")
                    }
                };
                t.fresh.push(ms(reply.elapsed));
                if count {
                    t.outcome = reply.summary();
                    t.calls = made;
                    println!(
                        "  {name}: {:<58} {:<26} {}",
                        step.label,
                        t.outcome,
                        reply.reason().chars().take(110).collect::<String>()
                    );
                } else if reply.summary() != t.outcome {
                    if t.varied == 0 {
                        t.varied_to = reply.summary();
                        println!(
                            "  {name}: {} iteration {iteration}: {} ({})",
                            step.label,
                            t.varied_to,
                            reply.reason().chars().take(160).collect::<String>()
                        );
                    }
                    t.varied += 1;
                }
                if let Some((again, made)) = again {
                    t.redelivery.push(ms(again.elapsed));
                    if count {
                        t.redelivery_outcome = again.summary();
                        t.redelivery_calls = made;
                    }
                }
            }
            world.after(case.name).await;
        }
        println!(
            "  {name}: {} done in {:.1} s",
            case.name,
            case_started.elapsed().as_secs_f64()
        );
    }
    run.warm_rss = f.stop().await;
    run.wall = started.elapsed();
    run
}
