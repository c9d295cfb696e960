//! The names and tags of the RDS snapshots autopilot makes, shared by deploy
//! (the snapshot before a deploy) and snapshot (scheduled snapshots, DR copies,
//! retention, drills).
//!
//! Identifiers are deterministic, so a retried step finds "already exists"
//! instead of making a second snapshot. Retention deletes only what both starts
//! with [`PREFIX`] and carries an autopilot [`CREATED_BY`] tag: identifiers
//! cannot be renamed, so a foreign snapshot tagged to look like ours is still
//! left alone.

use chrono::{DateTime, Utc};

/// Every identifier autopilot gives a snapshot or a drill instance starts with this.
pub const PREFIX: &str = "autopilot-";
/// Copies in the DR region: `autopilot-dr-<source>`.
pub const DR_PREFIX: &str = "autopilot-dr-";
/// Restore-drill instances: `autopilot-drill-<db>`.
pub const DRILL_PREFIX: &str = "autopilot-drill-";

/// Tag keys.
pub mod tag {
    /// Provenance: the function that made it ([`super::BY_SNAPSHOT`] or [`super::BY_DEPLOY`]).
    pub const CREATED_BY: &str = "autopilot:created-by";
    /// Why: [`super::reason`].
    pub const REASON: &str = "autopilot:reason";
    /// The instance or cluster identifier the backup is of.
    pub const DB: &str = "autopilot:db";
    /// The source snapshot ARN (copies, drills) or the DB ARN (snapshots).
    pub const SOURCE: &str = "autopilot:source";
    /// When a copy was started (RFC 3339).
    pub const COPY_STARTED: &str = "autopilot:copy-started";
    /// When a copy was seen finished (RFC 3339).
    pub const CONFIRMED: &str = "autopilot:confirmed";
    /// The last restore drill of a copy: `passed <RFC 3339>` or `failed <RFC 3339>`.
    pub const DRILL: &str = "autopilot:drill";
    /// When a drill instance was started (RFC 3339).
    pub const DRILL_STARTED: &str = "autopilot:drill-started";
    /// The push a pre-deploy snapshot was taken for.
    pub const DEPLOY_REPOSITORY: &str = "autopilot:deploy-repository";
    pub const DEPLOY_TAG: &str = "autopilot:deploy-tag";
    pub const DEPLOY_DIGEST: &str = "autopilot:deploy-digest";
    pub const DEPLOY_EVENT: &str = "autopilot:deploy-event";
    pub const DEPLOY_TIME: &str = "autopilot:deploy-time";
}

pub const BY_SNAPSHOT: &str = "autopilot-snapshot";
pub const BY_DEPLOY: &str = "autopilot-deploy";

/// Values of [`tag::REASON`].
pub mod reason {
    pub const SCHEDULED: &str = "scheduled";
    pub const PRE_DEPLOY: &str = "pre-deploy";
    pub const DR_COPY: &str = "dr-copy";
    pub const RESTORE_DRILL: &str = "restore-drill";
}

/// RDS DB snapshot identifiers are at most 255 characters.
pub const SNAPSHOT_ID_LIMIT: usize = 255;
/// DB cluster snapshot identifiers are at most 63.
pub const CLUSTER_SNAPSHOT_ID_LIMIT: usize = 63;

/// The identifier limit of a DB snapshot, or of a cluster snapshot when `cluster`.
pub fn id_limit(cluster: bool) -> usize {
    if cluster {
        CLUSTER_SNAPSHOT_ID_LIMIT
    } else {
        SNAPSHOT_ID_LIMIT
    }
}
/// RDS instance identifiers are at most 63 characters.
pub const INSTANCE_ID_LIMIT: usize = 63;

/// Whether a snapshot with this identifier and these tags is autopilot's to prune.
pub fn is_ours<'a>(id: &str, tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
    id.starts_with(PREFIX)
        && tags
            .into_iter()
            .any(|(k, v)| k == tag::CREATED_BY && (v == BY_SNAPSHOT || v == BY_DEPLOY))
}

/// RDS instance and cluster identifiers: 1–63 letters, digits and hyphens,
/// starting with a letter, no `--`, no trailing `-`.
pub fn check_db_identifier(id: &str) -> Result<(), String> {
    crate::config::check_name(id, INSTANCE_ID_LIMIT, |c| {
        c.is_ascii_alphanumeric() || c == '-'
    })?;
    if id.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "`{id}` has capitals: RDS stores identifiers in lower case, so write `{}`",
            id.to_ascii_lowercase()
        ));
    }
    if !id.starts_with(|c: char| c.is_ascii_alphabetic()) || id.contains("--") || id.ends_with('-')
    {
        return Err(format!(
            "`{id}` is not an RDS identifier: it must start with a letter and have no `--` and no trailing `-`"
        ));
    }
    Ok(())
}

/// Lower case, `[a-z0-9-]` only, no `--`, no leading or trailing `-`: what RDS
/// accepts in an identifier (after the leading letter the prefix supplies).
pub fn sanitise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// Shortens `text` to `limit` characters, ending in a hash of the whole so
/// two long names that share a beginning still differ.
pub fn bounded(text: &str, limit: usize) -> String {
    let text = &sanitise(text);
    if text.len() <= limit {
        return text.to_string();
    }
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(text.as_bytes());
    let suffix: String = hash.iter().take(3).map(|b| format!("{b:02x}")).collect();
    let keep = limit.saturating_sub(suffix.len() + 1);
    let head = text[..keep].trim_end_matches('-');
    format!("{head}-{suffix}")
}

