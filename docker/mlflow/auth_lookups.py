"""The lookups of MLflow's basic-auth app made cheaper, with the same answers.

Each request in accounts mode asks who the caller is, which experiment the
run belongs to, and which grants the caller holds. Profiled with py-spy
(benchmarks/accounts_and_artifacts.py), these checks cost two thirds of the
log-batch call they guard. Nothing that can change is kept beyond one request,
so a deleted user or a revoked grant takes effect at once on every task.

**Runs.** To decide whether a caller may write to a run (log-batch,
log-metric, ...), the auth app asks the tracking store for the run and uses
only ``run.info.experiment_id``. The store's ``get_run`` loads the run with
its latest metrics, params, tags, dataset inputs and model inputs and
outputs: about seven queries. The auth module gets its store from
``_get_tracking_store``; :func:`install` points that name, in the auth module
only, at a view of the same store whose ``get_run`` reads the run's own row
(every ``RunInfo`` field, current; an unnamed run's name is not filled in
from its tags, which the auth app never reads) and nothing else. A missing
run raises the store's own RESOURCE_DOES_NOT_EXIST, so the auth app still
denies it. The handlers that serve runs keep the real store.

A run's experiment is fixed for the run's life (MLflow has no call that moves
a run), and it is all the auth app reads of the run. So each process
remembers it once read (at most ``RUN_EXPERIMENTS`` runs, then starts over),
and a later ``get_run`` of that run costs no query: its info carries the run
id and experiment id, and reads the row on first use of any other field, so
every field still reads current. The one different answer: a run that
``mlflow gc`` removed after a process remembered it is refused by that
process only for callers without access to its experiment; others get the
handler's "not found" instead of the auth app's 403, about a run they could
read before.

**Users and grants.** One request reads the caller's user up to three times
(the password check, the admin check, the permission resolver). :func:`install`
wraps the auth app's user store so that ``get_user`` is answered once per
request (kept in Flask's ``g``, which lives for one request), and any call
that may change users or grants forgets it at once. The same query reads the
user's role grants (every workspace and type, as rows joined to the user), so
the permission resolver's ``list_grants`` for that user, later in the same
request, filters them by workspace and type instead of asking again.

The remaining queries (user with grants, a run's row the first time) go
through SQLAlchemy Core: an ORM session costs about three times the CPU of a
plain connection for the same one-statement read (0.65 ms against 0.21 ms
here). The statements select what MLflow's ORM queries select; the tests
compare the answers with MLflow's own ``get_user``, ``get_run`` and
``list_grants``.

**Fences.** Each of the two (``runs``, ``users``) is right only for the
MLflow code it was read against, listed in :data:`REVIEWED` with the SHA-256
of its source (reviewed_source.py): for runs, every auth function that calls
``get_run``; for users, the store's reads and its method names (which tell
reads from changes). :func:`install` leaves out each whose code differs, with
one log line, and MLflow's own lookup serves. Each was kept because leaving it
out costs more than 5% of log-batch throughput (README, Benchmarks).
"""

from __future__ import annotations

import functools
import inspect
import logging
import types
import weakref
from collections.abc import Callable, Collection
from typing import Any

import reviewed_source
from flask import g, has_request_context
from mlflow.entities import Run, RunData, RunInfo
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST
from mlflow.server import auth as mlflow_auth
from mlflow.server.auth.db.models import SqlRole, SqlRolePermission, SqlUser, SqlUserRoleAssignment
from mlflow.server.auth.entities import User
from mlflow.server.auth.permissions import RESOURCE_TYPE_WORKSPACE
from mlflow.server.auth.sqlalchemy_store import RoleGrantRow
from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore
from mlflow.server.auth.sqlalchemy_store import _validate_resource_type as validate_resource_type
from mlflow.store.tracking.dbmodels.models import SqlRun
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from sqlalchemy import Select, bindparam, select

