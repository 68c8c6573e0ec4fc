"""`entrypoint.py gc` against the local stack: MLflow's gc removes old deleted runs and logged
models from PostgreSQL and the local S3, keeps recent ones and model version sources; the
orphan sweep reports, and deletes only with --delete-orphans."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import sqlalchemy
from mlflow.tracking import MlflowClient

from localrun import gc as localrun_gc
from localrun.services import REPO_ROOT
from localrun.stack import MlflowStack
from tests.docker.image_modules import image_module
from tests.integration.mlflow_users import as_mlflow_user

pytestmark = pytest.mark.integration

ARTIFACT_BYTES = 20 * 1024 * 1024
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def as_user(mlflow_stack: MlflowStack) -> Iterator[MlflowClient]:
    with as_mlflow_user(mlflow_stack):
        yield MlflowClient()


def database_uri(stack: MlflowStack) -> str:
    with image_module("entrypoint") as entrypoint:
        return str(entrypoint.backend_store_uri(stack.db_env))


def run_gc(stack: MlflowStack, *args: str) -> str:
    done = localrun_gc.run_gc(localrun_gc.gc_settings(stack.server_env()), args, stack.root)
    assert done.returncode == 0, done.stderr
    assert stack.db_password not in done.stdout + done.stderr
    return done.stdout


def keys(stack: MlflowStack, prefix: str) -> list[str]:
    s3 = stack.moto.client("s3")
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", [])]


def s3_prefix(stack: MlflowStack, artifact_uri: str) -> str:
    """The key prefix an mlflow-artifacts:/ URI is stored under."""
    with image_module("garbage_collection") as gc:
        location = gc.resolve(artifact_uri, stack.artifacts_destination)
    return location.removeprefix(f"s3://{stack.bucket}/") + "/"


def age_deletion(stack: MlflowStack, run_id: str, model_id: str, days: int) -> None:
    """Pretend the run and the model were deleted `days` ago (waiting 30 days is not an option)."""
    past = int(time.time() * 1000) - days * DAY_MS
    engine = sqlalchemy.create_engine(database_uri(stack))
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE runs SET deleted_time = :t WHERE run_uuid = :r"), {"t": past, "r": run_id})
        conn.execute(
            sqlalchemy.text("UPDATE logged_models SET last_updated_timestamp_ms = :t WHERE model_id = :m"),
            {"t": past, "m": model_id},
        )
    engine.dispose()


def logged_run(tmp_path: Path, name: str) -> tuple[str, str, str, str]:
    """A run with a 20 MB artifact and a logged model: run id, model id, their artifact URIs."""
    big = tmp_path / f"{name}.bin"
    big.write_bytes(os.urandom(ARTIFACT_BYTES))
    mlflow.set_experiment(f"gc-{name}-{time.time_ns()}")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(big))
        model = mlflow.pyfunc.log_model(name="model", python_model=Echo())
    return (
        run.info.run_id,
        model.model_id,
        run.info.artifact_uri,
        MlflowClient().get_logged_model(model.model_id).artifact_location,
    )


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):  # type: ignore[no-untyped-def]  # noqa: ARG002 - pyfunc's signature
        return model_input


def test_gc_removes_old_deleted_runs_and_models_keeps_recent_and_registered(
    mlflow_stack: MlflowStack, as_user: MlflowClient, tmp_path: Path
) -> None:
    old_run, old_model, old_uri, old_model_uri = logged_run(tmp_path, "old")
    recent_run, _, recent_uri, _ = logged_run(tmp_path, "recent")
    kept_run, kept_model, kept_uri, kept_model_uri = logged_run(tmp_path, "registered")
    version = mlflow.register_model(f"models:/{kept_model}", f"gc-kept-{time.time_ns()}")
    # A version whose source lies inside the run (as older clients registered): gc spares that folder only.
    as_user.log_text(kept_run, "weights", "packaged/weights.txt")
    inside = as_user.create_registered_model(f"gc-inside-{time.time_ns()}").name
    as_user.create_model_version(inside, source=f"{kept_uri}/packaged", run_id=kept_run)
    for run_id in (old_run, recent_run, kept_run):
        as_user.delete_run(run_id)
    as_user.delete_logged_model(old_model)
    age_deletion(mlflow_stack, old_run, old_model, days=31)
    age_deletion(mlflow_stack, kept_run, "none", days=31)
    assert keys(mlflow_stack, s3_prefix(mlflow_stack, old_uri))

    dry = run_gc(mlflow_stack)
    assert f"would delete run {old_run}" in dry and f"would delete logged model {old_model}" in dry
    assert recent_run not in dry
    assert keys(mlflow_stack, s3_prefix(mlflow_stack, old_uri)), "a dry run deletes nothing"

    run_gc(mlflow_stack, "--apply")
    assert not keys(mlflow_stack, s3_prefix(mlflow_stack, old_uri))
    assert not keys(mlflow_stack, s3_prefix(mlflow_stack, old_model_uri))
    engine = sqlalchemy.create_engine(database_uri(mlflow_stack))
    with engine.connect() as conn:
        runs = set(conn.execute(sqlalchemy.text("SELECT run_uuid FROM runs")).scalars())
        models = set(conn.execute(sqlalchemy.text("SELECT model_id FROM logged_models")).scalars())
    engine.dispose()
    assert old_run not in runs and old_model not in models
    assert recent_run in runs and keys(mlflow_stack, s3_prefix(mlflow_stack, recent_uri))
    # The registered version's source survives its deleted run's gc.
    source = as_user.get_model_version(version.name, version.version).source
    assert keys(mlflow_stack, s3_prefix(mlflow_stack, kept_model_uri)), source
    assert kept_run not in runs
    assert keys(mlflow_stack, s3_prefix(mlflow_stack, kept_uri) + "packaged/")
    assert not keys(mlflow_stack, s3_prefix(mlflow_stack, kept_uri) + "registered.bin")


def test_orphan_sweep_reports_and_deletes_only_when_asked(mlflow_stack: MlflowStack, as_user: MlflowClient) -> None:
    prefix = mlflow_stack.artifacts_destination.removeprefix(f"s3://{mlflow_stack.bucket}/").strip("/")
    orphan = f"{prefix}/999999/{time.time_ns():032x}"
    s3 = mlflow_stack.moto.client("s3")
    s3.put_object(Bucket=mlflow_stack.bucket, Key=f"{orphan}/artifacts/left.txt", Body=b"left behind")
    mlflow.set_experiment(f"gc-live-{time.time_ns()}")
    with mlflow.start_run() as live:
        mlflow.log_text("still here", "live.txt")
    live_prefix = s3_prefix(mlflow_stack, live.info.artifact_uri)

    reported = run_gc(mlflow_stack)
    assert f"s3://{mlflow_stack.bucket}/{orphan}" in reported
    assert live.info.run_id not in reported
    assert keys(mlflow_stack, orphan + "/")

    run_gc(mlflow_stack, "--apply")
    assert keys(mlflow_stack, orphan + "/"), "orphans stay without --delete-orphans"

    run_gc(mlflow_stack, "--apply", "--delete-orphans")
    assert not keys(mlflow_stack, orphan + "/")
    assert keys(mlflow_stack, live_prefix)


def test_make_gc_reports_from_the_running_stacks_settings(mlflow_stack: MlflowStack, tmp_path: Path) -> None:
    make_gc = [sys.executable, "-m", "localrun.gc", "--state-dir", str(tmp_path)]
    missing = subprocess.run(make_gc, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no running `make local` stack" in missing.stderr

    saved = localrun_gc.save_settings(tmp_path, mlflow_stack.server_env())
    assert saved.stat().st_mode & 0o077 == 0, "the settings hold the database password"
    done = subprocess.run([*make_gc, "--older-than-days", "0"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "(dry run)" in done.stdout.splitlines()[-1]
    assert mlflow_stack.db_password not in done.stdout + done.stderr

    planned = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "-o", "node_modules/.installed", "gc", "APPLY=1"],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
    )  # fmt: skip
    assert "-m localrun.gc --apply" in planned.stdout
