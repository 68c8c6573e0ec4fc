"""One JSON line per request that changes something: who, what route, which ids, what status.

The outermost ASGI middleware of the deployment app (deployment_app.py), so it sees every
request the auth modes' apps answer, refusals included. A change is any POST, PUT, PATCH or
DELETE except the read-only POST routes (searches, GraphQL queries). From the request it
keeps only an allowlist of id and name fields (query string and JSON body, top level):
never a password, token, parameter value or other body content.

The user: in `shared` mode nginx's basic-auth user (X-Authenticated-User, which nginx
sets from $remote_user and clears from client input in the other modes); in `accounts`
and `sso` mode the basic-auth username the app checked (the response's status tells
whether it accepted it: a 401 line says who was refused). A bearer token or an SSO session
is not attributed yet (`user` is null).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from request_guard import ASGIApp, Message, Receive, Scope, Send, _read_body, _replay, _route

# Fields whose values are identifiers or names (compared without case, `_` and `-`).
AUDITED_FIELDS = frozenset(
    {
        "experimentid", "experimentids", "runid", "runuuid", "name", "newname", "version",
        "alias", "username", "modelid", "traceid", "requestid", "promptname", "key",
        "experimentname", "registeredmodelname", "permission", "webhookid", "datasetid",
    }
)  # fmt: skip
CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# POST routes that only read.
_READ_ONLY_POST = re.compile(r"(?:.*/)?(?:search|get|list|batch-get|search-[a-z-]+|get-[a-z-]+)")
_GRAPHQL = re.compile(r"(?:/(?:api|ajax-api)/[0-9.]+)?(?:/mlflow)?/graphql")
_MUTATION = re.compile(rb"\bmutation\b")
USER_HEADER = b"x-authenticated-user"
REQUEST_ID_HEADER = b"x-request-id"
Sink = Callable[[str], None]


def _key(name: str) -> str:
    return re.sub(r"[_\-\[\]]", "", name).lower()


def audited_fields(query_string: bytes, body: bytes) -> dict[str, Any]:
    """The allowlisted id and name fields of the query string and the JSON body's top level."""
    found: dict[str, Any] = {}
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if _key(name) in AUDITED_FIELDS:
            found[name] = value
    try:
        document = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        document = None
    if isinstance(document, dict):
        for name, value in document.items():
            if _key(name) in AUDITED_FIELDS and _is_identifier(value):
                found[name] = value
    return found


def _is_identifier(value: object) -> bool:
    if isinstance(value, list):
        return all(_is_identifier(item) for item in value)
    return isinstance(value, str | int) and not isinstance(value, bool) and len(str(value)) <= 512


def is_change(method: str, path: str, body: bytes) -> bool:
    if method not in CHANGING_METHODS:
        return False
    route = _route(path)
    if _GRAPHQL.fullmatch(route):
        return bool(_MUTATION.search(body))
    return not (method == "POST" and _READ_ONLY_POST.fullmatch(route.rsplit("/", 1)[-1]))


def caller(mode: str, headers: dict[bytes, bytes]) -> str | None:
    """Who the request says it is, in the way this mode's authentication knows it."""
    if mode == "shared":
        return headers.get(USER_HEADER, b"").decode("latin-1") or None
    # The other modes' apps check the credentials themselves; nginx's header there is only
    # what the client claimed, so the username is read from the credentials the app checked.
    scheme, _, credentials = headers.get(b"authorization", b"").partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        return base64.b64decode(credentials, validate=True).decode().partition(":")[0] or None
    except (binascii.Error, UnicodeDecodeError):
        return None


def stderr_sink(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def file_sink(path: str) -> Sink:
    def write(line: str) -> None:
        with open(path, "a", encoding="utf-8") as log:
            log.write(line + "\n")

    return write


def default_sink() -> Sink:
    path = os.environ.get("MLFLOW_AUDIT_LOG_FILE")
    return file_sink(path) if path else stderr_sink


class AuditLog:
    """ASGI middleware writing one audit line per changing request to `sink`."""

    def __init__(self, app: ASGIApp, mode: str, sink: Sink | None = None) -> None:
        self.app = app
        self.mode = mode
        self.sink = sink or default_sink()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in CHANGING_METHODS:
            await self.app(scope, receive, send)
            return
        body, messages = await _read_body(receive)
        if not is_change(scope["method"], scope["path"], body):
            await self.app(scope, _replay(messages, receive), send)
            return
        written = False

        def write(status: int) -> None:
            nonlocal written
            if not written:
                written = True
                self.sink(self.line(scope, body, status, started))

        started = time.time()

        async def send_logged(message: Message) -> None:
            # Written before the status leaves, so a caller who got an answer finds the line.
            if message["type"] == "http.response.start":
                write(message["status"])
            await send(message)

        try:
            await self.app(scope, _replay(messages, receive), send_logged)
        finally:
            write(500)  # the app failed before answering

    def line(self, scope: Scope, body: bytes, status: int, started: float) -> str:
        headers = {name.lower(): value for name, value in scope.get("headers", [])}
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "event": "mlflow-change",
            "user": caller(self.mode, headers),
            "mode": self.mode,
            "method": scope["method"],
            "route": _route(scope["path"]),
            "resource": audited_fields(scope.get("query_string", b""), body),
            "status": status,
            "request_id": headers.get(REQUEST_ID_HEADER, b"").decode("latin-1") or None,
        }
        return json.dumps(record, sort_keys=True)
