"""The suite's own settings hold (tests/conftest.py)."""

import os
import re
from pathlib import Path

import boto3
import pytest

from tests.integration.conftest import SSO_GROUP
from tests.integration.iam_accounts import IAM_ACCOUNTS_GROUP
from tests.integration.mlflow_users import ACCOUNTS_GROUP
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
    "accounts_stack": ACCOUNTS_GROUP.args[0],
    "sso_stack": SSO_GROUP.args[0],
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


# Fixtures of the unit directories that start a server: moto's (tests/tools/conftest.py,
# test_serving_image_buildspec.py) and npm oidc-provider (test_mlflow_setup_sso.py).
SERVER_FIXTURES = {"moto", "moto_endpoint", "provider"}


def _unit_test_paths() -> list[str]:
    """What `make test-unit` runs: the Makefile's UNIT_TESTS."""
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    return re.search(r"^UNIT_TESTS := (.+)$", makefile, re.MULTILINE).group(1).split()  # type: ignore[union-attr]


def test_every_unit_test_that_starts_a_server_is_an_integration_test(request: pytest.FixtureRequest) -> None:
    """`make test-unit` leaves servers to `make test`: a test there that asks for one carries the integration mark."""
    paths = _unit_test_paths()
    assert "tests/tools" in paths and "tests/stacks" in paths
    strays = [
        item.nodeid
        for item in request.session.items
        if any(Path(item.nodeid.split("::")[0]).is_relative_to(path) for path in paths)
        and SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        and not item.get_closest_marker("integration")
    ]
    assert not strays
