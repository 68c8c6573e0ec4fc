"""What each SageMaker role may not do, in accounts mode with two profiles, by evaluating its policies.

The synthesized policies (intrinsics resolved by tests/lab/cfn_policies.py)
against requests a role must be refused (tests/lab/iam_policy.py): another
profile's login, the MLflow admin's login, MLflow's artifact prefix, passing
another profile's roles. The flow test (tests/integration/test_studio_role_covers_flow.py)
shows the same policies allow everything the workflow needs.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import App, Stack, assertions
from aws_cdk import aws_iam as iam

from stacks import names
from stacks.components.studio_execution_role import StudioExecutionRole
from tests.lab.cfn_policies import AppResolver, Environment, role_statements
from tests.lab.iam_policy import Request, evaluate
from tests.stacks.helpers import Template, resources

ACCOUNT, REGION = "123456789012", "eu-west-1"
BUCKET = "artifact-bucket"
DOMAIN = "d-0a1b2c3d4e5f"
# Each profile's SageMaker names and bucket keys start with its own prefix.
PREFIXES = {profile: names.workflow_name_prefix(profile) for profile in ("alice", "bob")}
PROFILE_PAIRS = [("alice", "bob"), ("bob", "alice")]
TO_SAGEMAKER = {"iam:PassedToService": "sagemaker.amazonaws.com"}


def _secret_arn(name: str) -> str:
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"  # as the resolver derives it


@pytest.fixture(scope="module", params=["iam", "password"])
def resolver(request: pytest.FixtureRequest) -> AppResolver:
    """The accounts-mode app (two profiles), with IAM sign-in on and off; bucket and domain named."""
    variant = "accounts_templates" if request.param == "iam" else "accounts_password_templates"
    accounts_templates: dict[str, Template] = request.getfixturevalue(variant)
    vpc = accounts_templates[names.VPC_STACK]
    (bucket_id,) = [b for b in resources(vpc, "AWS::S3::Bucket") if "Artifacts" in b]
    (domain_id,) = resources(accounts_templates[names.STUDIO_STACK], "AWS::SageMaker::Domain")
    bindings = {(names.VPC_STACK, bucket_id): {"Ref": BUCKET}, (names.STUDIO_STACK, domain_id): {"DomainId": DOMAIN}}
    return AppResolver(accounts_templates, Environment(account=ACCOUNT, region=REGION, bindings=bindings))


@pytest.fixture(scope="module")
def roles(resolver: AppResolver) -> dict[str, dict[str, Any]]:
    """ "alice/ExecutionRole", ..., "ServingRole" -> {"arn", "statements"}."""
    studio = resolver.templates[names.STUDIO_STACK]
    found = {}
    for logical_id, role in resources(studio, "AWS::IAM::Role").items():
        principal = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        if principal != {"Service": "sagemaker.amazonaws.com"} or "DefaultRole" in logical_id:
            continue
        kind = next(k for k in ("ExecutionRole", "TrainingRole", "ServingRole") if k in logical_id)
        profile = next((p for p in ("alice", "bob") if f"User{p}" in logical_id), None)
        key = f"{profile}/{kind}" if profile else kind
        found[key] = {
            "arn": resolver.attributes(names.STUDIO_STACK, logical_id)["Arn"],
            "statements": role_statements(resolver, names.STUDIO_STACK, logical_id),
        }
    assert set(found) == {
        "alice/ExecutionRole", "alice/TrainingRole", "alice/ServingRole",
        "bob/ExecutionRole", "bob/TrainingRole", "bob/ServingRole", "ServingRole",
    }  # fmt: skip
    return found


def _decide(roles: dict[str, dict[str, Any]], role: str, request: Request) -> str:
    return evaluate(roles[role]["statements"], request)


LOGIN = {profile: _secret_arn(f"mlflow-server-credentials/users/{profile}/login") for profile in ("alice", "bob")}
ADMIN = _secret_arn("mlflow-server-credentials")


def _iam_sign_in(request: pytest.FixtureRequest) -> bool:
    """Whether this run's ``roles`` are those of IAM sign-in (the fixture's parameter)."""
    return bool(request.node.callspec.params["resolver"] == "iam")


@pytest.mark.parametrize("profile", ["alice", "bob"])
def test_a_profile_reads_its_own_login_and_no_other(roles, profile: str, request: pytest.FixtureRequest) -> None:
    """With IAM sign-in the profile's roles sign their requests instead: they read no login at all."""
    other = "bob" if profile == "alice" else "alice"
    own = "ImplicitDeny" if _iam_sign_in(request) else "Allow"
    for kind in ("ExecutionRole", "TrainingRole"):
        role = f"{profile}/{kind}"
        assert _decide(roles, role, Request("secretsmanager:GetSecretValue", LOGIN[profile])) == own
        assert _decide(roles, role, Request("secretsmanager:GetSecretValue", LOGIN[other])) != "Allow"


