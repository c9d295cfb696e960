//! The scaling curves of issue #9, measured in-process against the emulator, each
//! function driven through its library as the integration tests drive it:
//!
//! 1. deploy: one push mapped to 1, 5, 20 and 50 services, at the emulator's own
//!    speed and with an injected per-call latency;
//! 2. remediate: a burst of alarm events across many services, at bounded concurrency;
//! 3. snapshot: the hourly check's retention over 10, 100 and 1,000 snapshots.
//!
//! Every measurement has a [`Stack`] of its own (fresh names). AWS calls are
//! counted from the emulator's call log, which records only the calls autopilot's
//! functions make (their SDK app name, `app/autopilot-*`), by function, service
//! and operation: the harness's own set-up calls (creating services, flipping
//! alarms, making snapshots) are never counted, even between deliveries.

use crate::report::{spread, Section, Target};
use autopilot_shared::backup::{self, tag};
use autopilot_shared::config::lookup_from;
use autopilot_shared::invocation::{Outcome, Report};
use autopilot_tests::alarms::{sample, AlarmSpec};
use autopilot_tests::snapshots::{self as rds, Db, QUOTA_DR, QUOTA_SOURCE};
use autopilot_tests::{call_log_dir, emulator, push_event_at, template, Stack, REGION};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Latency injected on every AWS call of a push: a typical in-region ECS/ECR/SNS
/// round trip, and one large against the emulator's own serialised work per call
/// (so the wall time shows the code's round trips, as on AWS, which serves
/// concurrent calls in parallel).
const INJECTED: [f64; 2] = [0.05, 0.25];
/// The target: a push to 20 services within this many times the wall time of one.
const FAN_OUT_LIMIT: f64 = 2.5;
/// Invocations of remediate running at once during the burst.
const BURST_CONCURRENCY: usize = 10;
/// Lambda's asynchronous retries of a failed invocation (template.yaml's
/// EventInvokeConfig MaximumRetryAttempts for remediate).
const LAMBDA_RETRIES: usize = 2;
/// RDS pages DescribeDBSnapshots at most this many to a page (snapshot asks for it).
const PAGE: usize = 100;

/// The scaling section; `--quick` on the command line (as `main` reads it)
/// cuts the sizes for a smoke run.
pub async fn run() -> Section {
    measure(std::env::args().any(|a| a == "--quick")).await
}

async fn measure(quick: bool) -> Section {
    let started = Instant::now();
    let log = CallLog::open();
    let load_before = load();
    let mut markdown = String::from("## Scaling\n\n");
    let _ = writeln!(
        markdown,
        "Measured in-process against the emulator (moto with the harness's bridges), each \
         function driven through its library as the integration tests drive it, every \
         measurement on a stack of its own. AWS calls are counted from the emulator's call \
         log, which records only the calls autopilot's functions make (by their SDK app \
         name), so the harness's set-up calls are never counted.{}\n",
        if quick {
            " **Quick run: reduced sizes, one repetition.**"
        } else {
            ""
        }
    );
    let mut targets = Vec::new();

    let (md, target) = fan_out(&log, quick).await;
    markdown.push_str(&md);
    targets.push(target);
    markdown.push_str(&burst(&log, quick).await);
    markdown.push_str(&retention(&log, quick).await);

    let _ = writeln!(
        markdown,
        "The scaling measurements took {} in all ({load_before} at the start, {} at the \
         end: the emulator shares the machine, so other work on it slows every figure here).\n",
        duration(started.elapsed().as_secs_f64()),
        load()
    );
    Section { markdown, targets }
}

// ---------------------------------------------------------------------------
// Call counting
// ---------------------------------------------------------------------------

/// The emulator's call log (one JSON line per call an autopilot function made),
/// and the CPU time of this process and of the emulator's.
struct CallLog {
    path: PathBuf,
    emulator_pid: Option<String>,
}

/// Calls by `service:Operation` (IAM's spelling), sorted.
type Calls = BTreeMap<String, usize>;

impl CallLog {
    /// The log of this process's emulator, named as `emulator()` names it.
    fn open() -> Self {
        emulator();
        let stem = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().to_string()))
            .unwrap_or_default();
        Self {
            path: call_log_dir().join(format!("{stem}-{}.jsonl", std::process::id())),
            emulator_pid: emulator_pid(),
        }
    }

    /// CPU seconds used so far by this process (the functions and the harness,
    /// in Rust) and by the emulator (moto, in Python), where /proc tells.
    fn cpu(&self) -> (Option<f64>, Option<f64>) {
        (
            cpu_seconds("self"),
            self.emulator_pid.as_deref().and_then(cpu_seconds),
        )
    }

    /// Where the log ends now.
    fn mark(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// The calls `function` made since `mark`.
    fn since(&self, mark: u64, function: &str) -> Calls {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.path) {
            file.seek(SeekFrom::Start(mark)).expect("seek the call log");
            file.read_to_string(&mut text).expect("read the call log");
        }
        let mut calls = Calls::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let call: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("call log line {line:?}: {e}"));
            if call["function"] != function {
                continue;
            }
            // The SigV4 signing name; CloudWatch signs as `monitoring`.
            let service = match call["service"].as_str().unwrap_or_default() {
                "monitoring" => "cloudwatch",
                s => s,
            };
            let op = call["operation"].as_str().unwrap_or_default();
            *calls.entry(format!("{service}:{op}")).or_default() += 1;
        }
        calls
    }
}

/// The emulator's process: this process's child running moto_bridge.py (Linux /proc).
fn emulator_pid() -> Option<String> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        .find(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let parent = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1));
            parent == Some(me.as_str())
                && std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("moto_bridge.py"))
        })
}

