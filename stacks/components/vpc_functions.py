"""What a Lambda function in the project VPC that calls MLflow starts from: its role and security group."""

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.components.internal_mlflow import InternalMlflow
from stacks.components.lambda_logs import write_own_logs
from stacks.components.security_groups import closed_security_group

# What Lambda does with the function's network interfaces in the VPC.
VPC_INTERFACE_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
]


def vpc_function_role(
    scope: Construct,
    construct_id: str,
    *,
    description: str,
    policy_name: str,
    log_group: logs.ILogGroup,
    statements: list[iam.PolicyStatement],
) -> iam.Role:
    """A Lambda role with its logs, its network interfaces and ``statements``, all in one inline policy.

    Inline, so the function is created only once its role may manage its network interfaces.
    """
    return iam.Role(
        scope,
        construct_id,
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=description,
        inline_policies={
            policy_name: iam.PolicyDocument(
                statements=[
                    write_own_logs(log_group, sid="WriteOwnLogs"),
                    iam.PolicyStatement(
                        sid="ManageVpcNetworkInterfaces", actions=VPC_INTERFACE_ACTIONS, resources=["*"]
                    ),
                    *statements,
                ]
            )
        },
    )


def mlflow_client_security_group(
    scope: Construct,
    construct_id: str,
    *,
    mlflow: InternalMlflow,
    description: str,
    rule_description: str,
) -> ec2.SecurityGroup:
    """Egress to the MLflow ALB (with the matching ingress on the ALB's group) and HTTPS to AWS APIs."""
    group = closed_security_group(scope, construct_id, vpc=mlflow.vpc, description=description)
    group.connections.allow_to(mlflow.load_balancer, ec2.Port.tcp(mlflow.port), rule_description)
    # AWS APIs (Secrets Manager, SageMaker, ...) through the NAT gateway.
    group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS APIs")
    return group
