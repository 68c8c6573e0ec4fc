"""The public HTTPS entry point: an HTTP API that reaches the internal ALB over a VPC link."""

import json
from dataclasses import dataclass

import jsii
from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw_v1
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.components.security_groups import closed_security_group
from stacks.iam_callers import CALLER_HEADER
from stacks.names import API_REQUEST_ID_HEADER, PUBLIC_HOST_HEADER, PUBLIC_PROTO_HEADER

# HTTP API access-log fields ($context variables). No header values are logged,
# so the Authorization header never reaches the logs.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "path": "$context.path",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationStatus": "$context.integrationStatus",
    "integrationLatency": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
}


def public_origin_headers() -> apigw.ParameterMapping:
    """The host the client addressed (API or custom domain), https and the request id, on every request."""
    return (
        apigw.ParameterMapping()
        .overwrite_header(PUBLIC_HOST_HEADER, apigw.MappingValue.context_variable("domainName"))
        .overwrite_header(PUBLIC_PROTO_HEADER, apigw.MappingValue.custom("https"))
        .overwrite_header(API_REQUEST_ID_HEADER, apigw.MappingValue.context_variable("requestId"))
    )


@dataclass(frozen=True, kw_only=True)
class StageSettings:
    """Throttling and access-log keeping, the same for every API of the deployment."""

    rate_limit: float
    burst_limit: int
    log_retention: logs.RetentionDays
    removal_policy: RemovalPolicy


@jsii.implements(apigw.IAccessLogSettings)
class _AccessLogSettings:
    """The two values an HTTP API stage needs for access logging."""

    def __init__(self, log_group: logs.ILogGroup, fields: dict[str, str]) -> None:
        self._destination = apigw.LogGroupLogDestination(log_group)
        self._format = apigw_v1.AccessLogFormat.custom(json.dumps(fields))

    @property
    def destination(self) -> apigw.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw_v1.AccessLogFormat:
        return self._format


class HttpGateway(Construct):
    """VPC link, HTTP API with one catch-all ALB integration, throttled and access-logged stage.

    Authentication happens in nginx (basic auth), which the API forwards to
    unchanged; API Gateway adds TLS, throttling and access logs in front.
    With ``alb_server_name`` the ALB listener is HTTPS and the integration
    verifies that its certificate carries this name (it is also the SNI name).
    ``disable_default_endpoint`` turns off the execute-api URL when a custom
    domain serves the API, so clients cannot go around it.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        listener: elbv2.IApplicationListener,
        load_balancer: ec2.IConnectable,
        load_balancer_port: int,
        alb_server_name: str | None,
        disable_default_endpoint: bool,
        stage: StageSettings,
    ) -> None:
        super().__init__(scope, construct_id)

        self.security_group = closed_security_group(
            self,
            "VpcLinkSecurityGroup",
            vpc=vpc,
            description="API Gateway VPC link: may reach the MLflow ALB listener only",
        )
        # Egress from the link plus the matching ingress on the ALB's group.
        self.security_group.connections.allow_to(
            load_balancer, ec2.Port.tcp(load_balancer_port), "VPC link to the MLflow ALB"
        )

        self.vpc_link = apigw.VpcLink(self, "VpcLink", vpc=vpc, subnets=subnets, security_groups=[self.security_group])

        self.api = apigw.HttpApi(
            self,
            "Api",
            api_name="mlflow",
            description="MLflow tracking server (basic auth in nginx behind the VPC link)",
            create_default_stage=False,
            # None (not False) leaves the property out of the template: the default stays as it was.
            disable_execute_api_endpoint=disable_default_endpoint or None,
            # A caller header a client sends here is dropped: only the IAM API writes it.
            default_integration=alb_integration(
                listener,
                vpc_link=self.vpc_link,
                parameter_mapping=public_origin_headers().remove_header(CALLER_HEADER),
                alb_server_name=alb_server_name,
            ),
        )

        self.stage, self.access_log_group = logged_stage(self, api=self.api, settings=stage, fields=ACCESS_LOG_FIELDS)

        # The $default stage is served at the API's root, so this is the tracking URI
        # (None when the execute-api endpoint is off: a custom domain gives the URI).
        self.url = None if disable_default_endpoint else self.api.api_endpoint
        # The same URL spelled out as scheme://host, where a rule needs an origin (None like url).
        stack = Stack.of(self)
        self.origin = (
            None
            if disable_default_endpoint
            else f"https://{self.api.api_id}.execute-api.{stack.region}.{stack.url_suffix}"
        )


def alb_integration(
    listener: elbv2.IApplicationListener,
    *,
    vpc_link: apigw.IVpcLink,
    parameter_mapping: apigw.ParameterMapping,
    alb_server_name: str | None,
) -> integrations.HttpAlbIntegration:
    """Every method and path to ``listener`` over the VPC link (TLS verified against ``alb_server_name`` if set)."""
    return integrations.HttpAlbIntegration(
        "Alb",
        listener,
        vpc_link=vpc_link,
        method=apigw.HttpMethod.ANY,
        parameter_mapping=parameter_mapping,
        secure_server_name=alb_server_name,
    )


def logged_stage(
    scope: Construct, *, api: apigw.IHttpApi, settings: StageSettings, fields: dict[str, str]
) -> tuple[apigw.HttpStage, logs.LogGroup]:
    """The API's $default stage, throttled, with its access log group (``fields`` as the log line)."""
    log_group = logs.LogGroup(
        scope, "AccessLogs", retention=settings.log_retention, removal_policy=settings.removal_policy
    )
    stage = apigw.HttpStage(
        scope,
        "DefaultStage",
        http_api=api,
        stage_name="$default",
        auto_deploy=True,
        throttle=apigw.ThrottleSettings(rate_limit=settings.rate_limit, burst_limit=settings.burst_limit),
        access_log_settings=_AccessLogSettings(log_group, fields),
    )
    return stage, log_group
