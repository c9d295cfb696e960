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
  breaker's rollback and the stopped tasks that tripped it. ``POST
  /_bridge/ecs/drain`` drops a drained deployment from the service's list, as
  ECS does once its tasks are gone.
* ECS task definitions in moto have no ``registeredAt``; the bridge stamps it at
  registration (``POST /_bridge/ecs/registered-at`` moves it back in time).
  DescribeTaskDefinition of a family alone answers its latest ACTIVE revision
  (API reference), where moto answered the latest of any status.
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
* RDS snapshots (section "RDS snapshots" below, each gap with its reference):
  cross-Region CopyDBSnapshot/CopyDBClusterSnapshot from the source's ARN without
  SourceRegion or PreSignedUrl, refusing what AWS refuses (an encrypted source
  without a destination KmsKeyId, a source not ``available``, a taken identifier, an
  invalid one, the manual snapshot quota) and answering SourceRegion,
  SourceDBSnapshotIdentifier, SourceDBClusterSnapshotArn; automated snapshots by ARN
  (``snapshot:rds:...``), which moto could not find, and which may not be deleted;
  DescribeDBSnapshots/DescribeDBClusterSnapshots paging (MaxRecords 20 to 100,
  Marker); DescribeAccountAttributes, which moto lacks; RestoreDBInstanceFromDBSnapshot
  honouring false flags and the destination Region; DeleteDBInstance's final snapshot
  rules; NotFound for tags on a missing resource. Time-taking work is played by the
  test: ``/_bridge/rds/hold-copies``, ``finish-snapshot``, ``hold-instances``,
  ``finish-instance``, ``automated-snapshot``, ``snapshot-time``, ``quota``,
  ``copy-limit`` (cross-Region copies in flight, 20 on AWS);
  ``/_bridge/kms/key`` makes a KMS key in a Region.
* The fault proxy (``tests/src/faults.rs``) sits in front of the bridge and asks,
  with an ``x-autopilot-fault: <code> <status>`` header, for an error answer it picked
  (throttling, 500, 503); the bridge renders it in the service's protocol, as for
  ``/_bridge/fault``, without calling moto.
* Counting calls: ``POST /_bridge/calls`` returns, in order, the operations whose
  request body contains ``match``, so a test can assert how often AWS was called.
  ``POST /_bridge/fault/clear`` drops a test's remaining faults.
* Latency: ``POST /_bridge/slow`` delays matching calls of an operation, and
  ``POST /_bridge/inflight`` tells the most of them that were ever in flight at
  once, so a test can see how many calls a function makes concurrently.
* Secrets in logs: with ``AUTOPILOT_SECRET_LOG`` set, every SecretString written
  (CreateSecret, PutSecretValue, UpdateSecret) is appended to that file, and a test
  after the suite looks for each value in every test's logs.
* IAM: moto checks no permission. With ``AUTOPILOT_CALL_LOG`` set, every call
  made by an autopilot function (its SDK app name, ``app/autopilot-*`` in the
  user agent) is appended to that file as ``{"function", "service", "operation"}``,
  with the service from the SigV4 credential scope; a test compares the whole
  suite's calls with what ``template.yaml`` grants each function.
