"""accounts mode: MLflow's auth app decides who sees and changes what, artifacts included.

User A owns an experiment, a run with artifacts (a small one served through
the proxy, a 6 MB one through presigned S3 URLs), a logged model and a
registered model. The stack's default permission is NO_PERMISSIONS, so user B
sees none of it until A grants READ, and cannot change it afterwards either.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression

from localrun.stack import MlflowStack
from tests.integration.mlflow_users import ACCOUNTS_GROUP, Account, Accounts, api, as_mlflow_user
from tests.test_readme import doc

pytestmark = [pytest.mark.integration, ACCOUNTS_GROUP]

BIG = 6 * 1024 * 1024  # above the 5 MiB presigned threshold


@dataclass
class Owned:
    a: Account
    b: Account
    experiment_id: str
    run_id: str
    model_name: str
    model_id: str
    small_sha256: str
    big_sha256: str

    @property
    def artifact_dir(self) -> str:
        """The run's artifacts under the mlflow-artifacts:/ root: <experiment>/<run>/artifacts."""
        return f"{self.experiment_id}/{self.run_id}/artifacts"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def owned(accounts: Accounts, accounts_stack: MlflowStack, tmp_path_factory: pytest.TempPathFactory) -> Owned:
    a, b = accounts.new_user("a"), accounts.new_user("b")
    files = tmp_path_factory.mktemp("owned")
    small, big = files / "small.txt", files / "big.bin"
    small.write_text("A's notes\n")
    big.write_bytes(os.urandom(BIG))
    with as_mlflow_user(accounts_stack, a):
        experiment_id = MlflowClient().create_experiment(f"a-experiment-{a.username}")
        model_name = f"a-model-{a.username}"
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_metric("loss", 0.5)
            mlflow.log_artifact(str(small))
            mlflow.log_artifact(str(big))
            model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
            info = mlflow.sklearn.log_model(
                model, name="model", registered_model_name=model_name, pip_requirements=["scikit-learn"]
            )  # fmt: skip
    return Owned(
        a=a, b=b, experiment_id=experiment_id, run_id=run.info.run_id, model_name=model_name,
        model_id=info.model_id, small_sha256=sha256(small), big_sha256=sha256(big),
    )  # fmt: skip


Spec = tuple[str, str, dict]


def get(url: str, /, **params: str) -> Spec:
    return ("GET", url, {"params": params} if params else {})


def post(path: str, body: dict) -> Spec:
    return ("POST", path, {"json": body})


def reads(owned: Owned) -> dict[str, Spec]:
    """Every way to read A's things: REST API, artifact proxy and presigned URLs."""
    run, exp, model, files = owned.run_id, owned.experiment_id, owned.model_name, owned.artifact_dir
    proxy = "/api/2.0/mlflow-artifacts"
    return {
        "experiment": get("/api/2.0/mlflow/experiments/get", experiment_id=exp),
        "run": get("/api/2.0/mlflow/runs/get", run_id=run),
        "metric history": get("/api/2.0/mlflow/metrics/get-history", run_id=run, metric_key="loss"),
        "registered model": get("/api/2.0/mlflow/registered-models/get", name=model),
        "model version": get("/api/2.0/mlflow/model-versions/get", name=model, version="1"),
        "logged model": get(f"/api/2.0/mlflow/logged-models/{owned.model_id}"),
        "list run artifacts": get("/api/2.0/mlflow/artifacts/list", run_id=run),
        "UI artifact download": get("/get-artifact", run_uuid=run, path="small.txt"),
        "model version artifact": get("/model-versions/get-artifact", name=model, version="1", path="MLmodel"),
        "proxied artifact download": get(f"{proxy}/artifacts/{files}/small.txt"),
        "proxied artifact listing": get(f"{proxy}/artifacts", path=files),
        "presigned download URL": get(f"{proxy}/presigned/{files}/big.bin"),
        "presigned download URL (run API)": post(
            "/api/2.0/mlflow/artifacts/presigned-download-url", {"run_id": run, "path": "big.bin"}
        ),
        "logged model artifact": get(f"{proxy}/artifacts/{exp}/models/{owned.model_id}/artifacts/MLmodel"),
    }


