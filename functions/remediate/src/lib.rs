//! remediate: a CloudWatch alarm runs its runbook (scale, restart, roll back,
//! grow storage) within durable guardrails, and on-call is paged with what was
//! done and why; the alarm's OK resolves the page.
//!
//! One function takes the alarm in any of its three deliveries (EventBridge,
//! SNS, the Lambda alarm action) and the `remediate-sweep` scheduled task, which
//! scales services back in once their alarm is OK and the cooldown has passed,
//! and the `remediate-heartbeat` task, which reads the guardrail table,
//! CloudWatch, the configured resources and the on-call topic and counts a heartbeat
//! (`autopilot_shared::metrics`).
//!
//! Per alarm transition: re-read the alarm (`observe`), record the transition,
//! read the resource and the guardrail state, decide (`plan`, pure), claim the
//! resource with a conditional write, act (`apply`), settle the claim, audit,
//! page, and mark the transition handled. A crash anywhere is finished by the
//! retry: a claimed action is resumed, a done one re-paged, a handled one ignored.

pub mod action;
pub mod alarm;
pub mod apply;
pub mod config;
pub mod error;
pub mod guard;
pub mod observe;
pub mod pages;
pub mod plan;
pub mod runbook;
pub mod store;

use crate::action::Action;
use crate::alarm::{Alarm, Input, State, Trigger};
use crate::apply::Clients;
use crate::config::{Config, ServiceBounds};
use crate::guard::{Flips, Guard, Versioned};
use crate::pages::About;
use crate::plan::{Context, Plan, Resource, Verdict};
use crate::runbook::{Runbook, Target};
use crate::store::{flips_key, guard_key, AuditEntry, Store};
use autopilot_shared::aws::AwsCallError;
use autopilot_shared::invocation::{self, record_resource, Failure, Outcome, Report};
use autopilot_shared::metrics::{self, name};
use autopilot_shared::{aws, Page, Pager};
use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use std::collections::BTreeMap;

pub use error::RemediateError;

/// The name pages and logs carry.
pub const FUNCTION: &str = "autopilot-remediate";

/// The heartbeat schedule's task (the `Heartbeat` schedule of RemediateFunction in `template.yaml`).
pub const HEARTBEAT_TASK: &str = "remediate-heartbeat";

/// How often a lost race for a guardrail item is read again and re-planned.
const WRITE_ATTEMPTS: usize = 5;

/// The remediate function: its configuration and clients, built once per cold start.
#[derive(Debug, Clone)]
pub struct Remediator {
    cw: aws_sdk_cloudwatch::Client,
    store: Store,
    clients: Clients,
    pager: Pager,
    config: Config,
    region: Option<String>,
}

/// Everything read about one alarm transition.
struct Observed {
    alarm: Alarm,
    runbook: Runbook,
    why: String,
    target: Result<Target, String>,
    resource: Option<Resource>,
    guard: Versioned<Guard>,
    flips: Versioned<Flips>,
    others: BTreeMap<String, State>,
}

