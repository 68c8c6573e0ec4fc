"""SageMakerStudioUserStack: the Studio users, their roles and MLflow logins, the serving-image build."""

from collections.abc import Mapping
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks import names
from stacks.components.artifact_store import ProfileStorage
from stacks.components.internal_mlflow import InternalMlflow
from stacks.components.mlflow_account_provisioner import MlflowAccountProvisioner
from stacks.components.model_deployment import ModelDeployment
from stacks.components.oauth_client_login import ClientSecretReader, CognitoMachineClient
from stacks.components.serving_image_build import ServingImageBuild
from stacks.components.studio_domain import StudioDomain
from stacks.components.studio_user import StudioUser
from stacks.components.workload_roles import ServingRole
from stacks.config import ProjectConfig
from stacks.mlflow_version import pinned_mlflow_version

LEGACY_PROFILE_LOGICAL_ID = "StudioUserProfile45D2D380"


class SageMakerStudioUserStack(Stack):
    """Studio user profiles whose roles can use MLflow and deploy its models, and nothing broader.

    One ``StudioUser`` per configured profile; in accounts mode each gets its
    own MLflow user, created by the account provisioner with the admin login
    (``credentials_secret``), which only the provisioner and the tasks read.
    In sso mode each profile gets an OAuth client secret instead: for its
    Cognito app client in ``machine_clients`` (made in the VPC stack, where the
    tasks learn the client ids), or to be filled in for an external issuer.
    With ``model_deployments`` set, registry aliases deploy to SageMaker endpoints
    (``ModelDeployment``; its failures go to ``alarm_topic``; ``model_deployment_policies``,
    the worker's and the endpoints' access to the artifact bucket, come from the VPC stack, and so
    does ``deployment_login_secret``, their MLflow login: the server login unless the mode signs
    nobody in with it).
    With ``iam_invoke_policy`` (IAM sign-in: the gateway stack's right to call its IAM API) each
    profile's roles sign their requests to that API instead of reading the login; the serving role may not call it.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ProjectConfig,
        mlflow: InternalMlflow,
        credentials_secret: secretsmanager.ISecret,
        profile_storage: Mapping[str, ProfileStorage],
        serving_access_policy: iam.IManagedPolicy,
        output_stack_names: list[str],
        artifact_bucket: s3.IBucket,
        alarm_topic: sns.ITopic,
        model_deployment_policies: tuple[iam.IManagedPolicy, iam.IManagedPolicy] | None = None,
        machine_clients: Mapping[str, CognitoMachineClient] | None = None,
        iam_invoke_policy: iam.IManagedPolicy | None = None,
        deployment_login_secret: secretsmanager.ISecret | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal = config.operations.cdk_removal_policy

        self.image_build = ServingImageBuild(
            self,
            "ServingImage",
            mlflow_version=pinned_mlflow_version(),
            log_retention=config.operations.log_retention,
            removal_policy=removal,
        )
        # The registry's endpoints run as this one (they read their copies, model_deployment.py);
        # the notebook's endpoints run as their profile's own (StudioUser).
        self.serving_role = ServingRole(
            self,
            "Serving",
            description="SageMaker endpoints of the model registry: the serving image, no model data of the workflow",
            storage_policy=serving_access_policy,
            serving_repository_arn=self.image_build.repository.repository_arn,
            endpoint_names=names.MODEL_DEPLOYMENT_NAMES,
        )
        self.studio = StudioDomain(
            self,
            "Studio",
            existing_domain_id=config.studio.sagemaker_domain_id,
            vpc=mlflow.vpc,
            subnets=mlflow.subnets,
            domain_name=names.STUDIO_DOMAIN_NAME,
        )
        self.provisioner = (
            MlflowAccountProvisioner(
                self,
                "MlflowAccounts",
                mlflow=mlflow,
                admin_secret=credentials_secret,
                log_retention=config.operations.log_retention,
                removal_policy=removal,
            )
            if config.auth.needs.admin_login
            else None
        )
        machine_clients = machine_clients or {}
        first_client = next(iter(machine_clients.values()), None)
        self.client_secret_reader = (
            ClientSecretReader(
                self,
                "CognitoClientSecrets",
                user_pool_arn=first_client.user_pool_arn,
                log_retention=config.operations.log_retention,
                removal_policy=removal,
            )
            if first_client is not None
            else None
        )
        self.users = [
            StudioUser(
                self,
                f"User{profile}",
                profile=profile,
                domain=self.studio,
                shared_secret=credentials_secret,
                shared_secret_name=config.auth.credentials_secret_name,
                provisioner=self.provisioner,
                user_secret_name=config.auth.user_secret_name(profile),
                sso=config.auth.needs.sign_in_provider,
                cognito_client=machine_clients.get(profile),
                client_secret_reader=self.client_secret_reader,
                oauth_secret_name=config.auth.oauth_client_secret_name(profile),
                storage=profile_storage[profile],
                iam_invoke_policy=iam_invoke_policy,
                output_stack_names=output_stack_names,
                serving_repository_arn=self.image_build.repository.repository_arn,
                allowed_instance_types=config.studio.allowed_instance_types,
                removal_policy=removal,
                other_name_prefixes=[s.keys.name_prefix for other, s in profile_storage.items() if other != profile],
            )
            for profile in config.studio.user_profiles
        ]
        self.model_deployment = (
            ModelDeployment(
                self,
                "ModelDeployment",
                deployments=config.studio.model_deployments,
                allowed_instance_types=config.studio.allowed_instance_types,
                mlflow=mlflow,
                mlflow_secret=deployment_login_secret or credentials_secret,
                endpoint_role=self.serving_role.role,
                serving_image_uri=self.image_build.repository.repository_uri_for_tag(pinned_mlflow_version()),
                artifact_bucket=artifact_bucket,
                worker_copies_policy=model_deployment_policies[0],
                serving_copies_policy=model_deployment_policies[1],
                alarm_topic=alarm_topic,
                log_retention=config.operations.log_retention,
                removal_policy=removal,
            )
            if model_deployment_policies is not None
            else None
        )
        if self.model_deployment is not None:
            CfnOutput(
                self, names.OUTPUT_DEPLOYMENT_WEBHOOK_URL, value=self.model_deployment.receiver_url.url
            ).override_logical_id(names.OUTPUT_DEPLOYMENT_WEBHOOK_URL)

        # The logical id the one profile had before user_profiles became a list: an
        # existing deployment updates that profile in place instead of failing to
        # create a second profile of the same name.
        self.users[0].user_profile.override_logical_id(LEGACY_PROFILE_LOGICAL_ID)

        for key, value in (
            (names.OUTPUT_DOMAIN_ID, self.studio.domain_id),
            (names.OUTPUT_USER_PROFILES, ",".join(config.studio.user_profiles)),
            (
                names.OUTPUT_STUDIO_LAUNCH_POLICIES,
                self.to_json_string({user.profile: user.launch.policy.managed_policy_arn for user in self.users}),
            ),
            (names.OUTPUT_SERVING_ROLE, self.serving_role.role.role_arn),
            (names.OUTPUT_IMAGE_BUILD_PROJECT, self.image_build.project.project_name),
        ):
            CfnOutput(self, key, value=value).override_logical_id(key)
