//! remediate's world in the soak: services `web` and `api` at 2 tasks (bounds
//! 2–10, step 2), three scale-out alarms (web's CPU by EventBridge and SNS, web's
//! memory by EventBridge, api's CPU by EventBridge and the Lambda alarm action).
//! The alarms flip between ALARM and OK as CloudWatch's evaluations would, one at
//! a time; each state change is delivered in all of its alarm's forms at once
//! (remediate's concurrency is not reserved), some twice or three times, some
//! late, after later flips; now and then the scale-in sweep's schedule runs
//! alongside. Failed invocations are retried by Lambda once the batch is done.
//!
//! Two guardrail settings: the function's defaults, the template's (cooldown
//! 600 s, 3 actions an hour, flapping past 4 changes an hour: one action, then
//! refusals), and a busy one (cooldown 15 s, 100 actions a minute, flapping past
//! 100 changes a minute), which acts and scales back in all through the run.
//!
//! Checked: desired counts within bounds every tenth flip and at the end; at most one action per
//! state change (from the reports and from the audit trail); never two actions
//! inside the cooldown, nor more than the rate limit (audit trail times); every
//! state change a delivery answered Ok for is recorded as handled.

use crate::{Rng, Soak};
use autopilot_shared::Report;
use autopilot_tests::alarms::{alarm_event, AlarmSpec, Form};
use autopilot_tests::template;
use autopilot_tests::worlds::RemediateWorld;
use aws_sdk_dynamodb::types::AttributeValue;
use remediate::config as rc;
use remediate::guard::Flips;
use remediate::store::flips_key;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const ALARM: &str = "remediate alarm";
const SWEEP: &str = "remediate sweep";

struct Flapper {
    alarm: String,
    resource: String,
    forms: Vec<Form>,
    alarming: bool,
}

/// One delivery of a batch.
struct Item {
    event: Value,
    kind: &'static str,
    alarm: String,
    /// The state change it is the on-time delivery of (late ones: none).
    transition: Option<String>,
    duplicate: bool,
}

