//! The SAM template lints clean and wires every setting the code reads.

use autopilot_shared::config::{DRY_RUN, TOPIC_ARN};
use autopilot_tests::root;
use std::process::Command;

#[test]
fn cfn_lint_is_clean() {
    let lint = root().join(".venv/bin/cfn-lint");
    let out = Command::new(&lint)
        .arg(root().join("template.yaml"))
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run `make setup`", lint.display()));
    assert!(
        out.status.success(),
        "cfn-lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_template_sets_every_variable_the_configuration_reads() {
    let template = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    for var in [
        TOPIC_ARN,
        DRY_RUN,
        deploy::config::SERVICES,
        deploy::config::DEPLOY_TIMEOUT_MINUTES,
        deploy::config::DEPLOY_CONCURRENCY,
        rotate::config::ROTATIONS,
        rotate::config::DB_CA_BUNDLE,
    ] {
        assert!(
            template.contains(&format!("{var}:")),
            "template.yaml does not set {var}"
        );
    }
    for var in [
        pagerduty::config::ROUTING_KEY_SECRET,
        pagerduty::config::URL,
    ] {
        assert!(
            template.contains(&format!("{var}:")),
            "template.yaml does not set {var}"
        );
    }
    for binary in ["deploy", "rotate", "pagerduty"] {
        assert!(
            template.contains(&format!("Binary: {binary}")),
            "template.yaml does not build {binary}"
        );
    }
}

/// Secrets under a customer managed key: rotate may decrypt and encrypt with the
/// configured keys only, and only through Secrets Manager.
#[test]
fn rotate_uses_secret_keys_only_through_secrets_manager() {
    let policies = autopilot_tests::template::properties("RotateFunction")["Policies"].clone();
    let statement = policies
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["Statement"].as_array())
        .flatten()
        .filter_map(|s| s.get("Fn::If").map(|b| b[1].clone()))
        .find(|s| s["Sid"] == "SecretKeysThroughSecretsManager")
        .expect("a KMS statement for SecretKmsKeyArns");
    assert_eq!(
        statement["Action"],
        serde_json::json!(["kms:Decrypt", "kms:GenerateDataKey"])
    );
    assert_eq!(
        statement["Resource"],
        serde_json::json!({"Ref": "SecretKmsKeyArns"})
    );
    assert_eq!(
        statement["Condition"]["StringEquals"]["kms:ViaService"],
        serde_json::json!({"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"})
    );
}
