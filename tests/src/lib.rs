//! The local AWS harness: moto server (with the bridges in `harness/moto_bridge.py`)
//! on a free loopback port, real SDK clients over real HTTP, and fixtures that
//! stand up ECR repositories, ECS clusters and services, and an on-call topic
//! whose pages land in an SQS queue the tests read.
//!
//! One emulator serves a whole test binary; every [`Stack`] uses names of its own,
//! so tests run in parallel without resetting each other's state.

pub mod logs;
pub mod postgres;
pub mod rotation;

use aws_config::{Region, SdkConfig};
use aws_sdk_ecs::types::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

pub const ACCOUNT: &str = "123456789012";
/// The value of a secret that fixtures put in a task definition's plain environment.
pub const PLAINTEXT_SECRET: &str = "sk_live_plaintext_sentinel_4f2a9c";
pub const REGION: &str = "us-east-1";

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python that has moto: `AUTOPILOT_PYTHON`, else the set-up's venv.
pub fn python() -> PathBuf {
    std::env::var_os("AUTOPILOT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"))
}

pub struct Emulator {
    pub port: u16,
    _child: Mutex<Child>,
}

impl Emulator {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The test binary's emulator, started on first use. It exits when the test process does.
pub fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(|| {
        let script = root().join("tests/harness/moto_bridge.py");
        let mut child = Command::new(python())
            .arg(&script)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} with {}: {e}; run `make setup`",
                    script.display(),
                    python().display()
                )
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("emulator prints its port");
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("emulator did not report a port: {line:?}"));
        Emulator {
            port,
            _child: Mutex::new(child),
        }
    })
}

/// SDK configuration pointing at the emulator, with dummy credentials.
/// The production loader (timeouts, retries), pointed at the emulator.
pub async fn sdk_config() -> SdkConfig {
    autopilot_shared::aws::loader()
        .endpoint_url(emulator().endpoint())
        .region(Region::new(REGION))
        .credentials_provider(aws_sdk_sns::config::Credentials::new(
            "test", "test", None, None, "harness",
        ))
        .load()
        .await
}

/// POSTs JSON to one of the bridge's control endpoints.
pub fn bridge(path: &str, body: Value) -> Value {
    let body = body.to_string();
    let mut stream =
        TcpStream::connect(("127.0.0.1", emulator().port)).expect("connect to emulator");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write to emulator");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read from emulator");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "bridge {path}: {head}\n{body}"
    );
    serde_json::from_str(body).unwrap_or_else(|e| panic!("bridge {path} answered {body:?}: {e}"))
}

