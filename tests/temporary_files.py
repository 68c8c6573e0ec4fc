"""Temporary files of code under test kept in a test directory, not in /tmp.

MLflow's client never removes some of its temporary directories (model files it
downloads or writes while logging a model); pytest removes its own directory
after a passing run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest


def keep_temporary_files_in(patch: pytest.MonkeyPatch, directory: Path) -> None:
    """This process's and its children's temporary files go to `directory` until `patch` is undone."""
    directory.mkdir(parents=True, exist_ok=True)
    patch.setenv("TMPDIR", str(directory))  # processes started from here on
    patch.setattr(tempfile, "tempdir", str(directory))  # this one, which read TMPDIR long ago
