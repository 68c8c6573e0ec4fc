"""The role a SageMaker Studio user's notebooks run as (one per user profile)."""

from aws_cdk import ArnFormat, Stack, Tags
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks import names
from stacks.components.mlflow_lookup import mlflow_lookup_statements
from stacks.components.workload_roles import log_group_arn, others_training_logs, wildcard_resources

# Training, model, endpoint-config and endpoint resources the workflow creates.
_SAGEMAKER_WORKFLOW_RESOURCES = ("training-job", "model", "endpoint-config", "endpoint")
_SAGEMAKER_WORKFLOW_ACTIONS = [
    "sagemaker:DescribeTrainingJob",
    "sagemaker:StopTrainingJob",
    "sagemaker:CreateModel",
    "sagemaker:DescribeModel",
    "sagemaker:DeleteModel",
    "sagemaker:DescribeEndpointConfig",
    "sagemaker:DeleteEndpointConfig",
    "sagemaker:CreateEndpoint",
    "sagemaker:DescribeEndpoint",
    "sagemaker:UpdateEndpoint",
    "sagemaker:DeleteEndpoint",
    "sagemaker:InvokeEndpoint",
    "sagemaker:AddTags",
    "sagemaker:ListTags",
]
# The two calls that choose instances, i.e. what a user spends per hour; both
# carry the sagemaker:InstanceTypes key (other actions do not, so the
# condition lives on its own statement).
_INSTANCE_TYPE_ACTIONS = {
    "sagemaker:CreateTrainingJob": "training-job",
    "sagemaker:CreateEndpointConfig": "endpoint-config",
}
# What a Studio user may still do to a registry deployment's model, endpoint
# config and endpoint: look and call. Everything else is the worker's, which
# deploys only what a permitted alias move asks for.
_REGISTRY_DEPLOYMENT_USES = ["sagemaker:Describe*", "sagemaker:List*", "sagemaker:InvokeEndpoint*"]
# Those of them a Studio user makes (the workflow's own names are the profile's, not these).
_REGISTRY_DEPLOYMENT_CALLS = [
    "sagemaker:DescribeModel",
    "sagemaker:DescribeEndpointConfig",
    "sagemaker:DescribeEndpoint",
    "sagemaker:InvokeEndpoint",
    "sagemaker:ListTags",
]
# What Studio's UI reads in the domain as the execution role: any profile's, space's or app's.
_STUDIO_READ_ACTIONS = [
    "sagemaker:DescribeDomain",
    "sagemaker:DescribeUserProfile",
    "sagemaker:DescribeSpace",
    "sagemaker:DescribeApp",
    "sagemaker:ListTags",
]
# What it changes: a space (its settings, its storage) and the apps that run in one.
_SPACE_CHANGES = ["sagemaker:CreateSpace", "sagemaker:UpdateSpace", "sagemaker:DeleteSpace"]
_APP_CHANGES = ["sagemaker:CreateApp", "sagemaker:DeleteApp"]
# Condition keys SageMaker sets on space and app requests (the AWS managed policy
# AmazonDataZoneSageMakerEnvironmentRolePermissionsBoundary uses the same keys).
_SPACE_OWNER_KEY = "sagemaker:OwnerUserProfileArn"
_SPACE_SHARING_KEY = "sagemaker:SpaceSharingType"
# Present only when a create call tags what it creates (Studio tags its spaces and apps).
_TAGGING_ACTION_KEY = "sagemaker:TaggingAction"
_TAGGED_CREATIONS = ["CreateSpace", "CreateApp"]
# List and search calls cannot be scoped to resources in IAM.
_UNSCOPABLE_READ_ACTIONS = [
    "sagemaker:ListTrainingJobs",
    "sagemaker:ListModels",
    "sagemaker:ListEndpointConfigs",
    "sagemaker:ListEndpoints",
    "sagemaker:ListApps",
    "sagemaker:ListSpaces",
    "sagemaker:ListUserProfiles",
    "sagemaker:ListDomains",
]


