//! `make soak` (issue #10): at least 10,000 mixed events replayed against the
//! emulator in bounded time, with duplicates, disorder and injected faults; it
//! reports lost events, duplicated actions, invariant breaks and memory growth,
//! and exits non-zero unless all are zero (docs/reliability.md, "Soak").
//!
//! Worlds (`autopilot_tests::worlds`), each on a stack of its own, with its
//! function's clients behind a [`FaultProxy`] of its own, seeded from the soak's
//! seed and the world's name:
//! - deploy ([`deploy`]): ECR pushes and deployment verdicts, one invocation at a
//!   time (the template reserves deploy's concurrency to 1);
//! - remediate ([`remediate`]): CloudWatch alarm flips in each delivery form and
//!   scale-in sweeps, delivered concurrently (its concurrency is not reserved);
//! - rotate ([`rotate`]): full rotations, their four steps in order, as Secrets
//!   Manager calls them;
//! - snapshot ([`snapshot`]): simulated days of daily backups, snapshots created
//!   (autopilot's, a person's, RDS's automated ones) and hourly checks, one at a
//!   time (its concurrency is reserved to 1 too).
//!
//! Every world runs at once. A failed invocation is retried as Lambda retries an
//! asynchronous one (3 attempts in all, with the faults still on); an event that
//! fails all three is dead-lettered, counted apart from lost ones.
//!
//! `SOAK_EVENTS` (or `--events N`) sets how many deliveries at least, `SOAK_SEED`
//! (or `--seed N`) the seed, `SOAK_FAULTS_PER_MILLE` how many calls in 1,000 are
//! faulted, `SOAK_TIMEOUT_MINUTES` when the run gives up as too slow. To look
//! into one function: `SOAK_ONLY=deploy` (a comma-separated list) runs only its
//! worlds, `SOAK_TRACE=1` prints every delivery's answer and every fault.

mod deploy;
mod remediate;
mod rotate;
mod snapshot;

use autopilot_shared::{Failure, Report};
use autopilot_tests::faults::{Fault, FaultProxy};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const DEFAULT_EVENTS: usize = 10_000;
const DEFAULT_SEED: u64 = 20_261_124;
/// 3 % of calls faulted: a few percent, as the brief of the soak asks.
const DEFAULT_PER_MILLE: u64 = 30;
const DEFAULT_TIMEOUT_MINUTES: u64 = 30;
/// RSS is first sampled after this many deliveries: the connection pools, the
/// allocator's arenas and every world's state are in place by then.
const WARMUP: usize = 1_000;
/// The RSS growth from the warm-up to the end that fails the soak, in MiB per
/// 1,000 deliveries after the warm-up. See docs/reliability.md ("Soak") for why.
const GROWTH_LIMIT_MIB_PER_1000: f64 = 1.0;
/// Lambda's attempts at an asynchronously invoked event (`MaximumRetryAttempts: 2`).
pub const LAMBDA_ATTEMPTS: usize = autopilot_tests::faults::LAMBDA_ATTEMPTS;

/// What this run does.
#[derive(Debug, Clone)]
pub struct Settings {
    pub events: usize,
    pub seed: u64,
    pub per_mille: u64,
    pub faults: Vec<Fault>,
    pub timeout: Duration,
    /// `SOAK_ONLY`: the functions whose worlds run (all when empty), to look
    /// into one; `SOAK_TRACE`: print every delivery.
    pub only: Vec<String>,
    pub trace: bool,
}

fn settings() -> Result<Settings, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let mut events = env("SOAK_EVENTS");
    let mut seed = env("SOAK_SEED");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--events" => events = args.next(),
            "--seed" => seed = args.next(),
            other => return Err(format!("unknown argument {other}: --events N, --seed N")),
        }
    }
    let number = |what: &str, value: Option<String>, default: u64| -> Result<u64, String> {
        value.map_or(Ok(default), |v| {
            v.trim()
                .parse()
                .map_err(|e| format!("{what} {v:?} is not a number: {e}"))
        })
    };
    Ok(Settings {
        events: number("SOAK_EVENTS", events, DEFAULT_EVENTS as u64)? as usize,
        seed: number("SOAK_SEED", seed, DEFAULT_SEED)?,
        per_mille: number(
            "SOAK_FAULTS_PER_MILLE",
            env("SOAK_FAULTS_PER_MILLE"),
            DEFAULT_PER_MILLE,
        )?,
        faults: Fault::ALL.to_vec(),
        timeout: Duration::from_secs(
            60 * number(
                "SOAK_TIMEOUT_MINUTES",
                env("SOAK_TIMEOUT_MINUTES"),
                DEFAULT_TIMEOUT_MINUTES,
            )?,
        ),
        only: env("SOAK_ONLY")
            .map(|o| o.split(',').map(|f| f.trim().to_string()).collect())
            .unwrap_or_default(),
        trace: env("SOAK_TRACE").is_some(),
    })
}

