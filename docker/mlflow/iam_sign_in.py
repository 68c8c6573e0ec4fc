"""IAM sign-in for MLflow's basic-auth app: a caller API Gateway verified acts as the MLflow user it maps to.

The trust chain (docs/auth-modes.md): API Gateway's IAM route checks the SigV4 signature and
writes the signer's ARN into CALLER_HEADER; it reaches only nginx's IAM server, which passes
the header on and drops the Authorization header; every other route removes it. So a request
that carries the header here was signed by that identity.

:func:`authenticate_request` is the auth app's ``authorization_function`` when
MLFLOW_IAM_SIGN_IN is true (entrypoint.py writes it into basic_auth.ini). It wraps the
configured password check, named in the same file under PASSWORD_CHECK_SETTING: a request without
the header goes to that check unchanged. A request with it is the MLflow user its ARN maps to
(the static table of MLFLOW_IAM_PRINCIPALS plus one SSM parameter per Studio profile under
MLFLOW_IAM_PRINCIPALS_PATH), who must exist in the auth store; MLflow then applies that user's
permissions, admin flag and the default permission as for a password sign-in. Anything else
is refused with 403 naming the ARN.

It relies on MLflow's documented contract for ``authorization_function`` (an Authorization
naming the user, or a Response) and the auth app's public ``store``: no private names, so
nothing to fence with reviewed_source.py.
"""

from __future__ import annotations

import configparser
import importlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Any

from flask import Response, g, request
from iam_callers import (
    CALLER_HEADER,
    PASSWORD_CHECK_SETTING,
    PRINCIPALS_ENV,
    PRINCIPALS_PATH_ENV,
    caller_key,
    callers_in,
    principals_from_json,
    principals_from_profile_parameter,
)
from request_guard import ASGIApp, Receive, Scope, Send
from werkzeug.datastructures import Authorization

# How long a worker uses the profile parameters it read before reading them again: a new
# Studio profile signs in within a minute, without a request paying SSM's latency each time.
REFRESH_SECONDS = 60.0

_logger = logging.getLogger(__name__)
AuthResult = Authorization | Response


def _ssm_client() -> Any:
    import boto3
    from botocore.config import Config

    # Short: a request that reads the parameters waits for them (botocore's defaults allow minutes).
    return boto3.client("ssm", config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2}))


def profile_principals(client: Any, path: str) -> tuple[list[dict[str, str]], list[str]]:
    """One table per parameter under `path` (recursive, every page), and a line per malformed one.

    A parameter is named for the user it maps to (``<path>/<user>``, as the Studio stack writes
    them): one whose value names another user is refused, so a writer of one parameter cannot
    point its roles at somebody else's name.
    """
    tables, problems = [], []
    for page in client.get_paginator("get_parameters_by_path").paginate(Path=path, Recursive=True):
        for parameter in page["Parameters"]:
            name = parameter["Name"]
            try:
                table = principals_from_profile_parameter(parameter["Value"])
                others = sorted(set(table.values()) - {name.rsplit("/", 1)[-1]})
                if others:
                    raise ValueError(f"maps to {others[0]}, not the user it is named for")
                tables.append(table)
            except ValueError as error:
                problems.append(f"IAM sign-in: SSM parameter {name} {error}; its roles sign in as nobody")
    return tables, problems


def merged(tables: Iterable[Mapping[str, str]]) -> tuple[dict[str, str], list[str]]:
    """One table; a caller two tables map to different users maps to nobody (and a line says so)."""
    table: dict[str, str] = {}
    clashing: set[str] = set()
    for each in tables:
        for key, user in each.items():
            if table.get(key, user) != user:
                clashing.add(key)
            table[key] = user
    for key in clashing:
        del table[key]
    lines = [f"IAM sign-in: {key} is mapped to more than one MLflow user; it signs in as nobody" for key in clashing]
    return table, sorted(lines)


