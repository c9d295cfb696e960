//! Decisions, without I/O: given the alarm as CloudWatch describes it, the
//! resource as AWS describes it and the guardrail state, what to do and why.
//! Every branch is a unit test; `apply` only carries a [`Plan`] out.

use crate::action::{short, Action};
use crate::alarm::{Alarm, State};
use crate::config::{Config, DatabaseBounds, Guardrails, InsufficientData, ServiceBounds};
use crate::guard::{self, clock, Claim, Flips, Gate, Guard, Scaled};
use crate::runbook::{Runbook, Target};
use autopilot_shared::adopt::{self, Created};
use autopilot_shared::record::Record;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// RDS refuses a storage change within six hours of the last one.
pub const STORAGE_CHANGE_INTERVAL_SECONDS: i64 = 6 * 3600;

/// An ECS service as DescribeServices (and Application Auto Scaling) tell it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceState {
    pub desired: i32,
    pub running: i32,
    pub task_definition: String,
    pub deployments: Vec<Deployment>,
    /// The service's Application Auto Scaling target, if it has one.
    pub scalable: Option<Scalable>,
    /// deploy's record on the revision the PRIMARY deployment runs (rollback only).
    pub record: Option<Record>,
    /// When ECS registered that revision (`registeredAt`; rollback only).
    pub registered_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Deployment {
    pub id: String,
    /// PRIMARY, ACTIVE or INACTIVE.
    pub status: String,
    /// IN_PROGRESS, COMPLETED or FAILED.
    pub rollout_state: String,
    pub task_definition: String,
    pub created_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scalable {
    pub min: i32,
    pub max: i32,
}

impl ServiceState {
    /// The deployment ECS has not finished, if any: a PRIMARY still rolling out,
    /// or more than one deployment (the old one draining).
    pub fn in_flight(&self) -> Option<&Deployment> {
        self.deployments
            .iter()
            .find(|d| d.status == "PRIMARY" && d.rollout_state == "IN_PROGRESS")
            .or_else(|| {
                (self.deployments.len() > 1)
                    .then(|| self.deployments.iter().find(|d| d.status == "PRIMARY"))
                    .flatten()
            })
    }
}

/// An RDS instance as DescribeDBInstances tells it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DbState {
    pub allocated_gib: i32,
    /// Set when storage autoscaling is on.
    pub max_allocated_gib: Option<i32>,
    pub status: String,
    /// A storage change RDS has not applied yet.
    pub pending_allocated_gib: Option<i32>,
}

#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per invocation; never moved in bulk
pub enum Resource {
    Service(ServiceState),
    Database(DbState),
}

/// What the plan for one alarm transition reads.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub config: &'a Config,
    pub alarm: &'a Alarm,
    pub runbook: Runbook,
    /// Why that runbook.
    pub why: &'a str,
    /// The configured resource, or why there is none.
    pub target: &'a Result<Target, String>,
    /// Its state; `None` when there is no target or the plan needs none.
    pub resource: Option<&'a Resource>,
    pub guard: &'a Guard,
    pub flips: &'a Flips,
    /// The current state of the alarms a scale-out answered, for scaling back in.
    pub others: &'a BTreeMap<String, State>,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Claim the resource, then act.
    Act(Action),
    /// An earlier invocation claimed this action and died: finish it.
    Resume(Action),
    /// The action already ran for this transition; its page did not go out yet.
    Repage(Box<Claim>),
    /// Page with context; no action.
    PageOnly(String),
    /// A guardrail stopped the action; page why.
    Refused(String),
    /// The alarm is OK again: resolve its page.
    Resolve(String),
    /// The alarm has no data: warn, act on nothing.
    Warn(String),
    /// Nothing to do or say (a duplicate, a stale event, `ignore` policy).
    Ignore(String),
    /// Another invocation is acting on this transition right now: fail, so
    /// Lambda retries once it has finished.
    Busy(String),
}

/// What an invocation does about one alarm transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub verdict: Verdict,
    /// A scale-in that goes with a [`Verdict::Resolve`].
    pub scale_in: Option<Action>,
    /// Scaling back in is over (reached the baseline, or someone else took over): forget it.
    pub release: Option<String>,
}

impl Plan {
    fn of(verdict: Verdict) -> Self {
        Self {
            verdict,
            scale_in: None,
            release: None,
        }
    }

    /// The action to claim and carry out, if any.
    pub fn action(&self) -> Option<&Action> {
        match &self.verdict {
            Verdict::Act(a) | Verdict::Resume(a) => Some(a),
            _ => self.scale_in.as_ref(),
        }
    }

    /// Whether the action was claimed before (a resume): no new claim is written.
    pub fn resumes(&self) -> bool {
        matches!(self.verdict, Verdict::Resume(_))
    }
}

/// The plan for the alarm's current state.
pub fn plan(ctx: &Context) -> Plan {
    let transition = ctx.alarm.transition();
    if ctx.flips.handled(&transition) {
        return Plan::of(Verdict::Ignore(format!(
            "duplicate: {} {} was already handled",
            ctx.alarm.name, transition
        )));
    }
    match ctx.alarm.state {
        State::Alarm => on_alarm(ctx, &transition),
        State::Ok => held_while_flapping(ctx, &transition, on_ok(ctx, &transition)),
        State::InsufficientData => Plan::of(match ctx.config.insufficient_data {
            InsufficientData::Warn => Verdict::Warn(format!(
                "{} has insufficient data; no action is taken on it (policy `warn`)",
                ctx.alarm.name
            )),
            InsufficientData::Ignore => Verdict::Ignore(format!(
                "{} has insufficient data (policy `ignore`)",
                ctx.alarm.name
            )),
        }),
    }
}

fn on_alarm(ctx: &Context, transition: &str) -> Plan {
    let target = match (ctx.runbook, ctx.target) {
        (Runbook::Page, _) => {
            return Plan::of(Verdict::PageOnly(format!(
                "runbook `page` ({}): no automatic action",
                ctx.why
            )))
        }
        (_, Err(why)) => {
            return Plan::of(Verdict::PageOnly(format!(
                "runbook `{}` has nothing to act on: {why}",
                ctx.runbook
            )))
        }
        (_, Ok(t)) => t,
    };
    let now = ctx.now.timestamp();
    let rails = &ctx.config.guard;
    let flips = ctx
        .flips
        .count_since(now, rails.flap_window.as_secs() as i64);
    if flips > rails.flap_limit as usize {
        if still_open(ctx, transition) {
            return Plan::of(Verdict::Ignore(format!(
                "flapping: {} changed state {flips} times in {} min (more than {}); on-call was paged, and its incident stays open until it settles",
                ctx.alarm.name,
                rails.flap_window.as_secs() / 60,
                rails.flap_limit
            )));
        }
        return Plan::of(Verdict::Refused(format!(
            "flapping: {} changed state {flips} times in {} min (more than {}); automatic action stops until it settles",
            ctx.alarm.name,
            rails.flap_window.as_secs() / 60,
            rails.flap_limit
        )));
    }
    match guard::gate(ctx.guard, transition, now, rails, false) {
        Gate::Open => {}
        Gate::Done(claim) => return Plan::of(Verdict::Repage(Box::new(claim))),
        Gate::Busy(why) => return Plan::of(Verdict::Busy(why)),
        Gate::Resume(action) => return Plan::of(Verdict::Resume(action)),
        Gate::Refused(why) => return Plan::of(Verdict::Refused(why)),
    }
    let decided = match (ctx.runbook, target, ctx.resource) {
        (Runbook::ScaleOut, Target::Service(b), Some(Resource::Service(s))) => {
            scale_out(b, s, ctx.guard)
        }
        (Runbook::Restart, Target::Service(b), Some(Resource::Service(s))) => restart(b, s),
        (Runbook::Rollback, Target::Service(b), Some(Resource::Service(s))) => {
            rollback(b, s, ctx.config.rollback_window.as_secs() as i64, ctx.now)
        }
        (Runbook::GrowStorage, Target::Database(b), Some(Resource::Database(d))) => {
            grow_storage(b, d, ctx.guard, now)
        }
        (runbook, target, _) => Err(Verdict::PageOnly(format!(
            "runbook `{runbook}` cannot act on {}",
            target.key()
        ))),
    };
    Plan::of(decided.map(Verdict::Act).unwrap_or_else(|v| v))
}

