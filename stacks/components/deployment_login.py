"""The model deployment functions' MLflow login in a mode where the server login signs in nowhere (sso)."""

from aws_cdk import RemovalPolicy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks import names
from stacks.components.login_secret import login_secret_value


class DeploymentLogin(Construct):
    """A JSON secret ``{"username", "password"}`` the MLflow tasks fill and the deployment functions read.

    In sso mode mlflow-oidc-auth takes HTTP basic only from an internal service account
    with an access token it issued itself. The entrypoint makes ``username`` such an account
    (an admin: only admins manage webhooks) and writes the token it issues over the generated
    password, which never signs in (docker/mlflow/entrypoint.py, ensure_deployment_login). The
    template holds neither; the worker and the webhook registrar read the secret at run time,
    as they read the server login in the other modes.
    """

    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            description="MLflow login of the model deployment functions (sso mode): a token the tasks issue",
            # A placeholder: the tasks write the token they issue over it (it never signs in).
            generate_secret_string=login_secret_value(names.DEPLOYMENT_LOGIN_USERNAME, password_length=48),
            removal_policy=removal_policy,
        )
