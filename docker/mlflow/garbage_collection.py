"""Garbage collection: what `mlflow gc` removes, and the artifacts nothing references any more.

Deleting a run, experiment or logged model in MLflow only marks it; `mlflow gc`
removes the rows and the artifacts. This runs MLflow's own gc command
in-process (the database URI, password included, stays off every command
line), with `mlflow-artifacts:/` URIs resolved under the server's artifacts
destination (no server needed) and every model version's source left in
place, which MLflow's gc does not check. A dry run (the default) lists what it
would remove instead, read from MLflow's tables.

The orphan sweep lists the run and logged-model prefixes under the artifacts
destination that no run, logged model or model version points at (left behind
by failed uploads, manual database edits or an older gc) and removes them only
when asked. A prefix holding a model version's source is never an orphan.

Run as ``entrypoint.py gc [--apply] [--delete-orphans]``; ``GC_OLDER_THAN_DAYS``
(default 30) is how long a deleted run is kept.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

ARTIFACTS_SCHEME = "mlflow-artifacts:"
DEFAULT_OLDER_THAN_DAYS = 30

# What run_mlflow_gc leans on, as reviewed (reviewed_source.py): gc deletes each run's and logged
# model's artifacts through the registry's get_artifact_repository(uri).delete_artifacts(), the
# registry calls the factory registered for the URI's scheme, and the server stores an
# mlflow-artifacts:/<path> URI's files at <path> under its artifacts destination.
REVIEWED = {
    "mlflow.cli": {"_gc_tracking_resources": "5b4faf3a0ee58145db283dfe40d7b663baf0cecba9edb18250855fb24bc11dc0"},
    "mlflow.store.artifact.artifact_repository_registry": {
        "get_artifact_repository": "1ed0aa90acf8bd50d563f8a878b35a5f4d52ab8883539a39915e6f946e1e8b69",
        "ArtifactRepositoryRegistry.register": "49677198ba7e43ab064baa69882a5c495fc936499aefb1f78b0636c78abe0a01",
        "ArtifactRepositoryRegistry.get_artifact_repository": (
            "48b0c4c068af23c1867c2383e0d6413a1f31edd9bd27e00efed9e3eef5ad3fd7"
        ),
    },
    "mlflow.store.artifact.mlflow_artifacts_repo": {
        "MlflowArtifactsRepository.resolve_uri": "79dbc2c3132f54c10d06a57695a894777425329d61ea5353bb194e67cc61cd55"
    },
    "mlflow.server.handlers": {
        "_delete_artifact_mlflow_artifacts": "dbd5853d116a5813806dac48a4292d8db21c0fda42e1e76f6a8c30544dc2b307"
    },
}


@dataclass
class Report:
    """What one gc pass found (and, unless a dry run, removed)."""

    runs: list[str] = field(default_factory=list)
    logged_models: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)

    def lines(self, *, applied: bool, orphans_deleted: bool) -> list[str]:
        gc_verb = "deleted" if applied else "would delete"
        orphan_verb = "deleted" if orphans_deleted else "would delete (gc_delete_orphans is off)"
        return [
            *(f"gc: {gc_verb} run {run}" for run in self.runs),
            *(f"gc: {gc_verb} logged model {model}" for model in self.logged_models),
            *(f"gc: {orphan_verb} orphaned prefix {prefix}" for prefix in self.orphans),
            f"gc: {len(self.runs)} runs, {len(self.logged_models)} logged models, "
            f"{len(self.orphans)} orphaned prefixes ({'applied' if applied else 'dry run'})",
        ]


def resolve(uri: str, destination: str) -> str:
    """An artifact URI as the s3:// location it is stored at."""
    if uri.startswith(ARTIFACTS_SCHEME):
        return destination.rstrip("/") + "/" + uri[len(ARTIFACTS_SCHEME) :].lstrip("/")
    return uri