def test_only_profile_roles_may_call_an_api_and_only_with_iam_sign_in(roles, request: pytest.FixtureRequest) -> None:
    callers = {
        role
        for role, found in roles.items()
        if any("execute-api" in str(statement.get("Action")) for statement in found["statements"])
    }
    profile_roles = {"alice/ExecutionRole", "alice/TrainingRole", "bob/ExecutionRole", "bob/TrainingRole"}
    assert callers == (profile_roles if _iam_sign_in(request) else set())


def test_no_sagemaker_role_reads_the_admin_login(roles) -> None:
    for role in roles:
        assert _decide(roles, role, Request("secretsmanager:GetSecretValue", ADMIN)) != "Allow", role


def test_the_serving_role_reads_no_login_at_all(roles) -> None:
    for secret in (ADMIN, *LOGIN.values()):
        assert _decide(roles, "ServingRole", Request("secretsmanager:GetSecretValue", secret)) != "Allow"


@pytest.mark.parametrize(
    "action", ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:GetObjectVersion", "s3:PutObjectTagging"]
)
def test_every_role_is_denied_mlflows_artifact_prefix(roles, action: str) -> None:
    """Explicitly: a policy added later cannot open it by accident."""
    for key in ("mlflow-artifacts/1/abc/artifacts/model/model.pkl", "mlflow-artifacts/1/abc/artifacts/m/model.tar.gz"):
        request = Request(action, f"arn:aws:s3:::{BUCKET}/{key}")
        for role in roles:
            assert _decide(roles, role, request) == "Deny", (role, request)


def test_no_role_lists_mlflows_artifact_prefix(roles) -> None:
    """A listing would name every experiment's runs and artifact files, readable in MLflow or not."""
    bucket = f"arn:aws:s3:::{BUCKET}"
    # Every prefix a listing of mlflow-artifacts/ could start with, the model copies, the whole bucket,
    # every profile's job keys at once.
    for prefix in ("mlflow-artifacts/", "mlflow-artifacts/1/", "mlflow-", "m", "", "model-deployments/", "*",
                   "sagemaker/", "sagemaker/mlflow-"):  # fmt: skip
        for role in roles:
            request = Request("s3:ListBucket", bucket, {"s3:prefix": prefix})
            assert _decide(roles, role, request) != "Allow", (role, prefix)
    for role in roles:
        assert _decide(roles, role, Request("s3:ListBucket", bucket)) != "Allow", role
    for profile in ("alice", "bob"):
        own = PREFIXES[profile]
        for prefix in (f"sagemaker/{own}", f"sagemaker/{own}train-1/output/"):
            request = Request("s3:ListBucket", bucket, {"s3:prefix": prefix})
            assert _decide(roles, f"{profile}/ExecutionRole", request) == "Allow", prefix


