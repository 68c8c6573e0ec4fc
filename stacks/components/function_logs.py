"""Log groups for every Lambda function in a stack, owned by the stack.

A Lambda function writes to ``/aws/lambda/<name>`` by default, a group that
Lambda creates on first use and that no stack owns, so it outlives
``cdk destroy`` whatever the removal policy says. The custom-resource
functions aws-cdk-lib adds (the VPC's default security group lock-down, the
buckets' auto-delete in dev) are such functions. Pointing each function at a
log group of the stack (``LoggingConfig.LogGroup``) gives those logs the
project's retention and removal policy.
"""

from aws_cdk import CfnResource, RemovalPolicy, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

FUNCTION_TYPE = "AWS::Lambda::Function"


def own_function_log_groups(
    stack: Stack, *, retention: logs.RetentionDays, removal_policy: RemovalPolicy
) -> list[logs.LogGroup]:
    """Give every function of ``stack`` that has no log group of its own one; returns the new groups."""
    functions = [
        construct
        for construct in stack.node.find_all()
        if isinstance(construct, CfnResource) and construct.cfn_resource_type == FUNCTION_TYPE
    ]
    created = []
    for function in functions:
        if isinstance(function, lambda_.CfnFunction) and function.logging_config is not None:
            continue  # an L2 function given log_group=... (ours pass one)
        scope = function.node.scope
        assert isinstance(scope, Construct)
        group = logs.LogGroup(scope, f"{function.node.id}Logs", retention=retention, removal_policy=removal_policy)
        # The Ref also orders creation: the group exists before the function runs.
        function.add_property_override("LoggingConfig.LogGroup", group.log_group_name)
        created.append(group)
    return created
