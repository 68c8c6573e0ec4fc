"""One Studio profile's OAuth client (sso mode): how its notebooks and jobs get a bearer token."""

import json
from dataclasses import dataclass

from aws_cdk import RemovalPolicy, SecretValue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import custom_resources as cr
from constructs import Construct

from stacks import names
from stacks.components.lambda_logs import lambda_role_logging_to

# The JSON fields the lab helper reads (lab/source_dir/mlflow_setup.py).
FIELDS = ("client_id", "client_secret", "token_url", "scope")


@dataclass(frozen=True)
class CognitoMachineClient:
    """A profile's app client in the VPC stack's user pool, and where its tokens come from."""

    user_pool_id: str
    user_pool_arn: str
    client_id: str
    token_url: str


class ClientSecretReader(Construct):
    """Deploy-time ``DescribeUserPoolClient`` calls that hand Cognito app client secrets to CloudFormation.

    One per stack: the AWS SDK custom-resource function is a singleton that
    runs as this construct's role and logs (data hidden) to its log group.
    Only the client secret comes back to CloudFormation, as a custom resource
    attribute, which is shown nowhere.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        user_pool_arn: str,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.user_pool_arn = user_pool_arn
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=removal_policy)
        # Our own role, so the function logs only to its group (no AWS managed policy).
        self.role = lambda_role_logging_to(
            self,
            "Role",
            log_group=self.log_group,
            description="Reads the Studio profiles' Cognito app client secrets into their secrets at deploy time",
        )
        self.lookups: list[cr.AwsCustomResource] = []

    def client_secret(self, name: str, client: CognitoMachineClient) -> SecretValue:
        """The secret of ``client``, as a reference for a Secrets Manager secret's value."""
        lookup = cr.AwsCustomResource(
            self,
            f"Lookup{name}",
            on_update=cr.AwsSdkCall(  # also the create call
                service="CognitoIdentityServiceProvider",
                action="DescribeUserPoolClient",
                parameters={"UserPoolId": client.user_pool_id, "ClientId": client.client_id},
                physical_resource_id=cr.PhysicalResourceId.of(client.client_id),
                output_paths=["UserPoolClient.ClientSecret"],
                logging=cr.Logging.with_data_hidden(),
            ),
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [iam.PolicyStatement(actions=["cognito-idp:DescribeUserPoolClient"], resources=[self.user_pool_arn])]
            ),
            role=self.role,
            log_group=self.log_group,
            install_latest_aws_sdk=False,
        )
        self.lookups.append(lookup)
        return SecretValue.resource_attribute(lookup.get_response_field("UserPoolClient.ClientSecret"))


class OAuthClientLogin(Construct):
    """A secret ``{"client_id", "client_secret", "token_url", "scope"}`` only the profile's roles may read.

    With ``cognito`` the profile's app client already exists in the VPC stack
    (the MLflow tasks there must know its id: the server creates an MLflow
    user for each such client). Its secret cannot cross stacks as a value
    without becoming a stack output, so a deploy-time ``DescribeUserPoolClient``
    call here reads it and CloudFormation copies it into the secret by
    reference (:class:`ClientSecretReader`): no template and no output holds
    it, the call's response is kept out of its log. MLflow knows the profile
    by that client id (a client-credentials token names no person).

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
        cognito: CognitoMachineClient | None,
        reader: ClientSecretReader | None,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.profile = profile
        self.secret_name = secret_name
        description = f"OAuth client (client-credentials grant) of SageMaker Studio user profile {profile}"
        if cognito is None:
            self.secret = secretsmanager.Secret(
                self,
                "Secret",
                secret_name=secret_name,
                description=f"{description}: fill in the client your identity provider issued",
                # Empty fields, no secret: a placeholder the provider's administrator overwrites.
                secret_string_value=SecretValue.unsafe_plain_text(json.dumps(dict.fromkeys(FIELDS, ""))),
                removal_policy=removal_policy,
            )
            return

        assert reader is not None, "a Cognito client's secret is read by the stack's ClientSecretReader"
        client_secret = reader.client_secret(profile, cognito)
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            secret_name=secret_name,
            description=description,
            secret_object_value={
                "client_id": SecretValue.unsafe_plain_text(cognito.client_id),
                "client_secret": client_secret,
                "token_url": SecretValue.unsafe_plain_text(cognito.token_url),
                "scope": SecretValue.unsafe_plain_text(names.API_SCOPE),
            },
            # Derived from the client, which the VPC stack keeps.
            removal_policy=RemovalPolicy.DESTROY,
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