def test_each_profile_passes_only_its_own_training_and_serving_roles(roles) -> None:
    for profile, other in PROFILE_PAIRS:
        studio = f"{profile}/ExecutionRole"
        passes = {
            target: _decide(roles, studio, Request("iam:PassRole", roles[target]["arn"], TO_SAGEMAKER))
            for target in roles
        }
        assert {target for target, decision in passes.items() if decision == "Allow"} == {
            f"{profile}/TrainingRole",
            f"{profile}/ServingRole",
        }, passes
        # The other profile's training role would hand out the other user's login, its serving
        # role the other profile's models; the registry's role is the deployment worker's.
        assert passes[f"{other}/TrainingRole"] != "Allow"
        assert passes[f"{other}/ServingRole"] != "Allow"
        assert passes["ServingRole"] != "Allow"


def test_workload_roles_write_only_their_own_keys(roles) -> None:
    own = PREFIXES["alice"]
    code = Request("s3:PutObject", f"arn:aws:s3:::{BUCKET}/sagemaker/{own}train-1/output/model.tar.gz")
    model_data = Request("s3:GetObject", f"arn:aws:s3:::{BUCKET}/{own}demo-1-model-x/model.tar.gz")
    assert _decide(roles, "alice/TrainingRole", code) == "Allow"
    assert _decide(roles, "alice/ServingRole", code) != "Allow"
    assert _decide(roles, "alice/ServingRole", model_data) == "Allow"
    assert _decide(roles, "alice/ServingRole", Request("s3:PutObject", model_data.resource)) != "Allow"
    assert _decide(roles, "alice/TrainingRole", model_data) != "Allow"
    # The registry's endpoints read their copies (model_deployments), never the workflow's model data.
    assert _decide(roles, "ServingRole", model_data) != "Allow"


def _endpoint_log(endpoint: str) -> str:
    """Where SageMaker logs an endpoint's containers: a group named after the endpoint."""
    return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{endpoint}:log-stream:AllTraffic/i-1"


def test_a_models_code_writes_only_its_own_endpoints_logs(roles) -> None:
    """A model's code runs as its serving role: it must not write lines into others' endpoint logs."""
    registry = _endpoint_log(REGISTRY_NAME)
    for profile, other in PROFILE_PAIRS:
        serving = f"{profile}/ServingRole"
        assert (
            _decide(roles, serving, Request("logs:PutLogEvents", _endpoint_log(f"{PREFIXES[profile]}demo-1")))
            == "Allow"
        )
        for endpoint in (_endpoint_log(f"{PREFIXES[other]}demo-1"), registry, _endpoint_log("production-model")):
            assert _decide(roles, serving, Request("logs:PutLogEvents", endpoint)) != "Allow", endpoint
    assert _decide(roles, "ServingRole", Request("logs:PutLogEvents", registry)) == "Allow"
    assert (
        _decide(roles, "ServingRole", Request("logs:PutLogEvents", _endpoint_log(f"{PREFIXES['alice']}demo-1")))
        != "Allow"
    )


def _log_group(group: str) -> str:
    return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}"


@pytest.mark.parametrize("profile, other", PROFILE_PAIRS)
def test_a_notebook_reads_and_writes_only_its_own_endpoints_logs(roles, profile: str, other: str) -> None:
    """An endpoint's log is what its model's code prints: another profile's (or the registry's) is not
    this profile's to read, nor to add lines to. Studio's and the training jobs' groups stay open."""
    execution = f"{profile}/ExecutionRole"
    own = f"{PREFIXES[profile]}demo-1"
    for action in ("logs:GetLogEvents", "logs:PutLogEvents", "logs:CreateLogStream"):
        assert _decide(roles, execution, Request(action, _endpoint_log(own))) == "Allow", action
        for endpoint in (f"{PREFIXES[other]}demo-1", REGISTRY_NAME):
            assert _decide(roles, execution, Request(action, _endpoint_log(endpoint))) == "Deny", (action, endpoint)
    endpoints = names.ENDPOINT_LOG_GROUP_PREFIX
    assert _decide(roles, execution, Request("logs:DescribeLogStreams", _log_group(f"{endpoints}{own}"))) == "Allow"
    for endpoint in (f"{PREFIXES[other]}demo-1", REGISTRY_NAME):
        described = Request("logs:DescribeLogStreams", _log_group(f"{endpoints}{endpoint}"))
        assert _decide(roles, execution, described) == "Deny", endpoint
    studio = _log_group(f"/aws/sagemaker/studio:log-stream:{DOMAIN}/{profile}/JupyterLab/default")
    assert _decide(roles, execution, Request("logs:GetLogEvents", studio)) == "Allow"


