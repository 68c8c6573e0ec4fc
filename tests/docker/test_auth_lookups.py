"""The auth app's cheaper lookups (docker/mlflow/auth_lookups.py) give the same answers."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
from flask import Flask
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.server import auth as mlflow_auth
from mlflow.server import handlers as mlflow_handlers
from mlflow.server.auth.sqlalchemy_store import RoleGrantRow
from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from sqlalchemy import Engine, event

from tests.docker.image_modules import image_module
from tests.mlflow_databases import fresh_database, tracking_database


@pytest.fixture(scope="module")
def lookups() -> Iterator[ModuleType]:
    with image_module("auth_lookups") as module:
        yield module


@pytest.fixture(scope="module")
def tracking_store(tmp_path_factory: pytest.TempPathFactory) -> SqlAlchemyStore:
    root = tmp_path_factory.mktemp("tracking")
    return SqlAlchemyStore(tracking_database(root / "mlflow.db"), str(root / "artifacts"))


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


@contextmanager
def recorded_statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements the engine runs inside the block."""
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.fixture
def statements(tracking_store: SqlAlchemyStore) -> Iterator[list[str]]:
    with recorded_statements(tracking_store.engine) as seen:
        yield seen


def test_a_runs_experiment_is_read_once_and_every_other_field_when_used(
    lookups: ModuleType, tracking_store: SqlAlchemyStore, statements: list[str]
) -> None:
    experiment_id = tracking_store.create_experiment("remembered")
    run_id = tracking_store.create_run(experiment_id, "alice", 1, [], "before").info.run_id
    view = lookups.RunInfoStore(tracking_store)
    assert view.get_run(run_id).info.status == "RUNNING"
    statements.clear()

    again = view.get_run(run_id)
    assert (again.info.run_id, again.info.experiment_id) == (run_id, experiment_id)
    assert statements == []  # the auth app's question costs no query
    tracking_store.update_run_info(run_id, RunStatus.FINISHED, 5, "after")
    statements.clear()
    assert (again.info.status, again.info.run_name, again.info.end_time) == ("FINISHED", "after", 5)
    assert len(statements) == 1  # the row, read once for all other fields, current
    assert again.info.to_proto() == tracking_store.get_run(run_id).info.to_proto()
    assert not again.data.metrics and not again.data.params


def test_a_run_removed_after_it_was_remembered(lookups: ModuleType, tracking_store: SqlAlchemyStore) -> None:
    """The documented difference: the experiment id still answers; any other field is the store's not-found."""
    experiment_id = tracking_store.create_experiment("collected")
    run_id = tracking_store.create_run(experiment_id, "alice", 1, [], "gone").info.run_id
    view = lookups.RunInfoStore(tracking_store)
    view.get_run(run_id)
    tracking_store.delete_run(run_id)
    tracking_store._hard_delete_run(run_id)  # what `mlflow gc` does

    remembered = view.get_run(run_id)
    assert remembered.info.experiment_id == experiment_id
    with pytest.raises(MlflowException) as raised:
        remembered.info.lifecycle_stage
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException):
        lookups.RunInfoStore(tracking_store).get_run("f" * 32)


def test_a_missing_run_is_never_remembered(
    lookups: ModuleType, tracking_store: SqlAlchemyStore, statements: list[str]
) -> None:
    view = lookups.RunInfoStore(tracking_store)
    for _ in range(2):
        with pytest.raises(MlflowException):
            view.get_run("e" * 32)
    assert len(statements) == 2


def test_remembered_runs_are_bounded_and_kept_per_store(
    lookups: ModuleType, tracking_store: SqlAlchemyStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lookups, "RUN_EXPERIMENTS", 2)
    experiment_id = tracking_store.create_experiment("bounded")
    runs = [tracking_store.create_run(experiment_id, "alice", 1, [], f"r{i}").info.run_id for i in range(3)]
    lookups._run_experiments.pop(tracking_store, None)
    view = lookups.RunInfoStore(tracking_store)
    for run_id in runs:
        view.get_run(run_id)
    assert list(lookups._run_experiments[tracking_store]) == runs[2:]  # full at two: started over

    other = SqlAlchemyStore(tracking_database(tmp_path / "other.db"), str(tmp_path / "artifacts"))
    with pytest.raises(MlflowException):
        lookups.RunInfoStore(other).get_run(runs[2])  # another store's runs are not this one's
    other.engine.dispose()


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