# The same statements as MLflow's ORM queries, run on a plain connection (see above).
_RUN_INFO: Select[*tuple[Any, ...]] = select(
    SqlRun.run_uuid, SqlRun.name, SqlRun.experiment_id, SqlRun.user_id, SqlRun.status,
    SqlRun.start_time, SqlRun.end_time, SqlRun.lifecycle_stage, SqlRun.artifact_uri,
).where(SqlRun.run_uuid == bindparam("run_id"))  # fmt: skip
_GRANTS: Select[*tuple[Any, ...]] = (
    select(SqlRolePermission.resource_type, SqlRolePermission.resource_pattern, SqlRolePermission.permission)
    .join(SqlRole, SqlRole.id == SqlRolePermission.role_id)
    .join(SqlUserRoleAssignment, SqlRole.id == SqlUserRoleAssignment.role_id)
    .where(
        SqlUserRoleAssignment.user_id == bindparam("user_id"),
        SqlRole.workspace == bindparam("workspace"),
        SqlRolePermission.resource_type.in_(bindparam("types", expanding=True)),
    )
)
_USER_COLUMNS = (SqlUser.id, SqlUser.username, SqlUser.password_hash, SqlUser.is_admin)
_USER = select(*_USER_COLUMNS).where(SqlUser.username == bindparam("username"))
# One row per grant the user holds through a role (one row of NULL grant columns when none).
_USER_WITH_GRANTS = (
    select(
        *_USER_COLUMNS,
        SqlRole.workspace,
        SqlRolePermission.resource_type,
        SqlRolePermission.resource_pattern,
        SqlRolePermission.permission,
    )  # fmt: skip
    .outerjoin(SqlUserRoleAssignment, SqlUserRoleAssignment.user_id == SqlUser.id)
    .outerjoin(SqlRole, SqlRole.id == SqlUserRoleAssignment.role_id)
    .outerjoin(SqlRolePermission, SqlRolePermission.role_id == SqlRole.id)
    .where(SqlUser.username == bindparam("username"))
)


RUN_EXPERIMENTS = 10_000

# Per tracking store: run id -> experiment id, for runs read at least once.
_run_experiments: weakref.WeakKeyDictionary[SqlAlchemyStore, dict[str, str]] = weakref.WeakKeyDictionary()


class RunInfoOnDemand(RunInfo):
    """A run's info that holds its id and experiment and reads every other field on first use."""

    def __init__(self, run_id: str, experiment_id: str, read: Callable[[str], RunInfo]) -> None:
        # RunInfo's own fields stay unset, so the first use of one reaches __getattr__.
        self._run_id = run_id
        self._experiment_id = experiment_id
        self._read = read

    def __getattr__(self, name: str) -> Any:
        read = self.__dict__.get("_read")
        if read is None or name.startswith("__"):
            raise AttributeError(name)
        fields = vars(read(self._run_id))  # a run removed since raises the store's not-found
        del self.__dict__["_read"]
        self.__dict__.update(fields)
        return getattr(self, name)