def _job_log(profile: str) -> str:
    """A stream of a training job of `profile` in SageMaker's one training log group."""
    return _log_group(f"{names.TRAINING_LOG_GROUP}:log-stream:{PREFIXES[profile]}job-1/algo-1-1700000000")


@pytest.mark.parametrize("profile, other", PROFILE_PAIRS)
def test_training_logs_are_read_by_their_profile_and_written_by_its_jobs(roles, profile: str, other: str) -> None:
    """One log group holds every profile's jobs: the streams of another's are neither read by the
    notebook nor written by training code (which runs as the training role)."""
    execution, training = f"{profile}/ExecutionRole", f"{profile}/TrainingRole"
    assert _decide(roles, execution, Request("logs:GetLogEvents", _job_log(profile))) == "Allow"
    assert _decide(roles, execution, Request("logs:GetLogEvents", _job_log(other))) == "Deny"
    for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
        assert _decide(roles, training, Request(action, _job_log(profile))) == "Allow", action
        assert _decide(roles, training, Request(action, _job_log(other))) == "Deny", action


@pytest.mark.parametrize("profile, other", PROFILE_PAIRS)
def test_a_profile_reaches_none_of_anothers_workflow(roles, profile: str, other: str) -> None:
    """Endpoints, models, jobs, their model data and job keys: each profile's own, by its name prefix.

    User code runs as the workload roles (the training script, a model's own code), so they are
    held to the profile's keys as well as its execution role.
    """
    theirs = PREFIXES[other]
    bucket = f"arn:aws:s3:::{BUCKET}"
    changes = [
        Request(action, _sagemaker_arn(kind, f"{theirs}demo-20261207-120000"), context)
        for action, kind, context in (
            ("sagemaker:UpdateEndpoint", "endpoint", {}),
            ("sagemaker:DeleteEndpoint", "endpoint", {}),
            ("sagemaker:InvokeEndpoint", "endpoint", {}),
            ("sagemaker:DescribeEndpoint", "endpoint", {}),
            ("sagemaker:AddTags", "endpoint", {}),
            ("sagemaker:CreateEndpoint", "endpoint", {}),
            ("sagemaker:CreateModel", "model", {}),
            ("sagemaker:DeleteModel", "model", {}),
            ("sagemaker:CreateEndpointConfig", "endpoint-config", {"sagemaker:InstanceTypes": ["ml.m5.large"]}),
            ("sagemaker:StopTrainingJob", "training-job", {}),
            ("sagemaker:CreateTrainingJob", "training-job", {"sagemaker:InstanceTypes": ["ml.m5.large"]}),
        )
    ]
    data = [
        Request(action, f"{bucket}/{key}")
        for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
        for key in (f"{theirs}demo-m/model.tar.gz", f"sagemaker/{theirs}train-1/source/sourcedir.tar.gz")
    ]
    for kind in ("ExecutionRole", "TrainingRole", "ServingRole"):
        for request in [*changes, *data]:
            assert _decide(roles, f"{profile}/{kind}", request) != "Allow", (kind, request)
    # The same on its own names is the workflow's.
    own = PREFIXES[profile]
    for request in changes:
        mine = Request(request.action, request.resource.replace(theirs, own), request.context)
        assert _decide(roles, f"{profile}/ExecutionRole", mine) == "Allow", mine
    for request in data:
        mine = Request(request.action, request.resource.replace(theirs, own))
        assert _decide(roles, f"{profile}/ExecutionRole", mine) == "Allow", mine


def _sagemaker_arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name}"


