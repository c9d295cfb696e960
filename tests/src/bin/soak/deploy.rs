//! deploy's world in the soak: CI pushes a new image to ECR now and then; its
//! push event, and the verdict of the deployment it starts, reach deploy one at
//! a time (the template reserves its concurrency to 1), at least once: some two
//! or three times, some late, after later ones. A push repeated (the same digest
//! under another event id) comes now and then. A failed invocation is retried
//! by Lambda later, after other events went through.
//!
//! Checked after every delivery: the service never runs an image pushed before
//! the one it ran (never an older image after a newer one); a push that answered
//! Ok left the service on its image or a newer one. At the end, after one healed
//! delivery of the newest push: the service runs the newest image whose push was
//! not dead-lettered; one revision per digest; each verdict that answered Ok is
//! recorded on its revision, unless deploy said why it ignored it.

use crate::{Rng, Soak};
use autopilot_shared::{Failure, Report};
use autopilot_tests::worlds::DeployWorld;
use autopilot_tests::{bridge, deployment_event, push_event_at, rotation};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

const PUSH: &str = "deploy push";
const VERDICT: &str = "deploy verdict";

/// An image of the world's repository.
struct Image {
    tag: String,
    digest: String,
    /// When ECR says it was pushed (epoch seconds with a fraction).
    pushed_at: f64,
    /// A delivery of one of its push events answered Ok.
    ok: bool,
}

#[derive(Clone)]
enum What {
    Push(usize),
    Verdict { deployment: String },
}

/// One delivery in flight: an event, and Lambda's attempt at it.
#[derive(Clone)]
struct Pending {
    event: Value,
    what: What,
    attempt: usize,
    duplicate: bool,
}

struct Deploy {
    soak: Arc<Soak>,
    name: String,
    w: DeployWorld,
    proxy: autopilot_tests::faults::FaultProxy,
    deployer: deploy::Deployer,
    rng: Rng,
    images: Vec<Image>,
    /// The image each revision runs.
    revisions: HashMap<String, usize>,
    /// The image the service runs.
    current: usize,
    pending: VecDeque<Pending>,
    /// Per deployment autopilot started: its revision, and whether a verdict
    /// delivery answered Ok, and what deploy said when it ignored one.
    verdicts: BTreeMap<String, Verdict>,
    delivered: usize,
}

#[derive(Default)]
struct Verdict {
    revision: String,
    ok: bool,
    ignored: Option<String>,
}

pub async fn run(soak: Arc<Soak>, name: String, target: usize) {
    let w = DeployWorld::new(&name).await;
    let proxy = soak.proxy(&name);
    let deployer = w.deployer(&proxy.sdk_config().await);
    let t0 = chrono::Utc::now().timestamp() as f64;
    let first = autopilot_tests::digest(&format!("{}:v1.4.1", w.repo));
    w.stack.set_pushed_at(&w.repo, &first, t0);
    let mut d = Deploy {
        rng: Rng::new(soak.settings.seed, &name),
        soak,
        name,
        proxy,
        deployer,
        images: vec![Image {
            tag: "v1.4.1".into(),
            digest: first,
            pushed_at: t0,
            ok: true,
        }],
        revisions: HashMap::new(),
        current: 0,
        pending: VecDeque::new(),
        verdicts: BTreeMap::new(),
        delivered: 0,
        w,
    };
    while d.delivered < target {
        if d.pending.len() < 2 || d.rng.chance(0.3) {
            d.push().await;
        } else {
            let at = if d.rng.chance(0.85) {
                0
            } else {
                d.rng.below(d.pending.len())
            };
            let p = d.pending.remove(at).expect("a pending delivery");
            d.deliver(p).await;
        }
    }
    while let Some(p) = d.pending.pop_front() {
        d.deliver(p).await;
    }
    d.converge().await;
}

impl Deploy {
    /// CI pushes the next image; ECR's event (and, now and then, the push
    /// repeated under another event id) is on its way.
    async fn push(&mut self) {
        let n = self.images.len();
        let tag = format!("v2.{n}.0");
        let digest = self.w.stack.push(&self.w.repo, &tag).await;
        let pushed_at = self.images[0].pushed_at + 10.0 * n as f64 + 0.25;
        self.w.stack.set_pushed_at(&self.w.repo, &digest, pushed_at);
        let events = if self.rng.chance(0.1) { 2 } else { 1 };
        for k in 0..events {
            let time = chrono::DateTime::from_timestamp(pushed_at as i64 + 30 * k, 0)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let event = push_event_at(&self.w.repo, &tag, &digest, &rotation::token(), &time);
            self.enqueue(event, What::Push(n));
        }
        self.images.push(Image {
            tag,
            digest,
            pushed_at,
            ok: false,
        });
    }

