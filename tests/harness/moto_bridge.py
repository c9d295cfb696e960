"""moto server with the bridges autopilot's tests need.

Runs moto's WSGI app on a free loopback port (printed as ``PORT <n>`` on stdout)
and exits when the process that started it goes away, so a test run never
leaves an emulator behind.

moto lacks some AWS behaviour that autopilot depends on. Each gap is bridged
here, in one place, with a comment naming it, instead of being skipped in a test:

* ECS UpdateService creates no new deployment (``deployments[0]`` keeps the old
  one). The bridge starts a new PRIMARY deployment with a fresh ``ecs-svc/`` id
  whenever the task definition changes or a new deployment is forced, as ECS does.
  A desiredCount change starts none and moves the PRIMARY deployment's count.
  moto keeps the task definition as the request named it (``web:3``), so naming
  the current revision looked like a change; ECS, and the bridge, keep its ARN.
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
  an operation fail with the given error, over real HTTP (in CBOR for CloudWatch). ``match`` limits it to
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
* CloudWatch: aws-sdk-cloudwatch speaks only Smithy RPC v2 CBOR, which moto
  answers with 404. The bridge translates: CBOR request to moto's awsJson1_0, its
  JSON answer back to CBOR typed by the botocore output shape (timestamps as tag 1,
  doubles as floats), errors as ``{"__type": "com.amazonaws.cloudwatch#<Shape>",
  "message"}`` with moto's ``x-amzn-query-error`` (the SDK's error code).
* CloudWatch: moto has no PutCompositeAlarm; the bridge stores composite alarms.
  DescribeAlarms returns only metric alarms unless AlarmTypes asks for composite
  ones, and applies all its filters together ("If you omit this parameter, only
  metric alarms are returned", API reference); moto returns both and uses one
  filter. At most 100 AlarmNames, MaxRecords 1 to 100, no AlarmNamePrefix with
  AlarmNames.
* CloudWatch alarm state: a new alarm is INSUFFICIENT_DATA ("When this operation
  creates an alarm, the alarm state is immediately set to INSUFFICIENT_DATA"),
  where moto says OK; updating an alarm keeps its state and ignores Tags ("its
  state is left unchanged", "any tags you specify in this parameter are ignored"),
  where moto rebuilds it; StateTransitionedTimestamp, which moto lacks, changes
  when StateValue does. ListTagsForResource of an unknown ARN is
  ResourceNotFoundException, not an empty list.
* CloudWatch GetMetricData refuses what AWS refuses and moto accepts: more than
  500 queries, an Id not matching ``^[a-z][a-zA-Z0-9_]*$``, a repeated Id. StartTime
  is rounded down to the minute (5 minutes past 15 days, the hour past 63), as AWS
  does, so datapoints fall on period boundaries.
* DynamoDB: moto evaluates a ConditionExpression and writes in separate steps,
  and concurrent conditional writes on one item could both win. AWS conditional
  writes are atomic; the bridge serialises DynamoDB calls.
* Application Auto Scaling RegisterScalableTarget refuses a new target without
  MinCapacity and MaxCapacity and a minimum above the maximum (as given or as an
  update leaves it), and answers a missing ECS cluster with ValidationException
  "ECS service doesn't exist", as AWS does; moto accepts the first two and lets
  ClusterNotFoundException out. It moves the ECS service's desiredCount into the
  new range ("Application Auto Scaling adjusts the capacity of the scalable target
  to place it within these bounds"), and a new ECS target has the service-linked
  role and SuspendedState all false, where moto answers null.
* RDS ModifyDBInstance storage: AWS refuses an AllocatedStorage less than 10%
  above the current one, and any storage change within six hours of the last
  ("the previous storage change is being optimized"); moto applies both. Without
  ApplyImmediately the change waits in PendingModifiedValues. ``POST
  /_bridge/rds/storage-modified`` sets when the last change happened, in hours ago.
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

import base64
import datetime
import functools
import inspect
import io
import json
import os
import re
import sys
import threading
import time
from urllib.parse import parse_qs

import botocore.session
import cbor2
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
    requested = props.get("task_definition")
    desired = props.get("desired_count")
    before = self._get_service(cluster, name).task_definition
    service = _orig_update_service(self, props)
    if requested:
        # ECS answers the task definition's full ARN whatever form the request
        # named it in (family:revision, ARN); moto keeps the string as given, so
        # naming the current revision again looked like a change.
        service.task_definition = self.describe_task_definition(requested).arn
    if service.deployment_controller.get("type", "ECS") == "ECS" and (
        force or service.task_definition != before
    ):
        _start_deployment(service, service.task_definition)
    if desired is not None:
        # A desiredCount change starts no deployment; the PRIMARY deployment takes
        # the new count, as on ECS (moto leaves it at the old one).
        for deployment in service.deployments:
            if deployment["status"] == "PRIMARY":
                deployment["desiredCount"] = service.desired_count
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
from moto.rds import exceptions as rds_exceptions  # noqa: E402
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


# RDS storage: moto applies any AllocatedStorage at once, however small the
# change and however soon after the last one. AWS does not:
# * "When you increase the allocated storage, it must be by at least 10 percent.
#   If you try to increase the value by less than 10 percent, you get an error"
#   (RDS User Guide, "Increasing DB instance storage capacity"). The API reference
#   (ModifyDBInstance, AllocatedStorage) says such values are rounded up instead;
#   the bridge refuses, the stricter reading: code that passes here works under both.
# * "You can't make further storage modifications for either six (6) hours or
#   until storage optimization has completed on the instance, whichever is longer"
#   (same guide). AWS answers InvalidParameterCombination "You can't currently
#   modify the storage of this DB instance because the previous storage change is
#   being optimized."
# * Without ApplyImmediately the change waits for the maintenance window and
#   shows in PendingModifiedValues (ModifyDBInstance, ApplyImmediately).
# ``POST /_bridge/rds/storage-modified`` says the last storage change of an
# instance happened ``hoursAgo`` hours ago (null forgets it), so tests need no sleeps.
_STORAGE_COOLDOWN = 6 * 3600
_storage_modified = {}  # (region, instance) -> epoch seconds of the last storage change
_storage_pending = {}  # (region, instance) -> PendingModifiedValues


def _rds_key(instance):
    return (instance.region, instance.db_instance_identifier)


rds_models.DBInstance.pending_modified_values = property(lambda s: _storage_pending.get(_rds_key(s)))

_orig_modify_db_instance = rds_models.RDSBackend.modify_db_instance


def modify_db_instance(self, db_instance_identifier, db_kwargs):
    storage = db_kwargs.get("allocated_storage")
    database = self.describe_db_instances(db_instance_identifier)[0]
    if storage is not None and int(storage) != database.allocated_storage:
        storage, current = int(storage), database.allocated_storage
        key = _rds_key(database)
        last = _storage_modified.get(key)
        if last is not None and time.time() - last < _STORAGE_COOLDOWN:
            raise rds_exceptions.InvalidParameterCombination(
                "You can't currently modify the storage of this DB instance because the previous "
                "storage change is being optimized."
            )
        if storage * 10 < current * 11:
            raise rds_exceptions.InvalidParameterCombination(
                "The allocated storage must be increased by at least 10 percent."
            )
        ceiling = db_kwargs.get("max_allocated_storage") or database.max_allocated_storage
        if ceiling is not None and storage > int(ceiling):
            # The rule moto enforces on CreateDBInstance holds for a modification too.
            raise rds_exceptions.InvalidParameterCombination("Max storage size must be greater than storage size")
        if not db_kwargs.get("apply_immediately"):
            del db_kwargs["allocated_storage"]
            _storage_pending[key] = {"AllocatedStorage": storage}
        else:
            _storage_pending.pop(key, None)
            _storage_modified[key] = time.time()
    return _orig_modify_db_instance(self, db_instance_identifier, db_kwargs)


rds_models.RDSBackend.modify_db_instance = modify_db_instance


def rds_storage_modified(body):
    backend = get_backend("rds")[ACCOUNT][body.get("region", "us-east-1")]
    key = _rds_key(backend.databases[body["instance"]])
    if body.get("hoursAgo") is None:
        _storage_modified.pop(key, None)
    else:
        _storage_modified[key] = time.time() - float(body["hoursAgo"]) * 3600
    return {}


# ---------------------------------------------------------------------------
# Application Auto Scaling: what RegisterScalableTarget refuses and what it does
# ---------------------------------------------------------------------------
from moto.applicationautoscaling import models as aas_models  # noqa: E402
from moto.applicationautoscaling.exceptions import AWSValidationException  # noqa: E402

_orig_register_scalable_target = aas_models.ApplicationAutoscalingBackend.register_scalable_target
_NOT_SUSPENDED = {
    "DynamicScalingInSuspended": False,
    "DynamicScalingOutSuspended": False,
    "ScheduledScalingSuspended": False,
}


def register_scalable_target(self, namespace, r_id, dimension, min_capacity, max_capacity, role_arn, suspended_state):
    """RegisterScalableTarget as AWS answers it.

    * "When you register a new scalable target, you must specify values for the
      minimum and maximum capacity" (API reference); moto stores a target without.
    * A minimum above the maximum, as given or as left by an update ("Any
      parameters that you don't specify are not changed"), is refused; moto keeps it.
    * A missing ECS cluster is ValidationException "ECS service doesn't exist",
      as for a missing service; moto lets ECS's ClusterNotFoundException out.
    * "If it's below the minimum capacity or above the maximum capacity,
      Application Auto Scaling adjusts the capacity of the scalable target to place
      it within these bounds" (API reference): an ECS service's desiredCount is
      moved into the range; moto leaves it.
    """
    existing = self.targets.get(dimension, {}).get(r_id)
    if existing is None and (min_capacity is None or max_capacity is None):
        raise AWSValidationException("MinCapacity and MaxCapacity are required to register a new scalable target.")
    low = existing.min_capacity if min_capacity is None else min_capacity
    high = existing.max_capacity if max_capacity is None else max_capacity
    if low > high:
        raise AWSValidationException(f"Minimum capacity ({low}) cannot be greater than maximum capacity ({high}).")
    if existing is None:
        # DescribeScalableTargets answers the service-linked role and the three
        # suspension flags for every target (API reference examples); moto answers null.
        if role_arn is None and namespace == "ecs":
            role_arn = (
                f"arn:aws:iam::{self.account_id}:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/"
                "AWSServiceRoleForApplicationAutoScaling_ECSService"
            )
        suspended_state = {**_NOT_SUSPENDED, **(suspended_state or {})}
    elif suspended_state is not None:
        suspended_state = {**(existing.suspended_state or _NOT_SUSPENDED), **suspended_state}
    try:
        target = _orig_register_scalable_target(
            self, namespace, r_id, dimension, min_capacity=min_capacity, max_capacity=max_capacity,
            role_arn=role_arn, suspended_state=suspended_state,
        )
    except ecs_exceptions.ClusterNotFoundException:
        raise AWSValidationException(f"ECS service doesn't exist: {r_id}")
    if namespace == "ecs" and dimension == "ecs:service:DesiredCount":
        _, cluster, name = r_id.split("/")
        service = self.ecs_backend._get_service(cluster, name)
        clamped = min(max(service.desired_count, low), high)
        if clamped != service.desired_count:
            self.ecs_backend.update_service({"cluster": cluster, "service": name, "desired_count": clamped})
    return target


aas_models.ApplicationAutoscalingBackend.register_scalable_target = register_scalable_target


# ---------------------------------------------------------------------------
# CloudWatch: composite alarms, alarm state as AWS keeps it, request limits
# ---------------------------------------------------------------------------
from moto.cloudwatch import exceptions as cw_exceptions  # noqa: E402
from moto.cloudwatch import models as cw_models  # noqa: E402
from moto.cloudwatch import responses as cw_responses  # noqa: E402
from moto.core.responses import ActionResult, EmptyResult  # noqa: E402

Alarm = cw_models.Alarm
CloudWatch = cw_responses.CloudWatchResponse
_orig_alarm_init = Alarm.__init__
_orig_update_state = Alarm.update_state
_orig_put_metric_alarm = cw_models.CloudWatchBackend.put_metric_alarm
_orig_list_tags = cw_models.CloudWatchBackend.list_tags_for_resource
_orig_get_metric_data = CloudWatch.get_metric_data


def alarm_init(self, *args, **kwargs):
    _orig_alarm_init(self, *args, **kwargs)
    # "When this operation creates an alarm, the alarm state is immediately set
    # to INSUFFICIENT_DATA" (PutMetricAlarm, PutCompositeAlarm); moto says OK.
    self.state_value = "INSUFFICIENT_DATA"
    # StateTransitionedTimestamp: "The date and time that the alarm's StateValue
    # most recently changed" (MetricAlarm, CompositeAlarm); moto has none.
    self.state_transitioned_timestamp = self.state_updated_timestamp


def update_state(self, reason, reason_data, state_value):
    before = self.state_value
    _orig_update_state(self, reason, reason_data, state_value)
    if state_value != before:
        self.state_transitioned_timestamp = self.state_updated_timestamp


Alarm.__init__ = alarm_init
Alarm.update_state = update_state
Alarm.alarm_rule = property(lambda s: s.rule)  # CompositeAlarm.AlarmRule


def put_metric_alarm(self, **kwargs):
    """moto builds a new alarm on every put. AWS: "When you update an existing
    alarm, its state is left unchanged", and "If you are using this operation to
    update an existing alarm, any tags you specify in this parameter are ignored"
    (PutMetricAlarm, PutCompositeAlarm)."""
    existing = self.alarms.get(kwargs["name"])
    if existing is not None:
        kwargs["tags"] = None
    alarm = _orig_put_metric_alarm(self, **kwargs)
    if existing is not None:
        for field in (
            "state_value", "state_reason", "state_reason_data", "state_updated_timestamp",
            "state_transitioned_timestamp", "history",
        ):
            setattr(alarm, field, getattr(existing, field))
    return alarm


cw_models.CloudWatchBackend.put_metric_alarm = put_metric_alarm


def put_composite_alarm(self):
    """moto has no PutCompositeAlarm; its alarms already carry a rule for one."""
    self.cloudwatch_backend.put_metric_alarm(
        name=self._get_param("AlarmName"),
        namespace=None,
        metric_name=None,
        comparison_operator=None,
        evaluation_periods=None,
        period=None,
        threshold=None,
        statistic=None,
        description=self._get_param("AlarmDescription"),
        dimensions=[],
        alarm_actions=self._get_param("AlarmActions", []),
        ok_actions=self._get_param("OKActions", []),
        insufficient_data_actions=self._get_param("InsufficientDataActions", []),
        actions_enabled=self._get_bool_param("ActionsEnabled"),
        rule=self._get_param("AlarmRule"),
        tags=self._get_param("Tags", []),
    )
    return EmptyResult()


def describe_alarms(self):
    """DescribeAlarms with AWS's filters. moto returns composite alarms whatever
    AlarmTypes says, where AWS: "If you omit this parameter, only metric alarms are
    returned, even if composite alarms or log alarms exist in the account"; and it
    uses only the first of AlarmNames, AlarmNamePrefix, StateValue and ActionPrefix,
    where AWS applies them together. AlarmNames holds at most 100 names and
    MaxRecords is 1 to 100 (API reference); AlarmNamePrefix "If this parameter is
    specified, you cannot specify AlarmNames"."""
    names = self._get_param("AlarmNames", [])
    prefix = self._get_param("AlarmNamePrefix")
    state = self._get_param("StateValue")
    action_prefix = self._get_param("ActionPrefix")
    types = self._get_param("AlarmTypes") or ["MetricAlarm"]
    max_records = self._get_param("MaxRecords")
    if len(names) > 100:
        raise cw_exceptions.ValidationError(
            f"1 validation error detected: Value '[{', '.join(names)}]' at 'alarmNames' failed to satisfy "
            "constraint: Member must have length less than or equal to 100"
        )
    if max_records is not None and not 1 <= int(max_records) <= 100:
        bound = "greater than or equal to 1" if int(max_records) < 1 else "less than or equal to 100"
        raise cw_exceptions.ValidationError(
            f"1 validation error detected: Value '{max_records}' at 'maxRecords' failed to satisfy "
            f"constraint: Member must have value {bound}"
        )
    if names and prefix:
        raise cw_exceptions.InvalidParameterCombination("AlarmNamePrefix and AlarmNames cannot be specified together.")
    alarms = [
        a
        for a in self.cloudwatch_backend.describe_alarms()
        if (not names or a.name in names)
        and (not prefix or a.name.startswith(prefix))
        and (not state or a.state_value == state)
        and (not action_prefix or any(x.startswith(action_prefix) for x in a.alarm_actions))
    ]
    metric = [a for a in alarms if a.rule is None] if "MetricAlarm" in types else []
    composite = [a for a in alarms if a.rule is not None] if "CompositeAlarm" in types else []
    return ActionResult({"MetricAlarms": metric, "CompositeAlarms": composite})


_QUERY_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")


def get_metric_data(self):
    """GetMetricData's limits, which moto does not check: "A single GetMetricData
    call can include as many as 500 MetricDataQuery structures"; each Id "must be
    unique within a single call", its "valid characters are letters, numbers, and
    underscore. The first character must be a lowercase letter" (API reference).
    The messages are the ones AWS answers."""
    queries = self._get_params().get("MetricDataQueries", [])
    if len(queries) > 500:
        raise cw_exceptions.ValidationError(
            "The collection MetricDataQueries must not have a size greater than 500."
        )
    wrong = [
        f"The value {q.get('Id')} for parameter MetricDataQueries.member.{n}.Id is not matching the "
        f"expected pattern ^[a-z][a-zA-Z0-9_]*$."
        for n, q in enumerate(queries, 1)
        if not _QUERY_ID.match(q.get("Id") or "")
    ]
    if wrong:
        raise cw_exceptions.ValidationError("\n".join(wrong))
    ids = [q.get("Id") for q in queries]
    if len(set(ids)) != len(ids):
        raise cw_exceptions.ValidationError("The values for parameter id in MetricDataQueries are not unique.")
    # "CloudWatch rounds the specified time stamp as follows: Start time less than
    # 15 days ago - Round down to the nearest whole minute. [...] between 15 and 63
    # days ago - [...] 5-minute clock interval. [...] greater than 63 days ago -
    # [...] 1-hour clock interval" (StartTime); moto starts the periods at the
    # second given, so datapoint timestamps did not fall on the minute.
    start = self.params.get("StartTime")
    if isinstance(start, datetime.datetime):
        aware = start if start.tzinfo else start.replace(tzinfo=datetime.timezone.utc)
        epoch = aware.timestamp()
        age = time.time() - epoch
        step = 60 if age < 15 * 86400 else 300 if age < 63 * 86400 else 3600
        rounded = datetime.datetime.fromtimestamp(epoch - epoch % step, datetime.timezone.utc)
        self.params["StartTime"] = rounded if start.tzinfo else rounded.replace(tzinfo=None)
    return _orig_get_metric_data(self)


def list_tags_for_resource(self, arn):
    # AWS answers ResourceNotFoundException for an ARN it does not know; moto
    # answers an empty tag list.
    known = {a.alarm_arn for a in self.alarms.values()} | {r.rule_arn for r in self.insight_rules.values()}
    if arn not in known:
        raise cw_exceptions.ResourceNotFoundException()
    return _orig_list_tags(self, arn)


CloudWatch.put_composite_alarm = put_composite_alarm
CloudWatch.describe_alarms = describe_alarms
CloudWatch.get_metric_data = get_metric_data
cw_models.CloudWatchBackend.list_tags_for_resource = list_tags_for_resource


# ---------------------------------------------------------------------------
# CloudWatch over Smithy RPC v2 CBOR, translated to the awsJson1_0 moto speaks
# ---------------------------------------------------------------------------
# aws-sdk-cloudwatch speaks only rpcv2Cbor: POST /service/<Service>/operation/<Op>
# with ``smithy-protocol: rpc-v2-cbor`` and a CBOR map; moto answers 404 to it.
# The bridge decodes the request (tag-1 timestamps become epoch seconds, byte
# strings base64) and hands moto the same call as awsJson1_0 (``X-Amz-Target:
# <Service>.<Op>``). moto's JSON answer is encoded back to CBOR along the botocore
# output shape, so every member has its model type on the wire: timestamps as tag
# 1 epoch seconds, doubles as floats, integers as integers, blobs as byte strings
# (the SDK's decoder refuses an integer where a double belongs). Errors are a CBOR
# map with ``__type`` (the error's shape ID) and ``message``, and keep moto's
# ``x-amzn-query-error`` (Code;Sender), from which the SDK takes CloudWatch's
# awsQuery error code (``ResourceNotFound``, ``InvalidParameterValue``...).
_CBOR_PATH = re.compile(r"^/service/([A-Za-z0-9_.]+)/operation/([A-Za-z0-9_]+)$")
CBOR_SERVICES = {"GraniteServiceVersion20100801": ("cloudwatch", "com.amazonaws.cloudwatch")}
_models = {}


def _service_model(name):
    with _lock:
        if name not in _models:
            _models[name] = botocore.session.get_session().get_service_model(name)
        return _models[name]


def _cbor_to_json(value):
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _cbor_to_json(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_cbor_to_json(v) for v in value]
    return value


def _epoch(value):
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _json_to_cbor(value, shape):
    kind = shape.type_name
    if kind == "structure":
        return {
            name: _json_to_cbor(v, shape.members[name])
            for name, v in value.items()
            if name in shape.members and v is not None
        }
    if kind == "list":
        return [_json_to_cbor(v, shape.member) for v in value if v is not None]
    if kind == "map":
        return {k: _json_to_cbor(v, shape.value) for k, v in value.items() if v is not None}
    if kind == "timestamp":
        return cbor2.CBORTag(1, _epoch(value))
    if kind in ("double", "float"):
        return float(value)
    if kind in ("integer", "long", "short", "byte"):
        return int(value)
    if kind == "boolean":
        return bool(value)
    if kind == "blob":
        return base64.b64decode(value)
    return value


def _cbor_request(environ, raw, service, operation):
    """Rewrites a CBOR request into moto's awsJson1_0 one; returns the JSON body."""
    document = _cbor_to_json(cbor2.loads(raw)) if raw else {}
    body = json.dumps(document).encode()
    environ["PATH_INFO"] = "/"
    environ["CONTENT_TYPE"] = "application/x-amz-json-1.0"
    environ["HTTP_X_AMZ_TARGET"] = f"{service}.{operation}"
    environ.pop("HTTP_SMITHY_PROTOCOL", None)
    environ["HTTP_ACCEPT"] = "application/json"
    environ["CONTENT_LENGTH"] = str(len(body))
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _cbor_headers(body, extra=()):
    return [
        ("Content-Type", "application/cbor"),
        ("smithy-protocol", "rpc-v2-cbor"),
        ("Content-Length", str(len(body))),
        *extra,
    ]


def _cbor_error(namespace, shape_name, message, members=None):
    document = {"__type": f"{namespace}#{shape_name}", "message": message}
    document.update(members or {})
    return cbor2.dumps(document)


def _cbor_call(app, service, operation, environ, start_response):
    """Calls moto with the translated request and answers its reply as CBOR."""
    model_name, namespace = CBOR_SERVICES[service]
    model = _service_model(model_name)
    reply = {}
    chunks = []

    def capture(status, headers, exc_info=None):
        reply["status"], reply["headers"] = status, headers
        return chunks.append

    result = app(environ, capture)
    try:
        chunks.extend(result)
    finally:
        getattr(result, "close", lambda: None)()
    raw = b"".join(chunks)
    code = int(reply["status"].split()[0])
    kept = [(k, v) for k, v in reply["headers"] if k.lower() in ("x-amzn-requestid", "x-amzn-query-error")]
    if code < 300:
        output = model.operation_model(operation).output_shape
        # "Responses for operations with no output structure have no body" (rpcv2Cbor).
        body = b"" if output is None else cbor2.dumps(_json_to_cbor(json.loads(raw or b"{}"), output))
        start_response(reply["status"], _cbor_headers(body, kept))
        return [body]
    try:
        document = json.loads(raw)
    except ValueError:  # moto failed outside its error model (an unimplemented operation)
        document = {"__type": "InternalFailure", "message": raw.decode("utf-8", "replace")[:2000]}
    shape_name = document.get("__type", "InternalFailure").split("#")[-1].split(":")[0]
    members = {}
    if shape_name in model.shape_names:
        shape = model.shape_for(shape_name)
        for name, member in shape.members.items():
            value = document.get(name)
            if value is not None and name.lower() != "message":
                members[name] = _json_to_cbor(value, member)
    message = document.get("message") or document.get("Message") or ""
    body = _cbor_error(namespace, shape_name, message, members)
    start_response(reply["status"], _cbor_headers(body, kept))
    return [body]


# ---------------------------------------------------------------------------
# DynamoDB: a conditional write is atomic
# ---------------------------------------------------------------------------
# AWS evaluates a ConditionExpression and writes the item as one atomic step, so
# of two conditional writes expecting the same version exactly one succeeds. moto
# checks the condition and then writes, without a lock, and the threaded server
# interleaves concurrent requests between the two (two or more of eight racing
# PutItems won, now and then, in a run here). The bridge serialises DynamoDB calls.
_DYNAMODB_TARGET = "DynamoDB_20120810."
_dynamodb_lock = threading.Lock()


def _serialised(app, environ, start_response):
    with _dynamodb_lock:
        result = app(environ, start_response)
        try:
            return [b"".join(result)]
        finally:
            getattr(result, "close", lambda: None)()


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
    cbor = _CBOR_PATH.match(environ.get("PATH_INFO", ""))
    if cbor:
        return cbor.group(2)
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
    namespace = environ.get("autopilot.cbor")
    if namespace:
        body = _cbor_error(namespace, code, message)
        side = "Receiver" if int(fault.get("status", 400)) >= 500 else "Sender"
        start_response(status, _cbor_headers(body, [("x-amzn-query-error", f"{code};{side}")]))
        return [body]
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
    "/_bridge/rds/storage-modified": rds_storage_modified,
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
        app = self.app
        cbor = _CBOR_PATH.match(path)
        if cbor and cbor.group(1) in CBOR_SERVICES:
            environ["autopilot.cbor"] = CBOR_SERVICES[cbor.group(1)][1]
            try:
                # Faults, counts and latency match on the JSON text, as for JSON services.
                raw = _cbor_request(environ, raw, cbor.group(1), operation)
            except Exception as exc:  # not CBOR: what a service answers to a bad body
                body = _cbor_error(environ["autopilot.cbor"], "SerializationException", repr(exc))
                start_response("400 Bad Request", _cbor_headers(body))
                return [body]
            app = functools.partial(_cbor_call, self.app, cbor.group(1), operation)
        elif environ.get("HTTP_X_AMZ_TARGET", "").startswith(_DYNAMODB_TARGET):
            app = functools.partial(_serialised, self.app)
        _log_call(environ, operation)
        fault = _take_fault(operation, raw)
        if fault:
            return _fault_response(environ, start_response, fault)
        rule = _slow_rule(operation, raw.decode("utf-8", "replace"))
        if not rule:
            return app(environ, start_response)
        # Latency the test asked for, so concurrent calls overlap and can be counted.
        _track(rule, +1)
        try:
            time.sleep(float(rule.get("seconds", 0.2)))
            return app(environ, start_response)
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
