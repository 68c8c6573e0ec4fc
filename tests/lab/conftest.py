"""Shared fixtures of the lab tests (the package __init__ puts lab/ on sys.path)."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import import_module

import boto3
import pytest
from moto import mock_aws

from tests.fake_aws import use_fake_aws

# The region every moto-backed lab test pretends to run in.
REGION = "eu-west-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.session.Session]:
    """Fake credentials, a region, and moto for every boto3 call."""
    use_fake_aws(monkeypatch, REGION, also_unset=("MLFLOW_TRACKING_URI",))
    with mock_aws():
        yield boto3.session.Session(region_name=REGION)


@pytest.fixture(autouse=True)
def stock_mlflow_signer() -> Iterator[None]:
    """IAM sign-in replaces the signer MLflow's client imports (`signing_session`); no test keeps another's."""
    import signing_session

    yield
    import_module(signing_session.SIGNER_MODULE).AWSSigV4 = signing_session.stock_signer()
