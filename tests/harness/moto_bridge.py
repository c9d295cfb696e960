"""moto server with the bridges autopilot's tests need.

Runs moto's WSGI app on a free loopback port (printed as ``PORT <n>`` on stdout)
and exits when the process that started it goes away, so a test run never
leaves an emulator behind.

moto lacks some AWS behaviour that autopilot depends on. Each gap is bridged
here, in one place, with a comment naming it, instead of being skipped in a test:

* ECS UpdateService creates no new deployment (``deployments[0]`` keeps the old
  one). The bridge starts a new PRIMARY deployment with a fresh ``ecs-svc/`` id
  whenever the task definition changes or a new deployment is forced, as ECS does.
* ECS CreateService drops ``deploymentConfiguration``; the bridge keeps it.
* ECS ListTasks ignores ``serviceName``; the bridge filters on the task group.
* ECS never finishes a deployment. ``POST /_bridge/ecs/deployment`` plays the
  outcome a real cluster would produce: COMPLETED, or FAILED with the circuit
  breaker's rollback and the stopped tasks that tripped it.
* ECR stores ``imagePushedAt`` in whole seconds, so pushes in one second tie.
  ``POST /_bridge/ecr/pushed-at`` sets it, so ordering tests need no sleeps.
* moto has no fault injection. ``POST /_bridge/fault`` makes the next N calls of
  an operation fail with the given error, over real HTTP. ``match`` limits it to
  requests whose body contains a string, so tests running in parallel each get
  only their own faults.
* Secrets Manager accepts a reused ClientRequestToken with a different value
  for an AWSPENDING version, overwriting it; AWS refuses with
  ResourceExistsException, which rotation's createSecret relies on. The bridge
  refuses too.
* Counting calls: ``POST /_bridge/calls`` returns, in order, the operations whose
  request body contains ``match``, so a test can assert how often AWS was called.
"""

import io
import json
import os
import sys
import threading
import time
from urllib.parse import parse_qs

from werkzeug.serving import make_server

from moto.backends import get_backend
from moto.core.utils import utcnow
from moto.ecs import models as ecs_models
from moto.moto_api._internal import mock_random
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

ACCOUNT = "123456789012"

# ---------------------------------------------------------------------------
# ECS: deployments on UpdateService, deploymentConfiguration, serviceName filter
# ---------------------------------------------------------------------------
Backend = ecs_models.EC2ContainerServiceBackend
_orig_update_service = Backend.update_service
_orig_list_tasks = Backend.list_tasks


def _new_deployment(service, task_definition):
    now = utcnow()
    deployment_id = f"ecs-svc/{mock_random.randint(10**17, 10**18)}"
    return {
        "createdAt": now,
        "desiredCount": service.desired_count,
        "failedTasks": 0,
        "id": deployment_id,
        "launchType": service.launch_type,
        "pendingCount": service.desired_count,
        "rolloutState": "IN_PROGRESS",
        "rolloutStateReason": f"ECS deployment {deployment_id} in progress.",
        "runningCount": 0,
        "platformFamily": "EC2" if service.launch_type == "EC2" else "FARGATE",
        "status": "PRIMARY",
        "taskDefinition": task_definition,
        "updatedAt": now,
    }


def _start_deployment(service, task_definition):
    for deployment in service.deployments:
        deployment["status"] = "ACTIVE"
    deployment = _new_deployment(service, task_definition)
    service.deployments.insert(0, deployment)
    return deployment


def update_service(self, props):
    force = bool(props.pop("force_new_deployment", False))
    cluster = props.get("cluster", "default")
    name = props["service"].split("/")[-1]
    before = self._get_service(cluster, name).task_definition
    service = _orig_update_service(self, props)
    if service.deployment_controller.get("type", "ECS") == "ECS" and (
        force or service.task_definition != before
    ):
        _start_deployment(service, service.task_definition)
    return service


