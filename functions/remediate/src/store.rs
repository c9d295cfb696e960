//! The guardrail table in DynamoDB: versioned documents written with a
//! condition on the version read (optimistic concurrency), the list of services
//! still scaled out, and the audit trail.
//!
//! Items (`pk`, `sk`):
//! * `resource#<ecs:cluster/service|rds:instance>`, `guard`: a [`Guard`](crate::guard::Guard);
//! * `alarm#<alarm name>`, `transitions`: its [`Flips`](crate::guard::Flips);
//! * `pending`, `<resource>`: a service scaled out, for the sweep to scale back in;
//! * `audit#<resource or alarm>`, `<time>#<alarm>#<decision>`: one decision, kept
//!   `AUTOPILOT_REMEDIATE_AUDIT_TTL_DAYS` through the `expires_at` TTL attribute.

use crate::guard::Versioned;
use autopilot_shared::aws::AwsCallError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;

/// The partition of the services the sweep visits.
const PENDING: &str = "pending";

#[derive(Debug, Clone)]
pub struct Store {
    db: Client,
    table: String,
}

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// What the decision was about: a resource key, or the alarm when there is none.
    pub subject: String,
    pub time: chrono::DateTime<chrono::Utc>,
    pub alarm: String,
    pub transition: String,
    pub runbook: String,
    /// act, resume, refuse, page, resolve, warn, ignore, failed, scale-in, release.
    pub decision: String,
    pub reason: String,
    pub action: String,
    pub before: String,
    pub after: String,
    pub dry_run: bool,
    pub expires_at: i64,
}

pub fn guard_key(resource: &str) -> (String, &'static str) {
    (format!("resource#{resource}"), "guard")
}

pub fn flips_key(alarm: &str) -> (String, &'static str) {
    (format!("alarm#{alarm}"), "transitions")
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl Store {
    pub fn new(db: Client, table: impl Into<String>) -> Self {
        Self {
            db,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn item_name(&self, pk: &str, sk: &str) -> String {
        format!("{}/{pk}/{sk}", self.table)
    }

    /// A document and its version, strongly consistent; the default when absent.
    pub async fn get<T: DeserializeOwned + Default>(
        &self,
        (pk, sk): (String, &str),
    ) -> Result<Versioned<T>, AwsCallError> {
        let out = self
            .db
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(AwsCallError::of("GetItem", self.item_name(&pk, sk)))?;
        let Some(item) = out.item else {
            return Ok(Versioned::default());
        };
        let bad = |m: String| AwsCallError::new("GetItem", self.item_name(&pk, sk), m);
        let version = match item.get("version") {
            Some(AttributeValue::N(v)) => v
                .parse::<u64>()
                .map_err(|e| bad(format!("version `{v}` is not a number: {e}")))?,
            _ => return Err(bad("the item has no numeric `version`".into())),
        };
        let value = match item.get("doc") {
            Some(AttributeValue::S(doc)) => serde_json::from_str(doc)
                .map_err(|e| bad(format!("`doc` is not a valid document: {e}")))?,
            _ => return Err(bad("the item has no string `doc`".into())),
        };
        Ok(Versioned {
            value,
            version: Some(version),
        })
    }

    /// Writes `doc` if the item is still at `expected` (absent for `None`).
    /// `Ok(false)`: another invocation wrote it first; read again and re-plan.
    pub async fn put<T: Serialize>(
        &self,
        (pk, sk): (String, &str),
        doc: &T,
        expected: Option<u64>,
    ) -> Result<bool, AwsCallError> {
        let name = self.item_name(&pk, sk);
        let doc = serde_json::to_string(doc)
            .map_err(|e| AwsCallError::new("PutItem", &name, e.to_string()))?;
        let mut request = self
            .db
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&pk))
            .item("sk", s(sk))
            .item("version", n(expected.unwrap_or(0) + 1))
            .item("doc", s(doc))
            .item("updated_at", s(chrono::Utc::now().to_rfc3339()));
        request = match expected {
            None => request.condition_expression("attribute_not_exists(pk)"),
            Some(v) => request
                .condition_expression("version = :v")
                .expression_attribute_values(":v", n(v)),
        };
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(AwsCallError::of("PutItem", name)(e)),
        }
    }

    /// Marks a service as scaled out (or no longer), for the sweep.
    pub async fn set_pending(&self, resource: &str, pending: bool) -> Result<(), AwsCallError> {
        let name = self.item_name(PENDING, resource);
        if pending {
            self.db
                .put_item()
                .table_name(&self.table)
                .item("pk", s(PENDING))
                .item("sk", s(resource))
                .send()
                .await
                .map_err(AwsCallError::of("PutItem", name))?;
        } else {
            self.db
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(PENDING))
                .key("sk", s(resource))
                .send()
                .await
                .map_err(AwsCallError::of("DeleteItem", name))?;
        }
        Ok(())
    }

    /// The services still scaled out, every page of them.
    pub async fn pending(&self) -> Result<Vec<String>, AwsCallError> {
        let mut resources = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .db
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :p")
                .expression_attribute_values(":p", s(PENDING))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(AwsCallError::of("Query", self.item_name(PENDING, "*")))?;
            resources.extend(out.items().iter().filter_map(|i| match i.get("sk") {
                Some(AttributeValue::S(r)) => Some(r.clone()),
                _ => None,
            }));
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(resources)
    }

    /// Appends one decision to the audit trail.
    pub async fn audit(&self, e: &AuditEntry) -> Result<(), AwsCallError> {
        let pk = format!("audit#{}", e.subject);
        let time = e.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let sk = format!("{time}#{}#{}", e.alarm, e.decision);
        let mut request = self
            .db
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&pk))
            .item("sk", s(&sk))
            .item("time", s(&time))
            .item("alarm", s(&e.alarm))
            .item("transition", s(&e.transition))
            .item("runbook", s(&e.runbook))
            .item("decision", s(&e.decision))
            .item("reason", s(&e.reason))
            .item("dry_run", AttributeValue::Bool(e.dry_run))
            .item("expires_at", n(e.expires_at));
        // DynamoDB refuses empty strings in key attributes only; leave optional ones out.
        for (key, value) in [
            ("action", &e.action),
            ("before", &e.before),
            ("after", &e.after),
        ] {
            if !value.is_empty() {
                request = request.item(key, s(value));
            }
        }
        request
            .send()
            .await
            .map_err(AwsCallError::of("PutItem", self.item_name(&pk, &sk)))?;
        Ok(())
    }
}
