"""Flask-bound requests skip MLflow's permission middleware only where it would do nothing
(docker/mlflow/asgi_fast_path.py)."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
from mlflow.server import auth as mlflow_auth
from starlette.middleware.base import BaseHTTPMiddleware

from tests.docker.image_modules import image_module


@pytest.fixture(scope="module")
def fast_path() -> Iterator[ModuleType]:
    with image_module("asgi_fast_path") as module:
        yield module


@pytest.fixture
def pristine(fast_path: ModuleType, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Starlette's own __call__ for the test; whatever another test installed is restored after it."""
    monkeypatch.setattr(BaseHTTPMiddleware, "__call__", fast_path._through_middleware)
    return fast_path


@pytest.fixture(scope="module")
def permission_dispatch(fast_path: ModuleType) -> Callable:
    """The dispatch function MLflow's auth app registers, on a FastAPI app with MLflow's own routes."""
    from mlflow.server import app as flask_app
    from mlflow.server.fastapi_app import create_fastapi_app

    app = create_fastapi_app(flask_app)
    mlflow_auth.add_fastapi_permission_middleware(app)
    dispatches = [middleware.kwargs.get("dispatch") for middleware in app.user_middleware]
    (dispatch,) = [dispatch for dispatch in dispatches if fast_path.is_permission_middleware(dispatch)]
    return dispatch


def test_the_pinned_mlflows_middleware_is_the_reviewed_one(fast_path: ModuleType) -> None:
    assert fast_path.source_sha256() == fast_path.REVIEWED_SOURCE_SHA256, (
        "MLflow's add_fastapi_permission_middleware changed: check that it still only calls call_next "
        "for a request with no FastAPI validator and no native route, then update REVIEWED_SOURCE_SHA256"
    )


def request_scope(method: str, path: str) -> dict:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"mlflow.example")], "server": ("mlflow.example", 80), "client": ("127.0.0.1", 5000),
    }  # fmt: skip


CASES = [
    ("POST", "/api/2.0/mlflow/runs/log-batch"),
    ("GET", "/api/2.0/mlflow/experiments/get-by-name"),
    ("POST", "/ajax-api/2.0/mlflow/runs/search"),
    ("GET", "/api/2.0/mlflow/users/get"),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/model.pkl"),
    ("PUT", "/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/model.pkl"),
    ("POST", "/api/2.0/mlflow-artifacts/mpu/create/1/run/artifacts/big.bin"),
    ("POST", "/gateway/my-endpoint/mlflow/invocations"),
    ("POST", "/v1/traces"),
    ("GET", "/ajax-api/3.0/jobs/123"),
    ("POST", "/ajax-api/3.0/mlflow/assistant/chat"),
    ("GET", "/api/3.0/mlflow/mcp-servers/some-server/versions/1"),
    ("GET", "/api/3.0/mlflow/server-info"),
    ("GET", "/health"),
    ("GET", "/"),
]


def serve(app: Callable, scope: dict) -> tuple[int, bytes]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(dict(scope), receive, send))
    status = next(message["status"] for message in sent if message["type"] == "http.response.start")
    return status, b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")


def test_every_request_gets_what_mlflows_middleware_gives_it(
    pristine: ModuleType, permission_dispatch: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No credentials: a request the middleware checks itself is refused there, with or without the
    fast path; one it hands on reaches the inner app (Flask, which checks it) either way."""

    async def inner(scope: dict, receive: Callable, send: Callable) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"inner app"})

    middleware = BaseHTTPMiddleware(inner, dispatch=permission_dispatch)
    through_machinery: list[str] = []
    original = pristine._through_middleware

    async def counted(self: BaseHTTPMiddleware, scope: dict, receive: Callable, send: Callable) -> None:
        through_machinery.append(scope["path"])
        await original(self, scope, receive, send)

    without = {case: serve(middleware, request_scope(*case)) for case in CASES}
    monkeypatch.setattr(pristine, "_through_middleware", counted)
    assert pristine.install()
    with_fast_path = {case: serve(middleware, request_scope(*case)) for case in CASES}

    assert with_fast_path == without
    skipped = {case for case in CASES if case[1] not in through_machinery}
    refused = {case for case, (status, _) in without.items() if status != 200}
    # Only requests MLflow's middleware hands on unchanged skip it (not all of them: /health and
    # server-info are native FastAPI routes, which keep going through it).
    assert skipped <= {case for case, (status, body) in without.items() if body == b"inner app"}
    assert skipped == set(CASES[:4]) | {CASES[6], ("GET", "/")}  # the tracking API and the UI: Flask's
    # Native artifact transfers, the gateway, traces and jobs stay with the middleware, which refuses them.
    assert {CASES[4], CASES[5], CASES[7], CASES[8], CASES[9]} <= refused
    assert not skipped & refused


def test_another_middleware_is_left_alone(pristine: ModuleType) -> None:
    async def other(request: object, call_next: Callable) -> object:
        return await call_next(request)

    assert not pristine.is_permission_middleware(other)


def test_on_another_mlflow_nothing_changes(
    pristine: ModuleType, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(pristine, "REVIEWED_SOURCE_SHA256", "0" * 64)
    with caplog.at_level(logging.WARNING, logger=pristine.__name__):
        assert not pristine.install()
    assert BaseHTTPMiddleware.__call__ is pristine._through_middleware
    assert [record.getMessage() for record in caplog.records] == [
        "MLflow's add_fastapi_permission_middleware is not the reviewed one (asgi_fast_path.py): "
        "every request goes through it, correct but slower"
    ]


def test_on_an_mlflow_without_that_middleware_nothing_changes_and_the_server_starts(
    pristine: ModuleType, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delattr(mlflow_auth, "add_fastapi_permission_middleware")
    with caplog.at_level(logging.WARNING, logger=pristine.__name__):
        assert not pristine.install()  # no AttributeError: the entrypoint's load check would refuse to start
    assert BaseHTTPMiddleware.__call__ is pristine._through_middleware
    assert [record.getMessage() for record in caplog.records] == [pristine.NOT_REVIEWED]


def test_install_patches_once(pristine: ModuleType) -> None:
    assert pristine.install() and pristine.install()
    assert BaseHTTPMiddleware.__call__ is pristine._call


def test_loaded_again_it_still_ends_in_starlettes_own_call(pristine: ModuleType) -> None:
    assert pristine.install()
    reloaded = importlib.reload(pristine)
    assert reloaded._through_middleware is BaseHTTPMiddleware.__call__.through_middleware
    assert reloaded._through_middleware.__qualname__ == "BaseHTTPMiddleware.__call__"
