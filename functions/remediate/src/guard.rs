//! Guardrail state, kept durably in DynamoDB, and the pure checks on it.
//!
//! One [`Guard`] per resource holds its cooldown, its recent actions (the rate
//! limit), the action in progress ([`Claim`]) and what a scale-out changed (so it
//! can be undone). One [`Flips`] per alarm holds its recent state changes (for
//! flapping and duplicates). Both are written with a condition on the version
//! read, so of two concurrent invocations only one claims a resource; the other
//! reads again and finds the cooldown.

use crate::action::Action;
use crate::config::Guardrails;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An unfinished claim older than this is taken over: the invocation that made
/// it died. Longer than the function's timeout (template.yaml: 60 s), so a live
/// invocation is never overtaken.
pub const CLAIM_LEASE_SECONDS: i64 = 120;

/// A document and the version it was read at (`None`: not yet written).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Versioned<T> {
    pub value: T,
    pub version: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Guard {
    /// No action on the resource before this (epoch seconds).
    #[serde(default)]
    pub cooldown_until: Option<i64>,
    /// No scale-in step before this: steps back in are spaced by the cooldown,
    /// but never hold back a scale-out (as Application Auto Scaling does).
    #[serde(default)]
    pub scale_in_until: Option<i64>,
    /// When recent actions were taken (epoch seconds), for the rate limit. Scale-ins don't count.
    #[serde(default)]
    pub actions: Vec<i64>,
    /// The last action claimed, and how it ended.
    #[serde(default)]
    pub claim: Option<Claim>,
    /// What scale-outs changed, to scale back in once the alarm is OK.
    #[serde(default)]
    pub scaled: Option<Scaled>,
    /// When autopilot last changed the resource's storage (RDS allows one change per 6 hours).
    #[serde(default)]
    pub last_storage_change: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// The alarm transition the action answers (see `Alarm::transition`).
    pub transition: String,
    pub alarm: String,
    pub action: Action,
    pub at: i64,
    /// `None` while in progress; then `Ok` or the error.
    #[serde(default)]
    pub result: Option<Result<(), String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaled {
    /// The alarms that scaled it out; it scales back in once all of them are OK.
    pub alarms: Vec<String>,
    /// The desired count (or the scalable target's minimum) before the first scale-out.
    pub baseline: i32,
    /// What autopilot last set it to; anything else means someone changed it since.
    pub last: i32,
    /// Whether it acted through an Application Auto Scaling target's minimum.
    pub via_target: bool,
}

/// Recent state changes of one alarm.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Flips {
    #[serde(default)]
    pub transitions: Vec<Transition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub id: String,
    /// When the alarm changed state (epoch seconds).
    pub at: i64,
    /// Whether every page for it went out: a redelivery after that is a duplicate.
    #[serde(default)]
    pub handled: bool,
    /// The order transitions were recorded in (1, 2, …; 0 for one recorded
    /// before this was kept): what had been recorded when this one was handled.
    #[serde(default)]
    pub seq: u64,
}

impl Flips {
    /// Adds a transition (once) and forgets those older than `keep` seconds.
    /// Returns whether anything changed.
    pub fn record(&mut self, id: &str, at: i64, now: i64, keep: i64) -> bool {
        let before = self.transitions.len();
        self.transitions
            .retain(|t| t.at >= now - keep || t.id == id);
        let added = !self.transitions.iter().any(|t| t.id == id);
        if added {
            let seq = self.transitions.iter().map(|t| t.seq).max().unwrap_or(0) + 1;
            self.transitions.push(Transition {
                id: id.to_string(),
                at,
                handled: false,
                seq,
            });
            self.transitions.sort_by_key(|t| t.at);
        }
        added || self.transitions.len() != before
    }

    pub fn handled(&self, id: &str) -> bool {
        self.transitions.iter().any(|t| t.id == id && t.handled)
    }

    pub fn mark_handled(&mut self, id: &str) -> bool {
        match self.transitions.iter_mut().find(|t| t.id == id) {
            Some(t) if !t.handled => {
                t.handled = true;
                true
            }
            _ => false,
        }
    }

    /// State changes within `window` seconds before `now`.
    pub fn count_since(&self, now: i64, window: i64) -> usize {
        self.transitions
            .iter()
            .filter(|t| t.at > now - window)
            .count()
    }

    fn find(&self, id: &str) -> Option<&Transition> {
        self.transitions.iter().find(|t| t.id == id)
    }

