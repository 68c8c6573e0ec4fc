"""The upgrade gate's function against moto's RDS, ECS and CloudFormation.

On a deploy that changes the MLflow version, the old version's tasks must be
gone before the new ones start, and a snapshot must exist before they go; a
deploy with the same version must touch nothing. The fake ECS scheduler here
(``sleep``) does between two polls what ECS does: it drains and stops the
tasks of a service scaled to 0, and finishes a snapshot being created.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from stacks import names
from stacks.components.function_code import function_dir
from tests.fake_aws import use_fake_aws
from tests.stacks.cloudformation_response import response_url_server

REGION = "eu-west-1"
DATABASE = "mlflowvpcstack-databasecluster5b53a178-x1y2z3"
SERVICE_LOGICAL_ID = "TrackingService44D9AA4E"
TASK_DEFINITION = {"Family": "mlflow", "ContainerDefinitions": [{"Name": "mlflow", "Image": "m", "Memory": 512}]}
SERVICE = {"Cluster": {"Ref": "TrackingCluster"}, "TaskDefinition": {"Ref": "TaskDefinition"}, "DesiredCount": 2}
# The part of MLflowVpcStack the function looks at, created in moto's CloudFormation.
TEMPLATE = {
    "Resources": {
        "TrackingCluster": {"Type": "AWS::ECS::Cluster"},
        "TaskDefinition": {"Type": "AWS::ECS::TaskDefinition", "Properties": TASK_DEFINITION},
        SERVICE_LOGICAL_ID: {"Type": "AWS::ECS::Service", "Properties": SERVICE},
    }
}


def _load_handler() -> ModuleType:
    """The function's index.py under its own name (other functions' modules are index.py too)."""
    spec = importlib.util.spec_from_file_location("upgrade_gate_handler", function_dir("upgrade_gate") / "index.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gate = _load_handler()


class Recorder:
    """A boto3 client that notes each call (name and arguments) in a shared list, in order."""

    def __init__(self, client: Any, calls: list[tuple[str, dict]]) -> None:
        self._client, self._calls = client, calls

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name == "get_paginator" or not callable(attribute):
            return attribute

        def call(**kwargs: Any) -> Any:
            self._calls.append((name, kwargs))
            return attribute(**kwargs)

        return call


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """The stack with its database, ECS cluster and service running two tasks of the old version."""
    # Here, not at the top: moto's CloudFormation, ECS and RDS models take seconds to import,
    # which every worker collecting this module would pay.
    from moto.cloudformation.models import cloudformation_backends
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ecs.models import ecs_backends
    from moto.moto_api import state_manager
    from moto.rds.models import rds_backends

    use_fake_aws(monkeypatch, REGION)
    with mock_aws():
        rds, ecs = boto3.client("rds", region_name=REGION), boto3.client("ecs", region_name=REGION)
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        rds.create_db_cluster(
            DBClusterIdentifier=DATABASE, Engine="aurora-postgresql", MasterUsername="mlflow_admin",
            MasterUserPassword="not-a-real-password-1",
        )  # fmt: skip
        stack_id = cloudformation.create_stack(StackName=names.VPC_STACK, TemplateBody=json.dumps(TEMPLATE))["StackId"]

        def physical(logical: str) -> str:
            detail = cloudformation.describe_stack_resource(StackName=stack_id, LogicalResourceId=logical)
            return detail["StackResourceDetail"]["PhysicalResourceId"]

        cluster, service = physical("TrackingCluster"), physical(SERVICE_LOGICAL_ID)
        # The fake scheduler below moves the tasks; moto's own clock for them stays still.
        state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
        tasks = [
            task["taskArn"]
            for task in ecs.run_task(
                cluster=cluster, taskDefinition="mlflow", count=2, launchType="FARGATE", startedBy="ecs-svc/1"
            )["tasks"]
        ]
        calls: list[tuple[str, dict]] = []
        ecs_backend = ecs_backends[DEFAULT_ACCOUNT_ID][REGION]
        rds_backend = rds_backends[DEFAULT_ACCOUNT_ID][REGION]
        state = SimpleNamespace(
            now=0.0,
            sleeps=0,
            tasks_stop=True,
            snapshot_starts_as="creating",
            snapshot_ends_as="available",
            new_snapshots=[],
        )

        def sleep(seconds: float) -> None:
            """ECS and RDS moving along while the function waits."""
            state.sleeps += 1
            state.now += seconds
            calls.append(("sleep", {}))
            for name in state.new_snapshots:
                rds_backend.cluster_snapshots[name].status = state.snapshot_ends_as
            if ecs.describe_services(cluster=cluster, services=[service])["services"][0]["desiredCount"] == 0:
                for task in ecs_backend.tasks[cluster].values():
                    # First drained (deregistered, containers still up), then stopped.
                    if task.last_status == "RUNNING":
                        task.desired_status, task.last_status = "STOPPED", "DEACTIVATING"
                    elif task.last_status == "DEACTIVATING" and state.tasks_stop:
                        task.last_status = "STOPPED"

        def set_stack_status(status: str) -> None:
            cloudformation_backends[DEFAULT_ACCOUNT_ID][REGION].stacks[stack_id].status = status

        real_create = rds_backend.create_db_cluster_snapshot

        def create_snapshot_still_creating(*args: Any, **kwargs: Any) -> Any:
            # moto makes a snapshot available at once; RDS takes a while.
            snapshot = real_create(*args, **kwargs)
            snapshot.status = state.snapshot_starts_as
            state.new_snapshots.append(snapshot.db_cluster_snapshot_identifier)
            return snapshot

        monkeypatch.setattr(rds_backend, "create_db_cluster_snapshot", create_snapshot_still_creating)
        yield SimpleNamespace(
            rds=Recorder(rds, calls), ecs=Recorder(ecs, calls), cloudformation=cloudformation, raw_rds=rds,
            raw_ecs=ecs, stack_id=stack_id, cluster=cluster, service=service, tasks=tasks, calls=calls,
            state=state, sleep=sleep, set_stack_status=set_stack_status, ecs_backend=ecs_backend,
        )  # fmt: skip
        state_manager.unset_transition("ecs::task")


def _event(aws: SimpleNamespace, step: str, old: str | None, new: str, **props: Any) -> dict[str, Any]:
    properties = {
        "ServiceToken": "arn:aws:lambda:...", "Step": step, "MlflowVersion": new, "DatabaseCluster": DATABASE,
        "EcsCluster": aws.cluster, "ServiceLogicalId": SERVICE_LOGICAL_ID, **props,
    }  # fmt: skip
    event: dict[str, Any] = {
        "RequestType": "Create" if old is None else "Update", "StackId": aws.stack_id, "RequestId": "request-1",
        "LogicalResourceId": "UpgradeGateStop", "ResponseURL": "http://127.0.0.1:9/unused",
        "ResourceType": "Custom::MlflowUpgradeGate", "ResourceProperties": properties,
    }  # fmt: skip
    if old is not None:
        event["PhysicalResourceId"] = "UpgradeGateStop-gate"
        event["OldResourceProperties"] = {**properties, "MlflowVersion": old}
    return event


def _clock(aws: SimpleNamespace, seconds: float = 3600) -> gate.Clock:
    """The function's clock, on the fake scheduler's time."""
    return gate.Clock(seconds, sleep=aws.sleep, now=lambda: aws.state.now)


def _desired(aws: SimpleNamespace) -> int:
    return aws.raw_ecs.describe_services(cluster=aws.cluster, services=[aws.service])["services"][0]["desiredCount"]


def _task_states(aws: SimpleNamespace) -> list[str]:
    return [task["lastStatus"] for task in aws.raw_ecs.describe_tasks(cluster=aws.cluster, tasks=aws.tasks)["tasks"]]


def _snapshots(aws: SimpleNamespace) -> list[dict[str, Any]]:
    return aws.raw_rds.describe_db_cluster_snapshots(DBClusterIdentifier=DATABASE, SnapshotType="manual")[
        "DBClusterSnapshots"
    ]


def _stop(aws: SimpleNamespace, event: dict[str, Any], clock: gate.Clock | None = None) -> tuple[str, dict]:
    return gate.stop_old_writers(event, aws.rds, aws.ecs, aws.cloudformation, clock or _clock(aws))


@pytest.mark.parametrize(
    ("old", "request_type"), [("3.17.2", "Update"), (None, "Create"), ("3.17.2", "Delete")], ids=str
)
def test_the_same_version_or_a_create_or_delete_touches_nothing(
    aws: SimpleNamespace, old: str | None, request_type: str
) -> None:
    event = _event(aws, "stop", old, "3.17.2", EcsCluster=aws.cluster)
    event["RequestType"] = request_type
    if request_type == "Update":  # another property changed, the version did not
        event["OldResourceProperties"]["DatabaseCluster"] = "another"
    said, data = _stop(aws, event)
    assert "nothing to stop" in said
    assert data == {"DesiredCountBefore": "0", "Snapshot": ""}
    assert [name for name, _ in aws.calls] == []
    assert _snapshots(aws) == [] and _desired(aws) == 2 and _task_states(aws) == ["RUNNING", "RUNNING"]


def test_a_new_version_takes_an_available_snapshot_then_stops_every_old_task(aws: SimpleNamespace) -> None:
    said, data = _stop(aws, _event(aws, "stop", "3.16.1", "3.17.2"))
    (snapshot,) = _snapshots(aws)
    assert snapshot["Status"] == "available" and snapshot["DBClusterIdentifier"] == DATABASE
    assert snapshot["DBClusterSnapshotIdentifier"].startswith("mlflow-upgrade-3-16-1-to-3-17-2-")
    assert data == {"DesiredCountBefore": "2", "Snapshot": snapshot["DBClusterSnapshotIdentifier"]}
    assert _desired(aws) == 0 and _task_states(aws) == ["STOPPED", "STOPPED"]
    assert "snapshot mlflow-upgrade-3-16-1-to-3-17-2-" in said and "from 2 to 0 tasks" in said
    # The order: snapshot made, waited for until available, only then the service scaled to 0,
    # and the function returned only after polls that saw the tasks drain and stop.
    names = [name for name, _ in aws.calls]
    create, scale = names.index("create_db_cluster_snapshot"), names.index("update_service")
    assert create < names.index("sleep") < scale
    assert names[scale - 1] == "describe_db_cluster_snapshots"
    assert aws.calls[scale][1] == {"cluster": aws.cluster, "service": aws.service, "desiredCount": 0}
    assert names[scale + 1 :].count("sleep") == 2  # draining, then stopped


def test_tasks_still_draining_keep_the_function_waiting(aws: SimpleNamespace) -> None:
    aws.state.tasks_stop = False  # ECS never gets them past DEACTIVATING
    clock = _clock(aws, 60)
    with pytest.raises(gate.UpgradeGateError) as failure:
        _stop(aws, _event(aws, "stop", "3.16.1", "3.17.2"), clock)
    (snapshot,) = _snapshots(aws)
    assert str(failure.value) == (
        f"2 task(s) of MLflow 3.16.1 still running after scaling {aws.service.rsplit('/', 1)[-1]} to 0; "
        f"snapshot {snapshot['DBClusterSnapshotIdentifier']} is available"
    )
    assert _task_states(aws) == ["DEACTIVATING", "DEACTIVATING"]


@pytest.mark.parametrize("status", ["failed", "creating"])
def test_a_snapshot_that_fails_or_does_not_finish_leaves_the_old_tasks_running(
    aws: SimpleNamespace, status: str
) -> None:
    aws.state.snapshot_ends_as = status
    with pytest.raises(gate.UpgradeGateError, match=rf"snapshot mlflow-upgrade-\S+ is (still )?{status}; the old "):
        _stop(aws, _event(aws, "stop", "3.16.1", "3.17.2"), _clock(aws, 60))
    assert "update_service" not in [name for name, _ in aws.calls]
    assert _desired(aws) == 2 and _task_states(aws) == ["RUNNING", "RUNNING"]


def test_a_missing_database_fails_before_anything_stops(aws: SimpleNamespace) -> None:
    with pytest.raises(ClientError, match="DBClusterNotFound"):
        _stop(aws, _event(aws, "stop", "3.16.1", "3.17.2", DatabaseCluster="no-such-cluster"))
    assert _desired(aws) == 2 and _task_states(aws) == ["RUNNING", "RUNNING"]


@pytest.mark.parametrize("step", ["stop", "resume"])
def test_updates_sent_while_the_stack_rolls_back_leave_the_service_alone(aws: SimpleNamespace, step: str) -> None:
    aws.set_stack_status("UPDATE_ROLLBACK_IN_PROGRESS")
    event = _event(aws, step, "3.17.2", "3.16.1", ServiceArn=aws.service, DesiredCountBefore="5")
    said = _stop(aws, event)[0] if step == "stop" else gate.resume(event, aws.ecs, aws.cloudformation, _clock(aws))
    assert "UPDATE_ROLLBACK_IN_PROGRESS" in said
    assert _snapshots(aws) == [] and _desired(aws) == 2


def test_resume_brings_back_the_count_autoscaling_had_reached(aws: SimpleNamespace) -> None:
    aws.raw_ecs.update_service(cluster=aws.cluster, service=aws.service, desiredCount=3)  # autoscaled
    _, data = _stop(aws, _event(aws, "stop", "3.16.1", "3.17.2"))
    aws.raw_ecs.update_service(cluster=aws.cluster, service=aws.service, desiredCount=2)  # the template's count
    event = _event(aws, "resume", "3.16.1", "3.17.2", ServiceArn=aws.service, **data)
    said = gate.resume(event, aws.ecs, aws.cloudformation, _clock(aws))
    assert _desired(aws) == 3
    assert said.endswith("runs 3 task(s), stable")


def test_resume_with_the_same_version_touches_nothing(aws: SimpleNamespace) -> None:
    event = _event(aws, "resume", "3.17.2", "3.17.2", ServiceArn=aws.service, DesiredCountBefore="5")
    assert "nothing to resume" in gate.resume(event, aws.ecs, aws.cloudformation, _clock(aws))
    assert aws.calls == [] and _desired(aws) == 2


@pytest.fixture
def response_url() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with response_url_server() as served:
        yield served


def _context() -> SimpleNamespace:
    return SimpleNamespace(get_remaining_time_in_millis=lambda: 120_000)


def test_the_handler_answers_with_the_count_before(aws: SimpleNamespace, response_url: tuple) -> None:
    url, received = response_url
    for task in aws.ecs_backend.tasks[aws.cluster].values():  # already stopped: no poll needed
        task.desired_status = task.last_status = "STOPPED"
    aws.state.snapshot_starts_as = "available"
    gate.handler(_event(aws, "stop", "3.16.1", "3.17.2") | {"ResponseURL": url}, _context())
    (answer,) = received
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["Data"]["DesiredCountBefore"] == "2" and answer["Data"]["Snapshot"].startswith("mlflow-upgrade-")
    assert (answer["StackId"], answer["RequestId"], answer["PhysicalResourceId"]) == (
        aws.stack_id, "request-1", "UpgradeGateStop-gate",
    )  # fmt: skip
    assert _desired(aws) == 0


def test_the_handler_answers_a_failure_with_its_reason(aws: SimpleNamespace, response_url: tuple) -> None:
    url, received = response_url
    event = _event(aws, "stop", "3.16.1", "3.17.2", DatabaseCluster="no-such-cluster") | {"ResponseURL": url}
    gate.handler(event, _context())
    (answer,) = received
    assert answer["Status"] == "FAILED"
    assert answer["Reason"].startswith("DBClusterNotFoundFault: ") and "no-such-cluster" in answer["Reason"]
    assert _desired(aws) == 2 and _task_states(aws) == ["RUNNING", "RUNNING"]
