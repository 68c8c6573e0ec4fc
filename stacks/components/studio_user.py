"""One Studio user profile with its own roles and, in accounts mode, its own MLflow user."""

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from stacks import names
from stacks.components.artifact_store import ProfileStorage
from stacks.components.mlflow_account_provisioner import MlflowAccountProvisioner
from stacks.components.mlflow_user_account import MlflowUserAccount
from stacks.components.oauth_client_login import ClientSecretReader, CognitoMachineClient, OAuthClientLogin
from stacks.components.studio_domain import StudioDomain
from stacks.components.studio_execution_role import StudioExecutionRole
from stacks.components.studio_launch_policy import StudioLaunchPolicy
from stacks.components.workload_roles import ServingRole, TrainingRole
from stacks.iam_callers import profile_parameter


class StudioUser(Construct):
    """Execution role, training role, MLflow login and the user profile of one Studio user.

    With ``provisioner`` (accounts mode) the user gets a generated login in
    ``user_secret_name`` and an MLflow account of the profile's name; with
    ``sso`` an OAuth client in ``oauth_secret_name`` (its Cognito app client
    ``cognito_client``, made in the VPC stack, or one an external provider's
    administrator fills in); otherwise (shared mode) both roles read the shared
    ``shared_secret``. Both roles' tags name whichever it is.

    With ``iam_invoke_policy`` (IAM sign-in) both roles call the IAM API signed instead: they
    get that policy, may not read the login, and a parameter below ``names.SSM_IAM_PRINCIPALS``
    tells the server they are the profile's MLflow user (accounts: the profile's account; sso:
    its Cognito client's machine user; an external provider's profile is not mapped).

    ``other_name_prefixes`` are the other profiles' (names.workflow_name_prefix): neither the
    notebook nor the training code reads or writes their endpoints' or jobs' logs.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        profile: str,
        domain: StudioDomain,
        shared_secret: secretsmanager.ISecret,
        shared_secret_name: str,
        provisioner: MlflowAccountProvisioner | None,
        user_secret_name: str,
        sso: bool,
        cognito_client: CognitoMachineClient | None,
        client_secret_reader: ClientSecretReader | None,
        oauth_secret_name: str,
        storage: ProfileStorage,
        iam_invoke_policy: iam.IManagedPolicy | None,
        output_stack_names: list[str],
        serving_repository_arn: str,
        allowed_instance_types: list[str],
        removal_policy: RemovalPolicy,
        other_name_prefixes: list[str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.profile = profile
        self.account: MlflowUserAccount | None = None
        self.oauth_login: OAuthClientLogin | None = None
        secret, secret_name = shared_secret, shared_secret_name
        if sso:
            self.oauth_login = OAuthClientLogin(
                self,
                "OAuth",
                profile=profile,
                secret_name=oauth_secret_name,
                cognito=cognito_client,
                reader=client_secret_reader,
                removal_policy=removal_policy,
            )
            secret, secret_name = self.oauth_login.secret, oauth_secret_name
        if provisioner is not None:
            self.account = MlflowUserAccount(
                self,
                "Mlflow",
                username=profile,
                secret_name=user_secret_name,
                provisioner=provisioner,
                removal_policy=removal_policy,
            )
            secret, secret_name = self.account.secret, user_secret_name

        # IAM sign-in: the roles sign their requests as the profile's MLflow user and read no login.
        # That user is the profile's account (accounts mode) or its Cognito app client's machine user
        # (sso mode, named by the client id); an external provider's client is only known after the
        # deploy, so those profiles keep their client login and IAM sign-in maps nobody for them.
        iam_user = self.account.username if self.account else cognito_client.client_id if cognito_client else None
        if iam_user is None:
            iam_invoke_policy = None
        readable_secret_arn = secret.secret_arn if iam_invoke_policy is None else None
        # The profile's own SageMaker names and bucket keys (``storage``): its roles reach no other profile's.
        self.name_prefix = storage.keys.name_prefix
        self.training_role = TrainingRole(
            self,
            "Training",
            profile=profile,
            credentials_secret_arn=readable_secret_arn,
            credentials_secret_name=secret_name,
            storage_policy=storage.training,
            output_stack_names=output_stack_names,
            other_name_prefixes=other_name_prefixes,
        )
        self.serving_role = ServingRole(
            self,
            "Serving",
            description=f"SageMaker models of Studio profile {profile}: its model data and the serving image only",
            storage_policy=storage.serving,
            serving_repository_arn=serving_repository_arn,
            endpoint_names=f"{self.name_prefix}*",
        )
        self.execution_role = StudioExecutionRole(
            self,
            "ExecutionRole",
            profile=profile,
            name_prefix=self.name_prefix,
            credentials_secret_arn=readable_secret_arn,
            credentials_secret_name=secret_name,
            training_role=self.training_role.role,
            serving_role=self.serving_role.role,
            artifact_access_policy=storage.studio,
            output_stack_names=output_stack_names,
            allowed_instance_types=allowed_instance_types,
            serving_repository_arn=serving_repository_arn,
            other_name_prefixes=other_name_prefixes,
        )
        self.execution_role.allow_studio_in_domain(domain.domain_id)
        self.credentials_secret_name = secret_name

        roles: list[iam.IRole] = [self.execution_role.role, self.training_role.role]
        self.iam_principal: ssm.StringParameter | None = None
        if iam_invoke_policy is not None and iam_user is not None:
            if self.account is not None:
                self.account.deny_reading_to(roles)
            for role in roles:
                role.add_managed_policy(iam_invoke_policy)
            self.iam_principal = ssm.StringParameter(
                self,
                "IamPrincipal",
                parameter_name=f"{names.SSM_IAM_PRINCIPALS}/{profile}",
                string_value=profile_parameter(iam_user, [role.role_arn for role in roles]),
                description=f"IAM sign-in: the roles that act as Studio profile {profile}'s MLflow user",
            )
        elif self.account is not None:
            self.account.restrict_reading_to(roles)
        if self.oauth_login is not None:
            self.oauth_login.restrict_reading_to([self.execution_role.role, self.training_role.role])

        # Who may open this profile's Studio works as it: the one person it is for.
        self.launch = StudioLaunchPolicy(self, "Launch", profile=profile, domain_id=domain.domain_id)
        self.user_profile = sagemaker.CfnUserProfile(
            self,
            "Profile",
            domain_id=domain.domain_id,
            user_profile_name=profile,
            user_settings=sagemaker.CfnUserProfile.UserSettingsProperty(
                execution_role=self.execution_role.role.role_arn,
                security_groups=[domain.security_group.security_group_id] if domain.security_group else None,
            ),
        )
