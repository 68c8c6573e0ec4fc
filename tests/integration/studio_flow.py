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

`accounts_studio_aws` / `accounts_notebook_run` are the same for accounts
mode: the deployment in another region of the same moto server (so both
coexist in one process), against the session's accounts_stack, the profile
with its own generated login whose MLflow user the account provisioner
(stacks/functions/mlflow_accounts) created as the admin.

`sso_studio_aws` / `sso_notebook_run` are the same for sso mode (a third
region, against the session's sso_stack): the profile's secret holds a
client-credentials app client of the stack's OpenID provider, one the server
knows as a machine user (OIDC_MACHINE_CLIENTS).

`iam_studio_aws` / `iam_notebook_run` are the accounts-mode deployment with IAM
sign-in (a fourth region, against accounts_stack): the gateway stack publishes
the IAM URL (a stand-in for the IAM API in that region), the profile's parameter
maps its execution and training roles to its MLflow user, and the kernel's STS
calls go through localrun/sts_tap.py, so the role sessions moto issues sign in.

Test modules import these fixtures by name.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import string
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from localrun.iam_gateway import CredentialTable, IamGateway, IssuedCredentials
from localrun.services import FAKE_AWS, REPO_ROOT
from localrun.sts_tap import StsTap
from stacks import names
from stacks.iam_callers import profile_parameter
from tests.lab import LAB_DIR  # also puts lab/ and lab/source_dir on sys.path
from tests.temporary_files import keep_temporary_files_in

# isort: split
import mlflow_setup  # needs the path above; re-exported for the tests
import sagemaker_steps
from iam_sign_in import REFRESH_SECONDS  # the image's module (on the path through stacks.auth_modes)

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
    # IAM sign-in: the signed entry point the deployment publishes ("" when it has none), and
    # where the kernel's STS calls go (localrun/sts_tap.py: moto, the sessions registered with it).
    iam_tracking_url: str = ""
    sts_endpoint_url: str = ""

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
        if self.sts_endpoint_url:
            env["AWS_ENDPOINT_URL_STS"] = self.sts_endpoint_url
        if call_log is not None:
            env["AWS_CALL_LOG"] = str(call_log)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(RECORDER_DIR), os.environ.get("PYTHONPATH", "")) if p)
        return env


def gateway_template(tracking_url: str, iam_tracking_url: str = "") -> dict[str, Any]:
    """The part of HttpGatewayStack the workflow reads: its URL outputs and SSM parameters.

    `iam_tracking_url`: the IAM API's, published as the stack does with IAM sign-in on.
    """
    urls = {"TrackingUrl": ("/mlflow/tracking-url", tracking_url)}
    if iam_tracking_url:
        urls["IamTrackingUrl"] = (mlflow_setup.IAM_TRACKING_URL_PARAMETER, iam_tracking_url)
    return {
        "Resources": {
            f"{key}Parameter": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": name, "Type": "String", "Value": url},
            }
            for key, (name, url) in urls.items()
        },
        "Outputs": {key: {"Value": url} for key, (_, url) in urls.items()},
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
_ACCOUNTS_STUDIO_AWS = pytest.StashKey[Any]()
_ACCOUNTS_NOTEBOOK_RUN = pytest.StashKey[Any]()
_SSO_STUDIO_AWS = pytest.StashKey[Any]()
_SSO_NOTEBOOK_RUN = pytest.StashKey[Any]()
_IAM_STUDIO_AWS = pytest.StashKey[Any]()
_IAM_NOTEBOOK_RUN = pytest.StashKey[Any]()


@dataclass(frozen=True)
class StudioNames:
    """Where one fake deployment lives in moto: its region, the profile's roles, the secrets.

    `server_secret` is MLflowVpcStack's credentials secret (its
    CredentialsSecretName output); `login_secret` is the one the profile's
    roles are tagged with: the same in shared mode, the profile's own in
    accounts mode.
    """

    region: str
    role: str
    training_role: str
    serving_role: str
    server_secret: str
    login_secret: str
    # The Studio profile: its roles' SageMaker names and bucket keys start with its prefix.
    profile: str = "mlflow-user"  # the default user_profiles (cdk.json), which the flow test synthesizes


SHARED = StudioNames("us-east-1", ROLE_NAME, TRAINING_ROLE_NAME, SERVING_ROLE_NAME, SECRET_NAME, SECRET_NAME)


@pytest.fixture(scope="session")
def studio_aws(request, mlflow_stack, moto_server) -> StudioAws:
    """What the three stacks give a Studio user, created in moto (once per session)."""
    return once_per_session(
        request,
        _STUDIO_AWS,
        lambda: create_studio_aws(
            mlflow_stack, moto_server, SHARED, login=(mlflow_stack.username, mlflow_stack.password)
        ),
    )


