//! Task definition revisions: the allowlist copy and the deployment record kept in tags.
//!
//! DescribeTaskDefinition returns fields RegisterTaskDefinition rejects
//! (revision, status, registeredAt, …). Copying the whole description is the
//! classic deploy-tool bug, so [`register_request`] copies the fields
//! RegisterTaskDefinition accepts, one by one, and nothing else.
//!
//! What autopilot did is written into the tags of the revision it registered
//! (a [`Record`]), so any later invocation can tell its own deployments apart
//! without a database, and without touching tags on the service, which stacks
//! managed by CloudFormation or Terraform own.

use aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder;
use aws_sdk_ecs::types::{ContainerDefinition, Tag, TaskDefinition};

/// ECS allows 50 tags per resource.
pub const TAG_LIMIT: usize = 50;
/// Tags added after registration: deployment id, verdict, timeout warning.
pub const LATER_TAGS: usize = 3;

pub use autopilot_shared::record::{tag, Record};

/// The [`Record`] in ECS tags.
pub trait EcsRecord: Sized {
    /// The record in `tags`, if autopilot registered the revision.
    fn from_tags(tags: &[Tag]) -> Option<Self>;
    /// The tags written at registration (the later ones are added with TagResource).
    fn registration_tags(&self) -> Vec<Tag>;
}

impl EcsRecord for Record {
    fn from_tags(tags: &[Tag]) -> Option<Self> {
        Record::from_pairs(
            tags.iter()
                .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
        )
    }

    fn registration_tags(&self) -> Vec<Tag> {
        self.registration_pairs()
            .iter()
            .map(|(k, v)| ecs_tag(k, v))
            .collect()
    }
}

pub fn ecs_tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// The family in a task definition ARN (`…:task-definition/backend:7` → `backend`).
pub fn family_of(arn: &str) -> Option<&str> {
    arn.rsplit('/')
        .next()?
        .rsplit_once(':')
        .map(|(family, _)| family)
}

/// The image of `container` in `td`.
pub fn container_image<'a>(td: &'a TaskDefinition, container: &str) -> Option<&'a str> {
    td.container_definitions()
        .iter()
        .find(|c| c.name() == Some(container))
        .and_then(|c| c.image())
}

/// Everything needed to register the new revision.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRevision {
    /// The revision the service runs now; copied field by field.
    pub source: TaskDefinition,
    /// Its tags, from DescribeTaskDefinition with `include=TAGS`.
    pub source_tags: Vec<Tag>,
    /// The containers whose image is replaced; every other container is copied as it is.
    pub containers: Vec<String>,
    pub image: String,
    pub record: Record,
}

impl NewRevision {
    /// The source's own tags, less AWS-reserved ones (which cannot be set) and
    /// autopilot's (which describe the source, not this revision), plus the new record.
    pub fn tags(&self) -> Vec<Tag> {
        let mut tags: Vec<Tag> = self
            .source_tags
            .iter()
            .filter(|t| {
                let k = t.key().unwrap_or_default();
                !k.starts_with("aws:") && !k.starts_with(tag::PREFIX)
            })
            .cloned()
            .collect();
        tags.extend(self.record.registration_tags());
        tags
    }

    /// The container definitions with only the mapped containers' image changed.
    pub fn container_definitions(&self) -> Vec<ContainerDefinition> {
        self.source
            .container_definitions()
            .iter()
            .map(|c| {
                let mut c = c.clone();
                if c.name()
                    .is_some_and(|n| self.containers.iter().any(|m| m == n))
                {
                    c.image = Some(self.image.clone());
                }
                c
            })
            .collect()
    }
}

