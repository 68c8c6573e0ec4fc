"""The MLflow internals a patch leans on, compared at start with the source it was reviewed against.

credential_cache.py and auth_lookups.py change how MLflow's basic-auth app
looks things up, and each change is right only for the MLflow code it was
read against. Each patch names that code (functions,
classes, constants, by ``module:qualified.name``) with the SHA-256 of its
source as reviewed; :func:`is_reviewed` compares them with the installed
MLflow before the patch is installed. Anything missing or different leaves
the patch out (stock MLflow answers, only slower) and logs one line naming
what changed. tests/docker/test_reviewed_source.py fails while the pinned
MLflow differs, so a version bump comes with a fresh review.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
from collections.abc import Callable, Mapping

# In every line logged for an unreviewed MLflow; `make upgrade-check` looks for it in the servers' logs.
NOT_REVIEWED = "is not the reviewed one"

# What a patch relies on: module -> qualified name -> SHA-256 of its source when reviewed.
Reviewed = Mapping[str, Mapping[str, str]]
# For names that are not one object's source (e.g. "every auth function that calls get_run"): their text.
Sources = Mapping[str, Callable[[], str | None]]


def resolve(name: str) -> object | None:
    """The object ``module:qualified.name`` names in the installed packages, or None when there is none."""
    module_name, _, qualified = name.partition(":")
    try:
        target: object = importlib.import_module(module_name)
    except ImportError:
        return None
    for part in qualified.split(".") if qualified else ():
        target = getattr(target, part, None)
        if target is None:
            return None
    return target


def source_text(name: str) -> str | None:
    """The source of what ``name`` names (a constant: its repr), or None when it does not exist."""
    target = resolve(name)
    if target is None:
        return None
    try:
        return inspect.getsource(target)  # type: ignore[arg-type]
    except TypeError:  # a value, not code
        return repr(target)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def names(reviewed: Reviewed) -> dict[str, str]:
    """``module:qualified.name`` -> reviewed SHA-256."""
    return {f"{module}:{name}": digest for module, each in reviewed.items() for name, digest in each.items()}


def current_sha256(name: str, sources: Sources | None = None) -> str | None:
    """The SHA-256 of the installed source of ``name`` (None when it does not exist)."""
    text = sources[name]() if sources and name in sources else source_text(name)
    return None if text is None else sha256(text)


def changed(reviewed: Reviewed, sources: Sources | None = None) -> list[str]:
    """The names whose current source is missing or differs from the reviewed one."""
    return [name for name, digest in names(reviewed).items() if current_sha256(name, sources) != digest]


def is_reviewed(
    logger: logging.Logger, patch: str, reviewed: Reviewed, consequence: str, sources: Sources | None = None
) -> bool:
    """Whether the installed MLflow is what ``patch`` was reviewed against; if not, one line says what moved."""
    differing = changed(reviewed, sources)
    if differing:
        logger.warning(f"MLflow's {', '.join(differing)} {NOT_REVIEWED} ({patch}): {consequence}")
    return not differing
