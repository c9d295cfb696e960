//! Paging on-call through one SNS topic.
//!
//! A [`Page`] is a value: functions build it in their plans, [`render`] turns it
//! into exactly what SNS is sent (pure, unit-tested against SNS's limits), and
//! [`Pager::send`] publishes it. A failed publish is an error of the invocation,
//! so Lambda retries the event instead of losing the page.
//!
//! What subscribers get (`MessageStructure=json`):
//! * `default` and `email`: readable text;
//! * `sqs`, `lambda`, `https`, `email-json`: a JSON document with the PagerDuty
//!   Events v2 fields (`event_action`, `dedup_key`, `payload{summary, source,
//!   severity, component, group, class, custom_details}`).
//!
//! Message attributes `severity`, `event_action`, `dedup_key` and `source` let
//! subscription filter policies route pages, e.g. only `critical` to the phone.

use crate::config::Common;
use crate::invocation::{code, Coded};
use aws_sdk_sns::types::MessageAttributeValue;
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::fmt;

/// The Publish API reference: subjects "less than 100 characters long".
pub const SUBJECT_LIMIT: usize = 99;
/// SNS rejects messages over 256 KiB; keep room for attributes and the envelope.
pub const MESSAGE_BUDGET: usize = 250 * 1024;
/// PagerDuty rejects dedup keys over 255 characters.
pub const DEDUP_KEY_LIMIT: usize = 255;
/// PagerDuty truncates summaries at 1024 characters.
const SUMMARY_LIMIT: usize = 1024;
/// Fact and list labels are names such as `reason`; longer ones are cut.
const LABEL_LIMIT: usize = 100;
/// Source, component, group and class name resources; longer ones are cut.
const FIELD_LIMIT: usize = 1024;
/// No fact value or list item can fit above this many characters: the message
/// carries each one six times.
const VALUE_LIMIT: usize = MESSAGE_BUDGET / 8;
/// A fact value or list item is never cut below this many characters.
const SHORTEST_VALUE: usize = 64;
/// SNS FIFO group and deduplication ids are at most 128 characters.
const FIFO_ID_LIMIT: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// Whether the page opens (or updates) an incident, or closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Trigger,
    Resolve,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Trigger => "trigger",
            Action::Resolve => "resolve",
        }
    }
}

/// What on-call is told. Facts and lists carry the context to act without a console.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub action: Action,
    pub severity: Severity,
    /// Stable per incident; a resolve carries the trigger's key.
    pub dedup_key: String,
    /// One line; also the base of the SNS subject.
    pub summary: String,
    /// The function that sent it, e.g. `autopilot-deploy`.
    pub source: String,
    /// The resource, e.g. `prod/backend`.
    pub component: String,
    /// A grouping such as the cluster.
    pub group: String,
    /// What kind of event, e.g. `deploy.failed`.
    pub class: String,
    /// Ordered label/value pairs.
    pub facts: Vec<(String, String)>,
    /// Ordered labelled lists, e.g. stopped-task reasons; shortened first when too large.
    pub lists: Vec<(String, Vec<String>)>,
}

impl Page {
    pub fn new(
        action: Action,
        severity: Severity,
        class: &str,
        component: &str,
        summary: impl Into<String>,
    ) -> Self {
        Self {
            action,
            severity,
            dedup_key: String::new(),
            summary: summary.into(),
            source: String::new(),
            component: component.into(),
            group: String::new(),
            class: class.into(),
            facts: Vec::new(),
            lists: Vec::new(),
        }
    }

    pub fn dedup_key(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = bounded_key(&key.into(), DEDUP_KEY_LIMIT);
        self
    }

    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    pub fn fact(mut self, label: &str, value: impl fmt::Display) -> Self {
        self.facts.push((label.to_string(), value.to_string()));
        self
    }

    pub fn list(mut self, label: &str, items: Vec<String>) -> Self {
        if !items.is_empty() {
            self.lists.push((label.to_string(), items));
        }
        self
    }

