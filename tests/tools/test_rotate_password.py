"""`make rotate-password` against moto: the secret gets a new generated password, the service restarts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from localrun.services import MotoServer
from stacks import names
from tests.tools.conftest import ACCOUNT, REGION, ROOT, client, run_from_root, tool_env

pytestmark = pytest.mark.integration  # every test runs the tool against the moto server

SECRET = "team-mlflow-login"  # a non-default credentials_secret_name: the tool must take it from the output
OLD_PASSWORD = "Old0Password0Of0Thirty0Two0Chars"
CLUSTER, SERVICE = "MLflowVpcStack-TrackingCluster-abc", "MLflowVpcStack-TrackingService-def"


def _deployed(aws: MotoServer, *, outputs: dict[str, str] | None = None, secret: str | None = None) -> None:
    """What MLflowVpcStack leaves in an account, as far as the command is concerned."""
    client(aws, "secretsmanager").create_secret(
        Name=SECRET, SecretString=secret or json.dumps({"username": "mlflow", "password": OLD_PASSWORD})
    )
    ecs = client(aws, "ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    ecs.register_task_definition(
        family="mlflow", containerDefinitions=[{"name": "nginx", "image": "nginx", "memory": 128}]
    )
    ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition="mlflow", desiredCount=2)
    values = {
        names.OUTPUT_CREDENTIALS_SECRET: SECRET,
        names.OUTPUT_ECS_CLUSTER: CLUSTER,
        names.OUTPUT_ECS_SERVICE: SERVICE,
        names.OUTPUT_AUTH_MODE: "shared",
    }
    values = values if outputs is None else outputs
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::S3::Bucket"}},
        "Outputs": {key: {"Value": value} for key, value in values.items()},
    }
    client(aws, "cloudformation").create_stack(StackName=names.VPC_STACK, TemplateBody=json.dumps(template))


def _secret(aws: MotoServer) -> str:
    return client(aws, "secretsmanager").get_secret_value(SecretId=SECRET)["SecretString"]


def _deployment_id(aws: MotoServer) -> str:
    service = client(aws, "ecs").describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    return service["deployments"][0]["id"]


def _rotate(aws: MotoServer) -> subprocess.CompletedProcess[str]:
    return run_from_root([sys.executable, "-m", "tools.rotate_password"], tool_env(aws, []))


def test_rotation_puts_a_new_password_and_restarts_the_tasks(aws: MotoServer) -> None:
    _deployed(aws)
    before = _deployment_id(aws)
    result = _rotate(aws)
    assert result.returncode == 0, result.stderr
    stored = json.loads(_secret(aws))
    assert list(stored) == ["username", "password"] and stored["username"] == "mlflow"
    assert re.fullmatch(r"[A-Za-z0-9]{32}", stored["password"]) and stored["password"] != OLD_PASSWORD
    assert _deployment_id(aws) != before, "no new deployment: running tasks keep the old password"
    assert result.stdout == (
        f"rotate-password: account {ACCOUNT}, region {REGION}: new password stored in secret {SECRET}; "
        f"service {SERVICE} in cluster {CLUSTER} is replacing its tasks (a few minutes; follow with "
        f"`aws ecs wait services-stable --cluster {CLUSTER} --services {SERVICE}`)\n"
    )
    assert stored["password"] not in result.stdout + result.stderr


def test_other_fields_of_the_secret_are_kept(aws: MotoServer) -> None:
    _deployed(aws, secret=json.dumps({"username": "team", "note": "kept", "password": OLD_PASSWORD}))
    assert _rotate(aws).returncode == 0
    stored = json.loads(_secret(aws))
    assert list(stored) == ["username", "note", "password"] and stored["note"] == "kept"


def test_a_secret_of_another_shape_is_not_touched(aws: MotoServer) -> None:
    _deployed(aws, secret="just-a-password")
    before = _deployment_id(aws)
    result = _rotate(aws)
    assert result.returncode == 1
    assert result.stderr.startswith('rotate-password: the secret is not the JSON {"username", "password"}')
    assert _secret(aws) == "just-a-password" and _deployment_id(aws) == before


def test_another_mode_is_refused_before_anything_changes(aws: MotoServer) -> None:
    outputs = {
        names.OUTPUT_CREDENTIALS_SECRET: SECRET,
        names.OUTPUT_ECS_CLUSTER: CLUSTER,
        names.OUTPUT_ECS_SERVICE: SERVICE,
        names.OUTPUT_AUTH_MODE: "sso",
    }
    _deployed(aws, outputs=outputs)
    before = _deployment_id(aws)
    result = _rotate(aws)
    assert result.returncode == 1
    assert result.stderr.startswith("rotate-password: auth_mode is sso: ") and result.stderr.count("\n") == 1
    assert json.loads(_secret(aws))["password"] == OLD_PASSWORD and _deployment_id(aws) == before


def test_accounts_mode_without_the_gateway_stack_changes_nothing(aws: MotoServer) -> None:
    """Accounts mode reaches MLflow at the gateway's TrackingUrl (tests/integration has the real round trip)."""
    outputs = {
        names.OUTPUT_CREDENTIALS_SECRET: SECRET,
        names.OUTPUT_ECS_CLUSTER: CLUSTER,
        names.OUTPUT_ECS_SERVICE: SERVICE,
        names.OUTPUT_AUTH_MODE: "accounts",
    }
    _deployed(aws, outputs=outputs)
    before = _deployment_id(aws)
    result = _rotate(aws)
    assert result.returncode == 1
    assert result.stderr.startswith(f"rotate-password: cannot read stack {names.GATEWAY_STACK} (")
    assert json.loads(_secret(aws))["password"] == OLD_PASSWORD and _deployment_id(aws) == before


@pytest.mark.parametrize("missing", [names.OUTPUT_ECS_CLUSTER, names.OUTPUT_ECS_SERVICE])
def test_a_stack_from_before_the_outputs_says_to_deploy(aws: MotoServer, missing: str) -> None:
    outputs = {names.OUTPUT_CREDENTIALS_SECRET: SECRET, names.OUTPUT_ECS_CLUSTER: CLUSTER}
    outputs |= {names.OUTPUT_ECS_SERVICE: SERVICE}
    del outputs[missing]
    _deployed(aws, outputs=outputs)
    result = _rotate(aws)
    assert result.stderr == (
        f"rotate-password: stack {names.VPC_STACK} has no output {missing}: deploy this version of the project first\n"
    )
    assert json.loads(_secret(aws))["password"] == OLD_PASSWORD


def test_no_stack_in_the_region(aws: MotoServer) -> None:
    result = _rotate(aws)
    assert result.returncode == 1
    assert result.stderr.startswith(f"rotate-password: cannot read stack {names.VPC_STACK} (")
    assert result.stderr.rstrip().endswith("is it deployed in this account and region?")


def test_make_rotate_password(aws: MotoServer, tmp_path: Path) -> None:
    _deployed(aws)
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "rotate-password"],
        env=tool_env(aws, [tmp_path]),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"new password stored in secret {SECRET}" in result.stdout
    assert json.loads(_secret(aws))["password"] != OLD_PASSWORD
