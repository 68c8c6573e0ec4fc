"""The roles SageMaker workloads run as: one per profile for training jobs and for model serving.

The Studio execution role passes its profile's; it is never passed itself. Code a
user chose runs as them (the training script, a model's own code), so each reaches
only its profile's keys: a training job holds at most its user's MLflow login and
its profile's job code and output; a model-serving container holds no MLflow login,
cannot write MLflow's artifacts and reads only its profile's model data.
"""

from aws_cdk import ArnFormat, Stack, Tags
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks import names
from stacks.components.mlflow_lookup import mlflow_lookup_statements

_ECR_PULL_ACTIONS = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
# SageMaker's scikit-learn framework images live in AWS-owned accounts per region.
FRAMEWORK_REPOSITORIES = ["sagemaker-scikit-learn"]


def log_group_arn(scope: Construct, group: str) -> str:
    """A log group's ARN (a wildcard in `group` also covers its streams)."""
    return Stack.of(scope).format_arn(
        service="logs", resource="log-group", resource_name=group, arn_format=ArnFormat.COLON_RESOURCE_NAME
    )


def others_training_logs(scope: Construct, other_name_prefixes: list[str]) -> list[str]:
    """The log streams of other profiles' training jobs (a job's streams start with its name)."""
    return [log_group_arn(scope, f"{names.TRAINING_LOG_GROUP}:log-stream:{prefix}*") for prefix in other_name_prefixes]


def _sagemaker_role(scope: Construct, construct_id: str, description: str, policy: iam.IManagedPolicy) -> iam.Role:
    return iam.Role(
        scope,
        construct_id,
        assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
        description=description,
        managed_policies=[policy],
    )


def _runtime_statements(scope: Construct, log_group: str, repositories: list[str]) -> list[iam.PolicyStatement]:
    """Pull the container image, write the workload's logs and metrics."""
    return [
        iam.PolicyStatement(sid="PullImages", actions=_ECR_PULL_ACTIONS, resources=repositories),
        iam.PolicyStatement(
            sid="RegistryLogin",
            # No resource-level permissions for this action.
            actions=["ecr:GetAuthorizationToken"],
            resources=["*"],
        ),
        iam.PolicyStatement(
            sid="WriteLogs",
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[log_group_arn(scope, log_group)],
        ),
        iam.PolicyStatement(
            sid="WriteMetrics",
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
        ),
    ]


class TrainingRole(Construct):
    """What one profile's training jobs run as: that user's MLflow login, job code and output, logs.

    Tagged with the login's secret name (``mlflow:credentials-secret``), which
    the training script finds through its own role (`lab/source_dir/mlflow_setup.py`).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        profile: str,
        credentials_secret_arn: str | None,
        credentials_secret_name: str,
        storage_policy: iam.IManagedPolicy,
        output_stack_names: list[str],
        other_name_prefixes: list[str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = _sagemaker_role(
            self, "Role", f"SageMaker training jobs of Studio profile {profile}: MLflow as that user", storage_policy
        )
        Tags.of(self.role).add(names.ROLE_TAG_CREDENTIALS_SECRET, credentials_secret_name)
        statements = [
            *mlflow_lookup_statements(
                self,
                credentials_secret_arn=credentials_secret_arn,
                own_role_arn=self.role.role_arn,
                output_stack_names=output_stack_names,
            ),
            *_runtime_statements(
                self,
                f"{names.TRAINING_LOG_GROUP}*",
                [
                    Stack.of(self).format_arn(
                        service="ecr",
                        resource="repository",
                        resource_name=repo,
                        account="*",
                        arn_format=ArnFormat.SLASH_RESOURCE_NAME,
                    )
                    for repo in FRAMEWORK_REPOSITORIES
                ],
            ),
        ]
        # Training code runs as this role: it adds no lines to another profile's job logs.
        others = others_training_logs(self, other_name_prefixes)
        denied = [
            iam.PolicyStatement(sid="NoOtherJobsLogs", effect=iam.Effect.DENY, actions=["logs:*"], resources=others)
        ]
        self.policy = iam.Policy(self, "Policy", statements=[*statements, *(denied if others else [])])
        self.policy.attach_to_role(self.role)
        self.wildcard_resources = wildcard_resources(statements)


class ServingRole(Construct):
    """What SageMaker models and endpoints run as: no MLflow login at all.

    One per profile for the notebook's endpoints, whose ``storage_policy`` reads that profile's
    model data only (a model's own code runs as this role); the stack's own one for the
    registry's endpoints, which read their copies (``model_deployment``). Each writes the
    logs of the endpoints named ``endpoint_names`` (an IAM wildcard) only.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        description: str,
        storage_policy: iam.IManagedPolicy,
        serving_repository_arn: str,
        endpoint_names: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = _sagemaker_role(self, "Role", description, storage_policy)
        # Only its own endpoints' log groups, so a model's code cannot write into another
        # profile's (or the registry's) endpoint logs.
        statements = _runtime_statements(
            self, f"{names.ENDPOINT_LOG_GROUP_PREFIX}{endpoint_names}", [serving_repository_arn]
        )
        self.policy = iam.Policy(self, "Policy", statements=statements)
        self.policy.attach_to_role(self.role)
        self.wildcard_resources = wildcard_resources(statements)


def wildcard_resources(statements: list[iam.PolicyStatement]) -> list[str]:
    """Name-scoped wildcard resources, each acknowledged on its own (stacks/nag_acknowledgments.py)."""
    return [r for s in statements for r in s.resources if r != "*" and "*" in r]
