//! Every sample in `events/` parses as the function will parse it; the malformed
//! ones fail with an error naming the bad field, through the real handler.

use autopilot_shared::events::{self, EventError, ScheduledTask, SCHEDULED_TASK};
use autopilot_tests::*;
use deploy::detail::{
    EcrImageAction, EcsDeploymentStateChange, ECR_IMAGE_ACTION, ECS_DEPLOYMENT_STATE_CHANGE,
};
use deploy::Deployer;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};

fn samples() -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("events"))
        .expect("events/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "events/ holds a sample of every event kind"
    );
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, value)
        })
        .collect()
}

/// Secrets Manager's rotation events are not EventBridge events; they go to rotate.
fn is_rotation(name: &str) -> bool {
    name.contains("rotation")
}

fn parse(value: Value) -> Result<(), EventError> {
    let envelope = events::envelope(value)?;
    if events::is(&envelope, ECR_IMAGE_ACTION) {
        events::detail::<EcrImageAction>(&envelope, ECR_IMAGE_ACTION)?;
    } else if events::is(&envelope, ECS_DEPLOYMENT_STATE_CHANGE) {
        events::detail::<EcsDeploymentStateChange>(&envelope, ECS_DEPLOYMENT_STATE_CHANGE)?;
    } else {
        assert!(
            events::is(&envelope, SCHEDULED_TASK),
            "unexpected kind {}",
            envelope.detail_type
        );
        events::detail::<ScheduledTask>(&envelope, SCHEDULED_TASK)?;
    }
    Ok(())
}

#[test]
fn every_sample_parses_and_every_malformed_one_names_its_field() {
    for (name, value) in samples().into_iter().filter(|(n, _)| !is_rotation(n)) {
        match (name.starts_with("malformed-"), parse(value)) {
            (false, Ok(())) => {}
            (false, Err(e)) => panic!("{name}: {e}"),
            (true, Ok(())) => panic!("{name} should not parse"),
            (true, Err(EventError::Malformed { path, .. })) => {
                assert!(
                    ["repository-name", "deploymentId"].contains(&path.as_str()),
                    "{name}: {path}"
                )
            }
            (true, Err(e)) => panic!("{name}: {e}"),
        }
    }
}

#[test]
fn every_rotation_sample_parses_and_the_malformed_one_does_not() {
    for (name, value) in samples().into_iter().filter(|(n, _)| is_rotation(n)) {
        let parsed = serde_json::from_value::<
            aws_lambda_events::secretsmanager::SecretsManagerSecretRotationEvent,
        >(value);
        assert_eq!(
            parsed.is_err(),
            name.starts_with("malformed-"),
            "{name}: {parsed:?}"
        );
        if let Ok(event) = parsed {
            assert!(rotate::plan::Step::parse(&event.step).is_some(), "{name}");
        }
    }
}

/// The sweep sample is what the template's schedule sends: same envelope, same task.
#[test]
fn the_sweep_sample_is_what_the_template_schedule_sends() {
    let sample: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("events/deploy-sweep.json")).unwrap(),
    )
    .unwrap();
    let sent = sweep_event(sample["time"].as_str().unwrap());
    for key in ["source", "detail-type", "detail", "time", "version"] {
        assert_eq!(sample[key], sent[key], "{key}");
    }
}

#[tokio::test]
async fn the_handlers_reject_the_malformed_samples() {
    let stack = Stack::new("samples").await;
    let deployer = Deployer::new(&stack.sdk, stack.config(json!([]), false));
    let rotator = rotate::Rotator::new(&stack.sdk, stack.rotation_config(json!([]))).unwrap();
    for (name, value) in samples()
        .into_iter()
        .filter(|(n, _)| n.starts_with("malformed-"))
    {
        if is_rotation(&name) {
            let err = rotator
                .handle(LambdaEvent::new(value, Context::default()))
                .await
                .unwrap_err();
            assert_eq!(err.code, "autopilot.MalformedEvent", "{name}: {err}");
            assert!(err.message.contains("SecretId"), "{name}: {err}");
        } else {
            let err = deployer
                .handle(LambdaEvent::new(value, Context::default()))
                .await
                .unwrap_err();
            assert_eq!(err.code, "autopilot.MalformedEvent", "{name}: {err}");
        }
    }
}

/// Every alarm sample in `events/remediate/` (the AWS documented shapes, in the
/// three deliveries) parses into one trigger of the state its name says; the
/// malformed ones fail naming the bad field.
#[test]
fn every_alarm_sample_parses_in_every_delivery_form() {
    use autopilot_shared::invocation::Coded;
    use remediate::alarm::{self, Delivery, Input, State};
    let dir = root().join("events/remediate");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("events/remediate exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "a sample per alarm and delivery form");
    let mut forms = std::collections::HashSet::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let value: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let parsed = alarm::parse(value);
        if name.starts_with("malformed-") {
            let err = parsed.expect_err(&name);
            assert_eq!(err.code(), "autopilot.MalformedEvent", "{name}: {err}");
            continue;
        }
        let Ok(Input::Alarms(triggers)) = parsed else {
            panic!("{name}: {parsed:?}")
        };
        assert_eq!(triggers.len(), 1, "{name}");
        let t = &triggers[0];
        let want = if name.contains("-ok.") {
            State::Ok
        } else if name.contains("insufficient-data") {
            State::InsufficientData
        } else {
            State::Alarm
        };
        assert_eq!(t.state, want, "{name}");
        assert_eq!(t.region.as_deref(), Some(REGION), "{name}");
        assert!(t.state_time.is_some(), "{name}: the state time parses");
        let form = match t.delivery {
            Delivery::EventBridge => "eventbridge",
            Delivery::Sns => "sns",
            Delivery::Direct => "direct",
        };
        assert!(
            name.contains(&format!(".{form}.")),
            "{name} parsed as {form}"
        );
        forms.insert(form);
    }
    assert_eq!(forms.len(), 3, "all three delivery forms have samples");
}

/// Every sample in `events/snapshot/` (RDS's documented shapes, and the
/// template's schedules) parses into the input its name says.
#[test]
fn every_snapshot_sample_parses_into_what_its_name_says() {
    use snapshot::event::{parse, Input, What};
    let dir = root().join("events/snapshot");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("events/snapshot exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 13, "a sample per snapshot event");
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let value: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let input = parse(value).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = if name.contains("created") {
            Some(What::Created)
        } else if name.contains("copy-finished") {
            Some(What::CopyFinished)
        } else if name.contains("copy-cancelled") {
            Some(What::CopyCancelled)
        } else if name.contains("export-failed") {
            Some(What::ExportFailed)
        } else {
            None
        };
        match (&input, want) {
            (Input::Snapshot { what, .. }, Some(want)) => assert_eq!(*what, want, "{name}"),
            (Input::Drill { region, .. }, None) if name.starts_with("drill-") => {
                assert_eq!(region, "us-west-2", "{name}")
            }
            (Input::Schedule { backup, .. }, None) if name.starts_with("snapshot-") => {
                assert_eq!(*backup, name == "snapshot-backup.json", "{name}")
            }
            _ => panic!("{name} parsed as {input:?}"),
        }
    }
}