/// A flapping alarm is one incident, not one per flip. Without this, every flip
/// of a storm resolved the incident and the next opened a new one (PagerDuty
/// opens an incident for each trigger whose key has none open). So once an
/// ALARM has been paged as flapping, the OKs that come while the alarm still
/// flaps do not resolve its incident, and the ALARMs while it stays open page
/// nothing more. The incident is resolved by the first OK once the alarm has
/// settled, or by hand.
///
/// Whether the OK `id` is held: the ALARM before it came while the alarm
/// flapped, and so does this OK. Decided from the transitions recorded before
/// each (see [`Flips::flapping_at`]), so every delivery and retry agree, and a
/// later transition can tell what this one did.
fn holds(flips: &Flips, id: &str, rails: &Guardrails) -> bool {
    let flapping = |id: &str| {
        flips.flapping_at(
            id,
            rails.flap_window.as_secs() as i64,
            rails.flap_limit as usize,
        )
    };
    flapping(id)
        && flips
            .previous(id)
            .is_some_and(|p| p.state() == State::Alarm.as_str() && flapping(&p.id))
}

/// The OK's plan, its resolve held while the alarm flaps (when resolving is all
/// it does: a scale-in waits for a flapping alarm anyway).
fn held_while_flapping(ctx: &Context, transition: &str, plan: Plan) -> Plan {
    let rails = &ctx.config.guard;
    if plan.scale_in.is_some() || plan.release.is_some() || !holds(ctx.flips, transition, rails) {
        return plan;
    }
    match plan.verdict {
        Verdict::Resolve(why) => Plan::of(Verdict::Ignore(format!(
            "{why}; but it is flapping (more than {} state changes in {} min), so its incident stays open until it settles",
            rails.flap_limit,
            rails.flap_window.as_secs() / 60
        ))),
        verdict => Plan { verdict, ..plan },
    }
}

/// Whether the flapping alarm's incident is still open from the transition
/// recorded before this ALARM: that one was an ALARM (it paged), or an OK that
/// was held. A scale-out alarm the scaled-out service does not wait on yet is
/// still refused (and paged), so that scaling in waits for it.
fn still_open(ctx: &Context, transition: &str) -> bool {
    let watch = ctx.runbook == Runbook::ScaleOut
        && ctx
            .guard
            .scaled
            .as_ref()
            .is_some_and(|s| !s.alarms.contains(&ctx.alarm.name));
    let Some(previous) = ctx.flips.previous(transition) else {
        return false;
    };
    !watch
        && (previous.state() == State::Alarm.as_str()
            || previous.state() == State::Ok.as_str()
                && holds(ctx.flips, &previous.id, &ctx.config.guard))
}

fn in_flight_refusal(s: &ServiceState) -> Option<Verdict> {
    s.in_flight().map(|d| {
        Verdict::Refused(format!(
            "deployment {} is in progress ({} since {}); no action while ECS deploys",
            d.id,
            short(&d.task_definition),
            d.created_at
                .map(|t| t.format("%H:%M:%S UTC").to_string())
                .unwrap_or_else(|| "an unknown time".into())
        ))
    })
}

fn scale_out(b: &ServiceBounds, s: &ServiceState, _guard: &Guard) -> Result<Action, Verdict> {
    if let Some(refusal) = in_flight_refusal(s) {
        return Err(refusal);
    }
    let max = b.max as i32;
    let step = b.step as i32;
    if let Some(target) = s.scalable {
        // Act through the scalable target, so its target-tracking policy is not fought:
        // raise the minimum it scales within, never past its maximum or ours.
        let ceiling = max.min(target.max);
        let to = (s.desired.max(target.min) + step).min(ceiling);
        if to <= target.min {
            return Err(Verdict::Refused(format!(
                "at maximum: the auto scaling minimum is {} and the ceiling is {ceiling} (target maximum {}, configured max {max})",
                target.min, target.max
            )));
        }
        return Ok(Action::SetMinCapacity {
            cluster: b.cluster.clone(),
            service: b.service.clone(),
            from: target.min,
            to,
            max: target.max,
        });
    }
    let to = (s.desired + step).min(max);
    if to <= s.desired {
        return Err(Verdict::Refused(format!(
            "at maximum: desired count {} with bounds {}–{max}",
            s.desired, b.min
        )));
    }
    Ok(Action::SetDesiredCount {
        cluster: b.cluster.clone(),
        service: b.service.clone(),
        from: s.desired,
        to,
    })
}

fn restart(b: &ServiceBounds, s: &ServiceState) -> Result<Action, Verdict> {
    if let Some(refusal) = in_flight_refusal(s) {
        return Err(refusal);
    }
    Ok(Action::ForceDeployment {
        cluster: b.cluster.clone(),
        service: b.service.clone(),
    })
}

