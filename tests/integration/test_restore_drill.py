"""Restore drill: back up the way docs/operations.md says, destroy, restore, find everything byte-exact.

On loopback: a server of the pinned version on a fresh PostgreSQL database
and a versioned bucket (moto) with the sample of localrun/mlflow_inventory.py
logged through the real client. Backup: pg_dump of the database (the local
stand-in for an Aurora snapshot or point-in-time restore) and the time T.
Disaster: the database is dropped, artifacts are deleted and overwritten.
Restore: pg_restore into a new database (a restored cluster is a new one),
tools/restore_artifacts.py brings every artifact back to T from its object
versions, and a fresh server on the restored database serves it all again.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from datetime import datetime, timezone
from typing import Any

import pytest

from localrun.mlflow_inventory import inventory, log_sample_data
from localrun.services import MlflowServer, MotoServer, Postgres, base_env
from localrun.stack import ARTIFACT_PREFIX, MlflowStack, new_password
from localrun.upgrade_check import shared_mode_env
from tools.restore_artifacts import RestoreSummary, restore_to_time

pytestmark = pytest.mark.integration


def _pg(postgres: Postgres, tool: str, *args: str, user: str, password: str) -> None:
    """pg_dump / pg_restore as `user`; the password through the environment, never argv."""
    subprocess.run(
        [postgres.bindir / tool, "-h", postgres.host, "-p", str(postgres.port), "-U", user, *args],
        env={**base_env(), "PGPASSWORD": password}, check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def _current(s3: Any, bucket: str) -> dict[str, bytes]:
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


@pytest.fixture(scope="module")
def drill(mlflow_stack: MlflowStack, moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from mlflow import MlflowClient

    postgres = mlflow_stack.postgres
    assert postgres is not None
    workdir = tmp_path_factory.mktemp("restore-drill")
    suffix = secrets.token_hex(3)
    db, user, password, bucket = f"drill_{suffix}", f"drill_{suffix}", new_password("@:/%"), f"drill-{suffix}"
    postgres.ensure_database(db, user, password)
    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})  # as the stack's bucket

    def server(name: str, database: str) -> MlflowServer:
        env = shared_mode_env(postgres, database, user, password, moto_server, bucket)
        return MlflowServer(workdir / name, log_dir=workdir / "logs", log_name=f"{name}.log", env=env, workers=1)

    original = server("original", db)
    original.start()
    try:
        log_sample_data(MlflowClient(tracking_uri=original.url), workdir / "sample")
        before = inventory(MlflowClient(tracking_uri=original.url))
    finally:
        original.stop()

    # Backup: the database, the object versions and the time.
    dump = workdir / "mlflow.dump"
    _pg(postgres, "pg_dump", "--format=custom", f"--file={dump}", db, user=user, password=password)
    versions = {v["Key"]: v["VersionId"] for v in s3.list_object_versions(Bucket=bucket)["Versions"] if v["IsLatest"]}
    backed_up = _current(s3, bucket)
    time.sleep(1.1)  # S3 times are whole seconds: nothing below happens "at" T
    backup_time = datetime.now(timezone.utc)
    time.sleep(1.1)

    # Disaster: the database is gone, half the artifacts deleted, the others overwritten.
    conn = postgres.connect()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE {db} WITH (FORCE)")
    conn.close()
    keys = sorted(versions)
    for index, key in enumerate(keys):
        if index % 2:
            s3.delete_object(Bucket=bucket, Key=key)
        else:
            s3.put_object(Bucket=bucket, Key=key, Body=os.urandom(64))
    s3.put_object(Bucket=bucket, Key=f"{ARTIFACT_PREFIX}/written-after-the-backup.txt", Body=b"later")
    after_disaster = _current(s3, bucket)

    # Restore: a new database from the dump, the artifacts to their versions at T.
    restored_db = f"{db}_restored"
    postgres.ensure_database(restored_db, user, password)
    _pg(postgres, "pg_restore", "--no-owner", "--exit-on-error", f"--dbname={restored_db}", str(dump),
        user=user, password=password)  # fmt: skip
    summary = restore_to_time(s3, bucket, backup_time)
    fresh = server("restored", restored_db)
    fresh.start()
    try:
        after = inventory(MlflowClient(tracking_uri=fresh.url))
    finally:
        fresh.stop()
    return {
        "before": before, "after": after, "summary": summary, "versions": versions, "backed_up": backed_up,
        "after_disaster": after_disaster, "now": _current(s3, bucket), "s3": s3, "bucket": bucket,
    }  # fmt: skip


def test_the_disaster_destroyed_every_artifact(drill: dict) -> None:
    damaged = drill["after_disaster"]
    assert drill["backed_up"] and all(damaged.get(key) != data for key, data in drill["backed_up"].items())


def test_every_run_model_and_artifact_is_back(drill: dict) -> None:
    before = drill["before"]
    assert len(before["runs"]) == 3 and before["registered_models"] and before["logged_models"]
    assert drill["after"] == before


def test_artifacts_are_byte_exact_copies_of_the_backed_up_versions(drill: dict) -> None:
    s3, bucket = drill["s3"], drill["bucket"]
    for key, version in drill["versions"].items():
        recorded = s3.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read()
        assert drill["now"][key] == recorded == drill["backed_up"][key], key


def test_the_restore_touched_only_what_changed_after_the_backup(drill: dict) -> None:
    summary: RestoreSummary = drill["summary"]
    assert sorted(summary.restored) == sorted(drill["versions"])
    assert summary.written_later == [f"{ARTIFACT_PREFIX}/written-after-the-backup.txt"]
    assert summary.unchanged == 0 and summary.absent_at_time == []
    assert drill["now"][f"{ARTIFACT_PREFIX}/written-after-the-backup.txt"] == b"later"
