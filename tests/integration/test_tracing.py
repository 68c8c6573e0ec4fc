"""Tracing through the proxy in every auth mode: the real client, autologging, OTLP, permissions.

In each mode (`shared`, `accounts`, `sso`; the session's stacks from conftest.py)
an owner logs traces with MLflow's own client through nginx: a function under
`@mlflow.trace` with a `mlflow.start_span` inside, and an OpenAI chat call that
`mlflow.openai.autolog()` records (answered by a tiny OpenAI-compatible server on
loopback, so nothing leaves the machine). MLflow 3.17's client sends the spans
as OTLP to `/v1/traces` and the trace info to `/api/3.0/mlflow/traces`; both pass
the proxy. Raw OTLP/HTTP protobuf with MLflow's experiment header goes the same
way. In accounts and sso mode a reader (READ on the experiment) and a stranger
(nothing) must not write traces there by any route or spelling of the id, and
the stranger must not read them by any route.

Two holes of MLflow 3.17.2 (the OTLP one in the mlflow-oidc-auth plugin too) are
closed by the deployment's request guard and tested here: a trace id that exists
already may be written only into the experiment that holds it, by OTLP spans and
by StartTraceV3 (docs/security/upstream.md).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import mlflow
import openai
import pytest
import requests
from mlflow.entities import SpanType
from mlflow.entities.trace_location import MlflowExperimentLocation
from mlflow.tracing.utils.otlp import MLFLOW_EXPERIMENT_ID_HEADER, OTLP_TRACES_PATH
from mlflow.tracking import MlflowClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from localrun.process import LOOPBACK, environment
from localrun.stack import MlflowStack
from tests.integration.conftest import SSO_COLLEAGUE, SSO_GROUP, SSO_MACHINE, SSO_READER
from tests.integration.mlflow_users import ACCOUNTS_GROUP, Account, Accounts
from tests.integration.proxy_log import ProxyLog

pytestmark = [pytest.mark.integration]

MODES = [
    pytest.param("shared"),
    pytest.param("accounts", marks=ACCOUNTS_GROUP),
    pytest.param("sso", marks=SSO_GROUP),
]
GUARDED_MODES = MODES[1:]
CHAT_REPLY = "Paris is the capital of France."
PROTOBUF = "application/x-protobuf"


class ChatStub:
    """An OpenAI-compatible chat completions endpoint on loopback, for autologging a real call."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                answer = json.dumps({
                    "id": f"chatcmpl-{secrets.token_hex(4)}", "object": "chat.completion",
                    "created": int(time.time()), "model": body["model"],
                    "choices": [{
                        "index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": CHAT_REPLY},
                    }],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 8, "total_tokens": 15},
                }).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ChatStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def chat_stub() -> Iterator[ChatStub]:
    with ChatStub() as stub:
        yield stub


@dataclass(frozen=True)
class Caller:
    """Someone calling through the proxy; `login` gives a fresh Authorization value and client env."""

    name: str
    login: Callable[[], tuple[str, dict[str, str]]] = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": self.login()[0]}

    @property
    def env(self) -> dict[str, str]:
        return self.login()[1]


def basic_caller(stack: MlflowStack, name: str, username: str, password: str) -> Caller:
    value = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    return Caller(name, lambda: (value, stack.client_env(username, password)))


def account_caller(stack: MlflowStack, account: Account) -> Caller:
    return basic_caller(stack, account.username, account.username, account.password)


def sso_caller(stack: MlflowStack, client_id: str) -> Caller:
    """An app client of the stack's provider; each login is a new client-credentials token."""

    def login() -> tuple[str, dict[str, str]]:
        assert stack.oidc is not None
        token = stack.oidc.client_credentials_token(client_id)
        return f"Bearer {token}", {"MLFLOW_TRACKING_URI": stack.proxy_url, "MLFLOW_TRACKING_TOKEN": token}

    return Caller(client_id, login)


@contextmanager
def tracing_as(caller: Caller, experiment_id: str) -> Iterator[MlflowClient]:
    """The in-process client as `caller`, its traces going to `experiment_id`, exported synchronously.

    MLflow builds its span exporter (and that exporter's tracking client) once per tracer
    provider, so the provider is reset on the way in and out: otherwise traces would go to
    whichever server and user the first traced call of the process saw.
    """
    env = caller.env | {"MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false"}
    with environment(env):
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        mlflow.tracing.reset()
        mlflow.tracing.set_destination(MlflowExperimentLocation(experiment_id))
        try:
            yield MlflowClient()
        finally:
            mlflow.tracing.reset()
            mlflow.set_tracking_uri(None)


