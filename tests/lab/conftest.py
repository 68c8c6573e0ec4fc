"""Make lab/ and lab/source_dir importable the way the notebook and training job see them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

LAB_DIR = Path(__file__).resolve().parents[2] / "lab"
for path in (LAB_DIR / "source_dir", LAB_DIR):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

# The region every moto-backed lab test pretends to run in.
REGION = "eu-west-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.session.Session]:
    """Fake credentials, a region, and moto for every boto3 call."""
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_REGION", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield boto3.session.Session(region_name=REGION)
