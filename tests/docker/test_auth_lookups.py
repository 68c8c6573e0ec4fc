"""The auth app's cheaper lookups (docker/mlflow/auth_lookups.py) give the same answers."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
from flask import Flask
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.server import auth as mlflow_auth
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from localrun.services import MLFLOW_ENTRYPOINT


@pytest.fixture(scope="module")
def lookups() -> Iterator[ModuleType]:
    sys.path.insert(0, str(MLFLOW_ENTRYPOINT.parent))
    try:
        import auth_lookups

        yield auth_lookups
    finally:
        sys.path.remove(str(MLFLOW_ENTRYPOINT.parent))


@pytest.fixture(scope="module")
def tracking_store(tmp_path_factory: pytest.TempPathFactory) -> SqlAlchemyStore:
    root = tmp_path_factory.mktemp("tracking")
    return SqlAlchemyStore(f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts"))


def test_a_run_reads_back_with_the_same_info_and_no_data(lookups: ModuleType, tracking_store: SqlAlchemyStore) -> None:
    experiment_id = tracking_store.create_experiment("lookups")
    run = tracking_store.create_run(experiment_id, "alice", 1, [], "r1")
    tracking_store.log_batch(run.info.run_id, [Metric("m", 1.0, 2, 0)], [Param("p", "v")], [])
    tracking_store.update_run_info(run.info.run_id, RunStatus.FINISHED, 3, "r1")

    light = lookups.RunInfoStore(tracking_store).get_run(run.info.run_id)
    full = tracking_store.get_run(run.info.run_id)
    assert light.info.to_proto() == full.info.to_proto()
    assert light.info.experiment_id == experiment_id and light.info.status == "FINISHED"
    assert not light.data.metrics and not light.data.params and full.data.params == {"p": "v"}


def test_a_missing_run_is_the_stores_not_found(lookups: ModuleType, tracking_store: SqlAlchemyStore) -> None:
    with pytest.raises(MlflowException) as raised:
        lookups.RunInfoStore(tracking_store).get_run("0" * 32)
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_everything_else_is_the_store(lookups: ModuleType, tracking_store: SqlAlchemyStore) -> None:
    view = lookups.RunInfoStore(tracking_store)
    experiment_id = tracking_store.create_experiment("delegated")
    assert view.get_experiment(experiment_id).name == "delegated"


class CountingUsers:
    """Stands in for the auth app's user store: counts what reaches the database."""

    def __init__(self) -> None:
        self.reads = 0
        self.users = {"alice": "hash-1"}

    def get_user(self, username: str) -> str:
        self.reads += 1
        if username not in self.users:
            raise MlflowException("no such user", error_code=mlflow_auth.RESOURCE_DOES_NOT_EXIST)
        return self.users[username]

    def update_user(self, username: str, password: str) -> None:
        self.users[username] = password

    def list_users(self) -> list[str]:
        return list(self.users)


@pytest.fixture
def installed(lookups: ModuleType, tracking_store: SqlAlchemyStore, monkeypatch: pytest.MonkeyPatch) -> CountingUsers:
    users = CountingUsers()
    # monkeypatch puts MLflow's own objects back after the test.
    monkeypatch.setattr(mlflow_auth, "store", users)
    monkeypatch.setattr(mlflow_auth, "_get_tracking_store", lambda: tracking_store)
    lookups.install()
    lookups.install()  # a second import must not wrap twice
    return users


def test_install_gives_the_auth_module_both_lookups(lookups: ModuleType, installed: CountingUsers) -> None:
    assert isinstance(mlflow_auth._get_tracking_store(), lookups.RunInfoStore)
    assert isinstance(mlflow_auth.store, lookups.RequestUserStore)
    assert not isinstance(mlflow_auth.store._store, lookups.RequestUserStore)


def test_a_user_is_read_once_per_request_and_again_after_a_change(installed: CountingUsers) -> None:
    app = Flask(__name__)
    with app.test_request_context("/api/2.0/mlflow/runs/log-batch"):
        assert [mlflow_auth.store.get_user("alice") for _ in range(3)] == ["hash-1"] * 3
        assert installed.reads == 1
        mlflow_auth.store.list_users()  # reading does not forget
        assert mlflow_auth.store.get_user("alice") == "hash-1" and installed.reads == 1
        mlflow_auth.store.update_user("alice", "hash-2")
        assert mlflow_auth.store.get_user("alice") == "hash-2" and installed.reads == 2
        for _ in range(2):  # a missing user is asked for every time, never remembered
            with pytest.raises(MlflowException):
                mlflow_auth.store.get_user("mallory")
        assert installed.reads == 4
    with app.test_request_context("/"):
        mlflow_auth.store.get_user("alice")
        assert installed.reads == 5  # a new request reads again
    mlflow_auth.store.get_user("alice")
    mlflow_auth.store.get_user("alice")
    assert installed.reads == 7  # outside a request nothing is kept


def test_the_password_check_module_installs_them(
    lookups: ModuleType, tracking_store: SqlAlchemyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow imports credential_cache (the ini's authorization_function) in each worker."""
    monkeypatch.setattr(mlflow_auth, "store", CountingUsers())
    monkeypatch.setattr(mlflow_auth, "_get_tracking_store", lambda: tracking_store)
    import credential_cache

    importlib.reload(credential_cache)
    assert isinstance(mlflow_auth.store, lookups.RequestUserStore)
    assert isinstance(mlflow_auth._get_tracking_store(), lookups.RunInfoStore)