class Principals:
    """caller key -> MLflow user: a static table plus the profile parameters, re-read every REFRESH_SECONDS.

    A failed read keeps the last good table and logs once (until a read succeeds again).
    """

    def __init__(
        self, static: Mapping[str, str], path: str | None, *, client: Callable[[], Any] = _ssm_client,
        clock: Callable[[], float] = time.monotonic, refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:  # fmt: skip
        self.static = dict(static)
        self.path = path
        self._client_factory = client
        self._client: Any = None
        self._clock = clock
        self._refresh_seconds = refresh_seconds
        self._table, _ = merged([self.static])
        self._read_at: float | None = None
        self._failing = False
        self._logged: set[str] = set()
        self._lock = threading.Lock()

    def user_of(self, key: str, *, refresh: bool = True) -> str | None:
        """The MLflow user `key` signs in as, or None."""
        if refresh and self.path:
            self._refresh_if_due()
        return self._table.get(key)

    def _due(self) -> bool:
        return self._read_at is None or self._clock() - self._read_at >= self._refresh_seconds

    def _refresh_if_due(self) -> None:
        if not self._due():
            return
        # Until the first read ends every caller waits for it; later one thread reads while the
        # others go on with the table they have.
        if not self._lock.acquire(blocking=self._read_at is None):
            return
        try:
            if self._due():
                self._read()
        finally:
            self._lock.release()

    def _read(self) -> None:
        try:
            if self._client is None:
                self._client = self._client_factory()
            tables, problems = profile_principals(self._client, self.path or "")
        except Exception as error:  # noqa: BLE001 - boto3's errors and a missing region alike
            if not self._failing:
                _logger.warning(
                    f"IAM sign-in: cannot read the profile parameters under {self.path} "
                    f"({type(error).__name__}: {error}); the last table read stays in use"
                )
            self._failing = True
            return
        finally:
            self._read_at = self._clock()  # a failing read is retried after the same interval, not per request
        if self._failing:
            _logger.warning(f"IAM sign-in: the profile parameters under {self.path} are read again")
        self._failing = False
        self._table, clashes = merged([self.static, *tables])
        for line in [*problems, *clashes]:
            if line not in self._logged:
                self._logged.add(line)
                _logger.warning(line)


def principals_from_env(env: Mapping[str, str] = os.environ) -> Principals:
    """The table of this server's settings (entrypoint.py refused to start on a malformed one)."""
    return Principals(principals_from_json(env.get(PRINCIPALS_ENV, "")), env.get(PRINCIPALS_PATH_ENV) or None)


PRINCIPALS = principals_from_env()


@cache
def password_check() -> Callable[[], AuthResult]:
    """The configured password check (basic_auth.ini's PASSWORD_CHECK_SETTING, else MLflow's own)."""
    from mlflow.server.auth.config import DEFAULT_AUTHORIZATION_FUNCTION

    config = configparser.ConfigParser(interpolation=None)
    config.read(os.environ.get("MLFLOW_AUTH_CONFIG_PATH", ""))
    name = config.get("mlflow", PASSWORD_CHECK_SETTING, fallback=DEFAULT_AUTHORIZATION_FUNCTION)
    module, _, function = name.partition(":")
    check: Callable[[], AuthResult] = getattr(importlib.import_module(module), function)
    return check


def refusal(message: str) -> bytes:
    """A 403's body in MLflow's error format: its client shows the message."""
    return json.dumps({"error_code": "PERMISSION_DENIED", "message": message}).encode()


async def send_refusal(send: Send, message: str) -> None:
    """The same 403 from an ASGI middleware."""
    body = refusal(message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def refused(message: str) -> Response:
    return Response(refusal(message), status=403, mimetype="application/json")


def more_than_one(count: int) -> str:
    return f"a request carries one {CALLER_HEADER}, this one {count}"


def _stored_user(username: str) -> Any:
    """MLflow's row of `username` (its admin flag), None when there is none."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
    from mlflow.server import auth as mlflow_auth

    try:
        return mlflow_auth.store.get_user(username)  # read once per request (auth_lookups.py)
    except MlflowException as error:
        if error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        raise


def caller_user(callers: list[str]) -> tuple[str | None, str]:
    """The user a request's caller headers map to and "", or None and why not (a 403's message)."""
    if len(callers) != 1:
        return None, more_than_one(len(callers))
    arn = callers[0]
    try:
        key = caller_key(arn)
    except ValueError:
        return None, f"IAM caller {arn!r} is not an IAM role, assumed-role or user ARN"
    user = PRINCIPALS.user_of(key)
    if user is None:
        return None, f"IAM caller {arn} is not mapped to an MLflow user"
    return user, ""


def mapped_by_setting(arn: str, user: str) -> bool:
    """Whether the deployment's own iam_principals maps `arn` to `user`.

    The profile parameters are written by whoever may write SSM parameters, the static table by
    whoever deploys: only the deployment's setting may let a role act as an admin.
    """
    return PRINCIPALS.static.get(caller_key(arn)) == user


def admin_by_parameter(arn: str, user: str) -> str:
    return f"IAM caller {arn} is mapped to admin {user} by a profile parameter; only iam_principals may"


def decide(callers: list[str]) -> AuthResult:
    """The user the request's caller header signs in as, or a 403 naming it."""
    user, why_not = caller_user(callers)
    if user is None:
        return refused(why_not)
    arn = callers[0]
    stored = _stored_user(user)
    if stored is None:
        return refused(f"IAM caller {arn} is mapped to MLflow user {user}, who does not exist")
    if stored.is_admin and not mapped_by_setting(arn, user):
        return refused(admin_by_parameter(arn, user))
    return Authorization("basic", {"username": user})


def authenticate_request() -> AuthResult:
    """MLflow `authorization_function`: the caller's user, a 403, or the password check's answer."""
    callers = request.headers.getlist(CALLER_HEADER)
    if not callers:
        return password_check()()
    # MLflow asks several times per request: decide once.
    decided = g.get("_iam_sign_in_decision")
    if decided is None or decided[0] != callers:
        decided = (callers, decide(callers))
        g._iam_sign_in_decision = decided
    return decided[1]


def audit_user(value: str) -> str | None:
    """The user a caller header names, for the audit line and nginx's log (the table as last read)."""
    try:
        return PRINCIPALS.user_of(caller_key(value), refresh=False)
    except ValueError:
        return None


class OneCaller:
    """ASGI middleware: a request with more than one caller header is refused before any app reads one.

    MLflow's Flask routes see repeated headers joined by a comma (no ARN has one), but its
    FastAPI routes hand the first copy alone to :func:`authenticate_request`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            count = len(callers_in(scope.get("headers", [])))
            if count > 1:
                await send_refusal(send, more_than_one(count))
                return
        await self.app(scope, receive, send)
