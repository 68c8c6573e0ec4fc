"""The synthesized roles allow every AWS call the workflow makes, each as the role that makes it, and little else.

The calls are the ones the notebook run actually made (recorded in every
process it started, see studio_flow.py): the notebook's as the Studio
execution role, the training job's process as the training role. Added are
what SageMaker does with each passed role (the training job as the training
role, the model and endpoint as the serving role) and the online-only calls
(tests/lab/flow_requests.py). The policies are the ones `cdk synth` produces
with the same non-default credentials_secret_name, intrinsics resolved to the
moto resources the flow used (tests/lab/cfn_policies.py), evaluated with
tests/lab/iam_policy.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from stacks import names
from tests.integration import studio_flow
from tests.integration.studio_flow import ROLE_NAME, SECRET_NAME, SERVING_ROLE_NAME, TRAINING_ROLE_NAME
from tests.lab.cfn_policies import AppResolver, Environment, role_statements
from tests.lab.flow_requests import FlowMapper
from tests.lab.iam_policy import Request, allowing_statement, evaluate
from tests.synth import synth_templates

# One worker executes the notebook once for all three Studio modules.
pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.xdist_group("studio")]

# The Studio e2e fixtures live in studio_flow.py (tests/integration/conftest.py is the proxy suite's).
notebook_run = studio_flow.notebook_run
studio_aws = studio_flow.studio_aws


def sagemaker_role_ids(template: dict[str, Any]) -> dict[str, str]:
    """Kind -> logical id of the roles SageMaker assumes in a one-profile Studio stack.

    The profile's roles (logical ids under its `User<profile>` construct) and the stack's own:
    the domain's default role and the registry endpoints' serving role.
    """
    found: dict[str, str] = {}
    for logical, res in template["Resources"].items():
        if res["Type"] == "AWS::IAM::Role" and any(
            s.get("Principal", {}).get("Service") == "sagemaker.amazonaws.com"
            for s in res["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        ):
            kind = next(
                (k for k in ("ExecutionRole", "TrainingRole", "ServingRole", "DefaultRole") if k in logical), None
            )
            if kind == "ServingRole" and not logical.startswith("User"):
                kind = "RegistryServingRole"
            assert kind and kind not in found, logical
            found[kind] = logical
    assert set(found) == {"ExecutionRole", "TrainingRole", "ServingRole", "DefaultRole", "RegistryServingRole"}
    return found


@pytest.fixture(scope="module")
def policies(studio_aws) -> dict[str, list[dict[str, Any]]]:
    """Role ARN (as in moto) -> its synthesized statements."""
    templates = synth_templates(credentials_secret_name=SECRET_NAME)
    vpc = templates[names.VPC_STACK]
    bucket_id = vpc["Outputs"][names.OUTPUT_ARTIFACT_BUCKET]["Value"]["Ref"]
    (secret_id,) = [
        logical
        for logical, res in vpc["Resources"].items()
        if res["Type"] == "AWS::SecretsManager::Secret" and res["Properties"].get("Name") == SECRET_NAME
    ]
    roles = sagemaker_role_ids(templates[names.STUDIO_STACK])
    moto_roles = {
        "ExecutionRole": (ROLE_NAME, studio_aws.role_arn),
        "TrainingRole": (TRAINING_ROLE_NAME, studio_aws.training_role_arn),
        "ServingRole": (SERVING_ROLE_NAME, studio_aws.serving_role_arn),
    }
    env = Environment(
        account=studio_aws.account,
        region=studio_aws.region,
        bindings={
            (names.VPC_STACK, bucket_id): {"Ref": studio_aws.bucket},
            (names.VPC_STACK, secret_id): {"Ref": studio_aws.secret_arn},
            **{(names.STUDIO_STACK, roles[kind]): {"Ref": name} for kind, (name, _) in moto_roles.items()},
        },
    )
    resolver = AppResolver(templates, env)
    return {arn: role_statements(resolver, names.STUDIO_STACK, roles[kind]) for kind, (_, arn) in moto_roles.items()}


@pytest.fixture(scope="module")
def mapper(studio_aws, mlflow_stack, moto_server) -> FlowMapper:
    test_prefix = mlflow_stack.artifacts_destination.split("/", 3)[3].strip("/") + "/"
    deployed_prefix = names.ARTIFACT_PREFIX + "/"
    secrets = {SECRET_NAME: studio_aws.secret_arn}

    def s3_key(bucket: str, key: str) -> str:
        # The local server's artifact root differs from the deployed one only by its prefix.
        if bucket == studio_aws.bucket and key.startswith(test_prefix):
            return deployed_prefix + key[len(test_prefix) :]
        return key

    cfn = moto_server.client("cloudformation")
    stack_ids = {stack["StackName"]: stack["StackId"] for stack in cfn.describe_stacks()["Stacks"]}

    def stack_arn(name: str) -> str:
        return stack_ids.get(name, f"arn:aws:cloudformation:{studio_aws.region}:{studio_aws.account}:stack/{name}/0000")

    return FlowMapper(
        account=studio_aws.account,
        region=studio_aws.region,
        secret_arn=lambda secret_id: secrets.get(secret_id, secret_id),
        stack_arn=stack_arn,
        s3_key=s3_key,
    )


def flow_requests(notebook_run, mapper: FlowMapper, studio_aws) -> dict[str, list[Request]]:
    """Role ARN -> the requests made as that role, unique and in order."""
    by_role: dict[str, list[Request]] = {studio_aws.role_arn: [], studio_aws.training_role_arn: []}
    for call in notebook_run.calls:
        # A training job's process runs as the job's role (run_like_training_job assumes it).
        role = studio_aws.training_role_arn if call.get("job") else studio_aws.role_arn
        by_role[role] += mapper.requests_for_call(call)
    for role, requests in mapper.service_side_requests(notebook_run.calls).items():
        by_role.setdefault(role, []).extend(requests)
    by_role[studio_aws.role_arn] += mapper.online_only_requests(notebook_run.calls)
    return {role: list(dict.fromkeys(requests)) for role, requests in by_role.items()}


def test_the_recorded_flow_is_the_whole_flow(notebook_run, studio_aws, mapper):
    """Guard against a vacuous pass: every stage of the workflow is in the recording, as the right role."""
    made = {f"{c['service']}:{c['operation']}" for c in notebook_run.calls if not c.get("job")}
    assert {
        "cloudformation:DescribeStacks",
        "secretsmanager:GetSecretValue",
        "ssm:GetParameter",
        "iam:GetRole",
        "s3:PutObject",
        "sagemaker:CreateTrainingJob",
        "sagemaker:DescribeTrainingJob",
        "ecr:DescribeImages",
        "sagemaker:CreateModel",
        "sagemaker:CreateEndpointConfig",
        "sagemaker:CreateEndpoint",
        "sagemaker:DeleteEndpoint",
        "sagemaker:DeleteEndpointConfig",
        "sagemaker:DeleteModel",
    } <= made
    # The training job's own process read its login through its role's tag.
    in_job = {f"{c['service']}:{c['operation']}" for c in notebook_run.calls if c.get("job")}
    assert {"iam:GetRole", "secretsmanager:GetSecretValue", "cloudformation:DescribeStacks"} <= in_job
    roles = flow_requests(notebook_run, mapper, studio_aws)
    assert set(roles) == {studio_aws.role_arn, studio_aws.training_role_arn, studio_aws.serving_role_arn}
    assert any(
        r.action == "s3:GetObject" and r.resource.endswith("/model.tar.gz") for r in roles[studio_aws.serving_role_arn]
    )


def test_every_call_of_the_flow_is_allowed_to_the_role_that_makes_it(notebook_run, mapper, policies, studio_aws):
    names_by_arn = {
        studio_aws.role_arn: "Studio",
        studio_aws.training_role_arn: "training",
        studio_aws.serving_role_arn: "serving",
    }
    denied = []
    for role, requests in flow_requests(notebook_run, mapper, studio_aws).items():
        statements = policies[role]
        denied += [f"  {names_by_arn[role]}: {r}  <- {r.why}" for r in requests if evaluate(statements, r) != "Allow"]
        # Each allow comes from a statement with a Sid (readable policy, nothing anonymous).
        assert all(allowing_statement(statements, r).get("Sid") for r in requests if evaluate(statements, r) == "Allow")
    assert not denied, "denied:\n" + "\n".join(denied)


def test_calls_outside_the_flow_are_denied(studio_aws, policies):
    a, r = studio_aws.account, studio_aws.region
    bucket = f"arn:aws:s3:::{studio_aws.bucket}"
    outside = [
        Request("secretsmanager:GetSecretValue", studio_aws.other_secret_arn),
        Request(
            "secretsmanager:GetSecretValue",
            f"arn:aws:secretsmanager:{r}:{a}:secret:MLflowVpcStackDatabaseSecret-AbCdEf",
        ),
        Request("secretsmanager:PutSecretValue", studio_aws.secret_arn),
        Request("cloudformation:DescribeStacks", f"arn:aws:cloudformation:{r}:{a}:stack/SomeOtherStack/1"),
        Request("cloudformation:DeleteStack", f"arn:aws:cloudformation:{r}:{a}:stack/HttpGatewayStack/1"),
        Request("ssm:GetParameter", f"arn:aws:ssm:{r}:{a}:parameter/other-team/db-password"),
        Request("ssm:PutParameter", f"arn:aws:ssm:{r}:{a}:parameter/mlflow/tracking-url"),
        Request("s3:GetObject", "arn:aws:s3:::another-bucket/mlflow-artifacts/x"),
        Request("s3:PutObject", f"{bucket}/unrelated/file"),
        Request("s3:DeleteBucket", bucket),
        Request("s3:PutBucketPolicy", bucket),
        Request("sagemaker:CreateEndpoint", f"arn:aws:sagemaker:{r}:{a}:endpoint/production-model"),
        Request("sagemaker:DeleteModel", f"arn:aws:sagemaker:{r}:{a}:model/someone-elses-model"),
        Request("sagemaker:CreateTrainingJob", f"arn:aws:sagemaker:{r}:{a}:training-job/bitcoin-miner"),
        Request(
            "sagemaker:CreateTrainingJob",
            f"arn:aws:sagemaker:{r}:{a}:training-job/mlflow-big",
            {"sagemaker:InstanceTypes": ["ml.p4d.24xlarge"]},
        ),
        Request(
            "sagemaker:CreateEndpointConfig",
            f"arn:aws:sagemaker:{r}:{a}:endpoint-config/mlflow-big",
            {"sagemaker:InstanceTypes": ["ml.m5.large", "ml.g5.48xlarge"]},
        ),
        Request("sagemaker:InvokeEndpoint", f"arn:aws:sagemaker:{r}:{a}:endpoint/production-model"),
        Request("iam:PassRole", studio_aws.training_role_arn, {"iam:PassedToService": "ec2.amazonaws.com"}),
        Request("iam:PassRole", f"arn:aws:iam::{a}:role/Admin", {"iam:PassedToService": "sagemaker.amazonaws.com"}),
        Request("iam:CreateRole", "*"),
        Request("iam:PutRolePolicy", studio_aws.role_arn),
        Request("iam:GetRole", f"arn:aws:iam::{a}:role/someone-else"),
        Request("ecr:BatchGetImage", f"arn:aws:ecr:{r}:{a}:repository/private-team-image"),
        Request("ecr:PutImage", f"arn:aws:ecr:{r}:{a}:repository/mlflow-pyfunc"),
        Request("codebuild:StartBuild", f"arn:aws:codebuild:{r}:{a}:project/other-project"),
        # MLflow's artifacts go through MLflow, which checks permissions: no role touches them directly.
        Request("s3:GetObject", f"{bucket}/mlflow-artifacts/1/abc/artifacts/model/model.pkl"),
        Request("s3:PutObject", f"{bucket}/mlflow-artifacts/1/abc/artifacts/model/model.pkl"),
        Request("s3:DeleteObject", f"{bucket}/mlflow-artifacts/1/abc/artifacts/model/model.pkl"),
        Request("s3:GetObject", f"{bucket}/mlflow-artifacts/1/abc/artifacts/model/model.tar.gz"),
        Request("s3:PutObject", f"{bucket}/mlflow-artifacts/1/abc/artifacts/model/model.tar.gz"),
        # The serving image build runs privileged and pushes what endpoints pull: only the deploy starts it.
        Request("codebuild:StartBuild", f"arn:aws:codebuild:{r}:{a}:project/{names.SERVING_IMAGE_BUILD_PROJECT}"),
        Request("ecr:PutImage", f"arn:aws:ecr:{r}:{a}:repository/{names.SERVING_IMAGE_REPOSITORY}"),
    ]
    for role, statements in policies.items():
        allowed = [req for req in outside if evaluate(statements, req) == "Allow"]
        assert not allowed, f"{role} allows more than the flow needs:\n" + "\n".join(map(str, allowed))


def test_the_studio_role_passes_only_the_workload_roles_and_not_itself(studio_aws, policies):
    studio = policies[studio_aws.role_arn]
    to_sagemaker = {"iam:PassedToService": "sagemaker.amazonaws.com"}
    assert evaluate(studio, Request("iam:PassRole", studio_aws.training_role_arn, to_sagemaker)) == "Allow"
    assert evaluate(studio, Request("iam:PassRole", studio_aws.serving_role_arn, to_sagemaker)) == "Allow"
    assert evaluate(studio, Request("iam:PassRole", studio_aws.role_arn, to_sagemaker)) != "Allow"
    for workload in (studio_aws.training_role_arn, studio_aws.serving_role_arn):
        for target in (studio_aws.role_arn, studio_aws.training_role_arn, studio_aws.serving_role_arn):
            assert evaluate(policies[workload], Request("iam:PassRole", target, to_sagemaker)) != "Allow"


def test_the_serving_role_holds_no_mlflow_login_and_writes_no_artifacts(studio_aws, policies):
    serving = policies[studio_aws.serving_role_arn]
    bucket = f"arn:aws:s3:::{studio_aws.bucket}"
    assert evaluate(serving, Request("secretsmanager:GetSecretValue", studio_aws.secret_arn)) != "Allow"
    own = names.workflow_name_prefix(studio_flow.SHARED.profile)
    for key in (
        "mlflow-artifacts/1/abc/artifacts/x",
        f"sagemaker/{own}job/output/model.tar.gz",
        f"{own}demo-m/model.tar.gz",
    ):
        assert evaluate(serving, Request("s3:PutObject", f"{bucket}/{key}")) != "Allow", key
    assert evaluate(serving, Request("s3:GetObject", f"{bucket}/{own}demo-m/model.tar.gz")) == "Allow"
    # Another profile's model data, or a name without a profile's prefix: not this role's.
    for key in (f"{names.workflow_name_prefix('someone-else')}demo-m/model.tar.gz", "mlflow-demo-m/model.tar.gz"):
        assert evaluate(serving, Request("s3:GetObject", f"{bucket}/{key}")) != "Allow", key
    # The training role reads the same login as the notebook (shared mode: the one login), and no other.
    training = policies[studio_aws.training_role_arn]
    assert evaluate(training, Request("secretsmanager:GetSecretValue", studio_aws.secret_arn)) == "Allow"
    assert evaluate(training, Request("s3:PutObject", f"{bucket}/mlflow-artifacts/1/x")) == "Deny"
