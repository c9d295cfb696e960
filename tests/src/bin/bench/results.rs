//! The runtime measurements as markdown, and the targets they are checked against.

use crate::measure::{FunctionRun, Settings, Timing};
use crate::report::{median, ms_spread, table, Section, Target};
use crate::worlds::rotate::STEPS;

/// Cold start limit: spawn → first `/next`, median.
pub const COLD_LIMIT_MS: f64 = 15.0;
/// Peak RSS limit, read strictly: 20 MB = 20,000,000 bytes.
pub const RSS_LIMIT_BYTES: u64 = 20_000_000;
/// Secrets Manager calls of a full single-user rotation.
pub const ROTATION_SM_LIMIT: usize = 8;
/// AWS calls of a single-service push, Publish included.
pub const PUSH_LIMIT: usize = 6;

/// Secrets Manager's operations (the names the emulator logs).
const SECRETS_MANAGER: [&str; 12] = [
    "GetSecretValue",
    "DescribeSecret",
    "PutSecretValue",
    "UpdateSecretVersionStage",
    "GetRandomPassword",
    "ListSecretVersionIds",
    "UpdateSecret",
    "CreateSecret",
    "RotateSecret",
    "CancelRotateSecret",
    "BatchGetSecretValue",
    "ListSecrets",
];

fn rss(kib: u64) -> String {
    format!("{:.1} MB ({kib} KiB)", kib as f64 * 1024.0 / 1e6)
}

