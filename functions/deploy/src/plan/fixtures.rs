//! Values the plan tests build on: one service, its task definitions and records.

use super::push::{Found, Observed, Push};
use crate::config::ServiceTarget;
use crate::taskdef::{ecs_tag, tag, EcsRecord, Record};
use aws_sdk_ecs::types::{
    ContainerDefinition, Deployment, DeploymentRolloutState, Service, Tag, TaskDefinition,
};
use aws_smithy_types::DateTime;

pub const REG: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
pub const CUR_ARN: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/backend:7";
pub const LATEST_ARN: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/backend:8";
/// When the fixtures' task definitions were registered: just before [`service`]'s deployment.
pub const REGISTERED: i64 = 900;

pub fn push() -> Push {
    Push {
        repository: "backend".into(),
        tag: "v1.4.2".into(),
        digest: "sha256:new".into(),
        account: "123456789012".into(),
        region: "us-east-1".into(),
        event_id: Some("5b1c9e2a-7f3d-4c1e-9a2b-3c4d5e6f7a8b".into()),
        event_time: Some("2026-11-23T10:00:00Z".parse().unwrap()),
    }
}

pub fn target() -> ServiceTarget {
    ServiceTarget {
        repository: "backend".into(),
        tags: vec![],
        cluster: "prod".into(),
        service: "backend".into(),
        containers: vec!["app".into()],
        circuit_breaker: true,
        rollback: true,
        snapshot: None,
    }
}

/// A task definition with the given containers, plus a log router that is never mapped.
pub fn td_with(arn: &str, containers: &[(&str, &str)]) -> TaskDefinition {
    let mut td = TaskDefinition::builder()
        .task_definition_arn(arn)
        .family("backend")
        .registered_at(DateTime::from_secs(REGISTERED));
    for (name, image) in containers.iter().chain([("log", "fluent-bit:3")].iter()) {
        td = td.container_definitions(
            ContainerDefinition::builder()
                .name(*name)
                .image(*image)
                .build(),
        );
    }
    td.build()
}

pub fn td(arn: &str, image: &str) -> TaskDefinition {
    td_with(arn, &[("app", image)])
}

/// A service whose PRIMARY deployment `primary_id` runs `primary_td`, started at second 1000.
pub fn service(primary_td: &str, primary_id: &str) -> Service {
    Service::builder()
        .service_name("backend")
        .task_definition(primary_td)
        .deployments(
            Deployment::builder()
                .id(primary_id)
                .status("PRIMARY")
                .task_definition(primary_td)
                .rollout_state(DeploymentRolloutState::InProgress)
                .created_at(DateTime::from_secs(1_000))
                .desired_count(2)
                .build(),
        )
        .build()
}

/// What is observed of the service when it runs `current`.
pub fn running(current: TaskDefinition) -> Observed {
    Observed::Found(Box::new(Found {
        service: service(CUR_ARN, "ecs-svc/1"),
        current,
        current_tags: vec![],
        latest: None,
    }))
}

pub fn found(image: &str) -> Observed {
    running(td(CUR_ARN, image))
}

/// The tags autopilot writes when it registers a revision for `digest` and `service`.
pub fn record_tags(digest: &str, service: &str) -> Vec<Tag> {
    vec![
        ecs_tag(tag::REPOSITORY, "backend"),
        ecs_tag(tag::IMAGE_TAG, "v1.4.2"),
        ecs_tag(tag::DIGEST, digest),
        ecs_tag(tag::SERVICE, service),
        ecs_tag(tag::PREVIOUS, CUR_ARN),
    ]
}

/// autopilot's record of the revision it registered for `sha256:new`, deployed as `ecs-svc/9`.
pub fn record() -> Record {
    let mut tags = record_tags("sha256:new", "prod/backend");
    tags.push(ecs_tag(tag::DEPLOYMENT, "ecs-svc/9"));
    Record::from_tags(&tags).unwrap()
}
