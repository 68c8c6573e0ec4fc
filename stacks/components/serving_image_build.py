"""Builds MLflow's SageMaker serving image in CodeBuild, so nobody needs a local Docker."""

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks import names


class ServingImageBuild(Construct):
    """ECR repository ``mlflow-pyfunc`` and a CodeBuild project that fills it.

    The project runs ``mlflow sagemaker build-and-push-container`` with the
    MLflow version the server runs, so endpoints serve models with the same
    MLflow that logged them. Start it with
    ``aws codebuild start-build --project-name mlflow-pyfunc-image-build``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        mlflow_version: str,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)

        self.repository = ecr.Repository(
            self,
            "Repository",
            repository_name=names.SERVING_IMAGE_REPOSITORY,
            image_scan_on_push=True,
            removal_policy=removal_policy,
            empty_on_delete=removal_policy == RemovalPolicy.DESTROY,
            lifecycle_rules=[ecr.LifecycleRule(description="Keep the last 10 images", max_image_count=10)],
        )

        log_group = logs.LogGroup(self, "BuildLogs", retention=log_retention, removal_policy=removal_policy)
        self.project = codebuild.Project(
            self,
            "Project",
            project_name=names.SERVING_IMAGE_BUILD_PROJECT,
            description=f"Builds and pushes the mlflow-pyfunc serving image for MLflow {mlflow_version}",
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                compute_type=codebuild.ComputeType.SMALL,
                # The mlflow CLI drives a Docker daemon inside the build container.
                privileged=True,
            ),
            environment_variables={
                "MLFLOW_VERSION": codebuild.BuildEnvironmentVariable(value=mlflow_version),
            },
            build_spec=codebuild.BuildSpec.from_object(
                {
                    "version": "0.2",
                    "phases": {
                        "install": {
                            "runtime-versions": {"python": "3.11"},
                            "commands": ['pip install --quiet "mlflow==${MLFLOW_VERSION}"'],
                        },
                        "build": {
                            "commands": [
                                "mlflow sagemaker build-and-push-container --build --push "
                                f"--container {names.SERVING_IMAGE_REPOSITORY}",
                            ]
                        },
                    },
                }
            ),
            logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=log_group)),
            timeout=Duration.minutes(60),
        )
        self._grant_push()

    def _grant_push(self) -> None:
        role = self.project.role
        if role is None:  # pragma: no cover - Project always creates one
            raise RuntimeError("CodeBuild project has no role")
        # The mlflow CLI checks the repository exists, logs in and pushes one tag.
        self.repository.grant_push(role)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="DescribeServingRepository",
                actions=["ecr:DescribeRepositories"],
                resources=[self.repository.repository_arn],
            )
        )
