"""SageMakerStudioUserStack: the Studio user, its execution role and the serving-image build."""

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks import names
from stacks.components.serving_image_build import ServingImageBuild
from stacks.components.studio_domain import StudioDomain
from stacks.components.studio_execution_role import StudioExecutionRole
from stacks.config import ProjectConfig
from stacks.mlflow_version import pinned_mlflow_version


class SageMakerStudioUserStack(Stack):
    """A Studio user profile whose role can use MLflow and deploy its models, and nothing broader."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ProjectConfig,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        credentials_secret: secretsmanager.ISecret,
        artifact_access_policy: iam.IManagedPolicy,
        output_stack_names: list[str],
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal = config.cdk_removal_policy

        self.image_build = ServingImageBuild(
            self,
            "ServingImage",
            mlflow_version=pinned_mlflow_version(),
            log_retention=config.log_retention,
            removal_policy=removal,
        )
        self.execution_role = StudioExecutionRole(
            self,
            "ExecutionRole",
            credentials_secret=credentials_secret,
            artifact_access_policy=artifact_access_policy,
            output_stack_names=output_stack_names,
            allowed_instance_types=config.allowed_instance_types,
            serving_repository_arn=self.image_build.repository.repository_arn,
        )
        self.studio = StudioDomain(
            self,
            "Studio",
            existing_domain_id=config.sagemaker_domain_id,
            vpc=vpc,
            subnets=subnets,
            domain_name="mlflow-studio",
            user_profile_name=config.user_profile_name,
            execution_role=self.execution_role.role,
        )
        self.execution_role.allow_studio_in_domain(self.studio.domain_id)

        for key, value in (
            (names.OUTPUT_STUDIO_ROLE, self.execution_role.role.role_arn),
            (names.OUTPUT_DOMAIN_ID, self.studio.domain_id),
            (names.OUTPUT_USER_PROFILE, config.user_profile_name),
            (names.OUTPUT_IMAGE_BUILD_PROJECT, self.image_build.project.project_name),
        ):
            CfnOutput(self, key, value=value).override_logical_id(key)