/// Rolls back only what autopilot deployed, recently, to the revision it replaced.
/// The record is read from tags anyone with `ecs:TagResource` can write, so it
/// is checked against what ECS says: the deployment it names must be the
/// service's PRIMARY one, and the revision it restores an earlier one of the
/// same family.
fn rollback(
    b: &ServiceBounds,
    s: &ServiceState,
    window: i64,
    now: DateTime<Utc>,
) -> Result<Action, Verdict> {
    let page = |why: String| Verdict::PageOnly(format!("no rollback: {why}"));
    let running = short(&s.task_definition).to_string();
    let Some(record) = &s.record else {
        return Err(page(format!("{running} was not deployed by autopilot")));
    };
    // Before either way of finding autopilot's deployment: a deployment is
    // adopted (no recorded id) only for the service the record was written for.
    if record.service != b.key() {
        return Err(page(format!(
            "{running} is autopilot's deploy of {}, not of {}",
            record.service,
            b.key()
        )));
    }
    let ours = match record.deployment_id.as_deref() {
        Some(id) => s.deployments.iter().find(|d| d.id == id),
        // A push records no deployment id (its verdict does): until then
        // autopilot's deployment is recognised from ECS's own times.
        None => adopted(s).map_err(|why| {
            page(format!(
                "{running}'s record names no deployment yet, and ECS does not vouch for one as autopilot's: {why}"
            ))
        })?,
    };
    let Some(ours) = ours else {
        return Err(page(format!(
            "autopilot's deployment of {running} is no longer one of the service's (already rolled back or replaced)"
        )));
    };
    if ours.status != "PRIMARY" {
        return Err(page(format!(
            "autopilot's deployment {} is {}; another deployment is PRIMARY",
            ours.id, ours.status
        )));
    }
    let Some(created) = ours.created_at else {
        return Err(page(format!("deployment {} has no start time", ours.id)));
    };
    let age = now.signed_duration_since(created).num_seconds();
    if age > window {
        return Err(page(format!(
            "autopilot deployed {running} {} min ago, outside the {} min rollback window",
            age / 60,
            window / 60
        )));
    }
    // The one exception to "no action while a deployment is in flight": rolling
    // back autopilot's own deployment, which is the one failing.
    if let Some(other) = s.in_flight().filter(|d| d.id != ours.id) {
        return Err(Verdict::Refused(format!(
            "deployment {} is in progress; no rollback while ECS deploys",
            other.id
        )));
    }
    let earlier = revision_of(&record.previous).zip(revision_of(&s.task_definition));
    let same_family = family(&record.previous).is_some()
        && family(&record.previous) == family(&s.task_definition);
    match earlier {
        Some((previous, current)) if same_family && previous < current => {}
        _ => {
            return Err(page(format!(
                "the recorded previous revision `{}` is not an earlier revision of {running}",
                record.previous
            )))
        }
    }
    Ok(Action::Rollback {
        cluster: b.cluster.clone(),
        service: b.service.clone(),
        from: s.task_definition.clone(),
        to: record.previous.clone(),
    })
}

/// autopilot's deployment of the service's revision while its record names none
/// yet, by the rule deploy adopts it with ([`adopt`]): the first deployment of
/// the revision the service lists, created within the window after ECS
/// registered the revision. `None` when the service lists no deployment of it;
/// an error saying why when the first one cannot be autopilot's.
fn adopted(s: &ServiceState) -> Result<Option<&Deployment>, String> {
    let Some(first) = s
        .deployments
        .iter()
        .filter(|d| d.task_definition == s.task_definition)
        // A deployment without a time sorts first, and is refused by the check.
        .min_by_key(|d| d.created_at)
    else {
        return Ok(None);
    };
    let claim = adopt::Claim {
        revision_arn: s.task_definition.clone(),
        registered_at: s.registered_at.map(smithy),
        deployment_id: first.id.clone(),
        created: first.created_at.map(|t| Created::At(smithy(t))),
        // It is the first the service lists of its revision.
        earlier: None,
        // deploy also refuses a deployment created after autopilot registered a
        // later revision for the service. That does not apply here: the revision
        // is the service's current one, so no later revision of autopilot's is
        // what the service runs. (A circuit-breaker rollback onto this revision
        // after a later push is a new deployment of it: it is refused only while
        // autopilot's own deployment is still listed, the first and not PRIMARY.)
        later: None,
    };
    claim.check()?;
    Ok(Some(first))
}

fn smithy(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_secs_and_nanos(t.timestamp(), t.timestamp_subsec_nanos())
}

fn family(arn: &str) -> Option<&str> {
    arn.split_once(":task-definition/")
        .and_then(|(_, r)| r.rsplit_once(':'))
        .map(|(f, _)| f)
}

fn revision_of(arn: &str) -> Option<u32> {
    arn.rsplit_once(':').and_then(|(_, r)| r.parse().ok())
}

fn grow_storage(
    b: &DatabaseBounds,
    d: &DbState,
    guard: &Guard,
    now: i64,
) -> Result<Action, Verdict> {
    let page = Verdict::PageOnly;
    if let Some(max) = d.max_allocated_gib {
        return Err(page(format!(
            "storage autoscaling is on (MaxAllocatedStorage {max} GiB): RDS grows {} itself",
            b.instance
        )));
    }
    if d.status != "available" || d.pending_allocated_gib.is_some() {
        return Err(page(format!(
            "{} is `{}`{}: RDS allows the next storage change once this one is optimised, and no sooner than 6 hours after it",
            b.instance,
            d.status,
            d.pending_allocated_gib
                .map(|g| format!(" with {g} GiB pending"))
                .unwrap_or_default()
        )));
    }
    if let Some(last) = guard
        .last_storage_change
        .filter(|&t| now - t < STORAGE_CHANGE_INTERVAL_SECONDS)
    {
        return Err(page(format!(
            "autopilot last grew {} at {}, under 6 hours ago; RDS refuses another storage change until {}",
            b.instance,
            clock(last),
            clock(last + STORAGE_CHANGE_INTERVAL_SECONDS)
        )));
    }
    let from = d.allocated_gib;
    let ceiling = b.max_allocated_gib as i32;
    let grown = ceil_percent(from, 100 + b.grow_percent as i32);
    let least = ceil_percent(from, 110);
    let to = grown.min(ceiling);
    if to < least {
        return Err(Verdict::Refused(format!(
            "at the ceiling: {from} GiB allocated, maxAllocatedGiB {ceiling} (RDS needs growth of at least 10 %, to {least} GiB)"
        )));
    }
    Ok(Action::GrowStorage {
        instance: b.instance.clone(),
        from_gib: from,
        to_gib: to,
    })
}

fn ceil_percent(value: i32, percent: i32) -> i32 {
    ((value as i64 * percent as i64 + 99) / 100) as i32
}

fn on_ok(ctx: &Context, transition: &str) -> Plan {
    let mut plan = Plan::of(Verdict::Resolve(format!("{} is OK again", ctx.alarm.name)));
    let Some(scaled) = ctx.guard.scaled.as_ref() else {
        return plan;
    };
    if !scaled.alarms.contains(&ctx.alarm.name) {
        return plan;
    }
    match scale_in_plan(ctx, scaled, transition) {
        ScaleIn::Act(a) => plan.scale_in = Some(a),
        ScaleIn::Wait(why) => {
            plan.verdict = Verdict::Resolve(format!("{} is OK again; {why}", ctx.alarm.name))
        }
        ScaleIn::Release(why) => {
            plan.verdict = Verdict::Resolve(format!("{} is OK again; {why}", ctx.alarm.name));
            plan.release = Some(why);
        }
    }
    plan
}

