"""The server's own login, generated into Secrets Manager: the shared user or MLflow's admin."""

from aws_cdk import RemovalPolicy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks import names
from stacks.auth_modes import MODES, AuthMode
from stacks.components.login_secret import login_secret_value

USERNAME = names.SERVER_USERNAME


def description(mode: AuthMode) -> str:
    """What the secret is to the chosen mode."""
    needs = MODES[mode]
    if needs.admin_login:
        return f"Admin user of MLflow's auth app ({mode} mode)"
    if needs.nginx_basic_auth:
        return "Basic-auth user for the MLflow tracking server (nginx in front of MLflow)"
    users = " and ".join(other for other, row in MODES.items() if row.uses_credentials)
    return f"MLflow login of the {users} modes, unused in {mode} mode (kept for a switch back)"


class ServerCredentials(Construct):
    """A JSON secret ``{"username", "password"}`` that nobody ever types into a template.

    CloudFormation generates the password; the ECS task reads it at start
    through ECS secrets. In ``shared`` mode nginx checks it and Studio users
    read it with their execution role; in ``accounts`` mode it is MLflow's
    admin, read only by the tasks and the account provisioner; in ``sso``
    mode nothing reads it (people and code sign in with the OIDC provider).
    The value stays the same when the mode changes, so a deployment can switch.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        secret_name: str,
        auth_mode: AuthMode,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            secret_name=secret_name,
            description=description(auth_mode),
            generate_secret_string=login_secret_value(USERNAME),
            removal_policy=removal_policy,
        )
        self.secret_name = secret_name
