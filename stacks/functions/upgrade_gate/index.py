"""CloudFormation custom resource: no two MLflow versions write to the database at once.

MLflow 3.17 supports a schema upgrade only with every writer of the old
version stopped and a restorable backup taken; a rolling update (new tasks
migrating while old ones serve) is unsupported. Two resources of type
``Custom::MlflowUpgradeGate`` share this function; ResourceProperties ``Step``
says which one an event is for:

``stop``
    The ECS service depends on it. When ``MlflowVersion`` changes: snapshot
    the Aurora cluster and wait until the snapshot is available, then set the
    service's desired count to 0 and wait until none of its tasks runs. Only
    then does CloudFormation update the service, whose template DesiredCount
    starts the new version's tasks; the first one migrates the schema (under
    the entrypoint's advisory lock) before any serves.
``resume``
    Depends on the service. When ``MlflowVersion`` changes: bring the desired
    count back up to what it was before ``stop`` (autoscaling may have raised
    it above the template's count) and wait until the service is stable.

An unchanged version does nothing, so every other deploy stays a rolling
update. Create and Delete do nothing: on Create the version already running,
if any, is unknown (README, "Upgrading MLflow"). Updates that CloudFormation
sends while rolling a stack back do nothing either: stopping tasks then could
only leave the service at 0; recovering from a failed migration is a restore
of the snapshot.

Standard library and boto3 only (what the Lambda runtime has). Every event is
answered, a failure with one line that says what was and was not done.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

SNAPSHOT_PREFIX = "mlflow-upgrade"
POLL_SECONDS = 10.0
# Kept back from the Lambda's own timeout, so a wait that runs out is still answered.
ANSWER_MARGIN_SECONDS = 30.0
SNAPSHOT_FAILED = ("failed", "deleted", "incompatible-restore")


class UpgradeGateError(Exception):
    """One line for CloudFormation's event log."""


class Clock:
    """Sleep and time for the waits; tests pass one that moves the fake AWS along."""

    def __init__(
        self,
        deadline_seconds: float,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.now, self.sleep = now, sleep
        self.deadline = now() + deadline_seconds

    def left(self) -> float:
        return self.deadline - self.now()


def snapshot_identifier(old_version: str, new_version: str, now: datetime) -> str:
    """A valid, unique cluster snapshot name that says what the upgrade was."""

    def part(version: str) -> str:
        return re.sub(r"[^a-z0-9]+", "-", version.lower()).strip("-")

    return f"{SNAPSHOT_PREFIX}-{part(old_version)}-to-{part(new_version)}-{now:%Y%m%d%H%M%S}"


def _version_change(event: dict[str, Any]) -> tuple[str, str] | None:
    if event["RequestType"] != "Update":
        return None
    old = event.get("OldResourceProperties", {}).get("MlflowVersion", "")
    new = event["ResourceProperties"]["MlflowVersion"]
    return (old, new) if old != new else None


def _rolling_back(event: dict[str, Any], cloudformation: Any) -> str | None:
    status = cloudformation.describe_stacks(StackName=event["StackId"])["Stacks"][0]["StackStatus"]
    return status if "ROLLBACK" in status else None


def _service(ecs: Any, cluster: str, service: str) -> dict[str, Any]:
    found = ecs.describe_services(cluster=cluster, services=[service])["services"]
    if not found or found[0].get("status") != "ACTIVE":
        raise UpgradeGateError(f"ECS service {service} is not active in cluster {cluster}")
    return found[0]


def _tasks_not_stopped(ecs: Any, cluster: str, service_name: str) -> list[str]:
    """Tasks of the service whose containers may still run (also those told to stop, still draining)."""
    arns: list[str] = []
    paginator = ecs.get_paginator("list_tasks")
    for desired in ("RUNNING", "STOPPED"):
        for page in paginator.paginate(cluster=cluster, serviceName=service_name, desiredStatus=desired):
            arns += page["taskArns"]
    left = []
    for start in range(0, len(arns), 100):
        for task in ecs.describe_tasks(cluster=cluster, tasks=arns[start : start + 100])["tasks"]:
            if task["lastStatus"] != "STOPPED":
                left.append(task["taskArn"])
    return left


def _wait_for_snapshot(rds: Any, identifier: str, clock: Clock) -> None:
    while True:
        snapshots = rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=identifier)["DBClusterSnapshots"]
        status = snapshots[0]["Status"] if snapshots else "missing"
        if status == "available":
            return
        if status in SNAPSHOT_FAILED or status == "missing":
            raise UpgradeGateError(f"snapshot {identifier} is {status}; the old MLflow tasks were left running")
        if clock.left() < POLL_SECONDS:
            raise UpgradeGateError(
                f"snapshot {identifier} is still {status}; the old MLflow tasks were left running. "
                "Deploy again once it is available"
            )
        clock.sleep(POLL_SECONDS)


