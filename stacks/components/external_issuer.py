"""sso mode with the organisation's own OIDC issuer: what the stack needs to know about it."""

from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct


class ExternalIssuer(Construct):
    """The issuer's discovery URL and the secret its administrator's client id and secret are in.

    The secret is created by the user (README, Single sign-on) and only
    imported by name: its value never passes through cdk.json, a template or
    the stack. The MLflow tasks read its JSON fields ``client_id`` and
    ``client_secret`` as ECS secrets.
    """

    def __init__(self, scope: Construct, construct_id: str, *, discovery_url: str, client_secret_name: str) -> None:
        super().__init__(scope, construct_id)
        self.discovery_url = discovery_url
        self.client_secret = secretsmanager.Secret.from_secret_name_v2(self, "ClientSecret", client_secret_name)