"""

import base64
import copy
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
    task_definition = _orig_register_task_definition(self, *args, **kwargs)
    # AWS stamps every revision with registeredAt ("The Unix timestamp for the time
    # when the task definition was registered", TaskDefinition reference); moto has none.
    task_definition.registered_at = utcnow()
    return task_definition


_orig_describe_task_definition = Backend.describe_task_definition


def describe_task_definition(self, task_definition_str):
    # A family alone names "the latest ACTIVE revision" (DescribeTaskDefinition, API
    # reference); moto answers the latest revision whatever its status, so a
    # deregistered (INACTIVE) one came back. AWS answers ClientException when the
    # family has no ACTIVE revision.
    name = task_definition_str.split("/")[-1]
    if ":" in name:
        return _orig_describe_task_definition(self, task_definition_str)
    active = [r for r, td in self.task_definitions.get(name, {}).items() if td.status == "ACTIVE"]
    if not active:
        raise ecs_exceptions.TaskDefinitionNotFoundException()
    return self.task_definitions[name][max(active)]


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
Backend.describe_task_definition = describe_task_definition
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
    # AWS stamps a task's createdAt and stoppedAt (Task reference); moto's Task has neither.
    task.created_at = task.stopped_at = utcnow()
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


def drain_deployment(body):
    """ECS drops a deployment from the service's list once its tasks are gone (a
    replaced or failed deployment, drained); a late verdict event then finds it no
    more. The PRIMARY deployment is never dropped."""
    backend = _ecs(body.get("region", "us-east-1"))
    service = backend._get_service(body["cluster"], body["service"])
    deployment = next(d for d in service.deployments if d["id"] == body["deploymentId"])
    if deployment["status"] == "PRIMARY":
        raise ValueError("ECS never drops the PRIMARY deployment")
    service.deployments.remove(deployment)
    return {}


def registered_at(body):
    """Sets when a revision was registered (epoch seconds), for a revision registered long ago."""
    backend = _ecs(body.get("region", "us-east-1"))
    task_definition = backend.describe_task_definition(body["taskDefinition"])
    task_definition.registered_at = datetime.datetime.fromtimestamp(
        body["epoch"], datetime.timezone.utc
    ).replace(tzinfo=None)
    return {}


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
# RDS snapshots: cross-Region copies, copies in flight, automated backups,
# quotas, restores and deletes as AWS answers them
# ---------------------------------------------------------------------------
# Each gap is named where it is bridged, with the AWS reference it follows.
# "API reference" is the RDS API Reference (the same text is in aws-sdk-rds's
# doc comments). Tests control what only time would change on AWS:
#
# * ``POST /_bridge/rds/hold-copies {"hold": true, "match": "<needle>", "status"?}``
#   new CopyDBSnapshot/CopyDBClusterSnapshot copies and CreateDBSnapshot/
#   CreateDBClusterSnapshot snapshots whose identifier or DB identifier contains
#   ``match`` stay in flight (``creating``, a cluster copy ``copying``; ``status``
#   in the body overrides, e.g. ``pending``; PercentProgress 0) until
#   ``POST /_bridge/rds/finish-snapshot {"region", "id", "status": "available"|
#   "failed", "cluster": bool}``. ``{"hold": false, "match"}`` drops the hold.
#   Without a hold, snapshots are ``available`` at once, as moto has them.
# * ``POST /_bridge/rds/hold-instances {"hold": true, "match"}``: instances restored
#   with RestoreDBInstanceFromDBSnapshot stay ``creating``, and deleted ones stay
#   ``deleting``, until ``POST /_bridge/rds/finish-instance {"region", "id",
#   "status": "available"|"failed"|"incompatible-restore"|"deleted"}``.
# * ``POST /_bridge/rds/automated-snapshot {"region", "instance"|"cluster", "id",
#   "created"?}`` takes an automated snapshot (SnapshotType automated), as the
#   backup window would; ``POST /_bridge/rds/snapshot-time {"region", "id",
#   "cluster", "created"}`` moves SnapshotCreateTime (and a DB snapshot's
#   OriginalSnapshotCreateTime) to the epoch seconds given, so retention can age.
# * ``POST /_bridge/rds/quota {"region", "name", "max"}`` sets an account quota's
#   Max in a region (null restores the default) for DescribeAccountAttributes and
#   the SnapshotQuotaExceeded refusals. Quotas are per Region, as on AWS, and so
#   shared by every test of a binary: a test that lowers one uses a Region of its own.
# * ``POST /_bridge/rds/copy-limit {"region", "max"}`` sets how many cross-Region
#   copies may be in flight to a Region (AWS: 20; null restores it).
# * ``POST /_bridge/kms/key {"region"}`` makes a KMS key there and answers its ARN.
from moto.core.responses import ActionResult  # noqa: E402
from moto.rds import responses as rds_responses  # noqa: E402

RDSBackend = rds_models.RDSBackend
RDSResponse = rds_responses.RDSResponse


def _rds(region):
    return get_backend("rds")[ACCOUNT][region or "us-east-1"]


# moto's automated snapshot identifiers carry a colon (``rds:orders-db-...``), and
# its ARN parsing keeps only the text after the last colon, so the ARN of an
# automated snapshot (``arn:aws:rds:us-east-1:...:snapshot:rds:orders-db-...``)
# was "not found". An RDS ARN is ``arn:partition:rds:region:account:type:name``
# (RDS User Guide, "Amazon Resource Names (ARNs) in Amazon RDS"); the name is
# everything after the type.
def _split_rds_arn(arn):
    parts = arn.split(":", 6)
    if len(parts) < 7:
        raise rds_exceptions.InvalidParameterValue(f"Invalid resource name: {arn}")
    return parts[3], parts[5], parts[6]  # region, resource type, name


def get_snapshot(self, identifier, resource_type, not_found_exception):
    region = self.region_name
    if identifier.startswith("arn:"):
        region, _, identifier = _split_rds_arn(identifier)
    snapshots = _rds(region).resource_map[resource_type]
    if identifier not in snapshots:
        raise not_found_exception(identifier)
    return snapshots[identifier]


def extract_snapshot_name_from_arn(self, snapshot_arn):
    _, resource_type, name = _split_rds_arn(snapshot_arn)
    if resource_type != "snapshot":
        raise rds_exceptions.InvalidParameterValue(
            "The parameter SourceDBSnapshotIdentifier is not a valid identifier. Identifiers must begin "
            "with a letter; must contain only ASCII letters, digits, and hyphens; and must not end with "
            "a hyphen or contain two consecutive hyphens."
        )
    return name


RDSBackend.get_snapshot = get_snapshot
RDSBackend.extract_snapshot_name_from_arn = extract_snapshot_name_from_arn

# A DB snapshot's PercentProgress: "The percentage of the estimated data that has
# been transferred" (DBSnapshot, API reference); AWS answers 100 for an available
# snapshot, moto nothing (it has 100 for cluster snapshots already).
_orig_db_snapshot_init = rds_models.DBSnapshot.__init__


def _db_snapshot_init(self, *args, **kwargs):
    _orig_db_snapshot_init(self, *args, **kwargs)
    self.percent_progress = 100


rds_models.DBSnapshot.__init__ = _db_snapshot_init

# --- holds: snapshots and instances that take time on AWS --------------------
_snapshot_holds = []  # {"match", "status"?}
_instance_holds = []  # {"match"}


def _held(rules, *names):
    with _lock:
        for rule in rules:
            if any(rule.get("match", "") in (name or "") for name in names):
                return rule
    return None


def _set_hold(rules, body):
    needle = body.get("match", "")
    with _lock:
        rules[:] = [r for r in rules if r.get("match", "") != needle]
        if body.get("hold", True):
            rules.append(dict(body, match=needle))
    return {}


def _hold_snapshot(snapshot, in_flight, *names):
    # DBClusterSnapshot: "Valid statuses are the following: available, copying,
    # creating" (API reference), and "delete the target DB cluster snapshot ... while
    # that DB cluster snapshot is in "copying" status" (CopyDBClusterSnapshot). The
    # DBSnapshot doc lists none; AWS answers a DB snapshot copy as ``creating`` with
    # PercentProgress 0 (AWS CLI copy-db-snapshot example output), and a queued
    # cross-Region copy as ``pending`` (observed; ``status`` in the hold body).
    rule = _held(_snapshot_holds, *names)
    if rule:
        snapshot.status = rule.get("status") or in_flight
        snapshot.percent_progress = 0


# --- identifiers ---------------------------------------------------------------
# CreateDBClusterSnapshot and CopyDBClusterSnapshot take any identifier in moto.
# AWS: "Must contain from 1 to 63 letters, numbers, or hyphens. First character
# must be a letter. Can't end with a hyphen or contain two consecutive hyphens"
# (CreateDBClusterSnapshot DBClusterSnapshotIdentifier; CopyDBClusterSnapshot
# TargetDBClusterSnapshotIdentifier), answered with InvalidParameterValue as for
# DB snapshots (which allow 1 to 255 and moto already checks).
def _validate_cluster_snapshot_id(identifier, parameter):
    if not re.fullmatch(r"[A-Za-z](?!.*--)[A-Za-z0-9-]{0,62}", identifier or "") or identifier.endswith("-"):
        raise rds_exceptions.InvalidDBSnapshotIdentifier(identifier or "", parameter)


# --- quotas ----------------------------------------------------------------------
# moto has no DescribeAccountAttributes. AWS lists the account's quotas per Region,
# each with AccountQuotaName, Used and Max; "ManualSnapshots - The number of manual
# DB instance snapshots per account. The used value is the count of the manual DB
# instance snapshots in the account", likewise "ManualClusterSnapshots" (AccountQuota,
# API reference). The defaults are the RDS quotas (User Guide, "Quotas in Amazon
# RDS": 100 manual DB instance snapshots, 100 manual DB cluster snapshots, 40 DB
# instances, 40 DB clusters, 100000 GiB of storage). At the Max, creating or copying
# one more manual snapshot is SnapshotQuotaExceeded (CreateDBSnapshot, CopyDBSnapshot
# errors, API reference; AWS says "cannot create more than 100 manual snapshots").
_QUOTA_DEFAULTS = {
    "AllocatedStorage": 100000,
    "DBClusters": 40,
    "DBInstances": 40,
    "ManualClusterSnapshots": 100,
    "ManualSnapshots": 100,
}
_quota_max = {}  # (region, name) -> Max


def _quota_used(backend, name):
    if name == "ManualSnapshots":
        return sum(1 for s in backend.database_snapshots.values() if s.snapshot_type == "manual")
    if name == "ManualClusterSnapshots":
        return sum(1 for s in backend.cluster_snapshots.values() if s.snapshot_type == "manual")
    if name == "DBInstances":
        return len(backend.databases)
    if name == "DBClusters":
        return len(backend.clusters)
    return sum(int(getattr(d, "_allocated_storage", 0) or 0) for d in backend.databases.values())


def _quota(backend, name):
    return _quota_used(backend, name), _quota_max.get((backend.region_name, name), _QUOTA_DEFAULTS[name])


def _check_snapshot_quota(backend, name):
    used, most = _quota(backend, name)
    if used >= most:
        kind = "manual snapshots" if name == "ManualSnapshots" else "manual cluster snapshots"
        raise rds_exceptions.RDSClientError("SnapshotQuotaExceeded", f"Cannot create more than {most} {kind}")


def describe_account_attributes(self):
    quotas = []
    for name in _QUOTA_DEFAULTS:
        used, most = _quota(self.backend, name)
        quotas.append({"AccountQuotaName": name, "Used": used, "Max": most})
    return ActionResult({"AccountQuotas": quotas})


RDSResponse.describe_account_attributes = describe_account_attributes


def rds_quota(body):
    key = (body.get("region", "us-east-1"), body["name"])
    if body["name"] not in _QUOTA_DEFAULTS:
        raise ValueError(f"unknown quota {body['name']}; known: {sorted(_QUOTA_DEFAULTS)}")
    if body.get("max") is None:
        _quota_max.pop(key, None)
    else:
        _quota_max[key] = int(body["max"])
    return {}


# --- CreateDBSnapshot / CreateDBClusterSnapshot -------------------------------------
_orig_create_db_snapshot = RDSBackend.create_db_snapshot
_CREATE_DB_SNAPSHOT = inspect.signature(_orig_create_db_snapshot)


def create_db_snapshot(self, *args, **kwargs):
    bound = _CREATE_DB_SNAPSHOT.bind(self, *args, **kwargs)
    bound.apply_defaults()
    f = bound.arguments
    manual = f["snapshot_type"] == "manual"
    database = self.databases.get(f["db_instance_identifier"])
    if manual and database is not None:
        if f["db_snapshot_identifier"] in self.database_snapshots:
            raise rds_exceptions.DBSnapshotAlreadyExistsError(f["db_snapshot_identifier"])
        # InvalidDBInstanceState "The DB instance isn't in a valid state" (CreateDBSnapshot
        # errors); moto snapshots an instance that is still being created or deleted.
        if database.status in ("creating", "deleting", "failed", "incompatible-restore"):
            raise rds_exceptions.RDSClientError(
                "InvalidDBInstanceState",
                f"Cannot create a snapshot because the database instance {database.db_instance_identifier} "
                "is not currently in the available state.",
            )
        _check_snapshot_quota(self, "ManualSnapshots")
    snapshot = _orig_create_db_snapshot(*bound.args, **bound.kwargs)
    if manual:
        _hold_snapshot(snapshot, "creating", snapshot.db_snapshot_identifier, snapshot.db_instance_identifier)
    return snapshot


RDSBackend.create_db_snapshot = create_db_snapshot

_orig_create_db_cluster_snapshot = RDSBackend.create_db_cluster_snapshot
_CREATE_DB_CLUSTER_SNAPSHOT = inspect.signature(_orig_create_db_cluster_snapshot)


def create_db_cluster_snapshot(self, *args, **kwargs):
    bound = _CREATE_DB_CLUSTER_SNAPSHOT.bind(self, *args, **kwargs)
    bound.apply_defaults()
    f = bound.arguments
    manual = f["snapshot_type"] == "manual"
    if manual and f["db_cluster_identifier"] in self.clusters:
        if f["db_cluster_snapshot_identifier"] in self.cluster_snapshots:
            raise rds_exceptions.DBClusterSnapshotAlreadyExistsError(f["db_cluster_snapshot_identifier"])
        _check_snapshot_quota(self, "ManualClusterSnapshots")
    snapshot = _orig_create_db_cluster_snapshot(*bound.args, **bound.kwargs)
    if manual:
        _hold_snapshot(snapshot, "creating", snapshot.db_cluster_snapshot_identifier, snapshot.db_cluster_identifier)
    return snapshot


RDSBackend.create_db_cluster_snapshot = create_db_cluster_snapshot

_orig_create_db_cluster_snapshot_response = RDSResponse.create_db_cluster_snapshot


def create_db_cluster_snapshot_response(self):
    _validate_cluster_snapshot_id(self.params.get("DBClusterSnapshotIdentifier"), "DBClusterSnapshotIdentifier")
    return _orig_create_db_cluster_snapshot_response(self)


RDSResponse.create_db_cluster_snapshot = create_db_cluster_snapshot_response

# BackupRetentionPeriod 0 "disables automated backups" (CreateDBInstance, API
# reference): no first automated snapshot then; moto takes one for every instance.
_orig_save_automated_backup = rds_models.DBInstance.save_automated_backup


def _save_automated_backup(self):
    if int(getattr(self, "_backup_retention_period", 1) or 0) > 0:
        _orig_save_automated_backup(self)


rds_models.DBInstance.save_automated_backup = _save_automated_backup


# --- CopyDBSnapshot / CopyDBClusterSnapshot -----------------------------------------
# Called in the destination Region with the source's ARN ("If the source snapshot is
# in a different AWS Region than the copy, specify a valid DB snapshot ARN", API
# reference), without SourceRegion or PreSignedUrl ("This setting applies only to
# Amazon Web Services GovCloud (US) Regions. It's ignored in other Amazon Web Services
# Regions", PreSignedUrl). moto finds the source; what it lacks:
# * "The source DB snapshot must be in the available state": a snapshot still being
#   created or copied is InvalidDBSnapshotState (InvalidDBClusterSnapshotStateFault).
# * "If you copy an encrypted snapshot to a different Amazon Web Services Region, then
#   you must specify an Amazon Web Services KMS key identifier for the destination
#   Amazon Web Services Region" (KmsKeyId; CopyDBClusterSnapshot says the same); AWS
#   answers InvalidParameterValue "Must specify new KMS key for cross region encrypted
#   snapshot copy." moto used the source Region's key.
# * "After you copy a snapshot, the copy is a manual snapshot" (User Guide, "Copying a
#   DB snapshot"): moto has that. SourceRegion ("The Amazon Web Services Region that
#   the DB snapshot was created in or copied from") and SourceDBSnapshotIdentifier
#   ("The DB snapshot ARN that the DB snapshot was copied from. It only has a value in
#   the case of a cross-account or cross-Region copy"), and a cluster copy's
#   SourceDBClusterSnapshotArn, were missing.
# * Tags: "CopyTags: Specifies whether to copy all tags from the source DB snapshot to
#   the target DB snapshot. By default, tags aren't copied." Given Tags, AWS does not
#   merge the source's: the copy has the Tags given, the source's tags only when Tags
#   is empty (measured on AWS, moto PR #8320 and its cluster follow-up; the API
#   reference is silent). moto has that, but also gave a copy without tags the source
#   instance's tags when the instance copies tags to snapshots; a copy is not taken
#   from the instance, so the bridge drops them.
# * The ManualSnapshots / ManualClusterSnapshots quota, the limit on cross-Region
#   copies in flight (below), and holds (above).
_CROSS_REGION_KMS = "Must specify new KMS key for cross region encrypted snapshot copy."

# "You can have up to 20 snapshot copy requests in progress to a single destination
# Region per account" (User Guide, "Copying a DB snapshot"); past it AWS answers
# SnapshotQuotaExceeded "Cannot copy more than 5 snapshots across regions" (observed
# when the limit was 5). moto has no limit.
_COPY_LIMIT = 20
_copy_limit = {}  # destination region -> limit
_IN_FLIGHT = ("creating", "pending", "copying")


def _copy_source(snapshot):
    """The ARN a snapshot was copied from, if it is a copy."""
    return getattr(snapshot, "source_db_cluster_snapshot_arn", None) or (
        f"arn:aws:rds:{snapshot.source_region}:{ACCOUNT}:snapshot:?" if getattr(snapshot, "source_region", None) else None
    )


def _cross_region_copy_in_flight(snapshot, region):
    source = _copy_source(snapshot)
    return snapshot.status in _IN_FLIGHT and source is not None and source.split(":")[3] != region


def _check_copy_limit(backend):
    snapshots = list(backend.database_snapshots.values()) + list(backend.cluster_snapshots.values())
    in_flight = sum(1 for s in snapshots if _cross_region_copy_in_flight(s, backend.region_name))
    limit = _copy_limit.get(backend.region_name, _COPY_LIMIT)
    if in_flight >= limit:
        raise rds_exceptions.RDSClientError(
            "SnapshotQuotaExceeded", f"Cannot copy more than {limit} snapshots across regions"
        )


def rds_copy_limit(body):
    if body.get("max") is None:
        _copy_limit.pop(body.get("region", "us-east-1"), None)
    else:
        _copy_limit[body.get("region", "us-east-1")] = int(body["max"])
    return {}

_orig_copy_db_snapshot = RDSBackend.copy_db_snapshot


def copy_db_snapshot(
    self, source_db_snapshot_identifier, target_db_snapshot_identifier, kms_key_id=None, tags=None, copy_tags=False, **kw
):
    source = self.get_db_snapshot(source_db_snapshot_identifier)
    if target_db_snapshot_identifier in self.database_snapshots:
        raise rds_exceptions.DBSnapshotAlreadyExistsError(target_db_snapshot_identifier)
    if source.status != "available":
        raise rds_exceptions.RDSClientError(
            "InvalidDBSnapshotState",
            f"Snapshot {source.db_snapshot_identifier} is not in available state (it is {source.status}).",
        )
    cross_region = source.region != self.region_name
    if cross_region and source.encrypted and not kms_key_id:
        raise rds_exceptions.InvalidParameterValue(_CROSS_REGION_KMS)
    _check_snapshot_quota(self, "ManualSnapshots")
    if cross_region:
        _check_copy_limit(self)
    target = _orig_copy_db_snapshot(
        self, source_db_snapshot_identifier, target_db_snapshot_identifier, kms_key_id, tags, copy_tags, **kw
    )
    target.tags = list(tags) if tags else (list(source.tags) if copy_tags else [])
    target.source_region = source.region
    if cross_region:
        target.source_db_snapshot_identifier = source.arn
    _hold_snapshot(target, "creating", target.db_snapshot_identifier, target.db_instance_identifier)
    return target


RDSBackend.copy_db_snapshot = copy_db_snapshot

_orig_copy_db_cluster_snapshot = RDSBackend.copy_db_cluster_snapshot


def copy_db_cluster_snapshot(
    self,
    source_db_cluster_snapshot_identifier,
    target_db_cluster_snapshot_identifier,
    kms_key_id=None,
    copy_tags=False,
    tags=None,
    **kw,
):
    source = self.get_db_cluster_snapshot(source_db_cluster_snapshot_identifier)
    if target_db_cluster_snapshot_identifier in self.cluster_snapshots:
        raise rds_exceptions.DBClusterSnapshotAlreadyExistsError(target_db_cluster_snapshot_identifier)
    if source.status != "available":
        raise rds_exceptions.InvalidDBClusterSnapshotStateFault(
            f"Snapshot {source.db_cluster_snapshot_identifier} is not in available state (it is {source.status})."
        )
    cross_region = source.region != self.region_name
    if cross_region and source.encrypted and not kms_key_id:
        raise rds_exceptions.InvalidParameterValue(_CROSS_REGION_KMS)
    _check_snapshot_quota(self, "ManualClusterSnapshots")
    if cross_region:
        _check_copy_limit(self)
    target = _orig_copy_db_cluster_snapshot(
        self,
        source_db_cluster_snapshot_identifier,
        target_db_cluster_snapshot_identifier,
        kms_key_id=kms_key_id,
        copy_tags=copy_tags,
        tags=tags,
        **kw,
    )
    target.tags = list(tags) if tags else (list(source.tags) if copy_tags else [])
    target.source_db_cluster_snapshot_arn = source.arn
    _hold_snapshot(target, "copying", target.db_cluster_snapshot_identifier, target.db_cluster_identifier)
    return target


RDSBackend.copy_db_cluster_snapshot = copy_db_cluster_snapshot

_orig_copy_db_cluster_snapshot_response = RDSResponse.copy_db_cluster_snapshot


def copy_db_cluster_snapshot_response(self):
    _validate_cluster_snapshot_id(
        self.params.get("TargetDBClusterSnapshotIdentifier"), "TargetDBClusterSnapshotIdentifier"
    )
    return _orig_copy_db_cluster_snapshot_response(self)


RDSResponse.copy_db_cluster_snapshot = copy_db_cluster_snapshot_response


# --- DeleteDBSnapshot / DeleteDBClusterSnapshot -----------------------------------
# AWS keeps automated snapshots to itself: DeleteDBSnapshot answers InvalidDBSnapshotState
# "automated snapshots cannot be deleted." and DeleteDBClusterSnapshot
# InvalidDBClusterSnapshotStateFault "Only manual snapshots may be deleted." (as AWS
# answers them); moto deleted them. "If the snapshot is being copied, the copy operation
# is terminated. The DB snapshot must be in the available state to be deleted"
# (DeleteDBSnapshot, API reference): a copy in flight may be deleted, a snapshot still
# being created may not. The deleted snapshot is answered with status ``deleted``.
_DELETABLE = ("available", "failed")


def _deletable(snapshot):
    return snapshot.status in _DELETABLE or (snapshot.status in _IN_FLIGHT and _copy_source(snapshot) is not None)

_orig_delete_db_snapshot_response = RDSResponse.delete_db_snapshot
_orig_delete_db_cluster_snapshot_response = RDSResponse.delete_db_cluster_snapshot


def delete_db_snapshot_response(self):
    snapshot = self.backend.database_snapshots.get(self.params.get("DBSnapshotIdentifier") or "")
    if snapshot is not None and snapshot.snapshot_type == "automated":
        raise rds_exceptions.RDSClientError("InvalidDBSnapshotState", "automated snapshots cannot be deleted.")
    if snapshot is not None and not _deletable(snapshot):
        raise rds_exceptions.RDSClientError(
            "InvalidDBSnapshotState", f"Cannot delete the snapshot because it is {snapshot.status}."
        )
    if snapshot is not None:
        snapshot.status = "deleted"
    return _orig_delete_db_snapshot_response(self)


def delete_db_cluster_snapshot_response(self):
    snapshot = self.backend.cluster_snapshots.get(self.params.get("DBClusterSnapshotIdentifier") or "")
    if snapshot is not None and snapshot.snapshot_type == "automated":
        raise rds_exceptions.InvalidDBClusterSnapshotStateFault("Only manual snapshots may be deleted.")
    if snapshot is not None and not _deletable(snapshot):
        raise rds_exceptions.InvalidDBClusterSnapshotStateFault(
            f"Cannot delete the snapshot because it is {snapshot.status}."
        )
    if snapshot is not None:
        snapshot.status = "deleted"
    return _orig_delete_db_cluster_snapshot_response(self)


RDSResponse.delete_db_snapshot = delete_db_snapshot_response
RDSResponse.delete_db_cluster_snapshot = delete_db_cluster_snapshot_response


# --- DescribeDBSnapshots / DescribeDBClusterSnapshots paging ------------------------
# moto returns every snapshot in one answer and accepts any MaxRecords. AWS: "Default:
# 100. Constraints: Minimum 20, maximum 100", and a Marker "If this parameter is
# specified, the response includes only records beyond the marker, up to the value
# specified by MaxRecords" (DescribeDBSnapshots, DescribeDBClusterSnapshots). The
# bridge pages in moto's order with an opaque marker. The type filter moto already
# has right: "If you don't specify a SnapshotType value, then both automated and
# manual snapshots are returned. Shared and public DB snapshots are not included".
def _paged(self, original, key):
    max_records = self.params.get("MaxRecords")
    size = 100 if max_records is None else int(max_records)
    if not 20 <= size <= 100:
        raise rds_exceptions.InvalidParameterValue(
            f"Invalid value {max_records} for MaxRecords. Must be between 20 and 100"
        )
    marker = self.params.get("Marker")
    start = 0
    if marker:
        try:
            start = int(base64.urlsafe_b64decode(marker.encode()).decode().split(":", 1)[1])
        except (ValueError, IndexError, UnicodeDecodeError):
            raise rds_exceptions.InvalidParameterValue(f"Invalid marker: {marker}")
    result = original(self)
    items = list(result.result[key])
    result.result[key] = items[start : start + size]
    if start + size < len(items):
        result.result["Marker"] = base64.urlsafe_b64encode(f"{key}:{start + size}".encode()).decode()
    return result


_orig_describe_db_snapshots_response = RDSResponse.describe_db_snapshots
_orig_describe_db_cluster_snapshots_response = RDSResponse.describe_db_cluster_snapshots
RDSResponse.describe_db_snapshots = lambda self: _paged(self, _orig_describe_db_snapshots_response, "DBSnapshots")
RDSResponse.describe_db_cluster_snapshots = lambda self: _paged(
    self, _orig_describe_db_cluster_snapshots_response, "DBClusterSnapshots"
)


# --- tags on snapshots, clusters and instances ---------------------------------
# AddTagsToResource and ListTagsForResource on an ARN that names nothing answer the
# resource's NotFound fault on AWS (DBSnapshotNotFoundFault, DBInstanceNotFoundFault,
# ... in their error lists, API reference); moto silently did nothing.
_NOT_FOUND = {
    "snapshot": rds_exceptions.DBSnapshotNotFoundFault,
    "cluster-snapshot": rds_exceptions.DBClusterSnapshotNotFoundError,
    "db": rds_exceptions.DBInstanceNotFoundError,
    "cluster": rds_exceptions.DBClusterNotFoundError,
}
_orig_get_resource_for_tagging = RDSBackend._get_resource_for_tagging


def _get_resource_for_tagging(self, arn):
    if arn.startswith("arn:"):
        region, resource_type, name = _split_rds_arn(arn)
        if resource_type in _NOT_FOUND:
            resource = self._find_resource(resource_type, name) if region == self.region_name else None
            if resource is None:
                raise _NOT_FOUND[resource_type](name)
            return resource
    return _orig_get_resource_for_tagging(self, arn)


RDSBackend._get_resource_for_tagging = _get_resource_for_tagging


# --- RestoreDBInstanceFromDBSnapshot -----------------------------------------------
# moto builds the instance from every attribute of the snapshot's source instance and
# applies only truthy overrides, so PubliclyAccessible=false, MultiAZ=false and
# DeletionProtection=false were ignored, and the source Region's availability zone and
# DB subnet group came along (a subnet group that does not exist in the DR Region
# failed the restore). AWS: "By default, the new DB instance is created as a
# Single-AZ deployment"; DBSubnetGroupName, VpcSecurityGroupIds, AvailabilityZone
# apply in the Region of the call; "If yes [new tags], the new tags are added to the
# restored DB instance. If there are no new tags, RDS looks for the tags from the
# source DB instance for the DB snapshot" (RestoreDBInstanceFromDBSnapshot, API
# reference). The snapshot must be available (InvalidDBSnapshotState), the identifier
# free (DBInstanceAlreadyExists). A restore takes time: under hold-instances the new
# instance stays ``creating``.
_NOT_INHERITED = {
    "backend",
    "db_parameter_group_name",
    "vpc_security_group_ids",
    "max_allocated_storage",
    "availability_zone",
    "db_subnet_group_name",
    "db_subnet_group",
    "multi_az",
    "publicly_accessible",
    "deletion_protection",
    "status",
    "created",
    "instance_create_time",
    "bridge_address",
    "manage_master_user_password",
    "master_user_secret",
    "replicas",
    "is_replica",
    "tags",
}


def restore_db_instance_from_db_snapshot(self, from_snapshot_id, overrides):
    if from_snapshot_id.startswith("arn:"):
        from_snapshot_id = self.extract_snapshot_name_from_arn(from_snapshot_id)
    snapshot = self.database_snapshots.get(from_snapshot_id)
    if snapshot is None:
        raise rds_exceptions.DBSnapshotNotFoundFault(from_snapshot_id)
    if snapshot.status != "available":
        raise rds_exceptions.RDSClientError(
            "InvalidDBSnapshotState",
            f"Snapshot {snapshot.db_snapshot_identifier} is not in available state (it is {snapshot.status}).",
        )
    if overrides["db_instance_identifier"] in self.databases:
        raise rds_exceptions.DBInstanceAlreadyExists()
    original = snapshot.database
    props = {}
    for key, value in original.__dict__.items():
        key = key.lstrip("_")
        if key not in _NOT_INHERITED:
            props[key] = copy.copy(value)
    if not original.option_group_supplied:
        props.pop("option_group_name", None)
    props["kms_key_id"] = snapshot.kms_key_id
    props["storage_encrypted"] = snapshot.encrypted
    props["tags"] = list(snapshot.database.tags or [])
    if overrides.get("allocated_storage") and overrides["allocated_storage"] < snapshot.allocated_storage:
        raise rds_exceptions.InvalidParameterValue(
            "The allocated storage size can't be less than the source snapshot or backup size."
        )
    for key, value in overrides.items():
        if value is not None and not (key == "tags" and not value):
            props[key] = value
    database = self.create_db_instance(props)
    if _held(_instance_holds, database.db_instance_identifier, snapshot.db_snapshot_identifier):
        database.status = "creating"
    return database


RDSBackend.restore_db_instance_from_db_snapshot = restore_db_instance_from_db_snapshot


# --- DeleteDBInstance ------------------------------------------------------------
# "SkipFinalSnapshot ... If you don't enable this parameter, you must specify the
# FinalDBSnapshotIdentifier parameter"; "FinalDBSnapshotIdentifier ... If you enable
# this parameter and also enable SkipFinalShapshot, the command results in an error";
# "When a DB instance is in a failure state and has a status of failed,
# incompatible-restore, or incompatible-network, RDS can delete the instance only if
# you enable this parameter" (DeleteDBInstance, API reference). moto deleted in all
# three cases. AWS answers InvalidParameterCombination "FinalDBSnapshotIdentifier is
# required unless SkipFinalSnapshot is specified." for the first; deleting an instance
# already being deleted is InvalidDBInstanceState. A delete takes time: under
# hold-instances the instance stays ``deleting`` (and describable) until finished.
_orig_delete_db_instance_response = RDSResponse.delete_db_instance


def delete_db_instance_response(self):
    identifier = self.params.get("DBInstanceIdentifier") or ""
    skip = bool(self.params.get("SkipFinalSnapshot"))
    final = self.params.get("FinalDBSnapshotIdentifier")
    database = self.backend.databases.get(identifier)
    if database is not None:
        if database.status == "deleting":
            raise rds_exceptions.RDSClientError(
                "InvalidDBInstanceState", f"Instance {identifier} is already being deleted."
            )
        if skip and final:
            raise rds_exceptions.InvalidParameterCombination(
                "FinalDBSnapshotIdentifier cannot be specified when SkipFinalSnapshot is enabled."
            )
        if not skip and not final:
            raise rds_exceptions.InvalidParameterCombination(
                "FinalDBSnapshotIdentifier is required unless SkipFinalSnapshot is specified."
            )
        if not skip and database.status in ("failed", "incompatible-restore", "incompatible-network"):
            raise rds_exceptions.RDSClientError(
                "InvalidDBInstanceState",
                f"Instance {identifier} is in {database.status} state; it can only be deleted with SkipFinalSnapshot.",
            )
    result = _orig_delete_db_instance_response(self)
    if database is not None and _held(_instance_holds, database.db_instance_identifier):
        database.status = "deleting"
        self.backend.databases[database.db_instance_identifier] = database
    return result


RDSResponse.delete_db_instance = delete_db_instance_response


# --- control endpoints ---------------------------------------------------------
def _find_snapshot(body):
    backend = _rds(body.get("region"))
    snapshots = backend.cluster_snapshots if body.get("cluster") else backend.database_snapshots
    if body["id"] not in snapshots:
        raise KeyError(f"no {'cluster ' if body.get('cluster') else ''}snapshot {body['id']} in {backend.region_name}")
    return snapshots[body["id"]]


def _set_created(snapshot, epoch):
    if epoch is None:
        return
    when = datetime.datetime.fromtimestamp(float(epoch), datetime.timezone.utc).replace(tzinfo=None)
    snapshot.created = when
    if hasattr(snapshot, "original_snapshot_create_time"):
        snapshot.original_snapshot_create_time = when


def rds_hold_copies(body):
    return _set_hold(_snapshot_holds, body)


def rds_hold_instances(body):
    return _set_hold(_instance_holds, body)


def rds_finish_snapshot(body):
    snapshot = _find_snapshot(body)
    snapshot.status = body.get("status", "available")
    if snapshot.status == "available":
        snapshot.percent_progress = 100
    return {"status": snapshot.status}


def rds_automated_snapshot(body):
    backend = _rds(body.get("region"))
    if body.get("cluster"):
        snapshot = backend.create_auto_cluster_snapshot(body["cluster"], body["id"])
    else:
        snapshot = backend.create_auto_snapshot(body["instance"], body["id"])
    _set_created(snapshot, body.get("created"))
    return {"arn": snapshot.arn}


def rds_snapshot_time(body):
    _set_created(_find_snapshot(body), body["created"])
    return {}


def kms_key(body):
    """A symmetric KMS key in a Region, for encrypted instances and copies (the tests
    have no KMS client of their own). Returns its ARN."""
    kms = get_backend("kms")[ACCOUNT][body.get("region", "us-east-1")]
    key = kms.create_key(None, "ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT", body.get("description", "harness"), None)
    return {"arn": key.arn}


def rds_finish_instance(body):
    backend = _rds(body.get("region"))
    database = backend.databases[body["id"]]
    if body.get("status") == "deleted":
        backend.databases.pop(body["id"], None)
        return {"status": "deleted"}
    database.status = body.get("status", "available")
    return {"status": database.status}


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


_SECRET_LOG = os.environ.get("AUTOPILOT_SECRET_LOG")
_SECRET_WRITES = ("CreateSecret", "PutSecretValue", "UpdateSecret")


def _log_secret(operation, raw):
    """Appends every SecretString written to Secrets Manager, by anyone, to the
    suite's secret log, so a check after the suite can look for each value in the
    logs every test wrote (tests/tests/secrets_in_logs.rs)."""
    if not _SECRET_LOG or operation not in _SECRET_WRITES:
        return
    try:
        value = json.loads(raw or b"{}").get("SecretString")
    except ValueError:
        return
    if isinstance(value, str) and value:
        with _lock:
            with open(_SECRET_LOG, "a") as f:
                f.write(json.dumps({"operation": operation, "value": value}) + "\n")


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
    "/_bridge/ecs/drain": drain_deployment,
    "/_bridge/ecs/registered-at": registered_at,
    "/_bridge/ecr/pushed-at": pushed_at,
    "/_bridge/rds/endpoint": rds_endpoint,
    "/_bridge/rds/storage-modified": rds_storage_modified,
    "/_bridge/rds/hold-copies": rds_hold_copies,
    "/_bridge/rds/hold-instances": rds_hold_instances,
    "/_bridge/rds/finish-snapshot": rds_finish_snapshot,
    "/_bridge/rds/finish-instance": rds_finish_instance,
    "/_bridge/rds/automated-snapshot": rds_automated_snapshot,
    "/_bridge/rds/snapshot-time": rds_snapshot_time,
    "/_bridge/rds/quota": rds_quota,
    "/_bridge/rds/copy-limit": rds_copy_limit,
    "/_bridge/kms/key": kms_key,
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
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("secretsmanager."):
            _log_secret(operation, raw)
        # The fault proxy of tests/src/faults.rs picked an error answer for this call;
        # the bridge renders it in the service's protocol. AWS never saw the call.
        injected = environ.get("HTTP_X_AUTOPILOT_FAULT", "").split()
        if len(injected) == 2:
            return _fault_response(environ, start_response, {"code": injected[0], "status": int(injected[1])})
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
