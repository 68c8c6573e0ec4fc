"""Custom resource: turn off the deletion protection of the Aurora cluster and the ALB when their stack is deleted.

With ``removal_policy=retain`` the cluster and the load balancer are
protected from deletion while they live, and CloudFormation deletes them
(the cluster with a final snapshot, DeletionPolicy Snapshot) when the stack
goes. RDS and ELB refuse to delete a protected resource, so this resource,
which depends on both and is therefore deleted just before them, lifts the
protection, but only when the whole stack is being deleted (or its first
creation rolled back). Removing this resource in a stack update, or rolling
an update back, leaves the protection on.

Deployed as inline code: CloudFormation provides the ``cfnresponse`` module
to inline Python functions, and the Lambda runtime provides boto3.
"""

from __future__ import annotations

from typing import Any

# Stack states in which the cluster is about to be deleted on purpose.
RELEASE_WHEN_STACK_IS = ("DELETE_IN_PROGRESS", "ROLLBACK_IN_PROGRESS")


def release_if_stack_deleted(event: dict[str, Any], rds: Any, cloudformation: Any, elbv2: Any = None) -> str:
    """Lift the protection if the stack is going away; return what was done, for the log."""
    cluster = event["ResourceProperties"]["ClusterIdentifier"]
    load_balancer = event["ResourceProperties"].get("LoadBalancerArn")
    protected = f"cluster {cluster}" + (f" and load balancer {load_balancer}" if load_balancer else "")
    if event["RequestType"] != "Delete":
        return f"{event['RequestType']}: nothing to do; {protected} stays protected"
    stack = cloudformation.describe_stacks(StackName=event["StackId"])["Stacks"][0]
    if stack["StackStatus"] not in RELEASE_WHEN_STACK_IS:
        return f"stack is {stack['StackStatus']}, not being deleted: {protected} stays protected"
    rds.modify_db_cluster(DBClusterIdentifier=cluster, DeletionProtection=False, ApplyImmediately=True)
    if load_balancer:
        elbv2.modify_load_balancer_attributes(
            LoadBalancerArn=load_balancer, Attributes=[{"Key": "deletion_protection.enabled", "Value": "false"}]
        )
    return f"stack is {stack['StackStatus']}: deletion protection of {protected} is off"


def handler(event: dict[str, Any], context: Any) -> None:
    """Lambda entry point; always answers CloudFormation, so a stack never hangs on it."""
    import boto3
    import cfnresponse  # type: ignore[import-not-found,unused-ignore]

    physical_id = event.get("PhysicalResourceId") or event["ResourceProperties"]["ClusterIdentifier"]
    try:
        reason = release_if_stack_deleted(
            event, boto3.client("rds"), boto3.client("cloudformation"), boto3.client("elbv2")
        )
    except Exception as error:  # noqa: BLE001 - reported to CloudFormation as the failure reason
        print(f"failed: {error!r}")
        cfnresponse.send(event, context, cfnresponse.FAILED, {}, physical_id, reason=f"{type(error).__name__}: {error}")
        return
    print(reason)
    cfnresponse.send(event, context, cfnresponse.SUCCESS, {}, physical_id, reason=reason)