REGISTRY_NAME = names.MODEL_DEPLOYMENT_NAMES.replace("*", "churn-model")
# What a Studio user could do to a registry deployment to step around MLflow's alias
# permissions: serve another model, change or drop the endpoint, squat a name first.
REGISTRY_CHANGES = [
    ("sagemaker:UpdateEndpoint", "endpoint"),
    ("sagemaker:DeleteEndpoint", "endpoint"),
    ("sagemaker:CreateEndpoint", "endpoint"),
    ("sagemaker:UpdateEndpointWeightsAndCapacities", "endpoint"),
    ("sagemaker:AddTags", "endpoint"),
    ("sagemaker:CreateEndpointConfig", "endpoint-config"),
    ("sagemaker:DeleteEndpointConfig", "endpoint-config"),
    ("sagemaker:CreateModel", "model"),
    ("sagemaker:DeleteModel", "model"),
]


@pytest.mark.parametrize("action, kind", REGISTRY_CHANGES)
def test_no_studio_role_changes_a_registry_deployment(roles, action: str, kind: str) -> None:
    """Explicitly denied, though the names share the workflow's `mlflow-` prefix; the same call on the
    workflow's own names stays allowed (SageMaker's ARNs carry the name in lower case)."""
    registry = _sagemaker_arn(kind, REGISTRY_NAME)
    context = {"sagemaker:InstanceTypes": ["ml.m5.large"]} if action == "sagemaker:CreateEndpointConfig" else {}
    for role in roles:
        assert _decide(roles, role, Request(action, registry, context)) != "Allow", (role, action)
    for profile in ("alice", "bob"):
        own = _sagemaker_arn(kind, f"{PREFIXES[profile]}demo-20261207-120000")
        assert _decide(roles, f"{profile}/ExecutionRole", Request(action, registry, context)) == "Deny"
        if action != "sagemaker:UpdateEndpointWeightsAndCapacities":  # not a workflow call anywhere
            assert _decide(roles, f"{profile}/ExecutionRole", Request(action, own, context)) == "Allow", action


def test_studio_users_may_still_look_at_and_call_a_registry_endpoint(roles) -> None:
    endpoint = _sagemaker_arn("endpoint", REGISTRY_NAME)
    for action in ("sagemaker:DescribeEndpoint", "sagemaker:InvokeEndpoint"):
        assert _decide(roles, "alice/ExecutionRole", Request(action, endpoint)) == "Allow", action


# --- Studio's spaces and apps -------------------------------------------------------------

OWNER_KEY, SHARING_KEY = "sagemaker:OwnerUserProfileArn", "sagemaker:SpaceSharingType"
SPACE_CHANGES = ["sagemaker:CreateSpace", "sagemaker:UpdateSpace", "sagemaker:DeleteSpace"]
APP_CHANGES = ["sagemaker:CreateApp", "sagemaker:DeleteApp"]


def _in_domain(kind: str, name: str, domain: str = DOMAIN) -> str:
    return _sagemaker_arn(kind, f"{domain}/{name}")


def _space_of(owner: str, sharing: str, domain: str = DOMAIN) -> dict[str, str | list[str]]:
    """The keys SageMaker sets on a request about a space (or an app in it) that `owner` owns."""
    return {OWNER_KEY: _in_domain("user-profile", owner, domain), SHARING_KEY: sharing}


@pytest.mark.parametrize("profile, other", PROFILE_PAIRS)
def test_a_profile_changes_only_the_spaces_it_owns(roles, profile: str, other: str) -> None:
    """Deleting a private space deletes its volume: another profile's work."""
    role = f"{profile}/ExecutionRole"
    for action in SPACE_CHANGES:
        for sharing in ("Private", "Shared"):
            own = Request(action, _in_domain("space", "work"), _space_of(profile, sharing))
            assert _decide(roles, role, own) == "Allow", own
            for request in (
                Request(action, _in_domain("space", "work"), _space_of(other, sharing)),
                # a profile whose name merely starts with this one's, the same name in another domain
                Request(action, _in_domain("space", "work"), _space_of(f"{profile}-2", sharing)),
                Request(action, _in_domain("space", "work", "d-ffffffffffff"), _space_of(profile, sharing)),
                Request(
                    action, _in_domain("space", "work", "d-ffffffffffff"), _space_of(profile, sharing, "d-ffffffffffff")
                ),
            ):
                assert _decide(roles, role, request) != "Allow", request
        # a space nobody owns (an administrator's), or a request without the key
        for request in (
            Request(action, _in_domain("space", "team"), {SHARING_KEY: "Shared"}),
            Request(action, _in_domain("space", "team")),
        ):
            assert _decide(roles, role, request) != "Allow", request


