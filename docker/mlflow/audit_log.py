"""One JSON line per request that changes something: who, what route, which ids, what status.

The outermost ASGI middleware of the deployment app (deployment_app.py), so it sees every
request the auth modes' apps answer, refusals included. A change is any POST, PUT, PATCH or
DELETE except the read-only POST routes (searches, GraphQL queries). From the request it
keeps only an allowlist of id and name fields (query string and JSON body, top level):
never a password, token, parameter value or other body content.

The user: in `shared` mode nginx's basic-auth user (X-Authenticated-User, which nginx
sets from $remote_user and clears from client input in the other modes); in `sso` mode the
user mlflow-oidc-auth authenticated (bearer token, session or its own access token), which
its AuthMiddleware leaves in the ASGI scope, where no client can write; with IAM sign-in, the
user the verified caller (X-Mlflow-Iam-Caller, which only nginx's IAM server passes on) maps to,
and the caller's ARN as `iam_caller`; otherwise, in
`accounts` mode and for refused `sso` requests, the basic-auth username the app checked
(the response's status tells whether it accepted it: a 401 line says who was refused).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote

import reviewed_source
from auth_modes import needs_of
from iam_callers import callers_in
from request_guard import ASGIApp, Message, Receive, Scope, Send, _read_body, _replay, _route

# The fields whose values are identifiers or names, as MLflow spells them. A field counts in
# any spelling (compared without case, `_`, `-` and brackets); MLflow itself reads these and
# their lowerCamelCase JSON names, so those spellings go first when a line must be cut.
AUDITED_NAMES = (
    "experiment_id", "run_id", "run_uuid", "name", "new_name", "version", "alias", "username",
    "model_id", "trace_id", "request_id", "prompt_name", "key", "experiment_name",
    "registered_model_name", "permission", "webhook_id", "dataset_id", "experiment_ids",
    # MLflow 3's grants and roles: what a grant is on, which role, who became an admin.
    "resource_type", "resource_id", "resource_pattern", "role_id", "role_permission_id", "workspace", "is_admin",
)  # fmt: skip
# What one value may hold in a line (characters, and bytes once escaped in the JSON line);
# longer strings and lists are cut, and the line says so.
MAX_VALUE_CHARS = 512
MAX_VALUE_BYTES = 2 * MAX_VALUE_CHARS
MAX_LIST_ITEMS = 32
# The resource part of a line, serialized. Whatever the client pads a request with, a line
# stays within one CloudWatch Logs event (audit_cloudwatch.py), so it always reaches the audit
# log group: MLflow ignores fields it does not know, and a line too big for an event would go
# to the task's own log instead. MLflow's own spellings of the scalar fields always fit (at
# most 2 x 26 values of MAX_VALUE_BYTES).
MAX_RESOURCE_BYTES = 96 * 1024
MAX_USER_CHARS = 512
MAX_ROUTE_CHARS = 1024
CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# POST routes that only read (get-or-create-... creates).
_READ_ONLY_POST = re.compile(r"(?!.*create)(?:search|get|list|batch-get|search-[a-z-]+|get-[a-z-]+)")
_GRAPHQL = re.compile(r"(?:/(?:api|ajax-api)/[0-9.]+)?(?:/mlflow)?/graphql")
_MUTATION = re.compile(rb"\bmutation\b")
USER_HEADER = b"x-authenticated-user"
REQUEST_ID_HEADER = b"x-request-id"
# API Gateway's requestId (stacks/components/http_gateway.py), the key into the API's access log.
API_REQUEST_ID_HEADER = b"x-api-request-id"
# The user of every response, for nginx's access log (nginx.conf.template hides it from clients).
USER_RESPONSE_HEADER = b"x-mlflow-user"
# With IAM sign-in (iam_sign_in.py): the user a caller header's ARN maps to, if any.
IamUser = Callable[[str], str | None]
Sink = Callable[[str], None]

# What reading the sso user relies on, read in mlflow-oidc-auth 10.2.0: AuthMiddleware.dispatch
# stores an AuthContext under AUTH_CONTEXT_KEY in the request's scope once, and only once, it has
# authenticated the caller and found the account active.
REVIEWED_FOR_SSO_USER = {
    "mlflow_oidc_auth.entities.auth_context": {
        "AUTH_CONTEXT_KEY": "9f54c5e72824e6b332047bb85fc8c36cf021cf3f318f0148c691283081a25eff",
        "AuthContext": "3a3f58df721477ed62d04971a4b3667bc72e29212e868ac9ccb5ca75f817bc89",
    },
    "mlflow_oidc_auth.middleware.auth_middleware": {
        "AuthMiddleware.dispatch": "b0de7e62969dc422f10b4df3eb8f72980fa5d14e04ba7de19650634ff2165ec9",
    },
}

_logger = logging.getLogger(__name__)


def _key(name: str) -> str:
    return re.sub(r"[_\-\[\]]", "", name).lower()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


AUDITED_FIELDS = frozenset(_key(name) for name in AUDITED_NAMES)
# Fields in the order they are kept when a line must be cut: MLflow's spellings first, by AUDITED_NAMES.
_PRIORITY = {spelling: rank for rank, name in enumerate(AUDITED_NAMES) for spelling in (name, _camel(name))}


def audited_fields(query_string: bytes, body: bytes) -> dict[str, Any]:
    """The allowlisted id and name fields of the query string and the JSON body's top level,
    cut to fit MAX_RESOURCE_BYTES (`resource_truncated` then says so)."""
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
    return _within_budget(found)


def _is_identifier(value: object) -> bool:
    """An id, a name or a flag (is_admin), or a list of them; never an object, whose fields could be anything."""
    if isinstance(value, list):
        return all(isinstance(item, str | int) for item in value)
    return isinstance(value, str | int)


def _cut(value: Any) -> tuple[Any, bool]:
    if isinstance(value, list):
        items = [_cut(item) for item in value[:MAX_LIST_ITEMS]]
        return [item for item, _ in items], len(value) > MAX_LIST_ITEMS or any(cut for _, cut in items)
    if isinstance(value, str):
        return _cut_text(value)
    return value, False


def _cut_text(value: str) -> tuple[str, bool]:
    text = value[:MAX_VALUE_CHARS]
    if _escaped_size(text) <= MAX_VALUE_BYTES:
        return text, len(value) > MAX_VALUE_CHARS
    low, high = 0, len(text)  # escaped characters take up to 12 bytes: the longest prefix that fits
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if _escaped_size(text[:middle]) <= MAX_VALUE_BYTES else (low, middle - 1)
    return text[:low], True


def _escaped_size(text: str) -> int:
    return len(json.dumps(text)) - 2


def _within_budget(found: dict[str, Any]) -> dict[str, Any]:
    """MLflow's spellings of scalar fields first, then lists, then other spellings, while they fit."""
    order = sorted(
        found, key=lambda name: (name not in _PRIORITY, isinstance(found[name], list), _PRIORITY.get(name, 0))
    )
    kept: dict[str, Any] = {}
    size, truncated = 2, False
    for name in order:
        value, cut = _cut(found[name])
        entry = len(json.dumps({name: value})) + 1
        if size + entry > MAX_RESOURCE_BYTES:
            truncated = True
            break  # what follows matters less; and a padded request costs no more work
        kept[name], size, truncated = value, size + entry, truncated or cut
    if truncated:
        kept["resource_truncated"] = True
    return kept


