"""The synthesized Studio execution role allows every AWS call the workflow makes, and little else.

The calls are the ones the notebook run actually made (recorded in every
process it started, see studio_flow.py), plus what SageMaker does with the
passed role and the online-only calls (tests/lab/flow_requests.py). The policy is the
one `cdk synth` produces, intrinsics resolved to the moto resources the flow
used (tests/lab/cfn_policies.py), evaluated with tests/lab/iam_policy.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from stacks import names
from tests.integration import studio_flow
from tests.integration.studio_flow import ROLE_NAME
from tests.lab.cfn_policies import AppResolver, Environment, role_statements
from tests.lab.flow_requests import FlowMapper
from tests.lab.iam_policy import Request, allowing_statement, evaluate
from tests.synth import synth_templates

# One worker executes the notebook once for all three Studio modules.
pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.xdist_group("studio")]

# The Studio e2e fixtures live in studio_flow.py (tests/integration/conftest.py is the proxy suite's).
notebook_run = studio_flow.notebook_run
studio_aws = studio_flow.studio_aws


def studio_role_id(template: dict[str, Any]) -> str:
    """The one role in the Studio stack that SageMaker assumes."""
    roles = [
        logical
        for logical, res in template["Resources"].items()
        if res["Type"] == "AWS::IAM::Role"
        and any(
            s.get("Principal", {}).get("Service") == "sagemaker.amazonaws.com"
            for s in res["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        )
    ]
    assert len(roles) == 1, roles
    return roles[0]


@pytest.fixture(scope="module")
def role_policy(studio_aws) -> list[dict[str, Any]]:
    templates = synth_templates()
    vpc = templates[names.VPC_STACK]
    bucket_id = vpc["Outputs"][names.OUTPUT_ARTIFACT_BUCKET]["Value"]["Ref"]
    (secret_id,) = [
        logical
        for logical, res in vpc["Resources"].items()
        if res["Type"] == "AWS::SecretsManager::Secret" and res["Properties"].get("Name") == "mlflow-server-credentials"
    ]
    role_id = studio_role_id(templates[names.STUDIO_STACK])
    env = Environment(
        account=studio_aws.account,
        region=studio_aws.region,
        bindings={
            (names.VPC_STACK, bucket_id): {"Ref": studio_aws.bucket},
            (names.VPC_STACK, secret_id): {"Ref": studio_aws.secret_arn},
            (names.STUDIO_STACK, role_id): {"Ref": ROLE_NAME},
        },
    )
    return role_statements(AppResolver(templates, env), names.STUDIO_STACK, role_id)


@pytest.fixture(scope="module")
def mapper(studio_aws, mlflow_stack) -> FlowMapper:
    test_prefix = mlflow_stack.artifacts_destination.split("/", 3)[3].strip("/") + "/"
    deployed_prefix = names.ARTIFACT_PREFIX + "/"
    secrets = {"mlflow-server-credentials": studio_aws.secret_arn}

    def s3_key(bucket: str, key: str) -> str:
        # The local server's artifact root differs from the deployed one only by its prefix.
        if bucket == studio_aws.bucket and key.startswith(test_prefix):
            return deployed_prefix + key[len(test_prefix) :]
        return key

    def stack_arn(name: str) -> str:
        if name == names.GATEWAY_STACK:
            return studio_aws.gateway_stack_id
        return f"arn:aws:cloudformation:{studio_aws.region}:{studio_aws.account}:stack/{name}/0000"

    return FlowMapper(
        account=studio_aws.account,
        region=studio_aws.region,
        secret_arn=lambda secret_id: secrets.get(secret_id, secret_id),
        stack_arn=stack_arn,
        s3_key=s3_key,
    )


def flow_requests(notebook_run, mapper: FlowMapper) -> list[Request]:
    calls = notebook_run.calls
    requests = [r for call in calls for r in mapper.requests_for_call(call)]
    requests += mapper.service_side_requests(calls)
    requests += mapper.online_only_requests(calls)
    return list(dict.fromkeys(requests))  # unique, in order


def test_the_recorded_flow_is_the_whole_flow(notebook_run):
    """Guard against a vacuous pass: every stage of the workflow is in the recording."""
    made = {f"{c['service']}:{c['operation']}" for c in notebook_run.calls}
    assert {
        "cloudformation:DescribeStacks",
        "secretsmanager:GetSecretValue",
        "ssm:GetParameter",
        "iam:GetRole",
        "s3:PutObject",
        "s3:GetObject",
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
    # Calls from the training job's own process (train.py configuring MLflow) are in it too.
    assert len({c["pid"] for c in notebook_run.calls if c["operation"] == "GetSecretValue"}) == 2


def test_every_call_of_the_flow_is_allowed(notebook_run, mapper, role_policy):
    requests = flow_requests(notebook_run, mapper)
    denied = [r for r in requests if evaluate(role_policy, r) != "Allow"]
    assert not denied, "the Studio role denies:\n" + "\n".join(f"  {r}  <- {r.why}" for r in denied)
    # Each allow comes from a statement with a Sid (readable policy, nothing anonymous).
    assert all(allowing_statement(role_policy, r).get("Sid") for r in requests)


def test_calls_outside_the_flow_are_denied(studio_aws, role_policy):
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
        Request("cloudformation:DeleteStack", studio_aws.gateway_stack_id),
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
        Request("iam:PassRole", studio_aws.role_arn, {"iam:PassedToService": "ec2.amazonaws.com"}),
        Request("iam:PassRole", f"arn:aws:iam::{a}:role/Admin", {"iam:PassedToService": "sagemaker.amazonaws.com"}),
        Request("iam:CreateRole", "*"),
        Request("iam:PutRolePolicy", studio_aws.role_arn),
        Request("ecr:BatchGetImage", f"arn:aws:ecr:{r}:{a}:repository/private-team-image"),
        Request("ecr:PutImage", f"arn:aws:ecr:{r}:{a}:repository/mlflow-pyfunc"),
        Request("codebuild:StartBuild", f"arn:aws:codebuild:{r}:{a}:project/other-project"),
        # The serving image build runs privileged and pushes what endpoints pull: only the deploy starts it.
        Request("codebuild:StartBuild", f"arn:aws:codebuild:{r}:{a}:project/{names.SERVING_IMAGE_BUILD_PROJECT}"),
        Request("ecr:PutImage", f"arn:aws:ecr:{r}:{a}:repository/{names.SERVING_IMAGE_REPOSITORY}"),
    ]
    allowed = [req for req in outside if evaluate(role_policy, req) == "Allow"]
    assert not allowed, "the Studio role allows more than the flow needs:\n" + "\n".join(map(str, allowed))
