"""Where MLflow artifacts live: clients write them straight to S3."""

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks import names

# S3 request metrics (CloudWatch, 1-minute) for the whole artifact bucket; the
# alarms and the dashboard select them by this filter id.
REQUEST_METRICS_FILTER_ID = "EntireBucket"


def _secure_bucket(
    scope: Construct,
    construct_id: str,
    *,
    removal_policy: RemovalPolicy,
    lifecycle_rules: list[s3.LifecycleRule],
    versioned: bool = False,
    access_logs: s3.IBucket | None = None,
    metrics: list[s3.BucketMetrics] | None = None,
) -> s3.Bucket:
    """A private, TLS-only, encrypted bucket; emptied on delete only in dev."""
    return s3.Bucket(
        scope,
        construct_id,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        # SSE-S3 keeps readers free of KMS grants; the data never leaves the account.
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        versioned=versioned,
        removal_policy=removal_policy,
        auto_delete_objects=removal_policy == RemovalPolicy.DESTROY,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix="s3/artifacts/" if access_logs else None,
        lifecycle_rules=lifecycle_rules,
        metrics=metrics,
    )


class ArtifactStore(Construct):
    """The artifact bucket plus the bucket that receives its server access logs.

    Versioning keeps every overwritten or deleted artifact as a noncurrent
    version for ``noncurrent_version_retention``: that is how far back an
    artifact can be restored. Request metrics feed the 4xx/5xx alarms.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        removal_policy: RemovalPolicy,
        access_log_retention: Duration,
        noncurrent_version_retention: Duration,
    ) -> None:
        super().__init__(scope, construct_id)

        self.access_log_bucket = _secure_bucket(
            self,
            "AccessLogs",
            removal_policy=removal_policy,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=access_log_retention,
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
        )

        self.bucket = _secure_bucket(
            self,
            "Artifacts",
            versioned=True,
            removal_policy=removal_policy,
            access_logs=self.access_log_bucket,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="abort-incomplete-multipart-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
                s3.LifecycleRule(
                    id="expire-noncurrent-versions",
                    noncurrent_version_expiration=noncurrent_version_retention,
                ),
            ],
            metrics=[s3.BucketMetrics(id=REQUEST_METRICS_FILTER_ID)],
        )
        self.request_metrics_filter_id = REQUEST_METRICS_FILTER_ID

        self.workflow_object_arns = [
            self.bucket.arn_for_objects(f"{names.SAGEMAKER_RESOURCE_PREFIX}*"),
            self.bucket.arn_for_objects("sagemaker/*"),
        ]
        # Kept beside the bucket so the statement and its wildcard live in one
        # stack; the Studio stack attaches it to its execution role.
        self.workflow_access_policy = iam.ManagedPolicy(
            self,
            "WorkflowAccess",
            description="MLflow Studio workflow: list the artifact bucket and use its mlflow-*/sagemaker/ keys",
            statements=[
                iam.PolicyStatement(
                    sid="ListArtifactBucket",
                    actions=["s3:ListBucket", "s3:GetBucketLocation"],
                    resources=[self.bucket.bucket_arn],
                ),
                iam.PolicyStatement(
                    sid="ReadWriteWorkflowObjects",
                    actions=[
                        "s3:GetObject",
                        "s3:PutObject",
                        # MLflow's SageMaker deployment tags the model.tar.gz it uploads.
                        "s3:PutObjectTagging",
                        "s3:DeleteObject",
                        "s3:AbortMultipartUpload",
                    ],
                    # MLflow artifacts and the model data MLflow's SageMaker deployment
                    # uploads use "mlflow-*" keys; training job code and output use "sagemaker/".
                    resources=self.workflow_object_arns,
                ),
            ],
        )