impl Remediator {
    pub fn new(sdk: &SdkConfig, config: Config) -> Self {
        let sdk = aws::for_function(sdk, FUNCTION);
        Self {
            cw: aws_sdk_cloudwatch::Client::new(&sdk),
            store: Store::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table),
            clients: Clients {
                ecs: aws_sdk_ecs::Client::new(&sdk),
                aas: aws_sdk_applicationautoscaling::Client::new(&sdk),
                rds: aws_sdk_rds::Client::new(&sdk),
            },
            pager: Pager::for_function(&sdk, &config.common, FUNCTION),
            region: sdk.region().map(|r| r.to_string()),
            config,
        }
    }

    /// The Lambda handler.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Report, Failure> {
        // Boxed: the handler's future type is deep enough to exceed the compiler's layout limit.
        let work = Box::pin(self.dispatch(event.payload));
        invocation::run(FUNCTION, &event.context, work).await
    }

    async fn dispatch(&self, payload: Value) -> Result<Report, RemediateError> {
        if metrics::is_task(&payload, HEARTBEAT_TASK) {
            return Ok(Report {
                event: format!("Scheduled Task {HEARTBEAT_TASK}"),
                dry_run: self.config.common.dry_run,
                outcomes: self.heartbeat().await?,
            });
        }
        let (event, outcomes) = match alarm::parse(payload)? {
            Input::Alarms(triggers) => {
                let mut outcomes = Vec::new();
                for trigger in &triggers {
                    outcomes.push(Box::pin(self.on_trigger(trigger)).await?);
                }
                ("CloudWatch Alarm State Change".to_string(), outcomes)
            }
            Input::Sweep => (
                format!("Scheduled Task {}", alarm::SWEEP_TASK),
                Box::pin(self.on_sweep()).await?,
            ),
        };
        Ok(Report {
            event,
            dry_run: self.config.common.dry_run,
            outcomes,
        })
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn on_trigger(&self, t: &Trigger) -> Result<Outcome, RemediateError> {
        record_resource(&t.alarm_name);
        let ignore = |why: String| {
            Outcome::new(&t.alarm_name, "ignore", why).with("delivery", t.delivery.as_str())
        };
        if let (Some(theirs), Some(ours)) = (&t.region, &self.region) {
            if theirs != ours {
                return Ok(ignore(format!(
                    "the alarm is in {theirs}; this function acts in {ours}"
                )));
            }
        }
        // The prefix narrows the EventBridge rule and the alarm-action permission;
        // an SNS topic anyone may publish to is narrowed here.
        if !t.alarm_name.starts_with(&self.config.alarm_name_prefix) {
            return Ok(ignore(format!(
                "the alarm's name does not start with `{}`",
                self.config.alarm_name_prefix
            )));
        }
        if t.alarm_name.starts_with(metrics::SELF_ALARM_PREFIX) {
            return Ok(ignore(
                "one of autopilot's alarms on itself: it pages on-call itself".into(),
            ));
        }
        if t.alarm_name.starts_with("TargetTracking-") {
            return Ok(ignore(
                "an Application Auto Scaling target-tracking alarm: its scaling policy answers it"
                    .into(),
            ));
        }
        let Some(alarm) = observe::alarm(&self.cw, &t.alarm_name).await? else {
            return Ok(ignore(
                "CloudWatch has no such alarm (deleted, or the event lies)".into(),
            ));
        };
        if let Some(time) = t.state_time {
            if time > alarm.state_updated + chrono::Duration::seconds(1) {
                // The event is newer than what DescribeAlarms shows: CloudWatch has
                // not caught up. Retry rather than drop an ALARM.
                return Err(RemediateError::Busy(format!(
                    "{}: the event's state change at {time} is newer than CloudWatch's ({})",
                    alarm.name, alarm.state_updated
                )));
            }
        }
        if alarm.state != t.state {
            return Ok(ignore(format!(
                "stale: the event says {} but the alarm is {} since {}",
                t.state,
                alarm.state,
                alarm.state_updated.format("%H:%M:%S UTC")
            )));
        }
        self.handle_alarm(alarm, t.delivery.as_str()).await
    }

    /// Observes, plans and carries out one alarm transition; re-plans when another
    /// invocation claimed the resource first.
    async fn handle_alarm(&self, alarm: Alarm, delivery: &str) -> Result<Outcome, RemediateError> {
        let now = self.now();
        let transition = alarm.transition();
        let flips = self.record_transition(&alarm, now).await?;
        let (runbook, why) = runbook::select(&self.config, &alarm);
        let target = runbook::target(&self.config, runbook, &alarm);
        let mut observed = Observed {
            alarm,
            runbook,
            why,
            target,
            resource: None,
            guard: Versioned::default(),
            flips,
            others: BTreeMap::new(),
        };
        for _ in 0..WRITE_ATTEMPTS {
            if let Err(e) = self.observe_resource(&mut observed).await {
                // Cannot act without the resource's state; on-call still hears of
                // the alarm, and the invocation fails so Lambda retries it.
                self.page_unreadable(&observed, &e, now).await?;
                return Err(e);
            }
            let plan = self.plan(&observed, now);
            match self.carry_out(&observed, &plan, now).await? {
                Some(outcome) => {
                    return Ok(outcome
                        .with("delivery", delivery)
                        .with("transition", &transition))
                }
                None => continue, // lost the claim to another invocation: read again
            }
        }
        Err(RemediateError::Busy(format!(
            "{}: the guardrail item kept changing under {WRITE_ATTEMPTS} attempts",
            observed.alarm.name
        )))
    }

    fn plan(&self, o: &Observed, now: DateTime<Utc>) -> Plan {
        plan::plan(&self.context(o, now))
    }

    fn context<'a>(&'a self, o: &'a Observed, now: DateTime<Utc>) -> Context<'a> {
        Context {
            config: &self.config,
            alarm: &o.alarm,
            runbook: o.runbook,
            why: &o.why,
            target: &o.target,
            resource: o.resource.as_ref(),
            guard: &o.guard.value,
            flips: &o.flips.value,
            others: &o.others,
            now,
        }
    }

    /// Reads what the plan needs: the guard, the resource and the other alarms
    /// of a scale-out. Page-only alarms and INSUFFICIENT_DATA read nothing more.
    async fn observe_resource(&self, o: &mut Observed) -> Result<(), RemediateError> {
        let Ok(target) = &o.target else {
            return Ok(());
        };
        let acting = match o.alarm.state {
            State::Alarm => o.runbook != Runbook::Page,
            State::Ok => o.runbook == Runbook::ScaleOut,
            State::InsufficientData => false,
        };
        if !acting {
            return Ok(());
        }
        o.guard = self.store.get(guard_key(&target.key())).await?;
        if o.alarm.state == State::Ok
            && !o
                .guard
                .value
                .scaled
                .as_ref()
                .is_some_and(|s| s.alarms.contains(&o.alarm.name))
        {
            return Ok(()); // nothing of this alarm's to scale back in
        }
        o.resource = Some(self.resource(target, o.runbook).await?);
        if let Some(scaled) = &o.guard.value.scaled {
            let others: Vec<String> = scaled
                .alarms
                .iter()
                .filter(|a| **a != o.alarm.name)
                .cloned()
                .collect();
            o.others = observe::states(&self.cw, &others).await?;
            o.others.insert(o.alarm.name.clone(), o.alarm.state);
        }
        Ok(())
    }

    /// The state of the resource a runbook acts on.
    async fn resource(
        &self,
        target: &Target,
        runbook: Runbook,
    ) -> Result<Resource, RemediateError> {
        Ok(match target {
            Target::Service(b) => Resource::Service(
                observe::service(
                    &self.clients.ecs,
                    &self.clients.aas,
                    b,
                    runbook == Runbook::ScaleOut,
                    runbook == Runbook::Rollback,
                )
                .await?,
            ),
            Target::Database(b) => {
                Resource::Database(observe::database(&self.clients.rds, b).await?)
            }
        })
    }

    /// After an action's call failed in a way that may come after AWS carried it out
    /// (a timeout, a dropped connection, a 5xx answer; not a refusal or throttling). Reads the resource again, and when
    /// the action shows there (`plan::already_done`) it took effect: it is settled as
    /// done, so the cooldown and the sweep's scale-in know of it, instead of being
    /// paged as failed while the service runs scaled out and forgotten. If the read
    /// fails too, the failure stands.
    async fn verify(
        &self,
        o: &Observed,
        action: &Action,
        since: i64,
        error: String,
    ) -> Result<(), String> {
        let Ok(target) = &o.target else {
            return Err(error);
        };
        match self.resource(target, o.runbook).await {
            Ok(now) if plan::took_effect(action, o.resource.as_ref(), &now, since) => {
                tracing::warn!(resource = %target.key(), action = action.verb(), error = %error, reason = "the call failed, but a read shows the action took effect", "remediation verified");
                Ok(())
            }
            _ => Err(error),
        }
    }

    /// Adds this transition to the alarm's recent ones (for flapping and duplicates).
    async fn record_transition(
        &self,
        alarm: &Alarm,
        now: DateTime<Utc>,
    ) -> Result<Versioned<Flips>, RemediateError> {
        let key = || flips_key(&alarm.name);
        // Handled transitions are kept at least as long as any redelivery can come
        // (EventBridge retries for an hour), whatever the flap window.
        let keep = (self.config.guard.flap_window.as_secs() as i64).max(3 * 3600);
        for _ in 0..WRITE_ATTEMPTS {
            let mut flips: Versioned<Flips> = self.store.get(key()).await?;
            if !flips.value.record(
                &alarm.transition(),
                alarm.state_updated.timestamp(),
                now.timestamp(),
                keep,
            ) {
                return Ok(flips);
            }
            if self.store.put(key(), &flips.value, flips.version).await? {
                flips.version = Some(flips.version.unwrap_or(0) + 1);
                return Ok(flips);
            }
        }
        Err(RemediateError::Busy(format!(
            "{}: its transitions item kept changing",
            alarm.name
        )))
    }

    /// Marks the transition handled once every page about it went out.
    async fn mark_handled(&self, alarm: &Alarm) -> Result<(), RemediateError> {
        let key = || flips_key(&alarm.name);
        for _ in 0..WRITE_ATTEMPTS {
            let mut flips: Versioned<Flips> = self.store.get(key()).await?;
            if !flips.value.mark_handled(&alarm.transition()) {
                return Ok(());
            }
            if self.store.put(key(), &flips.value, flips.version).await? {
                return Ok(());
            }
        }
        Err(RemediateError::Busy(format!(
            "{}: its transitions item kept changing",
            alarm.name
        )))
    }

    /// Carries a plan out. `None`: another invocation claimed the resource first.
    async fn carry_out(
        &self,
        o: &Observed,
        plan: &Plan,
        now: DateTime<Utc>,
    ) -> Result<Option<Outcome>, RemediateError> {
        if let Verdict::Busy(why) = &plan.verdict {
            return Err(RemediateError::Busy(format!("{}: {why}", o.alarm.name)));
        }
        let dry_run = self.config.common.dry_run;
        let subject = match &o.target {
            Ok(t) => t.key(),
            Err(_) => format!("alarm:{}", o.alarm.name),
        };
        let action = plan.action().cloned();
        let mut result: Option<Result<(), String>> = None;
        if let Some(action) = &action {
            if !dry_run {
                if plan.resumes() {
                    // Take the dead invocation's claim over with a write on the
                    // version read: of several deliveries that find it past its
                    // lease at once (Lambda's retries of one transition's three
                    // deliveries), one resumes it and the others read again and
                    // find a live claim. Without it all of them acted (the soak).
                    let mut taken = o.guard.value.clone();
                    if let Some(claim) = taken.claim.as_mut() {
                        claim.at = now.timestamp();
                    }
                    if !self
                        .store
                        .put(guard_key(&subject), &taken, o.guard.version)
                        .await?
                    {
                        return Ok(None);
                    }
                } else {
                    let claimed = guard::claimed(
                        &o.guard.value,
                        &o.alarm.transition(),
                        &o.alarm.name,
                        action,
                        now.timestamp(),
                        &self.config.guard,
                    );
                    if !self
                        .store
                        .put(guard_key(&subject), &claimed, o.guard.version)
                        .await?
                    {
                        return Ok(None);
                    }
                }
                let claimed_at = o
                    .guard
                    .value
                    .claim
                    .as_ref()
                    .map(|c| c.at)
                    .unwrap_or_default();
                let outcome = if plan.resumes()
                    && plan::already_done(action, o.resource.as_ref(), claimed_at)
                {
                    // The dead invocation's action took effect; never repeat it.
                    Ok(())
                } else {
                    match apply::act(&self.clients, action).await {
                        Err(e) if e.may_have_happened => {
                            let since = if plan.resumes() {
                                claimed_at
                            } else {
                                now.timestamp()
                            };
                            self.verify(o, action, since, e.message).await
                        }
                        Err(e) => Err(e.message),
                        Ok(()) => Ok(()),
                    }
                };
                if let Err(e) = &outcome {
                    tracing::error!(resource = %subject, action = action.verb(), error = %e, "remediation failed");
                }
                self.settle(&subject, &o.alarm.name, action, &outcome, now)
                    .await?;
                result = Some(outcome);
            }
        } else if let Some(why) = &plan.release {
            if !dry_run {
                self.release(&subject, why).await?;
            }
        } else if !dry_run {
            match &plan.verdict {
                // A crash after settling may have left the sweep's list behind.
                Verdict::Repage(_) if o.guard.value.scaled.is_some() => {
                    self.store.set_pending(&subject, true).await?
                }
                // A scale-out alarm refused while the service is scaled out must
                // also be OK before it scales back in.
                Verdict::Refused(_) if o.runbook == Runbook::ScaleOut => {
                    self.watch(&subject, &o.alarm.name).await?
                }
                _ => {}
            }
        }
        let datapoints = match (o.alarm.metric(), needs_page(&plan.verdict, &self.config)) {
            (Some(m), true) => observe::datapoints(&self.cw, m, now).await,
            _ => Ok(Vec::new()),
        };
        let about = About {
            alarm: &o.alarm,
            runbook: o.runbook,
            why: &o.why,
            resource: o.target.as_ref().ok().map(Target::key),
            bounds: o.target.as_ref().ok().map(bounds),
            datapoints: &datapoints,
            dry_run,
        };
        let page = pages::page(&about, &plan.verdict, action.as_ref(), result.as_ref());
        let (decision, reason) = describe(&plan.verdict, action.as_ref(), result.as_ref());
        match (&plan.verdict, &result) {
            (_, Some(Ok(()))) => metrics::count(FUNCTION, name::REMEDIATIONS_TAKEN),
            (_, Some(Err(_))) => metrics::count(FUNCTION, name::REMEDIATIONS_FAILED),
            (Verdict::Refused(_), None) => metrics::count(FUNCTION, name::REMEDIATIONS_REFUSED),
            _ => {}
        }
        self.store
            .audit(&AuditEntry {
                subject: subject.clone(),
                time: now,
                alarm: o.alarm.name.clone(),
                transition: o.alarm.transition(),
                runbook: o.runbook.to_string(),
                decision: decision.to_string(),
                reason: reason.clone(),
                action: action
                    .as_ref()
                    .map(|a| a.verb().to_string())
                    .unwrap_or_default(),
                before: action.as_ref().map(Action::before).unwrap_or_default(),
                after: action.as_ref().map(Action::after).unwrap_or_default(),
                dry_run,
                expires_at: now.timestamp() + self.config.audit_ttl.as_secs() as i64,
            })
            .await?;
        let mut outcome = Outcome::new(&subject, decision, reason)
            .with("alarm", &o.alarm.name)
            .with("state", o.alarm.state.as_str())
            .with("runbook", o.runbook.as_str());
        if let Some(a) = &action {
            outcome = outcome.with("before", a.before()).with("after", a.after());
        }
        if let Some(page) = &page {
            let id = self.send(page).await?;
            outcome = outcome
                .with("page", page.action.as_str())
                .with("message_id", id);
        }
        self.mark_handled(&o.alarm).await?;
        Ok(Some(outcome))
    }

    async fn send(&self, page: &Page) -> Result<String, RemediateError> {
        Ok(self.pager.send(page).await?)
    }

    /// The heartbeat: one read of the guardrail table (an item no resource
    /// has), of CloudWatch's alarms, of each configured cluster's services and
    /// database, and of the on-call topic (GetTopicAttributes, its one grant
    /// of its own). Writes nothing, pages no one; counts a heartbeat when every
    /// read answered.
    async fn heartbeat(&self) -> Result<Vec<Outcome>, RemediateError> {
        record_resource(HEARTBEAT_TASK);
        let table = self.store.table().to_string();
        let mut checks = vec![(
            format!("DynamoDB table {table}"),
            self.store
                .get::<Guard>(("heartbeat#".to_string(), "heartbeat"))
                .await
                .map(|_| ()),
        )];
        let alarms = self
            .cw
            .describe_alarms()
            .max_records(1)
            .send()
            .await
            .map(|_| ())
            .map_err(AwsCallError::of("DescribeAlarms", "CloudWatch alarms"));
        checks.push(("CloudWatch alarms".to_string(), alarms));
        let mut clusters: Vec<(&str, Vec<String>)> = Vec::new();
        for b in &self.config.services {
            match clusters.iter_mut().find(|(c, _)| *c == b.cluster) {
                Some((_, services)) if services.len() < 10 => services.push(b.service.clone()),
                Some(_) => {}
                None => clusters.push((&b.cluster, vec![b.service.clone()])),
            }
        }
        for (cluster, services) in clusters {
            let result = self
                .clients
                .ecs
                .describe_services()
                .cluster(cluster)
                .set_services(Some(services))
                .send()
                .await
                .map(|_| ())
                .map_err(AwsCallError::of("DescribeServices", cluster));
            checks.push((format!("ECS cluster {cluster}"), result));
        }
        for db in &self.config.databases {
            let result = self
                .clients
                .rds
                .describe_db_instances()
                .db_instance_identifier(&db.instance)
                .send()
                .await
                .map(|_| ())
                .map_err(AwsCallError::of("DescribeDBInstances", &db.instance));
            checks.push((format!("RDS instance {}", db.instance), result));
        }
        checks.push(self.pager.check_topic().await);
        Ok(metrics::heartbeat(FUNCTION, checks))
    }

    /// Reads the resource's guard, lets `change` edit it (returning whether it
    /// did), and writes it back conditioned on the version read, again until it
    /// wins. Returns whether the service is scaled out afterwards, if it changed.
    async fn update_guard(
        &self,
        subject: &str,
        change: impl Fn(&mut Guard) -> bool,
    ) -> Result<Option<bool>, RemediateError> {
        for _ in 0..WRITE_ATTEMPTS {
            let mut current: Versioned<Guard> = self.store.get(guard_key(subject)).await?;
            if !change(&mut current.value) {
                return Ok(None);
            }
            if self
                .store
                .put(guard_key(subject), &current.value, current.version)
                .await?
            {
                return Ok(Some(current.value.scaled.is_some()));
            }
        }
        Err(RemediateError::Busy(format!(
            "{subject}: its guardrail item kept changing"
        )))
    }

    /// Records how a claimed action ended, and whether the service is scaled out.
    async fn settle(
        &self,
        subject: &str,
        alarm: &str,
        action: &Action,
        result: &Result<(), String>,
        now: DateTime<Utc>,
    ) -> Result<(), RemediateError> {
        let settled = self
            .update_guard(subject, |g| {
                *g = plan::settle(g, alarm, action, result, now.timestamp());
                true
            })
            .await?;
        // Idempotent either way: a resumed scale-out is on the sweep's list, a
        // scale-in back to the baseline is not.
        let scaling = matches!(
            action,
            Action::SetDesiredCount { .. } | Action::SetMinCapacity { .. }
        );
        match settled {
            Some(true) => self.store.set_pending(subject, true).await?,
            Some(false) if scaling => self.store.set_pending(subject, false).await?,
            _ => {}
        }
        Ok(())
    }

    /// Adds `alarm` to the alarms a scaled-out service waits on before scaling in.
    async fn watch(&self, subject: &str, alarm: &str) -> Result<(), RemediateError> {
        self.update_guard(subject, |g| match g.scaled.as_mut() {
            Some(s) if !s.alarms.iter().any(|a| a == alarm) => {
                s.alarms.push(alarm.to_string());
                true
            }
            _ => false,
        })
        .await?;
        Ok(())
    }

    /// Pages that an alarm could not be handled because its resource could not be read.
    async fn page_unreadable(
        &self,
        o: &Observed,
        error: &RemediateError,
        now: DateTime<Utc>,
    ) -> Result<(), RemediateError> {
        if o.alarm.state != State::Alarm {
            return Ok(()); // an OK's scale-in waits for the sweep; nothing to tell yet
        }
        let datapoints = match o.alarm.metric() {
            Some(m) => observe::datapoints(&self.cw, m, now).await,
            None => Ok(Vec::new()),
        };
        let about = About {
            alarm: &o.alarm,
            runbook: o.runbook,
            why: &o.why,
            resource: o.target.as_ref().ok().map(Target::key),
            bounds: o.target.as_ref().ok().map(bounds),
            datapoints: &datapoints,
            dry_run: self.config.common.dry_run,
        };
        let verdict = Verdict::PageOnly(format!(
            "could not read the resource's state, so no action was taken: {error}"
        ));
        if let Some(page) = pages::page(&about, &verdict, None, None) {
            self.send(&page).await?;
        }
        Ok(())
    }

    /// Forgets a scale-out that is over or was taken over by someone else.
    async fn release(&self, subject: &str, why: &str) -> Result<(), RemediateError> {
        let released = self
            .update_guard(subject, |g| g.scaled.take().is_some())
            .await?;
        if released.is_some() {
            tracing::info!(resource = %subject, reason = %why, "scale-in released");
        }
        self.store.set_pending(subject, false).await?;
        Ok(())
    }

    /// Scales back in the services whose alarms are OK and whose cooldown has passed.
    async fn on_sweep(&self) -> Result<Vec<Outcome>, RemediateError> {
        let mut outcomes = Vec::new();
        let mut errors = Vec::new();
        for resource in self.store.pending().await? {
            match Box::pin(self.sweep_one(&resource)).await {
                Ok(o) => outcomes.push(o),
                Err(e) => {
                    tracing::error!(resource = %resource, error = %e, "sweep failed");
                    errors.push(e);
                }
            }
        }
        if !errors.is_empty() {
            return Err(RemediateError::Several(errors));
        }
        if outcomes.is_empty() {
            outcomes.push(Outcome::new("-", "skip", "no service is scaled out"));
        }
        Ok(outcomes)
    }

    async fn sweep_one(&self, resource: &str) -> Result<Outcome, RemediateError> {
        let Some(b) = service_of_key(&self.config, resource) else {
            self.release(resource, "not configured").await?;
            return Ok(Outcome::new(
                resource,
                "release",
                "the service is no longer configured",
            ));
        };
        let guard: Versioned<Guard> = self.store.get(guard_key(resource)).await?;
        let Some(scaled) = guard.value.scaled.clone() else {
            self.store.set_pending(resource, false).await?;
            return Ok(Outcome::new(
                resource,
                "release",
                "nothing left to scale back in",
            ));
        };
        let Some(first) = scaled.alarms.first() else {
            self.release(resource, "no alarm recorded").await?;
            return Ok(Outcome::new(resource, "release", "no alarm recorded"));
        };
        let Some(alarm) = observe::alarm(&self.cw, first).await? else {
            self.release(resource, "its alarm is gone").await?;
            return Ok(Outcome::new(
                resource,
                "release",
                format!("alarm {first} no longer exists"),
            ));
        };
        let now = self.now();
        let target = Ok(Target::Service(b.clone()));
        let state = observe::service(&self.clients.ecs, &self.clients.aas, b, true, false).await?;
        let others = observe::states(&self.cw, &scaled.alarms).await?;
        let flips: Versioned<Flips> = self.store.get(flips_key(&alarm.name)).await?;
        let resource_state = Resource::Service(state);
        let ctx = Context {
            config: &self.config,
            alarm: &alarm,
            runbook: Runbook::ScaleOut,
            why: "scaling back in after a scale-out",
            target: &target,
            resource: Some(&resource_state),
            guard: &guard.value,
            flips: &flips.value,
            others: &others,
            now,
        };
        let plan = plan::sweep(&ctx);
        let dry_run = self.config.common.dry_run;
        if let Some(action) = &plan.scale_in {
            let outcome = Outcome::new(
                resource,
                "scale-in",
                format!("{} is OK and the cooldown has passed", alarm.name),
            )
            .with("before", action.before())
            .with("after", action.after());
            if dry_run {
                return Ok(outcome.with("dry_run", "would"));
            }
            let transition = format!("sweep@{}", now.timestamp());
            let claimed = guard::claimed(
                &guard.value,
                &transition,
                &alarm.name,
                action,
                now.timestamp(),
                &self.config.guard,
            );
            if !self
                .store
                .put(guard_key(resource), &claimed, guard.version)
                .await?
            {
                return Ok(Outcome::new(
                    resource,
                    "skip",
                    "another invocation changed the guardrail state; the next sweep retries",
                ));
            }
            let result = apply::act(&self.clients, action)
                .await
                .map_err(|e| e.message);
            self.settle(resource, &alarm.name, action, &result, now)
                .await?;
            let about = About {
                alarm: &alarm,
                runbook: Runbook::ScaleOut,
                why: "scaling back in after a scale-out",
                resource: Some(resource.to_string()),
                bounds: Some(bounds(&Target::Service(b.clone()))),
                datapoints: &Ok(Vec::new()),
                dry_run,
            };
            let verdict =
                Verdict::Resolve(format!("{} is OK and the cooldown has passed", alarm.name));
            if let Some(mut page) = pages::page(&about, &verdict, Some(action), Some(&result)) {
                // Scaling in is news, not the alarm's incident: pages of their own
                // (info on success, which the relay does not open; critical on failure).
                page.action = autopilot_shared::pager::Action::Trigger;
                page = page.dedup_key(format!("{}/scale-in", pages::dedup_key(&alarm.name)));
                self.send(&page).await?;
            }
            self.store
                .audit(&AuditEntry {
                    subject: resource.to_string(),
                    time: now,
                    alarm: alarm.name.clone(),
                    transition,
                    runbook: Runbook::ScaleOut.to_string(),
                    decision: if result.is_ok() { "scale-in" } else { "failed" }.into(),
                    reason: result
                        .clone()
                        .err()
                        .unwrap_or_else(|| "alarm OK, cooldown passed".into()),
                    action: action.verb().into(),
                    before: action.before(),
                    after: action.after(),
                    dry_run,
                    expires_at: now.timestamp() + self.config.audit_ttl.as_secs() as i64,
                })
                .await?;
            return Ok(match result {
                Ok(()) => outcome,
                Err(e) => Outcome::new(resource, "failed", e),
            });
        }
        if let Some(why) = &plan.release {
            if !dry_run {
                self.release(resource, why).await?;
            }
            return Ok(Outcome::new(resource, "release", why.clone()));
        }
        let why = match &plan.verdict {
            Verdict::Ignore(why) => why.clone(),
            other => format!("{other:?}"),
        };
        Ok(Outcome::new(resource, "wait", why))
    }
}

