"""docker/mlflow/oidc_iam_sign_in.py without a server: the caller's decision before the plugin, and the
plugin's authentication wrapped only on the reviewed source.

Through nginx, the plugin and a signed MLflow client: tests/integration/test_iam_sign_in_sso.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.docker.image_modules import image_module
from tests.docker.test_request_guard import call

ROLE = "arn:aws:iam::123456789012:role/studio-alice"
SESSION = "arn:aws:sts::123456789012:assumed-role/studio-alice/SageMaker"
STRANGER = "arn:aws:sts::123456789012:assumed-role/intruder/x"
MIDDLEWARE = "mlflow_oidc_auth.middleware.auth_middleware"


@pytest.fixture
def sign_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The module, its caller table mapping ROLE to studio-alice, and the plugin put back after the test."""
    import mlflow_oidc_auth.middleware.auth_middleware as middleware

    with image_module("oidc_iam_sign_in") as module, image_module("iam_sign_in") as iam:
        monkeypatch.setattr(iam, "PRINCIPALS", iam.Principals({"123456789012:role/studio-alice": "studio-alice"}, None))
        for owner, name in wrapped(middleware):
            monkeypatch.setattr(owner, name, getattr(owner, name))
        yield module


def wrapped(middleware: ModuleType) -> list[tuple[Any, str]]:
    return [(middleware.AuthMiddleware, "_authenticate_user"), (middleware, "_auth_method"),
            (middleware, "_service_account_denial")]  # fmt: skip


class Seen:
    """An ASGI app that records the user the plugin would be told, and answers 200."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.users: list[str | None] = []

    async def __call__(self, _scope: dict, _receive: Any, send: Any) -> None:
        self.users.append(self.module._IAM_USER.get())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def caller(arn: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-mlflow-iam-caller", arn.encode())]


def test_a_mapped_caller_reaches_the_plugin_as_its_user_and_others_get_403_naming_the_arn(sign_in: ModuleType) -> None:
    inner = Seen(sign_in)
    app = sign_in.IamSignIn(inner, active=True)
    assert call(app, "GET", "/api/2.0/mlflow/experiments/search", headers=caller(SESSION)) == (200, b"ok")
    assert call(app, "GET", "/", headers=caller(ROLE)) == (200, b"ok")
    status, body = call(app, "GET", "/api/2.0/mlflow/experiments/search", headers=caller(STRANGER))
    assert (status, json.loads(body)) == (
        403,
        {"error_code": "PERMISSION_DENIED", "message": f"IAM caller {STRANGER} is not mapped to an MLflow user"},
    )
    # Without the header the request goes the plugin's usual way, with no IAM user.
    assert call(app, "GET", "/") == (200, b"ok")
    assert inner.users == ["studio-alice", "studio-alice", None]


def test_with_sign_in_off_the_header_is_refused_never_passed_to_the_plugin(sign_in: ModuleType) -> None:
    inner = Seen(sign_in)
    status, body = call(sign_in.IamSignIn(inner, active=False), "GET", "/", headers=caller(ROLE))
    assert status == 403 and json.loads(body)["message"] == sign_in.OFF_MESSAGE
    assert inner.users == []


def test_another_plugin_release_leaves_its_authentication_alone_with_one_line(
    sign_in: ModuleType, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import mlflow_oidc_auth.middleware.auth_middleware as middleware

    before = [getattr(owner, name) for owner, name in wrapped(middleware)]
    stale = {**sign_in.REVIEWED, MIDDLEWARE: {**sign_in.REVIEWED[MIDDLEWARE], "_auth_method": "0" * 64}}
    monkeypatch.setattr(sign_in, "REVIEWED", stale)
    with caplog.at_level(logging.WARNING):
        assert sign_in.install() is False
    assert [record.getMessage() for record in caplog.records] == [
        f"MLflow's {MIDDLEWARE}:_auth_method is not the reviewed one (oidc_iam_sign_in.py): {sign_in.CONSEQUENCE}"
    ]
    assert [getattr(owner, name) for owner, name in wrapped(middleware)] == before


def request(headers: list[tuple[bytes, bytes]]) -> Any:
    from starlette.requests import Request

    return Request({"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": headers})


def test_the_wrapped_plugin_takes_the_decided_user_as_a_workload_and_its_own_path_otherwise(
    sign_in: ModuleType,
) -> None:
    import mlflow_oidc_auth.middleware.auth_middleware as middleware

    assert sign_in.install() is True
    auth = middleware.AuthMiddleware(Seen(sign_in))
    signed, bearer = request(caller(ROLE)), request([(b"authorization", b"Bearer not-a-token")])

    def authenticate(req: Any) -> tuple[bool, str | None, str]:
        return asyncio.run(auth._authenticate_user(req))

    # The header without IamSignIn's decision: refused, whatever else the request carries.
    assert authenticate(signed)[:2] == (False, None)
    assert middleware._auth_method(signed) == "workload" and middleware._auth_method(request([])) == "session"
    # A service account signs in through its provider only, unless IAM sign-in decided this request is it.
    refusal = middleware._service_account_denial("studio-alice", True, "default", "workload", None)
    assert refusal
    marker = sign_in._IAM_USER.set("studio-alice")
    try:
        assert authenticate(signed) == (True, "studio-alice", "")
        assert middleware._service_account_denial("studio-alice", True, "default", "workload", None) == ""
        assert middleware._service_account_denial("studio-bob", True, "default", "workload", None) == refusal
    finally:
        sign_in._IAM_USER.reset(marker)
    # The plugin's own bearer path for a request without the header (an invalid token: refused).
    assert authenticate(bearer)[:2] == (False, None)


def test_a_profile_parameter_cannot_make_a_role_an_admin(sign_in: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """As in accounts mode: only iam_principals (the static table) may map a role to a plugin admin."""
    import sys

    import boto3
    from moto import mock_aws

    from stacks.iam_callers import profile_parameter

    iam = sys.modules["iam_sign_in"]
    with mock_aws():
        ssm = boto3.client("ssm", region_name="us-east-1")
        ssm.put_parameter(Name="/p/studio-alice", Value=profile_parameter("studio-alice", [ROLE]), Type="String")
        monkeypatch.setattr(iam, "PRINCIPALS", iam.Principals({}, "/p", client=lambda: ssm))
        app = sign_in.IamSignIn(Seen(sign_in), active=True)
        monkeypatch.setattr(sign_in, "_is_admin", lambda user: user == "studio-alice")
        status, body = call(app, "GET", "/", headers=caller(SESSION))
        assert status == 403
        assert json.loads(body)["message"] == iam.admin_by_parameter(SESSION, "studio-alice")
        monkeypatch.setattr(sign_in, "_is_admin", lambda user: False)
        assert call(app, "GET", "/", headers=caller(SESSION)) == (200, b"ok")
    # The same admin through the deployment's own table is let in.
    monkeypatch.setattr(iam, "PRINCIPALS", iam.Principals({"123456789012:role/studio-alice": "studio-alice"}, None))
    monkeypatch.setattr(sign_in, "_is_admin", lambda user: True)
    assert call(sign_in.IamSignIn(Seen(sign_in), active=True), "GET", "/", headers=caller(SESSION)) == (200, b"ok")
