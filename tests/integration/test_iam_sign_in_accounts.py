"""IAM sign-in in accounts mode through the real nginx, MLflow and PostgreSQL.

The caller header sent straight to nginx's IAM server stands in for API Gateway's IAM route
(which verifies the SigV4 signature and writes it); the stand-in that verifies real signatures
is localrun's. Role A maps to its user through the static table (the iam_principals setting),
role B through a per-profile SSM parameter in the moto server (both set up in iam_accounts.py).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking.request_header.abstract_request_header_provider import RequestHeaderProvider

from localrun.process import environment
from localrun.stack import MlflowStack, artifact_transfer_settings
from stacks.iam_callers import CALLER_HEADER
from tests.integration.iam_accounts import ACCOUNT, GHOST_ROLE, IAM_ACCOUNTS_GROUP, IamAccounts
from tests.integration.mlflow_users import Account, Accounts, api
from tests.integration.proxy_log import logged_text
from tests.integration.test_audit_trail import audit_lines

# On the worker that holds the session's iam_accounts stack (conftest.py), not a second one of its own.
pytestmark = [pytest.mark.integration, IAM_ACCOUNTS_GROUP]

# What API Gateway reports for a notebook or a training job: a session of the role.
SESSION_A = f"arn:aws:sts::{ACCOUNT}:assumed-role/studio-alice/SageMaker-1733500000"
SESSION_B = f"arn:aws:sts::{ACCOUNT}:assumed-role/studio-bob/training-job-7"
UNMAPPED = f"arn:aws:sts::{ACCOUNT}:assumed-role/endpoint-role/invocation"
SIGV4 = (
    "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20261206/eu-west-1/execute-api/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=" + "1" * 64
)


class IamCaller(RequestHeaderProvider):
    """MLflow's request-header plugin: adds the caller header while `caller` is set (see as_iam_caller)."""

    caller: str | None = None

    def in_context(self) -> bool:
        return IamCaller.caller is not None

    def request_headers(self) -> dict[str, str]:
        return {CALLER_HEADER: IamCaller.caller or ""}


def register_header_provider() -> None:
    # MLflow registers providers from the `mlflow.request_header_provider` entry points at import;
    # this process has imported it already, so the plugin joins its registry directly.
    from mlflow.tracking.request_header.registry import _request_header_provider_registry as registry

    if not any(isinstance(provider, IamCaller) for provider in registry):
        registry.register(IamCaller)


@pytest.fixture(scope="module")
def users(iam_accounts: IamAccounts) -> dict[str, str]:
    return iam_accounts.header_users


@pytest.fixture(scope="module")
def iam_stack(iam_accounts: IamAccounts) -> MlflowStack:
    """The session's accounts stack with IAM sign-in (iam_accounts.py), with MLflow's client able to send the caller."""
    register_header_provider()
    return iam_accounts.stack


@contextmanager
def as_iam_caller(stack: MlflowStack, arn: str) -> Iterator[None]:
    """The in-process MLflow client signed in as `arn`: no username, no password."""
    assert stack.iam_proxy_url is not None
    env = {"MLFLOW_TRACKING_URI": stack.iam_proxy_url, **artifact_transfer_settings()}
    assert not {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"} & set(os.environ)
    with environment(env):
        mlflow.set_tracking_uri(stack.iam_proxy_url)
        IamCaller.caller = arn
        try:
            yield
        finally:
            IamCaller.caller = None
            mlflow.set_tracking_uri(None)


def iam_api(stack: MlflowStack, headers: dict[str, str] | list[tuple[str, str]], method: str, path: str, **kwargs):
    """One REST call to nginx's IAM server with exactly these headers."""
    assert stack.iam_proxy_url is not None
    return requests.request(method, stack.iam_proxy_url + path, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]


def permission(stack: MlflowStack, experiment_id: str, username: str) -> str:
    with Accounts(stack).client() as admin:
        return admin.get_user_permission(username, "experiment", experiment_id).permission


def test_a_role_session_logs_a_run_and_an_artifact_as_its_user(
    iam_stack: MlflowStack, users: dict[str, str], tmp_path: Path
) -> None:
    artifact = tmp_path / "notes.txt"
    artifact.write_bytes(secrets.token_bytes(1024))
    with as_iam_caller(iam_stack, SESSION_A):
        experiment_id = mlflow.create_experiment(f"iam-{secrets.token_hex(3)}")
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_param("lr", "0.1")
            mlflow.log_metrics({"loss": 0.5, "accuracy": 0.9}, step=1)
            mlflow.log_artifact(str(artifact))
        fetched = mlflow.get_run(run.info.run_id)
        downloaded = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="notes.txt",
                                                         dst_path=str(tmp_path / "back"))  # fmt: skip
    assert fetched.data.params == {"lr": "0.1"}
    assert fetched.data.metrics == {"loss": 0.5, "accuracy": 0.9}
    assert Path(downloaded).read_bytes() == artifact.read_bytes()
    # MLflow saw alice: her experiment, hers to manage.
    assert permission(iam_stack, experiment_id, users["alice"]) == "MANAGE"
    audit = [line for line in audit_lines(iam_stack) if line["route"].endswith("/experiments/create")]
    assert audit[-1]["user"] == users["alice"] and audit[-1]["iam_caller"] == SESSION_A
    log = logged_text(Path(iam_stack.nginx.process.log_path), "/runs/create")
    assert any(f" - {users['alice']} [" in line and "/runs/create" in line for line in log.splitlines())
    assert "AWS4-HMAC" not in log