@dataclass(frozen=True)
class ClientTraces:
    decorated: str
    autologged: str


def log_with_client(caller: Caller, experiment_id: str, tag: str, chat: ChatStub) -> ClientTraces:
    """A traced function with a manual span inside, then an autologged OpenAI chat call."""

    @mlflow.trace(name=f"answer-{tag}", span_type=SpanType.CHAIN)
    def answer(question: str) -> str:
        with mlflow.start_span(name="retrieve", span_type=SpanType.RETRIEVER) as span:
            span.set_inputs({"query": question})
            span.set_attribute("tracing.tag", tag)
            span.set_outputs({"documents": [f"doc-{tag}"]})
        return f"answer to {question}"

    with tracing_as(caller, experiment_id):
        answer(f"where-{tag}")
        decorated = mlflow.get_last_active_trace_id()
        mlflow.openai.autolog()
        try:
            chat_client = openai.OpenAI(base_url=chat.url, api_key="stub-key", max_retries=0)
            chat_client.chat.completions.create(
                model="stub-model", messages=[{"role": "user", "content": f"Capital of France? {tag}"}]
            )
        finally:
            mlflow.openai.autolog(disable=True)
        autologged = mlflow.get_last_active_trace_id()
    assert decorated and autologged and decorated != autologged
    return ClientTraces(decorated, autologged)


def otlp_body(name: str, tag: str, trace_id: bytes | None = None, span_id: bytes | None = None) -> tuple[bytes, str]:
    """One finished root span as OTLP protobuf, and the MLflow trace id it becomes."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    service = resource_spans.resource.attributes.add()
    service.key, service.value.string_value = "service.name", "tracing-test"
    span = resource_spans.scope_spans.add().spans.add()
    span.trace_id = trace_id or os.urandom(16)
    span.span_id = span_id or os.urandom(8)
    span.name = name
    span.end_time_unix_nano = time.time_ns()
    span.start_time_unix_nano = span.end_time_unix_nano - 5_000_000
    attribute = span.attributes.add()
    attribute.key, attribute.value.string_value = "tracing.tag", tag
    return request.SerializeToString(), "tr-" + span.trace_id.hex()


def post_otlp(stack: MlflowStack, caller: Caller | None, experiment_header: str, body: bytes) -> requests.Response:
    headers = {"Content-Type": PROTOBUF, MLFLOW_EXPERIMENT_ID_HEADER: experiment_header}
    return requests.post(
        stack.proxy_url + OTLP_TRACES_PATH, data=body, timeout=30, headers=headers | (caller.headers if caller else {})
    )


def raw_post_status(stack: MlflowStack, path: str, headers: list[str], body: bytes) -> int:
    """POST with header lines written as given (requests refuses a value with leading whitespace)."""
    host = urlsplit(stack.proxy_url)
    lines = [f"POST {path} HTTP/1.1", f"Host: {host.netloc}", f"Content-Length: {len(body)}", "Connection: close"]
    with socket.create_connection((host.hostname, host.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines + headers) + "\r\n\r\n").encode("latin-1") + body)
        status_line = sock.makefile("rb").readline().decode("latin-1")
    return int(status_line.split()[1])


@dataclass
class Scene:
    """One mode's stack, its callers, and the owner's experiment with traces already in it."""

    mode: str
    stack: MlflowStack
    owner: Caller
    reader: Caller | None
    stranger: Caller | None
    experiment_id: str
    tag: str
    client_traces: ClientTraces
    otlp_trace: str
    proxy_requests: list[str]

    def search(self, caller: Caller | None = None) -> dict[str, object]:
        """Trace id -> Trace in the experiment, as `caller` (default: the owner) sees them."""
        with tracing_as(caller or self.owner, self.experiment_id) as client:
            return {t.info.trace_id: t for t in client.search_traces(locations=[self.experiment_id], max_results=500)}


def _callers(mode: str, request: pytest.FixtureRequest) -> tuple[MlflowStack, Caller, Caller | None, Caller | None]:
    if mode == "shared":
        stack = request.getfixturevalue("mlflow_stack")
        return stack, basic_caller(stack, "shared user", stack.username, stack.password), None, None
    if mode == "accounts":
        stack, accounts = request.getfixturevalue("accounts_stack"), request.getfixturevalue("accounts")
        assert isinstance(accounts, Accounts)
        owner, reader, stranger = (accounts.new_user(f"trace-{role}") for role in ("owner", "reader", "stranger"))
        return stack, *(account_caller(stack, a) for a in (owner, reader, stranger))  # type: ignore[return-value]
    stack = request.getfixturevalue("sso_stack")
    return stack, sso_caller(stack, SSO_MACHINE), sso_caller(stack, SSO_READER), sso_caller(stack, SSO_COLLEAGUE)


def grant_read(scene: Scene) -> None:
    """The owner (MANAGE on what it created) grants the reader READ, through each mode's own API."""
    assert scene.reader is not None
    if scene.mode == "accounts":
        from mlflow.server.auth.routes import GRANT_USER_PERMISSION

        path, body = GRANT_USER_PERMISSION, {
            "username": scene.reader.name, "resource_type": "experiment",
            "resource_id": scene.experiment_id, "permission": "READ",
        }  # fmt: skip
    else:
        path = f"/api/2.0/mlflow/permissions/users/{scene.reader.name}/experiments/{scene.experiment_id}"
        body = {"permission": "READ"}
    response = requests.post(scene.stack.proxy_url + path, json=body, headers=scene.owner.headers, timeout=30)
    assert response.status_code == 200, response.text


