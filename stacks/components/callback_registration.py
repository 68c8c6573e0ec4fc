"""Turns on sign-in for the Cognito UI client with the HTTP API's URLs (sso mode without a custom domain)."""

from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from stacks.components.cognito_identity import CognitoIdentity


class CallbackRegistration(Construct):
    """UpdateUserPoolClient with the whole UI client configuration and ``public_url``'s sign-in URLs.

    Lives in the gateway stack, which knows the API's URL; the client lives
    in the VPC stack (see :class:`CognitoIdentity` for why). The call's
    parameters are the client's configuration as that stack defines it plus
    the URLs, so any change to either runs it again. Nothing is undone on
    delete: the client, in the VPC stack, is deleted after this stack.

    The AWS SDK custom-resource function is one per stack: ``role`` and
    ``log_group`` are the ones the stack's first such resource (the artifact
    bucket's CORS rule) gave it, and this adds its own permission to that role.
    Request and response are kept out of the function's log (the response
    carries the client secret) and only the client id comes back to CloudFormation.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        identity: CognitoIdentity,
        public_url: str,
        role: iam.IRole,
        log_group: logs.ILogGroup,
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = identity.ui_client_settings(public_url)
        client_id = identity.ui_client.ref
        self.resource = cr.AwsCustomResource(
            self,
            "Client",
            on_update=cr.AwsSdkCall(  # also the create call
                service="CognitoIdentityServiceProvider",
                action="UpdateUserPoolClient",
                parameters={"UserPoolId": identity.user_pool.user_pool_id, "ClientId": client_id, **self.settings},
                physical_resource_id=cr.PhysicalResourceId.of(client_id),
                output_paths=["UserPoolClient.ClientId"],
                logging=cr.Logging.with_data_hidden(),
            ),
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [
                    iam.PolicyStatement(
                        actions=["cognito-idp:UpdateUserPoolClient"], resources=[identity.user_pool.user_pool_arn]
                    )
                ]
            ),
            role=role,
            log_group=log_group,
            install_latest_aws_sdk=False,
        )
