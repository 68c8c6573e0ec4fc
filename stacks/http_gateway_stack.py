"""HttpGatewayStack: the HTTPS front door to the tracking server."""

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from stacks import names
from stacks.components.artifact_bucket_cors import ArtifactBucketCors
from stacks.components.callback_registration import CallbackRegistration
from stacks.components.cognito_identity import CognitoIdentity
from stacks.components.custom_domain import CustomDomain
from stacks.components.http_gateway import HttpGateway, StageSettings
from stacks.components.iam_gateway import IamGateway
from stacks.components.vpc_link_keepalive import VpcLinkKeepalive
from stacks.config import ProjectConfig


class HttpGatewayStack(Stack):
    """VPC link and HTTP API in front of the internal ALB; publishes the tracking URL.

    ``certificate`` (the VPC stack's, for ``config.domain.domain_name``) is given exactly
    when a custom domain is configured: the API then answers only on that domain.

    Also lets the MLflow UI, served from this API's origin, fetch artifacts
    through the presigned S3 URLs MLflow issues (CORS rule on the bucket).

    ``identity`` (sso mode with Cognito) is the VPC stack's user pool: without
    a custom domain, this stack registers the API's sign-in URLs on its UI
    client (the VPC stack cannot name them; see ``CognitoIdentity``).

    ``iam_listener`` (IAM sign-in; with ``iam_listener_port``) is the ALB listener of nginx's
    IAM server block: a second API over the same VPC link, authorised with SigV4, reaches it
    (``IamGateway``), and its URL is published beside the tracking URL.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ProjectConfig,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        listener: elbv2.IApplicationListener,
        load_balancer: ec2.IConnectable,
        load_balancer_port: int,
        artifact_bucket: s3.IBucket,
        certificate: acm.ICertificate | None,
        identity: CognitoIdentity | None = None,
        iam_listener: elbv2.IApplicationListener | None = None,
        iam_listener_port: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        domain = config.domain.custom_domain
        stage = StageSettings(
            rate_limit=config.service.api_throttle_rate_limit,
            burst_limit=config.service.api_throttle_burst_limit,
            log_retention=config.operations.log_retention,
            removal_policy=config.operations.cdk_removal_policy,
        )

        self.gateway = HttpGateway(
            self,
            "Gateway",
            vpc=vpc,
            subnets=subnets,
            listener=listener,
            load_balancer=load_balancer,
            load_balancer_port=load_balancer_port,
            alb_server_name=domain.name if domain else None,
            disable_default_endpoint=domain is not None,
            stage=stage,
        )
        self.custom_domain = (
            CustomDomain(
                self,
                "CustomDomain",
                domain_name=domain.name,
                zone_id=domain.zone_id,
                zone_name=domain.zone_name,
                certificate=certificate,
                api=self.gateway.api,
                stage=self.gateway.stage,
            )
            if domain is not None and certificate is not None
            else None
        )
        if self.custom_domain is not None:
            self.tracking_url = self.custom_domain.url
        else:
            assert self.gateway.url is not None, "the execute-api endpoint is on whenever there is no custom domain"
            self.tracking_url = self.gateway.url
        self.stage = self.gateway.stage
        self.keepalive = (
            VpcLinkKeepalive(
                self,
                "VpcLinkKeepalive",
                url=self.tracking_url,
                log_retention=config.operations.log_retention,
                removal_policy=config.operations.cdk_removal_policy,
            )  # fmt: skip
            if config.service.vpc_link_keepalive
            else None
        )
        # The UI's origin: the custom domain when there is one (the execute-api URL is off then).
        origin = domain.url if domain is not None else self.gateway.origin
        assert origin is not None
        self.artifact_cors = ArtifactBucketCors(
            self,
            "ArtifactCors",
            bucket=artifact_bucket,
            origins=[origin],
            log_retention=config.operations.log_retention,
            removal_policy=config.operations.cdk_removal_policy,
        )

        self.callback_registration = (
            CallbackRegistration(
                self,
                "SignInUrls",
                identity=identity,
                public_url=origin,
                role=self.artifact_cors.role,
                log_group=self.artifact_cors.log_group,
            )
            if identity is not None and identity.public_url is None
            else None
        )

        self.tracking_url_parameter = ssm.StringParameter(
            self,
            "TrackingUrlParameter",
            parameter_name=names.SSM_TRACKING_URL,
            string_value=self.tracking_url,
            description="MLflow tracking URI (HTTPS)",
        )
        CfnOutput(
            self, names.OUTPUT_TRACKING_URL, value=self.tracking_url, description="MLflow tracking URI"
        ).override_logical_id(names.OUTPUT_TRACKING_URL)

        self.iam_gateway = (
            IamGateway(
                self,
                "IamGateway",
                vpc_link=self.gateway.vpc_link,
                security_group=self.gateway.security_group,
                listener=iam_listener,
                load_balancer=load_balancer,
                listener_port=iam_listener_port,
                alb_server_name=domain.name if domain else None,
                stage=stage,
            )
            if iam_listener is not None and iam_listener_port is not None
            else None
        )
        if self.iam_gateway is not None:
            ssm.StringParameter(
                self,
                "IamTrackingUrlParameter",
                parameter_name=names.SSM_IAM_TRACKING_URL,
                string_value=self.iam_gateway.url,
                description="MLflow tracking URI for SigV4-signed clients (IAM sign-in)",
            )
            CfnOutput(
                self,
                names.OUTPUT_IAM_TRACKING_URL,
                value=self.iam_gateway.url,
                description="MLflow tracking URI for SigV4-signed clients (MLFLOW_TRACKING_AWS_SIGV4=true)",
            ).override_logical_id(names.OUTPUT_IAM_TRACKING_URL)
