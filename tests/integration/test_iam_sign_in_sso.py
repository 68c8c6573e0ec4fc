"""IAM sign-in in sso mode, end to end: real SigV4 through the local stand-in for the IAM API, nginx's IAM
server and mlflow-oidc-auth authenticating the caller as the machine user its role maps to.

Each Studio profile's roles map to its app client's machine user (the parameter the Studio stack
writes); the plugin's permissions (default NO_PERMISSIONS here) decide what that user may do.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from localrun.services import MotoServer
from localrun.stack import MlflowStack
from stacks.iam_callers import CALLER_HEADER, profile_parameter
from tests.integration.conftest import SSO_COLLEAGUE, SSO_GROUP, SSO_MACHINE
from tests.integration.test_audit_trail import audit_lines
from tests.integration.test_iam_sign_in_signed import run_signed_client, signed
from tests.integration.transfer_client import sha256

# On the worker that holds the session's sso_stack (conftest.py), not a second one of its own.
pytestmark = [pytest.mark.integration, SSO_GROUP]

ACCOUNT = "123456789012"
# Each profile's execution and training roles -> its app client's machine user.
ROLES = {
    SSO_MACHINE: (f"arn:aws:iam::{ACCOUNT}:role/studio-alice-execution", f"arn:aws:iam::{ACCOUNT}:role/alice-training"),
    SSO_COLLEAGUE: (f"arn:aws:iam::{ACCOUNT}:role/studio-bob-execution", f"arn:aws:iam::{ACCOUNT}:role/bob-training"),
}
UNMAPPED = f"arn:aws:iam::{ACCOUNT}:role/intruder"
GHOST = f"arn:aws:iam::{ACCOUNT}:role/ghost"  # mapped to a user the plugin does not know


@pytest.fixture(scope="module")
def stack(sso_stack: MlflowStack, moto_server: MotoServer) -> Iterator[MlflowStack]:
    """The sso stack with one principal parameter per profile, as the Studio stack writes them."""
    ssm = moto_server.client("ssm")
    names = []
    for user, roles in [*ROLES.items(), ("ghost-user", (GHOST,))]:
        names.append(f"{sso_stack.iam_principals_path}/{user}")
        ssm.put_parameter(Name=names[-1], Type="String", Value=profile_parameter(user, list(roles)), Overwrite=True)
    yield sso_stack
    ssm.delete_parameters(Names=names)


def bearer(stack: MlflowStack, client_id: str) -> dict[str, str]:
    assert stack.oidc is not None
    return {"Authorization": f"Bearer {stack.oidc.client_credentials_token(client_id)}"}


def grant(stack: MlflowStack, user: str, experiment_id: str) -> str | None:
    """`user`'s grant on the experiment, asked as that user's app client (the plugin's own API)."""
    response = requests.get(
        f"{stack.proxy_url}/api/2.0/mlflow/permissions/users/{user}/experiments/{experiment_id}",
        headers=bearer(stack, user), timeout=30,
    )  # fmt: skip
    return response.json()["experiment_permission"]["permission"] if response.status_code == 200 else None


def test_a_signed_mlflow_client_logs_a_run_as_its_profiles_machine_user(stack: MlflowStack, tmp_path: Path) -> None:
    small = tmp_path / "small.bin"
    small.write_bytes(secrets.token_bytes(1024))
    result = run_signed_client(stack, ROLES[SSO_MACHINE][1], "training-job", tmp_path, [small])
    assert result["artifacts"] == {"small.bin": sha256(small)}
    run = signed(stack, ROLES[SSO_MACHINE][0], "GET", "runs/get", params={"run_id": result["run_id"]})
    assert run.status_code == 200, run.text
    assert run.json()["run"]["data"]["metrics"]
    experiment_id = run.json()["run"]["info"]["experiment_id"]
    # The plugin saw the profile's machine user: the experiment is its to manage.
    assert grant(stack, SSO_MACHINE, experiment_id) == "MANAGE"
    me = signed(stack, ROLES[SSO_MACHINE][0], "GET", "users/current")
    assert (me.status_code, me.json()["username"]) == (200, SSO_MACHINE)
    creates = [line for line in audit_lines(stack) if line["route"].endswith("/runs/create")]
    assert creates[-1]["user"] == SSO_MACHINE
    assert creates[-1]["iam_caller"].startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/alice-training/")


def test_permissions_hold_between_two_mapped_users(stack: MlflowStack) -> None:
    created = signed(
        stack, ROLES[SSO_COLLEAGUE][0], "POST", "experiments/create", json={"name": f"bobs-{secrets.token_hex(3)}"}
    )
    assert created.status_code == 200, created.text
    experiment_id = created.json()["experiment_id"]
    assert grant(stack, SSO_COLLEAGUE, experiment_id) == "MANAGE"
    # alice's role: no grant and NO_PERMISSIONS by default, so neither read nor write.
    alice = ROLES[SSO_MACHINE][0]
    assert signed(stack, alice, "GET", "experiments/get", params={"experiment_id": experiment_id}).status_code == 403
    assert signed(stack, alice, "POST", "runs/create", json={"experiment_id": experiment_id}).status_code == 403
    assert (
        signed(stack, ROLES[SSO_COLLEAGUE][1], "POST", "runs/create", json={"experiment_id": experiment_id}).status_code
        == 200
    )


def test_an_unknown_caller_is_refused_naming_its_arn(stack: MlflowStack) -> None:
    response = signed(stack, UNMAPPED, "GET", "experiments/search", params={"max_results": 5})
    assert response.status_code == 403, response.text
    assert response.json() == {
        "error_code": "PERMISSION_DENIED",
        "message": f"IAM caller arn:aws:sts::{ACCOUNT}:assumed-role/intruder/SageMaker is not mapped to an MLflow user",
    }
    # Mapped to a user the plugin does not have: the plugin's own refusal for an unknown user.
    assert signed(stack, GHOST, "GET", "experiments/search", params={"max_results": 5}).status_code == 401


def test_a_signed_caller_cannot_mint_an_access_token(stack: MlflowStack) -> None:
    """A role session is a workload credential: it may not turn itself into a year-long token."""
    response = signed(stack, ROLES[SSO_MACHINE][0], "PATCH", "users/access-token", json={})
    assert response.status_code == 403, response.text
    assert "interactive sign-in" in response.text


def test_a_forged_caller_on_the_password_routes_is_ignored(stack: MlflowStack) -> None:
    forged = {CALLER_HEADER: f"arn:aws:sts::{ACCOUNT}:assumed-role/studio-alice-execution/x"}
    path = f"{stack.proxy_url}/api/2.0/mlflow/experiments/create"
    name = f"forged-{secrets.token_hex(3)}"
    # No credential: 401, as without the header.
    assert requests.post(path, json={"name": name}, headers=forged, timeout=30).status_code == 401
    # bob's token: the request is bob's, not alice's.
    response = requests.post(path, json={"name": name}, headers={**forged, **bearer(stack, SSO_COLLEAGUE)}, timeout=30)
    assert response.status_code == 200, response.text
    experiment_id = response.json()["experiment_id"]
    assert grant(stack, SSO_COLLEAGUE, experiment_id) == "MANAGE"
    assert grant(stack, SSO_MACHINE, experiment_id) is None
    audit = [line for line in audit_lines(stack) if line["resource"].get("name") == name]
    # The refused attempt names nobody, bob's names bob; neither the forged caller.
    assert [(line["user"], "iam_caller" in line) for line in audit] == [(None, False), (SSO_COLLEAGUE, False)]