/// A fixed, well-mixed sequence of choices per world, from the seed and the
/// world's name (SplitMix64, as the fault proxy draws its faults).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, stream: &str) -> Self {
        Self(seed ^ fnv(stream))
    }

    pub fn draw(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.draw() % 1_000_000) as f64 / 1_000_000.0 < p
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.draw() % n as u64) as usize
    }

    /// How many times at-least-once delivery hands an event over: once mostly,
    /// twice for 15 %, three times for 5 %.
    pub fn copies(&mut self) -> usize {
        match self.draw() % 100 {
            0..=4 => 3,
            5..=19 => 2,
            _ => 1,
        }
    }
}

/// FNV-1a, stable across runs.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// This process's resident set, in KiB (`VmRSS` of /proc/self/status).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Everything the worlds count and find, shared by all of them.
pub struct Soak {
    pub settings: Settings,
    started: Instant,
    delivered: AtomicUsize,
    answered: AtomicUsize,
    invocations: AtomicUsize,
    retried: AtomicUsize,
    duplicates: AtomicUsize,
    calls: AtomicUsize,
    by_kind: Mutex<BTreeMap<&'static str, (usize, usize)>>,
    faults: Mutex<BTreeMap<Fault, usize>>,
    dead: Mutex<Vec<String>>,
    dead_by_type: Mutex<BTreeMap<&'static str, usize>>,
    lost: Mutex<Vec<String>>,
    duplicated: Mutex<Vec<String>>,
    broken: Mutex<Vec<String>>,
    notes: Mutex<BTreeMap<String, usize>>,
    warmup: OnceLock<(u64, usize)>,
}

impl Soak {
    fn new(settings: Settings) -> Self {
        Self {
            settings,
            started: Instant::now(),
            delivered: AtomicUsize::new(0),
            answered: AtomicUsize::new(0),
            invocations: AtomicUsize::new(0),
            retried: AtomicUsize::new(0),
            duplicates: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            by_kind: Mutex::default(),
            faults: Mutex::default(),
            dead: Mutex::default(),
            dead_by_type: Mutex::default(),
            lost: Mutex::default(),
            duplicated: Mutex::default(),
            broken: Mutex::default(),
            notes: Mutex::default(),
            warmup: OnceLock::new(),
        }
    }

    /// A new proxy for `world`, its faults seeded from the soak's seed and the name.
    pub fn proxy(&self, world: &str) -> FaultProxy {
        let proxy = FaultProxy::start();
        proxy.seeded(
            self.settings.seed ^ fnv(world),
            self.settings.per_mille,
            &self.settings.faults,
            &[],
        );
        proxy
    }