def test_a_role_session_registers_a_model_version_from_its_own_run(iam_stack: MlflowStack) -> None:
    """The request guard asks whether the caller may read the source, as that same caller (its ARN)."""
    name = f"iam-model-{secrets.token_hex(3)}"
    with as_iam_caller(iam_stack, SESSION_A):
        experiment_id = mlflow.create_experiment(f"iam-{secrets.token_hex(3)}")
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_param("lr", "0.1")
        client = mlflow.MlflowClient()
        client.create_registered_model(name)
        version = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    assert version.version == "1" and version.run_id == run.info.run_id


def test_permissions_hold_between_roles(iam_stack: MlflowStack, users: dict[str, str]) -> None:
    """Bob's role (mapped by his profile's SSM parameter) owns an experiment; alice's may read it, not write."""
    with as_iam_caller(iam_stack, SESSION_B):
        experiment_id = mlflow.create_experiment(f"bobs-{secrets.token_hex(3)}")
    assert permission(iam_stack, experiment_id, users["bob"]) == "MANAGE"
    with as_iam_caller(iam_stack, SESSION_A):
        assert mlflow.get_experiment(experiment_id).experiment_id == experiment_id  # READ by default
        with pytest.raises(MlflowException, match="PERMISSION_DENIED|Permission denied"):
            mlflow.MlflowClient().create_run(experiment_id)
        with pytest.raises(MlflowException, match="PERMISSION_DENIED|Permission denied"):
            mlflow.MlflowClient().delete_experiment(experiment_id)


@pytest.mark.parametrize(
    "caller, message",
    [
        (UNMAPPED, f"IAM caller {UNMAPPED} is not mapped to an MLflow user"),
        (GHOST_ROLE, f"IAM caller {GHOST_ROLE} is mapped to MLflow user ghost-user, who does not exist"),
        (f"arn:aws:iam::{ACCOUNT}:root", "is not an IAM role, assumed-role or user ARN"),
        (f"arn:aws:sts::{ACCOUNT}:federated-user/bob", "is not an IAM role, assumed-role or user ARN"),
        (f"arn:aws:sts::{ACCOUNT}:assumed-role/studio alice/x", "is not an IAM role, assumed-role or user ARN"),
        (f"arn:aws:sts::{ACCOUNT}:assumed-role/studio-alice/x\ty", "is not an IAM role, assumed-role or user ARN"),
        (f"{SESSION_A}, {SESSION_B}", "is not an IAM role, assumed-role or user ARN"),
        ("alice", "is not an IAM role, assumed-role or user ARN"),
    ],
)
def test_callers_that_map_to_nobody_are_refused_with_their_arn(
    iam_stack: MlflowStack, caller: str, message: str
) -> None:
    response = iam_api(iam_stack, {CALLER_HEADER: caller}, "GET", "/api/2.0/mlflow/experiments/search",
                       params={"max_results": 5})  # fmt: skip
    assert response.status_code == 403, response.text
    assert response.json()["error_code"] == "PERMISSION_DENIED"
    assert message in response.json()["message"]
    assert caller.split(",")[0].split("\t")[0] in response.json()["message"]