/// The snapshot a schedule run at `time` takes of `db` (a cluster when `cluster`).
pub fn scheduled_id(db: &str, time: DateTime<Utc>, cluster: bool) -> String {
    bounded(
        &format!("{PREFIX}{}-{}", sanitise(db), time.format("%Y%m%d%H%M")),
        id_limit(cluster),
    )
}

/// The snapshot deploy takes of `db` before deploying the push of `digest` at `time`.
pub fn pre_deploy_id(db: &str, time: DateTime<Utc>, digest: &str) -> String {
    let hex: String = digest
        .trim_start_matches("sha256:")
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    bounded(
        &format!(
            "{PREFIX}{}-predeploy-{}-{}",
            sanitise(db),
            time.format("%Y%m%d%H%M%S"),
            hex.to_ascii_lowercase()
        ),
        SNAPSHOT_ID_LIMIT,
    )
}

/// Whether `id` is one of deploy's pre-deploy snapshots.
pub fn is_pre_deploy_id(id: &str) -> bool {
    id.starts_with(PREFIX) && id.contains("-predeploy-")
}

/// The DR copy of the snapshot `source_id` (automated ids are `rds:<db>-<date>`);
/// cluster snapshot ids are shortened to 63 characters, ending in a hash.
pub fn dr_copy_id(source_id: &str, cluster: bool) -> String {
    bounded(
        &format!("{DR_PREFIX}{}", sanitise(source_id)),
        id_limit(cluster),
    )
}

/// The drill instance for `db`: one at a time per database.
pub fn drill_instance_id(db: &str) -> String {
    bounded(
        &format!("{DRILL_PREFIX}{}", sanitise(db)),
        INSTANCE_ID_LIMIT,
    )
}

/// RFC 3339 at second precision, as the time tags carry it.
pub fn stamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Reads a time tag.
pub fn parse_stamp(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 3, 10, 42).unwrap()
    }

    fn valid(id: &str, limit: usize) -> bool {
        id.len() <= limit
            && id.starts_with(|c: char| c.is_ascii_lowercase())
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !id.contains("--")
            && !id.ends_with('-')
    }

    #[test]
    fn identifiers_are_deterministic_and_valid_for_rds() {
        assert_eq!(
            scheduled_id("orders-db", at(), false),
            "autopilot-orders-db-202611240310"
        );
        assert_eq!(
            pre_deploy_id("orders-db", at(), "sha256:ABCDEF0123456789ffff"),
            "autopilot-orders-db-predeploy-20261124031042-abcdef012345"
        );
        assert_eq!(
            dr_copy_id("rds:orders-db-2026-11-24-03-10", false),
            "autopilot-dr-rds-orders-db-2026-11-24-03-10"
        );
        assert_eq!(
            dr_copy_id("Before_Migration--42-", false),
            "autopilot-dr-before-migration-42"
        );
        assert_eq!(drill_instance_id("orders-db"), "autopilot-drill-orders-db");
        let long = "a".repeat(63);
        let drill = drill_instance_id(&long);
        assert!(valid(&drill, INSTANCE_ID_LIMIT), "{drill}");
        assert_ne!(drill, drill_instance_id(&format!("{}b", "a".repeat(62))));
        let copy = dr_copy_id(&"x-".repeat(200), false);
        assert!(valid(&copy, SNAPSHOT_ID_LIMIT), "{copy}");
        let cluster = dr_copy_id(&scheduled_id(&"c".repeat(63), at(), true), true);
        assert!(valid(&cluster, CLUSTER_SNAPSHOT_ID_LIMIT), "{cluster}");
        assert_ne!(
            cluster,
            dr_copy_id(&scheduled_id(&"c".repeat(62), at(), true), true)
        );
        for id in [
            scheduled_id("Orders_DB", at(), false),
            pre_deploy_id("orders", at(), "sha256:zz"),
            dr_copy_id("rds:x", false),
        ] {
            assert!(valid(&id, SNAPSHOT_ID_LIMIT), "{id}");
        }
        assert!(is_pre_deploy_id(&pre_deploy_id("db", at(), "sha256:ab")));
        assert!(!is_pre_deploy_id("before-migration-predeploy-1"));
    }

    #[test]
    fn only_our_prefix_with_our_tag_is_ours() {
        let ours = [(tag::CREATED_BY, BY_SNAPSHOT)];
        assert!(is_ours("autopilot-db-202611240310", ours));
        assert!(is_ours("autopilot-dr-x", [(tag::CREATED_BY, BY_DEPLOY)]));
        assert!(!is_ours("nightly-db", ours), "a foreign name with our tag");
        assert!(!is_ours("autopilot-db-1", [(tag::CREATED_BY, "someone")]));
        assert!(!is_ours("autopilot-db-1", []));
    }

    #[test]
    fn stamps_round_trip() {
        assert_eq!(stamp(at()), "2026-11-24T03:10:42Z");
        assert_eq!(parse_stamp(&stamp(at())), Some(at()));
        assert_eq!(parse_stamp("yesterday"), None);
    }
}