/// The sweep's plan for a service still scaled out.
pub fn sweep(ctx: &Context) -> Plan {
    let Some(scaled) = ctx.guard.scaled.as_ref() else {
        return Plan {
            verdict: Verdict::Ignore("nothing left to scale back in".into()),
            scale_in: None,
            release: Some("nothing left to scale back in".into()),
        };
    };
    let transition = format!("sweep@{}", ctx.now.timestamp());
    match scale_in_plan(ctx, scaled, &transition) {
        ScaleIn::Act(a) => Plan {
            verdict: Verdict::Ignore("scaling back in".into()),
            scale_in: Some(a),
            release: None,
        },
        ScaleIn::Wait(why) => Plan::of(Verdict::Ignore(why)),
        ScaleIn::Release(why) => Plan {
            verdict: Verdict::Ignore(why.clone()),
            scale_in: None,
            release: Some(why),
        },
    }
}

enum ScaleIn {
    Act(Action),
    Wait(String),
    Release(String),
}

fn scale_in_plan(ctx: &Context, scaled: &Scaled, transition: &str) -> ScaleIn {
    let (Ok(Target::Service(b)), Some(Resource::Service(s))) = (ctx.target, ctx.resource) else {
        return ScaleIn::Release(
            "the service is no longer configured; leaving its count as it is".into(),
        );
    };
    if let Some(still) = scaled.alarms.iter().find(|a| {
        let state = if **a == ctx.alarm.name {
            Some(&ctx.alarm.state)
        } else {
            ctx.others.get(*a)
        };
        state != Some(&State::Ok)
    }) {
        // A missing alarm counts as not OK: scaling in under an alarm is the worse mistake.
        return ScaleIn::Wait(format!("scale-in waits: {still} is not OK yet"));
    }
    let now = ctx.now.timestamp();
    let rails = &ctx.config.guard;
    if ctx
        .flips
        .count_since(now, rails.flap_window.as_secs() as i64)
        > rails.flap_limit as usize
    {
        return ScaleIn::Wait("scale-in waits: the alarm is flapping".into());
    }
    match guard::gate(ctx.guard, transition, now, rails, true) {
        Gate::Open => {}
        // A retried OK whose step already ran: the next step is the sweep's, after the spacing.
        Gate::Done(_) => {
            return ScaleIn::Wait(
                "scale-in for this OK already ran; the sweep takes the next step".into(),
            )
        }
        Gate::Busy(why) => return ScaleIn::Wait(format!("scale-in waits: {why}")),
        Gate::Resume(action) => return ScaleIn::Act(action),
        Gate::Refused(why) => {
            return ScaleIn::Wait(format!(
                "scale-in waits ({why}); the sweep scales in after it"
            ))
        }
    }
    if let Some(Verdict::Refused(why)) = in_flight_refusal(s) {
        return ScaleIn::Wait(format!("scale-in waits: {why}"));
    }
    if scaled.via_target {
        let Some(target) = s.scalable else {
            return ScaleIn::Release("the auto scaling target is gone; nothing to restore".into());
        };
        if target.min != scaled.last {
            return ScaleIn::Release(format!(
                "the auto scaling minimum was changed outside autopilot (autopilot set {}, it is {}); leaving it",
                scaled.last, target.min
            ));
        }
        if target.min <= scaled.baseline {
            return ScaleIn::Release("the auto scaling minimum is back at its baseline".into());
        }
        return ScaleIn::Act(Action::SetMinCapacity {
            cluster: b.cluster.clone(),
            service: b.service.clone(),
            from: target.min,
            to: scaled.baseline,
            max: target.max,
        });
    }
    if s.desired != scaled.last {
        return ScaleIn::Release(format!(
            "desired count was changed outside autopilot (autopilot set {}, it is {}); leaving it",
            scaled.last, s.desired
        ));
    }
    let to = (s.desired - b.step as i32)
        .max(scaled.baseline)
        .max(b.min as i32);
    if to >= s.desired {
        return ScaleIn::Release("desired count is back at its baseline".into());
    }
    ScaleIn::Act(Action::SetDesiredCount {
        cluster: b.cluster.clone(),
        service: b.service.clone(),
        from: s.desired,
        to,
    })
}

/// Whether a claimed `action` (claimed at `claimed_at`) already took effect, so
/// resuming it must not repeat it: a second forced deployment or storage change
/// is not a no-op.
pub fn already_done(action: &Action, resource: Option<&Resource>, claimed_at: i64) -> bool {
    match (action, resource) {
        (Action::SetDesiredCount { to, .. }, Some(Resource::Service(s))) => s.desired == *to,
        (Action::SetMinCapacity { to, .. }, Some(Resource::Service(s))) => {
            s.scalable.is_some_and(|t| t.min == *to)
        }
        (Action::ForceDeployment { .. }, Some(Resource::Service(s))) => s
            .deployments
            .iter()
            .any(|d| d.created_at.is_some_and(|t| t.timestamp() >= claimed_at)),
        (Action::Rollback { to, .. }, Some(Resource::Service(s))) => &s.task_definition == to,
        (Action::GrowStorage { to_gib, .. }, Some(Resource::Database(d))) => {
            d.allocated_gib >= *to_gib || d.pending_allocated_gib.is_some_and(|p| p >= *to_gib)
        }
        _ => false,
    }
}

/// Whether `action`, whose call failed in a way that may come after AWS acted, took
/// effect: the resource read `before` the call against the one read `after` it. A
/// forced deployment shows as a deployment `before` did not have (by id: a time
/// would count one started in the same second before the call); the rest as in
/// [`already_done`].
pub fn took_effect(
    action: &Action,
    before: Option<&Resource>,
    after: &Resource,
    since: i64,
) -> bool {
    match (action, before, after) {
        (
            Action::ForceDeployment { .. },
            Some(Resource::Service(before)),
            Resource::Service(after),
        ) => after
            .deployments
            .iter()
            .any(|d| !before.deployments.iter().any(|b| b.id == d.id)),
        _ => already_done(action, Some(after), since),
    }
}

