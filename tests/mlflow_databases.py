"""Fresh MLflow tracking databases (SQLite) for tests that need a real store.

Creating one runs all of MLflow's schema migrations, a CPU-second each time; a copy of
one database migrated once per process is the same fresh database at once.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path


@functools.cache
def _migrated() -> Path:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = Path(tempfile.mkdtemp(prefix="mlflow-db-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    store = SqlAlchemyStore(f"sqlite:///{folder / 'mlflow.db'}", str(folder / "artifacts"))
    store.engine.dispose()
    return folder / "mlflow.db"


def tracking_database(path: Path) -> str:
    """A fresh tracking database at `path` (its schema at MLflow's head, only the default experiment): its URI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_migrated(), path)
    return f"sqlite:///{path}"