    /// EventBridge hands `event` over once, twice or three times.
    fn enqueue(&mut self, event: Value, what: What) {
        for copy in 0..self.rng.copies() {
            self.pending.push_back(Pending {
                event: event.clone(),
                what: what.clone(),
                attempt: 1,
                duplicate: copy > 0,
            });
        }
    }

    async fn invoke(&self, event: &Value, retry: bool) -> Result<Report, Failure> {
        self.soak
            .invoke(retry, async || {
                self.deployer.handle(crate::event(event)).await
            })
            .await
    }

    async fn deliver(&mut self, p: Pending) {
        let kind = match p.what {
            What::Push(_) => PUSH,
            What::Verdict { .. } => VERDICT,
        };
        if p.attempt == 1 {
            self.soak.delivery(kind, p.duplicate);
            self.delivered += 1;
        }
        let answer = self.invoke(&p.event, p.attempt > 1).await;
        self.soak.tally(&self.name, &self.proxy);
        if self.soak.settings.trace {
            let what = match &p.what {
                What::Push(i) => format!("push {} {}", self.images[*i].tag, p.event["id"]),
                What::Verdict { deployment } => format!("verdict {deployment}"),
            };
            self.soak.trace(
                &self.name,
                &format!("{what} attempt {}", p.attempt),
                &answer,
            );
        }
        self.after(&p, &answer).await;
        if self
            .soak
            .settle(&self.name, kind, &p.event, p.attempt, &answer)
        {
            // Lambda retries it later; other events go first.
            self.pending.push_back(Pending {
                attempt: p.attempt + 1,
                ..p
            });
        }
    }

    /// The image revision `arn` runs.
    async fn image_of(&mut self, arn: &str) -> usize {
        if let Some(&i) = self.revisions.get(arn) {
            return i;
        }
        let (td, _) = self.w.stack.describe_task_definition(arn).await;
        let image = td
            .container_definitions()
            .iter()
            .find(|c| c.name() == Some("app"))
            .and_then(|c| c.image())
            .unwrap_or_default()
            .to_string();
        let i = match image.rsplit_once('@') {
            Some((_, digest)) => self.images.iter().position(|i| i.digest == digest),
            None => self
                .images
                .iter()
                .position(|i| image.ends_with(&format!(":{}", i.tag))),
        }
        .unwrap_or_else(|| {
            panic!(
                "{}: revision {arn} runs {image}, no image of the soak",
                self.name
            )
        });
        self.revisions.insert(arn.to_string(), i);
        i
    }

    /// What must hold after each delivery, and the cluster's side: a deployment
    /// autopilot started completes, and ECS's event about it is on its way.
    async fn after(&mut self, p: &Pending, answer: &Result<Report, Failure>) {
        let service = self
            .w
            .stack
            .describe_service(&self.w.cluster, &self.w.service)
            .await;
        let running = service.task_definition().unwrap_or_default().to_string();
        let now = self.image_of(&running).await;
        let (was, is) = (&self.images[self.current], &self.images[now]);
        if is.pushed_at < was.pushed_at {
            self.soak.broken(
                &self.name,
                format!(
                    "the service went from {} back to the older {} ({})",
                    was.tag,
                    is.tag,
                    crate::describe(answer)
                ),
            );
        }
        match (&p.what, answer) {
            (What::Push(i), Ok(report)) => {
                let older = self.images[now].pushed_at < self.images[*i].pushed_at;
                self.images[*i].ok = true;
                if older {
                    self.soak.lost(
                        &self.name,
                        format!(
                            "the push of {} answered Ok ({}), and the service runs the older {}",
                            self.images[*i].tag,
                            report
                                .outcomes
                                .iter()
                                .map(|o| format!("{}: {}", o.action, o.reason))
                                .collect::<Vec<_>>()
                                .join("; "),
                            self.images[now].tag
                        ),
                    );
                }
            }
            (What::Verdict { deployment }, Ok(report)) => {
                let v = self.verdicts.entry(deployment.clone()).or_default();
                v.ok = true;
                if let Some(o) = report.outcomes.iter().find(|o| o.action == "ignore") {
                    v.ignored.get_or_insert_with(|| o.reason.clone());
                }
            }
            _ => {}
        }
        self.current = now;
        let in_progress = service.deployments().iter().find(|d| {
            d.status() == Some("PRIMARY")
                && d.rollout_state().map(|s| s.as_str()) == Some("IN_PROGRESS")
        });
        if let Some(deployment) = in_progress {
            let id = deployment.id().unwrap_or_default().to_string();
            bridge(
                "/_bridge/ecs/deployment",
                json!({"cluster": self.w.cluster, "service": self.w.service, "deploymentId": id, "outcome": "COMPLETED"}),
            );
            self.verdicts.insert(
                id.clone(),
                Verdict {
                    revision: deployment.task_definition().unwrap_or_default().to_string(),
                    ..Verdict::default()
                },
            );
            let event = deployment_event(
                &self.w.service_arn,
                &id,
                "SERVICE_DEPLOYMENT_COMPLETED",
                &format!("ECS deployment {id} completed."),
            );
            // ECS tells at once, and EventBridge delivers within seconds, long
            // before the next push: first in line, its extra copies later.
            let first = self.pending.len();
            self.enqueue(event, What::Verdict { deployment: id });
            if let Some(p) = self.pending.remove(first) {
                self.pending.push_front(p);
            }
        }
    }

