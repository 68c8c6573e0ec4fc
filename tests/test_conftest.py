"""The suite's own settings hold (tests/conftest.py)."""

import os

import boto3
import pytest


def test_each_module_is_one_xdist_group(request: pytest.FixtureRequest) -> None:
    """Module fixtures (a server, a drill) start once only if xdist keeps the module on one worker."""
    mark = request.node.get_closest_marker("xdist_group")
    assert mark is not None and mark.args[0] == __name__
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # xdist appends the group it scheduled by; without it the module's tests were spread out.
        assert request.node.nodeid.endswith(f"@{__name__}")


def test_boto3_sessions_share_one_data_loader() -> None:
    """Service models are parsed once per worker, not once per session (tests/conftest.py)."""
    first, second = boto3.session.Session(region_name="eu-west-1"), boto3.session.Session(region_name="eu-west-1")
    assert first._session.get_component("data_loader") is second._session.get_component("data_loader")
