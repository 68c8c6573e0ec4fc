"""The suite's own settings hold (tests/conftest.py)."""

import os

import boto3
import pytest

from tests.integration.iam_accounts import IAM_ACCOUNTS_GROUP
from tests.integration.webhook_receiver import WEBHOOK_STACK_GROUP


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


# Session-scoped stacks (tests/integration/conftest.py) and the xdist group of the tests using them.
SESSION_STACK_GROUPS = {
    "accounts_stack": "accounts-stack",
    "sso_stack": "sso-stack",
    "iam_accounts": IAM_ACCOUNTS_GROUP.args[0],
    "webhook_stack": WEBHOOK_STACK_GROUP.args[0],
}


def test_every_user_of_a_session_stack_runs_in_its_group(request: pytest.FixtureRequest) -> None:
    """A test outside its stack's group makes the other worker start a second stack (15-30 CPU-seconds).

    Sees the fixtures a test names (directly or through other fixtures); a test that asks
    for a stack by name at run time (getfixturevalue) carries the group mark itself.
    """
    strays = [
        (item.nodeid, fixture)
        for item in request.session.items
        for fixture, group in SESSION_STACK_GROUPS.items()
        if fixture in getattr(item, "fixturenames", ())
        and (mark := item.get_closest_marker("xdist_group")) is not None
        and mark.args[0] != group
    ]
    assert not strays
