"""Garbage collection: what `mlflow gc` removes, and the artifacts nothing references any more.

Deleting a run, experiment or logged model in MLflow only marks it; `mlflow gc`
removes the rows and the artifacts. This runs MLflow's own gc command
in-process (the database URI, password included, stays off every command
line) with the server's artifacts destination, so `mlflow-artifacts:/` URIs
resolve to the bucket. A dry run (the default) lists what it would remove
instead, read from MLflow's tables.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

ARTIFACTS_SCHEME = "mlflow-artifacts:"
DEFAULT_OLDER_THAN_DAYS = 30


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


def _engine(uri: str) -> Any:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    return sqlalchemy.create_engine(uri, poolclass=NullPool)


def due(uri: str, older_than_days: float, now_ms: int | None = None) -> Report:
    """The deleted runs and logged models `mlflow gc --older-than` would remove now."""
    import sqlalchemy

    cutoff = (now_ms if now_ms is not None else int(time.time() * 1000)) - int(older_than_days * 86_400_000)
    engine = _engine(uri)
    try:
        with engine.connect() as conn:
            runs = conn.execute(
                sqlalchemy.text(
                    "SELECT run_uuid FROM runs WHERE lifecycle_stage = 'deleted' AND deleted_time < :cutoff"
                ),
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
    finally:
        engine.dispose()


def referenced(uri: str, destination: str) -> set[str]:
    """Every artifact location a run, logged model or model version points at, as s3:// URIs."""
    import sqlalchemy

    queries = (
        "SELECT artifact_uri FROM runs",
        "SELECT artifact_location FROM logged_models",
        "SELECT source FROM model_versions",
        "SELECT storage_location FROM model_versions",
    )
    engine = _engine(uri)
    try:
        with engine.connect() as conn:
            found = {value for query in queries for value in conn.execute(sqlalchemy.text(query)).scalars()}
    finally:
        engine.dispose()
    return {resolve(value, destination).rstrip("/") for value in found if value}


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


def run_mlflow_gc(uri: str, destination: str, older_than_days: float) -> None:
    """MLflow's own `mlflow gc`, invoked in this process so the URI is on no command line."""
    from mlflow.cli import gc

    gc.main(
        args=[
            "--backend-store-uri",
            uri,
            # The database as tracking URI too: gc refuses to start without one.
            "--tracking-uri",
            uri,
            "--artifacts-destination",
            destination,
            "--older-than",
            f"{older_than_days}d",
        ],
        standalone_mode=False,
    )


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
        run_mlflow_gc(uri, destination, days)
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
    report = collect(uri, destination, env, apply=args.apply, delete_orphans=args.delete_orphans)
    for line in report.lines(applied=args.apply, orphans_deleted=args.apply and args.delete_orphans):
        print(line, flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover - entrypoint.py gc is the way in
    sys.exit("run as: entrypoint.py gc [--apply] [--delete-orphans]")