@contextmanager
def _connection(uri: str) -> Iterator[Any]:
    """One connection for one query batch; nothing pooled outlives it."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(uri, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def due(uri: str, older_than_days: float, now_ms: int | None = None) -> Report:
    """The deleted runs and logged models `mlflow gc --older-than` would remove now."""
    import sqlalchemy

    cutoff = (now_ms if now_ms is not None else int(time.time() * 1000)) - int(older_than_days * 86_400_000)
    with _connection(uri) as conn:
        runs = conn.execute(
            sqlalchemy.text("SELECT run_uuid FROM runs WHERE lifecycle_stage = 'deleted' AND deleted_time < :cutoff"),
            {"cutoff": cutoff},
        ).scalars()
        models = conn.execute(
            sqlalchemy.text(
                "SELECT model_id FROM logged_models WHERE lifecycle_stage = 'deleted'"
                " AND last_updated_timestamp_ms < :cutoff"
            ),
            {"cutoff": cutoff},
        ).scalars()
        return Report(runs=sorted(runs), logged_models=sorted(models))


def _locations(uri: str, queries: Iterable[str]) -> set[str]:
    import sqlalchemy

    with _connection(uri) as conn:
        return {value for query in queries for value in conn.execute(sqlalchemy.text(query)).scalars() if value}


# Where each model version's files are: its storage location, its source when that is a location,
# and what a runs:/ or models:/ source names.
VERSION_SOURCES = (
    "SELECT storage_location FROM model_versions",
    "SELECT source FROM model_versions WHERE source NOT LIKE 'runs:/%' AND source NOT LIKE 'models:/%'",
    "SELECT r.artifact_uri || '/' || substr(mv.source, length('runs:/' || mv.run_id || '/') + 1)"
    " FROM model_versions mv JOIN runs r ON r.run_uuid = mv.run_id"
    " WHERE mv.source LIKE 'runs:/' || mv.run_id || '/%'",
    "SELECT lm.artifact_location FROM model_versions mv JOIN logged_models lm ON mv.source = 'models:/' || lm.model_id",
)


def version_sources(uri: str, destination: str) -> set[str]:
    """Every location holding a model version's files, as s3:// URIs: never deleted."""
    return {resolve(value, destination).rstrip("/") for value in _locations(uri, VERSION_SOURCES)}


def referenced(uri: str, destination: str) -> set[str]:
    """Every artifact location a run, logged model or model version points at, as s3:// URIs."""
    found = _locations(uri, ("SELECT artifact_uri FROM runs", "SELECT artifact_location FROM logged_models"))
    return {resolve(value, destination).rstrip("/") for value in found} | version_sources(uri, destination)


def artifact_prefixes(keys: Iterable[str]) -> set[str]:
    """The run (``<experiment>/<run>``) and logged-model (``<experiment>/models/<id>``) prefixes of keys."""
    prefixes = set()
    for key in keys:
        parts = key.split("/")
        if len(parts) >= 4 and parts[1] == "models":
            prefixes.add("/".join(parts[:3]))
        elif len(parts) >= 3 and parts[1] != "models":
            prefixes.add("/".join(parts[:2]))
    return prefixes


def orphans(prefixes: Iterable[str], references: set[str], base: str) -> list[str]:
    """The prefixes (relative to ``base``) that hold no referenced location and lie under none."""
    result = []
    for prefix in sorted(prefixes):
        location = f"{base.rstrip('/')}/{prefix}"
        inside = any(ref == location or ref.startswith(location + "/") for ref in references)
        around = any(location.startswith(ref + "/") for ref in references)
        if not inside and not around:
            result.append(prefix)
    return result