    /// Whether the alarm was flapping at transition `id`: more than `limit` state
    /// changes in the `window` seconds up to it, counting only those recorded
    /// before it (and it). That is what its own handling saw, so every delivery
    /// and retry of it, and every later transition looking back at it, agree.
    pub fn flapping_at(&self, id: &str, window: i64, limit: usize) -> bool {
        let Some(this) = self.find(id) else {
            return false;
        };
        self.transitions
            .iter()
            .filter(|t| t.seq <= this.seq && t.at > this.at - window && t.at <= this.at)
            .count()
            > limit
    }

    /// The transition recorded just before `id`.
    pub fn previous(&self, id: &str) -> Option<&Transition> {
        let this = self.find(id)?;
        self.transitions
            .iter()
            .filter(|t| t.seq < this.seq)
            .max_by_key(|t| t.seq)
    }
}

impl Transition {
    /// The state it entered: `ALARM` of `ALARM@1795489200000`.
    pub fn state(&self) -> &str {
        self.id.split_once('@').map_or(self.id.as_str(), |(s, _)| s)
    }
}

/// Whether an action may go ahead on a resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    Open,
    /// This transition's action already ran (a duplicate delivery).
    Done(Claim),
    /// Another invocation is acting for this very transition now.
    Busy(String),
    /// The invocation that claimed this transition died: finish its action.
    Resume(Action),
    /// Cooldown or rate limit.
    Refused(String),
}

/// The guardrails for a new action answering `transition` at `now`; a
/// `scale_in` also waits for the last scale-in step, and is not rate limited.
pub fn gate(guard: &Guard, transition: &str, now: i64, rails: &Guardrails, scale_in: bool) -> Gate {
    if let Some(claim) = guard.claim.as_ref().filter(|c| c.transition == transition) {
        return match &claim.result {
            Some(_) => Gate::Done(claim.clone()),
            None if now - claim.at < CLAIM_LEASE_SECONDS => Gate::Busy(format!(
                "another invocation has been acting on this alarm since {}",
                clock(claim.at)
            )),
            None => Gate::Resume(claim.action.clone()),
        };
    }
    if let Some(until) = guard.cooldown_until.filter(|&u| u > now) {
        let last = guard.claim.as_ref().map(|c| {
            format!(
                " (after {} at {}, for {})",
                c.action.verb(),
                clock(c.at),
                c.alarm
            )
        });
        return Gate::Refused(format!(
            "cooldown until {}{}",
            clock(until),
            last.unwrap_or_default()
        ));
    }
    if scale_in {
        if let Some(until) = guard.scale_in_until.filter(|&u| u > now) {
            return Gate::Refused(format!(
                "the next scale-in step waits until {}",
                clock(until)
            ));
        }
        return Gate::Open;
    }
    let window = rails.action_window.as_secs() as i64;
    let recent = guard.actions.iter().filter(|&&t| t > now - window).count();
    if recent >= rails.max_actions as usize {
        return Gate::Refused(format!(
            "rate limit: {recent} actions in the last {} min (at most {})",
            window / 60,
            rails.max_actions
        ));
    }
    Gate::Open
}

/// The guard after claiming `action` for `transition` at `now`.
pub fn claimed(
    guard: &Guard,
    transition: &str,
    alarm: &str,
    action: &Action,
    now: i64,
    rails: &Guardrails,
) -> Guard {
    let mut next = guard.clone();
    let window = rails.action_window.as_secs() as i64;
    next.actions.retain(|&t| t > now - window);
    if action.verb() == "scale-in" {
        next.scale_in_until = Some(now + rails.cooldown.as_secs() as i64);
    } else {
        next.actions.push(now);
        next.cooldown_until = Some(now + rails.cooldown.as_secs() as i64);
    }
    next.claim = Some(Claim {
        transition: transition.to_string(),
        alarm: alarm.to_string(),
        action: action.clone(),
        at: now,
        result: None,
    });
    next
}

