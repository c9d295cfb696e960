//! The pending values this process wrote or read, so that finishSecret on the
//! same warm sandbox need not read again the version createSecret just wrote.
//!
//! Safe because a version's value cannot change while the version exists:
//! Secrets Manager refuses a PutSecretValue that reuses a version id
//! (ClientRequestToken) with another value (ResourceExistsException). A version
//! id could be used again only after Secrets Manager removed the version, and it
//! "does not remove versions created less than 24 hours ago" (PutSecretValue API
//! reference); an entry is kept for [`MAX_AGE_SECS`] after its version was
//! created, far inside that. Only the value is cached, never a staging label:
//! every step still asks Secrets Manager whether the token is AWSPENDING before
//! using it. The ARN is the one Secrets Manager answered with, so a secret
//! deleted and created again under the same name is another key.
//!
//! Bounded to [`CAPACITY`] entries (the oldest goes first), an entry is dropped
//! once its version is AWSCURRENT, and `Debug` shows no value. Whoever takes a
//! value from here registers it with the invocation's scrubber, as for a read.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

/// A sandbox runs one rotation's steps back to back; a few more entries cover
/// rotations of several secrets interleaved on one sandbox. A miss costs one
/// GetSecretValue.
pub const CAPACITY: usize = 8;

/// How long after its version was created an entry is used: a rotation's four
/// steps take minutes; Secrets Manager keeps a version at least 24 hours.
pub const MAX_AGE_SECS: i64 = 3600;

/// (secret ARN, version id) -> value. Clones share the entries.
#[derive(Clone, Default)]
pub struct PendingValues(Arc<Mutex<VecDeque<Entry>>>);

struct Entry {
    arn: String,
    version: String,
    value: String,
    /// When the version was created, epoch seconds.
    created: i64,
}

impl PendingValues {
    /// Keeps `value` of a version created at `created` (epoch seconds), seen at `now`.
    pub fn put(&self, arn: &str, version: &str, value: &str, created: i64, now: i64) {
        let Ok(mut entries) = self.0.lock() else {
            return;
        };
        entries.retain(|e| !(e.arn == arn && e.version == version) && fresh(e, now));
        if !fresh_at(created, now) {
            return;
        }
        entries.push_back(Entry {
            arn: arn.to_string(),
            version: version.to_string(),
            value: value.to_string(),
            created,
        });
        while entries.len() > CAPACITY {
            entries.pop_front();
        }
    }

    /// The value of the version, if kept and still fresh at `now`.
    pub fn get(&self, arn: &str, version: &str, now: i64) -> Option<String> {
        let entries = self.0.lock().ok()?;
        entries
            .iter()
            .find(|e| e.arn == arn && e.version == version && fresh(e, now))
            .map(|e| e.value.clone())
    }

    pub fn forget(&self, arn: &str, version: &str) {
        if let Ok(mut entries) = self.0.lock() {
            entries.retain(|e| !(e.arn == arn && e.version == version));
        }
    }

    fn len(&self) -> usize {
        self.0.lock().map(|e| e.len()).unwrap_or_default()
    }
}

fn fresh(e: &Entry, now: i64) -> bool {
    fresh_at(e.created, now)
}

/// Not older than [`MAX_AGE_SECS`], nor more than a minute in the future (a
/// clock far off is not trusted with the margin).
fn fresh_at(created: i64, now: i64) -> bool {
    (-60..MAX_AGE_SECS).contains(&(now - created))
}

impl fmt::Debug for PendingValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingValues")
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn values_are_found_by_secret_and_version_only() {
        let cache = PendingValues::default();
        cache.put("arn:a", "v1", "secret-a1", NOW, NOW);
        cache.put("arn:b", "v1", "secret-b1", NOW, NOW);
        assert_eq!(cache.get("arn:a", "v1", NOW).as_deref(), Some("secret-a1"));
        assert_eq!(cache.get("arn:b", "v1", NOW).as_deref(), Some("secret-b1"));
        assert_eq!(cache.get("arn:a", "v2", NOW), None);
        cache.put("arn:a", "v1", "secret-a1", NOW, NOW);
        assert_eq!(cache.len(), 2, "a repeated put is one entry");
        cache.forget("arn:a", "v1");
        assert_eq!(cache.get("arn:a", "v1", NOW), None);
        assert_eq!(cache.get("arn:b", "v1", NOW).as_deref(), Some("secret-b1"));
    }

    #[test]
    fn the_oldest_entry_goes_past_the_capacity() {
        let cache = PendingValues::default();
        for i in 0..=CAPACITY {
            cache.put("arn:s", &format!("v{i}"), &format!("value-{i}"), NOW, NOW);
        }
        assert_eq!(cache.len(), CAPACITY);
        assert_eq!(cache.get("arn:s", "v0", NOW), None);
        assert_eq!(
            cache.get("arn:s", &format!("v{CAPACITY}"), NOW).as_deref(),
            Some(format!("value-{CAPACITY}").as_str())
        );
    }

    #[test]
    fn an_entry_is_used_only_while_its_version_is_young() {
        let cache = PendingValues::default();
        cache.put("arn:s", "v1", "value", NOW, NOW);
        assert!(cache.get("arn:s", "v1", NOW + MAX_AGE_SECS - 1).is_some());
        assert_eq!(cache.get("arn:s", "v1", NOW + MAX_AGE_SECS), None);
        // A version read long after it was created is not kept at all.
        cache.put("arn:s", "v2", "value", NOW - MAX_AGE_SECS, NOW);
        assert_eq!(cache.get("arn:s", "v2", NOW), None);
        // Nor one whose creation time is far ahead of this clock.
        cache.put("arn:s", "v3", "value", NOW + 3600, NOW);
        assert_eq!(cache.get("arn:s", "v3", NOW + 3600), None);
        // Stale entries go at the next put.
        cache.put(
            "arn:s",
            "v4",
            "value",
            NOW + MAX_AGE_SECS,
            NOW + MAX_AGE_SECS,
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn clones_share_entries_and_debug_shows_no_value() {
        let cache = PendingValues::default();
        let clone = cache.clone();
        clone.put("arn:s", "v1", "hunter2-pending", NOW, NOW);
        assert_eq!(
            cache.get("arn:s", "v1", NOW).as_deref(),
            Some("hunter2-pending")
        );
        let shown = format!("{cache:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("entries: 1"), "{shown}");
    }
}