_SCENES: dict[str, Scene] = {}


@pytest.fixture(scope="module", params=MODES)
def scene(request: pytest.FixtureRequest, chat_stub: ChatStub) -> Scene:
    return _scene(request.param, request, chat_stub)


@pytest.fixture(scope="module", params=GUARDED_MODES)
def guarded(request: pytest.FixtureRequest, chat_stub: ChatStub) -> Scene:
    return _scene(request.param, request, chat_stub)


def _scene(mode: str, request: pytest.FixtureRequest, chat: ChatStub) -> Scene:
    """Built once per mode (both fixtures share it): an experiment, the owner's three traces."""
    if mode in _SCENES:
        return _SCENES[mode]
    stack, owner, reader, stranger = _callers(mode, request)
    tag = secrets.token_hex(4)
    response = requests.post(
        stack.proxy_url + "/api/2.0/mlflow/experiments/create", json={"name": f"traces-{mode}-{tag}"},
        headers=owner.headers, timeout=30,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    experiment_id = response.json()["experiment_id"]
    log = ProxyLog(stack.nginx_log)
    client_traces = log_with_client(owner, experiment_id, tag, chat)
    # nginx writes a line only after its response went out: wait for the second trace's info.
    deadline = time.monotonic() + 10
    while True:
        proxy_requests = log.since().requests
        started = sum(r.startswith("POST /api/3.0/mlflow/traces ") for r in proxy_requests)
        if started >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    body, otlp_trace = otlp_body(f"otlp-{tag}", tag)
    response = post_otlp(stack, owner, experiment_id, body)
    assert response.status_code == 200, response.text
    built = Scene(mode, stack, owner, reader, stranger, experiment_id, tag, client_traces, otlp_trace, proxy_requests)
    if reader is not None:
        grant_read(built)
    _SCENES[mode] = built
    return built


@pytest.fixture(scope="module", autouse=True)
def _forget_scenes() -> Iterator[None]:
    yield
    _SCENES.clear()


def test_client_traces_come_back_with_spans_and_attributes(scene: Scene, chat_stub: ChatStub) -> None:
    # The client went through nginx, spans by OTLP and the trace info by MLflow's REST API.
    posted = [r.split()[1] for r in scene.proxy_requests if r.startswith("POST ")]
    assert posted.count(OTLP_TRACES_PATH) >= 2, scene.proxy_requests
    assert posted.count("/api/3.0/mlflow/traces") == 2, scene.proxy_requests
    assert any(f"Capital of France? {scene.tag}" in str(r["messages"]) for r in chat_stub.requests)

    with tracing_as(scene.owner, scene.experiment_id):
        decorated = mlflow.get_trace(scene.client_traces.decorated)
        autologged = mlflow.get_trace(scene.client_traces.autologged)
    assert decorated.info.experiment_id == scene.experiment_id
    assert decorated.info.state.value == "OK"
    spans = {span.name: span for span in decorated.data.spans}
    assert set(spans) == {f"answer-{scene.tag}", "retrieve"}
    root, child = spans[f"answer-{scene.tag}"], spans["retrieve"]
    assert child.parent_id == root.span_id and child.span_type == SpanType.RETRIEVER
    assert child.attributes["tracing.tag"] == scene.tag
    assert child.inputs == {"query": f"where-{scene.tag}"}
    assert child.outputs == {"documents": [f"doc-{scene.tag}"]}
    assert root.outputs == f"answer to where-{scene.tag}"

    (chat_span,) = autologged.data.spans
    assert chat_span.span_type == SpanType.CHAT_MODEL
    assert chat_span.inputs["messages"] == [{"role": "user", "content": f"Capital of France? {scene.tag}"}]
    assert chat_span.outputs["choices"][0]["message"]["content"] == CHAT_REPLY
    assert chat_span.attributes["model"] == "stub-model"

    found = scene.search()
    assert {scene.client_traces.decorated, scene.client_traces.autologged} <= set(found)
    assert {span.name for span in found[scene.client_traces.decorated].data.spans} == set(spans)


def test_otlp_through_the_proxy_lands_in_the_experiment(scene: Scene) -> None:
    found = scene.search()
    assert scene.otlp_trace in found
    (span,) = found[scene.otlp_trace].data.spans
    assert span.name == f"otlp-{scene.tag}"
    assert span.attributes["tracing.tag"] == scene.tag
    # Without credentials the proxy (shared, accounts) or the plugin (sso) refuses.
    body, trace_id = otlp_body("anonymous", scene.tag)
    assert post_otlp(scene.stack, None, scene.experiment_id, body).status_code == 401
    assert trace_id not in scene.search()


def read_routes(trace_id: str, experiment_id: str) -> dict[str, tuple[str, str, dict]]:
    """Every route that hands out a trace, its info, or its spans."""
    location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}
    return {
        "get trace (spans)": ("GET", "/api/3.0/mlflow/traces/get", {"params": {"trace_id": trace_id}}),
        "trace info v3": ("GET", f"/api/3.0/mlflow/traces/{trace_id}", {}),
        "trace info v2": ("GET", f"/api/2.0/mlflow/traces/{trace_id}/info", {}),
        "batch get": ("GET", "/api/3.0/mlflow/traces/batchGet", {"params": {"trace_ids": trace_id}}),
        "batch get infos": ("POST", "/api/3.0/mlflow/traces/batchGetInfos", {"json": {"trace_ids": [trace_id]}}),
        "search v3": ("POST", "/api/3.0/mlflow/traces/search", {"json": {"locations": [location]}}),
        "search v2": ("GET", "/api/2.0/mlflow/traces", {"params": {"experiment_ids": experiment_id}}),
        "UI span data v2": ("GET", "/ajax-api/2.0/mlflow/get-trace-artifact", {"params": {"request_id": trace_id}}),
        "UI span data v3": ("GET", "/ajax-api/3.0/mlflow/get-trace-artifact", {"params": {"request_id": trace_id}}),
    }