/// User plus system CPU seconds of process `pid` (`self` for this one), from
/// /proc/<pid>/stat in clock ticks of 1/100 s (Linux's USER_HZ).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The 1-minute load average and the number of CPUs, for the reader to judge noise.
fn load() -> String {
    let avg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("load average {avg} on {cpus} CPUs")
}

fn total(calls: &Calls) -> usize {
    calls.values().sum()
}

/// `ecs:DescribeServices 2, ecs:UpdateService 20, …`
fn by_operation(calls: &Calls) -> String {
    calls
        .iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn invoke_event(payload: Value) -> LambdaEvent<Value> {
    LambdaEvent::new(payload, Context::default())
}

/// `420 ms`, `3.20 s`, `42.0 s`.
fn duration(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.0} ms", seconds * 1000.0)
    } else if seconds < 10.0 {
        format!("{seconds:.2} s")
    } else {
        format!("{seconds:.1} s")
    }
}

/// The median with its range when there are several values: `420 ms (410–450 ms)`.
fn timing(values: &[f64]) -> String {
    let mut v = values.to_vec();
    let (median, min, max) = spread(&mut v);
    if v.len() == 1 {
        duration(median)
    } else {
        format!(
            "{} ({}–{})",
            duration(median),
            duration(min).trim_end_matches(" ms"),
            duration(max)
        )
    }
}

fn median(values: &[f64]) -> f64 {
    spread(&mut values.to_vec()).0
}

/// A small deterministic shuffle (xorshift), so runs are repeatable.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

// ---------------------------------------------------------------------------
// 1. deploy: one push fanned out to many services
// ---------------------------------------------------------------------------

struct FanRun {
    /// Wall time of each push, seconds.
    walls: Vec<f64>,
    /// Emulator CPU seconds during each push.
    emulator_cpu: Vec<f64>,
    /// The calls of one push (the first).
    calls: Calls,
    /// Whether every push made the same calls.
    same_calls: bool,
    /// Outcome actions over all pushes (`deploy` 60).
    actions: BTreeMap<String, usize>,
    /// The most UpdateService calls in flight at once (when slowed).
    in_flight: Option<u64>,
    concurrency: usize,
}

