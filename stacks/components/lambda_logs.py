"""The one permission every deploy-time Lambda role here starts from: writing to its own log group.

Our roles carry no AWS managed policy (its log permissions cover every log
group in the account); each function logs to a group the stack creates.
"""

from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct


def write_own_logs(log_group: logs.ILogGroup, *, sid: str | None = None) -> iam.PolicyStatement:
    """Create streams and put events in ``log_group`` only."""
    return iam.PolicyStatement(
        sid=sid, actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
    )


def lambda_role_logging_to(
    scope: Construct, construct_id: str, *, log_group: logs.ILogGroup, description: str
) -> iam.Role:
    """A Lambda role whose only permission is its inline ``Logs`` policy on ``log_group``."""
    return iam.Role(
        scope,
        construct_id,
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=description,
        inline_policies={"Logs": iam.PolicyDocument(statements=[write_own_logs(log_group)])},
    )


def provider_invoking(
    scope: Construct, *, function: lambda_.IFunction, log_group: logs.ILogGroup, description: str
) -> tuple[cr.Provider, iam.Role]:
    """A custom resource Provider (``Provider``) for ``function`` whose framework role (``ProviderRole``) only logs.

    The Provider adds the permission to invoke ``function`` itself.
    """
    role = lambda_role_logging_to(scope, "ProviderRole", log_group=log_group, description=description)
    provider = cr.Provider(
        scope, "Provider", on_event_handler=function, framework_on_event_role=role, log_group=log_group
    )
    return provider, role