def list_tasks(self, *args, **kwargs):
    tasks = _orig_list_tasks(self, *args, **kwargs)
    service_name = kwargs.get("service_name")
    if service_name:
        tasks = [t for t in tasks if t.group == f"service:{service_name}"]
    return tasks


Backend.update_service = update_service
Backend.list_tasks = list_tasks

from moto.ecs import responses as ecs_responses  # noqa: E402

_orig_create_service_response = ecs_responses.EC2ContainerServiceResponse.create_service


def create_service_response(self):
    result = _orig_create_service_response(self)
    config = self._get_param("deploymentConfiguration")
    if config is not None:
        backend = self.ecs_backend
        cluster = self._get_param("cluster", "default")
        service = backend._get_service(cluster, self._get_param("serviceName"))
        service.deployment_configuration = config
    return result


ecs_responses.EC2ContainerServiceResponse.create_service = create_service_response


def _ecs(region):
    return get_backend("ecs")[ACCOUNT][region]


def _stopped_task(backend, service, task_definition_arn, deployment_id, reason, exit_code):
    task_definition = backend.describe_task_definition(task_definition_arn)
    cluster = backend._get_cluster(service.cluster_name)
    # A Fargate task needs an ENI in moto; the stopped task stands for one that
    # already ran, so build it as a bridge-mode task and restore the mode.
    mode = task_definition.network_mode
    task_definition.network_mode = "bridge"
    try:
        task = ecs_models.Task(
            cluster,
            task_definition,
            None,
            None,
            backend,
            group=f"service:{service.name}",
            launch_type=service.launch_type or "FARGATE",
            started_by=deployment_id,
        )
    finally:
        task_definition.network_mode = mode
    task.last_status = "STOPPED"
    task.desired_status = "STOPPED"
    task.stopped_reason = reason
    for container in task.containers:
        container.last_status = "STOPPED"
        container.exitCode = exit_code
        # moto answers cpu and memory as numbers where the ECS API has strings.
        container.cpu = None if container.cpu is None else str(container.cpu)
        container.memory = None if container.memory is None else str(container.memory)
    backend.tasks.setdefault(cluster.name, {})[task.task_arn] = task


def finish_deployment(body):
    """Play the end of an ECS deployment as a real cluster would."""
    backend = _ecs(body.get("region", "us-east-1"))
    service = backend._get_service(body["cluster"], body["service"])
    deployment = next(d for d in service.deployments if d["id"] == body["deploymentId"])
    now = utcnow()
    deployment["updatedAt"] = now
    if body["outcome"] == "COMPLETED":
        deployment["rolloutState"] = "COMPLETED"
        deployment["rolloutStateReason"] = f"ECS deployment {deployment['id']} completed."
        deployment["runningCount"] = deployment["desiredCount"]
        deployment["pendingCount"] = 0
        service.deployments = [deployment]
        return {"deploymentId": deployment["id"]}
    deployment["rolloutState"] = "FAILED"
    deployment["rolloutStateReason"] = body.get("reason", "tasks failed to start")
    for reason in body.get("stoppedReasons", []):
        _stopped_task(backend, service, deployment["taskDefinition"], deployment["id"], reason, 1)
        deployment["failedTasks"] += 1
    result = {"deploymentId": deployment["id"]}
    if body.get("rollbackTo"):
        # The circuit breaker's rollback is a new deployment of the last good revision.
        service.task_definition = body["rollbackTo"]
        rollback = _start_deployment(service, body["rollbackTo"])
        result["rollbackDeploymentId"] = rollback["id"]
    return result


def service_event(body):
    backend = _ecs(body.get("region", "us-east-1"))
    service = backend._get_service(body["cluster"], body["service"])
    service.events.insert(
        0, {"id": str(mock_random.uuid4()), "createdAt": utcnow(), "message": body["message"]}
    )
    return {}


def pushed_at(body):
    backend = get_backend("ecr")[ACCOUNT][body.get("region", "us-east-1")]
    repository = backend.repositories[body["repository"]]
    for image in repository.images:
        if image.image_digest == body["digest"]:
            image.image_pushed_at = int(body["epoch"])
    return {}