def use_tracking_store(tracking_store: SqlAlchemyStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's own _get_tracking_store (the reviewed one, put back after the test), answering `tracking_store`."""
    monkeypatch.setattr(mlflow_auth, "_get_tracking_store", mlflow_auth._get_tracking_store)
    monkeypatch.setattr(mlflow_handlers, "_tracking_store", tracking_store)


@pytest.fixture
def installed(lookups: ModuleType, tracking_store: SqlAlchemyStore, monkeypatch: pytest.MonkeyPatch) -> CountingUsers:
    users = CountingUsers()
    # monkeypatch puts MLflow's own objects back after the test.
    monkeypatch.setattr(mlflow_auth, "store", users)
    use_tracking_store(tracking_store, monkeypatch)
    lookups.install()
    lookups.install()  # a second import must not wrap twice
    return users


def test_install_gives_the_auth_module_both_lookups(lookups: ModuleType, installed: CountingUsers) -> None:
    assert isinstance(mlflow_auth._get_tracking_store(), lookups.RunInfoStore)
    assert not hasattr(mlflow_auth._get_tracking_store.__wrapped__, "__wrapped__")
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
    """MLflow imports credential_cache (the ini's authorization_function) in each worker; it installs
    the cheaper lookups."""
    monkeypatch.setattr(mlflow_auth, "store", CountingUsers())
    use_tracking_store(tracking_store, monkeypatch)
    import credential_cache

    importlib.reload(credential_cache)
    assert isinstance(mlflow_auth.store, lookups.RequestUserStore)
    assert isinstance(mlflow_auth._get_tracking_store(), lookups.RunInfoStore)


@pytest.fixture(scope="module")
def auth_store(tmp_path_factory: pytest.TempPathFactory) -> AuthStore:
    """MLflow's own user store with users, per-resource grants and roles in two workspaces."""
    store = AuthStore()
    store.init_db(fresh_database("auth", tmp_path_factory.mktemp("auth") / "auth.db"))
    for name in ("alice", "bob", "carol"):
        store.create_user(name, "a-long-enough-password-1", is_admin=name == "carol")
    store.create_experiment_permission("1", "alice", "READ")
    store.create_experiment_permission("2", "alice", "MANAGE")
    store.create_registered_model_permission("model-a", "alice", "EDIT")
    store.create_experiment_permission("1", "bob", "DENY")
    for workspace in ("default", "other"):
        role = store.create_role(f"readers-{workspace}", workspace)
        store.add_role_permission(role.id, "experiment", "*", "READ")
        store.add_role_permission(role.id, "workspace", "*", "MANAGE")
        store.assign_role_to_user(store.get_user("bob").id, role.id)
    store.assign_role_to_user(store.get_user("carol").id, store.create_role("empty", "default").id)
    return store


def test_a_user_reads_as_mlflows_get_user(lookups: ModuleType, auth_store: AuthStore) -> None:
    for name in ("alice", "carol"):
        mine, theirs = lookups.read_user(auth_store, name), auth_store.get_user(name)
        assert vars(mine) == vars(theirs) and type(mine) is type(theirs)
    assert lookups.read_user(auth_store, "carol").is_admin is True
    with pytest.raises(MlflowException) as mine:
        lookups.read_user(auth_store, "mallory")
    with pytest.raises(MlflowException) as theirs:
        auth_store.get_user("mallory")
    assert (mine.value.error_code, mine.value.message) == (theirs.value.error_code, theirs.value.message)


@pytest.mark.parametrize("types", [{"experiment"}, {"registered_model"}, {"experiment", "logged_model"}, set()])
@pytest.mark.parametrize("workspace", ["default", "other", "none-such"])
def test_grants_read_as_mlflows_list_grants(
    lookups: ModuleType, auth_store: AuthStore, workspace: str, types: set[str]
) -> None:
    for name in ("alice", "bob", "carol"):
        user_id = auth_store.get_user(name).id
        mine = lookups.read_grants(auth_store, user_id, workspace, types)
        assert sorted(mine) == sorted(auth_store.list_grants(user_id, workspace, types))
        assert all(type(row) is RoleGrantRow for row in mine)
    bob = auth_store.get_user("bob").id
    if workspace != "none-such":  # the fixture's grants show up, so the comparison compares something
        assert ("workspace", "*", "MANAGE") in lookups.read_grants(auth_store, bob, workspace, types)


def test_an_unknown_resource_type_is_refused_like_mlflow(lookups: ModuleType, auth_store: AuthStore) -> None:
    with pytest.raises(MlflowException) as mine:
        lookups.read_grants(auth_store, 1, "default", {"experiments"})
    with pytest.raises(MlflowException) as theirs:
        auth_store.list_grants(1, "default", {"experiments"})
    assert (mine.value.error_code, mine.value.message) == (theirs.value.error_code, theirs.value.message)


def test_the_request_user_store_reads_grants_through_core(lookups: ModuleType, auth_store: AuthStore) -> None:
    user_id = auth_store.get_user("alice").id
    view = lookups.RequestUserStore(auth_store)
    assert sorted(view.list_grants(user_id, "default", {"experiment"})) == sorted(
        auth_store.list_grants(user_id, "default", {"experiment"})
    )


@pytest.mark.parametrize("types", [{"experiment"}, {"registered_model"}, {"experiment", "run", "workspace"}, set()])
@pytest.mark.parametrize("workspace", ["default", "other", "none-such"])
def test_in_a_request_the_user_and_grants_are_one_query(
    lookups: ModuleType, auth_store: AuthStore, workspace: str, types: set[str]
) -> None:
    view = lookups.RequestUserStore(auth_store)
    expected = {name: sorted(auth_store.list_grants(auth_store.get_user(name).id, workspace, types))
                for name in ("alice", "bob", "carol")}  # fmt: skip
    for name in ("alice", "bob", "carol"):
        with Flask(__name__).test_request_context("/"), recorded_statements(auth_store.engine) as statements:
            user = view.get_user(name)
            grants = view.list_grants(user.id, workspace, types)
        assert len(statements) == 1  # the user's query answers both
        assert vars(user) == vars(auth_store.get_user(name)) and sorted(grants) == expected[name]
    if workspace != "none-such":
        assert ("workspace", "*", "MANAGE") in expected["bob"]  # the comparison compares something


def test_grants_read_with_the_user_are_forgotten_with_it(lookups: ModuleType, auth_store: AuthStore) -> None:
    view = lookups.RequestUserStore(auth_store)
    with Flask(__name__).test_request_context("/api/2.0/mlflow/runs/log-batch"):
        alice, bob = view.get_user("alice"), auth_store.get_user("bob")
        with pytest.raises(MlflowException) as refused:
            view.list_grants(alice.id, "default", {"experiments"})  # still checked as MLflow does
        assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
        with recorded_statements(auth_store.engine) as statements:
            bob_grants = view.list_grants(bob.id, "default", {"experiment"})
        assert len(statements) == 1  # another user's grants are asked for
        assert sorted(bob_grants) == sorted(auth_store.list_grants(bob.id, "default", {"experiment"}))

        role = view.create_role("writers", "default")
        view.add_role_permission(role.id, "experiment", "7", "EDIT")
        for change, held in ((view.assign_role_to_user, True), (view.unassign_role_from_user, False)):
            change(alice.id, role.id)  # a change through the store forgets what this request read
            assert (("experiment", "7", "EDIT") in view.list_grants(alice.id, "default", {"experiment"})) is held
            with recorded_statements(auth_store.engine) as statements:
                assert view.get_user("alice").id == alice.id
                grants = view.list_grants(alice.id, "default", {"experiment"})
            assert len(statements) == 1 and (("experiment", "7", "EDIT") in grants) is held


def test_where_text_may_compare_loosely_grants_are_asked_for(
    lookups: ModuleType, auth_store: AuthStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lookups, "EXACT_TEXT_MATCH", ("postgresql",))  # as if this SQLite store were MySQL
    view = lookups.RequestUserStore(auth_store)
    with Flask(__name__).test_request_context("/"), recorded_statements(auth_store.engine) as statements:
        bob = view.get_user("bob")
        grants = view.list_grants(bob.id, "other", {"experiment"})
    queries = [statement for statement in statements if statement.startswith("SELECT")]
    assert len(queries) == 2 and sorted(grants) == sorted(auth_store.list_grants(bob.id, "other", {"experiment"}))
