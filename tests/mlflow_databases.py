"""Fresh MLflow databases (SQLite) for tests that need a real store.

Creating one runs all of its schema migrations, up to a CPU-second each time; a copy of
one database migrated once per process is the same fresh database at once. A store opened
on the copy still checks that its schema is at head, as on any existing database.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

Kind = Literal["tracking", "auth", "oidc-users"]


def _tracking(uri: str, folder: Path) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(uri, str(folder / "artifacts")).engine.dispose()


def _auth(uri: str, _: Path) -> None:
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(uri)
    store.engine.dispose()


def _oidc_users(uri: str, _: Path) -> None:
    from mlflow_oidc_auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(uri)
    store.engine.dispose()


# What creates each kind: MLflow's tracking store, its auth app's user store, the OIDC plugin's.
_CREATE: dict[Kind, Callable[[str, Path], None]] = {"tracking": _tracking, "auth": _auth, "oidc-users": _oidc_users}


@functools.cache
def _migrated(kind: Kind) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"mlflow-{kind}-db-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "mlflow.db"
    _CREATE[kind](f"sqlite:///{path}", folder)
    return path


def fresh_database(kind: Kind, path: Path) -> str:
    """A fresh database of `kind` at `path`, its schema at head and nothing added: its URI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_migrated(kind), path)
    return f"sqlite:///{path}"


def tracking_database(path: Path) -> str:
    """A fresh tracking database at `path` (only the default experiment): its URI."""
    return fresh_database("tracking", path)
