"""Requests bound for Flask skip the middleware machinery they do not need.

MLflow's basic-auth app adds ``fastapi_permission_middleware``, a Starlette
``BaseHTTPMiddleware``, for the routes FastAPI serves itself (gateway, OTel
traces, jobs, native artifact routes, MCP servers). Every other request, every
tracking API call among them, goes on to Flask, whose before-request hook
authenticates it and checks its permissions; for those the middleware's only
step is ``call_next``. ``BaseHTTPMiddleware`` still runs each of them in a task
group with memory streams and streams the response back through them. Profiled
with py-spy on a log-batch load, that machinery was the largest single part of
what accounts mode adds per request. Skipping it measured (make bench-accounts
variants side by side, two runs): 0.7-0.9 ms less server CPU per log-batch
call, accounts/shared throughput 0.81 -> 0.88 and 0.83 -> 0.89.

:func:`install` hands a request straight to the inner app exactly when the
middleware would only call ``call_next``: MLflow's own ``_find_fastapi_validator``
finds no validator for its path and method, and MLflow's own
``_scope_matches_native_route`` finds no native FastAPI route for it (the
middleware's route snapshot, read from its closure). Any other request goes
through the middleware as before.

MLflow imports this module at the first signed-in request, when the FastAPI
app and its middleware stack already exist and no reference to them is at
hand, so :func:`install` sets the direct path on Starlette's
``BaseHTTPMiddleware`` class; it acts only for the instance whose dispatch
function is MLflow's permission middleware, and every other instance behaves
as before.

That condition is only right for the middleware it was read against, so
:func:`install` first compares the SHA-256 of ``add_fastapi_permission_middleware``'s
source with ``REVIEWED_SOURCE_SHA256``. On any other MLflow it changes nothing
(every request keeps going through the middleware, only slower) and logs one
line. tests/docker/test_asgi_fast_path.py fails when the pinned MLflow's source
differs, so a version bump comes with a fresh review.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

from mlflow.server import auth as mlflow_auth
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request

try:  # what the reviewed middleware reads its path with; a release that moved it is not the reviewed one
    from mlflow.server.asgi_utils import get_routed_asgi_path
except ImportError:
    get_routed_asgi_path = None  # type: ignore[assignment]

# add_fastapi_permission_middleware in MLflow 3.17.2, read line by line: for a request with no
# FastAPI validator that matches no native route, the middleware returns `await call_next(request)`.
REVIEWED_SOURCE_SHA256 = "344ee9b3adc66f0cb7025ba78bf41537cd96b1f01163f80c896bfdf85b4baee2"

# Logged once per process on another MLflow; `make upgrade-check` looks for it in the new servers' logs.
NOT_REVIEWED = (
    "MLflow's add_fastapi_permission_middleware is not the reviewed one (asgi_fast_path.py): "
    "every request goes through it, correct but slower"
)

_logger = logging.getLogger(__name__)


def source_sha256() -> str:
    """SHA-256 of the installed MLflow's ``add_fastapi_permission_middleware`` source ("" if it has none).

    A release without it gets no fast path, and the server still starts: the fast path is optional.
    """
    middleware = getattr(mlflow_auth, "add_fastapi_permission_middleware", None)
    return hashlib.sha256(inspect.getsource(middleware).encode()).hexdigest() if middleware else ""


def is_permission_middleware(dispatch: Callable[..., Any]) -> bool:
    """Whether ``dispatch`` is the function ``add_fastapi_permission_middleware`` registers."""
    code = getattr(dispatch, "__code__", None)
    registered_by = mlflow_auth.add_fastapi_permission_middleware.__code__
    return code is not None and any(code is const for const in registered_by.co_consts)


def only_passes_on(dispatch: Callable[..., Any], scope: dict) -> bool:
    """Whether MLflow's permission middleware would do nothing for this request but ``call_next``."""
    path = get_routed_asgi_path(Request(scope))
    if mlflow_auth._find_fastapi_validator(path, scope["method"]) is not None:
        return False
    cells = dict(zip(dispatch.__code__.co_freevars, dispatch.__closure__ or ()))
    native_routes = cells["native_routes"].cell_contents
    return not mlflow_auth._scope_matches_native_route(native_routes, scope)


# Starlette's own __call__, also when this module is loaded again after install().
_through_middleware = getattr(BaseHTTPMiddleware.__call__, "through_middleware", BaseHTTPMiddleware.__call__)


async def _call(self: BaseHTTPMiddleware, scope: dict, receive: Callable, send: Callable) -> None:
    dispatch = self.dispatch_func
    if scope["type"] == "http" and is_permission_middleware(dispatch) and only_passes_on(dispatch, scope):
        await self.app(scope, receive, send)
        return
    await _through_middleware(self, scope, receive, send)


_call.through_middleware = _through_middleware  # type: ignore[attr-defined]


def install() -> bool:
    """Give Flask-bound requests the direct path, if this MLflow's middleware is the reviewed one."""
    if BaseHTTPMiddleware.__call__ is _call:
        return True
    if get_routed_asgi_path is None or source_sha256() != REVIEWED_SOURCE_SHA256:
        _logger.warning(NOT_REVIEWED)
        return False
    BaseHTTPMiddleware.__call__ = _call
    return True