    /// The value of a fact, for tests and logs.
    pub fn fact_value(&self, label: &str) -> Option<&str> {
        self.facts
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, v)| v.as_str())
    }
}

/// Exactly what is sent to SNS for one page.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub subject: String,
    /// The `MessageStructure=json` document.
    pub message: String,
    pub attributes: Vec<(&'static str, String)>,
    /// Set for FIFO topics.
    pub fifo: Option<FifoIds>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FifoIds {
    pub group_id: String,
    pub deduplication_id: String,
}

/// Renders a page for SNS: a valid subject, a JSON message under the size limit, attributes,
/// and FIFO ids when the topic is FIFO.
pub fn render(page: &Page, fifo_topic: bool) -> Publication {
    let mut page = deliverable(page);
    page.summary = truncate_chars(&one_line(&page.summary), SUMMARY_LIMIT);
    let mut message = message_document(&page);
    // Halve the longest list, then the longest fact or item, until the message fits.
    // Everything else is bounded (`deliverable`), so this ends.
    let full: Vec<usize> = page.lists.iter().map(|(_, items)| items.len()).collect();
    let mut shown = full.clone();
    while message.len() > MESSAGE_BUDGET && shorten(&mut page, &full, &mut shown) {
        message = message_document(&page);
    }
    if message.len() > MESSAGE_BUDGET {
        // More facts or lists than fit even cut short: say so rather than send nothing.
        let (facts, lists) = (page.facts.len(), page.lists.len());
        page.facts = vec![(
            "Details".to_string(),
            format!("{facts} facts and {lists} lists not shown (message size limit)"),
        )];
        page.lists.clear();
        message = message_document(&page);
    }
    // SNS refuses an empty attribute value.
    let attribute = |value: &str| {
        if value.is_empty() {
            "-".to_string()
        } else {
            value.to_string()
        }
    };
    let attributes = vec![
        ("severity", page.severity.as_str().to_string()),
        ("event_action", page.action.as_str().to_string()),
        ("dedup_key", attribute(&page.dedup_key)),
        ("source", attribute(&page.source)),
    ];
    let fifo = fifo_topic.then(|| FifoIds {
        // One group per incident keeps a trigger ahead of its resolve.
        group_id: fifo_group(&page),
        // Same page, same id: a retried publish within SNS's 5-minute window is dropped.
        deduplication_id: hex_sha256(&message),
    });
    Publication {
        subject: subject(&page),
        message,
        attributes,
        fifo,
    }
}

/// Shortens the page by one step: the longest list still showing more than one of
/// its `full` items shows half as many (`shown`), and says how many are not shown;
/// once none does, the longest fact value or list item loses half its characters.
/// False when nothing is left to shorten.
fn shorten(page: &mut Page, full: &[usize], shown: &mut [usize]) -> bool {
    let longest_list = (0..shown.len())
        .filter(|&i| shown[i] > 1)
        .max_by_key(|&i| page.lists[i].1.iter().map(String::len).sum::<usize>());
    if let Some(i) = longest_list {
        shown[i] /= 2;
        let items = &mut page.lists[i].1;
        items.truncate(shown[i]);
        let dropped = full[i] - shown[i];
        items.push(format!("... {dropped} more not shown (message size limit)"));
        return true;
    }
    let values = page.facts.iter_mut().map(|(_, v)| v);
    let items = page
        .lists
        .iter_mut()
        .flat_map(|(_, items)| items.iter_mut());
    let longest = values
        .chain(items)
        .filter(|v| v.chars().count() > SHORTEST_VALUE)
        .max_by_key(|v| v.len());
    match longest {
        Some(longest) => {
            *longest = truncate_chars(longest, longest.chars().count() / 2);
            true
        }
        None => false,
    }
}

/// The page with every character SNS's SQS subscribers refuse replaced by U+FFFD,
/// and every field but the facts and lists bounded.
/// SNS passes the message and its attributes on, and SQS accepts only `#x9 | #xA |
/// #xD | #x20–#xD7FF | #xE000–#xFFFD | #x10000–#x10FFFF` (SendMessage, MessageBody);
/// an alarm name, a tag or an AWS error text could carry anything else.
fn deliverable(page: &Page) -> Page {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if deliverable_char(c) { c } else { '\u{FFFD}' })
            .collect()
    };
    let field = |s: &str| truncate_chars(&clean(s), FIELD_LIMIT);
    let value = |s: &str| truncate_chars(&clean(s), VALUE_LIMIT);
    let label = |s: &str| truncate_chars(&clean(s), LABEL_LIMIT);
    Page {
        action: page.action,
        severity: page.severity,
        // Bounded again: a replaced character takes three bytes where it took one.
        dedup_key: bounded_key(&clean(&page.dedup_key), DEDUP_KEY_LIMIT),
        summary: clean(&page.summary),
        source: field(&page.source),
        component: field(&page.component),
        group: field(&page.group),
        class: field(&page.class),
        facts: page
            .facts
            .iter()
            .map(|(l, v)| (label(l), value(v)))
            .collect(),
        lists: page
            .lists
            .iter()
            .map(|(l, items)| (label(l), items.iter().map(|i| value(i)).collect()))
            .collect(),
    }
}

