"""`python -m tools.restore_artifacts` against moto: the artifact restore step of docs/operations.md."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from localrun.services import MotoServer
from tests.tools.conftest import client, run_from_root, tool_env

pytestmark = pytest.mark.integration  # every test runs the tool against the moto server

BUCKET = "mlflow-artifacts-bucket"
KEY = "mlflow-artifacts/1/abc/artifacts/model.pkl"


def run(moto: MotoServer, *args: str) -> subprocess.CompletedProcess[str]:
    return run_from_root([sys.executable, "-m", "tools.restore_artifacts", *args], tool_env(moto, []), timeout=60)


def versioned_bucket_with_history(aws: MotoServer) -> tuple[object, str]:
    """KEY written, then (after T) overwritten; another key deleted after T; one written after T."""
    s3 = client(aws, "s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"good model")
    s3.put_object(Bucket=BUCKET, Key="mlflow-artifacts/1/abc/artifacts/notes.txt", Body=b"notes")
    s3.put_object(Bucket=BUCKET, Key="elsewhere/file", Body=b"not MLflow's")
    time.sleep(1.1)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    time.sleep(1.1)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"broken model")
    s3.delete_object(Bucket=BUCKET, Key="mlflow-artifacts/1/abc/artifacts/notes.txt")
    s3.delete_object(Bucket=BUCKET, Key="elsewhere/file")
    s3.put_object(Bucket=BUCKET, Key="mlflow-artifacts/2/def/artifacts/new.txt", Body=b"later")
    return s3, when


def test_restores_overwritten_and_deleted_artifacts_to_the_time(aws: MotoServer) -> None:
    s3, when = versioned_bucket_with_history(aws)
    dry = run(aws, "--bucket", BUCKET, "--to-time", when, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would restore 2 objects" in dry.stdout and "1 written later left in place" in dry.stdout
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == b"broken model"

    result = run(aws, "--bucket", BUCKET, "--to-time", when)
    assert result.returncode == 0, result.stderr
    assert f"restored {KEY}" in result.stdout
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == b"good model"
    notes = s3.get_object(Bucket=BUCKET, Key="mlflow-artifacts/1/abc/artifacts/notes.txt")
    assert notes["Body"].read() == b"notes"
    assert s3.get_object(Bucket=BUCKET, Key="mlflow-artifacts/2/def/artifacts/new.txt")["Body"].read() == b"later"
    # Outside the prefix nothing changes; the broken version stays as history.
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="elsewhere/")
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=KEY)["Versions"]
    assert len(versions) == 3

    again = run(aws, "--bucket", BUCKET, "--to-time", when)
    assert "restored 0 objects" in again.stdout and "2 unchanged" in again.stdout


def test_a_time_without_zone_is_one_line(aws: MotoServer) -> None:
    result = run(aws, "--bucket", BUCKET, "--to-time", "2026-05-04T09:30:00")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "restore artifacts: --to-time needs a time zone (e.g. a trailing Z for UTC), got '2026-05-04T09:30:00'"
    )


def test_a_missing_bucket_is_one_line(aws: MotoServer) -> None:
    result = run(aws, "--bucket", "no-such-bucket", "--to-time", "2026-05-04T09:30:00Z")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "restore artifacts: S3 refused (NoSuchBucket) on bucket no-such-bucket: check its name and your access"
    )
