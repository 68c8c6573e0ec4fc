"""Refuse requests whose identifiers or locations the permission checks could read otherwise.

MLflow's permission checks (the basic-auth app, the OIDC plugin) look a grant up by the
experiment id *as sent*, while the tracking store parses it as a number: `01`, `+1`, ` 1`
or full-width digits reach experiment 1 past a DENY on "1". And a few fields let a user
point the server's own S3 credentials at data of someone else: a model version's
`source`, an experiment's `artifact_location`. This ASGI middleware sits in front of
whichever app the auth mode runs (deployment_app.py) and refuses, before any of them
sees the request:

* an experiment id in any spelling but its canonical one (`0` or digits without a
  leading zero), wherever the request carries one: query string, JSON body (snake or
  camel case, nested, in lists), GraphQL arguments and variables, the OTLP experiment
  header, the first segment of an artifact path;
* an `artifact_location` on experiment creation: the server assigns locations;
* a model version whose `source` is not a `runs:/`, `models:/` or `mlflow-artifacts:/`
  URI the caller may read; readability is asked of the app itself, with the caller's own
  credentials, so every mode's real permission check decides;
* the single-URL presigned routes, which serve only runs whose artifacts live outside
  the server-assigned `mlflow-artifacts:/` locations: nothing this deployment creates;
* a trace id that exists already, written into another experiment than its own (OTLP
  spans, StartTraceV3);
* a trace tag that says where a trace's data lives (LOCATION_TAGS), on every route that
  writes trace tags: the server reads a trace's data from there with its own credentials;
* the assistant's routes (MLflow's UI assistant, which trusts callers on loopback);
* MLflow's demo data routes where users have permissions (accounts, sso): the generator runs
  with the server's own rights on whatever is named like the demo (the experiment
  `MLflow Demo`, prompts `mlflow-demo.*`), whoever owns it, deleting runs, traces and prompts;
* a header of SINGLE_HEADERS sent more than once;
* a DELETE or PATCH with a body that is not declared JSON: MLflow's basic-auth app then reads
  the target from the query string while the handler reads the body;
* `run_id` and `run_uuid` naming different runs in one query string or JSON object;
* a path parameter (a logged model's `model_id`, ...) that the query string or the body names
  differently: MLflow's checks read the path, some handlers the body;
* a tag value or a model version's `run_link` that a browser would run as script, in any JSON
  body and in OTLP span attributes that become trace tags (script_links.py): MLflow's UI makes
  some of them links, which would run in the session of whoever clicks them.

It reads only public request data and calls only the wrapped app, no MLflow internals; the
path parameters come from the routes of MLflow's Flask app (its public `app.url_map`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import script_links
from iam_callers import CALLER_HEADER

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Digits as the store prints them; `[0-9]` (not `\d`) keeps other scripts' digits out.
_CANONICAL_ID = re.compile(r"(?:0|[1-9][0-9]{0,18})")
# Names that carry experiment ids, compared with case, `_`, `-` and `[]` removed.
_ID_NAMES = frozenset({"experimentid", "experimentids"})
_LOCATION_NAMES = frozenset({"artifactlocation"})
# A run is `run_id` or its old name `run_uuid`; MLflow's checks and handlers do not always read them
# in the same order (upload-artifact: the check `run_id` first, the handler only `run_uuid`).
_RUN_NAMES = frozenset({"runid", "runuuid"})
# The OTLP endpoint names the experiment in this header.
_ID_HEADERS = frozenset({b"x-mlflow-experiment-id"})
# Headers that say who is calling, about what, or how to read the body. MLflow, its auth apps and
# this module could each read a different copy of one sent twice (Starlette's `get` takes the first),
# so a request carrying one of them twice is refused.
SINGLE_HEADERS = frozenset({*_ID_HEADERS, b"authorization", b"content-type", b"content-encoding"})
# Routes under /api/2.0 and /ajax-api/2.0 (MLflow serves every one under both).
_API = r"/(?:api|ajax-api)/[0-9.]+"
_ARTIFACT_PATH = re.compile(
    r"(?s)" + _API + r"/mlflow-artifacts/(?:artifacts|presigned|mpu/(?:create|complete|abort))(?:/(.*))?"
)
_ARTIFACT_LIST = re.compile(_API + r"/mlflow-artifacts/artifacts")
_CREATE_EXPERIMENT = re.compile(_API + r"(?:/preview)?/mlflow/experiments/create")
_CREATE_MODEL_VERSION = re.compile(_API + r"(?:/preview)?/mlflow/model-versions/create")
_SINGLE_URL_PRESIGNED = re.compile(_API + r"(?:/preview)?/mlflow/artifacts/presigned-(?:upload|download)-url")
# MLflow 3's assistant runs a coding agent on the server for "local" callers, and every caller
# of this server arrives from nginx on loopback: not offered here.
_ASSISTANT = re.compile(r"(?s)" + _API + r"/mlflow/assistant(?:/.*)?")
# MLflow 3's demo data (generate, delete): the generator writes into the experiment named
# `MLflow Demo` and replaces prompts named `mlflow-demo.*` with the server's rights, whoever owns
# them, and MLflow's basic-auth app lets every signed-in user start it.
_DEMO = re.compile(r"(?s)" + _API + r"/mlflow/demo(?:/.*)?")
_OTLP_TRACES = "/v1/traces"
_START_TRACE = re.compile(_API + r"/mlflow/traces")
# Start (v2, v3), end (v2) and tag (v2, v3) a trace: every JSON route that writes trace tags.
_TRACE_WRITES = re.compile(_API + r"/mlflow/traces(?:/[^/]+(?:/tags)?)?")
# Trace tags naming where a trace's data lives (MLflow's mlflow_tags.MLFLOW_ARTIFACT_LOCATION,
# TraceTagKey.SPANS_LOCATION and ARCHIVE_LOCATION): get-trace-artifact reads from there with the
# server's S3 credentials, so a caller who set them on a trace of their own would read files of
# any experiment. Only the server writes them.
LOCATION_TAGS = frozenset({"mlflow.artifactLocation", "mlflow.trace.spansLocation", "mlflow.trace.archiveLocation"})
# OTLP spans carry trace tags as attributes with this prefix (SpanAttributeKey.TRACE_TAG_PREFIX).
TRACE_TAG_ATTRIBUTE = "mlflow.traceTag."
_GRAPHQL = re.compile(r"(?:" + _API + r")?(?:/mlflow)?/graphql")
# Request headers a readability check passes on: whatever signs the caller in (IAM sign-in's
# verified caller too), and what the apps need to accept the request as this deployment's
# (host, forwarded origin).
_IDENTITY_HEADERS = frozenset({b"authorization", b"cookie", CALLER_HEADER.lower().encode(), b"host",
                               b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-for",
                               b"x-real-ip"})  # fmt: skip
_logger = logging.getLogger(__name__)
_RUN_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
# The sources MLflow's prompt registry writes for prompt versions (mlflow/prompt/constants.py); the
# server refuses them for model versions itself, and anything else for prompts.
PROMPT_SOURCES = frozenset({"dummy-source", "prompt-template"})
# The same rule as a pattern, for MLflow's own MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX
# (entrypoint.py sets it: a second line behind this module).
SOURCE_PATTERN = r"^(runs:/|models:/|mlflow-artifacts:/|(dummy-source|prompt-template)$)"


class Refused(Exception):
    """A request this deployment refuses: the status and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _name(key: str) -> str:
    return re.sub(r"[^a-z]", "", key.lower())