@pytest.mark.parametrize("profile, other", PROFILE_PAIRS)
def test_apps_start_and_stop_in_own_spaces_and_shared_ones_only(roles, profile: str, other: str) -> None:
    role = f"{profile}/ExecutionRole"
    lab = _in_domain("app", "work/JupyterLab/default")
    # Studio Classic's apps carry the profile's name and no owner key.
    classic = "KernelGateway/datascience-1-0-ml-t3-medium"
    for action in APP_CHANGES:
        allowed = [
            Request(action, lab, _space_of(profile, "Private")),
            Request(action, lab, _space_of(profile, "Shared")),
            Request(action, lab, _space_of(other, "Shared")),
            Request(action, _in_domain("app", f"{profile}/{classic}")),
        ]
        refused = [
            Request(action, lab, _space_of(other, "Private")),
            # another profile's private space named like this profile
            Request(action, _in_domain("app", f"{profile}/JupyterLab/default"), _space_of(other, "Private")),
            Request(action, _in_domain("app", f"{other}/{classic}")),
            Request(action, _in_domain("app", f"{profile}/{classic}", "d-ffffffffffff")),
        ]
        for request in allowed:
            assert _decide(roles, role, request) == "Allow", request
        for request in refused:
            assert _decide(roles, role, request) != "Allow", request


@pytest.mark.parametrize("profile, other", PROFILE_PAIRS)
def test_studio_tags_only_what_it_creates(roles, profile: str, other: str) -> None:
    role = f"{profile}/ExecutionRole"
    on_create = {"sagemaker:TaggingAction": "CreateSpace"}
    assert _decide(roles, role, Request("sagemaker:AddTags", _in_domain("space", "work"), on_create)) == "Allow"
    for resource in (
        _in_domain("space", "work"),
        _in_domain("app", "work/JupyterLab/default"),
        _in_domain("user-profile", other),
        _in_domain("user-profile", profile),
        _sagemaker_arn("domain", DOMAIN),
    ):
        assert _decide(roles, role, Request("sagemaker:AddTags", resource)) != "Allow", resource
    assert _decide(roles, role, Request("sagemaker:AddTags", _in_domain("user-profile", other), on_create)) != "Allow"


def test_a_profile_still_sees_the_domains_profiles_spaces_and_apps(roles) -> None:
    for action, resource in (
        ("sagemaker:DescribeDomain", _sagemaker_arn("domain", DOMAIN)),
        ("sagemaker:DescribeUserProfile", _in_domain("user-profile", "bob")),
        ("sagemaker:DescribeSpace", _in_domain("space", "work")),
        ("sagemaker:DescribeApp", _in_domain("app", "work/JupyterLab/default")),
        ("sagemaker:ListTags", _in_domain("space", "work")),
    ):
        assert _decide(roles, "alice/ExecutionRole", Request(action, resource, _space_of("bob", "Private"))) == "Allow"
        assert (
            _decide(roles, "alice/ExecutionRole", Request(action, resource.replace(DOMAIN, "d-ffffffffffff")))
            != "Allow"
        )


