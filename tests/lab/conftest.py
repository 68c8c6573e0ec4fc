"""Shared fixtures of the lab tests (the package __init__ puts lab/ on sys.path)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

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
