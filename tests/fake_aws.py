"""Fake AWS credentials and a region for tests that run boto3 against moto in process."""

from __future__ import annotations

import pytest


def use_fake_aws(monkeypatch: pytest.MonkeyPatch, region: str, *, also_unset: tuple[str, ...] = ()) -> None:
    """No profile, endpoint or region of the machine leaks in; moto's fake keys and `region` stand in."""
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_REGION", *also_unset):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
