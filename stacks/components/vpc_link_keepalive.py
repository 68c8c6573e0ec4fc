"""A daily request through the HTTP API, so its VPC link never goes INACTIVE.

AWS sets an HTTP API VPC link INACTIVE after 60 days without traffic, and
requests fail while it is brought back (docs/operations.md). A team away for
two months would find MLflow down; one request a day to the open health path
keeps the link in use. The function calls the public URL from outside the VPC,
so the request takes the very path clients take.
"""

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.components.lambda_logs import write_own_logs

HEALTH_PATH = "/elb-status"

HANDLER = """
import os
import urllib.error
import urllib.request


def handler(event, context):
    url = os.environ["HEALTH_URL"]
    try:
        with urllib.request.urlopen(url, timeout=25) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code  # any answer went through the VPC link
    print(f"{url}: {status}")
    return status
"""


class VpcLinkKeepalive(Construct):
    """A function that GETs ``<url>/elb-status`` once a day, on a schedule rule."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        url: str,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=removal_policy)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="MLflow VPC link keepalive: writes its own logs, nothing else",
            inline_policies={
                "Logs": iam.PolicyDocument(statements=[write_own_logs(self.log_group, sid="WriteOwnLogs")])
            },
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="index.handler",
            code=lambda_.Code.from_inline(HANDLER),
            role=self.role,
            log_group=self.log_group,
            timeout=Duration.seconds(30),
            environment={"HEALTH_URL": url.rstrip("/") + HEALTH_PATH},
            description="MLflow: one request a day through the HTTP API keeps its VPC link ACTIVE",
        )
        self.rule = events.Rule(
            self,
            "Daily",
            schedule=events.Schedule.rate(Duration.days(1)),
            targets=[targets.LambdaFunction(self.function, retry_attempts=2)],
        )