def writes(owned: Owned) -> dict[str, Spec]:
    """Every way to change A's things, artifacts included."""
    run, exp, files = owned.run_id, owned.experiment_id, owned.artifact_dir
    proxy = "/api/2.0/mlflow-artifacts"
    metric = {"key": "m", "value": 1, "timestamp": 0, "step": 0}
    return {
        "log metrics": post("/api/2.0/mlflow/runs/log-batch", {"run_id": run, "metrics": [metric]}),
        "tag experiment": post(
            "/api/2.0/mlflow/experiments/set-experiment-tag", {"experiment_id": exp, "key": "k", "value": "v"}
        ),
        "create run": post("/api/2.0/mlflow/runs/create", {"experiment_id": exp}),
        "describe model": post(
            "/api/2.0/mlflow/registered-models/update", {"name": owned.model_name, "description": "mine"}
        ),
        "proxied artifact upload": ("PUT", f"{proxy}/artifacts/{files}/injected.txt", {"data": b"x"}),
        "proxied artifact delete": ("DELETE", f"{proxy}/artifacts/{files}/small.txt", {}),
        "multipart upload": post(f"{proxy}/mpu/create/{files}", {"path": "injected.bin", "num_parts": 1}),
        "presigned upload URL": post(
            "/api/2.0/mlflow/artifacts/presigned-upload-url", {"run_id": run, "path": "injected.bin"}
        ),
    }


# MLflow 3.17 mints these only for runs whose artifact location is s3://..., which no
# experiment here has (users cannot choose locations): the request guard closes them for
# everyone (404), before any permission check.
CLOSED = {"presigned download URL (run API)", "presigned upload URL"}


def expected(name: str, status: int) -> int:
    return 404 if name in CLOSED else status


def call(stack: MlflowStack, account: Account, spec: Spec) -> requests.Response:
    method, path, kwargs = spec
    return api(stack, method, path, account, **kwargs)


def test_admin_comes_from_the_secret(accounts: Accounts, accounts_stack: MlflowStack) -> None:
    response = api(accounts_stack, "GET", "/api/2.0/mlflow/users/current", accounts.admin)
    assert response.status_code == 200, response.text
    assert response.json()["user"]["username"] == accounts_stack.username
    assert response.json()["user"]["is_admin"] is True


@pytest.mark.parametrize("path", ["/api/2.0/mlflow/users/current", "/ajax-api/2.0/mlflow/users/current"])
def test_sign_in_is_reported_as_basic_auth(owned: Owned, accounts_stack: MlflowStack, path: str) -> None:
    """The UI offers Logout and Change password only when MLflow says the sign-in is HTTP Basic."""
    response = api(accounts_stack, "GET", path, owned.a)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "user": {"id": response.json()["user"]["id"], "username": owned.a.username, "is_admin": False},
        "is_basic_auth": True,
    }


def test_owner_reads_everything(owned: Owned, accounts_stack: MlflowStack) -> None:
    for name, spec in reads(owned).items():
        response = call(accounts_stack, owned.a, spec)
        assert response.status_code == expected(name, 200), f"{name}: {response.status_code} {response.text[:200]}"


@pytest.mark.parametrize("kind", ["read", "write"])
def test_other_users_get_403_on_everything(owned: Owned, accounts_stack: MlflowStack, kind: str) -> None:
    for name, spec in (reads if kind == "read" else writes)(owned).items():
        response = call(accounts_stack, owned.b, spec)
        assert response.status_code == expected(name, 403), f"{name}: {response.status_code} {response.text[:200]}"


def test_other_users_do_not_find_it(owned: Owned, accounts_stack: MlflowStack) -> None:
    experiments = api(accounts_stack, "POST", "/api/2.0/mlflow/experiments/search", owned.b,
                      json={"max_results": 1000}).json().get("experiments", [])  # fmt: skip
    assert owned.experiment_id not in {e["experiment_id"] for e in experiments}
    models = api(accounts_stack, "GET", "/api/2.0/mlflow/registered-models/search", owned.b,
                 params={"max_results": 1000}).json().get("registered_models", [])  # fmt: skip
    assert owned.model_name not in {m["name"] for m in models}


