"""Two lookups of MLflow's basic-auth app made cheaper, with the same answers.

**Runs.** To decide whether a caller may write to a run (log-batch, log-metric, ...),
the auth app asks the tracking store for the run and uses only
``run.info.experiment_id``. The store's ``get_run`` loads the run with its
latest metrics, params, tags, dataset inputs and model inputs and outputs:
about seven queries, which made the permission check cost two thirds of the
log-batch call it guards (py-spy, benchmarks/accounts_and_artifacts.py).

The auth module gets its store from ``_get_tracking_store``; :func:`install`
points that name, in the auth module only, at a view of the same store whose
``get_run`` reads the run's own row (every ``RunInfo`` field, current, no
cache; an unnamed run's name is not filled in from its tags, which the auth
app never reads) and nothing else. A missing run raises the store's own
RESOURCE_DOES_NOT_EXIST, so the auth app still denies it as before. The
handlers that serve runs keep the real store.

**Users.** One request reads the caller's user up to three times (the
password check, the admin check, the permission resolver), one query each.
:func:`install` wraps the auth app's user store so that ``get_user`` is
answered once per request (kept in Flask's ``g``, which lives for one
request) and any call that may change users or grants forgets it at once.
"""

from __future__ import annotations

import functools
from typing import Any

from flask import g, has_request_context
from mlflow.entities import Run, RunData, RunInfo
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST
from mlflow.server import auth as mlflow_auth
from mlflow.store.tracking.dbmodels.models import SqlRun
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore


class RunInfoStore:
    """The tracking store, except that ``get_run`` returns the run's info and empty data."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def get_run(self, run_id: str) -> Run:
        with self._store.ManagedSessionMaker() as session:
            row = self._store._get_query(session, SqlRun).filter(SqlRun.run_uuid == run_id).one_or_none()
            if row is None:
                raise MlflowException(f"Run with id={run_id} not found", RESOURCE_DOES_NOT_EXIST)
            info = RunInfo(
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
        return Run(run_info=info, run_data=RunData())


# Store methods that only read; any other call may change a user and clears the memo.
_READS = ("get_", "list_", "has_", "authenticate_")


class RequestUserStore:
    """The auth app's user store, with ``get_user`` remembered for the rest of the request."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def get_user(self, username: str) -> Any:
        if not has_request_context():
            return self._store.get_user(username)
        users = g.setdefault("_auth_lookups_users", {})
        if username not in users:
            users[username] = self._store.get_user(username)  # a missing user raises, and is not kept
        return users[username]

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute) or name.startswith(_READS):
            return attribute

        @functools.wraps(attribute)
        def changing(*args: Any, **kwargs: Any) -> Any:
            if has_request_context():
                g.pop("_auth_lookups_users", None)
            return attribute(*args, **kwargs)

        return changing


def install() -> None:
    """Give the auth module both lookups (runs: a database store only; others keep theirs)."""
    if not isinstance(mlflow_auth.store, RequestUserStore):
        mlflow_auth.store = RequestUserStore(mlflow_auth.store)
    original = getattr(mlflow_auth._get_tracking_store, "__wrapped__", mlflow_auth._get_tracking_store)

    @functools.wraps(original)
    def tracking_store_for_auth() -> Any:
        store = original()
        return RunInfoStore(store) if isinstance(store, SqlAlchemyStore) else store

    mlflow_auth._get_tracking_store = tracking_store_for_auth