pub async fn run(soak: Arc<Soak>, name: String, target: usize, busy: bool) {
    let w = RemediateWorld::new(&name, &["web", "api"]).await;
    let vars: Vec<(&str, String)> = if busy {
        vec![
            (rc::COOLDOWN_SECONDS, "15".into()),
            (rc::MAX_ACTIONS, "100".into()),
            (rc::ACTION_WINDOW_MINUTES, "1".into()),
            (rc::FLAP_LIMIT, "100".into()),
            (rc::FLAP_WINDOW_MINUTES, "1".into()),
        ]
    } else {
        Vec::new()
    };
    let rails = w.config(&vars).guard;
    let proxy = soak.proxy(&name);
    let r = w.remediator(&proxy.sdk_config().await, &vars);
    let (web, api) = (&w.services[0], &w.services[1]);
    let mut flappers = vec![
        Flapper {
            alarm: w
                .stack
                .alarm(AlarmSpec::ecs_cpu("web-cpu-high", &w.cluster, web))
                .await,
            resource: w.resource(web),
            forms: vec![Form::EventBridge, Form::Sns],
            alarming: false,
        },
        Flapper {
            alarm: w
                .stack
                .alarm(AlarmSpec::ecs(
                    "web-memory-high",
                    "MemoryUtilization",
                    85.0,
                    &w.cluster,
                    web,
                ))
                .await,
            resource: w.resource(web),
            forms: vec![Form::EventBridge],
            alarming: false,
        },
        Flapper {
            alarm: w
                .stack
                .alarm(AlarmSpec::ecs_cpu("api-cpu-high", &w.cluster, api))
                .await,
            resource: w.resource(api),
            forms: vec![Form::EventBridge, Form::Direct],
            alarming: false,
        },
    ];
    let mut rng = Rng::new(soak.settings.seed, &name);
    let mut late: Vec<(usize, Item)> = Vec::new();
    // Per state change: deliveries that answered Ok on time, and actions taken.
    let mut answered: BTreeSet<(String, String)> = BTreeSet::new();
    let mut acted: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut delivered = 0;
    let mut flip = 0;
    let deliver = async |items: Vec<Item>,
                         answered: &mut BTreeSet<(String, String)>,
                         acted: &mut BTreeMap<(String, String), usize>| {
        for item in &items {
            soak.delivery(item.kind, item.duplicate);
        }
        let n = items.len();
        let mut todo = items;
        for attempt in 1..=crate::LAMBDA_ATTEMPTS {
            if attempt > 1 {
                // Lambda waits a minute before its second attempt at a failed
                // event and two more before its third; the soak does not wait.
                w.age_claims(60 * (attempt as i64 - 1)).await;
            }
            let answers = futures::future::join_all(todo.iter().map(|item| {
                soak.invoke(attempt > 1, async || {
                    r.handle(crate::event(&item.event)).await
                })
            }))
            .await;
            soak.tally(&name, &proxy);
            let mut failed = Vec::new();
            for (item, answer) in todo.into_iter().zip(answers) {
                if soak.settings.trace {
                    let what = format!(
                        "{} {} attempt {attempt}",
                        item.alarm,
                        item.transition.as_deref().unwrap_or("(copy)")
                    );
                    soak.trace(&name, &what, &answer);
                }
                match answer {
                    Ok(report) => {
                        soak.answered();
                        record(&item, &report, answered, acted);
                    }
                    Err(f) if attempt == crate::LAMBDA_ATTEMPTS => {
                        let id = item.transition.clone().unwrap_or_default();
                        soak.dead_letter(&name, item.kind, &format!("{} {id}", item.alarm), &f);
                    }
                    Err(_) => failed.push(item),
                }
            }
            todo = failed;
            if todo.is_empty() {
                break;
            }
        }
        n
    };
    while delivered < target {
        let f = &mut flappers[rng.below(3)];
        f.alarming = !f.alarming;
        let state = if f.alarming { "ALARM" } else { "OK" };
        w.stack.set_alarm(&f.alarm, state).await;
        let (arn, time) = w.stack.alarm_now(&f.alarm).await;
        let millis = chrono::DateTime::parse_from_str(&time, "%Y-%m-%dT%H:%M:%S%.3f%z")
            .expect("CloudWatch's time")
            .timestamp_millis();
        let transition = format!("{state}@{millis}");
        let event = |form: Form| alarm_event(form, &f.alarm, &arn, state, &time);
        let mut batch: Vec<Item> = Vec::new();
        for form in &f.forms {
            batch.push(Item {
                event: event(*form),
                kind: ALARM,
                alarm: f.alarm.clone(),
                transition: Some(transition.clone()),
                duplicate: false,
            });
        }
        for _ in 1..rng.copies() {
            batch.push(Item {
                event: event(Form::EventBridge),
                kind: ALARM,
                alarm: f.alarm.clone(),
                transition: None,
                duplicate: true,
            });
        }
        if rng.chance(0.1) {
            let due = flip + 1 + rng.below(3);
            late.push((
                due,
                Item {
                    event: event(Form::EventBridge),
                    kind: ALARM,
                    alarm: f.alarm.clone(),
                    transition: None,
                    duplicate: true,
                },
            ));
        }
        let (now, later): (Vec<_>, Vec<_>) = late.drain(..).partition(|(due, _)| *due <= flip);
        late = later;
        batch.extend(now.into_iter().map(|(_, item)| item));
        if flip % 20 == 19 {
            let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            batch.push(Item {
                event: template::scheduled_event("RemediateFunction", "ScaleInSweep", &time),
                kind: SWEEP,
                alarm: String::new(),
                transition: None,
                duplicate: false,
            });
        }
        delivered += deliver(batch, &mut answered, &mut acted).await;
        flip += 1;
        if flip % 10 == 0 {
            check_bounds(&soak, &name, &w).await;
        }
    }
    let rest: Vec<Item> = late.drain(..).map(|(_, item)| item).collect();
    deliver(rest, &mut answered, &mut acted).await;

    // AWS recovers; each alarm's state now is delivered once more.
    proxy.heal();
    let mut healed = Vec::new();
    for f in &flappers {
        let state = if f.alarming { "ALARM" } else { "OK" };
        healed.push(Item {
            event: w
                .stack
                .alarm_event(Form::EventBridge, &f.alarm, state)
                .await,
            kind: ALARM,
            alarm: f.alarm.clone(),
            transition: None,
            duplicate: true,
        });
    }
    deliver(healed, &mut answered, &mut acted).await;

    for ((alarm, transition), n) in acted.iter().filter(|(_, n)| **n > 1) {
        soak.duplicated(
            &name,
            format!("{alarm} {transition}: {n} actions in the reports"),
        );
    }
    check_bounds(&soak, &name, &w).await;
    let store = w.stack.guard_store(&w.table);
    for f in &flappers {
        let flips = store
            .get::<Flips>(flips_key(&f.alarm))
            .await
            .expect("read the alarm's transitions")
            .value;
        for (_, transition) in answered.iter().filter(|(a, _)| a == &f.alarm) {
            if !flips.handled(transition) {
                soak.lost(
                    &name,
                    format!(
                        "{} {transition}: a delivery answered Ok, and it is not handled",
                        f.alarm
                    ),
                );
            }
        }
    }
    let resources: BTreeSet<&str> = flappers.iter().map(|f| f.resource.as_str()).collect();
    for resource in resources {
        check_audit(&soak, &name, &w, resource, &rails).await;
    }
}

