"""A deploy that changes the MLflow version stops the old version's tasks, after a snapshot, before the new ones."""

from aws_cdk import ArnFormat, CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from constructs import Construct

from stacks.components.function_code import asset_code
from stacks.components.lambda_logs import write_own_logs

RESOURCE_TYPE = "Custom::MlflowUpgradeGate"
SNAPSHOT_PREFIX = "mlflow-upgrade"
# Lambda's longest run; the handler answers CloudFormation before it ends.
FUNCTION_TIMEOUT = Duration.minutes(15)
# CloudFormation stops waiting for an answer a little after the function must have given one.
RESOURCE_TIMEOUT = Duration.minutes(16)


class UpgradeGate(Construct):
    """Two custom resources around the ECS service, carrying the MLflow version as a property.

    CloudFormation sends a custom resource an Update only when its properties
    change, so they act only on a deploy that changes the version
    (docker/mlflow/requirements.txt); any other deploy stays a rolling update.
    ``stop`` comes before the service (the service depends on it): it takes a
    snapshot of the Aurora cluster, waits until it is available, sets the
    service's desired count to 0 and waits until no task runs. CloudFormation
    then updates the service; DesiredCount is in the template and
    CloudFormation sends it with every update of the service, so the new
    version's tasks start at the configured count and the first migrates the
    schema. ``resume`` comes after the service and restores the count from
    before, when autoscaling had raised it above the template's, and waits for
    a stable service. The handler is stacks/functions/upgrade_gate/index.py.

    The stop step cannot name the service (the service depends on it): it reads
    the service's ARN from its own stack by logical id, and its ECS permissions
    cover the services of this stack's own ECS cluster, which holds only MLflow's.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        mlflow_version: str,
        database: rds.DatabaseCluster,
        cluster: ecs.ICluster,
        service: ecs.FargateService,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=removal_policy)
        self.snapshot_arns = stack.format_arn(
            service="rds",
            resource="cluster-snapshot",
            resource_name=f"{SNAPSHOT_PREFIX}-*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.service_arns = stack.format_arn(
            service="ecs", resource="service", resource_name=f"{cluster.cluster_name}/*"
        )
        self.task_arns = stack.format_arn(service="ecs", resource="task", resource_name=f"{cluster.cluster_name}/*")
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="MLflow upgrades: snapshot the database, stop and resume the MLflow service",
            inline_policies={
                "UpgradeGate": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            sid="ReadOwnStack",
                            actions=["cloudformation:DescribeStacks", "cloudformation:DescribeStackResource"],
                            resources=[stack.stack_id],
                        ),
                        iam.PolicyStatement(
                            sid="SnapshotTheCluster",
                            actions=["rds:CreateDBClusterSnapshot", "rds:DescribeDBClusterSnapshots"],
                            resources=[database.cluster_arn, self.snapshot_arns],
                        ),
                        iam.PolicyStatement(
                            sid="TagItsSnapshots",
                            # The cluster copies its tags to the snapshots it is asked for.
                            actions=["rds:AddTagsToResource"],
                            resources=[self.snapshot_arns],
                        ),
                        iam.PolicyStatement(
                            sid="ScaleTheService",
                            actions=["ecs:DescribeServices", "ecs:UpdateService"],
                            resources=[self.service_arns],
                        ),
                        iam.PolicyStatement(
                            sid="ReadTheTasks",
                            actions=["ecs:DescribeTasks"],
                            resources=[self.task_arns],
                        ),
                        iam.PolicyStatement(
                            sid="ListTheTasks",
                            # ListTasks names no resource; the condition keeps it to this cluster.
                            actions=["ecs:ListTasks"],
                            resources=["*"],
                            conditions={"ArnEquals": {"ecs:cluster": cluster.cluster_arn}},
                        ),
                        write_own_logs(self.log_group, sid="WriteOwnLogs"),
                    ]
                )
            },
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="index.handler",
            code=asset_code("upgrade_gate"),
            role=self.role,
            log_group=self.log_group,
            timeout=FUNCTION_TIMEOUT,
            description="MLflow: snapshot and stop the old version before a schema upgrade, then resume",
        )
        service_resource = service.node.default_child
        assert isinstance(service_resource, ecs.CfnService)
        self.stop = self._step(
            "Stop",
            mlflow_version=mlflow_version,
            DatabaseCluster=database.cluster_identifier,
            EcsCluster=cluster.cluster_name,
            ServiceLogicalId=stack.get_logical_id(service_resource),
        )
        # The role's policy is in place before the function first runs.
        self.stop.node.add_dependency(self.role)
        service_resource.node.add_dependency(self.stop)
        self.resume = self._step(
            "Resume",
            mlflow_version=mlflow_version,
            EcsCluster=cluster.cluster_name,
            ServiceArn=service.service_arn,
            DesiredCountBefore=self.stop.get_att_string("DesiredCountBefore"),
        )

    def _step(self, construct_id: str, *, mlflow_version: str, **properties: str) -> CustomResource:
        """One step of the gate: the function, told which step (its id in lower case) and the version."""
        return CustomResource(
            self,
            construct_id,
            service_token=self.function.function_arn,
            resource_type=RESOURCE_TYPE,
            service_timeout=RESOURCE_TIMEOUT,
            properties={"Step": construct_id.lower(), "MlflowVersion": mlflow_version, **properties},
        )
