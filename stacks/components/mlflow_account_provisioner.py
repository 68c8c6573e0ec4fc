"""The Lambda that creates and deletes MLflow users for the Studio profiles (accounts mode).

It runs in the private subnets and talks to MLflow through the internal ALB
with the admin login it reads from Secrets Manager, so the admin credential
never leaves AWS: CloudFormation only ever sees a user name and a secret ARN.
"""

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.components.function_code import asset_code
from stacks.components.internal_mlflow import InternalMlflow
from stacks.components.lambda_logs import provider_invoking
from stacks.components.vpc_functions import mlflow_client_security_group, vpc_function_role

# What CloudFormation calls the resources this provider serves.
RESOURCE_TYPE = "Custom::MlflowAccount"


class MlflowAccountProvisioner(Construct):
    """Function ``index.on_event`` (ResourceProperties Username, UserSecretArn) behind a CDK Provider.

    Environment: ``ADMIN_SECRET_ARN`` (the server credentials secret, MLflow's
    admin in accounts mode) and ``MLFLOW_URL`` (the internal ALB, its listener's
    scheme and default port). With a custom domain the listener is HTTPS on a
    certificate for that domain, not for the ALB's DNS name: then
    ``MLFLOW_TLS_SERVER_NAME`` holds the name to send as SNI and to verify the
    certificate against. Each user secret it may read is granted with
    :meth:`allow_reading`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        mlflow: InternalMlflow,
        admin_secret: secretsmanager.ISecret,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)

        self.security_group = mlflow_client_security_group(
            self,
            "SecurityGroup",
            mlflow=mlflow,
            description="MLflow account provisioner: the MLflow ALB and AWS APIs",
            rule_description="Account provisioner to the MLflow ALB",
        )

        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=removal_policy)
        self.role = vpc_function_role(
            self,
            "Role",
            description="MLflow account provisioner: admin login, the profiles' secrets, its logs, its VPC ENIs",
            policy_name="Provisioner",
            log_group=self.log_group,
            statements=[
                iam.PolicyStatement(
                    sid="ReadAdminLogin",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[admin_secret.secret_arn],
                ),
            ],
        )

        self.function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="index.on_event",
            code=asset_code("mlflow_accounts"),
            description="Creates, updates and deletes the MLflow user of a SageMaker Studio profile",
            role=self.role,
            vpc=mlflow.vpc,
            vpc_subnets=mlflow.subnets,
            security_groups=[self.security_group],
            environment={
                "ADMIN_SECRET_ARN": admin_secret.secret_arn,
                **mlflow.client_environment(),
            },
            # Long enough to wait out an MLflow task restart behind the ALB.
            timeout=Duration.minutes(3),
            memory_size=256,
            log_group=self.log_group,
        )

        self.provider_log_group = logs.LogGroup(
            self, "ProviderLogs", retention=log_retention, removal_policy=removal_policy
        )
        # The CDK framework function only invokes ours (the Provider adds that permission).
        self.provider, self.provider_role = provider_invoking(
            self,
            function=self.function,
            log_group=self.provider_log_group,
            description="CloudFormation custom resource framework for MLflow accounts: invoke the provisioner",
        )
        self.service_token = self.provider.service_token

        self._user_logins: iam.PolicyStatement | None = None

    def allow_reading(self, secret: secretsmanager.ISecret) -> None:
        """The function sets the user's password from this secret (one statement for all of them)."""
        if self._user_logins is None:
            self._user_logins = iam.PolicyStatement(sid="ReadUserLogins", actions=["secretsmanager:GetSecretValue"])
            self.role.add_to_policy(self._user_logins)
        self._user_logins.add_resources(secret.secret_arn)
