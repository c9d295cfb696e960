//! rotate's world in the soak: an alternating-users PostgreSQL secret with a
//! dependent URL and a consumer service, rotated again and again. Each rotation
//! is started as Secrets Manager starts one (RotateSecret stages AWSPENDING under
//! a new token) and its four steps reach rotate in order; now and then a step is
//! delivered again (an answer lost on its way back). A step that fails all of
//! Lambda's attempts fails the rotation, which Secrets Manager reattempts from
//! createSecret with the same token. Every tenth rotation, the follow-up schedule
//! runs too. After a rotation, the consumer's forced deployment completes.
//!
//! Checked: AWSCURRENT logs in after every invocation; each completed rotation
//! made AWSCURRENT the token's version, with the other user of the pair and a new
//! password, and AWSPREVIOUS still logs in; it created exactly one version of the
//! secret and of its dependent, which holds the new credentials, and redeployed
//! the consumer exactly once; no follow-up is left owed.

use crate::{Rng, Soak};
use autopilot_shared::{Failure, Report};
use autopilot_tests::faults::FaultProxy;
use autopilot_tests::rotation::{rotation_event, STEPS};
use autopilot_tests::template;
use autopilot_tests::worlds::RotateWorld;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

const STEP: &str = "rotate step";
const FOLLOW_UP: &str = "rotate follow-up";
/// The label finishSecret leaves while follow-up work is owed (docs/rotate.md).
const FOLLOW_UP_LABEL: &str = "AUTOPILOT_FOLLOWUP_PENDING";

/// What a rotation is checked against, read before it started.
struct Baseline {
    creds: Result<(String, String), String>,
    versions: BTreeSet<String>,
    dependent: BTreeSet<String>,
}

struct Rotate {
    soak: Arc<Soak>,
    name: String,
    w: RotateWorld,
    proxy: FaultProxy,
    rotator: rotate::Rotator,
    rng: Rng,
    delivered: usize,
}

pub async fn run(soak: Arc<Soak>, name: String, target: usize) {
    let w = RotateWorld::new(&name).await;
    let proxy = soak.proxy(&name);
    let rotator = w
        .rotator(&proxy.sdk_config().await)
        .expect("rotate's cold start");
    let mut r = Rotate {
        rng: Rng::new(soak.settings.seed, &name),
        soak,
        name,
        w,
        proxy,
        rotator,
        delivered: 0,
    };
    let mut rotations = 0;
    let mut unfinished = None;
    while r.delivered < target {
        let baseline = r.baseline().await;
        let token = r.w.stack.start_rotation(&r.w.arn).await;
        if !r.rotation(&token, &baseline, true).await {
            unfinished = Some((token, baseline));
            break;
        }
        rotations += 1;
        if rotations % 10 == 0 {
            r.follow_up(true).await;
        }
    }
    // AWS recovers: Secrets Manager's reattempt of a failed rotation, and the
    // follow-up schedule, finish what is left.
    r.proxy.heal();
    if let Some((token, baseline)) = unfinished {
        if !r.rotation(&token, &baseline, false).await {
            r.soak
                .broken(&r.name, "a healed rotation did not finish".into());
        }
    }
    r.follow_up(false).await;
    r.end().await;
}

impl Rotate {
    async fn invoke(&self, event: &Value) -> Result<Report, Failure> {
        self.rotator.handle(crate::event(event)).await
    }

    /// One delivery, with Lambda's attempts, AWSCURRENT checked after each.
    async fn deliver(
        &mut self,
        kind: &'static str,
        event: Value,
        id: &str,
        duplicate: bool,
    ) -> bool {
        self.soak.delivery(kind, duplicate);
        self.delivered += 1;
        let answer = self
            .soak
            .lambda(
                &self.name,
                kind,
                id,
                async || self.invoke(&event).await,
                async |answer| {
                    if let Err(e) = self.w.logs_in("AWSCURRENT").await {
                        self.soak.broken(
                            &self.name,
                            format!("after {id} ({}): {e}", crate::describe(answer)),
                        );
                    }
                },
            )
            .await;
        self.soak.tally(&self.name, &self.proxy);
        answer.is_ok()
    }

    /// Every version id of `secret`, deprecated ones included.
    async fn versions(&self, secret: &str) -> BTreeSet<String> {
        let mut pages = self
            .w
            .stack
            .sm()
            .list_secret_version_ids()
            .secret_id(secret)
            .include_deprecated(true)
            .into_paginator()
            .send();
        let mut ids = BTreeSet::new();
        while let Some(page) = pages.next().await {
            let page = page.expect("list the secret's versions");
            ids.extend(
                page.versions()
                    .iter()
                    .filter_map(|v| v.version_id().map(str::to_string)),
            );
        }
        ids
    }

    async fn baseline(&self) -> Baseline {
        Baseline {
            creds: self.w.creds("AWSCURRENT").await,
            versions: self.versions(&self.w.arn).await,
            dependent: self.versions(&self.w.url).await,
        }
    }

