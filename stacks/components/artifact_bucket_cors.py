"""Puts this deployment's CORS rule on the artifact bucket, which lives in another stack.

The rule names the HTTP API's origin, known only in the gateway stack, while
the bucket belongs to MLflowVpcStack (which the gateway stack depends on):
setting it with an S3 API call from the gateway stack avoids a dependency
cycle, and the call's parameters (the rule itself) are in this template.
"""

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import custom_resources as cr
from constructs import Construct

from stacks.components.artifact_cors import artifact_cors_rules
from stacks.components.lambda_logs import lambda_role_logging_to


class ArtifactBucketCors(Construct):
    """PutBucketCors on create and update, DeleteBucketCors when the gateway stack goes."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        origins: list[str],
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.rules = artifact_cors_rules(origins)
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=removal_policy)
        # Our own role, so the function logs only to its group (no AWS managed policy).
        # The stack's one AWS SDK custom-resource function runs as this role (CallbackRegistration too).
        self.role = lambda_role_logging_to(
            self,
            "Role",
            log_group=self.log_group,
            description="Deploy-time AWS API calls of the gateway stack: the artifact bucket's CORS rule "
            "(and the Cognito UI client's sign-in URLs in sso mode)",
        )
        call = cr.AwsSdkCall(
            service="S3",
            action="PutBucketCors",
            parameters={"Bucket": bucket.bucket_name, "CORSConfiguration": {"CORSRules": self.rules}},
            physical_resource_id=cr.PhysicalResourceId.of(f"{bucket.bucket_name}-cors"),
        )
        self.resource = cr.AwsCustomResource(
            self,
            "Rule",
            on_update=call,  # also the create call
            on_delete=cr.AwsSdkCall(
                service="S3",
                action="DeleteBucketCors",
                parameters={"Bucket": bucket.bucket_name},
            ),
            # PutBucketCors and DeleteBucketCors are both authorized by s3:PutBucketCORS.
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [iam.PolicyStatement(actions=["s3:PutBucketCORS"], resources=[bucket.bucket_arn])]
            ),
            role=self.role,
            log_group=self.log_group,
            install_latest_aws_sdk=False,
        )
