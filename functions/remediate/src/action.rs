//! What a runbook does, as a value: planned, claimed in the guardrail table,
//! then carried out by `apply`. Every action sets an absolute value, so carrying
//! it out twice (a resumed claim) changes nothing the second time; the one
//! exception, a forced deployment, is never resumed while its claim is live.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// UpdateService desiredCount.
    SetDesiredCount {
        cluster: String,
        service: String,
        from: i32,
        to: i32,
    },
    /// RegisterScalableTarget MinCapacity, within the target's MaxCapacity.
    SetMinCapacity {
        cluster: String,
        service: String,
        from: i32,
        to: i32,
        max: i32,
    },
    /// UpdateService forceNewDeployment: replaces every task.
    ForceDeployment { cluster: String, service: String },
    /// UpdateService taskDefinition back to the revision before autopilot's deploy.
    Rollback {
        cluster: String,
        service: String,
        from: String,
        to: String,
    },
    /// ModifyDBInstance AllocatedStorage, applied immediately.
    GrowStorage {
        instance: String,
        from_gib: i32,
        to_gib: i32,
    },
}

impl Action {
    /// A short name for logs, audit records and pages.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::SetDesiredCount { from, to, .. } | Action::SetMinCapacity { from, to, .. } => {
                if to > from {
                    "scale-out"
                } else {
                    "scale-in"
                }
            }
            Action::ForceDeployment { .. } => "restart",
            Action::Rollback { .. } => "rollback",
            Action::GrowStorage { .. } => "grow-storage",
        }
    }

    /// The state before the action, in the operator's words.
    pub fn before(&self) -> String {
        match self {
            Action::SetDesiredCount { from, .. } => format!("desired count {from}"),
            Action::SetMinCapacity { from, max, .. } => {
                format!("auto scaling minimum {from} (maximum {max})")
            }
            Action::ForceDeployment { .. } => "tasks as they are".into(),
            Action::Rollback { from, .. } => format!("task definition {}", short(from)),
            Action::GrowStorage { from_gib, .. } => format!("{from_gib} GiB allocated"),
        }
    }

    /// The state after the action.
    pub fn after(&self) -> String {
        match self {
            Action::SetDesiredCount { to, .. } => format!("desired count {to}"),
            Action::SetMinCapacity { to, max, .. } => {
                format!("auto scaling minimum {to} (maximum {max})")
            }
            Action::ForceDeployment { .. } => "a new deployment replacing every task".into(),
            Action::Rollback { to, .. } => format!("task definition {}", short(to)),
            Action::GrowStorage { to_gib, .. } => format!("{to_gib} GiB allocated"),
        }
    }
}

impl fmt::Display for Action {
    /// `scale-out: desired count 2 -> 4`; ASCII, since it ends up in SNS subjects.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = self.verb();
        match self {
            Action::SetDesiredCount { from, to, .. } => {
                write!(f, "{verb}: desired count {from} -> {to}")
            }
            Action::SetMinCapacity { from, to, max, .. } => {
                write!(
                    f,
                    "{verb}: auto scaling minimum {from} -> {to} (maximum {max})"
                )
            }
            Action::ForceDeployment { .. } => write!(f, "restart: force a new deployment"),
            Action::Rollback { from, to, .. } => {
                write!(f, "rollback: {} -> {}", short(from), short(to))
            }
            Action::GrowStorage {
                from_gib, to_gib, ..
            } => {
                write!(f, "{verb}: {from_gib} -> {to_gib} GiB allocated")
            }
        }
    }
}

/// `web:7` for a task definition ARN.
pub fn short(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_read_as_before_and_after() {
        let a = Action::SetDesiredCount {
            cluster: "prod".into(),
            service: "web".into(),
            from: 2,
            to: 4,
        };
        assert_eq!(a.to_string(), "scale-out: desired count 2 -> 4");
        let r = Action::Rollback {
            cluster: "prod".into(),
            service: "web".into(),
            from: "arn:aws:ecs:us-east-1:1:task-definition/web:8".into(),
            to: "arn:aws:ecs:us-east-1:1:task-definition/web:7".into(),
        };
        assert_eq!(r.to_string(), "rollback: web:8 -> web:7");
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["kind"], "set-desired-count");
        assert_eq!(serde_json::from_value::<Action>(json).unwrap(), a);
    }
}