def is_change(method: str, path: str, body: bytes) -> bool:
    if method not in CHANGING_METHODS:
        return False
    route = _route(path)
    if _GRAPHQL.fullmatch(route):
        return bool(_MUTATION.search(body))
    return not (method == "POST" and _READ_ONLY_POST.fullmatch(route.rsplit("/", 1)[-1]))


def caller(mode: str, headers: dict[bytes, bytes], signed_in: str | None = None) -> str | None:
    """Who the request is from, in the way this mode's authentication knows it.

    `signed_in` is the user the sso plugin authenticated, when it did.
    """
    if signed_in:
        return signed_in
    if needs_of(mode).nginx_basic_auth:
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


def with_user_header(message: Message, user: str | None) -> Message:
    """The response start with USER_RESPONSE_HEADER naming `user` (percent-encoded: no header injection).

    nginx writes it to its access log and removes it from the response; the app cannot set it.
    """
    headers = [(name, value) for name, value in message.get("headers", []) if name.lower() != USER_RESPONSE_HEADER]
    if user:
        headers.append((USER_RESPONSE_HEADER, quote(user, safe="@.+-_~!$'()*,;=:").encode()))
    return {**message, "headers": headers}


def sso_context_key() -> str | None:
    """Where mlflow-oidc-auth leaves the authenticated user in the scope; None if not the reviewed plugin."""
    if not reviewed_source.is_reviewed(
        _logger, "audit_log.py: sso user", REVIEWED_FOR_SSO_USER,
        "bearer-token and session users are not named in the audit lines",
    ):  # fmt: skip
        return None
    from mlflow_oidc_auth.entities.auth_context import AUTH_CONTEXT_KEY

    return str(AUTH_CONTEXT_KEY)


