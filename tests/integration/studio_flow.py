"""Fixtures for the Studio workflow e2e tests: what the stacks leave in AWS, made in moto.

`studio_aws` creates, in the session's moto server, what a deployed project
offers a Studio user: the gateway stack with its TrackingUrl output (pointing
at the local nginx proxy), MLflowVpcStack's CredentialsSecretName output, the
SSM parameters, the credentials secret (the proxy's real user) under a
configured, non-default name, the Studio execution role tagged with that name
and its workload roles, the training role (tagged the same) and the serving
role, and a built `mlflow-pyfunc` image. `studio_env()` is the environment of a Studio kernel running as that
role, with every AWS call going to moto. `notebook_run` executes the lab
notebook once per session with RUN_OFFLINE=true and records every AWS call it
and its child processes make (aws_call_recorder/sitecustomize.py).

Test modules import these fixtures by name.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.lab import LAB_DIR  # also puts lab/ and lab/source_dir on sys.path

# isort: split
import mlflow_setup  # noqa: F401  (needs the path above; re-exported for the tests)
import sagemaker_steps

NOTEBOOK = LAB_DIR / "mlflow_sagemaker_workflow.ipynb"
RECORDER_DIR = Path(__file__).resolve().parent / "aws_call_recorder"

ROLE_NAME = "mlflow-studio-execution-role"
TRAINING_ROLE_NAME = "mlflow-studio-training-role"
SERVING_ROLE_NAME = "mlflow-serving-role"
# A configured credentials_secret_name, not the default: the flow must find it by itself.
SECRET_NAME = "team-a/mlflow-login"
OTHER_SECRET_NAME = "another-team-database-password"
# Variables of the test process that must not reach the flow: it finds MLflow
# and AWS by itself, as it does in Studio.
SCRUBBED = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
)


@dataclass
class StudioAws:
    """Names and ARNs of what the fake deployment holds in moto."""

    endpoint_url: str
    region: str
    account: str
    bucket: str
    tracking_url: str
    username: str
    password: str = field(repr=False)
    role_arn: str = ""
    training_role_arn: str = ""
    serving_role_arn: str = ""
    secret_name: str = SECRET_NAME
    secret_arn: str = ""
    other_secret_arn: str = ""
    gateway_stack_id: str = ""
    credentials: dict[str, str] = field(default_factory=dict, repr=False)

    def env(self, call_log: Path | None = None) -> dict[str, str]:
        """A Studio kernel's AWS environment: the execution role, moto as every endpoint."""
        env = {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.credentials["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": self.credentials["SecretAccessKey"],
            "AWS_SESSION_TOKEN": self.credentials["SessionToken"],
            "RUN_OFFLINE": "true",
            "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
        }
        if call_log is not None:
            env["AWS_CALL_LOG"] = str(call_log)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(RECORDER_DIR), os.environ.get("PYTHONPATH", "")) if p)
        return env


def gateway_template(tracking_url: str) -> dict[str, Any]:
    """The part of HttpGatewayStack the workflow reads: its URL output and SSM parameter."""
    return {
        "Resources": {
            "TrackingUrlParameter": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": "/mlflow/tracking-url", "Type": "String", "Value": tracking_url},
            }
        },
        "Outputs": {"TrackingUrl": {"Value": tracking_url}},
    }


