//! `make bench`: artifact sizes, cold starts, warm latency per event, peak RSS
//! and AWS calls per event for every function, written to docs/benchmarks.md.
//!
//! The harness itself runs in the `bench-harness` profile (the release profile's
//! opt-level without its fat LTO), so the scaling curves, which drive the functions
//! in-process, run their code optimised as it ships; it builds and times the
//! release binaries. Artifact sizes come from `scripts/build-artifacts.sh` (the zips as
//! they ship); the runtime figures from native release binaries
//! (`cargo build --release`, target/release/<fn>) spawned under a local Lambda
//! Runtime API ([`runtime`]) against the emulator and the harness PostgreSQL,
//! in worlds made with the harness's fixtures ([`worlds`]).
//!
//! For development only, and then docs/benchmarks.md is left as it is and the
//! results go to target/bench/benchmarks.md: `--quick`, fewer repetitions (a smoke
//! run); `--only deploy,rotate`, some functions (and `scaling`, the curves);
//! `--no-artifacts`, no artifact build.

mod artifacts;
mod measure;
mod report;
mod results;
mod runtime;
mod scaling;
mod worlds;

use autopilot_tests::{emulator, root, Stack};
use measure::{FunctionRun, Settings, World};
use report::{Section, Target};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const FUNCTIONS: [&str; 5] = ["deploy", "rotate", "remediate", "snapshot", "pagerduty"];
const DOC: &str = "docs/benchmarks.md";
const RUN: &str = "cargo run --profile bench-harness -p autopilot-tests --bin bench";

fn release_build_command() -> String {
    let packages: Vec<String> = FUNCTIONS.iter().map(|f| format!("-p {f}")).collect();
    format!("cargo build --release {}", packages.join(" "))
}

/// The output of a command, trimmed, or `what` when it cannot run.
fn output(program: &str, args: &[&str], what: &str) -> String {
    let path = format!(
        "{}:{}",
        root().join(".venv/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(program)
        .args(args)
        .env("PATH", path)
        .current_dir(root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| what.to_string())
}

/// The machine, the toolchain, the date and the commit, as markdown lines.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| format!("{:.1} GB", kib as f64 * 1024.0 / 1e9))
        .unwrap_or_else(|| "unknown".into());
    let dirty = !output("git", &["status", "--porcelain"], "").is_empty();
    let commit = format!(
        "{}{}",
        output("git", &["rev-parse", "--short=12", "HEAD"], "unknown"),
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        }
    );
    [
        (
            "Date",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        ),
        ("Commit", commit),
        ("CPUs (`nproc`)", output("nproc", &[], "unknown")),
        ("CPU", cpu),
        ("Memory", memory),
        ("Kernel", output("uname", &["-sr"], "unknown")),
        ("rustc", output("rustc", &["-V"], "unknown")),
        (
            "cargo lambda",
            output("cargo", &["lambda", "--version"], "not installed"),
        ),
        (
            "Emulator",
            format!(
                "moto {} (`tests/harness/moto_bridge.py`)",
                output(
                    &root().join(".venv/bin/python").display().to_string(),
                    &["-c", "import moto; print(moto.__version__)"],
                    "?"
                )
            ),
        ),
    ]
    .iter()
    .map(|(k, v)| format!("- {k}: {v}\n"))
    .collect()
}

/// The workspace root, without the `tests/..` of [`root`].
fn repo() -> PathBuf {
    let root = root();
    root.canonicalize().unwrap_or(root)
}

/// The 1-minute load average.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
}

fn build_release() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(["build", "--release"]).current_dir(root());
    for f in FUNCTIONS {
        command.args(["-p", f]);
    }
    let status = command.status().expect("run cargo build --release");
    assert!(status.success(), "{} failed", release_build_command());
}

async fn measure<W: World>(world: &mut W, settings: Settings) -> FunctionRun {
    let name = world.name();
    let binary = target_dir().join("release").join(name);
    let log = target_dir().join("bench").join(format!("{name}.log"));
    println!("== {name} ({} → {})", binary.display(), log.display());
    measure::run(world, binary, log, settings).await
}

/// The preamble when docs/benchmarks.md has none (the file's own is kept).
const PREAMBLE: &str = "# Benchmarks\n\nWritten by `make bench`; see tests/src/bin/bench/main.rs.";

/// Exit status of a bench built from another checkout (make bench then rebuilds).
const OTHER_CHECKOUT: i32 = 3;

/// Stops a bench built from another checkout. Cargo's build hashes do not depend
/// on where a workspace is, so with a target directory shared with another clone
/// of this repository, `cargo run` can find that clone's build fresh and run it,
/// harness paths (`autopilot_tests::root`) and all.
fn check_checkout() {
    let Some(manifest) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return; // not run by cargo: nothing to compare with
    };
    let here = PathBuf::from(manifest).join("..");
    let here = here.canonicalize().unwrap_or(here);
    if here != repo() {
        eprintln!(
            "this bench was built from {}, not {}: another checkout shares the target \
             directory. Touch tests/src/lib.rs and run it again (make bench does).",
            root().display(),
            here.display()
        );
        std::process::exit(OTHER_CHECKOUT);
    }
}

