"""What a role needs to find MLflow by itself (lab/source_dir/mlflow_setup.py).

The tracking URL from the stacks' outputs or SSM parameters, the login from
its one secret (none with IAM sign-in), and the name of that secret from its own role's tags.
"""

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks import names


def mlflow_lookup_statements(
    scope: Construct, *, credentials_secret_arn: str | None, own_role_arn: str, output_stack_names: list[str]
) -> list[iam.PolicyStatement]:
    """``credentials_secret_arn`` is None where the role reads no login (IAM sign-in: it signs its requests)."""
    stack = Stack.of(scope)
    login = (
        [
            iam.PolicyStatement(
                sid="ReadMlflowCredentials",
                actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                resources=[credentials_secret_arn],
            )
        ]
        if credentials_secret_arn is not None
        else []
    )
    return [
        *login,
        iam.PolicyStatement(
            sid="ReadStackOutputs",
            actions=["cloudformation:DescribeStacks"],
            resources=[
                stack.format_arn(service="cloudformation", resource="stack", resource_name=f"{name}/*")
                for name in output_stack_names
            ],
        ),
        iam.PolicyStatement(
            sid="ReadMlflowParameters",
            actions=["ssm:GetParameter", "ssm:GetParameters"],
            resources=[
                stack.format_arn(service="ssm", resource="parameter", resource_name=f"{names.SSM_PREFIX.strip('/')}/*")
            ],
        ),
        # The role's tags name its secret and the roles SageMaker workloads get.
        iam.PolicyStatement(sid="ReadOwnRole", actions=["iam:GetRole"], resources=[own_role_arn]),
    ]