def stop_old_writers(event: dict[str, Any], rds: Any, ecs: Any, cloudformation: Any, clock: Clock) -> tuple[str, dict]:
    """Step ``stop``: snapshot, then no task of the old version; returns (what was done, Data)."""
    # Every answer carries both attributes (the resume step reads one); 0 means "keep the count".
    nothing = {"DesiredCountBefore": "0", "Snapshot": ""}
    change = _version_change(event)
    if change is None:
        return f"{event['RequestType']}: MLflow version unchanged, nothing to stop (rolling update)", nothing
    if status := _rolling_back(event, cloudformation):
        return f"stack is {status}: left the service as it is (restore the snapshot to undo a migration)", nothing
    old, new = change
    props = event["ResourceProperties"]
    cluster, ecs_cluster = props["DatabaseCluster"], props["EcsCluster"]
    service_arn = cloudformation.describe_stack_resource(
        StackName=event["StackId"], LogicalResourceId=props["ServiceLogicalId"]
    )["StackResourceDetail"]["PhysicalResourceId"]
    desired = _service(ecs, ecs_cluster, service_arn)["desiredCount"]

    identifier = snapshot_identifier(old, new, datetime.now(UTC))
    rds.create_db_cluster_snapshot(DBClusterIdentifier=cluster, DBClusterSnapshotIdentifier=identifier)
    _wait_for_snapshot(rds, identifier, clock)
    print(f"snapshot {identifier} of {cluster} is available")

    ecs.update_service(cluster=ecs_cluster, service=service_arn, desiredCount=0)
    service_name = service_arn.rsplit("/", 1)[-1]
    while left := _tasks_not_stopped(ecs, ecs_cluster, service_name):
        if clock.left() < POLL_SECONDS:
            raise UpgradeGateError(
                f"{len(left)} task(s) of MLflow {old} still running after scaling {service_name} to 0; "
                f"snapshot {identifier} is available"
            )
        clock.sleep(POLL_SECONDS)
    said = (
        f"MLflow {old} -> {new}: snapshot {identifier} available, then {service_name} scaled "
        f"from {desired} to 0 tasks and none runs"
    )
    return said, {"DesiredCountBefore": str(desired), "Snapshot": identifier}


def resume(event: dict[str, Any], ecs: Any, cloudformation: Any, clock: Clock) -> str:
    """Step ``resume``: the count from before ``stop`` (if higher), then a stable service."""
    change = _version_change(event)
    if change is None:
        return f"{event['RequestType']}: MLflow version unchanged, nothing to resume"
    if status := _rolling_back(event, cloudformation):
        return f"stack is {status}: left the service as it is"
    props = event["ResourceProperties"]
    ecs_cluster, service_arn = props["EcsCluster"], props["ServiceArn"]
    current = _service(ecs, ecs_cluster, service_arn)["desiredCount"]
    target = max(int(props.get("DesiredCountBefore") or 0), current)
    if target != current:
        ecs.update_service(cluster=ecs_cluster, service=service_arn, desiredCount=target)
    while True:
        service = _service(ecs, ecs_cluster, service_arn)
        if len(service["deployments"]) == 1 and service["runningCount"] == target:
            return f"MLflow {change[1]}: {service_arn.rsplit('/', 1)[-1]} runs {target} task(s), stable"
        if clock.left() < POLL_SECONDS:
            raise UpgradeGateError(
                f"{service_arn.rsplit('/', 1)[-1]} runs {service['runningCount']} of {target} task(s) "
                f"in {len(service['deployments'])} deployment(s), not stable yet"
            )
        clock.sleep(POLL_SECONDS)


def answer(event: dict[str, Any], status: str, reason: str, data: dict[str, str]) -> None:
    """PUT the result to CloudFormation's presigned response URL."""
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:1000],
            "PhysicalResourceId": event.get("PhysicalResourceId") or f"{event['LogicalResourceId']}-gate",
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": data,
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - CloudFormation's https URL
        event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - CloudFormation's https URL
        response.read()


def handler(event: dict[str, Any], context: Any) -> None:
    """Lambda entry point; always answers CloudFormation, so a stack never hangs on it."""
    import boto3

    clock = Clock(context.get_remaining_time_in_millis() / 1000 - ANSWER_MARGIN_SECONDS)
    cloudformation, ecs = boto3.client("cloudformation"), boto3.client("ecs")
    data: dict[str, str] = {}
    try:
        if event["ResourceProperties"]["Step"] == "stop":
            reason, data = stop_old_writers(event, boto3.client("rds"), ecs, cloudformation, clock)
        else:
            reason = resume(event, ecs, cloudformation, clock)
    except Exception as error:  # noqa: BLE001 - reported to CloudFormation as the failure reason
        print(f"failed: {error!r}")
        answer(event, "FAILED", f"{type(error).__name__}: {error}", data)
        return
    print(reason)
    answer(event, "SUCCESS", reason, data)