def test_a_profile_named_in_capitals_owns_its_spaces_in_either_spelling() -> None:
    """SageMaker writes some ARNs in lower case: the owner key may name `Carol` as `carol`."""
    app = App()
    stack = Stack(app, "Studio")
    role = StudioExecutionRole(
        stack, "Carol", profile="Carol", name_prefix=names.workflow_name_prefix("Carol"),
        credentials_secret_arn=None, credentials_secret_name="login",
        training_role=iam.Role(stack, "Training", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com")),
        serving_role=iam.Role(stack, "Serving", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com")),
        artifact_access_policy=iam.ManagedPolicy(
            stack, "Artifacts", statements=[iam.PolicyStatement(actions=["s3:GetObject"], resources=["*"])]
        ),
        output_stack_names=["Outputs"], allowed_instance_types=["ml.m5.large"], serving_repository_arn="*",
        other_name_prefixes=[],
    )  # fmt: skip
    role.allow_studio_in_domain(DOMAIN)
    template = assertions.Template.from_stack(stack).to_json()
    resolver = AppResolver({"Studio": template}, Environment(account=ACCOUNT, region=REGION))
    (role_id,) = [r for r in resources(template, "AWS::IAM::Role") if r.startswith("Carol")]
    statements = role_statements(resolver, "Studio", role_id)
    for owner in ("Carol", "carol"):
        request = Request("sagemaker:DeleteSpace", _in_domain("space", "work"), _space_of(owner, "Private"))
        assert evaluate(statements, request) == "Allow", owner
        classic = Request("sagemaker:DeleteApp", _in_domain("app", f"{owner}/KernelGateway/default"))
        assert evaluate(statements, classic) == "Allow", owner
    for owner in ("CAROL", "Caro", "carol-2"):
        request = Request("sagemaker:DeleteSpace", _in_domain("space", "work"), _space_of(owner, "Private"))
        assert evaluate(statements, request) != "Allow", owner


# --- who may open a profile's Studio ---------------------------------------------------------


@pytest.fixture(scope="module")
def launch_policies(resolver: AppResolver) -> dict[str, list[dict[str, Any]]]:
    """profile -> the statements of the managed policy the stack publishes for that profile's person."""
    studio = resolver.templates[names.STUDIO_STACK]
    published = json.loads(
        resolver.resolve(names.STUDIO_STACK, studio["Outputs"][names.OUTPUT_STUDIO_LAUNCH_POLICIES]["Value"])
    )
    by_arn = {
        resolver.attributes(names.STUDIO_STACK, logical_id)["Ref"]: policy["Properties"]["PolicyDocument"]
        for logical_id, policy in resources(studio, "AWS::IAM::ManagedPolicy").items()
    }
    return {
        profile: resolver.resolve(names.STUDIO_STACK, by_arn[arn])["Statement"] for profile, arn in published.items()
    }


@pytest.mark.parametrize("profile, other", PROFILE_PAIRS)
def test_a_launch_policy_opens_studio_as_its_profile_and_no_other(launch_policies, profile: str, other: str) -> None:
    """Whoever opens a profile's Studio works as it (its roles, its MLflow login): one person per profile."""
    statements = launch_policies[profile]
    open_as = "sagemaker:CreatePresignedDomainUrl"
    assert evaluate(statements, Request(open_as, _in_domain("user-profile", profile))) == "Allow"
    for refused in (
        Request(open_as, _in_domain("user-profile", other)),
        Request(open_as, _in_domain("user-profile", f"{profile}-2")),
        Request(open_as, _in_domain("user-profile", profile, "d-ffffffffffff")),
        # Nothing the profile's roles may do comes with it.
        Request("sagemaker:CreateApp", _in_domain("app", f"{profile}/JupyterServer/default")),
        Request("sagemaker:UpdateUserProfile", _in_domain("user-profile", profile)),
        Request("secretsmanager:GetSecretValue", LOGIN[profile]),
        Request("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/anything", TO_SAGEMAKER),
        Request("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/anything"),
    ):
        assert evaluate(statements, refused) != "Allow", refused
    # The console still finds its way there.
    for action, resource in (
        ("sagemaker:ListUserProfiles", "*"),
        ("sagemaker:DescribeDomain", _sagemaker_arn("domain", DOMAIN)),
        ("sagemaker:DescribeUserProfile", _in_domain("user-profile", other)),
    ):
        assert evaluate(statements, Request(action, resource)) == "Allow", action
