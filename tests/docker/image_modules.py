"""The mlflow image's Python modules, imported in tests the way its server imports them."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from localrun.services import MLFLOW_ENTRYPOINT


@contextmanager
def image_module(name: str) -> Iterator[ModuleType]:
    """docker/mlflow/<name>.py, with docker/mlflow on sys.path meanwhile (its modules import each other)."""
    sys.path.insert(0, str(MLFLOW_ENTRYPOINT.parent))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(MLFLOW_ENTRYPOINT.parent))