    /// AWS recovers; the newest push that was not dead-lettered is delivered once
    /// more, then the end state is checked.
    async fn converge(&mut self) {
        self.proxy.heal();
        let newest = (0..self.images.len())
            .filter(|&i| self.images[i].ok)
            .max_by(|&a, &b| {
                self.images[a]
                    .pushed_at
                    .total_cmp(&self.images[b].pushed_at)
            })
            .unwrap_or(0);
        if newest > 0 {
            let image = &self.images[newest];
            let time = chrono::DateTime::from_timestamp(image.pushed_at as i64, 0)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let event = push_event_at(
                &self.w.repo,
                &image.tag,
                &image.digest,
                &rotation::token(),
                &time,
            );
            self.deliver(Pending {
                event,
                what: What::Push(newest),
                attempt: 1,
                duplicate: true,
            })
            .await;
            if !self.pending.is_empty() {
                self.soak.broken(
                    &self.name,
                    "the healed delivery of the newest push failed".into(),
                );
                while let Some(p) = self.pending.pop_front() {
                    self.deliver(p).await;
                }
            }
        }
        let running = self.w.running().await;
        let now = self.image_of(&running).await;
        if now != newest {
            let (is, want) = (&self.images[now], &self.images[newest]);
            // Newer than the newest delivered: a push whose every attempt failed
            // after deploying (a dead-lettered event that still took effect).
            if is.pushed_at < want.pushed_at || is.ok {
                self.soak.broken(
                    &self.name,
                    format!(
                        "the service ends on {}, not the newest delivered image {}",
                        is.tag, want.tag
                    ),
                );
            } else {
                self.soak.note(
                    "deploy: the service ends on a newer image whose every push was dead-lettered",
                );
            }
        }
        // One revision per digest: autopilot's record on each revision.
        let mut per_digest: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut verdict_tags: HashMap<String, String> = HashMap::new();
        for arn in self.w.stack.revisions(&self.w.family).await {
            let (_, tags) = self.w.stack.describe_task_definition(&arn).await;
            for t in &tags {
                match (t.key(), t.value()) {
                    (Some("autopilot:image-digest"), Some(d)) => per_digest
                        .entry(d.to_string())
                        .or_default()
                        .push(arn.clone()),
                    (Some("autopilot:verdict"), Some(v)) => {
                        verdict_tags.insert(arn.clone(), v.to_string());
                    }
                    _ => {}
                }
            }
        }
        for (digest, revisions) in per_digest.iter().filter(|(_, r)| r.len() > 1) {
            self.soak.duplicated(
                &self.name,
                format!(
                    "{} revisions registered for {digest}: {revisions:?}",
                    revisions.len()
                ),
            );
        }
        for (id, v) in self.verdicts.iter().filter(|(_, v)| v.ok) {
            let told = verdict_tags
                .get(&v.revision)
                .is_some_and(|t| t == &format!("COMPLETED {id}"));
            match (&v.ignored, told) {
                (_, true) => self
                    .soak
                    .note("deploy: verdicts recorded on their revision"),
                (Some(reason), false) => self.soak.note(format!(
                    "deploy: verdicts ignored ({})",
                    crate::general(crate::first_line(reason))
                )),
                (None, false) => self.soak.lost(
                    &self.name,
                    format!(
                        "the verdict of {id} answered Ok, and {} has no verdict recorded",
                        v.revision
                    ),
                ),
            }
        }
    }
}