class StudioExecutionRole(Construct):
    """Least-privilege execution role of one Studio user profile.

    Each statement names the resources the workflow touches: the profile's
    MLflow login secret, the stacks' outputs and parameters, and the SageMaker
    resources and bucket keys (job code, model data) whose names start with the
    profile's ``name_prefix`` (names.workflow_name_prefix), so one profile cannot
    change another's endpoints or read its models; it may only look at and call the
    registry's deployments (``mlflow-registry-*``). It hands SageMaker the profile's
    training and serving roles, never itself. In the Studio domain it changes only
    the spaces its profile owns (and their apps). MLflow's artifacts go through MLflow
    (the profile's bucket policy, from the artifact store, denies them). It neither reads
    nor writes the logs of the other profiles' (``other_name_prefixes``) endpoints and
    training jobs, nor the registry's endpoints': what their code prints.

    Its tags tell the lab which secret and workload roles are this profile's.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        profile: str,
        name_prefix: str,
        credentials_secret_arn: str | None,
        credentials_secret_name: str,
        training_role: iam.IRole,
        serving_role: iam.IRole,
        artifact_access_policy: iam.IManagedPolicy,
        output_stack_names: list[str],
        allowed_instance_types: list[str],
        serving_repository_arn: str,
        other_name_prefixes: list[str],
    ) -> None:
        super().__init__(scope, construct_id)
        self._profile = profile

        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"SageMaker Studio user profile {profile}: MLflow workflow (training, registry, deployment)",
            managed_policies=[artifact_access_policy],
        )
        role = self.role
        for key, value in (
            (names.ROLE_TAG_CREDENTIALS_SECRET, credentials_secret_name),
            (names.ROLE_TAG_TRAINING_ROLE, training_role.role_arn),
            (names.ROLE_TAG_SERVING_ROLE, serving_role.role_arn),
            (names.ROLE_TAG_NAME_PREFIX, name_prefix),
        ):
            Tags.of(role).add(key, value)

        arn = self._slash_arn
        registry_deployments = [
            arn("sagemaker", kind, names.MODEL_DEPLOYMENT_NAMES) for kind in names.MODEL_DEPLOYMENT_RESOURCE_TYPES
        ]

        statements = [
            *mlflow_lookup_statements(
                self,
                credentials_secret_arn=credentials_secret_arn,
                own_role_arn=role.role_arn,
                output_stack_names=output_stack_names,
            ),
            iam.PolicyStatement(
                sid="ManageWorkflowSageMakerResources",
                actions=_SAGEMAKER_WORKFLOW_ACTIONS,
                resources=[arn("sagemaker", kind, f"{name_prefix}*") for kind in _SAGEMAKER_WORKFLOW_RESOURCES],
            ),
            iam.PolicyStatement(
                sid="TrainAndHostOnAllowedInstanceTypes",
                actions=list(_INSTANCE_TYPE_ACTIONS),
                resources=[arn("sagemaker", kind, f"{name_prefix}*") for kind in _INSTANCE_TYPE_ACTIONS.values()],
                conditions={
                    # Every instance type in the request is an allowed one ...
                    "ForAllValues:StringEquals": {"sagemaker:InstanceTypes": allowed_instance_types},
                    # ... and there is one (ForAllValues alone passes a request without the key).
                    "Null": {"sagemaker:InstanceTypes": "false"},
                },
            ),
            iam.PolicyStatement(
                # The registry's endpoints serve everyone: look at them and call them, nothing more.
                sid="UseRegistryDeployments",
                actions=_REGISTRY_DEPLOYMENT_CALLS,
                resources=registry_deployments,
            ),
            iam.PolicyStatement(
                sid="ListWithoutResourceScope",
                actions=_UNSCOPABLE_READ_ACTIONS,
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="PassWorkloadRolesToSageMaker",
                actions=["iam:PassRole"],
                resources=[training_role.role_arn, serving_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                sid="CheckServingImageExists",
                # The notebook checks the image before deploying, to say "build it" early.
                actions=["ecr:DescribeImages"],
                resources=[serving_repository_arn],
            ),
            iam.PolicyStatement(
                sid="SageMakerJobLogs",
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                    "logs:GetLogEvents",
                ],
                resources=[log_group_arn(self, "/aws/sagemaker/*")],
            ),
            iam.PolicyStatement(
                sid="SageMakerJobMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
            ),
        ]
        # A Studio user who could change a registry endpoint (point it at a model of their own,
        # delete it) would step around MLflow's alias permissions. The Allows above name only
        # the profile's own resources; this Deny keeps any Allow added later from reopening them.
        registry_deny = iam.PolicyStatement(
            sid="RegistryDeploymentsAreTheWorkers",
            effect=iam.Effect.DENY,
            not_actions=_REGISTRY_DEPLOYMENT_USES,
            resources=registry_deployments,
        )
        # The Allow above spans /aws/sagemaker/* (Studio's own app logs among them, in groups
        # SageMaker names); other endpoints' groups and other jobs' streams are taken out here.
        other_endpoints = [f"{prefix}*" for prefix in other_name_prefixes] + [names.MODEL_DEPLOYMENT_NAMES]
        foreign_logs_deny = iam.PolicyStatement(
            sid="NoOtherWorkloadsLogs",
            effect=iam.Effect.DENY,
            actions=["logs:*"],
            resources=[
                *(log_group_arn(self, f"{names.ENDPOINT_LOG_GROUP_PREFIX}{name}") for name in other_endpoints),
                *others_training_logs(self, other_name_prefixes),
            ],
        )
        self.policy = iam.Policy(self, "WorkflowPolicy", statements=[*statements, registry_deny, foreign_logs_deny])
        self.policy.attach_to_role(role)
        self.wildcard_resources: list[str] = []
        self._track_wildcards(statements)

    def allow_studio_in_domain(self, domain_id: str) -> None:
        """Let Studio's UI manage this profile's own spaces and apps, in this one domain only.

        A private space holds its owner's work on its own volume: another profile may look
        at it, never change, stop or delete it. Shared spaces are shared: any profile may
        start and stop their apps, only their owner change or delete them.
        """
        arn = self._slash_arn
        spellings = name_spellings(self._profile)
        own_profile = [arn("sagemaker", "user-profile", f"{domain_id}/{name}") for name in spellings]
        spaces = arn("sagemaker", "space", f"{domain_id}/*")
        apps = arn("sagemaker", "app", f"{domain_id}/*")
        statements = [
            iam.PolicyStatement(
                sid="ReadStudioDomain",
                actions=_STUDIO_READ_ACTIONS,
                resources=[
                    arn("sagemaker", "domain", domain_id),
                    arn("sagemaker", "user-profile", f"{domain_id}/*"),
                    spaces,
                    apps,
                ],
            ),
            iam.PolicyStatement(
                sid="ChangeOwnSpaces",
                actions=_SPACE_CHANGES,
                resources=[spaces],
                conditions={"ArnLike": {_SPACE_OWNER_KEY: own_profile}},
            ),
            iam.PolicyStatement(
                sid="RunAppsInOwnSpaces",
                actions=_APP_CHANGES,
                resources=[apps],
                conditions={"ArnLike": {_SPACE_OWNER_KEY: own_profile}},
            ),
            iam.PolicyStatement(
                sid="RunAppsInSharedSpaces",
                actions=_APP_CHANGES,
                resources=[apps],
                conditions={"StringEquals": {_SPACE_SHARING_KEY: "Shared"}},
            ),
            iam.PolicyStatement(
                # Studio Classic's apps belong to a profile, not a space: no owner key, the name says whose.
                sid="RunOwnProfileApps",
                actions=_APP_CHANGES,
                resources=[arn("sagemaker", "app", f"{domain_id}/{name}/*") for name in spellings],
                conditions={"Null": {_SPACE_OWNER_KEY: "true"}},
            ),
            iam.PolicyStatement(
                sid="TagWhatStudioCreates",
                actions=["sagemaker:AddTags"],
                resources=[spaces, apps],
                conditions={"StringEquals": {_TAGGING_ACTION_KEY: _TAGGED_CREATIONS}},
            ),
        ]
        self.policy.add_statements(*statements)
        self._track_wildcards(statements)

    def _track_wildcards(self, statements: list[iam.PolicyStatement]) -> None:
        """Remember name-scoped wildcard resources so each can be acknowledged on its own."""
        for resource in wildcard_resources(statements):
            if resource not in self.wildcard_resources:
                self.wildcard_resources.append(resource)

    def _slash_arn(self, service: str, resource: str, name: str, *, account: str | None = None) -> str:
        return Stack.of(self).format_arn(
            service=service,
            resource=resource,
            resource_name=name,
            account=account,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )


def name_spellings(name: str) -> list[str]:
    """A profile's name as configured and, if it differs, in lower case: SageMaker writes some ARNs so."""
    return list(dict.fromkeys([name, name.lower()]))
