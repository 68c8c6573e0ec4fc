"""IAM sign-in end to end: real SigV4 signatures through the local stand-in for the IAM API.

The stand-in (localrun/iam_gateway.py) verifies each signature as API Gateway does and hands
nginx's IAM server the caller; MLflow maps it to the profile's user. Clients sign with the
keys the local stack issues per role and hold no MLflow password.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import botocore.auth
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from requests_auth_aws_sigv4 import AWSSigV4

from localrun.iam_gateway import IssuedCredentials
from localrun.services import FAKE_AWS
from localrun.stack import MlflowStack
from tests.integration.iam_accounts import (
    ACCOUNT,
    CAROL_PASSWORD,
    IAM_ACCOUNTS_GROUP,
    PROFILE_ROLES,
    ROGUE_ROLE,
    SQUATTER_ROLE,
    IamAccounts,
)
from tests.integration.mlflow_users import Account, Accounts, api
from tests.integration.sigv4 import env_signer
from tests.integration.test_audit_trail import audit_lines
from tests.integration.test_iam_sign_in_accounts import permission
from tests.integration.test_request_guard_accounts import PROBES, Denied, deny_to
from tests.integration.transfer_client import sha256
from tests.lab import LAB_DIR  # noqa: F401 - puts lab/source_dir on sys.path
from tests.localrun.test_iam_gateway import botocore_signed

# isort: split
import signing_session  # lab/source_dir: what configure_mlflow() installs for a signed client

# On the worker that holds the session's iam_accounts stack (conftest.py), not a second one of its own.
pytestmark = [pytest.mark.integration, IAM_ACCOUNTS_GROUP]

CLIENT = Path(__file__).with_name("signed_transfer_client.py")
ENDPOINT_ROLE = f"arn:aws:iam::{ACCOUNT}:role/mlflow-serving"  # maps to nobody


@pytest.fixture(scope="module")
def users(iam_accounts: IamAccounts) -> dict[str, str]:
    return iam_accounts.profile_users


@pytest.fixture(scope="module")
def stack(iam_accounts: IamAccounts) -> MlflowStack:
    """The session's accounts stack with IAM sign-in: a user and a principal parameter per profile (iam_accounts.py)."""
    return iam_accounts.stack


def signer(stack: MlflowStack, role: str, session: str = "SageMaker") -> AWSSigV4:
    return env_signer(stack.signed_client_env(role, session))


def signed(stack: MlflowStack, role: str, method: str, path: str, **kwargs) -> requests.Response:
    assert stack.iam_url is not None
    return requests.request(
        method, f"{stack.iam_url}/api/2.0/mlflow/{path}", auth=signer(stack, role), timeout=60, **kwargs
    )


def admin_get(stack: MlflowStack, path: str, **params: str) -> dict:
    response = requests.get(
        f"{stack.proxy_url}/api/2.0/mlflow/{path}", params=params, auth=(stack.username, stack.password), timeout=60
    )
    response.raise_for_status()
    return response.json()