/// Fills a RegisterTaskDefinition call from `rev`: every field the API accepts, nothing read-only.
// Inference accelerators are deprecated (Elastic Inference is retired) but still
// accepted; a revision that has them keeps them rather than silently changing.
#[allow(deprecated)]
pub fn register_request(
    call: RegisterTaskDefinitionFluentBuilder,
    rev: &NewRevision,
) -> RegisterTaskDefinitionFluentBuilder {
    let td = &rev.source;
    let tags = rev.tags();
    call.set_family(td.family.clone())
        .set_task_role_arn(td.task_role_arn.clone())
        .set_execution_role_arn(td.execution_role_arn.clone())
        .set_network_mode(td.network_mode.clone())
        .set_container_definitions(Some(rev.container_definitions()))
        .set_volumes(td.volumes.clone())
        .set_placement_constraints(td.placement_constraints.clone())
        .set_requires_compatibilities(td.requires_compatibilities.clone())
        .set_cpu(td.cpu.clone())
        .set_memory(td.memory.clone())
        .set_tags((!tags.is_empty()).then_some(tags))
        .set_pid_mode(td.pid_mode.clone())
        .set_ipc_mode(td.ipc_mode.clone())
        .set_proxy_configuration(td.proxy_configuration.clone())
        .set_inference_accelerators(td.inference_accelerators.clone())
        .set_ephemeral_storage(td.ephemeral_storage.clone())
        .set_runtime_platform(td.runtime_platform.clone())
        .set_enable_fault_injection(td.enable_fault_injection)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::*;

    fn record() -> Record {
        Record {
            repository: "backend".into(),
            image_tag: "v2".into(),
            digest: "sha256:new".into(),
            previous: "arn:aws:ecs:us-east-1:1:task-definition/backend:7".into(),
            service: "prod/backend".into(),
            push_event: Some("5b1c9e2a-7f3d-4c1e-9a2b-3c4d5e6f7a8b".into()),
            push_event_time: Some("2026-11-23T10:00:00.250Z".parse().unwrap()),
            deployment_id: None,
            verdict: None,
            timeout_warned: None,
        }
    }

    /// A task definition with every field set, the read-only ones too.
    #[allow(deprecated)]
    fn full() -> TaskDefinition {
        let app = ContainerDefinition::builder()
            .name("app")
            .image("1.dkr.ecr.us-east-1.amazonaws.com/backend:v1")
            .essential(true)
            .environment(KeyValuePair::builder().name("MODE").value("prod").build())
            .secrets(
                Secret::builder()
                    .name("DB")
                    .value_from("arn:aws:secretsmanager:us-east-1:1:secret:db")
                    .build()
                    .unwrap(),
            )
            .health_check(
                HealthCheck::builder()
                    .command("CMD-SHELL")
                    .command("curl -f localhost/health")
                    .interval(10)
                    .build()
                    .unwrap(),
            )
            .log_configuration(
                LogConfiguration::builder()
                    .log_driver(LogDriver::Awslogs)
                    .options("awslogs-group", "/ecs/backend")
                    .build()
                    .unwrap(),
            )
            .port_mappings(
                PortMapping::builder()
                    .container_port(8080)
                    .protocol(TransportProtocol::Tcp)
                    .build(),
            )
            .mount_points(
                MountPoint::builder()
                    .source_volume("data")
                    .container_path("/data")
                    .build(),
            )
            .depends_on(
                ContainerDependency::builder()
                    .container_name("sidecar")
                    .condition(ContainerCondition::Start)
                    .build()
                    .unwrap(),
            )
            .ulimits(
                Ulimit::builder()
                    .name(UlimitName::Nofile)
                    .soft_limit(1024)
                    .hard_limit(4096)
                    .build()
                    .unwrap(),
            )
            .build();
        let sidecar = ContainerDefinition::builder()
            .name("sidecar")
            .image("envoy:1.30")
            .build();
        TaskDefinition::builder()
            .task_definition_arn("arn:aws:ecs:us-east-1:1:task-definition/backend:7")
            .family("backend")
            .revision(7)
            .status(TaskDefinitionStatus::Active)
            .registered_by("someone")
            .requires_attributes(
                Attribute::builder()
                    .name("ecs.capability.secrets")
                    .build()
                    .unwrap(),
            )
            .compatibilities(Compatibility::Fargate)
            .task_role_arn("arn:aws:iam::1:role/task")
            .execution_role_arn("arn:aws:iam::1:role/exec")
            .network_mode(NetworkMode::Awsvpc)
            .container_definitions(app)
            .container_definitions(sidecar)
            .volumes(Volume::builder().name("data").build())
            .placement_constraints(
                TaskDefinitionPlacementConstraint::builder()
                    .r#type(TaskDefinitionPlacementConstraintType::MemberOf)
                    .expression("attribute:x == y")
                    .build(),
            )
            .requires_compatibilities(Compatibility::Fargate)
            .cpu("512")
            .memory("1024")
            .pid_mode(PidMode::Task)
            .ipc_mode(IpcMode::None)
            .proxy_configuration(
                ProxyConfiguration::builder()
                    .container_name("sidecar")
                    .r#type(ProxyConfigurationType::Appmesh)
                    .build()
                    .unwrap(),
            )
            .inference_accelerators(
                InferenceAccelerator::builder()
                    .device_name("d")
                    .device_type("eia2.medium")
                    .build()
                    .unwrap(),
            )
            .ephemeral_storage(EphemeralStorage::builder().size_in_gib(30).build())
            .runtime_platform(
                RuntimePlatform::builder()
                    .cpu_architecture(CpuArchitecture::Arm64)
                    .operating_system_family(OsFamily::Linux)
                    .build(),
            )
            .enable_fault_injection(true)
            .build()
    }

    fn offline_client() -> aws_sdk_ecs::Client {
        let conf = aws_sdk_ecs::Config::builder()
            .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
            .region(aws_sdk_ecs::config::Region::new("us-east-1"))
            .build();
        aws_sdk_ecs::Client::from_conf(conf)
    }

    #[test]
    #[allow(deprecated)]
    fn copies_every_accepted_field_and_changes_only_the_image() {
        let source = full();
        let rev = NewRevision {
            source: source.clone(),
            source_tags: vec![
                ecs_tag("team", "core"),
                ecs_tag("aws:cloudformation:stack-name", "s"),
                ecs_tag(tag::DIGEST, "sha256:old"),
            ],
            containers: vec!["app".into()],
            image: "1.dkr.ecr.us-east-1.amazonaws.com/backend@sha256:new".into(),
            record: record(),
        };
        let call = register_request(offline_client().register_task_definition(), &rev);
        let input = call.as_input();
        assert_eq!(input.get_family(), &source.family);
        assert_eq!(input.get_task_role_arn(), &source.task_role_arn);
        assert_eq!(input.get_execution_role_arn(), &source.execution_role_arn);
        assert_eq!(input.get_network_mode(), &source.network_mode);
        assert_eq!(input.get_volumes(), &source.volumes);
        assert_eq!(
            input.get_placement_constraints(),
            &source.placement_constraints
        );
        assert_eq!(
            input.get_requires_compatibilities(),
            &source.requires_compatibilities
        );
        assert_eq!(input.get_cpu(), &source.cpu);
        assert_eq!(input.get_memory(), &source.memory);
        assert_eq!(input.get_pid_mode(), &source.pid_mode);
        assert_eq!(input.get_ipc_mode(), &source.ipc_mode);
        assert_eq!(input.get_proxy_configuration(), &source.proxy_configuration);
        assert_eq!(
            input.get_inference_accelerators(),
            &source.inference_accelerators
        );
        assert_eq!(input.get_ephemeral_storage(), &source.ephemeral_storage);
        assert_eq!(input.get_runtime_platform(), &source.runtime_platform);
        assert_eq!(
            input.get_enable_fault_injection(),
            &source.enable_fault_injection
        );

        let defs = input.get_container_definitions().clone().unwrap();
        let mut expected = source.container_definitions().to_vec();
        expected[0].image = Some(rev.image.clone());
        assert_eq!(
            defs, expected,
            "only the mapped container's image may change"
        );

        let tags = input.get_tags().clone().unwrap();
        let keys: Vec<_> = tags.iter().map(|t| t.key().unwrap()).collect();
        assert!(keys.contains(&"team"));
        assert!(
            !keys.contains(&"aws:cloudformation:stack-name"),
            "aws: tags cannot be set"
        );
        let digest = tags.iter().find(|t| t.key() == Some(tag::DIGEST)).unwrap();
        assert_eq!(
            digest.value(),
            Some("sha256:new"),
            "the old record must not leak into the new one"
        );
    }

    #[test]
    fn record_round_trips_through_tags() {
        let mut tags = record().registration_tags();
        assert_eq!(Record::from_tags(&tags), Some(record()));
        tags.push(ecs_tag(tag::VERDICT, "FAILED ecs-svc/1"));
        let r = Record::from_tags(&tags).unwrap();
        assert!(r.has_verdict_for("ecs-svc/1"));
        assert!(!r.has_verdict_for("ecs-svc/2"));
        assert_eq!(Record::from_tags(&[ecs_tag("team", "core")]), None);
        assert_eq!(r.image_label(), "backend:v2");
    }
}