@pytest.mark.parametrize(
    "path", ["/api/2.0/mlflow/experiments/search?max_results=5", "/api/2.0/mlflow-artifacts/artifacts/0/x"]
)
def test_two_callers_are_refused_on_flask_and_fastapi_routes(iam_stack: MlflowStack, path: str) -> None:
    import http.client
    from urllib.parse import urlsplit

    assert iam_stack.iam_proxy_url is not None
    connection = http.client.HTTPConnection(urlsplit(iam_stack.iam_proxy_url).netloc, timeout=60)
    try:
        connection.putrequest("GET", path)
        connection.putheader(CALLER_HEADER, SESSION_A)
        connection.putheader(CALLER_HEADER, SESSION_B)
        connection.endheaders()
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 403
    assert body["message"] == f"a request carries one {CALLER_HEADER}, this one 2"


def test_the_iam_server_takes_no_password_and_no_caller_means_401(iam_stack: MlflowStack) -> None:
    admin = Accounts(iam_stack).admin
    path = "/api/2.0/mlflow/experiments/search"
    # The admin's password on the IAM server: nginx drops it, and without a caller stops the request.
    response = requests.get(iam_stack.iam_proxy_url + path, auth=admin.auth, params={"max_results": 5}, timeout=60)  # type: ignore[operator]
    assert response.status_code == 401 and "No verified IAM caller" in response.text
    # With an unmapped caller, the password does not make it the admin either.
    response = requests.get(
        iam_stack.iam_proxy_url + path, auth=admin.auth,  # type: ignore[operator]
        headers={CALLER_HEADER: UNMAPPED}, params={"max_results": 5}, timeout=60,
    )  # fmt: skip
    assert response.status_code == 403
    # A signed request's Authorization never reaches MLflow: the caller alone decides.
    response = iam_api(iam_stack, {CALLER_HEADER: SESSION_A, "Authorization": SIGV4}, "GET", path,
                       params={"max_results": 5})  # fmt: skip
    assert response.status_code == 200, response.text


ROUTES = [
    ("POST", "/api/2.0/mlflow/experiments/create", {"json": {"name": "forged-{}"}}),
    ("POST", "/ajax-api/2.0/mlflow/experiments/create", {"json": {"name": "forged-{}"}}),
    (
        "POST",
        "/graphql",
        {"json": {"query": '{ mlflowSearchRuns(input: {experimentIds: ["0"]}) { runs { info { runId } } } }'}},
    ),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts/0/forged.txt", {}),
]


@pytest.mark.parametrize("method, path, kwargs", ROUTES, ids=[route[1] for route in ROUTES])
def test_a_forged_caller_on_the_password_routes_is_ignored(
    iam_stack: MlflowStack, users: dict[str, str], method: str, path: str, kwargs: dict
) -> None:
    forged = {CALLER_HEADER: SESSION_A}
    if "json" in kwargs and "name" in kwargs["json"]:
        kwargs = {"json": {"name": kwargs["json"]["name"].format(secrets.token_hex(3))}}
    if "/mlflow-artifacts/" in path:  # there to read: had the header counted, alice (READ) would get it
        assert api(iam_stack, "PUT", path, Accounts(iam_stack).admin, data=b"forged?").status_code == 200
    # Without a password: 401, as without the header.
    response = api(iam_stack, method, path, None, headers=forged, **kwargs)
    assert response.status_code == 401, response.text
    # With bob's password: the request is bob's, not alice's.
    bob = Account(f"bob-forger-{secrets.token_hex(3)}", secrets.token_urlsafe(16))
    with Accounts(iam_stack).client() as admin:
        admin.create_user(bob.username, bob.password)
    response = api(iam_stack, method, path, bob, headers=forged, **kwargs)
    assert response.status_code == 200, response.text
    # nginx's access log names the user MLflow served (X-Mlflow-User): bob.
    lines = logged_text(Path(iam_stack.nginx.process.log_path), bob.username).splitlines()
    assert [line for line in lines if f'"{method} {path}' in line and f" - {bob.username} [" in line]
    if path.endswith("/experiments/create"):
        experiment_id = response.json()["experiment_id"]
        assert permission(iam_stack, experiment_id, bob.username) == "MANAGE"
        assert permission(iam_stack, experiment_id, users["alice"]) == "READ"  # the default, nothing granted
        audit = [line for line in audit_lines(iam_stack) if line["resource"].get("name") == kwargs["json"]["name"]]
        assert [(line["user"], "iam_caller" in line) for line in audit] == [(bob.username, False)]