def run_signed_client(stack: MlflowStack, role: str, session: str, tmp_path: Path, files: list[Path]) -> dict:
    """signed_transfer_client.py's JSON line, run as a session of `role` with no password or token anywhere."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(home), "PYTHONPATH": str(CLIENT.parent),
        "MLFLOW_ENABLE_ASYNC_LOGGING": "false", **stack.signed_client_env(role, session),
    }  # fmt: skip
    assert not [
        name for name in env if name.startswith("MLFLOW_TRACKING_") and name[16:] in ("USERNAME", "PASSWORD", "TOKEN")
    ]
    done = subprocess.run(
        [sys.executable, str(CLIENT), str(tmp_path / "downloads"), *map(str, files)],
        env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_a_signed_client_logs_runs_metrics_a_model_and_artifacts_as_its_profile_user(
    stack: MlflowStack, users: dict[str, str], big_file: Path, tmp_path: Path
) -> None:
    """The real MLflow client with MLFLOW_TRACKING_AWS_SIGV4, a 1 KB and a 200 MB file, no password anywhere."""
    small = tmp_path / "small.bin"
    small.write_bytes(secrets.token_bytes(1024))
    result = run_signed_client(stack, PROFILE_ROLES["alice"][0], "SageMaker-notebook", tmp_path, [small, big_file])
    expected = {path.name: sha256(path) for path in (small, big_file)}
    assert result["artifacts"] == expected
    assert {name: digest for name, digest in result["model"].items() if name in expected} == expected
    run = admin_get(stack, "runs/get", run_id=result["run_id"])["run"]
    # MLflow saw alice's session: the audit line of the run's creation names her and the signer.
    created = [line for line in audit_lines(stack) if line["route"].endswith("/runs/create")]
    assert created[-1]["user"] == users["alice"]
    assert created[-1]["iam_caller"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/studio-alice-execution/SageMaker-notebook"
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]} == {"accuracy": 0.93, "loss": 0.07}
    assert permission(stack, run["info"]["experiment_id"], users["alice"]) == "MANAGE", "her experiment"
    # The run's user is hers too (run_users.py), not the operating-system user the client reported.
    assert run["info"]["user_id"] == users["alice"]
    assert {"key": "mlflow.user", "value": users["alice"]} in run["data"]["tags"]


@pytest.mark.parametrize("role_index", [0, 1], ids=["execution role", "training role"])
def test_each_of_a_profiles_roles_is_its_user_whatever_the_session(
    stack: MlflowStack, users: dict[str, str], role_index: int
) -> None:
    role = PROFILE_ROLES["bob"][role_index]
    for session in ("SageMaker", f"training-job-{secrets.token_hex(4)}"):
        response = requests.get(
            f"{stack.iam_url}/api/2.0/mlflow/users/current", auth=signer(stack, role, session), timeout=60
        )
        assert response.status_code == 200, response.text
        assert response.json()["user"]["username"] == users["bob"]


def test_a_profiles_role_cannot_write_anothers_experiment(stack: MlflowStack, users: dict[str, str]) -> None:
    name = f"bob-only-{secrets.token_hex(4)}"
    created = signed(stack, PROFILE_ROLES["bob"][0], "POST", "experiments/create", json={"name": name})
    assert created.status_code == 200, created.text
    experiment = created.json()["experiment_id"]
    # READ for everyone (default_permission): alice sees it but may not log into it or change it.
    assert signed(stack, PROFILE_ROLES["alice"][0], "GET", "experiments/get", params={"experiment_id": experiment}).ok
    for path, body in (
        ("runs/create", {"experiment_id": experiment}),
        ("experiments/update", {"experiment_id": experiment, "new_name": name + "-taken"}),
        ("experiments/delete", {"experiment_id": experiment}),
    ):
        refused = signed(stack, PROFILE_ROLES["alice"][1], "POST", path, json=body)
        assert refused.status_code == 403, (path, refused.text)
    assert admin_get(stack, "experiments/get", experiment_id=experiment)["experiment"]["name"] == name


def test_a_role_nobody_mapped_is_refused_with_its_arn(stack: MlflowStack) -> None:
    refused = signed(stack, ENDPOINT_ROLE, "GET", "experiments/search", params={"max_results": "1"})
    assert refused.status_code == 403
    assert f"arn:aws:sts::{ACCOUNT}:assumed-role/mlflow-serving/SageMaker" in refused.text


def test_a_profile_parameter_cannot_make_a_role_the_admin_or_another_user(stack: MlflowStack) -> None:
    """Only the deployment's iam_principals may map a role to an admin; a parameter maps only to its own name."""
    refused = signed(stack, ROGUE_ROLE, "GET", "users/current")
    assert refused.status_code == 403
    assert f"mapped to admin {stack.username} by a profile parameter" in refused.text
    squatter = signed(stack, SQUATTER_ROLE, "GET", "users/current")
    assert squatter.status_code == 403 and "is not mapped to an MLflow user" in squatter.text


def _keys(stack: MlflowStack) -> IssuedCredentials:
    return stack.iam_credentials.issue(PROFILE_ROLES["alice"][0], "attacker-replay")


def _unsigned(stack: MlflowStack, url: str, body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json"}


def _wrong_secret(stack: MlflowStack, url: str, body: bytes) -> dict[str, str]:
    return botocore_signed(
        _keys(stack), url, body=body, region=FAKE_AWS["AWS_REGION"], secret="not-" + secrets.token_hex(8)
    )


def _expired(stack: MlflowStack, url: str, body: bytes) -> dict[str, str]:
    past = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=6)
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda: past  # type: ignore[assignment]
    try:
        return botocore_signed(_keys(stack), url, body=body, region=FAKE_AWS["AWS_REGION"])
    finally:
        botocore.auth.get_current_datetime = original


def _for_another_host(stack: MlflowStack, url: str, body: bytes) -> dict[str, str]:
    """Signed for another API (another host), sent here as it was signed."""
    parts = urlsplit(url)
    elsewhere = url.replace(parts.netloc, f"127.0.0.2:{parts.port}")
    return botocore_signed(_keys(stack), elsewhere, body=body, region=FAKE_AWS["AWS_REGION"])