def outputs_template(outputs: dict[str, str]) -> dict[str, Any]:
    """A stack that only publishes outputs (what the flow reads of MLflowVpcStack and the Studio stack)."""
    return {
        "Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }


def _exists(error: Exception) -> bool:
    code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
    return "Exists" in code or "AlreadyExists" in code


def once_per_session(request: pytest.FixtureRequest, key: pytest.StashKey[Any], make: Any) -> Any:
    """Run `make` once per test session, even though several modules import the fixture.

    A fixture imported into two test modules is two fixtures to pytest, each
    with its own session cache; the stash makes them share one result (or one
    failure), so the notebook runs once.
    """
    stash = request.config.stash
    if key not in stash:
        try:
            stash[key] = ("ok", make())
        except Exception as error:  # noqa: BLE001 - re-raised for every user below
            stash[key] = ("error", error)
    status, value = stash[key]
    if status == "error":
        raise value
    return value


_STUDIO_AWS = pytest.StashKey[Any]()
_NOTEBOOK_RUN = pytest.StashKey[Any]()


@pytest.fixture(scope="session")
def studio_aws(request, mlflow_stack, moto_server) -> StudioAws:
    """What the three stacks give a Studio user, created in moto (once per session)."""
    return once_per_session(request, _STUDIO_AWS, lambda: _create_studio_aws(mlflow_stack, moto_server))


def _create_studio_aws(mlflow_stack, moto_server) -> StudioAws:
    aws = StudioAws(
        endpoint_url=moto_server.endpoint_url,
        region="us-east-1",
        account="123456789012",
        bucket=mlflow_stack.bucket,
        tracking_url=mlflow_stack.proxy_url,
        username=mlflow_stack.username,
        password=mlflow_stack.password,
    )
    iam, sts = moto_server.client("iam"), moto_server.client("sts")

    def role(name: str, tags: dict[str, str]) -> str:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        try:
            iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(trust),
                Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            )
        except Exception as error:  # noqa: BLE001 - only "already exists" is fine
            if not _exists(error):
                raise
        return iam.get_role(RoleName=name)["Role"]["Arn"]

    # As SageMakerStudioUserStack tags them (stacks/components/studio_execution_role.py, workload_roles.py).
    aws.serving_role_arn = role(SERVING_ROLE_NAME, {})
    aws.training_role_arn = role(TRAINING_ROLE_NAME, {"mlflow:credentials-secret": SECRET_NAME})
    aws.role_arn = role(
        ROLE_NAME,
        {
            "mlflow:credentials-secret": SECRET_NAME,
            "mlflow:training-role": aws.training_role_arn,
            "mlflow:serving-role": aws.serving_role_arn,
        },
    )
    aws.credentials = sts.assume_role(RoleArn=aws.role_arn, RoleSessionName="SageMaker")["Credentials"]

    secrets = moto_server.client("secretsmanager")
    for name, value in (
        (SECRET_NAME, {"username": aws.username, "password": aws.password}),
        (OTHER_SECRET_NAME, {"password": "not-for-studio"}),
    ):
        try:
            secrets.create_secret(Name=name, SecretString=json.dumps(value))
        except Exception as error:  # noqa: BLE001
            if not _exists(error):
                raise
            secrets.put_secret_value(SecretId=name, SecretString=json.dumps(value))
    aws.secret_arn = secrets.describe_secret(SecretId=SECRET_NAME)["ARN"]
    aws.other_secret_arn = secrets.describe_secret(SecretId=OTHER_SECRET_NAME)["ARN"]

    cfn = moto_server.client("cloudformation")
    for stack, template in (
        ("HttpGatewayStack", gateway_template(aws.tracking_url)),
        ("MLflowVpcStack", outputs_template({"CredentialsSecretName": SECRET_NAME})),
        ("SageMakerStudioUserStack", outputs_template({"ServingRoleArn": aws.serving_role_arn})),
    ):
        try:
            cfn.create_stack(StackName=stack, TemplateBody=json.dumps(template))
        except Exception as error:  # noqa: BLE001
            if not _exists(error):
                raise
    aws.gateway_stack_id = cfn.describe_stacks(StackName="HttpGatewayStack")["Stacks"][0]["StackId"]
    moto_server.client("ssm").put_parameter(
        Name="/mlflow/artifact-bucket", Value=aws.bucket, Type="String", Overwrite=True
    )

    ecr = moto_server.client("ecr")
    try:
        ecr.create_repository(repositoryName="mlflow-pyfunc")
    except Exception as error:  # noqa: BLE001
        if not _exists(error):
            raise
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "digest": "sha256:" + "0" * 64,
            "size": 1,
            "mediaType": "application/vnd.docker.container.image.v1+json",
        },
        "layers": [],
    }
    try:
        ecr.put_image(
            repositoryName="mlflow-pyfunc",
            imageManifest=json.dumps(manifest),
            imageTag=sagemaker_steps.pinned_mlflow_version(),
        )
    except Exception as error:  # noqa: BLE001
        if not _exists(error):
            raise
    return aws


@contextmanager
def studio_env(aws: StudioAws, call_log: Path | None = None) -> Iterator[dict[str, str]]:
    """This process (and its children) as a Studio kernel: role credentials, moto, no MLflow vars."""
    import boto3

    env = aws.env(call_log)
    with pytest.MonkeyPatch.context() as patch:
        for name in SCRUBBED:
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        boto3.DEFAULT_SESSION = None  # no credentials cached from before
        try:
            yield env
        finally:
            boto3.DEFAULT_SESSION = None


def read_calls(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class NotebookRun:
    notebook: Any
    calls: list[dict[str, Any]]
    workdir: Path

    def outputs(self) -> str:
        """All text the executed cells printed or displayed."""
        texts = []
        for cell in self.notebook.cells:
            for output in cell.get("outputs", []):
                texts.append(output.get("text", ""))
                texts.append(output.get("data", {}).get("text/plain", ""))
        return "\n".join(texts)


def copy_lab(target: Path) -> Path:
    """The notebook's view of the repo (lab/ and the MLflow pin), so it writes nothing in it."""
    shutil.copytree(LAB_DIR, target / "lab", ignore=shutil.ignore_patterns("__pycache__", "requirements.txt"))
    pin = target / "docker" / "mlflow"
    pin.mkdir(parents=True)
    shutil.copy(sagemaker_steps.PINNED_REQUIREMENTS, pin / "requirements.txt")
    return target / "lab"


@pytest.fixture(scope="session")
def notebook_run(request, studio_aws: StudioAws, tmp_path_factory: pytest.TempPathFactory) -> NotebookRun:
    """The lab notebook executed cell by cell, offline, with its AWS calls recorded (once)."""
    return once_per_session(request, _NOTEBOOK_RUN, lambda: _execute_notebook(studio_aws, tmp_path_factory))


def _execute_notebook(studio_aws: StudioAws, tmp_path_factory: pytest.TempPathFactory) -> NotebookRun:
    root = tmp_path_factory.mktemp("notebook")
    lab = copy_lab(root)
    call_log = root / "aws-calls.jsonl"
    notebook = nbformat.read(lab / NOTEBOOK.name, as_version=4)
    with studio_env(studio_aws, call_log):
        NotebookClient(
            notebook,
            timeout=600,
            kernel_name="python3",
            resources={"metadata": {"path": str(lab)}},
        ).execute()
    nbformat.write(notebook, root / "executed.ipynb")  # kept for debugging a failure
    return NotebookRun(notebook=notebook, calls=read_calls(call_log), workdir=lab)
