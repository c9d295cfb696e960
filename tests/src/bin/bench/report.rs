//! What each part of the benchmark hands back to `main`: markdown for
//! docs/benchmarks.md and the targets it checked, each met or missed.

/// One target of issue #9, checked against a measurement.
#[derive(Debug, Clone)]
pub struct Target {
    /// What is limited, e.g. "deploy zip".
    pub name: String,
    /// What was measured, with its unit, e.g. "2.31 MB".
    pub measured: String,
    /// The limit, with its unit, e.g. "<= 2.5 MB".
    pub limit: String,
    pub met: bool,
    /// Why it was missed and what it would take; empty when met.
    pub note: String,
}

impl Target {
    pub fn new(
        name: impl Into<String>,
        measured: impl Into<String>,
        limit: impl Into<String>,
        met: bool,
    ) -> Self {
        Self {
            name: name.into(),
            measured: measured.into(),
            limit: limit.into(),
            met,
            note: String::new(),
        }
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    /// One line for the console: `met   deploy zip 2.31 MB (<= 2.5 MB)`.
    pub fn line(&self) -> String {
        let verdict = if self.met { "met   " } else { "MISSED" };
        format!("{verdict} {} {} ({})", self.name, self.measured, self.limit)
    }
}

/// A part of the results: its markdown (headed with `##`) and its targets.
#[derive(Debug, Clone, Default)]
pub struct Section {
    pub markdown: String,
    pub targets: Vec<Target>,
}

/// The median, min and max of `values` (which must not be empty), after sorting.
pub fn spread(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

/// The median of `values` (0 when empty), leaving them as they are.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    spread(&mut values.to_vec()).0
}

/// `median (min–max)` in milliseconds, or "not measured".
pub fn ms_spread(values: &[f64]) -> String {
    if values.is_empty() {
        return "not measured".into();
    }
    let (median, min, max) = spread(&mut values.to_vec());
    format!("{median:.2} ms ({min:.2}–{max:.2})")
}

/// Bytes as decimal megabytes, e.g. `2.31 MB`.
pub fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

/// A markdown table.
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    let mut out = line(head.iter().map(|h| h.to_string()).collect());
    out += &line(head.iter().map(|_| "---".to_string()).collect());
    for row in rows {
        out += &line(row.iter().map(|c| c.replace('|', "\\|")).collect());
    }
    out
}

/// The line between docs/benchmarks.md's hand-written preamble and what the bench writes.
pub const MARKER: &str =
    "<!-- Everything below is written by `make bench` (tests/src/bin/bench); edit above this line. -->";

/// Writes `generated` below the preamble of `path`, keeping the preamble (or
/// starting from `default_preamble` when the file or its marker is missing).
pub fn write_doc(path: &std::path::Path, default_preamble: &str, generated: &str) {
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let preamble = match existing.split_once(MARKER) {
        Some((preamble, _)) => preamble.trim_end().to_string(),
        None => default_preamble.trim_end().to_string(),
    };
    let text = format!("{preamble}\n\n{MARKER}\n\n{}\n", generated.trim());
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
