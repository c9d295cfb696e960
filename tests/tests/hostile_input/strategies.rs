//! Hostile input for the property tests (`tests/tests/hostile_input/main.rs`, and
//! `make fuzz`, which runs them with many more cases): arbitrary JSON, real sample
//! events with fields replaced or removed, hostile strings, hostile configuration
//! variables, and an SDK configuration whose every call fails at once.

use aws_config::retry::RetryConfig;
use aws_config::{Region, SdkConfig};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// SNS's limit on a whole message: body and attributes (names, types, values).
pub const SNS_MESSAGE_LIMIT: usize = 262_144;

/// Cases per property: `AUTOPILOT_HOSTILE_CASES`, or 128.
pub fn cases() -> u32 {
    std::env::var("AUTOPILOT_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

/// Appends `what cases seconds` to `AUTOPILOT_HOSTILE_LOG` when set, so `make fuzz`
/// can total the cases that ran.
pub fn count_cases(what: &str, cases: u32, elapsed: Duration) {
    if let Ok(path) = std::env::var("AUTOPILOT_HOSTILE_LOG") {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{what}\t{cases}\t{:.1}", elapsed.as_secs_f64());
        }
    }
}

/// Every sample event under `events/`, by its path below it (`remediate/alb-5xx…`).
pub fn samples() -> Vec<(String, Value)> {
    let root = autopilot_tests::root().join("events");
    let mut files = Vec::new();
    json_files(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read sample event");
            let value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path.strip_prefix(&root).unwrap().display().to_string();
            (name, value)
        })
        .collect()
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read events/") {
        let path = entry.expect("events/ entry").path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

/// An SDK configuration whose every call fails at once as a refused connection
/// would, without a socket: no port that another process could have taken, no
/// proxy from the environment, nothing leaves the process.
pub async fn unreachable_sdk() -> SdkConfig {
    autopilot_shared::aws::loader()
        .http_client(SharedHttpClient::new(Refused))
        .endpoint_url("http://127.0.0.1:9")
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sns::config::Credentials::new(
            "test", "test", None, None, "hostile",
        ))
        .retry_config(RetryConfig::disabled())
        .load()
        .await
}

/// The HTTP client of [`unreachable_sdk`]: every request fails to connect.
#[derive(Debug)]
struct Refused;

impl HttpConnector for Refused {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        HttpConnectorFuture::ready(Err(ConnectorError::io(
            "connection refused (the hostile-input tests reach no network)".into(),
        )))
    }
}

impl HttpClient for Refused {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(Refused)
    }
}

/// Strings an attacker, a bug or a strange AWS answer could put in any field.
pub fn hostile_string() -> BoxedStrategy<String> {
    let known = vocabulary();
    prop_oneof![
        4 => proptest::sample::select(known),
        3 => proptest::collection::vec(any::<char>(), 0..40)
            .prop_map(|chars| chars.into_iter().collect::<String>()),
        2 => proptest::sample::select(TRICKY.to_vec()).prop_map(str::to_string),
        1 => proptest::collection::vec(any::<u8>(), 0..40)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
    ]
    .boxed()
}

/// A field far larger than AWS would send: one character, thousands of times.
pub fn huge_string() -> BoxedStrategy<String> {
    (any::<char>(), 1_000usize..70_000)
        .prop_map(|(c, n)| c.to_string().repeat(n))
        .boxed()
}

/// A hostile string, now and then a huge one.
pub fn any_string() -> BoxedStrategy<String> {
    prop_oneof![12 => hostile_string(), 1 => huge_string()].boxed()
}

/// Values that have broken parsers, quoting and limits elsewhere.
const TRICKY: &[&str] = &[
    "",
    " ",
    "\n",
    "null",
    "-1",
    "0",
    "18446744073709551616",
    "1e309",
    "NaN",
    "true",
    "{}",
    "[]",
    "{\"a\":",
    "../../etc/passwd",
    "'; DROP ROLE postgres; --",
    "\"quoted\" \\ backslash",
    "$(reboot)",
    "%00%0a",
    "a\u{0}b",
    "\u{202e}gnp.exe",
    "\u{feff}bom",
    "\u{fffe}\u{ffff}",
    "🔥💥",
    "arn:aws:ecs:us-east-1:123456789012:service/prod/web/extra",
    "arn:aws:secretsmanager:us-west-2:999999999999:secret:prod/db/app-a1B2c3",
    "sha256:",
    "rds:",
    "autopilot-",
    "ecs-svc/",
    "2026-13-45T25:61:61Z",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "2026-11-24T03:00:41.032+0000",
];

/// Every key and short string value in the sample events, so generated JSON
/// reaches past the first field check. Read once; every strategy shares it.
fn vocabulary() -> Vec<String> {
    static WORDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    WORDS.get_or_init(read_vocabulary).clone()
}

