//! deploy's world: repository `backend`, cluster `prod` and its one service
//! `backend` (container `app`), mapped for tags `v*`: a single-service push.

use super::{sample, uuid, vars};
use crate::measure::{Case, Step, World};
use autopilot_tests::{bridge, digest, Stack};
use chrono::{DateTime, Duration, Utc};
use deploy::Deployer;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use std::sync::Arc;

const PUSH: &str = "events/ecr-push.json";
const COMPLETED: &str = "events/ecs-deployment-completed.json";
const FAILED: &str = "events/ecs-deployment-failed.json";

pub struct Deploy {
    stack: Arc<Stack>,
    repository: String,
    cluster: String,
    service: String,
    service_arn: String,
    mapping: Value,
    /// The same handler in this process, to start the deploys whose verdicts are measured.
    deployer: Deployer,
    /// Push times count up from here, one second per push, so each push is newer.
    epoch: DateTime<Utc>,
}

impl Deploy {
    pub async fn new(stack: Arc<Stack>) -> Self {
        let repository = stack.repository("backend").await;
        stack.push(&repository, "v1.4.1").await;
        let cluster = stack.cluster("prod").await;
        let td = stack
            .task_definition("backend", "app", &stack.image(&repository, "v1.4.1"))
            .await;
        let service = "backend".to_string();
        let service_arn = stack
            .service(&cluster, &service, td.task_definition_arn().unwrap())
            .await;
        stack.settle_service(&cluster, &service).await;
        let mapping = json!([{"repository": repository, "tags": ["v*"], "cluster": cluster,
                              "service": service, "container": "app"}]);
        let deployer = Deployer::new(&stack.sdk, stack.config(mapping.clone(), false));
        Self {
            stack,
            repository,
            cluster,
            service,
            service_arn,
            mapping,
            deployer,
            epoch: Utc::now() + Duration::seconds(5),
        }
    }

    /// Pushes a new image to ECR (tag `v1.4.<serial>`, its own digest, pushed a
    /// second after the last) and returns its push event: what CI and ECR send.
    async fn push(&self, serial: usize) -> Value {
        // The last deployment finished; ECS keeps the service's list short again.
        self.stack
            .settle_service(&self.cluster, &self.service)
            .await;
        let tag = format!("v1.4.{}", serial + 1);
        let digest = digest(&format!("bench-{}-{serial}", self.repository));
        self.stack
            .push_digest(&self.repository, &tag, &digest)
            .await;
        let at = self.epoch + Duration::seconds(serial as i64);
        self.stack
            .set_pushed_at(&self.repository, &digest, at.timestamp() as f64 + 0.25);
        let mut event = sample(PUSH);
        event["id"] = json!(uuid(&format!("push-{serial}")));
        event["time"] = json!(at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        event["detail"]["repository-name"] = json!(self.repository);
        event["detail"]["image-digest"] = json!(digest);
        event["detail"]["image-tag"] = json!(tag);
        event
    }

    /// A deploy started by the handler in this process (untimed), ended by ECS as
    /// `outcome`, and the state change event EventBridge then delivers.
    async fn verdict(&self, serial: usize, file: &str, outcome: &str) -> Value {
        let before = self
            .stack
            .describe_service(&self.cluster, &self.service)
            .await
            .task_definition()
            .unwrap_or_default()
            .to_string();
        let push = self.push(serial).await;
        let report = self
            .deployer
            .handle(LambdaEvent::new(push, Context::default()))
            .await
            .unwrap_or_else(|e| panic!("the deploy a verdict needs failed: {e:?}"));
        let deployment = report
            .outcomes
            .first()
            .and_then(|o| o.detail("deployment_id"))
            .unwrap_or_else(|| panic!("no deployment started: {report:?}"))
            .to_string();
        let mut end = json!({"cluster": self.cluster, "service": self.service,
                             "deploymentId": deployment, "outcome": outcome});
        if outcome == "FAILED" {
            end["reason"] = json!("ECS deployment circuit breaker: tasks failed to start.");
            end["stoppedReasons"] = json!(["Essential container in task exited"]);
            end["rollbackTo"] = json!(before);
        }
        tokio::task::block_in_place(|| bridge("/_bridge/ecs/deployment", end));
        let mut event = sample(file);
        event["id"] = json!(uuid(&format!("verdict-{serial}")));
        event["resources"] = json!([self.service_arn]);
        event["detail"]["deploymentId"] = json!(deployment);
        if outcome == "COMPLETED" {
            event["detail"]["reason"] = json!(format!("ECS deployment {deployment} completed."));
        }
        event
    }
}

impl World for Deploy {
    fn name(&self) -> &'static str {
        "deploy"
    }

    fn env(&self) -> Vec<(String, String)> {
        vars(&[
            (
                autopilot_shared::config::TOPIC_ARN,
                self.stack.topic_arn.clone(),
            ),
            (deploy::config::SERVICES, self.mapping.to_string()),
        ])
    }

    fn cases(&self) -> Vec<Case> {
        vec![
            Case::fresh(
                PUSH,
                "a new image each time: its own digest, tag, event id and time",
            ),
            Case::fresh(
                COMPLETED,
                "a new deploy each time (started untimed), then ECS completes it",
            ),
            Case::fresh(
                FAILED,
                "a new deploy each time (started untimed); ECS fails it and rolls back",
            ),
            Case::as_is("events/ecs-deployment-in-progress.json"),
            Case::as_is("events/deploy-sweep.json"),
            Case::as_is("events/ecr-push-untagged.json"),
            Case::as_is("events/ecr-delete.json"),
            Case::as_is("events/malformed-ecr-push.json"),
            Case::as_is("events/malformed-ecs-deployment.json"),
        ]
    }

    fn cold_case(&self) -> &'static str {
        PUSH
    }

    async fn prepare(&mut self, case: &str, serial: usize) -> Vec<Step> {
        let event = match case {
            PUSH => self.push(serial).await,
            COMPLETED => self.verdict(serial, COMPLETED, "COMPLETED").await,
            FAILED => self.verdict(serial, FAILED, "FAILED").await,
            other => sample(other),
        };
        vec![Step::timed(case, event)]
    }
}
