"""Where MLflow artifacts live: MLflow serves them, large transfers go presigned to S3.

Nobody but the MLflow tasks touches MLflow's artifact prefix directly; the
Studio workflow and its SageMaker jobs and models use their own key prefixes.
"""

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks import names
from stacks.components.workflow_keys import WorkflowKeys

# S3 request metrics (CloudWatch, 1-minute) for the whole artifact bucket; the
# alarms and the dashboard select them by this filter id.
REQUEST_METRICS_FILTER_ID = "EntireBucket"


@dataclass(frozen=True)
class ProfileStorage:
    """One Studio profile's bucket policies: for its execution, training and serving roles."""

    studio: iam.ManagedPolicy
    training: iam.ManagedPolicy
    serving: iam.ManagedPolicy
    keys: WorkflowKeys


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

        # Made by add_model_deployment_access when model_deployments is set.
        self.model_deployment_worker_policy: iam.ManagedPolicy | None = None
        self.model_deployment_serving_policy: iam.ManagedPolicy | None = None
        # MLflow's own prefix: only the MLflow tasks touch it; everyone else goes through MLflow.
        self.mlflow_artifact_arns = self.bucket.arn_for_objects(f"{names.ARTIFACT_PREFIX}/*")
        # One set of policies per Studio profile (add_profile_access), kept beside the bucket so
        # the statements and their wildcards live in one stack; the Studio stack attaches them.
        self.profiles: dict[str, ProfileStorage] = {}
        # The registry's endpoints' role: their copies come from add_model_deployment_access.
        self.serving_access_policy = iam.ManagedPolicy(
            self,
            "ServingAccess",
            description="SageMaker endpoints of the model registry: never MLflow's artifact prefix",
            statements=[self._deny_mlflow_artifacts()],
        )

    def add_profile_access(self, profile: str) -> "ProfileStorage":
        """The keys of one Studio profile's workflow (names.workflow_name_prefix), for its three roles.

        Its execution role writes job code and model data and lists its jobs' keys, its training
        jobs read their code and write their output, its models read their model data; none
        reaches another profile's keys or MLflow's prefix.
        """
        keys = WorkflowKeys.of(self.bucket, names.workflow_name_prefix(profile))
        studio = iam.ManagedPolicy(
            self,
            f"{profile}WorkflowAccess",
            description=f"Studio profile {profile}: its job code and model data; not MLflow's artifact prefix",
            statements=[
                iam.PolicyStatement(
                    sid="FindArtifactBucket", actions=["s3:GetBucketLocation"], resources=[self.bucket.bucket_arn]
                ),
                iam.PolicyStatement(
                    sid="ReadWriteOwnWorkflowObjects",
                    actions=[
                        "s3:GetObject",
                        "s3:PutObject",
                        # MLflow's SageMaker deployment tags the model.tar.gz it uploads.
                        "s3:PutObjectTagging",
                        "s3:DeleteObject",
                        "s3:AbortMultipartUpload",
                    ],
                    resources=[keys.model_data, keys.job_keys],
                ),
                iam.PolicyStatement(
                    # Only its own jobs' keys: a listing of MLflow's prefix would name every experiment's
                    # runs and artifact files, whatever MLflow lets the profile read.
                    sid="ListOwnTrainingJobKeys",
                    actions=["s3:ListBucket"],
                    resources=[self.bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [keys.job_listing]}},
                ),
                self._deny_mlflow_artifacts(),
            ],
        )
        training = iam.ManagedPolicy(
            self,
            f"{profile}TrainingAccess",
            description=f"Training jobs of Studio profile {profile}: their code and output only",
            statements=[
                iam.PolicyStatement(
                    sid="ReadCodeWriteOutput",
                    actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                    resources=[keys.job_keys],
                ),
                self._deny_mlflow_artifacts(),
            ],
        )
        serving = iam.ManagedPolicy(
            self,
            f"{profile}ServingAccess",
            description=f"Models of Studio profile {profile}: read its model data, nothing else",
            statements=[
                iam.PolicyStatement(sid="ReadModelData", actions=["s3:GetObject"], resources=[keys.model_data]),
                self._deny_mlflow_artifacts(),
            ],
        )
        storage = ProfileStorage(studio=studio, training=training, serving=serving, keys=keys)
        self.profiles[profile] = storage
        return storage

    def add_model_deployment_access(self) -> None:
        """model_deployments: the worker copies a version's files out of MLflow's prefix; endpoints read the copy.

        ``model_deployment_worker_policy`` reads MLflow's prefix and writes under
        ``MODEL_COPY_PREFIX/``; ``model_deployment_serving_policy`` reads only those copies.
        """
        prefix = names.MODEL_COPY_PREFIX
        self.model_copy_arns = self.bucket.arn_for_objects(f"{prefix}/*")

        def listing(sid: str, key_prefix: str) -> iam.PolicyStatement:
            return iam.PolicyStatement(
                sid=sid,
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [key_prefix]}},
            )

        self.model_deployment_worker_policy = iam.ManagedPolicy(
            self,
            "ModelDeploymentWorkerAccess",
            description="Model deployment worker: copy a registered version's files for its endpoint",
            statements=[
                listing("ListVersionFiles", f"{names.ARTIFACT_PREFIX}/*"),
                iam.PolicyStatement(
                    sid="ReadVersionFiles",
                    actions=["s3:GetObject", "s3:GetObjectTagging"],
                    resources=[self.mlflow_artifact_arns],
                ),
                iam.PolicyStatement(
                    sid="WriteModelCopies",
                    actions=["s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"],
                    resources=[self.model_copy_arns],
                ),
            ],
        )
        self.model_deployment_serving_policy = iam.ManagedPolicy(
            self,
            "ModelDeploymentServingAccess",
            description="SageMaker endpoints of registry deployments: read the copied version files only",
            statements=[
                listing("ListModelCopies", f"{prefix}/*"),
                iam.PolicyStatement(sid="ReadModelCopies", actions=["s3:GetObject"], resources=[self.model_copy_arns]),
            ],
        )

    def _deny_mlflow_artifacts(self) -> iam.PolicyStatement:
        """Artifacts go through MLflow, which checks who may read or write them: no direct access."""
        return iam.PolicyStatement(
            sid="NoDirectMlflowArtifactAccess",
            effect=iam.Effect.DENY,
            actions=[
                "s3:GetObject*",
                "s3:PutObject*",
                "s3:DeleteObject*",
                "s3:RestoreObject",
                "s3:AbortMultipartUpload",
            ],
            resources=[self.mlflow_artifact_arns],
        )
