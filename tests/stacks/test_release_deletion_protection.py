"""The custom resource that lets `cdk destroy` delete the protected Aurora cluster (moto's RDS and CloudFormation).

The cluster must stay protected in every situation but one: CloudFormation
deleting the whole stack (or rolling back its first creation). Then the
cluster must become deletable, so CloudFormation can delete it with its
final snapshot.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from stacks import names
from stacks.functions.release_deletion_protection import index as release
from tests.fake_aws import use_fake_aws
from tests.stacks.cloudformation_response import response_url_server

REGION = "eu-west-1"
STACK_TEMPLATE = json.dumps({"Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}}})


CLUSTER = "mlflowvpcstack-databasecluster5b53a178-x1y2z3"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """moto with a protected cluster and its stack; ``set_stack_status`` moves the stack along."""
    # Here, not at the top: moto's CloudFormation models take seconds to import, which every
    # worker collecting this module would pay.
    from moto.cloudformation.models import cloudformation_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    use_fake_aws(monkeypatch, REGION)
    with mock_aws():
        rds = boto3.client("rds", region_name=REGION)
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        rds.create_db_cluster(
            DBClusterIdentifier=CLUSTER,
            Engine="aurora-postgresql",
            MasterUsername="mlflow_admin",
            MasterUserPassword="not-a-real-password-1",
            DeletionProtection=True,
        )
        stack_id = cloudformation.create_stack(StackName=names.VPC_STACK, TemplateBody=STACK_TEMPLATE)["StackId"]
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"]
            for i, zone in enumerate("ab")
        ]
        elbv2 = boto3.client("elbv2", region_name=REGION)
        load_balancer = elbv2.create_load_balancer(
            Name="mlflow-alb", Subnets=[s["SubnetId"] for s in subnets], Scheme="internal"
        )["LoadBalancers"][0]["LoadBalancerArn"]
        elbv2.modify_load_balancer_attributes(
            LoadBalancerArn=load_balancer, Attributes=[{"Key": "deletion_protection.enabled", "Value": "true"}]
        )

        def set_stack_status(status: str) -> None:
            # What CloudFormation's own state machine does while it works on the stack.
            cloudformation_backends[DEFAULT_ACCOUNT_ID][REGION].stacks[stack_id].status = status

        yield SimpleNamespace(
            rds=rds, cloudformation=cloudformation, stack_id=stack_id, set_stack_status=set_stack_status,
            elbv2=elbv2, load_balancer=load_balancer,
        )  # fmt: skip


def _event(aws: SimpleNamespace, request_type: str, response_url: str = "http://127.0.0.1:9/unused") -> dict[str, Any]:
    event = {
        "RequestType": request_type,
        "StackId": aws.stack_id,
        "RequestId": "request-1",
        "LogicalResourceId": "DatabaseProtectionRelease",
        "ResponseURL": response_url,
        "ResourceType": "Custom::ReleaseDeletionProtection",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:...", "ClusterIdentifier": CLUSTER},
    }
    if request_type != "Create":
        event["PhysicalResourceId"] = CLUSTER
    return event


def _alb_protected(aws: SimpleNamespace) -> bool:
    attributes = aws.elbv2.describe_load_balancer_attributes(LoadBalancerArn=aws.load_balancer)["Attributes"]
    return {"Key": "deletion_protection.enabled", "Value": "true"} in attributes


def _with_load_balancer(event: dict[str, Any], aws: SimpleNamespace) -> dict[str, Any]:
    event["ResourceProperties"]["LoadBalancerArn"] = aws.load_balancer
    return event


@pytest.mark.parametrize(
    ("status", "released"),
    [("DELETE_IN_PROGRESS", True), ("ROLLBACK_IN_PROGRESS", True), ("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", False)],
)
def test_the_load_balancer_is_released_with_the_cluster(aws: SimpleNamespace, status: str, released: bool) -> None:
    aws.set_stack_status(status)
    event = _with_load_balancer(_event(aws, "Delete"), aws)
    said = release.release_if_stack_deleted(event, aws.rds, aws.cloudformation, aws.elbv2)
    assert aws.load_balancer in said
    assert _alb_protected(aws) is not released and _protected(aws) is not released


def _protected(aws: SimpleNamespace) -> bool:
    return aws.rds.describe_db_clusters(DBClusterIdentifier=CLUSTER)["DBClusters"][0]["DeletionProtection"]


def _delete_with_final_snapshot(aws: SimpleNamespace) -> None:
    """What CloudFormation does for DeletionPolicy: Snapshot."""
    aws.rds.delete_db_cluster(DBClusterIdentifier=CLUSTER, SkipFinalSnapshot=False, FinalDBSnapshotIdentifier="final")


@pytest.mark.parametrize("status", ["DELETE_IN_PROGRESS", "ROLLBACK_IN_PROGRESS"])
def test_stack_deletion_releases_the_cluster_which_then_goes_with_a_final_snapshot(
    aws: SimpleNamespace, status: str
) -> None:
    with pytest.raises(ClientError, match="protect"):
        _delete_with_final_snapshot(aws)  # without the release, the stack deletion fails here
    aws.set_stack_status(status)
    said = release.release_if_stack_deleted(_event(aws, "Delete"), aws.rds, aws.cloudformation)
    assert "is off" in said
    assert not _protected(aws)
    _delete_with_final_snapshot(aws)
    snapshots = aws.rds.describe_db_cluster_snapshots(DBClusterIdentifier=CLUSTER, SnapshotType="manual")
    assert [s["DBClusterSnapshotIdentifier"] for s in snapshots["DBClusterSnapshots"]] == ["final"]


@pytest.mark.parametrize(
    "status",
    [
        "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",  # the resource was removed from the template
        "UPDATE_ROLLBACK_IN_PROGRESS",  # an update that added it failed: the cluster is the old one
        "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
        "UPDATE_IN_PROGRESS",
    ],
)
def test_a_delete_outside_stack_deletion_keeps_the_protection(aws: SimpleNamespace, status: str) -> None:
    aws.set_stack_status(status)
    said = release.release_if_stack_deleted(_event(aws, "Delete"), aws.rds, aws.cloudformation)
    assert "stays protected" in said and status in said
    assert _protected(aws)
    with pytest.raises(ClientError, match="protect"):
        _delete_with_final_snapshot(aws)


@pytest.mark.parametrize("request_type", ["Create", "Update"])
def test_create_and_update_change_nothing(aws: SimpleNamespace, request_type: str) -> None:
    aws.set_stack_status("DELETE_IN_PROGRESS")  # even then: only a Delete releases
    release.release_if_stack_deleted(_event(aws, request_type), aws.rds, aws.cloudformation)
    assert _protected(aws)


@pytest.fixture
def response_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    # CloudFormation provides `cfnresponse` to inline Python functions; tests use AWS's
    # published copy of the same module (PyPI cfnresponse).
    import cfnresponse

    monkeypatch.setitem(sys.modules, "cfnresponse", cfnresponse)
    with response_url_server() as served:
        yield served


def test_handler_answers_cloudformation_with_success(aws: SimpleNamespace, response_url: tuple) -> None:
    url, received = response_url
    aws.set_stack_status("DELETE_IN_PROGRESS")
    release.handler(_with_load_balancer(_event(aws, "Delete", url), aws), SimpleNamespace(log_stream_name="stream"))
    assert not _protected(aws) and not _alb_protected(aws)
    (answer,) = received
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == CLUSTER
    assert (answer["StackId"], answer["RequestId"]) == (aws.stack_id, "request-1")


def test_handler_answers_cloudformation_with_the_failure(aws: SimpleNamespace, response_url: tuple) -> None:
    url, received = response_url
    aws.set_stack_status("DELETE_IN_PROGRESS")
    event = _event(aws, "Delete", url)
    event["StackId"] = aws.stack_id.replace(names.VPC_STACK, "NoSuchStack")
    release.handler(event, SimpleNamespace(log_stream_name="stream"))
    (answer,) = received
    assert answer["Status"] == "FAILED"
    assert "does not exist" in answer["Reason"] or "ValidationError" in answer["Reason"]
    assert _protected(aws)
