"""One Studio profile's OAuth client (sso mode): how its notebooks and jobs get a bearer token."""

import json

from aws_cdk import RemovalPolicy, SecretValue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks import names
from stacks.components.cognito_identity import CognitoIdentity

# The JSON fields the lab helper reads (lab/source_dir/mlflow_setup.py).
FIELDS = ("client_id", "client_secret", "token_url", "scope")


class OAuthClientLogin(Construct):
    """A secret ``{"client_id", "client_secret", "token_url", "scope"}`` only the profile's roles may read.

    With ``identity`` (Cognito) the profile gets its own confidential app
    client in the pool (client-credentials grant, scope ``mlflow/api``), and
    CloudFormation copies its id and generated secret into the secret: the
    template holds references, never the value. MLflow knows the profile by
    that client id (a client-credentials token names no person).

    Without it (an external issuer) the stack cannot create a client at the
    organisation's provider: the secret starts with empty fields, which the
    provider's administrator fills in (README, Single sign-on). The stack
    writes the secret only when it creates it, so later deploys keep them.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        profile: str,
        secret_name: str,
        identity: CognitoIdentity | None,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.profile = profile
        self.secret_name = secret_name
        self.client = None
        description = f"OAuth client (client-credentials grant) of SageMaker Studio user profile {profile}"
        if identity is not None:
            self.client = identity.add_machine_client(self, "Client", name=f"studio-{profile}")
            self.secret = secretsmanager.Secret(
                self,
                "Secret",
                secret_name=secret_name,
                description=description,
                secret_object_value={
                    "client_id": SecretValue.resource_attribute(self.client.ref),
                    "client_secret": SecretValue.resource_attribute(self.client.attr_client_secret),
                    "token_url": SecretValue.unsafe_plain_text(identity.token_url),
                    "scope": SecretValue.unsafe_plain_text(names.API_SCOPE),
                },
                # Derived from the client, which goes with the stack.
                removal_policy=RemovalPolicy.DESTROY,
            )
        else:
            self.secret = secretsmanager.Secret(
                self,
                "Secret",
                secret_name=secret_name,
                description=f"{description}: fill in the client your identity provider issued",
                # Empty fields, no secret: a placeholder the provider's administrator overwrites.
                secret_string_value=SecretValue.unsafe_plain_text(json.dumps(dict.fromkeys(FIELDS, ""))),
                removal_policy=removal_policy,
            )

    def restrict_reading_to(self, readers: list[iam.IRole]) -> None:
        """Deny reading the client secret to every principal but ``readers``, whatever their IAM policies say."""
        self.secret.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyTheProfileReadsItsClient",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["secretsmanager:GetSecretValue"],
                resources=["*"],
                conditions={"StringNotEquals": {"aws:PrincipalArn": [role.role_arn for role in readers]}},
            )
        )