def _bucket_and_prefix(destination: str) -> tuple[str, str]:
    parsed = urlparse(destination)
    if parsed.scheme != "s3":
        raise ValueError(f"the artifacts destination must be s3://, got {destination!r}")
    prefix = parsed.path.strip("/")
    return parsed.netloc, prefix + "/" if prefix else ""


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    """The keys under ``prefix``, relative to it."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"][len(prefix) :] for item in page.get("Contents", [])]
    return keys


def delete_prefix(s3: Any, bucket: str, prefix: str) -> None:
    """Remove every object under ``prefix/``."""
    keys = [prefix + "/" + key for key in list_keys(s3, bucket, prefix + "/")]
    for start in range(0, len(keys), 1000):
        batch = [{"Key": key} for key in keys[start : start + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})


def sweep(uri: str, destination: str, s3: Any, *, delete: bool) -> list[str]:
    """The orphaned prefixes under the destination (full s3:// URIs); removed when ``delete``."""
    bucket, prefix = _bucket_and_prefix(destination)
    found = orphans(artifact_prefixes(list_keys(s3, bucket, prefix)), referenced(uri, destination), destination)
    if delete:
        for orphan in found:
            delete_prefix(s3, bucket, prefix + orphan)
    return [f"{destination.rstrip('/')}/{orphan}" for orphan in found]


def run_mlflow_gc(uri: str, destination: str, older_than_days: float, keep: Iterable[str]) -> None:
    """MLflow's own `mlflow gc`, invoked in this process so the URI is on no command line.

    MLflow's gc reaches an ``mlflow-artifacts:/`` URI only through a tracking
    server over HTTP, and the scheduled task has none (nor a credential for one).
    ``--artifacts-destination`` does not change that: gc uses it only as the
    store's default artifact root. So for this process only, the scheme resolves
    to the destination the way the server maps it, through a repository that
    leaves every model version source in place.
    """
    from mlflow.cli import gc
    from mlflow.store.artifact import artifact_repository_registry as registry

    # The factory's target, checked at start (reviewed_source.py) with the rest of what it leans on.
    registry._artifact_repository_registry.register(
        ARTIFACTS_SCHEME.rstrip(":"), kept_sources_repository(destination, keep)
    )
    gc.main(
        args=[
            "--backend-store-uri",
            uri,
            # gc refuses to start without a tracking URI; with the scheme above it reaches no server.
            "--tracking-uri",
            uri,
            "--artifacts-destination",
            destination,
            "--older-than",
            f"{older_than_days}d",
        ],
        standalone_mode=False,
    )


def inside(location: str, base: str) -> bool:
    return location == base or location.startswith(base.rstrip("/") + "/")


@dataclass
class KeptSourcesRepository:
    """An artifact location whose deletion spares every model version source in it.

    MLflow's gc removes a deleted run's whole artifact location, and a version
    registered from that run (``runs:/<run>/model``, or an older client's path
    inside the run) has its source there; gc does not look at the registry.
    """

    repository: Any
    location: str
    keep: frozenset[str]

    def delete_artifacts(self, artifact_path: str | None = None) -> None:
        here = f"{self.location.rstrip('/')}/{artifact_path}" if artifact_path else self.location.rstrip("/")
        if any(inside(here, kept) for kept in self.keep):
            return
        if not any(inside(kept, here) for kept in self.keep):
            self.repository.delete_artifacts(artifact_path)
            return
        for entry in self.repository.list_artifacts(artifact_path):
            self.delete_artifacts(entry.path)


def kept_sources_repository(destination: str, keep: Iterable[str]) -> Any:
    """A factory for ``mlflow-artifacts:/`` URIs: the location under the destination, sources kept."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    kept = frozenset(location.rstrip("/") for location in keep)

    def repository(artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None) -> Any:  # noqa: ARG001 - the registry's call
        parsed = urlparse(artifact_uri)
        if parsed.netloc or ".." in parsed.path.split("/"):
            raise MlflowException(f"gc resolves only this server's artifacts, not {artifact_uri!r}")
        location = resolve(artifact_uri, destination)
        return KeptSourcesRepository(get_artifact_repository(location), location, kept)

    return repository


def unreviewed() -> list[str]:
    """What gc's artifact resolution leans on and the installed MLflow changed (empty: as reviewed)."""
    import logging

    import reviewed_source

    logger = logging.getLogger("garbage_collection")
    consequence = "gc --apply refuses to run; the dry run still reports"
    if reviewed_source.is_reviewed(logger, "garbage_collection.py", REVIEWED, consequence):
        return []
    return reviewed_source.changed(REVIEWED)


def older_than_days(env: Mapping[str, str]) -> float:
    value = env.get("GC_OLDER_THAN_DAYS") or str(DEFAULT_OLDER_THAN_DAYS)
    try:
        days = float(value)
    except ValueError:
        days = -1.0
    if days < 0:
        raise ValueError(f"GC_OLDER_THAN_DAYS must be a number of days >= 0, got {value!r}")
    return days


def collect(
    uri: str, destination: str, env: Mapping[str, str], *, apply: bool, delete_orphans: bool, s3: Any = None
) -> Report:
    """One gc pass: the report of what was (or would be) removed."""
    days = older_than_days(env)
    report = due(uri, days)
    if apply:
        run_mlflow_gc(uri, destination, days, version_sources(uri, destination))
    if s3 is None:
        import boto3

        # The endpoint MLflow's own S3 client uses (set only for a local S3).
        s3 = boto3.client("s3", endpoint_url=env.get("MLFLOW_S3_ENDPOINT_URL") or None)
    # After gc, so the prefixes it just emptied are not reported again.
    report.orphans = sweep(uri, destination, s3, delete=apply and delete_orphans)
    return report


def main(argv: Sequence[str], uri: str, destination: str, env: Mapping[str, str]) -> int:
    parser = argparse.ArgumentParser(prog="entrypoint.py gc", description=__doc__.splitlines()[0])
    parser.add_argument("--apply", action="store_true", help="delete (default: report what would be deleted)")
    parser.add_argument("--delete-orphans", action="store_true", help="with --apply, delete orphaned prefixes too")
    args = parser.parse_args(argv)
    if args.apply and (moved := unreviewed()):
        print(f"gc: refusing --apply: MLflow's {', '.join(moved)} changed since the review", flush=True)
        return 70
    report = collect(uri, destination, env, apply=args.apply, delete_orphans=args.delete_orphans)
    for line in report.lines(applied=args.apply, orphans_deleted=args.apply and args.delete_orphans):
        print(line, flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover - entrypoint.py gc is the way in
    sys.exit("run as: entrypoint.py gc [--apply] [--delete-orphans]")