def test_a_reader_reads_the_traces_and_a_stranger_reads_nothing(guarded: Scene) -> None:
    assert guarded.reader is not None and guarded.stranger is not None
    trace_id = guarded.client_traces.decorated
    for route, (method, path, kwargs) in read_routes(trace_id, guarded.experiment_id).items():
        for caller, allowed in ((guarded.reader, True), (guarded.stranger, False)):
            response = requests.request(
                method, guarded.stack.proxy_url + path, headers=caller.headers, timeout=30, **kwargs
            )  # fmt: skip
            if allowed:
                assert response.status_code == 200, (route, response.status_code, response.text[:200])
                assert trace_id in response.text, route
            else:
                assert response.status_code == 403, (route, response.status_code, response.text[:200])
                assert trace_id not in response.text and guarded.tag not in response.text, route
    # The reader's own client reads them too, spans and all.
    found = guarded.search(guarded.reader)
    assert {span.name for span in found[trace_id].data.spans} == {f"answer-{guarded.tag}", "retrieve"}
    # Other spellings of the experiment id do not open the search to the stranger.
    for spelling in (f"0{guarded.experiment_id}", f"+{guarded.experiment_id}", f"{guarded.experiment_id} "):
        method, path, kwargs = read_routes(trace_id, spelling)["search v3"]
        response = requests.request(
            method, guarded.stack.proxy_url + path, headers=guarded.stranger.headers, timeout=30, **kwargs
        )  # fmt: skip
        assert response.status_code in (400, 403), (spelling, response.status_code, response.text[:200])
        assert trace_id not in response.text