def test_other_users_cannot_download_with_the_client(owned: Owned, accounts_stack: MlflowStack, tmp_path: Path) -> None:
    with as_mlflow_user(accounts_stack, owned.b):
        for path in ("small.txt", "big.bin"):
            with pytest.raises(MlflowException, match="403|PERMISSION_DENIED|Permission denied"):
                mlflow.artifacts.download_artifacts(run_id=owned.run_id, artifact_path=path, dst_path=str(tmp_path))


@pytest.fixture(scope="module")
def granted(owned: Owned, accounts: Accounts) -> Owned:
    """A, who manages what A created, lets B read the experiment and the model."""
    with accounts.client(owned.a) as a:
        a.grant_user_permission(owned.b.username, "experiment", owned.experiment_id, "READ")
        a.grant_user_permission(owned.b.username, "registered_model", owned.model_name, "READ")
    return owned


def test_after_a_grant_reads_work(granted: Owned, accounts_stack: MlflowStack) -> None:
    for name, spec in reads(granted).items():
        response = call(accounts_stack, granted.b, spec)
        assert response.status_code == expected(name, 200), f"{name}: {response.status_code} {response.text[:200]}"


def test_after_a_grant_the_client_downloads_byte_exact(
    granted: Owned, accounts_stack: MlflowStack, tmp_path: Path
) -> None:
    with as_mlflow_user(accounts_stack, granted.b):
        small, big = (
            mlflow.artifacts.download_artifacts(run_id=granted.run_id, artifact_path=name, dst_path=str(tmp_path))
            for name in ("small.txt", "big.bin")
        )
        model = mlflow.sklearn.load_model(f"models:/{granted.model_name}/1", dst_path=str(tmp_path))
    assert sha256(Path(small)) == granted.small_sha256
    assert sha256(Path(big)) == granted.big_sha256
    assert list(model.predict([[0.0], [1.0]])) == [0, 1]


def test_after_a_grant_writes_are_still_403(granted: Owned, accounts_stack: MlflowStack) -> None:
    for name, spec in writes(granted).items():
        response = call(accounts_stack, granted.b, spec)
        assert response.status_code == expected(name, 403), f"{name}: {response.status_code} {response.text[:200]}"


@pytest.mark.parametrize("who", ["wrong password", "unknown user", "empty password"])
def test_wrong_credentials_are_401(owned: Owned, accounts_stack: MlflowStack, who: str) -> None:
    account = {
        "wrong password": Account(owned.a.username, owned.a.password + "x"),
        "unknown user": Account("nobody-" + owned.a.username, owned.a.password),
        "empty password": Account(owned.a.username, ""),
    }[who]
    response = api(accounts_stack, "GET", "/api/2.0/mlflow/experiments/get", account,
                   params={"experiment_id": owned.experiment_id})  # fmt: skip
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_the_readmes_admin_example_adds_a_user_and_grants(accounts: Accounts, accounts_stack: MlflowStack) -> None:
    """The Python block of "Other users and grants" (docs/auth-modes.md), run as the admin, does what it says."""
    section = doc("auth-modes.md").split("**Other users and grants**", 1)[1]
    example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    alice = accounts.new_user("alice")
    model = "breast-cancer-classifier-alice"  # the name in the example
    with as_mlflow_user(accounts_stack, alice):
        client = MlflowClient()
        experiment_id = client.create_experiment(f"alice-{alice.username}")
        client.create_registered_model(model)
    bot = Account("ci-bot", secrets.token_urlsafe(16))
    with as_mlflow_user(accounts_stack, accounts.admin):
        exec(example, {"ci_bot_password": bot.password, "experiment_id": experiment_id})  # noqa: S102
    try:
        with as_mlflow_user(accounts_stack, bot):
            client = MlflowClient()
            run = client.create_run(experiment_id)  # EDIT on the experiment
            client.log_param(run.info.run_id, "written-by", "ci-bot")
            assert client.get_registered_model(model).name == model  # READ on the model
            for refused in (
                lambda: client.update_registered_model(model, description="changed"),
                lambda: client.delete_experiment(experiment_id),  # EDIT does not delete
            ):
                with pytest.raises(MlflowException, match="PERMISSION_DENIED|Permission denied"):
                    refused()
    finally:
        accounts.delete_user(bot)