def is_canonical_id(value: object) -> bool:
    """Whether `value` is an experiment id exactly as the store spells it (or a JSON integer)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 <= value < 10**19
    return isinstance(value, str) and _CANONICAL_ID.fullmatch(value) is not None


def check_id(value: object, where: str) -> None:
    values = value if isinstance(value, list) else [value]
    for item in values:
        if item is not None and not is_canonical_id(item):
            raise Refused(
                400, f"{where}: experiment ids are written as the server returns them (digits, no sign, "
                f"spaces or leading zeros), got {item!r}",
            )  # fmt: skip


def check_single_headers(headers: list[tuple[bytes, bytes]]) -> None:
    names = [name for name, _ in headers if name in SINGLE_HEADERS]
    for name in sorted(set(names)):
        if names.count(name) > 1:
            raise Refused(400, f"header {name.decode()!r} is sent {names.count(name)} times; send it once")


def is_json_media(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the Content-Type is one Flask's `is_json` accepts (so its auth app reads the body)."""
    value = next((v for name, v in headers if name == b"content-type"), b"")
    media = value.decode("latin-1").split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def check_body_media(method: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """A DELETE or PATCH body is read by the handler whatever its type, by the auth app only as JSON."""
    if method in ("DELETE", "PATCH") and body and not is_json_media(headers):
        raise Refused(
            415, f"a {method} request with a body must declare it: Content-Type: application/json"
        )  # fmt: skip


def check_one_run(pairs: list[tuple[str, Any]], where: str) -> None:
    """Refuse `run_id` and `run_uuid` (any spelling) naming different runs in one place.

    One name given more than once is left alone: the bulk metric routes take `run_id` repeated.
    """
    runs: dict[str, set[str]] = {}
    for key, value in pairs:
        if _name(key) in _RUN_NAMES:
            runs.setdefault(_name(key), set()).add(repr(value))
    if len(runs) > 1 and len({frozenset(values) for values in runs.values()}) > 1:
        raise Refused(400, f"{where}: run_id and run_uuid name different runs; send one of them")


@functools.cache
def _flask_routes() -> Any:
    from mlflow.server import app

    return app.url_map.bind("localhost")


def path_parameters(route: str, method: str) -> dict[str, str]:
    """What MLflow's Flask app reads from the path of `route` (nothing for a route it does not serve)."""
    from werkzeug.exceptions import HTTPException

    try:
        _, arguments = _flask_routes().match(route, method=method)
    except HTTPException:
        return {}
    return {name: str(value) for name, value in arguments.items()}


def check_path_parameters(arguments: dict[str, str], pairs: list[tuple[str, Any]], where: str) -> None:
    """Refuse a query or body field that names a path parameter's resource otherwise.

    MLflow's checks take the path (`view_args` win); the logged-model finalize handler, for one,
    acts on the body's `model_id`.
    """
    in_path = {_name(name): value for name, value in arguments.items()}
    for key, value in pairs:
        expected = in_path.get(_name(key))
        if expected is not None and str(value) != expected:
            raise Refused(400, f"{where} field {key!r} is {value!r} but the path says {expected!r}; send one")


def check_query(query_string: bytes) -> list[tuple[str, str]]:
    """The query's pairs (as Flask and Starlette decode them), after checking their ids."""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    for key, value in pairs:
        if _name(key) in _ID_NAMES:
            check_id(value, f"query parameter {key!r}")
    check_one_run(pairs, "query string")
    return pairs


def may_name_ids(body: bytes) -> bool:
    """False only when no JSON reading of `body` can hold an experiment-id or `run_uuid` key, so it needs no parse.

    That is a UTF-8 object (JSON parsers read a body as UTF-16 or -32 when its first bytes hold
    NULs) without "experiment" or "uuid" in any case and without `\\u` escapes, which could spell them.
    """
    head = body.lstrip()[:4]
    if not head.startswith(b"{") or b"\x00" in head:
        return True
    lowered = body.lower()
    return b"experiment" in lowered or b"uuid" in lowered or b"\\u" in body


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Check every key of every JSON object, duplicates included, as it is parsed."""
    for key, value in pairs:
        if _name(key) in _ID_NAMES:
            check_id(value, f"field {key!r}")
    check_one_run(pairs, "request body")
    try:
        script_links.check_object(pairs)
    except script_links.ScriptLink as refused:
        raise Refused(400, str(refused)) from None
    return dict(pairs)


def parse_json(body: bytes) -> Any:
    """The body as JSON with its ids checked; None when it is not JSON (the app refuses it then)."""
    try:
        return json.loads(body, object_pairs_hook=_pairs_hook)
    except (ValueError, RecursionError):
        return None


def check_graphql(document: object, variables: object = None) -> None:
    """Experiment ids in a GraphQL document: literals, and the variables bound to them.

    Variables are bound by the operation, not by name, so `$ids` standing where
    `experimentIds` is expected is checked in `variables` (and in its default value).
    """
    if not isinstance(document, str):
        return
    from graphql import parse
    from graphql.error import GraphQLError
    from graphql.language import ListValueNode, VariableDefinitionNode, VariableNode, Visitor, visit

    bound: set[str] = set()
    defaults: dict[str, Any] = {}

    def literal(node: Any) -> object:
        if isinstance(node, ListValueNode):
            return [literal(item) for item in node.values]
        if isinstance(node, VariableNode):
            bound.add(node.name.value)
            return None
        return getattr(node, "value", None)  # strings and ints: their text

    def check(name: str, node: Any) -> None:
        if _name(name) in _ID_NAMES:
            # A GraphQL int literal is text too; the canonical check applies to both.
            check_id(literal(node), f"GraphQL argument {name!r}")

    class Collect(Visitor):
        def enter_argument(self, node: Any, *_: Any) -> None:
            check(node.name.value, node.value)

        def enter_object_field(self, node: Any, *_: Any) -> None:
            check(node.name.value, node.value)

        def enter_variable_definition(self, node: VariableDefinitionNode, *_: Any) -> None:
            if node.default_value is not None:
                defaults[node.variable.name.value] = node.default_value

    try:
        visit(parse(document), Collect())
    except GraphQLError:
        return  # not GraphQL: the app refuses it
    values = variables if isinstance(variables, dict) else {}
    for name in sorted(bound):
        check_id(values.get(name), f"GraphQL variable ${name}")
        if name in defaults:
            check_id(literal(defaults[name]), f"GraphQL variable ${name}")


def check_trace_tags(document: object) -> None:
    """Refuse a trace write that names a location tag anywhere: a tag's key, a map's key."""
    pending = [document]
    while pending:  # not recursive: a deeply nested body must not exhaust the stack
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and value in LOCATION_TAGS:
            raise Refused(400, f"trace tag {value!r} is set by the server only")


def check_span_attribute(key: object, value: object) -> None:
    """An attribute that sets a trace tag: neither a location tag nor a script URL (script_links.py)."""
    if isinstance(key, str) and key.startswith(TRACE_TAG_ATTRIBUTE):
        tag = key[len(TRACE_TAG_ATTRIBUTE) :]
        check_trace_tags(tag)
        try:
            script_links.check_tag(tag, value, f"trace tag {tag!r}")
        except script_links.ScriptLink as refused:
            raise Refused(400, str(refused)) from None


def check_artifact_path(path: str, where: str) -> None:
    """An artifact path under mlflow-artifacts:/ starts with its experiment's id."""
    first = path.lstrip("/").split("/", 1)[0]
    if first:
        check_id(first, where)


def _safe_relative(path: str) -> bool:
    """No `.`/`..` segment (also percent-encoded), backslash or empty segment."""
    for candidate in (path, unquote(path)):
        segments = candidate.split("/")
        if "\\" in candidate or any(s in ("", ".", "..") for s in segments[:-1]) or segments[-1] in (".", ".."):
            return False
    return True


def source_reads(source: object) -> list[tuple[str, dict[str, str]]]:
    """The GET requests that must succeed, as the caller, for a model version `source`.

    Raises Refused for any source that is not one of this server's own URIs.
    """
    if not isinstance(source, str) or not source:
        raise Refused(400, "model version source is required")
    if source in PROMPT_SOURCES:
        return []
    parts = urlsplit(source)
    refuse = Refused(
        400, "model version source must be a runs:/<run id>/<path>, models:/<name>/<version>, "
        f"models:/<model id> or mlflow-artifacts:/<experiment id>/<path> URI of this server, got {source!r}",
    )  # fmt: skip
    if parts.netloc or parts.query or parts.fragment or not parts.path.startswith("/"):
        raise refuse
    rest = parts.path[1:]
    if not rest or not _safe_relative(rest):
        raise refuse
    scheme = parts.scheme  # lower case: urlsplit folds it, as MLflow's own parsing does
    if scheme == "runs":
        run_id = rest.split("/", 1)[0]
        if not _RUN_ID.fullmatch(run_id):
            raise refuse
        return [("/api/2.0/mlflow/runs/get", {"run_id": run_id})]
    if scheme == "mlflow-artifacts":
        experiment_id = rest.split("/", 1)[0]
        if not is_canonical_id(experiment_id) or "/" not in rest:
            raise refuse
        return [("/api/2.0/mlflow/experiments/get", {"experiment_id": experiment_id})]
    if scheme == "models":
        segments = rest.split("/")
        if len(segments) == 1 and "@" not in segments[0]:
            return [(f"/api/2.0/mlflow/logged-models/{segments[0]}", {})]
        if len(segments) in (1, 2):
            name = segments[0].rsplit("@", 1)[0] if len(segments) == 1 else segments[0]
            if name:
                return [("/api/2.0/mlflow/registered-models/get", {"name": name})]
    raise refuse


# OTLP caps: a batch naming more traces than this is refused (each costs a lookup).
MAX_TRACES_PER_EXPORT = 1000


def mlflow_trace_id(otel_trace_id: bytes) -> str:
    """The id MLflow gives the trace of an OTLP trace id (`tr-` and 32 hex digits)."""
    return "tr-" + format(int.from_bytes(otel_trace_id, "big"), "032x")


def _json_trace_id(value: object) -> bytes:
    """OTLP/JSON writes trace ids as hex; protobuf's JSON mapping as base64: either one, or refused."""
    import base64
    import binascii

    if isinstance(value, str):
        if re.fullmatch(r"[0-9A-Fa-f]{32}", value):
            return bytes.fromhex(value)
        try:
            decoded = base64.b64decode(value, validate=True)
        except binascii.Error:
            decoded = b""
        if len(decoded) == 16:
            return decoded
    raise Refused(400, f"OTLP trace id {value!r} is neither 32 hex digits nor 16 bytes in base64")


def otlp_trace_ids(body: bytes, headers: dict[bytes, bytes]) -> set[str]:
    """MLflow trace ids of the spans in an OTLP/HTTP export (protobuf or JSON, gzip or deflate).

    Refuses spans whose attributes set a location tag, or a tag to a script URL (check_span_attribute).
    """
    import gzip
    import zlib

    encoding = headers.get(b"content-encoding", b"").decode("latin-1").strip().lower()
    try:
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            try:
                body = zlib.decompress(body)
            except zlib.error:
                body = zlib.decompress(body, -zlib.MAX_WBITS)
        elif encoding not in ("", "identity"):
            raise Refused(400, f"OTLP Content-Encoding {encoding!r} is not supported (gzip or deflate)")
    except (OSError, EOFError, zlib.error) as error:
        raise Refused(400, "OTLP body does not decompress") from error
    media = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
    ids: set[str] = set()
    if media == "application/json":
        try:
            document = json.loads(body)
        except ValueError as error:
            raise Refused(400, "OTLP body is not JSON") from error
        for resource in _items(document, "resourceSpans", "resource_spans"):
            for scope_spans in _items(resource, "scopeSpans", "scope_spans"):
                for span in _items(scope_spans, "spans"):
                    value = span.get("traceId", span.get("trace_id")) if isinstance(span, dict) else None
                    ids.add(mlflow_trace_id(_json_trace_id(value)))
                    for attribute in _items(span, "attributes"):
                        if isinstance(attribute, dict):
                            value = attribute.get("value")
                            text = (
                                value.get("stringValue", value.get("string_value")) if isinstance(value, dict) else None
                            )
                            check_span_attribute(attribute.get("key"), text)
    else:  # the app refuses other media types itself; protobuf is what clients send
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except DecodeError as error:
            raise Refused(400, "OTLP body is not an ExportTraceServiceRequest") from error
        spans = [span for resource in request.resource_spans for group in resource.scope_spans for span in group.spans]
        for span in spans:
            for attribute in span.attributes:
                check_span_attribute(attribute.key, attribute.value.string_value)
        ids = {mlflow_trace_id(span.trace_id) for span in spans}
    if len(ids) > MAX_TRACES_PER_EXPORT:
        raise Refused(400, f"an OTLP export may carry spans of at most {MAX_TRACES_PER_EXPORT} traces")
    return ids


def _items(parent: object, *names: str) -> list[Any]:
    if not isinstance(parent, dict):
        return []
    for name in names:
        if isinstance(parent.get(name), list):
            return parent[name]
    return []


def started_trace(document: dict[str, Any]) -> tuple[str | None, object]:
    """(trace id, experiment id) of a StartTraceV3 body, in either field spelling."""

    def field(parent: object, *names: str) -> Any:
        if isinstance(parent, dict):
            for name in names:
                if name in parent:
                    return parent[name]
        return None

    info = field(field(document, "trace"), "trace_info", "traceInfo")
    trace_id = field(info, "trace_id", "traceId")
    location = field(info, "trace_location", "traceLocation")
    experiment = field(field(location, "mlflow_experiment", "mlflowExperiment"), "experiment_id", "experimentId")
    return (trace_id if isinstance(trace_id, str) and trace_id else None), experiment


def _route(path: str) -> str:
    """The path as the routers match it: repeated and trailing slashes do not count."""
    return re.sub(r"/{2,}", "/", path).rstrip("/") or "/"


async def _read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    chunks: list[bytes] = []
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks), messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def _json_error(status: int, message: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    code = {
        400: "INVALID_PARAMETER_VALUE", 403: "PERMISSION_DENIED", 404: "ENDPOINT_NOT_FOUND",
        415: "INVALID_PARAMETER_VALUE", 503: "TEMPORARILY_UNAVAILABLE",
    }[status]  # fmt: skip
    body = json.dumps({"error_code": code, "message": message}).encode()
    return body, [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]


class TraceHomes:
    """The experiment each trace id lives in, read from MLflow's tracking database.

    One indexed SELECT on MLflow's `trace_info` table (its ORM model names the
    table and columns; a release without them fails every lookup, closed, with a
    503). A small pool of its own, pinged before use like MLflow's.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._query: Any = None
        self._engine: Any = None
        self._lock = threading.Lock()

    def _prepare(self) -> None:
        import sqlalchemy

        try:
            from mlflow.store.tracking.dbmodels.models import SqlTraceInfo

            columns = SqlTraceInfo.__table__.c
            query = sqlalchemy.select(columns.experiment_id).where(
                columns.request_id == sqlalchemy.bindparam("trace_id")
            )
        except (ImportError, AttributeError) as error:
            _logger.warning("request guard: MLflow's trace_info model moved (%s); trace writes are refused", error)
            raise Refused(
                503, "this server cannot tell which experiment a trace belongs to; trace writes are off"
            ) from error
        if not self.uri:
            raise Refused(503, "MLFLOW_BACKEND_STORE_URI is not set; trace writes are off")
        self._engine = sqlalchemy.create_engine(self.uri, pool_pre_ping=True, pool_size=2, max_overflow=2)
        self._query = query

    def experiment_of(self, trace_id: str) -> str | None:
        """The id of the experiment holding `trace_id`, None when no trace has it."""
        with self._lock:
            if self._engine is None:
                self._prepare()
        with self._engine.connect() as connection:
            row = connection.execute(self._query, {"trace_id": trace_id}).first()
        return None if row is None else str(row[0])


class RequestGuard:
    """ASGI middleware applying the checks above in front of `app`."""

    def __init__(self, app: ASGIApp, trace_homes: TraceHomes | None = None, *, demo_data: bool = False) -> None:
        """`demo_data`: offer MLflow's demo routes (only where one login owns everything)."""
        self.app = app
        self.demo_data = demo_data
        self.trace_homes = trace_homes or TraceHomes(os.environ.get("MLFLOW_BACKEND_STORE_URI", ""))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            receive = await self.check(scope, receive)
        except Refused as refused:
            body, headers = _json_error(refused.status, refused.message)
            await send({"type": "http.response.start", "status": refused.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    async def check(self, scope: Scope, receive: Receive) -> Receive:
        """Raise Refused, or return the receive callable the app reads the body from."""
        route = _route(scope["path"])
        if _SINGLE_URL_PRESIGNED.fullmatch(route):
            raise Refused(
                404, "presigned single-URL routes are off here: this deployment serves artifacts through "
                "/mlflow-artifacts (large ones through the multipart presigned routes)",
            )  # fmt: skip
        if _ASSISTANT.fullmatch(route):
            raise Refused(404, "the MLflow assistant is not offered by this deployment")
        if _DEMO.fullmatch(route) and not self.demo_data:
            raise Refused(
                403, "MLflow's demo data is off where users have permissions: its generator writes into the "
                "experiment 'MLflow Demo' and replaces prompts named 'mlflow-demo.*', whoever owns them",
            )  # fmt: skip
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", ()))
        check_single_headers(headers)
        query = check_query(scope.get("query_string", b""))
        for header, content in headers:
            if header in _ID_HEADERS:
                check_id(content.decode("latin-1"), f"header {header.decode()!r}")
        artifact = _ARTIFACT_PATH.fullmatch(route)
        if artifact:
            check_artifact_path(artifact.group(1) or "", "artifact path")
        if artifact or _ARTIFACT_LIST.fullmatch(route):
            for key, value in query:
                if key == "path":
                    check_artifact_path(value, "artifact path")
            return receive  # artifact bodies are files, not JSON
        graphql = _GRAPHQL.fullmatch(route) is not None
        if graphql:
            variables = [parse_json(value.encode()) for key, value in query if key == "variables"] or [None]
            for key, value in query:
                if key == "query":
                    for bound in variables:
                        check_graphql(value, bound)
        body, messages = await _read_body(receive)
        check_body_media(scope["method"], body, headers)
        arguments = path_parameters(route, scope["method"])
        check_path_parameters(arguments, query, "query")
        trace_write = scope["method"] in ("POST", "PUT", "PATCH") and _TRACE_WRITES.fullmatch(route) is not None
        reads_document = (
            trace_write
            or graphql
            or any(pattern.fullmatch(route) for pattern in (_CREATE_EXPERIMENT, _CREATE_MODEL_VERSION))
        )
        parse = reads_document or arguments or may_name_ids(body) or script_links.may_hold_script_url(body)
        document = parse_json(body) if body and parse else None
        if isinstance(document, str):
            # Old clients post their JSON encoded twice, and MLflow decodes it again.
            document = parse_json(document.encode())
        if trace_write:
            check_trace_tags(document)
        if isinstance(document, dict):
            check_path_parameters(arguments, list(document.items()), "body")
            if graphql:
                check_graphql(document.get("query"), document.get("variables"))
            if _CREATE_EXPERIMENT.fullmatch(route):
                if any(_name(key) in _LOCATION_NAMES and value for key, value in document.items()):
                    raise Refused(400, "artifact_location is assigned by the server; create the experiment without it")
            if _CREATE_MODEL_VERSION.fullmatch(route):
                await self.check_source(scope, document)
            if _START_TRACE.fullmatch(route) and scope["method"] == "POST":
                trace_id, experiment_id = started_trace(document)
                if trace_id is not None:
                    await self.check_trace_home(trace_id, experiment_id)
        if route == _OTLP_TRACES and scope["method"] == "POST":
            single = dict(headers)  # each of SINGLE_HEADERS appears once at most (checked above)
            experiment_id = single.get(b"x-mlflow-experiment-id", b"").decode("latin-1")
            for trace_id in sorted(otlp_trace_ids(body, single)):
                await self.check_trace_home(trace_id, experiment_id)
        return _replay(messages, receive)

    async def check_source(self, scope: Scope, document: dict[str, Any]) -> None:
        for path, params in source_reads(document.get("source")):
            status, _ = await self.ask(scope, path, params)
            if status != 200:
                raise Refused(
                    403, f"model version source {document.get('source')!r}: you may not read it, or it does not exist",
                )  # fmt: skip

    async def ask(self, scope: Scope, path: str, params: dict[str, str]) -> tuple[int, bytes]:
        """The app's answer (status, body) to a GET of `path`, asked with the caller's credentials."""
        headers = [(name, value) for name, value in scope.get("headers", ()) if name in _IDENTITY_HEADERS]
        sub: Scope = {
            **scope, "method": "GET", "path": path, "raw_path": path.encode(),
            "query_string": urlencode(params).encode(), "headers": [*headers, (b"accept", b"application/json")],
        }  # fmt: skip
        done = asyncio.Event()
        status = 500
        chunks: list[bytes] = []
        sent_request = False

        async def sub_receive() -> Message:
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def sub_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    done.set()

        await self.app(sub, sub_receive, sub_send)
        done.set()
        return status, b"".join(chunks)

    async def check_trace_home(self, trace_id: str, experiment_id: object) -> None:
        """A trace id that exists already must be in the experiment the request writes to.

        MLflow's checks look only at the experiment the request names; its store then
        writes spans into (or moves) the trace wherever it lives. Asking the app is no
        use here: it answers 403 for a trace that does not exist (so that ids cannot be
        probed), so the trace's experiment is read from the tracking database itself.
        """
        home = await asyncio.to_thread(self.trace_homes.experiment_of, trace_id)
        if home is not None and home != str(experiment_id):
            raise Refused(403, f"trace {trace_id} exists in another experiment; its spans and info stay there")