def create_studio_aws(
    stack, moto_server, where: StudioNames, *, login: tuple[str, str], iam_tracking_url: str = ""
) -> StudioAws:
    """The fake deployment in `where`, the profile's roles reading `login` from `where.login_secret`.

    The server secret holds the stack's own credentials (nginx's user in shared
    mode, MLflow's admin in accounts mode). With `iam_tracking_url` the gateway
    stack publishes it too (IAM sign-in).
    """
    aws = StudioAws(
        endpoint_url=moto_server.endpoint_url,
        region=where.region,
        account="123456789012",
        bucket=stack.bucket,
        tracking_url=stack.proxy_url,
        username=login[0],
        password=login[1],
        secret_name=where.login_secret,
        iam_tracking_url=iam_tracking_url,
    )
    iam, sts = moto_server.client("iam"), moto_server.client("sts")

    def client(service: str):
        return moto_server.client(service, region_name=where.region)

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
        except Exception as error:
            if not _exists(error):
                raise
        return iam.get_role(RoleName=name)["Role"]["Arn"]

    # As SageMakerStudioUserStack tags them (stacks/components/studio_execution_role.py, workload_roles.py).
    aws.serving_role_arn = role(where.serving_role, {})
    aws.training_role_arn = role(where.training_role, {"mlflow:credentials-secret": where.login_secret})
    aws.role_arn = role(
        where.role,
        {
            "mlflow:credentials-secret": where.login_secret,
            "mlflow:training-role": aws.training_role_arn,
            "mlflow:serving-role": aws.serving_role_arn,
            "mlflow:name-prefix": names.workflow_name_prefix(where.profile),
        },
    )
    aws.credentials = sts.assume_role(RoleArn=aws.role_arn, RoleSessionName="SageMaker")["Credentials"]

    secrets = client("secretsmanager")
    for name, value in {
        where.server_secret: {"username": stack.username, "password": stack.password},
        where.login_secret: {"username": aws.username, "password": aws.password},
        OTHER_SECRET_NAME: {"password": "not-for-studio"},
    }.items():
        try:
            secrets.create_secret(Name=name, SecretString=json.dumps(value))
        except Exception as error:
            if not _exists(error):
                raise
            secrets.put_secret_value(SecretId=name, SecretString=json.dumps(value))
    aws.secret_arn = secrets.describe_secret(SecretId=where.login_secret)["ARN"]
    aws.other_secret_arn = secrets.describe_secret(SecretId=OTHER_SECRET_NAME)["ARN"]

    cfn = client("cloudformation")
    for stack_name, template in (
        ("HttpGatewayStack", gateway_template(aws.tracking_url, aws.iam_tracking_url)),
        ("MLflowVpcStack", outputs_template({"CredentialsSecretName": where.server_secret})),
        ("SageMakerStudioUserStack", outputs_template({"ServingRoleArn": aws.serving_role_arn})),
    ):
        try:
            cfn.create_stack(StackName=stack_name, TemplateBody=json.dumps(template))
        except Exception as error:
            if not _exists(error):
                raise
    aws.gateway_stack_id = cfn.describe_stacks(StackName="HttpGatewayStack")["Stacks"][0]["StackId"]
    client("ssm").put_parameter(Name="/mlflow/artifact-bucket", Value=aws.bucket, Type="String", Overwrite=True)

    ecr = client("ecr")
    try:
        ecr.create_repository(repositoryName="mlflow-pyfunc")
    except Exception as error:
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
    except Exception as error:
        if not _exists(error):
            raise
    return aws


# Accounts mode: a profile with its own MLflow user, in another region of the
# same moto server, so both fake deployments coexist in one process (-n 0).
PROFILE = "studio-alice"
ACCOUNTS = StudioNames(
    region="us-west-2",
    role=f"mlflow-{PROFILE}-execution-role",
    training_role=f"mlflow-{PROFILE}-training-role",
    serving_role=f"mlflow-{PROFILE}-serving-role",
    server_secret=SECRET_NAME,  # MLflow's admin in accounts mode
    login_secret=f"{SECRET_NAME}/users/{PROFILE}/login",  # ProjectConfig.user_secret_name
    profile=PROFILE,
)
ACCOUNTS_HANDLER = REPO_ROOT / "stacks" / "functions" / "mlflow_accounts" / "index.py"


