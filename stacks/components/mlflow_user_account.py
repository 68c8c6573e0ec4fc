"""One Studio profile's own MLflow user (accounts mode): its login secret and the account itself."""

from aws_cdk import CustomResource, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.components.login_secret import login_secret_value
from stacks.components.mlflow_account_provisioner import RESOURCE_TYPE, MlflowAccountProvisioner


class MlflowUserAccount(Construct):
    """A generated ``{"username", "password"}`` secret and the MLflow user made from it.

    Only the roles given to :meth:`restrict_reading_to` (the profile's execution
    and training roles) and the provisioner may read the password: besides
    their own identity policies, the secret's resource policy denies everyone
    else, whatever their IAM policies allow. With IAM sign-in the profile's roles
    need no password: :meth:`deny_reading_to` shuts them out instead, and the
    password is the person's browser login, which an administrator reads. The account is created, updated
    and deleted with the stack by the provisioner; the user name is the profile name.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        username: str,
        secret_name: str,
        provisioner: MlflowAccountProvisioner,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.username = username
        self.secret_name = secret_name
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            secret_name=secret_name,
            description=f"MLflow login of SageMaker Studio user profile {username}",
            generate_secret_string=login_secret_value(username),
            removal_policy=removal_policy,
        )
        self._provisioner_role = provisioner.role
        provisioner.allow_reading(self.secret)

        self.account = CustomResource(
            self,
            "Account",
            service_token=provisioner.service_token,
            resource_type=RESOURCE_TYPE,
            properties={"Username": username, "UserSecretArn": self.secret.secret_arn},
        )
        # The provisioner must reach the ALB before it runs (its security group rules).
        self.account.node.add_dependency(provisioner.security_group)

    def restrict_reading_to(self, readers: list[iam.IRole]) -> None:
        """Deny reading the password to every principal but ``readers`` and the provisioner."""
        allowed = [role.role_arn for role in readers] + [self._provisioner_role.role_arn]
        self.secret.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyTheProfileReadsItsLogin",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["secretsmanager:GetSecretValue"],
                resources=["*"],
                conditions={"StringNotEquals": {"aws:PrincipalArn": allowed}},
            )
        )

    def deny_reading_to(self, roles: list[iam.IRole]) -> None:
        """Deny reading the password to ``roles``, whatever their IAM policies allow (IAM sign-in)."""
        self.secret.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ProfileRolesSignInWithIam",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["secretsmanager:GetSecretValue"],
                resources=["*"],
                conditions={"StringEquals": {"aws:PrincipalArn": [role.role_arn for role in roles]}},
            )
        )