@pytest.mark.parametrize("sign", [_unsigned, _wrong_secret, _expired, _for_another_host])
def test_unsigned_badly_signed_expired_and_replayed_requests_change_nothing(stack: MlflowStack, sign) -> None:
    assert stack.iam_url is not None
    name = f"refused-{secrets.token_hex(4)}"
    url = f"{stack.iam_url}/api/2.0/mlflow/experiments/create"
    body = json.dumps({"name": name}).encode()
    response = requests.post(url, data=body, headers=sign(stack, url, body), timeout=60)
    assert response.status_code == 403, response.text
    missing = requests.get(
        f"{stack.proxy_url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name},
        auth=(stack.username, stack.password), timeout=60,
    )  # fmt: skip
    assert missing.status_code == 404, "nothing was created"


# A colleague's role signed in as user carol, who may read every experiment but E (a DENY),
# tries E through every route the password tests probe, now through the IAM API.
@dataclass(frozen=True)
class SignedAccount(Account):
    """An MLflow user reached by signing as one of its roles: `auth` is a SigV4 signer, not a password."""

    signer: AWSSigV4 = field(default=None, repr=False)  # type: ignore[assignment]

    @property
    def auth(self) -> AWSSigV4:  # type: ignore[override]
        return self.signer


class IamRoute:
    """The stack as the probes see it, with its IAM API where they look for the proxy."""

    def __init__(self, stack: MlflowStack) -> None:
        self._stack = stack
        self.proxy_url = stack.iam_url

    def __getattr__(self, name: str) -> object:
        return getattr(self._stack, name)


@pytest.fixture(scope="module")
def carol_denied(stack: MlflowStack, users: dict[str, str]) -> Denied:
    accounts = Accounts(stack)
    carol = Account(users["carol"], CAROL_PASSWORD)
    denied = deny_to(accounts, stack, carol)
    signed_carol = SignedAccount(carol.username, "", signer(stack, PROFILE_ROLES["carol"][0], "colleague-notebook"))
    return replace(denied, b=signed_carol)


def test_a_denied_experiment_stays_denied_on_every_route_through_the_iam_api(
    stack: MlflowStack, carol_denied: Denied
) -> None:
    route = IamRoute(stack)
    # The signed colleague reaches what the role grants (the probes' baseline is meaningful).
    own = api(
        route,
        "GET",
        "/api/2.0/mlflow/experiments/get",
        carol_denied.b,
        params={"experiment_id": carol_denied.b_experiment_id},
    )  # type: ignore[arg-type]
    assert own.status_code == 200, own.text
    for name, probe in PROBES.items():
        for spelling in [carol_denied.experiment_id, *carol_denied.spellings()]:
            if "header" in name and spelling != spelling.strip():
                continue  # HTTP drops white space around a header value
            response = probe(route, carol_denied, spelling)  # type: ignore[arg-type]
            assert not carol_denied.leaks(response), (name, spelling, response.status_code, response.text[:300])
            if not name.startswith("GraphQL") and "OTLP" not in name:
                assert response.status_code in (200, 400, 403), (name, spelling, response.status_code)


def test_configure_mlflows_signer_signs_what_mlflows_own_cannot(
    stack: MlflowStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """signing_session: two order_by keys, spaces in a query, folder and file names, an empty file proxied."""
    env = stack.signed_client_env(PROFILE_ROLES["alice"][0], "SageMaker")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    order = ["name ASC", "last_updated_timestamp DESC"]
    with pytest.raises(MlflowException, match="signature"):  # MLflow's own signer signs one of the two
        client.search_registered_models(order_by=order)
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=env.get("AWS_SESSION_TOKEN"), region_name=env["AWS_REGION"],
    )  # fmt: skip
    # reuse() replaces the name MLflow imports; monkeypatch puts the stock class back afterwards.
    monkeypatch.setattr(sys.modules[signing_session.SIGNER_MODULE], "AWSSigV4", signing_session.stock_signer())
    assert signing_session.reuse(session, env["AWS_REGION"])
    assert client.search_registered_models(filter_string="name LIKE 'no such %'", order_by=order) == []
    experiment = client.create_experiment(f"spaces-{secrets.token_hex(4)}")
    run = client.create_run(experiment).info.run_id
    files = {"x y é.txt": secrets.token_bytes(2048), "empty.bin": b""}
    for name, body in files.items():
        (tmp_path / name).write_bytes(body)
        client.log_artifact(run, str(tmp_path / name), artifact_path="my folder")
    for name, body in files.items():
        got = client.download_artifacts(run, f"my folder/{name}", str(tmp_path / "back"))
        assert Path(got).read_bytes() == body, name