@pytest.fixture(scope="session")
def accounts_studio_aws(request, accounts_stack, moto_server) -> StudioAws:
    """The accounts-mode deployment: the profile's generated login, its MLflow user made by the provisioner."""
    return once_per_session(
        request, _ACCOUNTS_STUDIO_AWS, lambda: _create_accounts_studio_aws(accounts_stack, moto_server)
    )


def _create_accounts_studio_aws(accounts_stack, moto_server) -> StudioAws:
    return create_provisioned_studio_aws(accounts_stack, moto_server, ACCOUNTS, PROFILE)


def create_provisioned_studio_aws(
    accounts_stack, moto_server, where: StudioNames, profile: str, *, iam_tracking_url: str = ""
) -> StudioAws:
    """An accounts-mode deployment in `where`: the profile's generated login, its user made by the provisioner."""
    # Like the profile's secret SageMakerStudioUserStack generates: 32 letters and digits.
    password = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
    aws = create_studio_aws(
        accounts_stack, moto_server, where, login=(profile, password), iam_tracking_url=iam_tracking_url
    )
    admin_secret_arn = moto_server.client("secretsmanager", region_name=where.region).describe_secret(
        SecretId=where.server_secret
    )["ARN"]
    provision_account(moto_server, mlflow_url=accounts_stack.proxy_url, admin_secret_arn=admin_secret_arn, aws=aws)
    return aws


