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

**Routes.** Every request that FastAPI hands to Flask (log-batch and all
other tracking calls) first asks whether it matches one of the server's
native FastAPI routes (MLFLOW_BASIC_AUTH_FAIL_CLOSED, on by default): a walk
over a few hundred route patterns, about 0.4 ms of the event loop per
request. The answer depends only on the route table, fixed once the app is
built, and on the request's type, method, path, root path and host, so
:func:`install` keeps it per such key (at most ``ROUTE_ANSWERS`` of them,
then starts over).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Collection
from typing import Any

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
from sqlalchemy import bindparam, select

# The same statements as MLflow's ORM queries, run on a plain connection (see above).
_RUN_INFO = select(
    SqlRun.run_uuid, SqlRun.name, SqlRun.experiment_id, SqlRun.user_id, SqlRun.status,
    SqlRun.start_time, SqlRun.end_time, SqlRun.lifecycle_stage, SqlRun.artifact_uri,
).where(SqlRun.run_uuid == bindparam("run_id"))  # fmt: skip
_GRANTS = (
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
        *_USER_COLUMNS, SqlRole.workspace,
        SqlRolePermission.resource_type, SqlRolePermission.resource_pattern, SqlRolePermission.permission,
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


ROUTE_ANSWERS = 4096

RouteMatch = Callable[[list, dict], bool]


def route_key(scope: dict) -> tuple:
    """What Starlette's and FastAPI's route matching reads from a request."""
    host = next((value for name, value in scope.get("headers", ()) if name == b"host"), None)
    return scope["type"], scope.get("method"), scope.get("root_path", ""), scope["path"], host


def remembered_route_matches(matches: RouteMatch) -> RouteMatch:
    """``matches(native_routes, scope)``, asked once per route table and request key."""
    answers: dict[tuple, bool] = {}
    tables: dict[int, list] = {}  # keeps each table alive, so its id() is never reused

    @functools.wraps(matches)
    def remembered(native_routes: list, scope: dict) -> bool:
        key = (id(native_routes), *route_key(scope))
        answer = answers.get(key)
        if answer is None:
            answer = matches(native_routes, scope)
            if len(answers) >= ROUTE_ANSWERS:
                answers.clear()
            tables[id(native_routes)] = native_routes
            answers[key] = answer
        return answer

    return remembered


def install() -> None:
    """Give the auth module its cheaper lookups (runs: MLflow's own database store only)."""
    if not hasattr(mlflow_auth._scope_matches_native_route, "__wrapped__"):
        mlflow_auth._scope_matches_native_route = remembered_route_matches(mlflow_auth._scope_matches_native_route)
    if not isinstance(mlflow_auth.store, RequestUserStore):
        mlflow_auth.store = RequestUserStore(mlflow_auth.store)
    original = getattr(mlflow_auth._get_tracking_store, "__wrapped__", mlflow_auth._get_tracking_store)

    @functools.wraps(original)
    def tracking_store_for_auth() -> Any:
        store = original()
        # Exactly MLflow's store: a subclass may scope its queries (workspaces) and keeps get_run.
        return RunInfoStore(store) if type(store) is SqlAlchemyStore else store

    mlflow_auth._get_tracking_store = tracking_store_for_auth
