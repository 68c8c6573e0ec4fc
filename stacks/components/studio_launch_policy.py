"""What a person needs to open SageMaker Studio as one user profile, and nothing more.

Whoever may open a profile's Studio works as that profile: its execution and
training roles, and through them its MLflow login. So each profile gets a
managed policy that an administrator attaches to that one person's IAM
identity instead of a wide ``sagemaker:CreatePresignedDomainUrl``.
"""

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.components.studio_execution_role import name_spellings
from stacks.components.workload_roles import wildcard_resources

# The console's way to the profile: find the domain and the profile, see its spaces and apps.
_FIND_ACTIONS = ["sagemaker:ListDomains", "sagemaker:ListUserProfiles", "sagemaker:ListSpaces", "sagemaker:ListApps"]
_LOOK_ACTIONS = ["sagemaker:DescribeDomain", "sagemaker:DescribeUserProfile"]


class StudioLaunchPolicy(Construct):
    """A managed policy that opens Studio as ``profile`` in ``domain_id`` (``policy``)."""

    def __init__(self, scope: Construct, construct_id: str, *, profile: str, domain_id: str) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)

        def arn(resource: str, name: str) -> str:
            return stack.format_arn(
                service="sagemaker", resource=resource, resource_name=name, arn_format=ArnFormat.SLASH_RESOURCE_NAME
            )

        own = [arn("user-profile", f"{domain_id}/{name}") for name in name_spellings(profile)]
        statements = [
            iam.PolicyStatement(
                sid="OpenStudioAsThisProfile", actions=["sagemaker:CreatePresignedDomainUrl"], resources=own
            ),
            iam.PolicyStatement(sid="FindTheProfile", actions=_FIND_ACTIONS, resources=["*"]),
            iam.PolicyStatement(
                sid="LookAtTheDomain",
                actions=_LOOK_ACTIONS,
                resources=[arn("domain", domain_id), arn("user-profile", f"{domain_id}/*")],
            ),
        ]
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            description=f"Open SageMaker Studio as user profile {profile}: attach to that person's IAM identity only",
            statements=statements,
        )
        self.wildcard_resources = wildcard_resources(statements)
