//! What keeps the Lambda zips small (issue #9, docs/benchmarks.md "What made the
//! zips small"): one HTTP stack, one TLS stack with one crypto provider, no regex
//! engine, and the size-tuned release profile. A dependency that brings a second
//! stack back fails here, in `make test`, not months later in `make bench`.

use std::collections::BTreeMap;
use std::path::Path;

fn workspace_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every package in Cargo.lock, with each of its versions. The lock file's
/// `[[package]]` entries always open with `name = "…"` then `version = "…"`.
fn locked() -> BTreeMap<String, Vec<String>> {
    let lock = workspace_file("Cargo.lock");
    let mut packages: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line != "[[package]]" {
            continue;
        }
        let name = quoted(lines.next(), "name");
        let version = quoted(lines.next(), "version");
        packages.entry(name).or_default().push(version);
    }
    assert!(packages.contains_key("autopilot-shared"), "Cargo.lock read");
    packages
}

/// The value of a `key = "value"` line.
fn quoted(line: Option<&str>, key: &str) -> String {
    let line = line.unwrap_or_default();
    line.strip_prefix(key)
        .and_then(|rest| rest.trim_start().strip_prefix('='))
        .map(|value| value.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("expected `{key} = ...` in Cargo.lock, got {line:?}"))
}

/// The `key = value` lines of `[profile.release]` in the workspace manifest.
fn release_profile() -> BTreeMap<String, String> {
    let manifest = workspace_file("Cargo.toml");
    manifest
        .lines()
        .skip_while(|line| line.trim() != "[profile.release]")
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn one_http_and_one_tls_stack_are_linked() {
    let packages = locked();
    for name in ["hyper", "h2", "rustls", "hyper-rustls", "tokio-rustls"] {
        let versions = packages.get(name).cloned().unwrap_or_default();
        assert!(
            versions.len() <= 1,
            "{name} is locked at {versions:?}: a second HTTP or TLS stack is back \
             (an SDK crate or aws-config with its default features?)"
        );
    }
    assert_eq!(
        packages
            .get("hyper")
            .map(|v| v[0].split('.').next() == Some("1")),
        Some(true),
        "hyper 1 is the one HTTP stack"
    );
}

#[test]
fn ring_is_the_only_crypto_provider() {
    let packages = locked();
    for name in [
        "aws-lc-rs",
        "aws-lc-sys",
        "aws-lc-fips-sys",
        "openssl",
        "native-tls",
    ] {
        assert!(
            !packages.contains_key(name),
            "{name} is in Cargo.lock: TLS must use ring everywhere (shared::aws::https_client, \
             shared::postgres, pagerduty)"
        );
    }
    assert!(packages.contains_key("ring"));
}

#[test]
fn no_credential_sources_or_regex_engine_a_lambda_does_not_use() {
    let packages = locked();
    for name in ["aws-sdk-sso", "aws-sdk-ssooidc", "regex", "regex-automata"] {
        assert!(
            !packages.contains_key(name),
            "{name} is in Cargo.lock (aws-config's sso feature, or tracing-subscriber's env-filter?)"
        );
    }
}

#[test]
fn the_release_profile_is_tuned_for_size() {
    let release = release_profile();
    let expected = [
        ("lto", "\"fat\""),
        ("codegen-units", "1"),
        ("opt-level", "\"z\""),
        ("panic", "\"abort\""),
        ("strip", "true"),
    ];
    for (key, value) in expected {
        assert_eq!(
            release.get(key).map(String::as_str),
            Some(value),
            "[profile.release] {key}: see docs/benchmarks.md for what it buys"
        );
    }
}