/// `03:12:00 UTC` for an epoch second.
pub fn clock(epoch: i64) -> String {
    DateTime::<Utc>::from_timestamp(epoch, 0)
        .map(|t| t.format("%H:%M:%S UTC").to_string())
        .unwrap_or_else(|| epoch.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rails() -> Guardrails {
        Guardrails::default()
    }

    fn restart() -> Action {
        Action::ForceDeployment {
            cluster: "prod".into(),
            service: "web".into(),
        }
    }

    const NOW: i64 = 1_795_000_000;

    #[test]
    fn a_claim_sets_the_cooldown_and_counts_toward_the_rate_limit() {
        let g = claimed(
            &Guard::default(),
            "ALARM@1",
            "web-cpu",
            &restart(),
            NOW,
            &rails(),
        );
        assert_eq!(g.cooldown_until, Some(NOW + 600));
        let refused = gate(&g, "ALARM@2", NOW + 60, &rails(), false);
        assert!(
            matches!(&refused, Gate::Refused(r) if r.starts_with("cooldown until") && r.contains("web-cpu")),
            "{refused:?}"
        );
        assert_eq!(gate(&g, "ALARM@2", NOW + 601, &rails(), false), Gate::Open);
        let mut busy = g.clone();
        busy.actions = vec![NOW - 100, NOW - 50, NOW];
        busy.cooldown_until = None;
        assert!(
            matches!(gate(&busy, "ALARM@2", NOW + 1, &rails(), false), Gate::Refused(r) if r.starts_with("rate limit: 3"))
        );
        // The window forgets old actions.
        assert_eq!(
            gate(&busy, "ALARM@2", NOW + 3700, &rails(), false),
            Gate::Open
        );
    }

    #[test]
    fn scale_ins_are_spaced_but_never_hold_back_a_scale_out() {
        let scale_in = Action::SetDesiredCount {
            cluster: "prod".into(),
            service: "web".into(),
            from: 6,
            to: 4,
        };
        let g = claimed(&Guard::default(), "OK@1", "a", &scale_in, NOW, &rails());
        assert!(g.actions.is_empty() && g.cooldown_until.is_none());
        assert_eq!(gate(&g, "ALARM@2", NOW + 1, &rails(), false), Gate::Open);
        assert!(
            matches!(gate(&g, "sweep@2", NOW + 1, &rails(), true), Gate::Refused(r) if r.contains("next scale-in step"))
        );
        assert_eq!(gate(&g, "sweep@3", NOW + 601, &rails(), true), Gate::Open);
    }

    #[test]
    fn the_same_transition_is_done_busy_or_resumed() {
        let mut g = claimed(&Guard::default(), "ALARM@1", "a", &restart(), NOW, &rails());
        assert!(matches!(
            gate(&g, "ALARM@1", NOW + 5, &rails(), false),
            Gate::Busy(_)
        ));
        assert_eq!(
            gate(&g, "ALARM@1", NOW + CLAIM_LEASE_SECONDS, &rails(), false),
            Gate::Resume(restart())
        );
        g.claim.as_mut().unwrap().result = Some(Ok(()));
        assert!(matches!(
            gate(&g, "ALARM@1", NOW + 5, &rails(), false),
            Gate::Done(_)
        ));
    }

    #[test]
    fn flapping_at_a_transition_counts_what_was_recorded_before_it() {
        let mut f = Flips::default();
        for (i, state) in ["ALARM", "OK", "ALARM", "OK", "ALARM", "OK"]
            .iter()
            .enumerate()
        {
            let at = NOW + 10 * i as i64;
            f.record(&format!("{state}@{at}"), at, at, 3600);
        }
        let id = |i: i64| {
            let state = if i % 2 == 0 { "ALARM" } else { "OK" };
            format!("{state}@{}", NOW + 10 * i)
        };
        // The 5th change is the first past a limit of 4; the window bounds it.
        assert!(!f.flapping_at(&id(3), 3600, 4));
        assert!(f.flapping_at(&id(4), 3600, 4) && f.flapping_at(&id(5), 3600, 4));
        assert!(!f.flapping_at(&id(5), 25, 4));
        assert_eq!(f.previous(&id(5)).map(|t| t.id.clone()), Some(id(4)));
        assert_eq!(f.previous(&id(5)).map(Transition::state), Some("ALARM"));
        assert!(f.previous(&id(0)).is_none() && f.previous("OK@1").is_none());
        // A change recorded late (a delivery that read the alarm before it
        // flipped again) does not change what a later one saw when handled:
        // counted by time alone, the 4th would now be the 5th in the window.
        let late = NOW + 25;
        f.record(&format!("INSUFFICIENT_DATA@{late}"), late, NOW + 60, 3600);
        assert!(!f.flapping_at(&id(3), 3600, 4));
        assert_eq!(f.previous(&id(5)).map(|t| t.id.clone()), Some(id(4)));
    }

    #[test]
    fn flips_count_within_the_window_and_record_once() {
        let mut f = Flips::default();
        assert!(f.record("ALARM@1", NOW - 4000, NOW - 4000, 3600));
        assert!(f.record("OK@2", NOW - 100, NOW, 3600));
        assert_eq!(f.transitions.len(), 1, "the old one is forgotten");
        assert!(!f.record("OK@2", NOW - 100, NOW, 3600));
        f.record("ALARM@3", NOW - 50, NOW, 3600);
        assert_eq!(f.count_since(NOW, 3600), 2);
        assert!(!f.handled("ALARM@3"));
        assert!(f.mark_handled("ALARM@3"));
        assert!(f.handled("ALARM@3") && !f.mark_handled("ALARM@3"));
    }
}
