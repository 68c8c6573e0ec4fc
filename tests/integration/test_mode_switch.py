"""Moving a running deployment from shared to accounts keeps every run, model and artifact.

A stack of its own starts in shared mode; everything a team has is logged
through the proxy, including an experiment from before artifacts were served
(artifact location s3://..., written by a client with IAM access; the
request guard no longer lets anyone create one, so it goes straight into the database). Then both
containers are redeployed in accounts mode on the same database and bucket:
the credentials secret's user is now MLflow's admin and reads it all back.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.server.auth.client import AuthServiceClient
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression

from localrun.process import environment
from localrun.services import FAKE_AWS, MotoServer
from localrun.stack import MlflowStack
from tests.docker.image_modules import image_module
from tests.integration.mlflow_users import Account, as_mlflow_user

pytestmark = pytest.mark.integration

MODEL_NAME = "switch-model"


@dataclass
class Before:
    experiment_id: str
    run_id: str
    legacy_run_id: str
    files: dict[str, str]  # artifact path -> sha256
    legacy_sha256: str


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, moto_server: MotoServer) -> Iterator[MlflowStack]:
    """A stack of its own: it is redeployed in another mode, which no session stack may be, and the
    admin must find exactly what was logged before. Its setup is two MLflow starts (shared, then
    accounts: about 11 and 13 CPU-seconds, mostly MLflow's imports) and a logged model."""
    stack = MlflowStack(tmp_path_factory.mktemp("switch-stack"), moto=moto_server, workers=1)
    stack.start()
    yield stack
    stack.stop()


@contextmanager
def with_iam_access(stack: MlflowStack) -> Iterator[None]:
    """A client that also has AWS credentials for the bucket (a Studio role before the move)."""
    with environment({**FAKE_AWS, "MLFLOW_S3_ENDPOINT_URL": stack.moto_endpoint}):
        yield


def legacy_experiment(stack: MlflowStack, name: str, location: str) -> str:
    """An experiment with a client-chosen s3:// location, written into the database as deployments
    from before served artifacts (and before the request guard refused such locations) did."""
    with image_module("entrypoint") as entrypoint:
        uri = entrypoint.backend_store_uri(stack.db_env)
    store = SqlAlchemyStore(uri, "mlflow-artifacts:/")
    try:
        return store.create_experiment(name, artifact_location=location)
    finally:
        store.engine.dispose()


@pytest.fixture(scope="module")
def before(stack: MlflowStack, tmp_path_factory: pytest.TempPathFactory) -> Before:
    files = tmp_path_factory.mktemp("switch-files")
    (files / "notes.txt").write_text("kept\n")
    (files / "weights.bin").write_bytes(os.urandom(6 * 1024 * 1024))  # presigned
    with as_mlflow_user(stack):
        client = MlflowClient()
        experiment_id = client.create_experiment("before-the-switch")
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_param("alpha", "0.5")
            mlflow.log_metric("loss", 0.25, step=3)
            for name in ("notes.txt", "weights.bin"):
                mlflow.log_artifact(str(files / name))
            model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
            mlflow.sklearn.log_model(model, name="model", registered_model_name=MODEL_NAME,
                                     pip_requirements=["scikit-learn"])  # fmt: skip
        legacy = files / "legacy.txt"
        legacy.write_text("written straight to S3 before artifacts were served\n")
        legacy_id = legacy_experiment(stack, "from-before-served-artifacts", f"s3://{stack.bucket}/legacy-artifacts")
        with with_iam_access(stack):
            with mlflow.start_run(experiment_id=legacy_id) as legacy_run:
                mlflow.log_artifact(str(legacy))
    return Before(
        experiment_id=experiment_id, run_id=run.info.run_id, legacy_run_id=legacy_run.info.run_id,
        files={name: sha256(files / name) for name in ("notes.txt", "weights.bin")},
        legacy_sha256=sha256(legacy),
    )  # fmt: skip


@pytest.fixture(scope="module")
def switched(stack: MlflowStack, before: Before) -> Before:
    stack.switch_auth_mode("accounts")
    return before


def test_the_secrets_user_is_now_mlflows_admin(switched: Before, stack: MlflowStack) -> None:
    response = requests.get(
        stack.proxy_url + "/api/2.0/mlflow/users/current", auth=(stack.username, stack.password), timeout=30
    )
    assert response.status_code == 200 and response.json()["user"]["is_admin"] is True


def test_runs_and_models_are_kept(switched: Before, stack: MlflowStack, tmp_path: Path) -> None:
    with as_mlflow_user(stack):
        client = MlflowClient()
        run = client.get_run(switched.run_id)
        assert run.data.params == {"alpha": "0.5"}
        assert [(m.step, m.value) for m in client.get_metric_history(switched.run_id, "loss")] == [(3, 0.25)]
        model = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}/1", dst_path=str(tmp_path))
        assert list(model.predict([[0.0], [1.0]])) == [0, 1]


def test_artifacts_are_kept(switched: Before, stack: MlflowStack, tmp_path: Path) -> None:
    with as_mlflow_user(stack):
        for name, digest in switched.files.items():
            path = mlflow.artifacts.download_artifacts(
                run_id=switched.run_id, artifact_path=name, dst_path=str(tmp_path)
            )
            assert sha256(Path(path)) == digest


def test_experiments_with_s3_locations_work_for_clients_with_iam_access(
    switched: Before, stack: MlflowStack, tmp_path: Path
) -> None:
    with as_mlflow_user(stack), with_iam_access(stack):
        path = mlflow.artifacts.download_artifacts(
            run_id=switched.legacy_run_id, artifact_path="legacy.txt", dst_path=str(tmp_path)
        )
    assert sha256(Path(path)) == switched.legacy_sha256


def test_old_experiments_are_read_only_for_other_users_until_the_admin_grants(
    switched: Before, stack: MlflowStack
) -> None:
    """They have no owner: default_permission (READ, the default) applies, as the README says."""
    user = Account(f"after-{secrets.token_hex(3)}", secrets.token_urlsafe(16))
    with as_mlflow_user(stack):
        admin = AuthServiceClient(stack.proxy_url)
        admin.create_user(user.username, user.password)
    with as_mlflow_user(stack, user):
        client = MlflowClient()
        assert client.get_run(switched.run_id).data.params == {"alpha": "0.5"}
        with pytest.raises(MlflowException, match="PERMISSION_DENIED|Permission denied"):
            client.create_run(switched.experiment_id)
    with as_mlflow_user(stack):
        admin.grant_user_permission(user.username, "experiment", switched.experiment_id, "MANAGE")
    with as_mlflow_user(stack, user):
        assert MlflowClient().create_run(switched.experiment_id).info.experiment_id == switched.experiment_id