def spellings(experiment_id: str) -> list[str]:
    return [experiment_id, f"0{experiment_id}", f"00{experiment_id}", f"+{experiment_id}", f"{experiment_id} "]


def test_neither_reader_nor_stranger_writes_traces_into_the_experiment(guarded: Scene, chat_stub: ChatStub) -> None:
    stack, experiment_id = guarded.stack, guarded.experiment_id
    refused: list[str] = []
    for caller in (guarded.reader, guarded.stranger):
        assert caller is not None
        # The client drops what the server refuses (it only logs a warning).
        traces = log_with_client(caller, experiment_id, f"{guarded.tag}-{caller.name}", chat_stub)
        refused += [traces.decorated, traces.autologged]
        # StartTraceV3 for a new trace in the experiment.
        trace_id = "tr-" + secrets.token_hex(16)
        info = {
            "trace_id": trace_id, "request_time": "2026-01-01T00:00:00Z", "state": "OK",
            "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}},
        }  # fmt: skip
        response = requests.post(
            stack.proxy_url + "/api/3.0/mlflow/traces", json={"trace": {"trace_info": info}},
            headers=caller.headers, timeout=30,
        )  # fmt: skip
        assert response.status_code == 403, (caller.name, response.status_code, response.text[:200])
        refused.append(trace_id)
        # OTLP with the experiment's id in the header, however it is spelled.
        for spelling in spellings(experiment_id):
            body, trace_id = otlp_body(f"intruder-{caller.name}", guarded.tag)
            response = post_otlp(stack, caller, spelling, body)
            assert response.status_code in (400, 403), (caller.name, spelling, response.status_code, response.text)
            refused.append(trace_id)
        for whitespace in (" ", "\t"):  # leading whitespace, which requests will not send
            body, trace_id = otlp_body(f"intruder-{caller.name}", guarded.tag)
            headers = [
                f"Authorization: {caller.headers['Authorization']}", f"Content-Type: {PROTOBUF}",
                f"{MLFLOW_EXPERIMENT_ID_HEADER}:{whitespace}{experiment_id}",
            ]  # fmt: skip
            status = raw_post_status(stack, OTLP_TRACES_PATH, headers, body)
            assert status in (400, 403), (caller.name, repr(whitespace), status)
            refused.append(trace_id)
        # Nor tag or delete the owner's traces.
        trace_id = guarded.client_traces.decorated
        response = requests.patch(
            f"{stack.proxy_url}/api/3.0/mlflow/traces/{trace_id}/tags", json={"key": "k", "value": "v"},
            headers=caller.headers, timeout=30,
        )  # fmt: skip
        assert response.status_code == 403, (caller.name, response.text[:200])
        response = requests.post(
            stack.proxy_url + "/api/3.0/mlflow/traces/delete-traces",
            json={"experiment_id": experiment_id, "trace_ids": [trace_id]}, headers=caller.headers, timeout=30,
        )  # fmt: skip
        assert response.status_code == 403, (caller.name, response.text[:200])

    found = guarded.search()
    assert not set(refused) & set(found)
    assert guarded.client_traces.decorated in found and "k" not in found[guarded.client_traces.decorated].info.tags
    # The owner writes by the same routes (so the refusals above were about permission).
    body, trace_id = otlp_body("owner-again", guarded.tag)
    assert post_otlp(stack, guarded.owner, experiment_id, body).status_code == 200
    assert trace_id in guarded.search()