def signed_in_user(scope: Scope, key: str | None) -> str | None:
    username = getattr(scope.get(key), "username", None) if key else None
    return username if isinstance(username, str) and username else None


def stderr_sink(line: str) -> None:
    # One write(2) per line: the workers share stderr, and print() writes the newline
    # separately, so another worker's output could land inside a line.
    os.write(sys.stderr.fileno(), (line + "\n").encode())


def file_sink(path: str) -> Sink:
    def write(line: str) -> None:
        # One write to a file opened for appending: lines of several workers never interleave.
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, (line + "\n").encode())
        finally:
            os.close(descriptor)

    return write


def default_sink() -> Sink:
    """The task's audit log group (MLFLOW_AUDIT_LOG_GROUP), a file (local runs), else standard error."""
    group = os.environ.get("MLFLOW_AUDIT_LOG_GROUP")
    if group:
        from audit_cloudwatch import CloudWatchSink

        return CloudWatchSink(group, stderr_sink)
    path = os.environ.get("MLFLOW_AUDIT_LOG_FILE")
    return file_sink(path) if path else stderr_sink


class AuditLog:
    """ASGI middleware writing one audit line per changing request to `sink`, and naming the
    user of every response to nginx (USER_RESPONSE_HEADER)."""

    def __init__(self, app: ASGIApp, mode: str, sink: Sink | None = None, iam_user: IamUser | None = None) -> None:
        self.app = app
        self.mode = mode
        self.sink = sink or default_sink()
        self.iam_user = iam_user
        self.context_key = sso_context_key() if needs_of(mode).server_app == "oidc" else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        if scope["method"] in CHANGING_METHODS:
            body, messages = await _read_body(receive)
            receive = _replay(messages, receive)
        change = is_change(scope["method"], scope["path"], body)
        started = time.time()
        written = False

        def answered(status: int) -> str | None:
            nonlocal written
            user = self.user(scope)
            if change and not written:
                written = True
                self.sink(self.line(scope, body, status, started, user))
            return user

        async def send_logged(message: Message) -> None:
            # Written before the status leaves, so a caller who got an answer finds the line.
            if message["type"] == "http.response.start":
                message = with_user_header(message, answered(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            if change:
                answered(500)  # the app failed before answering

    def user(self, scope: Scope) -> str | None:
        headers = {name.lower(): value for name, value in scope.get("headers", [])}
        return caller(self.mode, headers, signed_in_user(scope, self.context_key) or self.iam_caller_user(scope))

    def iam_caller(self, scope: Scope) -> str | None:
        """The verified IAM caller's ARN, with IAM sign-in on (nginx's other server removes the header).

        Repeated copies (refused by iam_sign_in.OneCaller) are joined: no ARN, nobody's user.
        """
        if not self.iam_user:
            return None
        return ", ".join(callers_in(scope.get("headers", []))) or None

    def iam_caller_user(self, scope: Scope) -> str | None:
        arn = self.iam_caller(scope)
        return self.iam_user(arn) if arn and self.iam_user else None

    def line(self, scope: Scope, body: bytes, status: int, started: float, user: str | None) -> str:
        headers = {name.lower(): value for name, value in scope.get("headers", [])}
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "event": "mlflow-change",
            "user": user[:MAX_USER_CHARS] if user else user,
            "mode": self.mode,
            "method": scope["method"],
            "route": _route(scope["path"])[:MAX_ROUTE_CHARS],
            "resource": audited_fields(scope.get("query_string", b""), body),
            "status": status,
            "request_id": headers.get(REQUEST_ID_HEADER, b"").decode("latin-1") or None,
            "api_request_id": headers.get(API_REQUEST_ID_HEADER, b"").decode("latin-1")[:128] or None,
        }
        if arn := self.iam_caller(scope):
            record["iam_caller"] = arn[:512]
        return json.dumps(record, sort_keys=True)
