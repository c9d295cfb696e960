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
  It also refuses what AWS refuses: ``startedBy`` with any other filter ("When you
  specify startedBy as the filter, it must be the only filter that you use", ECS
  API reference), and ``serviceName`` with ``family`` or ``containerInstance``
  ("cannot specify serviceName with other arguments", as AWS answers).
* ECS RegisterTaskDefinition accepts ``placementConstraints`` and ``ipcMode`` on a
  FARGATE task definition, which AWS refuses ("This parameter isn't supported for
  tasks run on Fargate", TaskDefinition reference); the bridge refuses them too.
* ECS CreateService accepts an ``awsvpc`` service without ``networkConfiguration``;
  AWS refuses ("Network Configuration must be provided when networkMode 'awsvpc'
  is specified"), and so does the bridge. ``POST /_bridge/ec2/network`` returns
  the default VPC's subnet and security group to pass.
* ECS never finishes a deployment. ``POST /_bridge/ecs/deployment`` plays the
  outcome a real cluster would produce: COMPLETED, or FAILED with the circuit
  breaker's rollback and the stopped tasks that tripped it.
* ECR stores ``imagePushedAt`` in whole seconds, so pushes in one second tie,
  where AWS keeps a fraction. ``POST /_bridge/ecr/pushed-at`` sets it, fraction
  included, so ordering tests need no sleeps.
* moto has no fault injection. ``POST /_bridge/fault`` makes the next N calls of
  an operation fail with the given error, over real HTTP. ``match`` limits it to
  requests whose body contains a string, so tests running in parallel each get
  only their own faults.
* Secrets Manager accepts a reused ClientRequestToken with a different value
  for an AWSPENDING version, overwriting it; AWS refuses with
  ResourceExistsException, which rotation's createSecret relies on. The bridge
  refuses too.
* Secrets Manager UpdateSecretVersionStage attaches a label that another version
  holds without ``RemoveFromVersionId`` (moto refuses it only for AWSCURRENT), so
  the label ends up on two versions. AWS refuses it for every label ("If the
  label is attached and you either do not specify this parameter, or the version
  ID does not match, then the operation fails", API reference); so does the bridge.
* RDS: an instance's endpoint is a made-up host. ``POST /_bridge/rds/endpoint``
  points it at an address and port (the harness PostgreSQL). A secret RDS manages
  (ManageMasterUserPassword) holds the instance's master user name, as on AWS,
  where moto writes ``admin``; its password stays moto's.
* Counting calls: ``POST /_bridge/calls`` returns, in order, the operations whose
  request body contains ``match``, so a test can assert how often AWS was called.
  ``POST /_bridge/fault/clear`` drops a test's remaining faults.
* Latency: ``POST /_bridge/slow`` delays matching calls of an operation, and
  ``POST /_bridge/inflight`` tells the most of them that were ever in flight at
  once, so a test can see how many calls a function makes concurrently.
* IAM: moto checks no permission. With ``AUTOPILOT_CALL_LOG`` set, every call
  made by an autopilot function (its SDK app name, ``app/autopilot-*`` in the
  user agent) is appended to that file as ``{"function", "service", "operation"}``,
  with the service from the SigV4 credential scope; a test compares the whole
  suite's calls with what ``template.yaml`` grants each function.
"""

import inspect
import io
import json
import os
import re
import sys
import threading
import time
from urllib.parse import parse_qs

from werkzeug.serving import make_server

from moto.backends import get_backend
from moto.core.utils import utcnow
from moto.ecs import exceptions as ecs_exceptions
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


_LIST_TASKS_PARAMS = inspect.signature(_orig_list_tasks)


def list_tasks(self, *args, **kwargs):
    # moto's responses pass every filter positionally; bind them to their names.
    bound = _LIST_TASKS_PARAMS.bind(self, *args, **kwargs)
    bound.apply_defaults()
    f = bound.arguments
    others = [name for name in ("container_instance", "family", "service_name", "desiredStatus") if f.get(name)]
    if f.get("started_by") and others:
        raise ecs_exceptions.InvalidParameterException(
            "When you specify startedBy as the filter, it must be the only filter that you use."
        )
    if f.get("service_name") and (f.get("family") or f.get("container_instance")):
        raise ecs_exceptions.InvalidParameterException("cannot specify serviceName with other arguments")
    tasks = _orig_list_tasks(*bound.args, **bound.kwargs)
    service_name = f.get("service_name")
    if service_name:
        tasks = [t for t in tasks if t.group == f"service:{service_name}"]
    return tasks


_orig_register_task_definition = Backend.register_task_definition


def register_task_definition(self, *args, **kwargs):
    if "FARGATE" in (kwargs.get("requires_compatibilities") or []):
        for param, name in (("placement_constraints", "placementConstraints"), ("ipc_mode", "ipcMode")):
            if kwargs.get(param):
                raise ecs_exceptions.EcsClientException(
                    f"Tasks using the Fargate launch type do not support {name}."
                )
    return _orig_register_task_definition(self, *args, **kwargs)


_orig_create_service = Backend.create_service


_CREATE_SERVICE_PARAMS = inspect.signature(_orig_create_service)


def create_service(self, *args, **kwargs):
    f = _CREATE_SERVICE_PARAMS.bind(self, *args, **kwargs).arguments
    task_definition = self.describe_task_definition(f["task_definition_str"])
    if task_definition.network_mode == "awsvpc" and not f.get("network_configuration"):
        raise ecs_exceptions.InvalidParameterException(
            "Network Configuration must be provided when networkMode 'awsvpc' is specified."
        )
    return _orig_create_service(self, *args, **kwargs)


Backend.update_service = update_service
Backend.list_tasks = list_tasks
Backend.register_task_definition = register_task_definition
Backend.create_service = create_service

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


def network(body):
    """The default VPC's first default subnet and its default security group."""
    ec2 = get_backend("ec2")[ACCOUNT][body.get("region", "us-east-1")]
    subnets = ec2.describe_subnets(filters={"default-for-az": ["true"]})
    group = ec2.get_default_security_group(ec2.default_vpc.id)
    return {"subnets": [sorted(s.id for s in subnets)[0]], "securityGroups": [group.id]}


def pushed_at(body):
    backend = get_backend("ecr")[ACCOUNT][body.get("region", "us-east-1")]
    repository = backend.repositories[body["repository"]]
    for image in repository.images:
        if image.image_digest == body["digest"]:
            image.image_pushed_at = float(body["epoch"])
    return {}


# ---------------------------------------------------------------------------
# Secrets Manager: a version's value is immutable once written
# ---------------------------------------------------------------------------
from moto.secretsmanager import models as sm_models  # noqa: E402
from moto.secretsmanager import exceptions as sm_exceptions  # noqa: E402
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

_orig_update_version_stage = sm_models.SecretsManagerBackend.update_secret_version_stage


def update_secret_version_stage(self, secret_id, version_stage, remove_from_version_id, move_to_version_id):
    secret = self.secrets.get(secret_id) if secret_id in self.secrets else None
    if secret is not None and move_to_version_id:
        holders = [v for v, d in secret.versions.items() if version_stage in d["version_stages"]]
        others = [v for v in holders if v != move_to_version_id]
        if others and remove_from_version_id != others[0]:
            raise sm_exceptions.InvalidParameterException(
                f"The parameter RemoveFromVersionId can't be empty. Staging label {version_stage} is "
                f"currently attached to version {others[0]}, so you must explicitly reference that version in RemoveFromVersionId."
            )
        if move_to_version_id in holders and not remove_from_version_id:
            return secret.arn, secret.name
    return _orig_update_version_stage(self, secret_id, version_stage, remove_from_version_id, move_to_version_id)


sm_models.SecretsManagerBackend.update_secret_version_stage = update_secret_version_stage


# ---------------------------------------------------------------------------
# RDS: endpoints that lead somewhere, master secrets with the master user's name
# ---------------------------------------------------------------------------
from moto.rds import models as rds_models  # noqa: E402

_orig_address = rds_models.DBInstance.address
rds_models.DBInstance.address = property(lambda s: s.__dict__.get("_bridge_address") or _orig_address.fget(s))
rds_models.MasterUserSecret._generate_secret_string = lambda self: json.dumps(
    {"username": self.resource.master_username, "password": "P@55w0rd!"}
)


def rds_endpoint(body):
    backend = get_backend("rds")[ACCOUNT][body.get("region", "us-east-1")]
    instance = backend.databases[body["instance"]]
    instance._bridge_address = body["address"]
    instance.port = int(body["port"])
    return {}


# ---------------------------------------------------------------------------
# Fault injection, in front of moto, on real HTTP
# ---------------------------------------------------------------------------
_faults = []
_calls = []
_lock = threading.Lock()


_slow = []
_inflight = {}
_CALL_LOG = os.environ.get("AUTOPILOT_CALL_LOG")
_APP = re.compile(r"app/(autopilot-[A-Za-z0-9-]+)")


def add_fault(body):
    with _lock:
        _faults.append(dict(body))
    return {}


def clear_faults(body):
    needle = body.get("match", "")
    with _lock:
        _faults[:] = [f for f in _faults if f.get("match", "") != needle]
    return {}


def add_slow(body):
    with _lock:
        _slow.append(dict(body))
    return {}


def inflight(body):
    with _lock:
        entry = _inflight.get((body["operation"], body.get("match", "")), {"now": 0, "max": 0})
        return {"max": entry["max"]}


def _slow_rule(operation, text):
    with _lock:
        for rule in _slow:
            if rule["operation"] == operation and rule.get("match", "") in text:
                return rule
    return None


def _track(rule, delta):
    key = (rule["operation"], rule.get("match", ""))
    with _lock:
        entry = _inflight.setdefault(key, {"now": 0, "max": 0})
        entry["now"] += delta
        entry["max"] = max(entry["max"], entry["now"])


def _log_call(environ, operation):
    """Appends a call made by an autopilot function to the suite's call log."""
    if not _CALL_LOG:
        return
    agent = environ.get("HTTP_X_AMZ_USER_AGENT", "") + " " + environ.get("HTTP_USER_AGENT", "")
    app = _APP.search(agent)
    auth = environ.get("HTTP_AUTHORIZATION", "")
    scope = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request", auth)
    if not app or not scope:
        return
    line = json.dumps({"function": app.group(1), "service": scope.group(1), "operation": operation})
    with _lock:
        with open(_CALL_LOG, "a") as f:
            f.write(line + "\n")


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
    "/_bridge/fault/clear": clear_faults,
    "/_bridge/slow": add_slow,
    "/_bridge/inflight": inflight,
    "/_bridge/ec2/network": network,
    "/_bridge/calls": calls,
    "/_bridge/ecs/deployment": finish_deployment,
    "/_bridge/ecs/service-event": service_event,
    "/_bridge/ecr/pushed-at": pushed_at,
    "/_bridge/rds/endpoint": rds_endpoint,
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
        if not operation:
            return self.app(environ, start_response)
        _log_call(environ, operation)
        fault = _take_fault(operation, raw)
        if fault:
            return _fault_response(environ, start_response, fault)
        rule = _slow_rule(operation, raw.decode("utf-8", "replace"))
        if not rule:
            return self.app(environ, start_response)
        # Latency the test asked for, so concurrent calls overlap and can be counted.
        _track(rule, +1)
        try:
            time.sleep(float(rule.get("seconds", 0.2)))
            return self.app(environ, start_response)
        finally:
            _track(rule, -1)


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