/// Whether the verdict pages (and so needs datapoints).
fn needs_page(verdict: &Verdict, _config: &Config) -> bool {
    !matches!(
        verdict,
        Verdict::Ignore(_) | Verdict::Busy(_) | Verdict::Resolve(_)
    )
}

/// `desired count 2–10, step 2` or `storage up to 1000 GiB, 20 % a step`.
fn bounds(target: &Target) -> String {
    match target {
        Target::Service(s) => format!("desired count {}–{}, step {}", s.min, s.max, s.step),
        Target::Database(d) => format!(
            "storage up to {} GiB, {} % a step",
            d.max_allocated_gib, d.grow_percent
        ),
    }
}

/// The decision word and reason for logs and the audit trail.
fn describe(
    verdict: &Verdict,
    action: Option<&Action>,
    result: Option<&Result<(), String>>,
) -> (&'static str, String) {
    if let Some(Err(e)) = result {
        return ("failed", e.clone());
    }
    match verdict {
        Verdict::Act(a) => ("act", a.to_string()),
        Verdict::Resume(a) => ("resume", format!("finishing a claimed action: {a}")),
        Verdict::Repage(c) => ("repage", format!("already done: {}", c.action)),
        Verdict::PageOnly(why) => ("page", why.clone()),
        Verdict::Refused(why) => ("refuse", why.clone()),
        Verdict::Resolve(why) => match action {
            Some(a) => ("resolve", format!("{why}; {a}")),
            None => ("resolve", why.clone()),
        },
        Verdict::Warn(why) => ("warn", why.clone()),
        Verdict::Ignore(why) => ("ignore", why.clone()),
        Verdict::Busy(why) => ("busy", why.clone()),
    }
}

fn service_of_key<'a>(config: &'a Config, key: &str) -> Option<&'a ServiceBounds> {
    let (cluster, service) = key.strip_prefix("ecs:")?.split_once('/')?;
    config.service(cluster, service)
}

/// For tests and tools: the guardrail item of a resource, as the function reads it.
pub async fn read_guard(store: &Store, resource: &str) -> Result<Versioned<Guard>, AwsCallError> {
    store.get(guard_key(resource)).await
}