    /// One delivery of an event of `kind` begins (`duplicate`: not its first).
    pub fn delivery(&self, kind: &'static str, duplicate: bool) {
        {
            let mut kinds = lock(&self.by_kind);
            let entry = kinds.entry(kind).or_default();
            entry.0 += 1;
            entry.1 += usize::from(!duplicate);
        }
        if duplicate {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        let n = self.delivered.fetch_add(1, Ordering::SeqCst) + 1;
        if n == WARMUP {
            let _ = self.warmup.set((rss_kib(), n));
        }
    }

    /// Prints a delivery's answer when `SOAK_TRACE` is set.
    pub fn trace(&self, world: &str, what: &str, answer: &Result<Report, Failure>) {
        if self.settings.trace {
            let text = match answer {
                Ok(report) => report
                    .outcomes
                    .iter()
                    .map(|o| format!("{} ({})", o.action, o.reason))
                    .collect::<Vec<_>>()
                    .join("; "),
                Err(f) => format!("{}: {}", f.code, first_line(&f.message)),
            };
            println!("{world}: {what}: {text}");
        }
    }

    /// How an attempt at a delivery of a world that queues its events ended:
    /// answered Ok, or dead-lettered after Lambda's last attempt; `true` when it
    /// failed and Lambda's next attempt is due (the caller queues it again).
    pub fn settle(
        &self,
        world: &str,
        kind: &'static str,
        event: &Value,
        attempt: usize,
        answer: &Result<Report, Failure>,
    ) -> bool {
        match answer {
            Ok(_) => {
                self.answered();
                false
            }
            Err(_) if attempt < LAMBDA_ATTEMPTS => true,
            Err(failure) => {
                let id = event["id"].as_str().unwrap_or_default();
                self.dead_letter(world, kind, id, failure);
                false
            }
        }
    }

    /// A delivery ended with an invocation that answered Ok.
    pub fn answered(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
    }

    /// Deliveries so far.
    pub fn delivered(&self) -> usize {
        self.delivered.load(Ordering::SeqCst)
    }

    /// Invokes the handler once, counting it (and whether it was a Lambda retry).
    pub async fn invoke(
        &self,
        retry: bool,
        invoke: impl AsyncFnOnce() -> Result<Report, Failure>,
    ) -> Result<Report, Failure> {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        if retry {
            self.retried.fetch_add(1, Ordering::Relaxed);
        }
        invoke().await
    }

    /// One delivery as Lambda makes it: attempts until one succeeds, at most
    /// [`LAMBDA_ATTEMPTS`], with `after` run after each; the last answer.
    /// Dead-letters the event when every attempt failed.
    pub async fn lambda(
        &self,
        world: &str,
        kind: &'static str,
        id: &str,
        invoke: impl AsyncFn() -> Result<Report, Failure>,
        after: impl AsyncFn(&Result<Report, Failure>),
    ) -> Result<Report, Failure> {
        let mut answer = self.invoke(false, async || invoke().await).await;
        self.trace(world, &format!("{kind} {id} attempt 1"), &answer);
        after(&answer).await;
        for attempt in 2..=LAMBDA_ATTEMPTS {
            if answer.is_ok() {
                break;
            }
            answer = self.invoke(true, async || invoke().await).await;
            self.trace(world, &format!("{kind} {id} attempt {attempt}"), &answer);
            after(&answer).await;
        }
        match &answer {
            Ok(_) => self.answered(),
            Err(failure) => self.dead_letter(world, kind, id, failure),
        }
        answer
    }

    /// An event whose every attempt failed: the dead-letter queue keeps it.
    pub fn dead_letter(&self, world: &str, kind: &str, id: &str, failure: &Failure) {
        *lock(&self.dead_by_type).entry(failure.code).or_default() += 1;
        lock(&self.dead).push(format!(
            "{world}: {kind} {id}: {} ({})",
            failure.code,
            first_line(&failure.message)
        ));
    }

    /// Counts the faults the proxy injected since the last tally, and forgets its
    /// calls so that they do not pile up in this process's memory. Call it when no
    /// invocation of the world is in flight.
    pub fn tally(&self, world: &str, proxy: &FaultProxy) {
        let calls = proxy.calls();
        proxy.forget();
        if self.settings.trace {
            for c in calls.iter().filter(|c| c.fault.is_some()) {
                println!("{world}:   fault: {} on {}", c.fault.unwrap(), c.operation);
            }
        }
        self.calls.fetch_add(calls.len(), Ordering::Relaxed);
        let mut faults = lock(&self.faults);
        for fault in calls.iter().filter_map(|c| c.fault) {
            *faults.entry(fault).or_default() += 1;
        }
    }

    pub fn lost(&self, world: &str, what: String) {
        lock(&self.lost).push(format!("{world}: {what}"));
    }

    pub fn duplicated(&self, world: &str, what: String) {
        lock(&self.duplicated).push(format!("{world}: {what}"));
    }

    pub fn broken(&self, world: &str, what: String) {
        lock(&self.broken).push(format!("{world}: {what}"));
    }

    /// Counts something worth reporting that is no failure (a late verdict ignored…).
    pub fn note(&self, what: impl Into<String>) {
        *lock(&self.notes).entry(what.into()).or_default() += 1;
    }

    /// Adds `n` to a figure worth reporting.
    pub fn note_n(&self, what: impl Into<String>, n: usize) {
        *lock(&self.notes).entry(what.into()).or_default() += n;
    }

    fn progress(&self) -> String {
        let kinds = lock(&self.by_kind);
        let by_function = |function: &str| -> usize {
            kinds
                .iter()
                .filter(|(k, _)| k.starts_with(function))
                .map(|(_, (n, _))| n)
                .sum()
        };
        format!(
            "[{:>4}s] {:>6}/{} events (deploy {}, remediate {}, rotate {}, snapshot {}); {} retried, {} dead-lettered, {} lost, {} duplicated, {} broken; RSS {:.1} MiB",
            self.started.elapsed().as_secs(),
            self.delivered(),
            self.settings.events,
            by_function("deploy"),
            by_function("remediate"),
            by_function("rotate"),
            by_function("snapshot"),
            self.retried.load(Ordering::Relaxed),
            lock(&self.dead).len(),
            lock(&self.lost).len(),
            lock(&self.duplicated).len(),
            lock(&self.broken).len(),
            mib(rss_kib()),
        )
    }
}

/// The invocation of a handler with `event`, as the runtime hands it over.
pub fn event(event: &Value) -> LambdaEvent<Value> {
    LambdaEvent::new(event.clone(), Context::default())
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An answer in a few words: the actions of a report, or the error type.
pub fn describe(answer: &Result<Report, Failure>) -> String {
    match answer {
        Ok(report) => format!("{:?}", report.actions()),
        Err(f) => format!("{}: {}", f.code, first_line(&f.message)),
    }
}

/// `text` with every word that holds a digit (an id, a time) replaced by `…`,
/// so that reasons of one kind count together.
pub fn general(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            if w.chars().any(|c| c.is_ascii_digit()) {
                "…"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// The deliveries a world makes at least: its function's `percent` of the
/// events, split evenly among the function's `worlds`.
fn share(events: usize, percent: usize, worlds: usize) -> usize {
    (events * percent).div_ceil(100 * worlds)
}

async fn run(settings: Settings) -> ExitCode {
    println!(
        "soak: {} events at least, seed {} (SOAK_SEED), {} calls in 1,000 faulted ({}), Lambda's {} attempts per event; progress every 15 s",
        settings.events,
        settings.seed,
        settings.per_mille,
        settings
            .faults
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        LAMBDA_ATTEMPTS,
    );
    let events = settings.events;
    let timeout = settings.timeout;
    let soak = Arc::new(Soak::new(settings));
    // Every snapshot world takes manual snapshots in both regions of one emulator:
    // a quota as if each had an account of its own.
    for region in [
        autopilot_tests::snapshots::SOURCE,
        autopilot_tests::snapshots::DR,
    ] {
        autopilot_tests::snapshots::set_quota(region, "ManualSnapshots", Some(1_000_000));
    }

    // All worlds run at once, as futures of this task: the handlers' futures
    // are not all `Send` to the compiler (higher-ranked lifetimes), so they are
    // not spawned; their work is waiting on the emulator, not on this thread.
    let mut worlds: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>> = Vec::new();
    let only = soak.settings.only.clone();
    // Each function's share of the events, and how many worlds share it.
    for (function, percent, count) in [
        ("deploy", 35, 4),
        ("remediate", 35, 4),
        ("rotate", 15, 3),
        ("snapshot", 15, 3),
    ] {
        if !only.is_empty() && !only.iter().any(|o| o == function) {
            continue;
        }
        for i in 0..count {
            let (soak, name) = (soak.clone(), format!("soak-{function}-{i}"));
            let target = share(events, percent, count);
            worlds.push(match function {
                "deploy" => Box::pin(deploy::run(soak, name, target)),
                // Odd worlds have the busy guardrails, even ones the template's.
                "remediate" => Box::pin(remediate::run(soak, name, target, i % 2 == 1)),
                "rotate" => Box::pin(rotate::run(soak, name, target)),
                _ => Box::pin(snapshot::run(soak, name, target)),
            });
        }
    }
    let progress = {
        let soak = soak.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(15));
            tick.tick().await;
            loop {
                tick.tick().await;
                println!("{}", soak.progress());
            }
        })
    };
    let all = futures::future::join_all(worlds);
    let timed_out = tokio::time::timeout(timeout, all).await.is_err();
    progress.abort();
    let end_rss = rss_kib();
    println!("{}", soak.progress());
    report(&soak, end_rss, timed_out)
}

fn report(soak: &Soak, end_rss: u64, timed_out: bool) -> ExitCode {
    let elapsed = soak.started.elapsed();
    let delivered = soak.delivered();
    println!("\n== soak: figures ==");
    println!("seed: {}", soak.settings.seed);
    println!("wall time: {:.0} s", elapsed.as_secs_f64());
    println!("events delivered: {delivered} (distinct events and deliveries by kind:)");
    for (kind, (deliveries, distinct)) in lock(&soak.by_kind).iter() {
        println!("  {kind}: {distinct} events, {deliveries} deliveries");
    }
    println!(
        "duplicates delivered: {}",
        soak.duplicates.load(Ordering::Relaxed)
    );
    println!(
        "invocations: {} ({} Lambda retries of a failed invocation)",
        soak.invocations.load(Ordering::Relaxed),
        soak.retried.load(Ordering::Relaxed)
    );
    let faults = lock(&soak.faults);
    println!(
        "AWS calls through the proxies: {}, faults injected: {} ({})",
        soak.calls.load(Ordering::Relaxed),
        faults.values().sum::<usize>(),
        faults
            .iter()
            .map(|(f, n)| format!("{f} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let dead = lock(&soak.dead);
    println!(
        "dead-lettered: {} ({})",
        dead.len(),
        lock(&soak.dead_by_type)
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for d in dead.iter() {
        println!("  {d}");
    }
    for (what, n) in lock(&soak.notes).iter() {
        println!("noted: {what}: {n}");
    }
    let mut failed = timed_out;
    if timed_out {
        println!(
            "TIMED OUT after {} minutes (SOAK_TIMEOUT_MINUTES)",
            soak.settings.timeout.as_secs() / 60
        );
    }
    // Every delivery ends answered Ok or dead-lettered; any other is lost.
    let settled = soak.answered.load(Ordering::Relaxed) + dead.len();
    println!(
        "deliveries settled: {} answered Ok + {} dead-lettered = {settled} of {delivered}",
        soak.answered.load(Ordering::Relaxed),
        dead.len()
    );
    if settled != delivered {
        soak.lost(
            "soak",
            format!(
                "{} deliveries neither answered Ok nor were dead-lettered",
                delivered.abs_diff(settled)
            ),
        );
    }
    drop(dead);
    for (title, list) in [
        ("lost events", &soak.lost),
        ("duplicated actions", &soak.duplicated),
        ("invariant breaks", &soak.broken),
    ] {
        let list = lock(list);
        println!("{title}: {}", list.len());
        for item in list.iter().take(50) {
            println!("  {item}");
        }
        if list.len() > 50 {
            println!("  … and {} more", list.len() - 50);
        }
        failed |= !list.is_empty();
    }
    match soak.warmup.get() {
        Some(&(warm, at)) => {
            let growth = mib(end_rss) - mib(warm);
            let after = delivered.saturating_sub(at).max(1);
            let per_1000 = growth * 1000.0 / after as f64;
            println!(
                "RSS (this process: the handlers run in it, with the harness): {:.1} MiB after {at} events (warm-up), {:.1} MiB at the end; growth {growth:+.1} MiB, {per_1000:+.2} MiB per 1,000 events (limit {GROWTH_LIMIT_MIB_PER_1000:.1})",
                mib(warm),
                mib(end_rss),
            );
            if per_1000 > GROWTH_LIMIT_MIB_PER_1000 {
                println!("memory growth: beyond the limit");
                failed = true;
            }
        }
        None => println!(
            "RSS: {:.1} MiB at the end; fewer than {WARMUP} events, no growth measured",
            mib(end_rss)
        ),
    }
    if delivered < soak.settings.events {
        println!(
            "only {delivered} of {} events delivered",
            soak.settings.events
        );
        failed = true;
    }
    if failed {
        println!("soak: FAILED");
        ExitCode::FAILURE
    } else {
        println!("soak: passed");
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let settings = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the soak's runtime");
    runtime.block_on(run(settings))
}