/// `sha256:` + the hash of `seed`: a realistic, distinct digest per image.
pub fn digest(seed: &str) -> String {
    let hex: String = Sha256::digest(seed.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// A page as on-call's SQS subscription received it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub subject: String,
    /// The PagerDuty-shaped JSON (the `sqs` key of the message).
    pub body: Value,
    pub severity: String,
}

impl Captured {
    pub fn summary(&self) -> &str {
        self.body["payload"]["summary"].as_str().unwrap_or_default()
    }
    pub fn detail(&self, key: &str) -> &Value {
        &self.body["payload"]["custom_details"][key]
    }
    pub fn action(&self) -> &str {
        self.body["event_action"].as_str().unwrap_or_default()
    }
    pub fn dedup_key(&self) -> &str {
        self.body["dedup_key"].as_str().unwrap_or_default()
    }
}

/// One test's world: its own names, on-call topic and capture queue.
pub struct Stack {
    pub sdk: SdkConfig,
    pub ecs: aws_sdk_ecs::Client,
    pub ecr: aws_sdk_ecr::Client,
    pub sns: aws_sdk_sns::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// Unique per stack; every resource name starts with it.
    pub prefix: String,
    pub topic_arn: String,
    pub queue_url: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Stack {
    pub async fn new(test: &str) -> Self {
        Self::with_topic(test, false).await
    }

    /// A stack whose on-call topic (and capture queue) is FIFO when `fifo`.
    pub async fn with_topic(test: &str, fifo: bool) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        Self::create(format!("{}-{n}", test.replace('_', "-")), fifo).await
    }

    /// A stack with plain names (`backend`, `prod`, `oncall`), as in `events/`; for the demo.
    pub async fn unprefixed() -> Self {
        Self::create(String::new(), false).await
    }

    async fn create(prefix: String, fifo: bool) -> Self {
        let sdk = sdk_config().await;
        let sns = aws_sdk_sns::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let suffix = if fifo { ".fifo" } else { "" };
        let name = |base: &str| {
            if prefix.is_empty() {
                base.to_string()
            } else {
                format!("{prefix}-{base}")
            }
        };
        let mut topic = sns
            .create_topic()
            .name(format!("{}{suffix}", name("oncall")));
        let mut queue = sqs
            .create_queue()
            .queue_name(format!("{}{suffix}", name("pages")));
        if fifo {
            topic = topic.attributes("FifoTopic", "true");
            queue = queue.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
        }
        let topic_arn = topic
            .send()
            .await
            .expect("create topic")
            .topic_arn()
            .unwrap()
            .to_string();
        let queue_url = queue
            .send()
            .await
            .expect("create queue")
            .queue_url()
            .unwrap()
            .to_string();
        let queue_arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}{suffix}", name("pages"));
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .send()
            .await
            .expect("subscribe queue");
        Self {
            ecs: aws_sdk_ecs::Client::new(&sdk),
            ecr: aws_sdk_ecr::Client::new(&sdk),
            sdk,
            sns,
            sqs,
            prefix,
            topic_arn,
            queue_url,
        }
    }

    /// A resource name of this stack.
    pub fn name(&self, base: &str) -> String {
        if self.prefix.is_empty() {
            base.to_string()
        } else {
            format!("{}-{base}", self.prefix)
        }
    }

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

    /// Sets when an image was pushed (moto keeps whole seconds, so pushes tie).
    pub fn set_pushed_at(&self, repository: &str, digest: &str, epoch: i64) {
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
    /// awslogs, ports, mounts, dependencies, ulimits, roles, every optional field.
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
            .ipc_mode(IpcMode::None)
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
                    .properties(
                        KeyValuePair::builder()
                            .name("AppPorts")
                            .value("8080")
                            .build(),
                    )
                    .build()
                    .unwrap(),
            )
            .volumes(Volume::builder().name("scratch").build())
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
                    .cpu(256)
                    .memory_reservation(512)
                    .environment(
                        KeyValuePair::builder()
                            .name("RUST_LOG")
                            .value("info")
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
                    .build(),
            )
            .send()
            .await
            .expect("register task definition")
            .task_definition()
            .cloned()
            .expect("task definition")
    }

    /// A Fargate service on `task_definition`, with a rolling-update configuration of its own.
    /// moto validates subnets when a network configuration is given, so none is.
    pub async fn service(&self, cluster: &str, name: &str, task_definition: &str) -> String {
        self.ecs
            .create_service()
            .cluster(cluster)
            .service_name(name)
            .task_definition(task_definition)
            .desired_count(2)
            .launch_type(LaunchType::Fargate)
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

    /// A configuration lookup holding this stack's topic plus the given variables,
    /// for a function's `Config::from_lookup`, validated as at a cold start.
    pub fn lookup(&self, vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
        let mut pairs = vec![(
            autopilot_shared::config::TOPIC_ARN.to_string(),
            self.topic_arn.clone(),
        )];
        pairs.extend(vars.iter().map(|(k, v)| (k.to_string(), v.clone())));
        autopilot_shared::config::lookup_from(pairs)
    }

    /// deploy's configuration for this stack's topic plus the given variables.
    pub fn deploy_config_with(&self, vars: &[(&str, String)]) -> deploy::config::Config {
        deploy::config::Config::from_lookup(self.lookup(vars)).expect("valid deploy configuration")
    }

    /// deploy's configuration for this stack's topic and the given service mapping.
    pub fn config(&self, services: Value, dry_run: bool) -> deploy::config::Config {
        self.deploy_config_with(&[
            (deploy::config::SERVICES, services.to_string()),
            (autopilot_shared::config::DRY_RUN, dry_run.to_string()),
        ])
    }

    /// rotate's configuration for this stack's topic plus the given variables.
    pub fn rotate_config_with(&self, vars: &[(&str, String)]) -> rotate::config::Config {
        rotate::config::Config::from_lookup(self.lookup(vars)).expect("valid rotate configuration")
    }

    /// rotate's configuration for this stack's topic and the given rotations.
    pub fn rotation_config(&self, rotations: Value) -> rotate::config::Config {
        self.rotate_config_with(&[(rotate::config::ROTATIONS, rotations.to_string())])
    }

    /// Every page received since the last call, oldest first.
    pub async fn pages(&self) -> Vec<Captured> {
        let mut pages = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("receive pages");
            if out.messages().is_empty() {
                return pages;
            }
            for m in out.messages() {
                let envelope: Value =
                    serde_json::from_str(m.body().unwrap_or_default()).expect("SNS envelope");
                let body: Value =
                    serde_json::from_str(envelope["Message"].as_str().unwrap_or_default())
                        .unwrap_or_else(|e| {
                            panic!("page body is not the machine JSON: {e}: {envelope}")
                        });
                pages.push(Captured {
                    subject: envelope["Subject"].as_str().unwrap_or_default().to_string(),
                    severity: envelope["MessageAttributes"]["severity"]["Value"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    body,
                });
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete page");
            }
        }
    }

    /// The AWS operations made so far whose request mentions this stack, in order.
    pub fn calls(&self) -> Vec<String> {
        let out = bridge("/_bridge/calls", json!({"match": self.prefix}));
        out["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    }

    /// Makes the next `count` calls of `operation` that mention this stack fail.
    pub fn fail_next(&self, operation: &str, count: u32, code: &str) {
        bridge(
            "/_bridge/fault",
            json!({"operation": operation, "count": count, "match": self.prefix, "code": code, "status": 400}),
        );
    }
}

/// An EventBridge `ECR Image Action` event.
pub fn ecr_event(
    repository: &str,
    tag: Option<&str>,
    digest: &str,
    action: &str,
    result: &str,
) -> Value {
    let mut detail = json!({
        "result": result,
        "repository-name": repository,
        "image-digest": digest,
        "action-type": action,
    });
    if let Some(tag) = tag {
        detail["image-tag"] = json!(tag);
    }
    json!({
        "version": "0",
        "id": format!("ecr-{repository}-{digest}"),
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": ACCOUNT,
        "time": "2026-11-23T10:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": detail,
    })
}

/// An EventBridge `ECS Deployment State Change` event.
pub fn deployment_event(
    service_arn: &str,
    deployment_id: &str,
    event_name: &str,
    reason: &str,
) -> Value {
    json!({
        "version": "0",
        "id": format!("ecs-{deployment_id}-{event_name}"),
        "detail-type": "ECS Deployment State Change",
        "source": "aws.ecs",
        "account": ACCOUNT,
        "time": "2026-11-23T10:05:00Z",
        "region": REGION,
        "resources": [service_arn],
        "detail": {
            "eventType": if event_name.ends_with("FAILED") { "ERROR" } else { "INFO" },
            "eventName": event_name,
            "deploymentId": deployment_id,
            "updatedAt": "2026-11-23T10:05:00.000Z",
            "reason": reason,
        }
    })
}

/// An EventBridge `Scheduled Event` at `time` (RFC 3339).
pub fn scheduled_event(time: &str) -> Value {
    json!({
        "version": "0",
        "id": format!("sweep-{time}"),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": time,
        "region": REGION,
        "resources": [format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/autopilot-deploy-sweep")],
        "detail": {}
    })
}