# ---------------------------------------------------------------------------
# Secrets Manager: a version's value is immutable once written
# ---------------------------------------------------------------------------
from moto.secretsmanager import models as sm_models  # noqa: E402
from moto.secretsmanager.exceptions import ResourceExistsException  # noqa: E402

_orig_check_versions = sm_models.SecretsManagerBackend._check_with_existing_secrets_and_versions


def check_versions(self, secret_name, client_request_token, secret_string, secret_binary, on_create=False):
    secret = self.secrets.get(secret_name)
    version = getattr(secret, "versions", {}).get(client_request_token) if client_request_token else None
    if version and "AWSPENDING" in version.get("version_stages", []) and version.get("secret_string") is not None:
        if version.get("secret_string") == secret_string and version.get("secret_binary") == secret_binary:
            return secret
        raise ResourceExistsException(
            f"You can't use ClientRequestToken {client_request_token} because that value is already in use for a version of secret {secret.arn}."
        )
    return _orig_check_versions(self, secret_name, client_request_token, secret_string, secret_binary, on_create)


sm_models.SecretsManagerBackend._check_with_existing_secrets_and_versions = check_versions


# ---------------------------------------------------------------------------
# Fault injection, in front of moto, on real HTTP
# ---------------------------------------------------------------------------
_faults = []
_calls = []
_lock = threading.Lock()


def add_fault(body):
    with _lock:
        _faults.append(dict(body))
    return {}


def calls(body):
    needle = body.get("match", "")
    with _lock:
        return {"calls": [op for op, raw in _calls if needle in raw]}


def _take_fault(operation, raw):
    text = raw.decode("utf-8", "replace")
    with _lock:
        for fault in _faults:
            if fault["operation"] == operation and fault.get("match", "") in text:
                fault["count"] = fault.get("count", 1) - 1
                if fault["count"] <= 0:
                    _faults.remove(fault)
                return fault
        _calls.append((operation, text))
    return None


def _operation(environ, raw):
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.split(".")[-1]
    if raw:
        action = parse_qs(raw.decode("utf-8", "replace")).get("Action")
        if action:
            return action[0]
    return None


def _fault_response(environ, start_response, fault):
    code = fault.get("code", "ServiceUnavailableException")
    message = fault.get("message", "injected by the test harness")
    status = f"{fault.get('status', 400)} Injected"
    if environ.get("HTTP_X_AMZ_TARGET"):
        body = json.dumps({"__type": code, "message": message}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code)]
    else:
        body = (
            "<ErrorResponse><Error><Type>Sender</Type>"
            f"<Code>{code}</Code><Message>{message}</Message></Error>"
            "<RequestId>injected</RequestId></ErrorResponse>"
        ).encode()
        headers = [("Content-Type", "text/xml")]
    start_response(status, headers + [("Content-Length", str(len(body)))])
    return [body]


CONTROL = {
    "/_bridge/fault": add_fault,
    "/_bridge/calls": calls,
    "/_bridge/ecs/deployment": finish_deployment,
    "/_bridge/ecs/service-event": service_event,
    "/_bridge/ecr/pushed-at": pushed_at,
}


class Bridge:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        path = environ.get("PATH_INFO", "")
        if path in CONTROL:
            try:
                result = CONTROL[path](json.loads(raw or b"{}"))
                status, body = "200 OK", json.dumps(result).encode()
            except Exception as exc:  # report harness misuse to the test, loudly
                status, body = "500 Bridge Error", json.dumps({"error": repr(exc)}).encode()
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        operation = _operation(environ, raw)
        if operation:
            fault = _take_fault(operation, raw)
            if fault:
                return _fault_response(environ, start_response, fault)
        return self.app(environ, start_response)


def _exit_with_parent(parent):
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(0.5)


def main():
    parent = os.getppid()
    app = Bridge(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(f"PORT {server.server_port}", flush=True)
    if "--no-parent-watch" not in sys.argv:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