fn deliverable_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn message_document(page: &Page) -> String {
    let text = text(page);
    let machine = machine_json(page).to_string();
    json!({
        "default": text,
        "email": text,
        "sqs": machine,
        "lambda": machine,
        "https": machine,
        "email-json": machine,
    })
    .to_string()
}

/// The PagerDuty Events v2 shaped document.
pub fn machine_json(page: &Page) -> Value {
    let mut details = Map::new();
    for (label, value) in &page.facts {
        details.insert(label.clone(), Value::String(value.clone()));
    }
    for (label, items) in &page.lists {
        details.insert(label.clone(), json!(items));
    }
    json!({
        "event_action": page.action,
        "dedup_key": page.dedup_key,
        "client": "autopilot",
        "payload": {
            "summary": page.summary,
            "source": page.source,
            "severity": page.severity,
            "component": page.component,
            "group": page.group,
            "class": page.class,
            "custom_details": details,
        }
    })
}

fn text(page: &Page) -> String {
    let mut out = String::new();
    let head = match page.action {
        Action::Trigger => page.severity.as_str().to_ascii_uppercase(),
        Action::Resolve => "RESOLVED".to_string(),
    };
    out.push_str(&format!("[{head}] {}\n\n", page.summary));
    let width = page
        .facts
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    for (label, value) in &page.facts {
        let pad = " ".repeat(width - label.chars().count());
        out.push_str(&format!("{label}{pad}  {value}\n"));
    }
    for (label, items) in &page.lists {
        out.push_str(&format!("\n{label}:\n"));
        for item in items {
            out.push_str(&format!("  - {item}\n"));
        }
    }
    out.push_str(&format!(
        "\nincident key: {}\nsent by {}\n",
        page.dedup_key, page.source
    ));
    out
}

/// `[autopilot] <summary>`, made valid for SNS: printable ASCII, one line, under 100 characters.
fn subject(page: &Page) -> String {
    let prefix = match page.action {
        Action::Resolve => "[autopilot] RESOLVED ",
        Action::Trigger => "[autopilot] ",
    };
    let raw = format!("{prefix}{}", page.summary);
    let ascii: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else if c.is_whitespace() || c.is_control() {
                ' '
            } else {
                '?'
            }
        })
        .collect();
    let collapsed = ascii.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate_chars(&collapsed, SUBJECT_LIMIT)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Cuts to at most `max` characters, marking the cut with `...`.
fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

/// Keeps a key readable but bounded: long keys keep their head and a hash of the whole.
fn bounded_key(key: &str, max: usize) -> String {
    if key.len() <= max {
        return key.to_string();
    }
    let hash = &hex_sha256(key)[..16];
    let mut head: String = String::new();
    for c in key.chars() {
        if head.len() + c.len_utf8() > max - 17 {
            break;
        }
        head.push(c);
    }
    format!("{head}#{hash}")
}

