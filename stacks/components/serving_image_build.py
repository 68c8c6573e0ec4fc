"""Builds MLflow's SageMaker serving image in CodeBuild as part of `cdk deploy`."""

from aws_cdk import CustomResource, Duration, RemovalPolicy
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from stacks import names
from stacks.components.function_code import asset_code

# ECR Public's mirror of Docker Hub's official images: CodeBuild's shared
# addresses hit Docker Hub's anonymous pull limit, ECR Public's are far higher.
BASE_IMAGE_MIRROR = "public.ecr.aws/docker/library"
# The build's only command. Tags are immutable, so an image that exists is
# final: skip. Otherwise pull the base image MLflow's generated Dockerfile
# starts FROM (MLflow's own constant, so a new MLflow moving to another base
# still gets it) from the mirror and tag it under its Docker Hub name, so
# `docker build` finds it locally and never pulls from Docker Hub.
BUILD_COMMAND = """\
if aws ecr describe-images --repository-name "$REPOSITORY" --image-ids imageTag="$MLFLOW_VERSION" >/dev/null 2>&1; then
  echo "$REPOSITORY:$MLFLOW_VERSION is already in ECR and its tag is immutable: nothing to build."
else
  BASE_IMAGE=$(python -c 'from mlflow.models.docker_utils import UBUNTU_BASE_IMAGE; print(UBUNTU_BASE_IMAGE)') &&
  docker pull "$BASE_IMAGE_MIRROR/$BASE_IMAGE" &&
  docker tag "$BASE_IMAGE_MIRROR/$BASE_IMAGE" "$BASE_IMAGE" &&
  mlflow sagemaker build-and-push-container --build --push --container "$REPOSITORY";
fi"""
# CloudFormation waits at most an hour for a custom resource; the build and
# the provider's waiter give up before that, with their own message.
BUILD_TIMEOUT = Duration.minutes(45)
WAIT_TIMEOUT = Duration.minutes(50)
RESOURCE_TIMEOUT = Duration.minutes(55)


class ServingImageBuild(Construct):
    """ECR repository ``mlflow-pyfunc``, the CodeBuild project that fills it, and the deploy-time build.

    The project runs ``mlflow sagemaker build-and-push-container`` with the
    MLflow version the server runs, so endpoints serve models with the same
    MLflow that logged them. A custom resource starts it whenever that
    version changes and waits for it: a failed build fails the deploy. Tags
    are immutable, so nobody can replace the image endpoints pull, and only
    the stack (not Studio users) starts the build.
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
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
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
                "REPOSITORY": codebuild.BuildEnvironmentVariable(value=names.SERVING_IMAGE_REPOSITORY),
                "BASE_IMAGE_MIRROR": codebuild.BuildEnvironmentVariable(value=BASE_IMAGE_MIRROR),
            },
            build_spec=codebuild.BuildSpec.from_object(
                {
                    "version": "0.2",
                    "phases": {
                        "install": {
                            "runtime-versions": {"python": "3.11"},
                            "commands": ['pip install --quiet "mlflow==${MLFLOW_VERSION}"'],
                        },
                        "build": {"commands": [BUILD_COMMAND]},
                    },
                }
            ),
            logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=log_group)),
            timeout=BUILD_TIMEOUT,
        )
        self._grant_push()
        self._build_on_deploy(mlflow_version, log_retention, removal_policy)

    def _grant_push(self) -> None:
        role = self.project.role
        if role is None:  # pragma: no cover - Project always creates one
            raise RuntimeError("CodeBuild project has no role")
        # The mlflow CLI checks the repository exists, logs in and pushes one tag.
        self.repository.grant_push(role)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="CheckAndPushServingImage",
                # BatchGetImage: newer Docker clients read the manifest back on push;
                # DescribeImages: the build skips a version that is already there.
                actions=["ecr:DescribeRepositories", "ecr:DescribeImages", "ecr:BatchGetImage"],
                resources=[self.repository.repository_arn],
            )
        )

    def _build_on_deploy(
        self, mlflow_version: str, log_retention: logs.RetentionDays, removal_policy: RemovalPolicy
    ) -> None:
        """The custom resource that runs the project during the deploy and waits for it."""
        handler_logs = logs.LogGroup(self, "BuildTriggerLogs", retention=log_retention, removal_policy=removal_policy)
        self.handler_role = iam.Role(
            self,
            "BuildTriggerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Starts and watches the serving image build during cdk deploy",
        )
        self.handler_role.add_to_policy(
            iam.PolicyStatement(
                sid="StartAndWatchTheBuild",
                actions=["codebuild:StartBuild", "codebuild:BatchGetBuilds"],
                resources=[self.project.project_arn],
            )
        )
        handler_logs.grant_write(self.handler_role)
        code = asset_code("serving_image_build")
        functions = {
            name: lambda_.Function(
                self,
                f"{name.capitalize()}Handler",
                runtime=lambda_.Runtime.PYTHON_3_14,
                handler=f"index.{handler}",
                code=code,
                role=self.handler_role,
                timeout=Duration.seconds(30),
                log_group=handler_logs,
                description=f"Serving image build: {name}",
            )
            for name, handler in (("start", "on_event"), ("wait", "is_complete"))
        }
        self.handlers = list(functions.values())
        # The provider framework's own functions: roles without AWS managed
        # policies, writing to a log group with the project's retention. Two
        # roles: the one that starts the waiter must not be the waiter's own.
        framework_logs = logs.LogGroup(
            self, "BuildTriggerFrameworkLogs", retention=log_retention, removal_policy=removal_policy
        )
        self.framework_roles = [
            iam.Role(
                self,
                f"BuildTrigger{part}Role",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                description=f"cdk custom-resource framework ({part}) for the serving image build",
            )
            for part in ("Start", "Wait")
        ]
        for role in self.framework_roles:
            framework_logs.grant_write(role)
        self.provider = cr.Provider(
            self,
            "BuildTrigger",
            on_event_handler=functions["start"],
            is_complete_handler=functions["wait"],
            query_interval=Duration.seconds(30),
            total_timeout=WAIT_TIMEOUT,
            log_group=framework_logs,
            framework_on_event_role=self.framework_roles[0],
            framework_complete_and_timeout_role=self.framework_roles[1],
        )
        self.build = CustomResource(
            self,
            "Build",
            service_token=self.provider.service_token,
            resource_type="Custom::ServingImageBuild",
            service_timeout=RESOURCE_TIMEOUT,
            # Changing the version (docker/mlflow/requirements.txt) is what starts a new build.
            properties={"ProjectName": self.project.project_name, "MlflowVersion": mlflow_version},
        )
        # The build needs its role's push permissions in place before it starts.
        self.build.node.add_dependency(self.project)
