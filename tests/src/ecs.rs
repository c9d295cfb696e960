//! ECR and ECS fixtures: repositories and pushes, clusters, production-shaped
//! task definitions (Fargate, and EC2 for the fields Fargate refuses), services.

use crate::{bridge, digest, Stack, ACCOUNT, PLAINTEXT_SECRET, REGION};
use aws_sdk_ecs::types::*;
use serde_json::json;

impl Stack {
    pub async fn repository(&self, base: &str) -> String {
        let name = self.name(base);
        self.ecr
            .create_repository()
            .repository_name(&name)
            .send()
            .await
            .expect("create repository");
        name
    }

    /// Pushes an image and returns its digest.
    pub async fn push(&self, repository: &str, tag: &str) -> String {
        self.push_digest(repository, tag, &digest(&format!("{repository}:{tag}")))
            .await
    }

    /// Pushes an image with the given digest (moto would give every manifest the same one).
    pub async fn push_digest(&self, repository: &str, tag: &str, digest: &str) -> String {
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7023, "digest": digest},
            "layers": []
        });
        self.ecr
            .put_image()
            .repository_name(repository)
            .image_manifest(manifest.to_string())
            .image_tag(tag)
            .image_digest(digest)
            .send()
            .await
            .expect("put image");
        digest.to_string()
    }

    /// Sets when an image was pushed, in epoch seconds with a fraction as ECR keeps
    /// (moto keeps whole seconds, so pushes in one second would tie).
    pub fn set_pushed_at(&self, repository: &str, digest: &str, epoch: f64) {
        bridge(
            "/_bridge/ecr/pushed-at",
            json!({"repository": repository, "digest": digest, "epoch": epoch}),
        );
    }

    pub async fn cluster(&self, base: &str) -> String {
        let name = self.name(base);
        self.ecs
            .create_cluster()
            .cluster_name(&name)
            .send()
            .await
            .expect("create cluster");
        name
    }

    /// The image URI of `repository:tag` in the emulator's registry.
    pub fn image(&self, repository: &str, tag: &str) -> String {
        format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repository}:{tag}")
    }

    /// Registers a production-shaped Fargate task definition: secrets, health check,
    /// awslogs, ports, mounts, dependencies, ulimits, roles, and every optional
    /// field Fargate accepts (not `placementConstraints` or `ipcMode`: see
    /// [`Stack::ec2_task_definition`]).
    pub async fn task_definition(
        &self,
        family: &str,
        container: &str,
        image: &str,
    ) -> TaskDefinition {
        self.ecs
            .register_task_definition()
            .family(family)
            .task_role_arn(format!("arn:aws:iam::{ACCOUNT}:role/{family}-task"))
            .execution_role_arn(format!("arn:aws:iam::{ACCOUNT}:role/{family}-execution"))
            .network_mode(NetworkMode::Awsvpc)
            .requires_compatibilities(Compatibility::Fargate)
            .cpu("512")
            .memory("1024")
            .pid_mode(PidMode::Task)
            .runtime_platform(
                RuntimePlatform::builder()
                    .cpu_architecture(CpuArchitecture::Arm64)
                    .operating_system_family(OsFamily::Linux)
                    .build(),
            )
            .ephemeral_storage(EphemeralStorage::builder().size_in_gib(30).build())
            .proxy_configuration(
                ProxyConfiguration::builder()
                    .container_name("envoy")
                    .r#type(ProxyConfigurationType::Appmesh)
                    // What App Mesh requires: the ports and the uid envoy runs as.
                    .set_properties(Some(
                        [
                            ("AppPorts", "8080"),
                            ("IgnoredUID", "1337"),
                            ("ProxyIngressPort", "15000"),
                            ("ProxyEgressPort", "15001"),
                            ("EgressIgnoredIPs", "169.254.170.2,169.254.169.254"),
                        ]
                        .into_iter()
                        .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
                        .collect(),
                    ))
                    .build()
                    .unwrap(),
            )
            .volumes(Volume::builder().name("scratch").build())
            .tags(Tag::builder().key("team").value("payments").build())
            .container_definitions(
                ContainerDefinition::builder()
                    .name(container)
                    .image(image)
                    .essential(true)
                    .cpu(256)
                    .memory_reservation(512)
                    .environment(
                        KeyValuePair::builder()
                            .name("RUST_LOG")
                            .value("info")
                            .build(),
                    )
                    // A secret where it should not be, as real task definitions have:
                    // deploy copies it, and must never log or page it.
                    .environment(
                        KeyValuePair::builder()
                            .name("PAYMENTS_API_KEY")
                            .value(PLAINTEXT_SECRET)
                            .build(),
                    )
                    .secrets(
                        Secret::builder()
                            .name("DATABASE_URL")
                            .value_from(format!(
                                "arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{family}/db-url"
                            ))
                            .build()
                            .unwrap(),
                    )
                    .health_check(
                        HealthCheck::builder()
                            .command("CMD-SHELL")
                            .command("curl -fsS http://localhost:8080/health || exit 1")
                            .interval(15)
                            .timeout(5)
                            .retries(3)
                            .start_period(30)
                            .build()
                            .unwrap(),
                    )
                    .log_configuration(
                        LogConfiguration::builder()
                            .log_driver(LogDriver::Awslogs)
                            .options("awslogs-group", format!("/ecs/{family}"))
                            .options("awslogs-region", REGION)
                            .options("awslogs-stream-prefix", container)
                            .build()
                            .unwrap(),
                    )
                    .port_mappings(
                        PortMapping::builder()
                            .container_port(8080)
                            .protocol(TransportProtocol::Tcp)
                            .name("http")
                            .build(),
                    )
                    .mount_points(
                        MountPoint::builder()
                            .source_volume("scratch")
                            .container_path("/tmp/scratch")
                            .read_only(false)
                            .build(),
                    )
                    .depends_on(
                        ContainerDependency::builder()
                            .container_name("envoy")
                            .condition(ContainerCondition::Healthy)
                            .build()
                            .unwrap(),
                    )
                    .ulimits(
                        Ulimit::builder()
                            .name(UlimitName::Nofile)
                            .soft_limit(65536)
                            .hard_limit(65536)
                            .build()
                            .unwrap(),
                    )
                    .stop_timeout(60)
                    .build(),
            )
            .container_definitions(
                ContainerDefinition::builder()
                    .name("envoy")
                    .image("public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29.4.0-prod")
                    .essential(true)
                    .user("1337")
                    // The app waits for envoy to be HEALTHY, which needs a health check.
                    .health_check(
                        HealthCheck::builder()
                            .command("CMD-SHELL")
                            .command("curl -s http://localhost:9901/server_info | grep state | grep -q LIVE")
                            .interval(5)
                            .timeout(2)
                            .retries(3)
                            .start_period(10)
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("register task definition")
            .task_definition()
            .cloned()
            .expect("task definition")
    }

    /// Registers an EC2 task definition (bridge networking) with the fields Fargate
    /// refuses: placement constraints and an IPC mode.
    pub async fn ec2_task_definition(
        &self,
        family: &str,
        container: &str,
        image: &str,
    ) -> TaskDefinition {
        self.ecs
            .register_task_definition()
            .family(family)
            .task_role_arn(format!("arn:aws:iam::{ACCOUNT}:role/{family}-task"))
            .network_mode(NetworkMode::Bridge)
            .requires_compatibilities(Compatibility::Ec2)
            .ipc_mode(IpcMode::Task)
            .pid_mode(PidMode::Host)
            .placement_constraints(
                TaskDefinitionPlacementConstraint::builder()
                    .r#type(TaskDefinitionPlacementConstraintType::MemberOf)
                    .expression("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]")
                    .build(),
            )
            .tags(Tag::builder().key("team").value("payments").build())
            .container_definitions(
                ContainerDefinition::builder()
                    .name(container)
                    .image(image)
                    .essential(true)
                    .memory(512)
                    .port_mappings(
                        PortMapping::builder()
                            .container_port(8080)
                            .host_port(0)
                            .protocol(TransportProtocol::Tcp)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("register EC2 task definition")
            .task_definition()
            .cloned()
            .expect("task definition")
    }

    /// A service on `task_definition`, with a rolling-update configuration of its
    /// own: Fargate in the default VPC for an `awsvpc` task definition (which AWS
    /// requires a network configuration for), EC2 otherwise.
    pub async fn service(&self, cluster: &str, name: &str, task_definition: &str) -> String {
        let (td, _) = self.describe_task_definition(task_definition).await;
        let mut request = self
            .ecs
            .create_service()
            .cluster(cluster)
            .service_name(name)
            .task_definition(task_definition)
            .desired_count(2);
        if td.network_mode() == Some(&NetworkMode::Awsvpc) {
            let network = bridge("/_bridge/ec2/network", json!({"region": REGION}));
            let strings = |key: &str| -> Vec<String> {
                network[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect()
            };
            request = request
                .launch_type(LaunchType::Fargate)
                .network_configuration(
                    NetworkConfiguration::builder()
                        .awsvpc_configuration(
                            AwsVpcConfiguration::builder()
                                .set_subnets(Some(strings("subnets")))
                                .set_security_groups(Some(strings("securityGroups")))
                                .assign_public_ip(AssignPublicIp::Disabled)
                                .build()
                                .unwrap(),
                        )
                        .build(),
                );
        } else {
            request = request.launch_type(LaunchType::Ec2);
        }
        request
            .deployment_configuration(
                DeploymentConfiguration::builder()
                    .maximum_percent(200)
                    .minimum_healthy_percent(100)
                    .build(),
            )
            .send()
            .await
            .expect("create service")
            .service()
            .and_then(|s| s.service_arn())
            .expect("service arn")
            .to_string()
    }

    pub async fn describe_service(&self, cluster: &str, name: &str) -> Service {
        self.ecs
            .describe_services()
            .cluster(cluster)
            .services(name)
            .send()
            .await
            .expect("describe service")
            .services()
            .first()
            .cloned()
            .expect("service exists")
    }

    /// The task definition and its tags.
    pub async fn describe_task_definition(&self, name: &str) -> (TaskDefinition, Vec<Tag>) {
        let out = self
            .ecs
            .describe_task_definition()
            .task_definition(name)
            .include(TaskDefinitionField::Tags)
            .send()
            .await
            .expect("describe task definition");
        (out.task_definition().cloned().unwrap(), out.tags().to_vec())
    }

    /// Every revision ARN of a family.
    pub async fn revisions(&self, family: &str) -> Vec<String> {
        self.ecs
            .list_task_definitions()
            .family_prefix(family)
            .send()
            .await
            .expect("list task definitions")
            .task_definition_arns()
            .iter()
            .filter(|a| deploy::taskdef::family_of(a) == Some(family))
            .cloned()
            .collect()
    }
}