#[tokio::main]
async fn main() {
    check_checkout();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let no_artifacts = args.iter().any(|a| a == "--no-artifacts");
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').map(str::to_string).collect());
    let wanted = |f: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == f));
    let settings = if quick {
        Settings {
            cold_runs: 3,
            warm_runs: 5,
        }
    } else {
        Settings {
            cold_runs: 10,
            warm_runs: 100,
        }
    };
    let started = Instant::now();
    let load_at_start = load();
    let machine = machine();
    println!(
        "autopilot bench{}\n{machine}",
        if quick { " --quick" } else { "" }
    );

    println!("== artifacts: {}", artifacts::SCRIPT);
    let built = if no_artifacts {
        Err("skipped (--no-artifacts)".to_string())
    } else {
        artifacts::build()
    };
    if let Err(why) = &built {
        println!("   artifacts not measured: {why}");
    }

    println!("== native release binaries: {}", release_build_command());
    build_release();

    let logs = target_dir().join("bench");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).expect("create target/bench");
    println!("== emulator {}", emulator().endpoint());
    let stack = Arc::new(Stack::unprefixed().await);
    let mut runs = Vec::new();
    if wanted("deploy") {
        let mut w = worlds::deploy::Deploy::new(stack.clone()).await;
        runs.push(measure(&mut w, settings).await);
        worlds::drain_pages(&stack).await;
    }
    if wanted("rotate") {
        let mut w = worlds::rotate::Rotate::new(stack.clone()).await;
        runs.push(measure(&mut w, settings).await);
        worlds::drain_pages(&stack).await;
    }
    if wanted("remediate") {
        let mut w = worlds::remediate::Remediate::new(stack.clone()).await;
        runs.push(measure(&mut w, settings).await);
        worlds::drain_pages(&stack).await;
    }
    if wanted("snapshot") {
        let mut w = worlds::snapshot::Snapshot::new(stack.clone()).await;
        runs.push(measure(&mut w, settings).await);
        worlds::drain_pages(&stack).await;
    }
    if wanted("pagerduty") {
        let mut w = worlds::pagerduty::PagerDuty::new(stack.clone()).await;
        runs.push(measure(&mut w, settings).await);
    }

    let scaling = if wanted("scaling") {
        println!("== scaling");
        scaling::run().await
    } else {
        Section::default()
    };

    let mut sections: Vec<Section> = vec![artifacts::section(&built, &FUNCTIONS)];
    sections.extend(results::sections(&runs, settings));
    let targets: Vec<Target> = sections
        .iter()
        .chain([&scaling])
        .flat_map(|s| s.targets.clone())
        .collect();
    let elapsed = started.elapsed();
    let load_at_end = load();

    println!("\n== targets");
    for t in &targets {
        println!("{}", t.line());
        if !t.note.is_empty() {
            println!("       {}", t.note);
        }
    }
    println!("bench took {:.1} min", elapsed.as_secs_f64() / 60.0);

    let mut doc = format!(
        "## This run\n\n{}{machine}- Run time: {:.1} min (the bench binary, its artifact and release builds included)\n\
         - Load average (1 min) at the start and the end: {load_at_start}, {load_at_end} \
         (other work on the machine shows in the timings)\n\n\
         Commands, from the repository root:\n\n```sh\n\
         make bench   # = make setup; scripts/bench-setup.sh; {RUN}\n\
         # which runs:\n\
         bash {}\n\
         {}\n\
         # and then spawns target/release/<fn> under its own Runtime API\n```\n\n",
        if quick {
            format!(
                "**A `--quick` smoke run** ({} cold starts, {} timed runs per event): not the figures to quote.\n\n",
                settings.cold_runs, settings.warm_runs
            )
        } else {
            format!(
                "{} cold starts per function, {} timed runs per event.\n\n",
                settings.cold_runs, settings.warm_runs
            )
        },
        elapsed.as_secs_f64() / 60.0,
        artifacts::SCRIPT,
        release_build_command(),
    );
    doc += "## Targets\n\n";
    let rows: Vec<Vec<String>> = targets
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.measured.clone(),
                t.limit.clone(),
                if t.met { "met" } else { "**missed**" }.to_string(),
                t.note.clone(),
            ]
        })
        .collect();
    doc += &report::table(&["Target", "Measured", "Limit", "", "Note"], &rows);
    for s in &sections {
        doc += "\n";
        doc += s.markdown.trim_end();
        doc += "\n";
    }
    doc += "\n";
    if scaling.markdown.trim().is_empty() {
        doc += "## Scaling\n\nNot measured in this run (`tests/src/bin/bench/scaling.rs` returned nothing).\n";
    } else {
        doc += scaling.markdown.trim_end();
        doc += "\n";
    }
    // A partial or smoke run never replaces the published figures.
    let path = if quick || only.is_some() || no_artifacts {
        target_dir().join("bench").join("benchmarks.md")
    } else {
        repo().join(DOC)
    };
    report::write_doc(&path, PREAMBLE, &doc);
    println!("wrote {}", path.display());
}