def own_experiment(scene: Scene, caller: Caller) -> str:
    """An experiment `caller` creates (and so manages)."""
    response = requests.post(
        scene.stack.proxy_url + "/api/2.0/mlflow/experiments/create",
        json={"name": f"own-{caller.name}-{secrets.token_hex(3)}"}, headers=caller.headers, timeout=30,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return str(response.json()["experiment_id"])


def owners_span(scene: Scene, trace_id: str) -> dict:
    """The trace's one span as the owner gets it over REST."""
    response = requests.get(
        scene.stack.proxy_url + "/api/3.0/mlflow/traces/get", params={"trace_id": trace_id},
        headers=scene.owner.headers, timeout=30,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    (span,) = response.json()["trace"]["spans"]
    return span


def attribute(span: dict, key: str) -> str:
    return next(a["value"]["string_value"] for a in span["attributes"] if a["key"] == key)


def test_otlp_cannot_rewrite_spans_of_a_trace_in_another_experiment(guarded: Scene) -> None:
    """The reader knows the trace's ids (READ shows them) and may write only into its own experiment.

    MLflow checks only the experiment in the header and upserts the spans wherever their trace lives.
    """
    assert guarded.reader is not None
    trace_id, span_id = os.urandom(16), os.urandom(8)
    body, mlflow_trace_id = otlp_body("owners-span", "genuine", trace_id, span_id)
    assert post_otlp(guarded.stack, guarded.owner, guarded.experiment_id, body).status_code == 200

    forged, _ = otlp_body("owners-span", "forged by the reader", trace_id, span_id)
    response = post_otlp(guarded.stack, guarded.reader, own_experiment(guarded, guarded.reader), forged)

    span = owners_span(guarded, mlflow_trace_id)
    assert attribute(span, "tracing.tag") == "genuine", f"rewritten; the OTLP post answered {response.status_code}"
    assert response.status_code in (400, 403), response.status_code


def test_a_second_experiment_header_does_not_lead_the_guard_elsewhere(guarded: Scene) -> None:
    """MLflow reads the first `x-mlflow-experiment-id` header; a check that reads another one checks
    something else. The reader sends its own experiment first and the owner's second, with spans of
    the owner's trace: a header given twice is refused, in either order, and the span stays the owner's.
    """
    assert guarded.reader is not None
    trace_id, span_id = os.urandom(16), os.urandom(8)
    body, mlflow_trace_id = otlp_body("owners-span", "genuine", trace_id, span_id)
    assert post_otlp(guarded.stack, guarded.owner, guarded.experiment_id, body).status_code == 200
    forged, _ = otlp_body("owners-span", "forged by the reader", trace_id, span_id)
    own = own_experiment(guarded, guarded.reader)
    for first, second in ((own, guarded.experiment_id), (guarded.experiment_id, own)):
        headers = [
            f"Authorization: {guarded.reader.headers['Authorization']}", f"Content-Type: {PROTOBUF}",
            f"{MLFLOW_EXPERIMENT_ID_HEADER}: {first}", f"{MLFLOW_EXPERIMENT_ID_HEADER}: {second}",
        ]  # fmt: skip
        status = raw_post_status(guarded.stack, OTLP_TRACES_PATH, headers, forged)
        assert attribute(owners_span(guarded, mlflow_trace_id), "tracing.tag") == "genuine", f"rewritten ({status})"
        assert status == 400, status


def start_trace_v3_elsewhere(scene: Scene, caller: Caller, trace_id: str) -> requests.Response:
    """StartTraceV3 naming an existing trace's id, located in `caller`'s own experiment."""
    info = {
        "trace_id": trace_id, "request_time": "2026-01-01T00:00:00Z", "state": "OK",
        "request_preview": "forged by the reader",
        "trace_location": {
            "type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": own_experiment(scene, caller)},
        },
    }  # fmt: skip
    return requests.post(
        scene.stack.proxy_url + "/api/3.0/mlflow/traces", json={"trace": {"trace_info": info}},
        headers=caller.headers, timeout=30,
    )  # fmt: skip


def check_start_trace_v3_cannot_move_the_trace(scene: Scene) -> None:
    assert scene.reader is not None
    body, trace_id = otlp_body("owners-span", "genuine")
    assert post_otlp(scene.stack, scene.owner, scene.experiment_id, body).status_code == 200

    response = start_trace_v3_elsewhere(scene, scene.reader, trace_id)

    owner_view = requests.get(
        f"{scene.stack.proxy_url}/api/3.0/mlflow/traces/{trace_id}", headers=scene.owner.headers, timeout=30
    )
    assert owner_view.status_code == 200, f"the owner lost the trace: {owner_view.status_code} {owner_view.text}"
    location = owner_view.json()["trace"]["trace_info"]["trace_location"]["mlflow_experiment"]["experiment_id"]
    assert location == scene.experiment_id
    assert response.status_code == 403, (response.status_code, response.text[:300])


def test_start_trace_v3_cannot_move_a_trace_out_of_its_experiment(guarded: Scene) -> None:
    """mlflow-oidc-auth requires UPDATE and DELETE on the experiment that holds an existing trace id;
    MLflow's auth app checks only the experiment in the body, and its store re-homes the trace."""
    check_start_trace_v3_cannot_move_the_trace(guarded)
