//! The record deploy keeps in the tags of each task definition revision it
//! registers: what it deployed, for which push, and what ran before. deploy
//! writes it; remediate reads it to roll a bad deploy back.
//!
//! Tags are input anyone with `ecs:TagResource` can write: readers check a
//! record against what ECS itself says (the service's deployments, the
//! revision's family) before trusting it.

use chrono::{DateTime, SecondsFormat, Utc};

pub mod tag {
    pub const PREFIX: &str = "autopilot:";
    pub const REPOSITORY: &str = "autopilot:repository";
    pub const IMAGE_TAG: &str = "autopilot:image-tag";
    pub const DIGEST: &str = "autopilot:image-digest";
    pub const PREVIOUS: &str = "autopilot:previous-revision";
    pub const SERVICE: &str = "autopilot:service";
    pub const PUSH_EVENT: &str = "autopilot:push-event-id";
    pub const PUSH_EVENT_TIME: &str = "autopilot:push-event-time";
    pub const DEPLOYMENT: &str = "autopilot:deployment-id";
    pub const VERDICT: &str = "autopilot:verdict";
    pub const TIMEOUT_WARNED: &str = "autopilot:timeout-warned";
}

/// What autopilot registered a revision for, read back from its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub repository: String,
    pub image_tag: String,
    pub digest: String,
    /// The revision the service ran before; what a rollback restores.
    pub previous: String,
    /// `cluster/service` it was registered for.
    pub service: String,
    /// The EventBridge id of the push event the revision was registered for: a
    /// redelivery of that event is recognised, a new push of the same digest is not.
    pub push_event: Option<String>,
    /// The `time` of that push event; orders pushes whose images ECR timestamps alike.
    pub push_event_time: Option<DateTime<Utc>>,
    /// The deployment the push started, once something records it. The push does
    /// not (its last call is its page): the deployment's verdict, the sweep's
    /// warning or a redelivered push that announces it writes it. Until then it
    /// is `None`, and readers recognise autopilot's deployment from ECS's own
    /// times ([`crate::adopt`]).
    pub deployment_id: Option<String>,
    /// `<COMPLETED|FAILED> <deployment id>` once on-call has been told the verdict.
    pub verdict: Option<String>,
    /// The deployment id on-call was warned about for running too long.
    pub timeout_warned: Option<String>,
}

impl Record {
    /// The record in a revision's tags (`(key, value)` pairs), if autopilot registered it.
    pub fn from_pairs<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Self> {
        let tags: Vec<(&str, &str)> = tags.into_iter().collect();
        let get = |k: &str| {
            tags.iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        };
        Some(Self {
            repository: get(tag::REPOSITORY)?,
            image_tag: get(tag::IMAGE_TAG).unwrap_or_default(),
            digest: get(tag::DIGEST)?,
            previous: get(tag::PREVIOUS).unwrap_or_default(),
            service: get(tag::SERVICE).unwrap_or_default(),
            push_event: get(tag::PUSH_EVENT),
            push_event_time: get(tag::PUSH_EVENT_TIME)
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc)),
            deployment_id: get(tag::DEPLOYMENT),
            verdict: get(tag::VERDICT),
            timeout_warned: get(tag::TIMEOUT_WARNED),
        })
    }

    /// The tags written at registration (the later ones are added with TagResource).
    pub fn registration_pairs(&self) -> Vec<(&'static str, String)> {
        let event_time = self
            .push_event_time
            .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            .unwrap_or_default();
        [
            (tag::REPOSITORY, self.repository.as_str()),
            (tag::IMAGE_TAG, &self.image_tag),
            (tag::DIGEST, &self.digest),
            (tag::PREVIOUS, &self.previous),
            (tag::SERVICE, &self.service),
            (
                tag::PUSH_EVENT,
                self.push_event.as_deref().unwrap_or_default(),
            ),
            (tag::PUSH_EVENT_TIME, &event_time),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k, v.to_string()))
        .collect()
    }

    /// The deployment autopilot started for this revision, and whether `deployment_id` is it.
    pub fn started(&self, deployment_id: &str) -> bool {
        self.deployment_id.as_deref() == Some(deployment_id)
    }

    /// `repository:tag`, or `repository@digest` for an untagged record.
    pub fn image_label(&self) -> String {
        if self.image_tag.is_empty() {
            format!("{}@{}", self.repository, self.digest)
        } else {
            format!("{}:{}", self.repository, self.image_tag)
        }
    }

    /// Whether on-call has already been told the verdict of `deployment_id`.
    pub fn has_verdict_for(&self, deployment_id: &str) -> bool {
        self.verdict
            .as_deref()
            .and_then(|v| v.split_once(' '))
            .is_some_and(|(_, id)| id == deployment_id)
    }
}
