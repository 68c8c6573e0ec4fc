"""The basic-auth user nginx checks, generated into Secrets Manager."""

from aws_cdk import RemovalPolicy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

USERNAME = "mlflow"


class ServerCredentials(Construct):
    """A JSON secret ``{"username", "password"}`` that nobody ever types into a template.

    CloudFormation generates the password; the ECS task reads it at start
    through ECS secrets and Studio users read it with their execution role.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        secret_name: str,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            secret_name=secret_name,
            description="Basic-auth user for the MLflow tracking server (nginx in front of MLflow)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=f'{{"username": "{USERNAME}"}}',
                generate_string_key="password",
                password_length=32,
                # Alphanumeric only: the password travels in HTTP basic auth and
                # in shell-friendly env vars; 32 characters keep ~190 bits.
                exclude_punctuation=True,
            ),
            removal_policy=removal_policy,
        )
        self.secret_name = secret_name