/// A cluster of `n` services, each on a task definition family of its own running
/// `app:v1.0.0`, all mapped to repository `app`; then `pushes` pushes of new tags,
/// each timed around `Deployer::handle`. With `slow`, those operations of this
/// stack's calls are delayed by that many seconds from the first push on.
async fn fan_out_run(
    log: &CallLog,
    n: usize,
    pushes: usize,
    slow: Option<(&[String], f64)>,
) -> FanRun {
    let mode = slow.map_or("fast".to_string(), |(_, l)| format!("{:.0}ms", l * 1000.0));
    let s = Stack::new(&format!("scale-fan-{n}-{mode}")).await;
    let repo = s.repository("app").await;
    let first = s.push(&repo, "v1.0.0").await;
    let base = chrono::Utc::now().timestamp() as f64 - 86_400.0;
    s.set_pushed_at(&repo, &first, base);
    let cluster = s.cluster("prod").await;
    let mut mapping = Vec::new();
    for i in 0..n {
        let name = format!("svc{i:02}");
        let td = s
            .task_definition(&s.name(&name), "app", &s.image(&repo, "v1.0.0"))
            .await;
        s.service(&cluster, &name, td.task_definition_arn().unwrap())
            .await;
        mapping.push(
            json!({"repository": repo, "cluster": cluster, "service": name, "container": "app"}),
        );
    }
    // The default concurrency (AUTOPILOT_DEPLOY_CONCURRENCY unset).
    let config = s.deploy_config_with(&[(deploy::config::SERVICES, json!(mapping).to_string())]);
    let concurrency = config.concurrency;
    let deployer = deploy::Deployer::new(&s.sdk, config);
    if let Some((ops, seconds)) = slow {
        for op in ops {
            s.slow(op, seconds);
        }
    }
    let mut run = FanRun {
        walls: Vec::new(),
        emulator_cpu: Vec::new(),
        calls: Calls::new(),
        same_calls: true,
        actions: BTreeMap::new(),
        in_flight: None,
        concurrency,
    };
    for p in 0..pushes {
        let tag = format!("v1.1.{p}");
        let digest = s.push(&repo, &tag).await;
        let at = base + 600.0 * (p as f64 + 1.0);
        s.set_pushed_at(&repo, &digest, at);
        let time = chrono::DateTime::from_timestamp(at as i64 + 1, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let event = push_event_at(
            &repo,
            &tag,
            &digest,
            &format!("{}-push-{p}", s.prefix),
            &time,
        );
        let mark = log.mark();
        let (_, cpu0) = log.cpu();
        let t0 = Instant::now();
        let report = deployer
            .handle(invoke_event(event))
            .await
            .unwrap_or_else(|e| panic!("push to {n} services: {e:?}"));
        run.walls.push(t0.elapsed().as_secs_f64());
        if let (Some(a), (_, Some(b))) = (cpu0, log.cpu()) {
            run.emulator_cpu.push(b - a);
        }
        let calls = log.since(mark, deploy::FUNCTION);
        for o in &report.outcomes {
            *run.actions.entry(o.action.clone()).or_default() += 1;
        }
        if p == 0 {
            run.calls = calls;
        } else if calls != run.calls {
            run.same_calls = false;
        }
    }
    if slow.is_some_and(|(ops, _)| ops.iter().any(|o| o == "UpdateService")) {
        run.in_flight = Some(s.max_in_flight("UpdateService"));
    }
    run
}

/// How an operation's count grows with the number of services.
enum Growth {
    PerPush,
    PerService(usize),
    PerBatch,
    Other,
}

/// How an operation's counts `(n, count)` grow with the number of services `n`.
fn growth(counts: &[(usize, usize)], batch: usize) -> (String, Growth) {
    let per = |f: &dyn Fn(usize) -> usize| -> Option<usize> {
        let (n0, c0) = counts[0];
        let unit = f(n0);
        if unit == 0 || c0 % unit != 0 {
            return None;
        }
        let k = c0 / unit;
        counts.iter().all(|&(n, c)| c == k * f(n)).then_some(k)
    };
    if counts.iter().all(|&(_, c)| c == counts[0].1) {
        (format!("{} per push", counts[0].1), Growth::PerPush)
    } else if let Some(k) = per(&|n| n) {
        (format!("{k} per service"), Growth::PerService(k))
    } else if let Some(k) = per(&|n| n.div_ceil(batch)) {
        (format!("{k} per {batch} services"), Growth::PerBatch)
    } else {
        let text = counts
            .iter()
            .map(|(n, c)| format!("{c} at {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        (text, Growth::Other)
    }
}

fn ms(seconds: f64) -> String {
    format!("{:.0} ms", seconds * 1000.0)
}

async fn fan_out(log: &CallLog, quick: bool) -> (String, Target) {
    let sizes: &[usize] = if quick { &[1, 5, 20] } else { &[1, 5, 20, 50] };
    let pushes = if quick { 1 } else { 3 };
    let [low, high] = INJECTED;
    // Per size: the run at emulator speed, then one per injected latency.
    let mut rows: Vec<(usize, FanRun, Vec<FanRun>)> = Vec::new();
    let mut slowed_all = BTreeSet::new();
    for &n in sizes {
        eprintln!(
            "scaling: deploy, one push to {n} service(s), emulator speed ({pushes} push(es))"
        );
        let fast = fan_out_run(log, n, pushes, None).await;
        // Slow exactly the operations a push makes (whatever the deploy code calls now).
        let ops: Vec<String> = fast
            .calls
            .keys()
            .map(|k| {
                k.split_once(':')
                    .map_or(k.as_str(), |(_, op)| op)
                    .to_string()
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        slowed_all.extend(fast.calls.keys().cloned());
        let mut slowed = Vec::new();
        for latency in INJECTED {
            eprintln!(
                "scaling: deploy, one push to {n} service(s), {} injected per call",
                ms(latency)
            );
            slowed.push(fan_out_run(log, n, pushes, Some((&ops, latency))).await);
        }
        rows.push((n, fast, slowed));
    }
    let concurrency = rows[0].1.concurrency;
    let wall = |runs: &[FanRun], level: usize| median(&runs[level].walls);
    let one = |level: usize| wall(&rows[0].2, level);
    // How each operation's count grows with n, and from that the critical path in
    // round trips: a service's calls run one after another, at most `concurrency`
    // services at once; calls made once a push (or once per batch of 10 services,
    // the batches running at once) are one round trip each.
    let ops: BTreeSet<&String> = rows.iter().flat_map(|(_, f, _)| f.calls.keys()).collect();
    let mut shape = Vec::new();
    let (mut per_push, mut per_service) = (0, 0);
    for op in &ops {
        let counts: Vec<(usize, usize)> = rows
            .iter()
            .map(|(n, f, _)| (*n, f.calls.get(*op).copied().unwrap_or(0)))
            .collect();
        let (text, growth) = growth(&counts, 10);
        match growth {
            Growth::PerService(k) => per_service += k,
            Growth::PerPush | Growth::PerBatch => per_push += 1,
            Growth::Other => {}
        }
        shape.push(format!("{op} {text}"));
    }
    let trips = |n: usize| per_push + per_service * n.div_ceil(concurrency);

    let mut md = String::from("### One push fanned out to many services (deploy)\n\n");
    let _ = writeln!(
        md,
        "One ECR push event mapped to *n* services in one cluster (each service on a \
         production-shaped Fargate task definition family of its own), handled by \
         `Deployer::handle` with the default concurrency (AUTOPILOT_DEPLOY_CONCURRENCY unset: \
         {concurrency}). {} per size and setting, each on a fresh stack, a new tag each time; \
         times are the median (min–max). \"Injected\" adds {} or {} (the bridge's \
         `/_bridge/slow`, a sleep before moto answers) to every call the push makes: {}.\n",
        if pushes == 1 {
            "One push".to_string()
        } else {
            format!("{pushes} pushes")
        },
        ms(low),
        ms(high),
        slowed_all.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(
        md,
        "| Services | Wall, emulator speed | Wall, {lo} injected | Wall, {hi} injected | × one, {lo} | × one, {hi} | Critical path, round trips (× one) | Emulator CPU per push, {lo} | UpdateService in flight at most |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        lo = ms(low),
        hi = ms(high)
    );
    for (n, fast, slow) in &rows {
        let cpu = if slow[0].emulator_cpu.is_empty() {
            "–".to_string()
        } else {
            duration(median(&slow[0].emulator_cpu))
        };
        let _ = writeln!(
            md,
            "| {n} | {} | {} | {} | {:.2}× | {:.2}× | {} ({:.2}×) | {cpu} | {} |",
            timing(&fast.walls),
            timing(&slow[0].walls),
            timing(&slow[1].walls),
            wall(slow, 0) / one(0),
            wall(slow, 1) / one(1),
            trips(*n),
            trips(*n) as f64 / trips(1) as f64,
            slow[1].in_flight.map_or("–".into(), |m: u64| m.to_string()),
        );
    }
    md.push_str("\n| Services | AWS calls | Calls by operation |\n|---:|---:|---|\n");
    for (n, fast, slow) in &rows {
        let mut calls = by_operation(&fast.calls);
        if !fast.same_calls || slow.iter().any(|r| !r.same_calls || r.calls != fast.calls) {
            calls.push_str(" (the calls varied between pushes)");
        }
        let _ = writeln!(md, "| {n} | {} | {calls} |", total(&fast.calls));
    }
    let not_deployed: Vec<String> = rows
        .iter()
        .flat_map(|(n, f, s)| {
            std::iter::once(f)
                .chain(s.iter())
                .flat_map(|r| r.actions.iter())
                .filter(|(a, _)| a.as_str() != "deploy")
                .map(move |(a, c)| format!("{c} {a} at {n} services"))
        })
        .collect();
    if !not_deployed.is_empty() {
        let _ = writeln!(
            md,
            "\nNot every service deployed: {}.",
            not_deployed.join(", ")
        );
    }

    let twenty = rows
        .iter()
        .find(|(n, _, _)| *n == 20)
        .expect("20 services are always measured");
    let trip_ratio = trips(20) as f64 / trips(1) as f64;
    let (biggest, last) = (rows.len() - 1, rows.last().expect("a size"));
    let cpu_per_call = last
        .1
        .emulator_cpu
        .first()
        .map(|c| c / total(&last.1.calls) as f64);
    let _ = writeln!(
        md,
        "\n**Shape.** Calls grow linearly in services: {}. Only the per-service calls scale \
         with *n*: DescribeServices takes up to 10 services of a cluster a call, and the push's \
         image times are read once. At emulator speed the wall time grows about linearly too, \
         because the emulator does the calls' work one at a time (moto under Python's GIL{}), \
         which hides the fan-out's concurrency. With latency injected the calls overlap as on \
         AWS: `observe::push` reads and `Apply::push` deploys at most {concurrency} services at \
         once (`buffered`), each service's calls one after another, so the critical path is \
         {per_push} round trips for what is read once a push plus {per_service} per wave of \
         {concurrency} services: {} round trips for one service, {} for 20 ({trip_ratio:.2}×){}. \
         At {} a call a wave of {concurrency} concurrent calls still queues for the \
         emulator's serialised work (about {concurrency} × its CPU a call; see the emulator \
         CPU column), which AWS, serving calls in parallel, does not do; at {} the latency \
         dominates that queue, as AWS's does, and the wall-time ratio comes close to the round \
         trips'. That is why the {} figure is the meaningful one; both are shown.\n",
        shape.join("; "),
        cpu_per_call.map_or(String::new(), |c| format!(
            ": {} of CPU a call here, not the millisecond one might expect",
            ms(c)
        )),
        trips(1),
        trips(20),
        match rows[biggest].0 {
            20 => String::new(),
            n => format!(", {} for {n}", trips(n)),
        },
        ms(low),
        ms(high),
        ms(high),
    );

    let ratio = |level: usize| wall(&twenty.2, level) / one(level);
    let met = ratio(1) <= FAN_OUT_LIMIT;
    let mut target = Target::new(
        format!(
            "deploy: push to 20 services vs one ({} per call injected)",
            ms(high)
        ),
        format!(
            "{:.2}× ({} vs {}; {:.2}× at {}, emulator-bound)",
            ratio(1),
            duration(wall(&twenty.2, 1)),
            duration(one(1)),
            ratio(0),
            ms(low)
        ),
        format!("<= {FAN_OUT_LIMIT}×"),
        met,
    );
    if !met {
        target = target.note(format!(
            "20 services take {} waves of {concurrency}; raising AUTOPILOT_DEPLOY_CONCURRENCY to 20 \
             would make it one wave (round-trip ratio {trip_ratio:.2})",
            20usize.div_ceil(concurrency)
        ));
    }
    let _ = writeln!(
        md,
        "Target **20 services within {FAN_OUT_LIMIT}× the wall time of one**, with {} injected: \
         {:.2}× — **{}** ({:.2}× with {} injected, where the emulator's serialised work \
         dominates; {trip_ratio:.2}× in round trips on the critical path).\n",
        ms(high),
        ratio(1),
        if met { "met" } else { "missed" },
        ratio(0),
        ms(low),
    );
    (md, target)
}

// ---------------------------------------------------------------------------
// 2. remediate: a burst of alarm events
// ---------------------------------------------------------------------------

/// One delivery's result: the event's index, the report or the failure code, seconds.
type Delivered = (usize, Result<Report, String>, f64);

/// Delivers `events` through `workers` concurrent invocations of `r`, as Lambda
/// runs one event per execution environment; returns each event's result.
async fn deliver(
    r: &Arc<remediate::Remediator>,
    events: Vec<(usize, Value)>,
    workers: usize,
) -> Vec<Delivered> {
    let queue = Arc::new(Mutex::new(VecDeque::from(events)));
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (queue, results, r) = (queue.clone(), results.clone(), r.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().unwrap().pop_front();
                let Some((i, event)) = next else { break };
                let t0 = Instant::now();
                let result = r
                    .handle(invoke_event(event))
                    .await
                    .map_err(|e| e.code.to_string());
                let took = t0.elapsed().as_secs_f64();
                results.lock().unwrap().push((i, result, took));
            }
        }));
    }
    for h in handles {
        h.await.expect("a delivery worker panicked");
    }
    Arc::try_unwrap(results)
        .map(|m| m.into_inner().unwrap())
        .unwrap_or_default()
}

/// The ECS CPU sample of `state` (events/remediate/ecs-cpu-{high,ok}.eventbridge.json)
/// for alarm `name` on `cluster/service`, as EventBridge delivers it; `id` is
/// the event's id, which a redelivery repeats.
fn cpu_event(
    name: &str,
    arn: &str,
    state: &str,
    time: &str,
    dims: (&str, &str),
    id: &str,
) -> Value {
    let mut e = sample(if state == "OK" {
        "ecs-cpu-ok.eventbridge.json"
    } else {
        "ecs-cpu-high.eventbridge.json"
    });
    e["id"] = json!(id);
    e["region"] = json!(REGION);
    e["time"] = json!(format!("{}Z", &time[..19]));
    e["resources"] = json!([arn]);
    let d = &mut e["detail"];
    d["alarmName"] = json!(name);
    d["state"]["value"] = json!(state);
    d["state"]["timestamp"] = json!(time);
    d["previousState"]["value"] = json!(if state == "OK" { "ALARM" } else { "OK" });
    let dimensions = &mut d["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"];
    dimensions["ClusterName"] = json!(dims.0);
    dimensions["ServiceName"] = json!(dims.1);
    e
}

/// What an invocation did, as a row of the actions table: (runbook, decision).
fn decision(result: &Result<Report, String>) -> (String, String) {
    let o: &Outcome = match result {
        Err(code) => return ("–".into(), format!("failed ({code})")),
        Ok(report) => match report.outcomes.first() {
            Some(o) => o,
            None => return ("–".into(), "nothing".into()),
        },
    };
    let runbook = o.detail("runbook").unwrap_or("–").to_string();
    let r = o.reason.as_str();
    let has = |s: &str| r.contains(s);
    let what = match o.action.as_str() {
        "act" => match (o.detail("before"), o.detail("after")) {
            (Some(b), Some(a)) => format!("acted: {b} → {a}"),
            _ => "acted".into(),
        },
        "refuse" if has("cooldown") => "refused by guardrail: cooldown".into(),
        "refuse" if has("flapping") => "refused by guardrail: flapping".into(),
        "refuse" if has("rate limit") => "refused by guardrail: rate limit".into(),
        "refuse" if has("at maximum") => "refused: at maximum".into(),
        "refuse" if has("in progress") => "refused: deployment in progress".into(),
        "ignore" if has("duplicate") => "skipped: duplicate (already handled)".into(),
        "repage" => "re-paged: a duplicate raced the original, whose action was done".into(),
        "ignore" if has("stale") => "skipped: stale (alarm has moved on)".into(),
        "resolve" if o.detail("after").is_some() => "resolved and scaled in".into(),
        "resolve" if has("cooldown") => "resolved; scale-in waits for the cooldown".into(),
        "resolve" if has("flapping") => "resolved; scale-in waits: flapping".into(),
        "resolve" if has("waits") => "resolved; scale-in waits".into(),
        "resolve" => "resolved".into(),
        other => format!("{other}: {}", r.chars().take(60).collect::<String>()),
    };
    (runbook, what)
}

async fn burst(log: &CallLog, quick: bool) -> String {
    // Per alarm: `transitions` state changes ALARM, OK, ALARM, … and one redelivery
    // for every `dup_every` of them: alarms × (transitions + transitions / dup_every) events.
    let (alarms, transitions, dup_every) = if quick { (10, 8, 4) } else { (50, 16, 4) };
    let planned = alarms * (transitions + transitions / dup_every);
    eprintln!(
        "scaling: remediate, a burst of {planned} alarm events across {alarms} services (set-up)"
    );
    let s = Stack::new("scale-burst").await;
    let table = s.guard_table().await;
    let cluster = s.cluster("prod").await;
    let td = s.task_definition(&s.name("web"), "app", "nginx:1.27").await;
    let revision = td.task_definition_arn().unwrap().to_string();
    let mut names = Vec::new();
    let mut bounds = Vec::new();
    for i in 0..alarms {
        let service = s.name(&format!("web{i:02}"));
        s.service(&cluster, &service, &revision).await;
        s.settle_service(&cluster, &service).await;
        let base = format!("web{i:02}-cpu-high");
        let alarm = s.alarm(AlarmSpec::ecs_cpu(&base, &cluster, &service)).await;
        names.push((alarm, service.clone()));
        bounds
            .push(json!({"cluster": cluster, "service": service, "min": 2, "max": 10, "step": 2}));
    }
    let config = s.remediate_config(
        &table,
        &[(remediate::config::SERVICES, json!(bounds).to_string())],
    );
    let guard = config.guard;
    let r = Arc::new(remediate::Remediator::new(&s.sdk, config));

    let mark = log.mark();
    let (mut rust_cpu, mut emulator_cpu) = (0.0, 0.0);
    let mut delivering = 0.0;
    let mut latencies = Vec::new();
    let (mut events, mut invocations, mut failed) = (0, 0, 0);
    // (state, runbook, what the invocation did) -> events; failures Lambda retried, by code.
    let mut tally: BTreeMap<(&'static str, String, String), usize> = BTreeMap::new();
    let mut retried: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..transitions {
        let state = if round % 2 == 0 { "ALARM" } else { "OK" };
        // CloudWatch changes every alarm's state, then EventBridge delivers the
        // transitions (and some again), in no particular order.
        let mut batch = Vec::new();
        for (a, (name, service)) in names.iter().enumerate() {
            s.set_alarm(name, state).await;
            let (arn, time) = s.alarm_now(name).await;
            let id = format!("{}-{a}-{round}", s.prefix);
            let event = cpu_event(name, &arn, state, &time, (&cluster, service), &id);
            if (a + round) % dup_every == 0 {
                batch.push(event.clone());
            }
            batch.push(event);
        }
        shuffle(&mut batch, round as u64 + 1);
        let all: Vec<(usize, Value)> = batch.into_iter().enumerate().collect();
        events += all.len();
        let mut pending = all.clone();
        for attempt in 0..=LAMBDA_RETRIES {
            let (t0, cpu0) = (Instant::now(), log.cpu());
            let results = deliver(&r, pending, BURST_CONCURRENCY).await;
            delivering += t0.elapsed().as_secs_f64();
            let cpu1 = log.cpu();
            rust_cpu += cpu1.0.zip(cpu0.0).map_or(0.0, |(b, a)| b - a);
            emulator_cpu += cpu1.1.zip(cpu0.1).map_or(0.0, |(b, a)| b - a);
            invocations += results.len();
            let mut again = Vec::new();
            for (i, result, took) in results {
                latencies.push(took);
                match &result {
                    // Lambda retries a failed asynchronous invocation (after a minute or
                    // more, by which time the invocation it collided with is done).
                    Err(code) if attempt < LAMBDA_RETRIES => {
                        *retried.entry(code.clone()).or_default() += 1;
                        again.push(all[i].clone());
                        continue;
                    }
                    Err(_) => failed += 1,
                    Ok(_) => {}
                }
                let (runbook, what) = decision(&result);
                *tally.entry((state, runbook, what)).or_default() += 1;
            }
            if again.is_empty() {
                break;
            }
            pending = again;
        }
        eprintln!(
            "scaling: remediate, round {}/{transitions} ({state}) delivered, {events} events so far",
            round + 1
        );
    }
    let calls = log.since(mark, remediate::FUNCTION);
    let rate = events as f64 / delivering;
    let mut lat = latencies.clone();
    lat.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize];

    let mut md = String::from("### A burst of alarm events (remediate)\n\n");
    let _ = writeln!(
        md,
        "{alarms} ECS services, each with a CPUUtilization > 80 alarm (`AlarmSpec::ecs_cpu`) \
         and bounds 2–10, step 2, under the default guardrails (cooldown {} s, at most {} \
         actions an hour, more than {} state changes an hour is flapping). Each alarm changes \
         state {transitions} times, ALARM, OK, ALARM, … (an incident that comes and goes), and \
         one in {dup_every} of its transitions is delivered twice, as EventBridge's \
         at-least-once delivery does: {events} events in all, built from \
         `events/remediate/ecs-cpu-{{high,ok}}.eventbridge.json`. The harness changes every \
         alarm's state in CloudWatch, then delivers that round's events in a shuffled order \
         through {BURST_CONCURRENCY} concurrent invocations (Lambda runs one event per \
         execution environment; {BURST_CONCURRENCY} environments at once); an invocation that \
         fails is delivered again after the round, as Lambda's asynchronous retries do (at most \
         {LAMBDA_RETRIES}). The time counts the deliveries only, not the harness's state changes.\n",
        guard.cooldown.as_secs(),
        guard.max_actions,
        guard.flap_limit,
    );
    md.push_str(
        "| Events | Services | Concurrency | Wall (deliveries) | Events/s | Invocation p50 / p95 | Invocations (Lambda retries) | AWS calls | Calls per event | CPU: emulator / functions |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let retries = if retried.is_empty() {
        "none".to_string()
    } else {
        retried
            .iter()
            .map(|(code, n)| format!("{n} {code}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        md,
        "| {events} | {alarms} | {BURST_CONCURRENCY} | {} | {rate:.0} | {} / {} | {invocations} ({retries}) | {} | {:.1} | {} / {} |\n",
        duration(delivering),
        duration(p(0.5)),
        duration(p(0.95)),
        total(&calls),
        total(&calls) as f64 / events as f64,
        duration(emulator_cpu),
        duration(rust_cpu),
    );
    md.push_str("| Operation | Calls | Per event |\n|---|---:|---:|\n");
    for (op, n) in &calls {
        let _ = writeln!(md, "| {op} | {n} | {:.2} |", *n as f64 / events as f64);
    }
    md.push_str("\n| State | Runbook | What the invocation did | Events |\n|---|---|---|---:|\n");
    for ((state, runbook, what), n) in &tally {
        let _ = writeln!(md, "| {state} | {runbook} | {what} | {n} |");
    }
    let failed_note = if failed > 0 {
        format!(" {failed} event(s) still failed after Lambda's retries.")
    } else {
        String::new()
    };
    let _ = writeln!(
        md,
        "\n**Shape.** The cost is per event and does not grow with the number of services: \
         each invocation reads one alarm, one service and its DynamoDB items by key (`GetItem`, \
         never a scan), so {:.1} calls an event on average whatever the fleet size; what varies \
         is the decision (an action costs the most: claim, act, settle, audit, page). Events per \
         second here are the emulator's: it spent {} of CPU in {} of deliveries, doing one call \
         at a time (moto under the GIL; the bridge also serialises DynamoDB so conditional \
         writes are atomic), so the {BURST_CONCURRENCY} invocations mostly queue for it. On AWS \
         an invocation makes its calls one after another, so it takes about calls × latency \
         (at 20 ms a call, {}), and the burst's throughput is about concurrency ÷ that \
         ({BURST_CONCURRENCY} environments: {:.0} events/s), growing with the concurrency \
         Lambda is allowed. A duplicate delivered while its original is still running either \
         fails as busy (Lambda's retry then finds it handled) or, if the original has finished \
         acting but not yet marked the transition handled, pages again (`repage`).{failed_note}\n",
        total(&calls) as f64 / events as f64,
        duration(emulator_cpu),
        duration(delivering),
        ms(total(&calls) as f64 / events as f64 * 0.02),
        BURST_CONCURRENCY as f64 / (total(&calls) as f64 / events as f64 * 0.02),
    );
    md
}

// ---------------------------------------------------------------------------
// 3. snapshot: retention over many snapshots
// ---------------------------------------------------------------------------

struct RetentionRun {
    size: usize,
    /// Left in the source Region after the check.
    kept: usize,
    deleted: usize,
    dr_copies: usize,
    wall: f64,
    calls: Calls,
    others: BTreeMap<String, usize>,
}

fn ours(db: &str) -> Vec<(&'static str, &str)> {
    vec![
        (tag::CREATED_BY, backup::BY_SNAPSHOT),
        (tag::REASON, backup::reason::SCHEDULED),
        (tag::DB, db),
    ]
}

async fn create_snapshots(client: &aws_sdk_rds::Client, db: &str, ids: &[String]) {
    for (i, id) in ids.iter().enumerate() {
        client
            .create_db_snapshot()
            .db_instance_identifier(db)
            .db_snapshot_identifier(id)
            .set_tags(Some(
                ours(db).into_iter().map(|(k, v)| rds::tag(k, v)).collect(),
            ))
            .send()
            .await
            .unwrap_or_else(|e| panic!("snapshot {id}: {}", rds::error_code(&e)));
        if (i + 1) % 250 == 0 {
            eprintln!(
                "scaling: snapshot, {} of {} snapshots made",
                i + 1,
                ids.len()
            );
        }
    }
}

/// One database with `n` of autopilot's snapshots: the newest `kept` recent and
/// already copied to the DR region (the copies confirmed), the rest past retention.
///
/// In a Region pair of its own ([`QUOTA_SOURCE`] → [`QUOTA_DR`]), where no other
/// part of the benchmark keeps snapshots: moto holds at most 1,000 DB snapshots a
/// Region (MOTO_RDS_SNAPSHOT_LIMIT), so the 1,000 need the Region to themselves,
/// and each run deletes what it left before the next.
async fn retention_run(log: &CallLog, n: usize) -> RetentionRun {
    let s = Stack::new(&format!("scale-retain-{n}")).await;
    let db = s.name("orders");
    rds::create_instance(QUOTA_SOURCE, &db, false).await;
    let dr_key = rds::kms_key(QUOTA_DR);
    // The function's clients in the source Region, and an on-call topic there.
    let sdk = s
        .sdk
        .to_builder()
        .region(aws_sdk_rds::config::Region::new(QUOTA_SOURCE))
        .build();
    let topic = aws_sdk_sns::Client::new(&sdk)
        .create_topic()
        .name(s.name("oncall"))
        .send()
        .await
        .expect("create the source Region's topic")
        .topic_arn
        .expect("topic ARN");
    let databases = json!([{ "instance": db }]).to_string();
    let config = snapshot::config::Config::from_lookup(lookup_from(
        [
            (autopilot_shared::config::TOPIC_ARN, topic),
            (snapshot::config::AWS_REGION, QUOTA_SOURCE.to_string()),
            (snapshot::config::DATABASES, databases),
            (snapshot::config::DR_REGION, QUOTA_DR.to_string()),
            (snapshot::config::DR_KMS_KEY, dr_key),
            (snapshot::config::COPY_LIMIT, "20".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    ))
    .expect("snapshot configuration");
    let (days, keep) = (config.retention_days as i64, config.keep);
    let f = snapshot::Snapshotter::new(&sdk, config).expect("snapshot cold start");
    let check = || {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        template::scheduled_event("SnapshotFunction", "HourlyCheck", &now)
    };
    let client = rds::rds(QUOTA_SOURCE).await;
    let now = chrono::Utc::now().timestamp();
    let recent_count = keep.max(n / 10).min(n);

    // The recent ones, copied to the DR region and confirmed by the function's own checks.
    let recent: Vec<String> = (0..recent_count)
        .map(|i| format!("autopilot-{db}-recent-{i:04}"))
        .collect();
    create_snapshots(&client, &db, &recent).await;
    for (i, id) in recent.iter().enumerate() {
        rds::set_snapshot_time(QUOTA_SOURCE, id, false, now - 3600 * (i as i64 + 1));
    }
    for _ in 0..(recent_count / 20 + 3) {
        let report = f.handle(invoke_event(check())).await.expect("set-up check");
        if !report
            .outcomes
            .iter()
            .any(|o| matches!(o.action.as_str(), "copy" | "confirm"))
        {
            break;
        }
    }
    let dr_copies = rds::snapshots(QUOTA_DR, Db::Instance(&db)).await.len();

    // The expired ones: past retention (and past the DR window, so no copy is owed).
    let old: Vec<String> = (0..n - recent_count)
        .map(|i| format!("autopilot-{db}-old-{i:04}"))
        .collect();
    create_snapshots(&client, &db, &old).await;
    for (i, id) in old.iter().enumerate() {
        rds::set_snapshot_time(
            QUOTA_SOURCE,
            id,
            false,
            now - (days + 1) * 86_400 - 60 * i as i64,
        );
    }

    eprintln!("scaling: snapshot, the hourly check over {n} snapshots");
    let mark = log.mark();
    let t0 = Instant::now();
    let report = f
        .handle(invoke_event(check()))
        .await
        .unwrap_or_else(|e| panic!("check over {n} snapshots: {e:?}"));
    let wall = t0.elapsed().as_secs_f64();
    let calls = log.since(mark, snapshot::FUNCTION);
    let mut others = BTreeMap::new();
    let mut deleted = 0;
    for o in &report.outcomes {
        if o.action == "delete" {
            deleted += 1;
        } else {
            *others.entry(o.action.clone()).or_default() += 1;
        }
    }
    let left = rds::snapshots(QUOTA_SOURCE, Db::Instance(&db)).await;
    let kept = left.len();

    // Leave the Regions empty for the next size.
    for (region, snaps) in [
        (QUOTA_SOURCE, left),
        (QUOTA_DR, rds::snapshots(QUOTA_DR, Db::Instance(&db)).await),
    ] {
        let client = rds::rds(region).await;
        for snap in snaps {
            client
                .delete_db_snapshot()
                .db_snapshot_identifier(&snap.id)
                .send()
                .await
                .unwrap_or_else(|e| panic!("clean up {}: {}", snap.id, rds::error_code(&e)));
        }
    }
    RetentionRun {
        size: n,
        kept,
        deleted,
        dr_copies,
        wall,
        calls,
        others,
    }
}

async fn retention(log: &CallLog, quick: bool) -> String {
    let sizes: &[usize] = if quick { &[10, 100] } else { &[10, 100, 1000] };
    // AWS's default is 100 manual snapshots a Region; this measurement needs more.
    for region in [QUOTA_SOURCE, QUOTA_DR] {
        rds::set_quota(region, "ManualSnapshots", Some(10_000));
    }
    let mut runs = Vec::new();
    for &n in sizes {
        eprintln!("scaling: snapshot, retention over {n} snapshots (set-up)");
        runs.push(retention_run(log, n).await);
    }
    for region in [QUOTA_SOURCE, QUOTA_DR] {
        rds::set_quota(region, "ManualSnapshots", None);
    }

    let mut md = String::from("### Retention over many snapshots (snapshot)\n\n");
    let _ = write!(
        md,
        "One database (an RDS instance) with *n* of autopilot's scheduled snapshots in the source \
         Region ({QUOTA_SOURCE}, the DR Region {QUOTA_DR}: a pair to themselves, since moto holds \
         at most 1,000 DB snapshots a Region), copy limit 20 and the default retention (7 days, \
         keep the newest 3). The newest max(3, n/10) are recent and already copied to the DR Region, \
         their copies confirmed (by the function's own earlier checks); the rest are older than \
         the retention and the DR window, as after a backlog (retention lowered, or the check \
         failing for a while). Measured: one `snapshot-check` run of the template's HourlyCheck \
         schedule through `Snapshotter::handle`.\n\n\
         | Snapshots | Deleted | Kept (DR copies) | Wall | AWS calls | Calls by operation | Other outcomes |\n\
         |---:|---:|---:|---:|---:|---|---|\n",
    );
    for r in &runs {
        let others = r
            .others
            .iter()
            .map(|(a, n)| format!("{a} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            md,
            "| {} | {} | {} ({}) | {} | {} | {} | {} |",
            r.size,
            r.deleted,
            r.kept,
            r.dr_copies,
            duration(r.wall),
            total(&r.calls),
            by_operation(&r.calls),
            if others.is_empty() {
                "–".into()
            } else {
                others
            },
        );
    }
    let pages: Vec<String> = runs
        .iter()
        .map(|r| {
            let expected = r.size.div_ceil(PAGE) + r.dr_copies.max(1).div_ceil(PAGE);
            let measured = r.calls.get("rds:DescribeDBSnapshots").copied().unwrap_or(0);
            format!(
                "{measured} at {} (⌈{}/{PAGE}⌉ + ⌈{}/{PAGE}⌉ = {expected})",
                r.size, r.size, r.dr_copies
            )
        })
        .collect();
    let per_delete: Vec<String> = runs
        .iter()
        .filter(|r| r.deleted > 0)
        .map(|r| {
            format!(
                "{} per deleted snapshot at {}",
                duration(r.wall / r.deleted as f64),
                r.size
            )
        })
        .collect();
    let biggest = runs.last().expect("a size");
    let sequential = total(&biggest.calls) as f64 * 0.1;
    let _ = writeln!(
        md,
        "\n**Shape.** Linear in the snapshots to delete, plus one Describe page per 100 \
         snapshots in each Region: `observe::snapshots` lists a database's snapshots with \
         MaxRecords 100 over every page (DescribeDBSnapshots: {}), `plan::retention` sorts them \
         in memory, and `Apply::run` carries the steps out one after another, one \
         DeleteDBSnapshot per snapshot deleted; DescribeAccountAttributes is read once per Region \
         whatever the size. So calls ≈ deleted + ⌈n/100⌉ + ⌈DR copies/100⌉ + 2, and the time is \
         dominated by the sequential deletes ({}). Because every call of the check is made in \
         sequence, its time on AWS is about calls × latency: at an assumed 100 ms an RDS call, \
         the {} calls at {} snapshots would take about {}, against the function's 120 s timeout \
         (a run cut short loses nothing: each delete stands alone, and the next run reads again \
         and deletes the rest).\n",
        pages.join("; "),
        per_delete.join("; "),
        total(&biggest.calls),
        biggest.size,
        duration(sequential),
    );
    md
}
