"""The Flask secret key MLflow's auth app signs sessions and CSRF tokens with (accounts mode)."""

from aws_cdk import RemovalPolicy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct


class SessionKey(Construct):
    """A generated random string every task reads, so each accepts what another task issued.

    The Flask secret key by default; also the webhook key (model_deployments), from
    which every task derives the key MLflow encrypts webhook secrets with.

    Deleted with the stack whatever the removal policy: it protects nothing
    but the sessions of running tasks, and a new deployment makes a new one.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        description: str = "Flask secret key of the MLflow auth app, shared by every MLflow task",
    ) -> None:
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            description=description,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64,
                # Alphanumeric: it travels as an environment variable.
                exclude_punctuation=True,
            ),
            removal_policy=RemovalPolicy.DESTROY,
        )