/// The FIFO group: the incident's key, or, for a page without one, its sender and
/// resource. SNS refuses an empty MessageGroupId.
fn fifo_group(page: &Page) -> String {
    let key = if page.dedup_key.is_empty() {
        format!("{}/{}", page.source, page.component)
    } else {
        page.dedup_key.clone()
    };
    bounded_key(&fifo_safe(&key), FIFO_ID_LIMIT)
}

/// FIFO ids allow alphanumerics and punctuation only.
fn fifo_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect()
}

fn hex_sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Publishing failed; the invocation fails with it so the event is retried.
#[derive(Debug, thiserror::Error)]
#[error("paging on-call through {topic_arn} failed: {message}")]
pub struct PageError {
    pub topic_arn: String,
    pub message: String,
}

impl Coded for PageError {
    fn code(&self) -> &'static str {
        code::PAGE_FAILED
    }
}

/// Publishes pages to the on-call topic.
#[derive(Debug, Clone)]
pub struct Pager {
    sns: aws_sdk_sns::Client,
    topic_arn: String,
    source: String,
}

impl Pager {
    /// `source` names the sending function on every page.
    pub fn new(
        sns: aws_sdk_sns::Client,
        topic_arn: impl Into<String>,
        source: impl Into<String>,
    ) -> Self {
        Self {
            sns,
            topic_arn: topic_arn.into(),
            source: source.into(),
        }
    }