class RunInfoStore:
    """The tracking store, except that ``get_run`` returns the run's info and empty data."""

    def __init__(self, store: SqlAlchemyStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def get_run(self, run_id: str) -> Run:
        experiments = _run_experiments.setdefault(self._store, {})
        experiment_id = experiments.get(run_id)
        if experiment_id is not None:
            return Run(run_info=RunInfoOnDemand(run_id, experiment_id, self.read_info), run_data=RunData())
        info = self.read_info(run_id)
        if len(experiments) >= RUN_EXPERIMENTS:
            experiments.clear()
        experiments[run_id] = info.experiment_id
        return Run(run_info=info, run_data=RunData())

    def read_info(self, run_id: str) -> RunInfo:
        """The run's own row, as the store's ``RunInfo``."""
        with self._store.engine.connect() as connection:
            row = connection.execute(_RUN_INFO, {"run_id": run_id}).one_or_none()
        if row is None:
            raise MlflowException(f"Run with id={run_id} not found", RESOURCE_DOES_NOT_EXIST)
        return RunInfo(
            run_id=row.run_uuid,
            run_name=row.name,
            experiment_id=str(row.experiment_id),
            user_id=row.user_id,
            status=row.status,
            start_time=row.start_time,
            end_time=row.end_time,
            lifecycle_stage=row.lifecycle_stage,
            artifact_uri=row.artifact_uri,
        )


def _user_not_found(username: str) -> MlflowException:
    return MlflowException(f"User with username={username} not found", RESOURCE_DOES_NOT_EXIST)


def _user(row: Any) -> User:
    return User(id_=row.id, username=row.username, password_hash=row.password_hash, is_admin=row.is_admin)


def read_user(store: Any, username: str) -> User:
    """``store.get_user(username)``; for MLflow's own database store, one Core query."""
    if type(store) is not AuthStore:
        return store.get_user(username)
    with store.engine.connect() as connection:
        row = connection.execute(_USER, {"username": username}).one_or_none()
    if row is None:
        raise _user_not_found(username)
    return _user(row)


# A user's role grants: (workspace, grant) for every workspace and resource type.
HeldGrants = list[tuple[str, RoleGrantRow]]


def read_user_with_grants(store: AuthStore, username: str) -> tuple[User, HeldGrants]:
    """``store.get_user(username)`` and every role grant the user holds, in one Core query."""
    with store.engine.connect() as connection:
        rows = connection.execute(_USER_WITH_GRANTS, {"username": username}).all()
    if not rows:
        raise _user_not_found(username)
    grants = [
        (row.workspace, RoleGrantRow(row.resource_type, row.resource_pattern, row.permission))
        for row in rows
        if row.resource_type is not None  # no role, or a role without permissions
    ]
    return _user(rows[0]), grants


# Store methods that only read; any other call may change a user and clears the memo.
_READS = ("get_", "list_", "has_", "authenticate_")
# Databases whose `=` and IN compare text exactly, as the Python filter of held grants does
# (MySQL's default collation ignores case, so there each list_grants asks the database).
EXACT_TEXT_MATCH = ("postgresql", "sqlite")
# Flask g keys: users read in this request, by name; their role grants, by user id.
USERS_KEY = "_auth_lookups_users"
GRANTS_KEY = "_auth_lookups_grants"


def grant_types(resource_types: Collection[str]) -> set[str]:
    """The types ``list_grants`` returns grants of: these (each checked as MLflow does) and workspace-wide."""
    types = set(resource_types)
    for resource_type in types:
        validate_resource_type(resource_type)
    return types | {RESOURCE_TYPE_WORKSPACE}


def read_grants(store: Any, user_id: int, workspace: str, resource_types: Collection[str]) -> list[RoleGrantRow]:
    """``store.list_grants(...)``: the user's role grants in the workspace for these types and
    workspace-wide ones; for MLflow's own database store, one Core query."""
    if type(store) is not AuthStore:
        return store.list_grants(user_id, workspace, resource_types)
    types = grant_types(resource_types)
    with store.engine.connect() as connection:
        rows = connection.execute(_GRANTS, {"user_id": user_id, "workspace": workspace, "types": sorted(types)})
        return [RoleGrantRow(*row) for row in rows]


class RequestUserStore:
    """The auth app's user store, with ``get_user`` remembered for the rest of the request."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def get_user(self, username: str) -> Any:
        if not has_request_context():
            return read_user(self._store, username)
        users = g.setdefault(USERS_KEY, {})
        if username not in users:  # a missing user raises, and is not kept
            if type(self._store) is AuthStore and self._store.engine.dialect.name in EXACT_TEXT_MATCH:
                user, grants = read_user_with_grants(self._store, username)
                g.setdefault(GRANTS_KEY, {})[user.id] = grants
                users[username] = user
            else:
                users[username] = read_user(self._store, username)
        return users[username]

    def list_grants(self, user_id: int, workspace: str, resource_types: Collection[str]) -> list[RoleGrantRow]:
        held = g.get(GRANTS_KEY, {}).get(user_id) if has_request_context() else None
        if held is None:
            return read_grants(self._store, user_id, workspace, resource_types)
        types = grant_types(resource_types)
        return [grant for where, grant in held if where == workspace and grant.resource_type in types]

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute) or name.startswith(_READS):
            return attribute

        @functools.wraps(attribute)
        def changing(*args: Any, **kwargs: Any) -> Any:
            if has_request_context():
                g.pop(USERS_KEY, None)
                g.pop(GRANTS_KEY, None)
            return attribute(*args, **kwargs)

        return changing


def _get_run_readers() -> str:
    """The source of every auth-app function that calls ``get_run`` (all must read only the info)."""
    readers = [
        function for function in vars(mlflow_auth).values()
        if isinstance(function, types.FunctionType) and function.__module__ == mlflow_auth.__name__
        and "get_run" in _names(function.__code__)
    ]  # fmt: skip
    return "".join(inspect.getsource(function) for function in sorted(readers, key=lambda f: f.__name__))


def _names(code: types.CodeType) -> set[str]:
    """The global and attribute names a function's code (nested functions included) uses."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _store_methods() -> str:
    """The auth store's public method names: RequestUserStore tells reads from changes by them."""
    return "\n".join(sorted(name for name in dir(AuthStore) if not name.startswith("_")))


GET_RUN_READERS = "<every function calling get_run>"  # in mlflow.server.auth
STORE_METHODS = "SqlAlchemyStore.<public method names>"  # in mlflow.server.auth.sqlalchemy_store
SOURCES = {
    f"mlflow.server.auth:{GET_RUN_READERS}": _get_run_readers,
    f"mlflow.server.auth.sqlalchemy_store:{STORE_METHODS}": _store_methods,
}

# What each lookup relies on, read in MLflow 3.17.2.
REVIEWED = {
    # Every get_run of the auth app reads only run.info.experiment_id; the store and its row.
    "runs": {
        "mlflow.server.auth": {
            GET_RUN_READERS: "8db954f8410d2c42627f6760591e6735c6e919d2f0bfb1f711da99240721bace",
            "_get_tracking_store": "eea82e3e7fa9039c879a40c667aad4071d14cd1fb93581f2bc4e8d21771618a2",
            "_fetch_or_none": "cbbbdb9b3e128da56116c46dce8a71999c55f0898392182b82b61dacccd064ad",
        },
        "mlflow.store.tracking.sqlalchemy_store": {
            "SqlAlchemyStore.get_run": "bd060906b88f7c597e60e513440ea6d7ec686e5aba60e32173419ba5074ae381",
            "SqlAlchemyStore._get_run": "bdb42651147d8265678a5186998efa59cdb976644bfd3d1bb442b531d2d43ca1",
        },
        "mlflow.store.tracking.dbmodels.models": {
            "SqlRun.to_mlflow_entity": "dd189709d05fa35f2f5eacded73f1b8c9b062e8a8d8797ea7ffd23654234b81e",
        },
        "mlflow.entities.run_info": {
            "RunInfo.__init__": "52bcf6223d56725ad65f721765400b44b7b10021f1e1cd700018415d4137e93b",
        },
    },
    # The user and its role grants as MLflow's store reads them, and which store calls only read.
    "users": {
        "mlflow.server.auth.sqlalchemy_store": {
            STORE_METHODS: "0d65eafbf7c08c538f96616714d0dba3b4c04411c89f498cd35e0937a375e47f",
            "SqlAlchemyStore.get_user": "d7a5d659abecfc5e7f7bdef106963911b368e3a7c870be7b23c1be4a79fb5b18",
            "SqlAlchemyStore._get_user": "459b9df3037c82fc68f84d72636d9c1502670aec1a154860446b10ce21672e6d",
            "SqlAlchemyStore.list_grants": "7da32bf8506919a05885bd006f76841a6446847392c9846b5d9f529218e80ba5",
            "RoleGrantRow": "cd021558e293a2837a80dab592bf259b0a34fd2541c4ef5145037559213439eb",
            "_validate_resource_type": "608ae48b1a921e6baa024f72c72276521ec9ed0ca2927a881541ea57d887d46e",
        },
        "mlflow.server.auth.db.models": {
            "SqlUser": "e287d7977093b98a388825c78fc6f14761dfe6eb8d89e89afb811dcf489e8130",
            "SqlRole": "e3cd61598cffc1e5167a62e68b3128bb1afc5e6fc4625208275ab52146e88e5b",
            "SqlRolePermission": "6d0e0d9af88ee602f4de0b2f511fa860222e94c60b5eaef27273ba7b8b6d61e9",
            "SqlUserRoleAssignment": "48895f838930e783e0ea766ce5f299727163973f9223bbf1c336a0e2e23c0e49",
        },
        "mlflow.server.auth.entities": {
            "User": "3f5a84010c44f54be1ae1518045013556b3f833868ab6ecc2c3a92fbfaa3156c",
        },
        "mlflow.server.auth.permissions": {
            "RESOURCE_TYPE_WORKSPACE": "5f1ff5e33e45b7ddd59ba21ccdda7d697af43e920645ee748bf54ccef904fc90",
        },
    },
}
PATCHES: tuple[str, ...] = tuple(REVIEWED)
_logger = logging.getLogger(__name__)
CONSEQUENCE = "MLflow's own lookups answer, correct but slower"


def is_reviewed(patch: str) -> bool:
    return reviewed_source.is_reviewed(_logger, f"auth_lookups.py: {patch}", REVIEWED[patch], CONSEQUENCE, SOURCES)


def install(off: Collection[str] = ()) -> set[str]:
    """Give the auth module the cheaper lookups that are not ``off`` and fit this MLflow; those installed."""
    installed = set()
    if "users" not in off and is_reviewed("users"):
        if not isinstance(mlflow_auth.store, RequestUserStore):
            mlflow_auth.store = RequestUserStore(mlflow_auth.store)
        installed.add("users")
    if "runs" not in off and is_reviewed("runs"):
        original = getattr(mlflow_auth._get_tracking_store, "__wrapped__", mlflow_auth._get_tracking_store)

        @functools.wraps(original)
        def tracking_store_for_auth() -> Any:
            store = original()
            # Exactly MLflow's store: a subclass may scope its queries (workspaces) and keeps get_run.
            return RunInfoStore(store) if type(store) is SqlAlchemyStore else store

        mlflow_auth._get_tracking_store = tracking_store_for_auth
        installed.add("runs")
    return installed