/// Every service's desired count is within its bounds, 2–10.
async fn check_bounds(soak: &Soak, name: &str, w: &RemediateWorld) {
    for service in &w.services {
        let desired = w
            .stack
            .describe_service(&w.cluster, service)
            .await
            .desired_count();
        if !(2..=10).contains(&desired) {
            soak.broken(
                name,
                format!("{service} wants {desired} tasks, outside 2–10"),
            );
        }
    }
}

/// What a delivery's report says about its state change.
fn record(
    item: &Item,
    report: &Report,
    answered: &mut BTreeSet<(String, String)>,
    acted: &mut BTreeMap<(String, String), usize>,
) {
    if let Some(t) = &item.transition {
        answered.insert((item.alarm.clone(), t.clone()));
    }
    for o in &report.outcomes {
        let Some(t) = o.detail("transition") else {
            continue;
        };
        if o.reason.starts_with("duplicate") {
            continue;
        }
        if ["act", "resume", "failed"].contains(&o.action.as_str()) {
            *acted
                .entry((item.alarm.clone(), t.to_string()))
                .or_default() += 1;
        }
    }
}

/// A resource's audit trail (every page of it): decision, time, alarm, transition.
async fn audit(
    w: &RemediateWorld,
    resource: &str,
) -> Vec<(String, chrono::DateTime<chrono::Utc>, String, String)> {
    let mut pages = w
        .stack
        .dynamodb()
        .query()
        .table_name(&w.table)
        .key_condition_expression("pk = :p")
        .expression_attribute_values(":p", AttributeValue::S(format!("audit#{resource}")))
        .into_paginator()
        .items()
        .send();
    let mut out = Vec::new();
    let text = |item: &std::collections::HashMap<String, AttributeValue>, key: &str| {
        item.get(key)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    while let Some(item) = pages.next().await {
        let item = item.expect("query the audit trail");
        let time = text(&item, "time").parse().expect("an audit time");
        out.push((
            text(&item, "decision"),
            time,
            text(&item, "alarm"),
            text(&item, "transition"),
        ));
    }
    out
}

/// The guardrails, from the audit trail's times: actions (scale-outs) never two
/// inside the cooldown nor more than the rate limit in its window; scale-ins
/// spaced by the cooldown on their own clock; one action per state change.
async fn check_audit(
    soak: &Soak,
    name: &str,
    w: &RemediateWorld,
    resource: &str,
    rails: &rc::Guardrails,
) {
    let trail = audit(w, resource).await;
    let cooldown = rails.cooldown.as_millis() as i64;
    let window = rails.action_window.as_millis() as i64;
    for decisions in [&["act", "resume"][..], &["scale-in"][..]] {
        let mut times: Vec<_> = trail
            .iter()
            .filter(|(d, ..)| decisions.contains(&d.as_str()))
            .map(|(_, t, ..)| *t)
            .collect();
        times.sort();
        for pair in times.windows(2) {
            // The guard keeps whole seconds: the next action may come at the
            // second the cooldown ends, up to a second before it in milliseconds.
            let gap = (pair[1] - pair[0]).num_milliseconds();
            if gap <= cooldown - 1000 {
                soak.broken(
                    name,
                    format!("{resource}: {decisions:?} {gap} ms apart, inside the {cooldown} ms cooldown"),
                );
            }
        }
        if decisions[0] == "act" {
            for (i, t) in times.iter().enumerate() {
                let within = times[i..]
                    .iter()
                    .filter(|u| (**u - *t).num_milliseconds() < window)
                    .count();
                if within > rails.max_actions as usize {
                    soak.broken(
                        name,
                        format!("{resource}: {within} actions within {window} ms"),
                    );
                }
            }
        }
    }
    let mut per_transition: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (d, _, alarm, transition) in &trail {
        if ["act", "resume", "scale-in"].contains(&d.as_str()) {
            *per_transition.entry((alarm, transition)).or_default() += 1;
        }
    }
    for ((alarm, transition), n) in per_transition.iter().filter(|(_, n)| **n > 1) {
        soak.duplicated(
            name,
            format!("{resource}: {n} actions for {alarm} {transition} in the audit trail"),
        );
    }
    let acts = trail
        .iter()
        .filter(|(d, ..)| d == "act" || d == "resume")
        .count();
    let ins = trail.iter().filter(|(d, ..)| d == "scale-in").count();
    soak.note_n("remediate: actions (act, resume) in the audit trails", acts);
    soak.note_n("remediate: scale-ins in the audit trails", ins);
}