/// `Op ×n, Op2` in the order of first use.
fn by_operation(calls: &[String]) -> String {
    if calls.is_empty() {
        return "none".into();
    }
    let mut counted: Vec<(&str, usize)> = Vec::new();
    for c in calls {
        match counted.iter_mut().find(|(op, _)| op == c) {
            Some((_, n)) => *n += 1,
            None => counted.push((c, 1)),
        }
    }
    counted
        .iter()
        .map(|(op, n)| {
            if *n == 1 {
                op.to_string()
            } else {
                format!("{op} ×{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn timing<'a>(run: &'a FunctionRun, label: &str) -> Option<&'a Timing> {
    run.timings.iter().find(|t| t.label == label)
}

/// The sections of the runtime measurements, and their targets.
pub fn sections(runs: &[FunctionRun], settings: Settings) -> Vec<Section> {
    let mut cold = Section {
        markdown: format!(
            "## Cold start and peak memory\n\n\
             Native x86_64 release binaries under the bench's Runtime API, each cold start a new \
             process ({} per function). **Init** is spawn → the process's first \
             `GET /runtime/invocation/next`: what Lambda reports as Init Duration, and what the \
             15 ms target is checked against (median). **First response** is spawn → the first \
             event's reply: init plus the first event's work, including the emulator's own \
             latency on every AWS call. **Peak RSS** is the largest VmHWM of any of the \
             function's processes (the cold ones after their first event, the warm one after \
             all its events), read from /proc just before it was stopped.\n\n",
            settings.cold_runs
        ),
        targets: Vec::new(),
    };
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.name.to_string(),
                ms_spread(&r.init),
                ms_spread(&r.first_response),
                format!("`{}` → {}", r.cold_event, r.cold_outcome),
                rss(r.peak_rss()),
                rss(r.warm_rss),
            ]
        })
        .collect();
    cold.markdown += &table(
        &[
            "Function",
            "Init: spawn → first /next, median (min–max)",
            "First response: spawn → first reply, median (min–max)",
            "First event → outcome",
            "Peak RSS, all processes",
            "Peak RSS, warm process",
        ],
        &rows,
    );
    for r in runs {
        let init = median(&r.init);
        let met = !r.init.is_empty() && init <= COLD_LIMIT_MS;
        let t = Target::new(
            format!("{} cold start (init)", r.name),
            format!("{init:.2} ms"),
            "<= 15 ms",
            met,
        );
        cold.targets.push(if met {
            t
        } else {
            let (_, min, max) = crate::report::spread(&mut r.init.clone());
            t.note(format!(
                "median of {} starts (spawn → first /next), min {min:.2} ms, max {max:.2} ms",
                r.init.len()
            ))
        });
        let peak = r.peak_rss() * 1024;
        let met = peak <= RSS_LIMIT_BYTES;
        let t = Target::new(
            format!("{} peak RSS", r.name),
            rss(r.peak_rss()),
            "<= 20 MB",
            met,
        );
        cold.targets.push(if met {
            t
        } else {
            t.note(format!(
                "{:.1} MB over; warm process {}",
                (peak - RSS_LIMIT_BYTES) as f64 / 1e6,
                rss(r.warm_rss)
            ))
        });
    }

    let mut warm = Section {
        markdown: format!(
            "## Warm latency per event\n\n\
             One warm process per function handles every event, {} timed times each after one \
             untimed warm-up: from handing the event to the process's waiting `/next` to its \
             reply, against the emulator (moto over HTTP; every AWS call is a real round trip). \
             **Outcome** is what the function answered (the report's actions, or the error type). \
             Where a redelivery would be a no-op, each run gets fresh work (the list below says \
             how) and the **redelivery** — the same event again, straight after — is timed \
             separately.\n\n",
            settings.warm_runs
        ),
        targets: Vec::new(),
    };
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for r in runs {
        for t in &r.timings {
            let outcome = if t.varied > 0 {
                format!(
                    "{} ({} of {} runs: {})",
                    t.outcome,
                    t.varied,
                    t.fresh.len(),
                    t.varied_to
                )
            } else {
                t.outcome.clone()
            };
            rows.push(vec![
                r.name.to_string(),
                format!("`{}`", t.label),
                outcome,
                ms_spread(&t.fresh),
                t.fresh.len().to_string(),
                if t.redelivery.is_empty() {
                    "–".into()
                } else {
                    format!("{} → {}", ms_spread(&t.redelivery), t.redelivery_outcome)
                },
            ]);
            if !t.fresh_how.is_empty() && !notes.iter().any(|(_, how)| *how == t.fresh_how) {
                notes.push((t.label.clone(), t.fresh_how));
            }
        }
    }
    warm.markdown += &table(
        &[
            "Function",
            "Event",
            "Outcome",
            "Median (min–max)",
            "Runs",
            "Redelivery: median (min–max) → outcome",
        ],
        &rows,
    );
    // rotate: the four steps of each rotation, added up run by run.
    if let Some(r) = runs.iter().find(|r| r.name == "rotate") {
        let steps: Vec<&Timing> = STEPS.iter().filter_map(|s| timing(r, s)).collect();
        let runs_each = steps.first().map(|t| t.fresh.len()).unwrap_or_default();
        if steps.len() == STEPS.len() && steps.iter().all(|t| t.fresh.len() == runs_each) {
            let totals: Vec<f64> = (0..runs_each)
                .map(|i| steps.iter().map(|t| t.fresh[i]).sum())
                .collect();
            warm.markdown += &format!(
                "\nA whole rotation, the four steps of one token added up: {} over {runs_each} rotations.\n",
                ms_spread(&totals)
            );
        }
    }
    warm.markdown += "\nHow each run gets fresh work:\n\n";
    for (label, how) in &notes {
        warm.markdown += &format!("- `{label}`: {how}.\n");
    }

    let mut calls = Section {
        markdown: "## AWS calls per event\n\n\
             Counted at the emulator (`POST /_bridge/calls` before and after one invocation, \
             nothing else running), on the first timed run of each event; the redelivery's \
             likewise. In order of first use.\n\n"
            .to_string(),
        targets: Vec::new(),
    };
    let mut rows = Vec::new();
    for r in runs {
        for t in &r.timings {
            rows.push(vec![
                r.name.to_string(),
                format!("`{}`", t.label),
                t.calls.len().to_string(),
                by_operation(&t.calls),
                if t.redelivery.is_empty() {
                    "–".into()
                } else {
                    format!(
                        "{}: {}",
                        t.redelivery_calls.len(),
                        by_operation(&t.redelivery_calls)
                    )
                },
            ]);
        }
    }
    calls.markdown += &table(
        &["Function", "Event", "Calls", "By operation", "Redelivery"],
        &rows,
    );

    // rotate: Secrets Manager calls of the four steps of one fresh rotation.
    if let Some(r) = runs.iter().find(|r| r.name == "rotate") {
        let steps: Vec<&Timing> = STEPS.iter().filter_map(|s| timing(r, s)).collect();
        let all: Vec<String> = steps.iter().flat_map(|t| t.calls.clone()).collect();
        let sm: Vec<String> = all
            .iter()
            .filter(|c| SECRETS_MANAGER.contains(&c.as_str()))
            .cloned()
            .collect();
        let complete = steps.len() == STEPS.len();
        let met = complete && sm.len() <= ROTATION_SM_LIMIT;
        calls.markdown += &format!(
            "\nA full single-user rotation (the four steps in one warm process) made {} AWS calls, \
             {} of them to Secrets Manager: {}.\n",
            all.len(),
            sm.len(),
            by_operation(&sm)
        );
        let t = Target::new(
            "rotate Secrets Manager calls, full rotation",
            sm.len().to_string(),
            format!("<= {ROTATION_SM_LIMIT}"),
            met,
        );
        calls.targets.push(if met {
            t
        } else if !complete {
            t.note("not every step was measured")
        } else {
            t.note(format!(
                "{} over: {}",
                sm.len().saturating_sub(ROTATION_SM_LIMIT),
                by_operation(&sm)
            ))
        });
    }
    // deploy: a single-service push.
    if let Some(t) = runs
        .iter()
        .find(|r| r.name == "deploy")
        .and_then(|r| timing(r, "events/ecr-push.json"))
    {
        let met = !t.calls.is_empty() && t.calls.len() <= PUSH_LIMIT;
        let target = Target::new(
            "deploy calls, single-service push",
            t.calls.len().to_string(),
            format!("<= {PUSH_LIMIT}"),
            met,
        );
        calls.targets.push(if met {
            target
        } else {
            target.note(format!(
                "{} over: {}",
                t.calls.len().saturating_sub(PUSH_LIMIT),
                by_operation(&t.calls)
            ))
        });
    }
    vec![cold, warm, calls]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_counted_in_order_of_first_use() {
        let calls: Vec<String> = ["DescribeServices", "Publish", "DescribeServices"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(by_operation(&calls), "DescribeServices ×2, Publish");
        assert_eq!(by_operation(&[]), "none");
    }
}
