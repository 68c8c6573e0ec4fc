"""A SageMaker Studio domain in the project VPC, or an existing one to add profiles to."""

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct


class StudioDomain(Construct):
    """Creates a VPC-only Studio domain unless ``existing_domain_id`` is given.

    A new domain sits in the project's private subnets, so Studio reaches the
    tracking URL and AWS APIs through the project's NAT gateway (and S3 through
    its gateway endpoint), and nothing depends on the account's default VPC.
    Each user profile brings its own execution role; the domain's default role
    (for profiles and shared spaces created outside this stack) has no
    permissions, so it holds no MLflow login.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        existing_domain_id: str | None,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        domain_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.security_group: ec2.SecurityGroup | None = None
        self.domain: sagemaker.CfnDomain | None = None
        self.default_role: iam.Role | None = None

        if existing_domain_id:
            self.domain_id = existing_domain_id
            return

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="SageMaker Studio apps: outbound through NAT, app-to-app within the group",
            allow_all_outbound=True,
        )
        self.security_group.add_ingress_rule(self.security_group, ec2.Port.all_tcp(), "Studio apps talk to each other")
        self.default_role = iam.Role(
            self,
            "DefaultRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="Studio domain default: no permissions; the stack's user profiles have their own roles",
        )
        groups = [self.security_group.security_group_id]
        self.domain = sagemaker.CfnDomain(
            self,
            "Domain",
            domain_name=domain_name,
            auth_mode="IAM",
            vpc_id=vpc.vpc_id,
            subnet_ids=vpc.select_subnets(subnet_type=subnets.subnet_type).subnet_ids,
            app_network_access_type="VpcOnly",
            default_user_settings=sagemaker.CfnDomain.UserSettingsProperty(
                execution_role=self.default_role.role_arn, security_groups=groups
            ),
            default_space_settings=sagemaker.CfnDomain.DefaultSpaceSettingsProperty(
                execution_role=self.default_role.role_arn, security_groups=groups
            ),
        )
        # Always deleted with the stack: a kept domain would pin the VPC's subnets.
        # SageMaker itself keeps the users' home file system (EFS) by default.
        self.domain.apply_removal_policy(RemovalPolicy.DESTROY)
        self.domain_id = self.domain.attr_domain_id