def provision_account(moto_server, *, mlflow_url: str, admin_secret_arn: str, aws: StudioAws) -> None:
    """Create the profile's MLflow user as the stack's custom resource does: its handler, as Lambda runs it."""
    import boto3

    spec = importlib.util.spec_from_file_location("mlflow_accounts_handler", ACCOUNTS_HANDLER)
    assert spec and spec.loader
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    lambda_env = {
        **FAKE_AWS,
        "AWS_REGION": aws.region,
        "AWS_DEFAULT_REGION": aws.region,
        "AWS_ENDPOINT_URL": moto_server.endpoint_url,
        "ADMIN_SECRET_ARN": admin_secret_arn,
        "MLFLOW_URL": mlflow_url,  # the internal load balancer when deployed
    }
    event = {
        "RequestType": "Create",
        "ResourceType": "Custom::MlflowAccount",
        "ResourceProperties": {"Username": aws.username, "UserSecretArn": aws.secret_arn},
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in lambda_env.items():
            patch.setenv(name, value)
        boto3.DEFAULT_SESSION = None
        try:
            handler.on_event(event, None)
        finally:
            boto3.DEFAULT_SESSION = None


# sso mode: the same profile, its secret an app client (ProjectConfig.oauth_client_secret_name),
# in a third region; its roles are named apart from the accounts ones (IAM is global).
SSO = StudioNames(
    region="eu-west-1",
    role=f"mlflow-sso-{PROFILE}-execution-role",
    training_role=f"mlflow-sso-{PROFILE}-training-role",
    serving_role=f"mlflow-sso-{PROFILE}-serving-role",
    server_secret=SECRET_NAME,
    login_secret=f"{SECRET_NAME}/users/{PROFILE}/oauth",
    profile=PROFILE,
)


@pytest.fixture(scope="session")
def sso_studio_aws(request, sso_stack, moto_server) -> StudioAws:
    """The sso-mode deployment: the profile's secret holds its app client of the stack's OpenID provider."""
    return once_per_session(request, _SSO_STUDIO_AWS, lambda: _create_sso_studio_aws(sso_stack, moto_server))


def _create_sso_studio_aws(sso_stack, moto_server) -> StudioAws:
    assert sso_stack.oidc is not None and PROFILE in sso_stack.machine_clients
    client = sso_stack.oidc.clients[PROFILE]
    aws = create_studio_aws(sso_stack, moto_server, SSO, login=(client.client_id, client.client_secret))
    # What SageMakerStudioUserStack's deploy-time lookup writes into the profile's secret.
    login = {
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "token_url": sso_stack.oidc.token_url,
        "scope": "mlflow",
    }
    secrets_manager = moto_server.client("secretsmanager", region_name=SSO.region)
    secrets_manager.put_secret_value(SecretId=SSO.login_secret, SecretString=json.dumps(login))
    return aws


# IAM sign-in (accounts mode): another profile whose roles are its login, in a fourth region.
# The deployment publishes the IAM API's URL, so the notebook and the job sign their requests
# with the role credentials they run with and read no secret. The IAM API is regional: its
# stand-in here verifies signatures for this region, with the keys moto's STS handed out.
IAM_PROFILE = "studio-iris"
IAM = StudioNames(
    region="eu-central-1",
    role=f"mlflow-{IAM_PROFILE}-execution-role",
    training_role=f"mlflow-{IAM_PROFILE}-training-role",
    serving_role=f"mlflow-{IAM_PROFILE}-serving-role",
    server_secret=SECRET_NAME,
    login_secret=f"{SECRET_NAME}/users/{IAM_PROFILE}/login",  # the person's browser login, unread here
    profile=IAM_PROFILE,
)
# How long the server may take to read a new profile parameter (docker/mlflow/iam_sign_in.py).
PRINCIPALS_REFRESH_WAIT = REFRESH_SECONDS + 30


@pytest.fixture(scope="session")
def iam_studio_aws(request, accounts_stack, moto_server) -> StudioAws:
    """The accounts-mode deployment with IAM sign-in: the IAM URL published, the profile's roles mapped to its user."""
    return once_per_session(
        request, _IAM_STUDIO_AWS, lambda: _create_iam_studio_aws(request.config, accounts_stack, moto_server)
    )


def _create_iam_studio_aws(config: pytest.Config, accounts_stack, moto_server) -> StudioAws:
    keys = CredentialTable()
    gateway = IamGateway(upstream=accounts_stack.iam_proxy_url, region=IAM.region, credentials=keys).start()
    config.add_cleanup(gateway.stop)
    sts = StsTap(upstream=moto_server.endpoint_url, credentials=keys).start()  # the job's AssumeRole
    config.add_cleanup(sts.stop)
    aws = create_provisioned_studio_aws(accounts_stack, moto_server, IAM, IAM_PROFILE, iam_tracking_url=gateway.url)
    aws.sts_endpoint_url = sts.url
    # The kernel's session, which SageMaker assumed for it (create_studio_aws asked moto).
    kernel = aws.credentials
    keys.register(
        IssuedCredentials(
            kernel["AccessKeyId"], kernel["SecretAccessKey"], kernel["SessionToken"],
            f"arn:aws:sts::{aws.account}:assumed-role/{IAM.role}/SageMaker",
        )
    )  # fmt: skip
    # What SageMakerStudioUserStack writes for the profile, where the server reads it.
    moto_server.client("ssm").put_parameter(
        Name=f"{accounts_stack.iam_principals_path}/{IAM_PROFILE}", Type="String", Overwrite=True,
        Value=profile_parameter(IAM_PROFILE, [aws.role_arn, aws.training_role_arn]),
    )  # fmt: skip
    _wait_until_signed_in(aws)
    return aws


def _wait_until_signed_in(aws: StudioAws) -> None:
    """Until the server has read the new parameter (at most a refresh interval): the kernel's role is the profile."""
    import requests

    from tests.integration.sigv4 import env_signer

    auth = env_signer(aws.env())
    deadline = time.monotonic() + PRINCIPALS_REFRESH_WAIT
    while True:
        response = requests.get(aws.iam_tracking_url + mlflow_setup.CURRENT_USER_PATH, auth=auth, timeout=30)
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert response.status_code == 200, response.text[:300]
    assert response.json()["user"]["username"] == aws.username


@contextmanager
def studio_env(aws: StudioAws, call_log: Path | None = None, *, scratch: Path) -> Iterator[dict[str, str]]:
    """This process (and its children) as a Studio kernel: role credentials, moto, no MLflow vars.

    Temporary files go to `scratch`, a test directory (tests/temporary_files.py says why).
    Afterwards the environment is as before, including what the kernel's code wrote into it
    itself (configure_mlflow() exports its login), which a later test would otherwise send.
    """
    import boto3

    env = aws.env(call_log)
    before = dict(os.environ)
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name in SCRUBBED:
                patch.delenv(name, raising=False)
            for name, value in env.items():
                patch.setenv(name, value)
            keep_temporary_files_in(patch, scratch)  # this process, the kernel and what they start
            boto3.DEFAULT_SESSION = None  # no credentials cached from before
            try:
                yield env
            finally:
                boto3.DEFAULT_SESSION = None
    finally:
        os.environ.clear()
        os.environ.update(before)


def read_calls(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class NotebookRun:
    notebook: Any
    calls: list[dict[str, Any]]
    workdir: Path
    # One line per recorded process as it ended: the MLFLOW_TRACKING_* names it held.
    exits: list[dict[str, Any]] = field(default_factory=list)

    def outputs(self) -> str:
        """All text the executed cells printed or displayed."""
        texts = []
        for cell in self.notebook.cells:
            for output in cell.get("outputs", []):
                texts.append(output.get("text", ""))
                texts.append(output.get("data", {}).get("text/plain", ""))
        return "\n".join(texts)

    def assert_model_served_and_removed(self) -> None:
        """The deployed model answered the sample and its endpoint was deleted afterwards."""
        out = self.outputs()
        assert re.search(r"predictions: \[[01](, [01]){4}\]", out)
        assert re.search(r"endpoint mlflow-[0-9a-f]{8}-demo-\S+ deleted", out)

    def assert_every_cell_ran(self) -> None:
        """Every code cell executed, and none raised (the first error's message if one did)."""
        code = [c for c in self.notebook.cells if c.cell_type == "code"]
        assert all(c.execution_count for c in code)
        errors = [o for c in code for o in c.outputs if o.output_type == "error"]
        assert not errors, errors[0].get("evalue") if errors else ""


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
    return once_per_session(request, _NOTEBOOK_RUN, lambda: execute_notebook(studio_aws, tmp_path_factory))


def execute_notebook(studio_aws: StudioAws, tmp_path_factory: pytest.TempPathFactory) -> NotebookRun:
    """Run the lab notebook as `studio_aws`'s profile, in a copy of lab/, recording its AWS calls."""
    root = tmp_path_factory.mktemp("notebook")
    lab = copy_lab(root)
    call_log = root / "aws-calls.jsonl"
    notebook = nbformat.read(lab / NOTEBOOK.name, as_version=4)
    with studio_env(studio_aws, call_log, scratch=root / "tmp"):
        NotebookClient(
            notebook,
            timeout=600,
            kernel_name="python3",
            resources={"metadata": {"path": str(lab)}},
        ).execute()
    nbformat.write(notebook, root / "executed.ipynb")  # kept for debugging a failure
    exits = read_calls(call_log.with_name(call_log.name + ".exit"))
    return NotebookRun(notebook=notebook, calls=read_calls(call_log), workdir=lab, exits=exits)


@pytest.fixture(scope="session")
def accounts_notebook_run(
    request, accounts_studio_aws: StudioAws, tmp_path_factory: pytest.TempPathFactory
) -> NotebookRun:
    """The same notebook, run by the accounts-mode profile with its own MLflow login (once)."""
    return once_per_session(
        request, _ACCOUNTS_NOTEBOOK_RUN, lambda: execute_notebook(accounts_studio_aws, tmp_path_factory)
    )


@pytest.fixture(scope="session")
def sso_notebook_run(request, sso_studio_aws: StudioAws, tmp_path_factory: pytest.TempPathFactory) -> NotebookRun:
    """The same notebook, run by the sso-mode profile with its app client's tokens (once)."""
    return once_per_session(request, _SSO_NOTEBOOK_RUN, lambda: execute_notebook(sso_studio_aws, tmp_path_factory))


@pytest.fixture(scope="session")
def iam_notebook_run(request, iam_studio_aws: StudioAws, tmp_path_factory: pytest.TempPathFactory) -> NotebookRun:
    """The same notebook, run by the IAM sign-in profile: signed requests, no secret (once)."""
    return once_per_session(request, _IAM_NOTEBOOK_RUN, lambda: execute_notebook(iam_studio_aws, tmp_path_factory))


def profiles_own_work(accounts, profile: str, colleague: str) -> tuple[str, Any, Any]:
    """(experiment id, the training job's run, the colleague's account) of `profile`'s notebook run.

    Checked on the way, as the admin: whoever creates an experiment or a registered model
    gets MANAGE on it; with default permission NO_PERMISSIONS nobody else has any, so had
    another login done the work, the profile would have none either. The local runs and the
    job's run are in the experiment, and the registered versions come from them.
    """
    from mlflow import MlflowClient

    experiment_name, model = f"sagemaker-studio-demo-{profile}", f"breast-cancer-classifier-{profile}"
    other = accounts.new_user(colleague)
    with accounts.client() as admin:
        client = MlflowClient()
        experiment = client.get_experiment_by_name(experiment_name)
        runs = client.search_runs([experiment.experiment_id])
        versions = client.search_model_versions(f"name='{model}'")
        for resource_type, resource_id in (("experiment", experiment.experiment_id), ("registered_model", model)):
            assert admin.get_user_permission(profile, resource_type, resource_id).permission == "MANAGE"
            assert admin.get_user_permission(other.username, resource_type, resource_id).permission == (
                "NO_PERMISSIONS"
            )
    assert {"local-c0.01", "local-c0.1"} <= {r.info.run_name for r in runs}
    (job_run,) = [r for r in runs if "sagemaker.training_job_name" in r.data.tags]
    assert versions and {v.run_id for v in versions} <= {r.info.run_id for r in runs}
    return experiment.experiment_id, job_run, other
