"""IAM sign-in's entry point: a second HTTP API whose one route API Gateway authorises with SigV4."""

from aws_cdk import Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.components.http_gateway import (
    ACCESS_LOG_FIELDS,
    StageSettings,
    alb_integration,
    logged_stage,
    public_origin_headers,
)
from stacks.iam_callers import CALLER_HEADER

# The verified caller, as API Gateway reports it for a SigV4-signed request.
CALLER_ARN = "identity.userArn"
# Here the API knows who called: its access log names them (issue 23 asked for the user in the API's log).
IAM_ACCESS_LOG_FIELDS = {**ACCESS_LOG_FIELDS, "caller": f"$context.{CALLER_ARN}"}


class IamGateway(Construct):
    """HTTP API ``mlflow-iam``: ``$default`` with AWS_IAM authorisation, over the password API's VPC link.

    API Gateway verifies the signature and writes the caller's ARN into ``CALLER_HEADER``,
    overwriting whatever the client sent; the integration goes to ``listener``, the ALB
    listener of nginx's IAM server block, which alone trusts that header. The VPC link's
    ``security_group`` gets egress to that listener's port only. With ``alb_server_name``
    the listener is HTTPS and its certificate is verified against that name.

    It keeps its execute-api endpoint even with a custom domain: signed clients sign for
    the host they call, and the domain serves the password API.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc_link: apigw.IVpcLink,
        security_group: ec2.SecurityGroup,
        listener: elbv2.IApplicationListener,
        load_balancer: ec2.IConnectable,
        listener_port: int,
        alb_server_name: str | None,
        stage: StageSettings,
    ) -> None:
        super().__init__(scope, construct_id)
        security_group.connections.allow_to(
            load_balancer, ec2.Port.tcp(listener_port), "VPC link to the MLflow ALB's IAM sign-in listener"
        )
        self.api = apigw.HttpApi(
            self,
            "Api",
            api_name="mlflow-iam",
            description="MLflow tracking server for SigV4-signed clients (IAM sign-in)",
            create_default_stage=False,
            default_authorizer=authorizers.HttpIamAuthorizer(),
            default_integration=alb_integration(
                listener,
                vpc_link=vpc_link,
                parameter_mapping=public_origin_headers().overwrite_header(
                    CALLER_HEADER, apigw.MappingValue.context_variable(CALLER_ARN)
                ),
                alb_server_name=alb_server_name,
            ),
        )
        self.stage, self.access_log_group = logged_stage(
            self, api=self.api, settings=stage, fields=IAM_ACCESS_LOG_FIELDS
        )
        # The $default stage is served at the API's root: the tracking URI signed clients use.
        self.url = self.api.api_endpoint
        # Every route and stage of this API, nothing else.
        self.invoke_arn = Stack.of(self).format_arn(service="execute-api", resource=self.api.api_id, resource_name="*")
        # Here, beside the API, so its wildcard is acknowledged where the API id is known; the Studio
        # stack attaches it to the profiles' roles (never to the serving role).
        self.invoke_policy = iam.ManagedPolicy(
            self,
            "InvokePolicy",
            description="IAM sign-in: call the mlflow-iam API (Studio profiles' execution and training roles)",
            statements=[
                iam.PolicyStatement(sid="SignInWithIam", actions=["execute-api:Invoke"], resources=[self.invoke_arn])
            ],
        )