/// The guard once `action`, answering `alarm`, has ended with `result`.
pub fn settle(
    guard: &Guard,
    alarm: &str,
    action: &Action,
    result: &Result<(), String>,
    now: i64,
) -> Guard {
    let mut next = guard.clone();
    if let Some(claim) = next.claim.as_mut() {
        claim.result = Some(result.clone());
    }
    if result.is_err() {
        return next;
    }
    match action {
        Action::SetDesiredCount { from, to, .. } | Action::SetMinCapacity { from, to, .. } => {
            let via_target = matches!(action, Action::SetMinCapacity { .. });
            if to > from {
                let mut scaled = next.scaled.take().unwrap_or(Scaled {
                    alarms: Vec::new(),
                    baseline: *from,
                    last: *from,
                    via_target,
                });
                if !scaled.alarms.iter().any(|a| a == alarm) {
                    scaled.alarms.push(alarm.to_string());
                }
                if scaled.last != *from {
                    // Someone changed it since autopilot's last step: what they
                    // set is the new floor to come back to, never undone.
                    scaled.baseline = *from;
                }
                scaled.last = *to;
                scaled.via_target = via_target;
                next.scaled = Some(scaled);
            } else if let Some(scaled) = next.scaled.as_mut() {
                scaled.last = *to;
                if *to <= scaled.baseline {
                    next.scaled = None;
                }
            }
        }
        Action::GrowStorage { .. } => next.last_storage_change = Some(now),
        Action::ForceDeployment { .. } | Action::Rollback { .. } => {}
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarm::Kind;
    use crate::guard::claimed;
    use crate::runbook::tests::{alarm, config};
    use crate::runbook::{select, target};

    const ECS: &[(&str, &str)] = &[("ClusterName", "prod"), ("ServiceName", "web")];

    struct World {
        config: Config,
        alarm: Alarm,
        resource: Option<Resource>,
        guard: Guard,
        flips: Flips,
        others: BTreeMap<String, State>,
        now: DateTime<Utc>,
    }

    fn service(desired: i32) -> ServiceState {
        ServiceState {
            desired,
            running: desired,
            task_definition: "arn:aws:ecs:us-east-1:123456789012:task-definition/web:8".into(),
            deployments: vec![Deployment {
                id: "ecs-svc/8".into(),
                status: "PRIMARY".into(),
                rollout_state: "COMPLETED".into(),
                task_definition: "arn:aws:ecs:us-east-1:123456789012:task-definition/web:8".into(),
                created_at: Some("2026-11-24T02:50:00Z".parse().unwrap()),
            }],
            scalable: None,
            record: None,
            registered_at: None,
        }
    }

    fn world(
        namespace: &str,
        metric: &str,
        dims: &[(&str, &str)],
        cmp: &str,
        resource: Option<Resource>,
    ) -> World {
        let alarm = alarm(namespace, metric, dims, cmp);
        World {
            config: config(),
            now: alarm.state_updated + chrono::Duration::seconds(30),
            alarm,
            resource,
            guard: Guard::default(),
            flips: Flips::default(),
            others: BTreeMap::new(),
        }
    }

    fn cpu(desired: i32) -> World {
        world(
            "AWS/ECS",
            "CPUUtilization",
            ECS,
            "GreaterThanThreshold",
            Some(Resource::Service(service(desired))),
        )
    }

    fn run(w: &World) -> Plan {
        let (runbook, why) = select(&w.config, &w.alarm);
        let target = target(&w.config, runbook, &w.alarm);
        plan(&Context {
            config: &w.config,
            alarm: &w.alarm,
            runbook,
            why: &why,
            target: &target,
            resource: w.resource.as_ref(),
            guard: &w.guard,
            flips: &w.flips,
            others: &w.others,
            now: w.now,
        })
    }

    fn desired(from: i32, to: i32) -> Action {
        Action::SetDesiredCount {
            cluster: "prod".into(),
            service: "web".into(),
            from,
            to,
        }
    }

    #[test]
    fn cpu_high_scales_out_by_the_step_never_above_max() {
        assert_eq!(run(&cpu(2)).verdict, Verdict::Act(desired(2, 4)));
        assert_eq!(run(&cpu(9)).verdict, Verdict::Act(desired(9, 10)));
        assert!(
            matches!(run(&cpu(10)).verdict, Verdict::Refused(r) if r.starts_with("at maximum"))
        );
        // A count above the bound (someone scaled by hand) is never raised further.
        assert!(matches!(run(&cpu(12)).verdict, Verdict::Refused(_)));
    }

    #[test]
    fn with_an_auto_scaling_target_the_minimum_is_raised_within_its_maximum() {
        let mut w = cpu(3);
        let Some(Resource::Service(s)) = w.resource.as_mut() else {
            panic!()
        };
        s.scalable = Some(Scalable { min: 2, max: 6 });
        let set = |from, to, max| Action::SetMinCapacity {
            cluster: "prod".into(),
            service: "web".into(),
            from,
            to,
            max,
        };
        assert_eq!(run(&w).verdict, Verdict::Act(set(2, 5, 6)));
        let Some(Resource::Service(s)) = w.resource.as_mut() else {
            panic!()
        };
        s.desired = 5;
        assert_eq!(
            run(&w).verdict,
            Verdict::Act(set(2, 6, 6)),
            "never past the target's maximum"
        );
        let Some(Resource::Service(s)) = w.resource.as_mut() else {
            panic!()
        };
        s.scalable = Some(Scalable { min: 6, max: 6 });
        assert!(matches!(run(&w).verdict, Verdict::Refused(r) if r.starts_with("at maximum")));
    }

    #[test]
    fn no_action_while_a_deployment_is_in_flight() {
        let mut w = cpu(2);
        let Some(Resource::Service(s)) = w.resource.as_mut() else {
            panic!()
        };
        s.deployments[0].rollout_state = "IN_PROGRESS".into();
        assert!(
            matches!(run(&w).verdict, Verdict::Refused(r) if r.contains("ecs-svc/8 is in progress"))
        );
        let mut w = world(
            "AWS/ApplicationELB",
            "UnHealthyHostCount",
            &[("TargetGroup", "targetgroup/web/0123456789abcdef")],
            "GreaterThanThreshold",
            Some(Resource::Service(service(2))),
        );
        let Some(Resource::Service(s)) = w.resource.as_mut() else {
            panic!()
        };
        s.deployments.push(Deployment {
            id: "ecs-svc/7".into(),
            status: "ACTIVE".into(),
            ..Default::default()
        });
        assert!(matches!(run(&w).verdict, Verdict::Refused(_)));
    }

    #[test]
    fn guardrails_refuse_inside_the_cooldown_and_past_the_rate_limit() {
        let mut w = cpu(2);
        let earlier = w.now.timestamp() - 60;
        w.guard = claimed(
            &Guard::default(),
            "ALARM@1",
            "web-memory-high",
            &desired(2, 4),
            earlier,
            &w.config.guard,
        );
        w.guard.claim.as_mut().unwrap().result = Some(Ok(()));
        let Verdict::Refused(why) = run(&w).verdict else {
            panic!()
        };
        assert!(
            why.starts_with("cooldown until") && why.contains("web-memory-high"),
            "{why}"
        );
        w.guard.cooldown_until = None;
        w.guard.actions = vec![earlier - 30, earlier - 20, earlier];
        assert!(matches!(run(&w).verdict, Verdict::Refused(r) if r.starts_with("rate limit")));
    }

    #[test]
    fn a_flapping_alarm_stops_automatic_action() {
        let mut w = cpu(2);
        let now = w.now.timestamp();
        for i in 0..5 {
            w.flips.record(&format!("T{i}"), now - 100 + i, now, 3600);
        }
        assert!(matches!(run(&w).verdict, Verdict::Refused(r) if r.starts_with("flapping")));
        w.flips.transitions.truncate(4);
        assert!(matches!(run(&w).verdict, Verdict::Act(_)));
    }

    /// The alarm storm's bug: every flip of a flapping alarm resolved its
    /// incident and the next opened a new one, so a storm of 100 flips paged 50
    /// incidents. Now the first page that says it flaps is the last until it settles.
    #[test]
    fn a_flapping_alarm_is_one_incident_until_it_settles() {
        let start = cpu(2).alarm.state_updated.timestamp() - 60;
        // Flips the alarm (ALARM at even `i`, OK at odd) at second `i`, and
        // delivers it: what the plan says, in a word.
        let flip = |w: &mut World, i: i64| {
            let state = if i % 2 == 0 { State::Alarm } else { State::Ok };
            w.alarm.state = state;
            w.alarm.state_updated = DateTime::from_timestamp(start + i, 0).unwrap();
            w.now = w.alarm.state_updated;
            let t = w.alarm.transition();
            w.flips.record(&t, start + i, start + i, 3600);
            let verdict = run(w).verdict;
            w.flips.mark_handled(&t);
            match verdict {
                Verdict::Refused(r) if r.starts_with("flapping") => "flapping",
                Verdict::Refused(_) => "refused",
                Verdict::Act(_) => "act",
                Verdict::Resolve(_) => "resolve",
                Verdict::Ignore(r) if r.contains("incident stays open") => "held",
                other => panic!("{other:?}"),
            }
        };
        // The limit is 4: the 5th change is the first that flaps. It pages that
        // it flaps; then nothing resolves that incident or opens another.
        let mut w = cpu(2);
        let kinds: Vec<&str> = (0..12).map(|i| flip(&mut w, i)).collect();
        assert_eq!(
            kinds,
            [
                "act", "resolve", "act", "resolve", "flapping", "held", "held", "held", "held",
                "held", "held", "held"
            ]
        );
        // An hour later it has settled (one change in the window): an ALARM
        // acts, and its OK resolves.
        let kinds = [flip(&mut w, 3612), flip(&mut w, 3613)];
        assert_eq!(kinds, ["act", "resolve"]);

        // An OK that is the first change past the limit resolves: the incident
        // it ends was not paged as flapping. The next ALARM is.
        let mut w = cpu(2);
        w.config.guard.flap_limit = 3;
        let kinds: Vec<&str> = (0..6).map(|i| flip(&mut w, i)).collect();
        assert_eq!(
            kinds,
            ["act", "resolve", "act", "resolve", "flapping", "held"]
        );

        // A scale-out alarm the scaled-out service does not wait on yet is
        // refused and paged while it flaps, so that scaling in waits for it.
        let mut w = cpu(2);
        w.guard.scaled = Some(Scaled {
            alarms: vec!["another-alarm".into()],
            baseline: 2,
            last: 4,
            via_target: false,
        });
        let kinds: Vec<&str> = (0..8).map(|i| flip(&mut w, i)).collect();
        assert_eq!(
            kinds,
            ["act", "resolve", "act", "resolve", "flapping", "held", "flapping", "held"]
        );
    }

    #[test]
    fn a_duplicate_is_ignored_a_done_action_repaged_and_a_dead_claim_resumed() {
        let mut w = cpu(2);
        let t = w.alarm.transition();
        let now = w.now.timestamp();
        w.flips.record(&t, now, now, 3600);
        w.flips.mark_handled(&t);
        assert!(matches!(run(&w).verdict, Verdict::Ignore(r) if r.starts_with("duplicate")));
        w.flips = Flips::default();
        w.guard = claimed(
            &Guard::default(),
            &t,
            &w.alarm.name,
            &desired(2, 4),
            now - 10,
            &w.config.guard,
        );
        assert!(matches!(run(&w).verdict, Verdict::Busy(_)));
        w.guard.claim.as_mut().unwrap().at = now - 600;
        assert_eq!(run(&w).verdict, Verdict::Resume(desired(2, 4)));
        w.guard.claim.as_mut().unwrap().result = Some(Ok(()));
        assert!(matches!(run(&w).verdict, Verdict::Repage(_)));
    }

    fn rollback_world(created: &str, record_service: &str, previous: &str) -> World {
        let mut s = service(2);
        s.deployments[0].created_at = Some(created.parse().unwrap());
        s.record = Some(Record {
            repository: "web".into(),
            image_tag: "v2".into(),
            digest: "sha256:b".into(),
            previous: previous.into(),
            service: record_service.into(),
            push_event: None,
            push_event_time: None,
            deployment_id: Some("ecs-svc/8".into()),
            verdict: None,
            timeout_warned: None,
        });
        world(
            "AWS/ApplicationELB",
            "HTTPCode_Target_5XX_Count",
            &[("LoadBalancer", "app/web-alb/0123456789abcdef")],
            "GreaterThanThreshold",
            Some(Resource::Service(s)),
        )
    }

    const WEB7: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:7";
    const WEB8: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:8";

    /// A rollback world whose record names no deployment yet (a push records
    /// none), with web:8 registered `registered` seconds before its deployment.
    fn unrecorded_world(registered: i64) -> World {
        let mut w = rollback_world("2026-11-24T02:50:00Z", "prod/web", WEB7);
        let Some(Resource::Service(s)) = w.resource.as_mut() else {
            panic!()
        };
        s.record.as_mut().unwrap().deployment_id = None;
        s.deployments[0].rollout_state = "IN_PROGRESS".into();
        s.registered_at =
            Some(s.deployments[0].created_at.unwrap() - chrono::Duration::seconds(registered));
        w
    }

    #[test]
    fn without_a_recorded_id_the_first_deployment_inside_the_window_is_rolled_back() {
        // The push registered web:8 and started its deployment a second later; no verdict yet.
        let w = unrecorded_world(1);
        let Verdict::Act(Action::Rollback { from, to, .. }) = run(&w).verdict else {
            panic!("{:?}", run(&w))
        };
        assert_eq!((from.as_str(), to.as_str()), (WEB8, WEB7));
        // The old revision still draining does not change which one is autopilot's.
        let mut w = unrecorded_world(60);
        let Some(Resource::Service(s)) = w.resource.as_mut() else {
            panic!()
        };
        s.deployments.push(Deployment {
            id: "ecs-svc/7".into(),
            status: "ACTIVE".into(),
            rollout_state: "COMPLETED".into(),
            task_definition: WEB7.into(),
            created_at: Some("2026-11-24T01:00:00Z".parse().unwrap()),
        });
        assert!(matches!(
            run(&w).verdict,
            Verdict::Act(Action::Rollback { .. })
        ));
    }

    #[test]
    fn without_a_recorded_id_a_deployment_outside_the_window_pages_only() {
        // web:8 was registered 2 hours before this deployment of it: a forced
        // redeployment or someone's manual deploy, not the push's.
        let w = unrecorded_world(7200);
        let Verdict::PageOnly(why) = run(&w).verdict else {
            panic!("{:?}", run(&w))
        };
        assert!(
            why.starts_with("no rollback: web:8's record names no deployment yet")
                && why.contains("120 min after web:8 was registered")
                && why.contains("not the deployment autopilot started"),
            "{why}"
        );
        // No registration time from ECS: never a yes.
        let mut w = unrecorded_world(1);
        let Some(Resource::Service(s)) = w.resource.as_mut() else {
            panic!()
        };
        s.registered_at = None;
        assert!(
            matches!(run(&w).verdict, Verdict::PageOnly(r) if r.contains("no registration time"))
        );
    }

    #[test]
    fn without_a_recorded_id_another_services_record_is_never_adopted() {
        // web:8 was registered for prod/api; prod/web was pointed at it within
        // the window. Its deployment is not autopilot's push of prod/web.
        let mut w = unrecorded_world(1);
        let Some(Resource::Service(s)) = w.resource.as_mut() else {
            panic!()
        };
        s.record.as_mut().unwrap().service = "prod/api".into();
        let Verdict::PageOnly(why) = run(&w).verdict else {
            panic!("{:?}", run(&w))
        };
        assert!(
            why.contains("is autopilot's deploy of prod/api, not of prod/web"),
            "{why}"
        );
    }

    #[test]
    fn without_a_recorded_id_an_earlier_deployment_of_the_revision_means_page_only() {
        // Autopilot's deployment of web:8 is still listed; a later one of web:8
        // (a forced redeployment) is PRIMARY: that is not autopilot's to roll back.
        let mut w = unrecorded_world(1);
        let Some(Resource::Service(s)) = w.resource.as_mut() else {
            panic!()
        };
        s.deployments[0].status = "ACTIVE".into();
        s.deployments.insert(
            0,
            Deployment {
                id: "ecs-svc/9".into(),
                status: "PRIMARY".into(),
                rollout_state: "IN_PROGRESS".into(),
                task_definition: WEB8.into(),
                created_at: Some("2026-11-24T02:55:00Z".parse().unwrap()),
            },
        );
        let Verdict::PageOnly(why) = run(&w).verdict else {
            panic!("{:?}", run(&w))
        };
        assert!(
            why.contains(
                "autopilot's deployment ecs-svc/8 is ACTIVE; another deployment is PRIMARY"
            ),
            "{why}"
        );
        // The earlier one outside the window: the reason is the window's.
        let Some(Resource::Service(s)) = w.resource.as_mut() else {
            panic!()
        };
        s.registered_at = Some("2026-11-23T20:00:00Z".parse().unwrap());
        assert!(
            matches!(run(&w).verdict, Verdict::PageOnly(r) if r.contains("ecs-svc/8 was created"))
        );
    }

    #[test]
    fn five_xx_rolls_back_a_recent_autopilot_deploy_only() {
        let w = rollback_world("2026-11-24T02:50:00Z", "prod/web", WEB7);
        let Verdict::Act(Action::Rollback { to, .. }) = run(&w).verdict else {
            panic!("{:?}", run(&w))
        };
        assert_eq!(to, WEB7);
        // Outside the 30 minute window.
        let w = rollback_world("2026-11-24T02:00:00Z", "prod/web", WEB7);
        assert!(
            matches!(run(&w).verdict, Verdict::PageOnly(r) if r.contains("outside the 30 min"))
        );
        // Not autopilot's deploy.
        let mut w = rollback_world("2026-11-24T02:50:00Z", "prod/web", WEB7);
        let Some(Resource::Service(s)) = w.resource.as_mut() else {
            panic!()
        };
        s.record = None;
        assert!(
            matches!(run(&w).verdict, Verdict::PageOnly(r) if r.contains("not deployed by autopilot"))
        );
        // A record that lies: another service, a later revision, another family.
        for (svc, prev) in [
            ("prod/api", WEB7),
            (
                "prod/web",
                "arn:aws:ecs:us-east-1:123456789012:task-definition/web:9",
            ),
            (
                "prod/web",
                "arn:aws:ecs:us-east-1:123456789012:task-definition/evil:1",
            ),
            ("prod/web", ""),
        ] {
            let w = rollback_world("2026-11-24T02:50:00Z", svc, prev);
            assert!(
                matches!(run(&w).verdict, Verdict::PageOnly(_)),
                "{svc} {prev}"
            );
        }
    }

    #[test]
    fn a_rollback_of_autopilots_own_deployment_in_flight_is_the_exception() {
        let mut w = rollback_world("2026-11-24T02:50:00Z", "prod/web", WEB7);
        let Some(Resource::Service(s)) = w.resource.as_mut() else {
            panic!()
        };
        s.deployments[0].rollout_state = "IN_PROGRESS".into();
        assert!(matches!(
            run(&w).verdict,
            Verdict::Act(Action::Rollback { .. })
        ));
        // Once the circuit breaker rolled back, autopilot's deployment is no longer PRIMARY.
        let Some(Resource::Service(s)) = w.resource.as_mut() else {
            panic!()
        };
        s.deployments[0].status = "ACTIVE".into();
        s.deployments.insert(
            0,
            Deployment {
                id: "ecs-svc/9".into(),
                status: "PRIMARY".into(),
                rollout_state: "IN_PROGRESS".into(),
                ..Default::default()
            },
        );
        assert!(matches!(run(&w).verdict, Verdict::PageOnly(_)));
    }

    fn storage(db: DbState) -> World {
        world(
            "AWS/RDS",
            "FreeStorageSpace",
            &[("DBInstanceIdentifier", "orders-db")],
            "LessThanThreshold",
            Some(Resource::Database(db)),
        )
    }

    fn db(allocated: i32) -> DbState {
        DbState {
            allocated_gib: allocated,
            max_allocated_gib: None,
            status: "available".into(),
            pending_allocated_gib: None,
        }
    }

    #[test]
    fn storage_grows_by_the_percentage_up_to_the_ceiling() {
        let grow = |from, to| Action::GrowStorage {
            instance: "orders-db".into(),
            from_gib: from,
            to_gib: to,
        };
        assert_eq!(run(&storage(db(100))).verdict, Verdict::Act(grow(100, 120)));
        assert_eq!(
            run(&storage(db(101))).verdict,
            Verdict::Act(grow(101, 122)),
            "rounded up"
        );
        assert_eq!(
            run(&storage(db(450))).verdict,
            Verdict::Act(grow(450, 500)),
            "capped"
        );
        assert!(
            matches!(run(&storage(db(460))).verdict, Verdict::Refused(r) if r.starts_with("at the ceiling")),
            "under 10 % left"
        );
    }

    #[test]
    fn storage_autoscaling_a_pending_change_or_a_recent_one_page_only() {
        let mut d = db(100);
        d.max_allocated_gib = Some(1000);
        assert!(
            matches!(run(&storage(d)).verdict, Verdict::PageOnly(r) if r.contains("storage autoscaling is on"))
        );
        let mut d = db(100);
        d.status = "storage-optimization".into();
        assert!(
            matches!(run(&storage(d)).verdict, Verdict::PageOnly(r) if r.contains("storage-optimization"))
        );
        let mut w = storage(db(100));
        w.guard.last_storage_change = Some(w.now.timestamp() - 5 * 3600);
        assert!(matches!(run(&w).verdict, Verdict::PageOnly(r) if r.contains("under 6 hours")));
        w.guard.last_storage_change = Some(w.now.timestamp() - 7 * 3600);
        assert!(matches!(run(&w).verdict, Verdict::Act(_)));
    }

    #[test]
    fn page_only_alarms_unmapped_resources_and_composites_page() {
        let w = world(
            "AWS/RDS",
            "CPUUtilization",
            &[("DBInstanceIdentifier", "orders-db")],
            "GreaterThanThreshold",
            None,
        );
        assert!(matches!(run(&w).verdict, Verdict::PageOnly(r) if r.starts_with("runbook `page`")));
        let w = world(
            "AWS/ECS",
            "CPUUtilization",
            &[("ClusterName", "prod"), ("ServiceName", "billing")],
            "GreaterThanThreshold",
            None,
        );
        assert!(matches!(run(&w).verdict, Verdict::PageOnly(r) if r.contains("prod/billing")));
        let mut w = cpu(2);
        w.alarm.kind = Kind::Composite {
            rule: "ALARM(a)".into(),
        };
        assert!(matches!(run(&w).verdict, Verdict::PageOnly(_)));
    }

    #[test]
    fn insufficient_data_follows_the_policy() {
        let mut w = cpu(2);
        w.alarm.state = State::InsufficientData;
        assert!(matches!(run(&w).verdict, Verdict::Warn(_)));
        w.config.insufficient_data = InsufficientData::Ignore;
        assert!(matches!(run(&w).verdict, Verdict::Ignore(_)));
    }

    fn scaled_out(w: &mut World, baseline: i32, last: i32, at: i64) {
        let a = desired(baseline, last);
        w.guard = claimed(
            &Guard::default(),
            "ALARM@0",
            &w.alarm.name,
            &a,
            at,
            &w.config.guard,
        );
        w.guard = settle(&w.guard, &w.alarm.name, &a, &Ok(()), at);
    }

    #[test]
    fn ok_resolves_and_scales_in_toward_the_baseline_after_the_cooldown() {
        let mut w = cpu(6);
        w.alarm.state = State::Ok;
        let now = w.now.timestamp();
        scaled_out(&mut w, 2, 6, now - 60);
        let p = run(&w);
        assert!(
            matches!(&p.verdict, Verdict::Resolve(r) if r.contains("cooldown")),
            "{p:?}"
        );
        assert_eq!(p.scale_in, None);
        scaled_out(&mut w, 2, 6, now - 700);
        let p = run(&w);
        assert_eq!(p.scale_in, Some(desired(6, 4)), "one step at a time");
        // Someone else changed the count: leave it.
        let Some(Resource::Service(s)) = w.resource.as_mut() else {
            panic!()
        };
        s.desired = 8;
        let p = run(&w);
        assert!(p.release.is_some() && p.scale_in.is_none());
        // Another alarm that scaled it out is still firing.
        let Some(Resource::Service(s)) = w.resource.as_mut() else {
            panic!()
        };
        s.desired = 6;
        w.guard
            .scaled
            .as_mut()
            .unwrap()
            .alarms
            .push("web-memory-high".into());
        w.others.insert("web-memory-high".into(), State::Alarm);
        assert!(run(&w).scale_in.is_none());
    }

    #[test]
    fn a_retried_ok_does_not_take_a_second_step() {
        let mut w = cpu(6);
        w.alarm.state = State::Ok;
        let now = w.now.timestamp();
        scaled_out(&mut w, 2, 6, now - 700);
        let t = w.alarm.transition();
        let step = desired(6, 4);
        w.guard = claimed(&w.guard, &t, &w.alarm.name, &step, now - 5, &w.config.guard);
        w.guard = settle(&w.guard, &w.alarm.name, &step, &Ok(()), now - 5);
        let Some(Resource::Service(s)) = w.resource.as_mut() else {
            panic!()
        };
        s.desired = 4;
        let p = run(&w);
        assert_eq!(p.scale_in, None, "{p:?}");
        assert!(matches!(p.verdict, Verdict::Resolve(_)));
    }

    #[test]
    fn a_resumed_action_that_took_effect_is_not_repeated() {
        let s = service(2);
        let restart = Action::ForceDeployment {
            cluster: "prod".into(),
            service: "web".into(),
        };
        let created = s.deployments[0].created_at.unwrap().timestamp();
        let r = Resource::Service(s);
        assert!(
            already_done(&restart, Some(&r), created - 10),
            "a deployment started after the claim"
        );
        assert!(!already_done(&restart, Some(&r), created + 10));
        assert!(already_done(&desired(1, 2), Some(&r), 0));
        let grow = Action::GrowStorage {
            instance: "db".into(),
            from_gib: 100,
            to_gib: 120,
        };
        let mut d = db(100);
        assert!(!already_done(
            &grow,
            Some(&Resource::Database(d.clone())),
            0
        ));
        d.pending_allocated_gib = Some(120);
        assert!(already_done(&grow, Some(&Resource::Database(d)), 0));
    }

    #[test]
    fn a_failed_restart_took_effect_only_if_a_new_deployment_shows() {
        let restart = Action::ForceDeployment {
            cluster: "prod".into(),
            service: "web".into(),
        };
        let before = Resource::Service(service(2));
        // The deployment before the call started in the same second as the claim:
        // by time it would pass for the restart's (the fault matrix found this).
        let created = service(2).deployments[0].created_at.unwrap().timestamp();
        assert!(!took_effect(&restart, Some(&before), &before, created));
        let mut after = service(2);
        after.deployments.insert(
            0,
            Deployment {
                id: "ecs-svc/9".into(),
                created_at: None,
                ..after.deployments[0].clone()
            },
        );
        assert!(took_effect(
            &restart,
            Some(&before),
            &Resource::Service(after),
            created
        ));
        // Other actions are read as already_done reads them.
        let mut scaled = service(2);
        scaled.desired = 4;
        assert!(took_effect(
            &desired(2, 4),
            Some(&before),
            &Resource::Service(scaled),
            created
        ));
        assert!(!took_effect(
            &desired(2, 4),
            Some(&before),
            &before,
            created
        ));
    }

    #[test]
    fn a_manual_change_between_scale_outs_becomes_the_new_baseline() {
        let mut g = settle(&Guard::default(), "cpu", &desired(2, 4), &Ok(()), 1);
        g = settle(&g, "cpu", &desired(8, 10), &Ok(()), 2);
        let s = g.scaled.unwrap();
        assert_eq!((s.baseline, s.last), (8, 10));
    }

    #[test]
    fn settling_tracks_the_baseline_until_it_is_reached() {
        let mut g = Guard::default();
        g = settle(&g, "cpu", &desired(2, 4), &Ok(()), 1);
        g = settle(&g, "memory", &desired(4, 6), &Ok(()), 2);
        let s = g.scaled.clone().unwrap();
        assert_eq!((s.baseline, s.last, s.alarms.len()), (2, 6, 2));
        g = settle(&g, "cpu", &desired(6, 4), &Ok(()), 3);
        assert_eq!(g.scaled.as_ref().unwrap().last, 4);
        g = settle(&g, "cpu", &desired(4, 2), &Ok(()), 4);
        assert_eq!(g.scaled, None);
        let failed = settle(&g, "cpu", &desired(2, 4), &Err("denied".into()), 5);
        assert_eq!(
            failed.scaled, None,
            "a failed scale-out changes nothing to undo"
        );
    }
}