fn read_vocabulary() -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => {
                if s.len() < 200 {
                    out.push(s.clone());
                }
                if let Ok(inner @ (Value::Object(_) | Value::Array(_))) = serde_json::from_str(s) {
                    walk(&inner, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(fields) => {
                for (k, v) in fields {
                    out.push(k.clone());
                    walk(v, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (_, sample) in samples() {
        walk(&sample, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![3 => proptest::sample::select(vocabulary()), 1 => hostile_string()].boxed()
}

/// Any JSON value, nested a few levels, with keys from the samples' vocabulary.
pub fn arbitrary_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        any_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
    .boxed()
}

/// One change to one place in a JSON document.
#[derive(Debug, Clone)]
pub enum Mutation {
    Replace(Value),
    Text(String),
    Remove,
}

fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        2 => arbitrary_json().prop_map(Mutation::Replace),
        3 => any_string().prop_map(Mutation::Text),
        2 => Just(Mutation::Remove),
    ]
    .boxed()
}

/// A real sample with one to three of its fields changed, anywhere in it,
/// including inside fields that hold JSON as a string (an SNS message, an
/// alarm's reasonData).
pub fn mutated(samples: Vec<Value>) -> BoxedStrategy<Value> {
    assert!(!samples.is_empty(), "no sample events to mutate");
    (
        proptest::sample::select(samples),
        proptest::collection::vec((any::<Index>(), mutation()), 1..4),
    )
        .prop_map(|(mut event, changes)| {
            for (at, change) in changes {
                mutate(&mut event, &at, &change);
            }
            event
        })
        .boxed()
}

/// Applies `change` at the place `at` picks among every place in `doc`.
pub fn mutate(doc: &mut Value, at: &Index, change: &Mutation) {
    let mut places = Vec::new();
    places_in(doc, &mut Vec::new(), &mut places);
    if places.is_empty() {
        if let Mutation::Replace(v) = change {
            *doc = v.clone();
        }
        return;
    }
    let place = at.get(&places).clone();
    apply(doc, &place, change);
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Item(usize),
    /// Into the JSON document a string holds.
    Embedded,
}

fn places_in(v: &Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    if !here.is_empty() {
        out.push(here.clone());
    }
    match v {
        Value::Object(fields) => {
            for (k, child) in fields {
                here.push(Step::Key(k.clone()));
                places_in(child, here, out);
                here.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                here.push(Step::Item(i));
                places_in(child, here, out);
                here.pop();
            }
        }
        Value::String(s) => {
            if let Ok(inner @ (Value::Object(_) | Value::Array(_))) =
                serde_json::from_str::<Value>(s)
            {
                here.push(Step::Embedded);
                places_in(&inner, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn apply(v: &mut Value, path: &[Step], change: &Mutation) {
    match path {
        [] => match change {
            Mutation::Replace(new) => *v = new.clone(),
            Mutation::Text(s) => *v = Value::String(s.clone()),
            Mutation::Remove => *v = Value::Null,
        },
        [Step::Key(k)] if matches!(change, Mutation::Remove) => {
            if let Value::Object(fields) = v {
                fields.remove(k);
            }
        }
        [Step::Item(i)] if matches!(change, Mutation::Remove) => {
            if let Value::Array(items) = v {
                if *i < items.len() {
                    items.remove(*i);
                }
            }
        }
        [Step::Key(k), rest @ ..] => {
            if let Some(child) = v.get_mut(k) {
                apply(child, rest, change);
            }
        }
        [Step::Item(i), rest @ ..] => {
            if let Some(child) = v.get_mut(*i) {
                apply(child, rest, change);
            }
        }
        [Step::Embedded, rest @ ..] => {
            if let Some(Ok(mut inner)) = v.as_str().map(serde_json::from_str::<Value>) {
                apply(&mut inner, rest, change);
                *v = Value::String(inner.to_string());
            }
        }
    }
}

/// What happens to one configuration variable.
#[derive(Debug, Clone)]
pub enum VariableChange {
    Keep,
    Unset,
    Text(String),
    /// The valid JSON value with one place changed.
    Json(Index, Mutation),
}

pub fn variable_change() -> BoxedStrategy<VariableChange> {
    prop_oneof![
        2 => Just(VariableChange::Keep),
        1 => Just(VariableChange::Unset),
        2 => any_string().prop_map(VariableChange::Text),
        3 => (any::<Index>(), mutation()).prop_map(|(at, m)| VariableChange::Json(at, m)),
    ]
    .boxed()
}

impl VariableChange {
    /// The variable's value after the change (`None`: unset).
    pub fn apply(&self, valid: &str) -> Option<String> {
        match self {
            Self::Keep => Some(valid.to_string()),
            Self::Unset => None,
            Self::Text(s) => Some(s.clone()),
            Self::Json(at, change) => match serde_json::from_str::<Value>(valid) {
                Ok(mut doc) => {
                    mutate(&mut doc, at, change);
                    Some(doc.to_string())
                }
                Err(_) => match change {
                    Mutation::Text(s) => Some(s.clone()),
                    _ => Some(valid.to_string()),
                },
            },
        }
    }
}

/// A character SQS accepts (SNS passes attributes and bodies on to SQS
/// subscribers): `#x9 | #xA | #xD | #x20–#xD7FF | #xE000–#xFFFD | #x10000–#x10FFFF`
/// (SQS SendMessage, MessageBody).
pub fn sqs_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// A non-empty string of characters SNS and its SQS subscribers accept.
pub fn sns_text(s: &str) -> bool {
    !s.is_empty() && s.chars().all(sqs_char)
}

/// The bytes SNS counts for a publication's attributes: names, types and values.
pub fn attributes_size(p: &autopilot_shared::pager::Publication) -> usize {
    p.attributes
        .iter()
        .map(|(name, value)| name.len() + "String".len() + value.len())
        .sum()
}