    /// The pager of `function`, on the configured topic.
    pub fn for_function(sdk: &aws_config::SdkConfig, common: &Common, function: &str) -> Self {
        Self::new(aws_sdk_sns::Client::new(sdk), &common.topic_arn, function)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The heartbeat's check of the on-call topic (`metrics::check_topic`): read,
    /// never published to.
    pub async fn check_topic(&self) -> (String, Result<(), crate::aws::AwsCallError>) {
        crate::metrics::check_topic(&self.sns, &self.topic_arn).await
    }

    /// Publishes one page and returns the SNS message id.
    pub async fn send(&self, page: &Page) -> Result<String, PageError> {
        let mut page = page.clone();
        if page.source.is_empty() {
            page.source = self.source.clone();
        }
        let publication = render(&page, self.topic_arn.ends_with(".fifo"));
        let mut request = self
            .sns
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&publication.subject)
            .message(&publication.message)
            .message_structure("json");
        for (name, value) in &publication.attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| self.error(e.to_string()))?;
            request = request.message_attributes(*name, value);
        }
        if let Some(ids) = &publication.fifo {
            request = request
                .message_group_id(&ids.group_id)
                .message_deduplication_id(&ids.deduplication_id);
        }
        let out = request
            .send()
            .await
            .inspect_err(|_| {
                crate::metrics::count(&self.source, crate::metrics::name::PAGES_FAILED)
            })
            .map_err(|e| self.error(aws_sdk_sns::error::DisplayErrorContext(e).to_string()))?;
        crate::metrics::count(&self.source, crate::metrics::name::PAGES_SENT);
        let id = out.message_id().unwrap_or_default().to_string();
        tracing::info!(
            action = "page",
            resource = %page.component,
            severity = page.severity.as_str(),
            event_action = page.action.as_str(),
            dedup_key = %page.dedup_key,
            message_id = %id,
            summary = %page.summary,
            "paged on-call"
        );
        Ok(id)
    }

    fn error(&self, message: String) -> PageError {
        PageError {
            topic_arn: self.topic_arn.clone(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Page {
        Page::new(
            Action::Trigger,
            Severity::Critical,
            "deploy.failed",
            "prod/backend",
            "Deploy FAILED prod/backend backend:v1.4.2",
        )
        .dedup_key("deploy/prod/backend/sha256:abc")
        .source("autopilot-deploy")
        .group("prod")
        .fact("Service", "prod/backend")
        .fact("Reason", "tasks failed to start")
        .list("Stopped tasks", vec!["Essential container exited".into()])
    }

    fn doc(p: &Publication) -> Value {
        serde_json::from_str(&p.message).unwrap()
    }

    #[test]
    fn message_is_sns_json_with_default_and_pagerduty_fields() {
        let p = render(&page(), false);
        let d = doc(&p);
        let obj = d.as_object().unwrap();
        assert!(
            obj.values().all(Value::is_string),
            "SNS json values must be strings"
        );
        assert!(d["default"]
            .as_str()
            .unwrap()
            .contains("tasks failed to start"));
        assert!(d["email"]
            .as_str()
            .unwrap()
            .starts_with("[CRITICAL] Deploy FAILED"));
        let m: Value = serde_json::from_str(d["sqs"].as_str().unwrap()).unwrap();
        assert_eq!(m["event_action"], "trigger");
        assert_eq!(m["dedup_key"], "deploy/prod/backend/sha256:abc");
        assert_eq!(m["payload"]["severity"], "critical");
        assert_eq!(m["payload"]["source"], "autopilot-deploy");
        assert_eq!(m["payload"]["component"], "prod/backend");
        assert_eq!(
            m["payload"]["custom_details"]["Reason"],
            "tasks failed to start"
        );
        assert_eq!(
            m["payload"]["custom_details"]["Stopped tasks"][0],
            "Essential container exited"
        );
        assert_eq!(p.attributes[0], ("severity", "critical".to_string()));
        assert!(p.fifo.is_none());
    }

    #[test]
    fn resolve_keeps_the_key_and_says_resolved() {
        let mut pg = page();
        pg.action = Action::Resolve;
        let p = render(&pg, false);
        assert!(p.subject.starts_with("[autopilot] RESOLVED "));
        let m: Value = serde_json::from_str(doc(&p)["lambda"].as_str().unwrap()).unwrap();
        assert_eq!(m["event_action"], "resolve");
        assert_eq!(m["dedup_key"], "deploy/prod/backend/sha256:abc");
    }

    #[test]
    fn subject_is_always_valid_for_sns() {
        let nasty = [
            "x".repeat(500),
            "line one\nline two\r\n\tand a tab".to_string(),
            "déploiement échoué — ✓ 🚀 prod/backend".to_string(),
            "\u{0007}bell\u{001b}[31m".to_string(),
            String::new(),
        ];
        for s in nasty {
            let mut pg = page();
            pg.summary = s.clone();
            let subject = render(&pg, false).subject;
            assert!(subject.chars().count() <= SUBJECT_LIMIT, "{subject}");
            assert!(
                subject.chars().all(|c| c.is_ascii_graphic() || c == ' '),
                "{subject:?}"
            );
            assert!(subject.starts_with("[autopilot]"));
        }
        let mut pg = page();
        pg.summary = "y".repeat(300);
        assert!(render(&pg, false).subject.ends_with("..."));
    }

    #[test]
    fn huge_lists_are_shortened_to_fit_sns() {
        let many: Vec<String> = (0..20_000)
            .map(|i| format!("task {i} stopped: {}", "e".repeat(40)))
            .collect();
        let p = render(&page().list("Events", many), false);
        assert!(p.message.len() <= MESSAGE_BUDGET, "{}", p.message.len());
        assert!(p.message.contains("more not shown"));
        assert!(doc(&p)["default"]
            .as_str()
            .unwrap()
            .contains("tasks failed to start"));
    }

    #[test]
    fn a_short_list_of_huge_items_is_cut_to_fit_and_counted_once() {
        // Halving two items used to give one item and a marker, two again: for ever.
        let huge = vec!["q\"".repeat(40_000), "r".repeat(90_000)];
        let p = render(&page().list("Reasons", huge), false);
        assert!(p.message.len() <= MESSAGE_BUDGET, "{}", p.message.len());
        let text = doc(&p)["default"].as_str().unwrap().to_string();
        assert!(text.contains("... 1 more not shown"), "{text}");
        let many: Vec<String> = (0..9)
            .map(|i| format!("{i}{}", "s".repeat(30_000)))
            .collect();
        let text = doc(&render(&page().list("Reasons", many), false))["default"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(text.matches("more not shown").count(), 1, "{text}");
        assert!(text.contains("... 8 more not shown"), "{text}");
    }

    #[test]
    fn every_character_sqs_refuses_is_replaced() {
        let p = render(
            &page()
                .dedup_key("key\u{1}\u{FFFF}")
                .fact("Reason", "bell\u{7}"),
            true,
        );
        let key = &p
            .attributes
            .iter()
            .find(|(n, _)| *n == "dedup_key")
            .unwrap()
            .1;
        assert_eq!(key, "key\u{FFFD}\u{FFFD}");
        assert!(!p.message.contains("\\u0007"), "{}", p.message);
        assert!(doc(&p)["default"]
            .as_str()
            .unwrap()
            .contains("bell\u{FFFD}"));
        assert_eq!(p.fifo.unwrap().group_id, "key__");
    }

    #[test]
    fn more_facts_than_fit_are_summarised_not_sent_oversized() {
        let mut p = page();
        for i in 0..5_000 {
            p = p.fact(&format!("fact {i} {}", "l".repeat(90)), "v".repeat(64));
        }
        let r = render(&p, false);
        assert!(r.message.len() <= MESSAGE_BUDGET, "{}", r.message.len());
        assert!(
            r.message.contains("5002 facts and 1 lists not shown"),
            "{}",
            r.message
        );
    }

    #[test]
    fn a_key_made_longer_by_replaced_characters_is_bounded_again() {
        let r = render(&page().dedup_key("\u{1}".repeat(255)), false);
        let key = &r
            .attributes
            .iter()
            .find(|(n, _)| *n == "dedup_key")
            .unwrap()
            .1;
        assert!(key.len() <= DEDUP_KEY_LIMIT, "{}", key.len());
    }

    #[test]
    fn a_page_without_a_key_still_has_a_fifo_group() {
        let p = Page::new(Action::Trigger, Severity::Warning, "x", "prod/web", "s")
            .source("autopilot-remediate");
        assert_eq!(
            render(&p, true).fifo.unwrap().group_id,
            "autopilot-remediate/prod/web"
        );
    }

    #[test]
    fn huge_facts_are_cut_to_fit_sns() {
        let p = render(&page().fact("Log", "z".repeat(400_000)), false);
        assert!(p.message.len() <= MESSAGE_BUDGET, "{}", p.message.len());
    }

    #[test]
    fn fifo_topics_get_stable_group_and_dedup_ids() {
        let a = render(&page(), true);
        let b = render(&page(), true);
        let ids = a.fifo.clone().unwrap();
        assert_eq!(ids.group_id, "deploy/prod/backend/sha256:abc");
        assert_eq!(ids.deduplication_id.len(), 64);
        assert_eq!(
            a.fifo, b.fifo,
            "a retried publish must carry the same dedup id"
        );
        let mut other = page();
        other.action = Action::Resolve;
        assert_ne!(
            render(&other, true).fifo.unwrap().deduplication_id,
            ids.deduplication_id
        );
    }

    #[test]
    fn long_dedup_keys_are_bounded_and_distinct() {
        let a = page().dedup_key(format!("deploy/{}/a", "c".repeat(300)));
        let b = page().dedup_key(format!("deploy/{}/b", "c".repeat(300)));
        assert!(a.dedup_key.len() <= DEDUP_KEY_LIMIT);
        assert_ne!(a.dedup_key, b.dedup_key);
        let f = render(&a, true).fifo.unwrap();
        assert!(f.group_id.len() <= 128);
    }

    #[test]
    fn hex_sha256_is_the_standard_digest() {
        // Dedup ids and FIFO ids derive from it: a dependency bump must not change them.
        assert_eq!(
            hex_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
