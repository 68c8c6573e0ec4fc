"""HttpGatewayStack: the HTTPS front door to the tracking server."""

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from stacks import names
from stacks.components.artifact_bucket_cors import ArtifactBucketCors
from stacks.components.http_gateway import HttpGateway
from stacks.config import ProjectConfig


class HttpGatewayStack(Stack):
    """VPC link and HTTP API in front of the internal ALB; publishes the tracking URL.

    Also lets the MLflow UI, served from this API's origin, fetch artifacts
    through the presigned S3 URLs MLflow issues (CORS rule on the bucket).
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
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        self.gateway = HttpGateway(
            self,
            "Gateway",
            vpc=vpc,
            subnets=subnets,
            listener=listener,
            load_balancer=load_balancer,
            load_balancer_port=load_balancer_port,
            rate_limit=config.api_throttle_rate_limit,
            burst_limit=config.api_throttle_burst_limit,
            log_retention=config.log_retention,
            removal_policy=config.cdk_removal_policy,
        )
        self.tracking_url = self.gateway.url
        self.artifact_cors = ArtifactBucketCors(
            self,
            "ArtifactCors",
            bucket=artifact_bucket,
            origins=[self.gateway.origin],
            log_retention=config.log_retention,
            removal_policy=config.cdk_removal_policy,
        )

        self.tracking_url_parameter = ssm.StringParameter(
            self,
            "TrackingUrlParameter",
            parameter_name=names.SSM_TRACKING_URL,
            string_value=self.tracking_url,
            description="MLflow tracking URI (HTTPS, basic auth)",
        )
        CfnOutput(
            self, names.OUTPUT_TRACKING_URL, value=self.tracking_url, description="MLflow tracking URI"
        ).override_logical_id(names.OUTPUT_TRACKING_URL)