    /// One rotation under `token`, reattempted from createSecret (at most twice
    /// more) when a step fails every attempt; whether it completed. With `dups`,
    /// steps are now and then delivered twice.
    async fn rotation(&mut self, token: &str, baseline: &Baseline, dups: bool) -> bool {
        let mut completed = false;
        for _ in 0..3 {
            completed = true;
            'steps: for step in STEPS {
                let copies = if dups { self.rng.copies() } else { 1 };
                for copy in 0..copies {
                    let event = rotation_event(step, &self.w.arn, token);
                    if !self
                        .deliver(STEP, event, &format!("{step} {token}"), copy > 0)
                        .await
                    {
                        completed = false;
                        break 'steps;
                    }
                }
            }
            if completed {
                break;
            }
        }
        if !completed {
            return false;
        }
        // What Secrets Manager does once finishSecret succeeded.
        self.w.stack.end_rotation(&self.w.arn, token).await;
        self.check(token, baseline).await;
        // The cluster finishes the consumer's forced deployment.
        self.w
            .stack
            .settle_service(&self.w.cluster, "backend")
            .await;
        true
    }

    async fn check(&self, token: &str, baseline: &Baseline) {
        let (soak, name) = (&self.soak, self.name.as_str());
        let stages = self.w.stack.stages(&self.w.arn).await;
        if !stages
            .get(token)
            .is_some_and(|s| s.iter().any(|s| s == "AWSCURRENT"))
        {
            soak.lost(
                name,
                format!("finishSecret of {token} answered Ok, and it is not AWSCURRENT"),
            );
        }
        match (&baseline.creds, self.w.creds("AWSCURRENT").await) {
            (Ok((user, password)), Ok((now_user, now_password))) => {
                if &now_user == user || &now_password == password {
                    soak.broken(name, format!("the rotation {token} left {now_user} current (was {user}), or the same password"));
                }
                if !self.dependent_holds(&now_user, &now_password).await {
                    soak.lost(name, format!("the rotation {token}: the dependent URL does not hold the new credentials"));
                }
            }
            (a, b) => soak.broken(
                name,
                format!("credentials unreadable around {token}: {a:?} / {b:?}"),
            ),
        }
        if let Err(e) = self.w.logs_in("AWSPREVIOUS").await {
            soak.broken(name, format!("after the rotation {token}: {e}"));
        }
        let new = self
            .versions(&self.w.arn)
            .await
            .difference(&baseline.versions)
            .count();
        if new != 1 {
            soak.duplicated(
                name,
                format!("the rotation {token} made {new} versions of the secret"),
            );
        }
        let new = self
            .versions(&self.w.url)
            .await
            .difference(&baseline.dependent)
            .count();
        if new > 1 {
            soak.duplicated(
                name,
                format!("the rotation {token} made {new} versions of the dependent"),
            );
        }
        // Settled after each rotation: one deployment listed, plus this one's.
        match self.w.deployments().await {
            2 => {}
            1 => soak.lost(
                name,
                format!("the rotation {token} did not redeploy the consumer"),
            ),
            n => soak.duplicated(
                name,
                format!(
                    "the rotation {token} redeployed the consumer {} times",
                    n - 1
                ),
            ),
        }
        if stages.values().flatten().any(|s| s == FOLLOW_UP_LABEL) {
            soak.broken(
                name,
                format!("the rotation {token} completed with its follow-up still owed"),
            );
        }
    }

    /// Whether the dependent URL secret holds these credentials.
    async fn dependent_holds(&self, user: &str, password: &str) -> bool {
        self.w
            .stack
            .secret_value(&self.w.url, "AWSCURRENT")
            .await
            .unwrap_or_default()
            .contains(&format!("{user}:{password}@"))
    }

    /// The follow-up schedule's run (`rotate-followup`), as Scheduler sends it.
    async fn follow_up(&mut self, faulted: bool) {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let event = template::scheduled_event("RotateFunction", "FollowUpCheck", &time);
        if !self
            .deliver(FOLLOW_UP, event, &format!("follow-up {time}"), false)
            .await
            && !faulted
        {
            self.soak
                .broken(&self.name, "the healed follow-up check failed".into());
        }
        // A redeploy it made completes.
        self.w
            .stack
            .settle_service(&self.w.cluster, "backend")
            .await;
    }

    /// The end state: both users of the pair log in, the dependent holds
    /// AWSCURRENT's credentials, nothing is pending or owed.
    async fn end(&self) {
        let (soak, name) = (&self.soak, self.name.as_str());
        for stage in ["AWSCURRENT", "AWSPREVIOUS"] {
            if let Err(e) = self.w.logs_in(stage).await {
                soak.broken(name, format!("at the end: {e}"));
            }
        }
        if let Ok((user, password)) = self.w.creds("AWSCURRENT").await {
            if !self.dependent_holds(&user, &password).await {
                soak.broken(
                    name,
                    "at the end, the dependent URL does not hold AWSCURRENT's credentials".into(),
                );
            }
        }
        let stages = self.w.stack.stages(&self.w.arn).await;
        for label in ["AWSPENDING", FOLLOW_UP_LABEL] {
            if stages.values().flatten().any(|s| s == label) {
                soak.broken(name, format!("at the end, {label} is still on a version"));
            }
        }
    }
}
