//! Pure decisions, one module per event: what a push means for each mapped
//! service ([`push`]), what on-call hears of a deployment's verdict
//! ([`verdict`]), and which deployments have run too long ([`sweep`]); which
//! deployment is autopilot's before its id is recorded is [`adopt`]; the page
//! text is in [`pages`]. No I/O here: `observe` reads the state these take
//! and `apply` carries their decisions out. Every branch is unit-tested.

pub mod adopt;
pub mod pages;
pub mod push;
pub mod sweep;
pub mod verdict;

/// `family:revision`, the short name on-call reads.
pub fn revision_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// A timestamp as on-call reads it: RFC 3339, with the fraction ECR keeps.
pub fn show_time(t: &aws_smithy_types::DateTime) -> String {
    t.fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_else(|_| t.secs().to_string())
}

#[cfg(test)]
pub(crate) mod fixtures;
