"""docker/mlflow/request_guard.py and deployment_app.py without a server: what is refused, what passes intact."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, get_args

import pytest

from tests.docker.image_modules import image_module
from tests.mlflow_databases import tracking_database


@pytest.fixture(scope="module")
def guard() -> Iterator[ModuleType]:
    with image_module("request_guard") as module:
        yield module


ODD = ["01", "+1", " 1", "1 ", "\t1", "1\n", "\uff11", "0_1", "1.0", "0x1", "", "-1", "٣", True, 1.0, -1, {"a": 1}]


@pytest.mark.parametrize("value", ["0", "1", "12", "907199254740993", 0, 7])
def test_canonical_ids_pass(guard: ModuleType, value: object) -> None:
    assert guard.is_canonical_id(value)
    guard.check_id(value, "x")
    guard.check_id([value, value], "x")


@pytest.mark.parametrize("value", ODD)
def test_other_spellings_are_refused(guard: ModuleType, value: object) -> None:
    assert not guard.is_canonical_id(value)
    with pytest.raises(guard.Refused) as refused:
        guard.check_id(["1", value], "field 'experiment_ids'")
    assert refused.value.status == 400 and "field 'experiment_ids'" in refused.value.message


@pytest.mark.parametrize(
    "key",
    [
        "experiment_id",
        "experiment_ids",
        "experimentId",
        "experimentIds",
        "EXPERIMENT_ID",
        "experiment_ids[]",
        "experiment-id",
    ],
)
def test_every_spelling_of_the_parameter_name_is_checked(guard: ModuleType, key: str) -> None:
    from urllib.parse import urlencode

    assert guard.check_query(urlencode({key: "1"}).encode()) == [(key, "1")]
    with pytest.raises(guard.Refused):
        guard.check_query(urlencode([("other", "x"), (key, "1"), (key, "01")]).encode())
    with pytest.raises(guard.Refused):
        guard.parse_json(json.dumps({"outer": [{"deeper": {key: ["2", "02"]}}]}).encode())


def test_json_duplicates_and_other_encodings_are_checked(guard: ModuleType) -> None:
    with pytest.raises(guard.Refused):  # the first of two keys (json keeps the last)
        guard.parse_json(b'{"experiment_id": "01", "experiment_id": "1"}')
    with pytest.raises(guard.Refused):
        guard.parse_json(json.dumps({"experiment_ids": ["01"]}).encode("utf-16"))
    assert guard.parse_json(b"\x89PNG not json") is None
    assert guard.parse_json(b'{"experiment_id": "3", "name": "01"}') == {"experiment_id": "3", "name": "01"}


@pytest.mark.parametrize(
    "document, variables",
    [
        ('{ mlflowGetExperiment(input: {experimentId: "01"}) { experiment { name } } }', None),
        ("mutation { mlflowSearchRuns(input: {experimentIds: [1.0]}) { runs { info { runId } } } }", None),
        ('mutation { mlflowSearchRuns(input: {experimentIds: ["1", "+1"]}) { runs { info { runId } } } }', None),
        (
            "mutation m($ids: [String]) { mlflowSearchRuns(input: {experimentIds: $ids}) { runs { info { runId } } } }",
            {"ids": ["01"]},
        ),
        ('query q($e: String = "01") { mlflowGetExperiment(input: {experimentId: $e}) { experiment { name } } }', {}),
        (
            "query q($i: MlflowGetExperimentInput) { mlflowGetExperiment(input: $i) { experiment { name } } }",
            {"i": {"experimentId": "01"}},
        ),
    ],
)
def test_graphql_literals_and_bound_variables_are_checked(guard: ModuleType, document: str, variables: Any) -> None:
    with pytest.raises(guard.Refused):
        guard.check_graphql(document, variables)
        guard.parse_json(json.dumps({"query": document, "variables": variables}).encode())


def test_graphql_with_canonical_ids_passes(guard: ModuleType) -> None:
    guard.check_graphql(
        "mutation m($ids: [String]) { mlflowSearchRuns(input: {experimentIds: $ids}) { runs { info { runId } } } }",
        {"ids": ["1", "0"]},
    )
    guard.check_graphql('{ mlflowGetExperiment(input: {experimentId: "12"}) { experiment { name } } }')
    guard.check_graphql("not { graphql", None)  # the app answers a syntax error itself


RUN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    "source, reads",
    [
        (f"runs:/{RUN}/model", [("/api/2.0/mlflow/runs/get", {"run_id": RUN})]),
        (f"runs:/{RUN}", [("/api/2.0/mlflow/runs/get", {"run_id": RUN})]),
        (f"mlflow-artifacts:/3/{RUN}/artifacts/model", [("/api/2.0/mlflow/experiments/get", {"experiment_id": "3"})]),
        ("models:/m-0123", [("/api/2.0/mlflow/logged-models/m-0123", {})]),
        ("models:/churn/3", [("/api/2.0/mlflow/registered-models/get", {"name": "churn"})]),
        ("models:/churn@champion", [("/api/2.0/mlflow/registered-models/get", {"name": "churn"})]),
    ],
)
def test_sources_of_this_server_are_read_as_the_caller(guard: ModuleType, source: str, reads: list) -> None:
    assert guard.source_reads(source) == reads


@pytest.mark.parametrize(
    "source",
    [
        "s3://bucket/mlflow-artifacts/1/run/artifacts",
        "S3://bucket/x",
        "file:///etc",
        "/etc/passwd",
        "relative/path",
        "mlflow-artifacts://host/1/x",
        "mlflow-artifacts:/01/x",
        "mlflow-artifacts:/1",
        "mlflow-artifacts:/1/../2/x",
        "mlflow-artifacts:/1/%2e%2e/2/x",
        "mlflow-artifacts:/1/a\\..\\b",
        f"runs:/{RUN}/../x",
        f"runs://{RUN}/x",
        "runs:/../x",
        "models://profile/m/1",
        "models:/a/b/c",
        "models:/@alias",
        "http://169.254.169.254/latest",
        "hdfs://x/y",
        "",
        None,
        7,
        f"runs:/{RUN}/x?y=1",
        f"runs:/{RUN}/x#frag",
    ],
)
def test_other_sources_are_refused(guard: ModuleType, source: object) -> None:
    with pytest.raises(guard.Refused) as refused:
        guard.source_reads(source)
    assert refused.value.status == 400


class Recorder:
    """An ASGI app that records what reached it and answers 200 (or the given status for GETs)."""

    def __init__(self, statuses: dict[str, int] | None = None) -> None:
        self.calls: list[tuple[dict, bytes]] = []
        self.statuses = statuses or {}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls.append((scope, body))
        status = self.statuses.get(scope["path"], 200)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def call(
    app: Any,
    method: str,
    path: str,
    body: bytes = b"",
    query: bytes = b"",
    headers: list | None = None,
    declare_json: bool = True,
) -> tuple[int, bytes]:
    """The guard's answer; a body without a Content-Type is declared JSON, as clients send it, unless told not to."""
    headers = list(headers or [])
    if declare_json and body and not any(name == b"content-type" for name, _ in headers):
        headers.append((b"content-type", b"application/json"))
    chunks = [body[i : i + 7] for i in range(0, len(body), 7)] or [b""]
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": query, "headers": headers}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_a_passing_request_reaches_the_app_with_its_body_intact(guard: ModuleType) -> None:
    inner = Recorder()
    body = json.dumps({"run_id": "r", "metrics": [{"key": "k", "value": 1.5}] * 50}).encode()
    assert call(guard.RequestGuard(inner), "POST", "/api/2.0/mlflow/runs/log-batch", body) == (200, b"ok")
    assert inner.calls[0][1] == body
    upload = os.urandom(1000)  # artifact bodies are not parsed
    assert (
        call(guard.RequestGuard(inner), "PUT", "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/f", upload)[0] == 200
    )
    assert inner.calls[1][1] == upload


@pytest.mark.parametrize(
    "method, path, body, query, headers",
    [
        ("POST", "/api/2.0/mlflow/runs/search", b'{"experiment_ids": ["01"]}', b"", []),
        ("GET", "/ajax-api/2.0/mlflow/experiments/get", b"", b"experiment_id=%2B1", []),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts/01/r/artifacts/f", b"", b"", []),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts", b"", b"path=%201/r/artifacts", []),
        ("POST", "/api/2.0/mlflow-artifacts/mpu/create/1%0A/r/artifacts/f", b"", b"", []),
        ("POST", "/v1/traces", b"\x0a\x00", b"", [(b"x-mlflow-experiment-id", b"01")]),
        (
            "GET",
            "/graphql",
            b"",
            b"query=%7BmlflowGetExperiment(input%3A%7BexperimentId%3A%2201%22%7D)%7Bexperiment%7Bname%7D%7D%7D",
            [],
        ),
        ("POST", "/api/2.0/mlflow/experiments/create", b'{"name": "x", "artifactLocation": "s3://b/1"}', b"", []),
        (
            "POST",
            "/ajax-api/2.0/mlflow/model-versions/create",
            b'{"name": "m", "source": "s3://b/1/r/artifacts"}',
            b"",
            [],
        ),
        ("POST", "/api/2.0/mlflow/artifacts/presigned-upload-url", b'{"run_id": "r", "path": "x"}', b"", []),
        ("PUT", "/ajax-api/3.0/mlflow/assistant/config", b'{"providers": {}}', b"", []),
        ("POST", "/ajax-api/3.0/mlflow/assistant//message", b"{}", b"", [(b"x-forwarded-for", b"127.0.0.1")]),
        ("POST", "//ajax-api/2.0/mlflow/artifacts/presigned-download-url/", b'{"run_id": "r", "path": "x"}', b"", []),
        # The app reads the first of a header given twice; a check could read another.
        ("POST", "/v1/traces", b"", b"", [(b"x-mlflow-experiment-id", b"2"), (b"x-mlflow-experiment-id", b"1")]),
        ("POST", "/v1/traces", b"", b"", [(b"content-encoding", b"gzip"), (b"content-encoding", b"identity")]),
        ("POST", "/api/2.0/mlflow/runs/search", b"{}", b"", [(b"content-type", b"a/b"), (b"content-type", b"c/d")]),
        ("GET", "/api/2.0/mlflow/experiments/search", b"", b"", [(b"authorization", b"Basic YTpi")] * 2),
        # upload-artifact: MLflow's check reads run_id first, its handler only run_uuid.
        ("POST", "/ajax-api/2.0/mlflow/upload-artifact", b"bytes", b"run_id=mine&run_uuid=theirs&path=f", []),
        ("POST", "/api/2.0/mlflow/runs/log-metric", b'{"run_id": "mine", "run_uuid": "theirs", "key": "k"}', b"", []),
        ("POST", "/api/2.0/mlflow/runs/set-tag", b'{"runId": "mine", "runUuid": "theirs", "key": "k"}', b"", []),
        # MLflow's checks read a path parameter; the finalize handler reads the body's model_id.
        ("PATCH", "/api/2.0/mlflow/logged-models/m-mine", b'{"model_id": "m-theirs", "status": 2}', b"", []),
        ("PATCH", "/ajax-api/2.0/mlflow/logged-models/m-mine", b'{"modelId": "m-theirs", "status": 2}', b"", []),
        ("GET", "/api/2.0/mlflow/logged-models/m-mine", b"", b"model_id=m-theirs", []),
        (
            "PATCH",
            "/api/3.0/mlflow/traces/tr-mine/tags",
            b'{"trace_id": "tr-theirs", "key": "k", "value": "v"}',
            b"",
            [],
        ),
    ],
)
def test_refused_requests_never_reach_the_app(
    guard: ModuleType, method: str, path: str, body: bytes, query: bytes, headers: list
) -> None:
    from urllib.parse import unquote

    inner = Recorder()
    status, answer = call(guard.RequestGuard(inner), method, unquote(path), body, query, headers)
    assert status in (400, 404) and json.loads(answer)["message"]
    assert inner.calls == []


@pytest.mark.parametrize(
    "path",
    [
        "/ajax-api/3.0/mlflow/demo/generate",
        "/ajax-api/3.0/mlflow/demo/delete",
        "//ajax-api/3.0/mlflow//demo/generate/",
        "/api/3.0/mlflow/demo/generate",
    ],
)
def test_demo_data_is_refused_unless_the_mode_offers_it(guard: ModuleType, path: str) -> None:
    inner = Recorder()
    status, answer = call(guard.RequestGuard(inner), "POST", path, b"{}")
    assert status == 403 and "demo data is off" in json.loads(answer)["message"]
    assert inner.calls == []
    assert call(guard.RequestGuard(inner, demo_data=True), "POST", path, b"{}") == (200, b"ok")


def test_model_version_source_is_asked_of_the_app_as_the_caller(guard: ModuleType) -> None:
    inner = Recorder({"/api/2.0/mlflow/runs/get": 403})
    identity = [
        (b"authorization", b"Basic Yjpi"),
        (b"cookie", b"session=s"),
        (b"host", b"mlflow.example.com"),
        (b"x-other", b"no"),
    ]
    body = json.dumps({"name": "m", "source": f"runs:/{RUN}/model", "run_id": RUN}).encode()
    status, answer = call(
        guard.RequestGuard(inner), "POST", "/api/2.0/mlflow/model-versions/create", body, headers=identity
    )
    assert status == 403 and b"you may not read it" in answer
    ((asked, _),) = inner.calls  # only the check reached the app
    assert (asked["method"], asked["path"], asked["query_string"]) == (
        "GET",
        "/api/2.0/mlflow/runs/get",
        f"run_id={RUN}".encode(),
    )
    assert set(asked["headers"]) == {*identity[:3], (b"accept", b"application/json")}

    allowed = Recorder()
    assert (
        call(guard.RequestGuard(allowed), "POST", "/api/2.0/mlflow/model-versions/create", body, headers=identity)[0]
        == 200
    )
    assert [scope["path"] for scope, _ in allowed.calls] == [
        "/api/2.0/mlflow/runs/get",
        "/api/2.0/mlflow/model-versions/create",
    ]
    assert allowed.calls[1][1] == body


def test_deployment_app_wraps_the_app_each_mode_would_serve() -> None:
    """The wrapper serves exactly MLflow's own entry points (and the plain app in shared mode)."""
    with image_module("deployment_app") as deployment_app, image_module("auth_modes") as modes:
        stock = {entry.name: entry.value for entry in entry_points(group="mlflow.app")}
        apps = {mode: deployment_app.INNER_APPS[needs.server_app][:2] for mode, needs in modes.MODES.items()}
        assert ":".join(apps["accounts"]) == stock["basic-auth"]
        assert ":".join(apps["sso"]) == stock["oidc-auth"]
        assert apps["shared"] == ("mlflow.server.fastapi_app", "app")
        assert set(deployment_app.INNER_APPS) == set(get_args(modes.ServerApp))


def test_mlflow_finds_the_deployment_app_next_to_the_entrypoint() -> None:
    """`mlflow server --app-name deployment` resolves through the dist-info folder, as a factory.

    With the entrypoint's folder on sys.path, as its PYTHONPATH puts it for the server
    (in this process: MLflow is imported here anyway, a new Python would import it again).
    """
    from mlflow.server import _find_app, _is_factory

    with image_module("deployment_app"):
        app = _find_app("deployment")
        assert (app, _is_factory(app)) == ("deployment_app:create_app", True)


def _otlp(trace_ids: list[bytes]) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for trace_id in trace_ids:
        spans.add(trace_id=trace_id, span_id=os.urandom(8), name="s")
    return request.SerializeToString()


def test_otlp_trace_ids_are_mlflows_trace_ids(guard: ModuleType) -> None:
    import base64
    import gzip
    import zlib

    from mlflow.tracing.utils import generate_mlflow_trace_id_from_otel_trace_id

    ids = [os.urandom(16) for _ in range(3)] + [bytes(15) + b"\x01"]
    expected = {generate_mlflow_trace_id_from_otel_trace_id(int.from_bytes(i, "big")) for i in ids}
    protobuf = {b"content-type": b"application/x-protobuf"}
    assert guard.otlp_trace_ids(_otlp(ids), protobuf) == expected
    assert guard.otlp_trace_ids(gzip.compress(_otlp(ids)), {**protobuf, b"content-encoding": b"gzip"}) == expected
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    deflated = raw_deflate.compress(_otlp(ids)) + raw_deflate.flush()
    assert guard.otlp_trace_ids(deflated, {**protobuf, b"content-encoding": b"deflate"}) == expected
    as_json = {
        "resourceSpans": [
            {"scopeSpans": [{"spans": [{"traceId": ids[0].hex()}, {"trace_id": base64.b64encode(ids[1]).decode()}]}]}
        ]
    }
    json_headers = {b"content-type": b"application/json; charset=utf-8"}
    assert guard.otlp_trace_ids(json.dumps(as_json).encode(), json_headers) == {
        generate_mlflow_trace_id_from_otel_trace_id(int.from_bytes(i, "big")) for i in ids[:2]
    }


@pytest.mark.parametrize(
    "body, headers",
    [
        (b"\xff\xff not protobuf", {b"content-type": b"application/x-protobuf"}),
        (b"not gzip", {b"content-type": b"application/x-protobuf", b"content-encoding": b"gzip"}),
        (b"x", {b"content-type": b"application/x-protobuf", b"content-encoding": b"br"}),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "not-an-id"}]}]}]}',
            {b"content-type": b"application/json"},
        ),
        (b"{", {b"content-type": b"application/json"}),
    ],
)
def test_otlp_bodies_the_guard_cannot_read_are_refused(guard: ModuleType, body: bytes, headers: dict) -> None:
    with pytest.raises(guard.Refused) as refused:
        guard.otlp_trace_ids(body, headers)
    assert refused.value.status == 400


def test_start_trace_v3_bodies_in_either_spelling(guard: ModuleType) -> None:
    snake = {
        "trace": {"trace_info": {"trace_id": "tr-1", "trace_location": {"mlflow_experiment": {"experiment_id": "4"}}}}
    }
    camel = {"trace": {"traceInfo": {"traceId": "tr-1", "traceLocation": {"mlflowExperiment": {"experimentId": "4"}}}}}
    assert guard.started_trace(snake) == guard.started_trace(camel) == ("tr-1", "4")
    assert guard.started_trace({"trace": {"trace_info": {}}}) == (None, None)


class Homes:
    """A TraceHomes stand-in: trace id -> experiment id."""

    def __init__(self, homes: dict[str, str]) -> None:
        self.homes = homes

    def experiment_of(self, trace_id: str) -> str | None:
        return self.homes.get(trace_id)


@pytest.mark.parametrize("path", ["/api/3.0/mlflow/traces", "/ajax-api/3.0/mlflow/traces"])
def test_a_trace_that_exists_is_written_only_into_its_own_experiment(guard: ModuleType, path: str) -> None:
    homes = Homes({"tr-" + "a" * 32: "1"})
    start = {
        "trace": {
            "trace_info": {
                "trace_id": "tr-" + "a" * 32,
                "trace_location": {"mlflow_experiment": {"experiment_id": "2"}},
            }
        }
    }
    inner = Recorder()
    assert call(guard.RequestGuard(inner, homes), "POST", path, json.dumps(start).encode())[0] == 403
    start["trace"]["trace_info"]["trace_location"]["mlflow_experiment"]["experiment_id"] = "1"
    assert call(guard.RequestGuard(inner, homes), "POST", path, json.dumps(start).encode())[0] == 200
    start["trace"]["trace_info"]["trace_id"] = "tr-" + "b" * 32  # a new trace, anywhere the app allows
    start["trace"]["trace_info"]["trace_location"]["mlflow_experiment"]["experiment_id"] = "2"
    assert call(guard.RequestGuard(inner, homes), "POST", path, json.dumps(start).encode())[0] == 200
    assert len(inner.calls) == 2

    otlp = _otlp([b"\xaa" * 16, os.urandom(16)])
    headers = [(b"content-type", b"application/x-protobuf"), (b"x-mlflow-experiment-id", b"2")]
    assert call(guard.RequestGuard(inner, homes), "POST", "/v1/traces", otlp, headers=headers)[0] == 403
    headers[1] = (b"x-mlflow-experiment-id", b"1")
    assert call(guard.RequestGuard(inner, homes), "POST", "/v1/traces", otlp, headers=headers)[0] == 200


def test_trace_homes_reads_mlflows_own_table(guard: ModuleType, tmp_path) -> None:
    """Against a store MLflow made: a logged trace's experiment, None for an unknown id."""
    from mlflow.entities import TraceInfo, TraceLocation, TraceState
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    uri = tracking_database(tmp_path / "mlflow.db")
    store = SqlAlchemyStore(uri, str(tmp_path / "artifacts"))
    experiment_id = store.create_experiment("traced")
    trace_id = "tr-" + os.urandom(16).hex()
    store.start_trace(
        TraceInfo(
            trace_id=trace_id,
            trace_location=TraceLocation.from_experiment_id(experiment_id),
            request_time=0,
            state=TraceState.OK,
        )  # fmt: skip
    )
    homes = guard.TraceHomes(uri)
    assert homes.experiment_of(trace_id) == experiment_id
    assert homes.experiment_of("tr-" + "0" * 32) is None


def test_trace_homes_fails_closed_without_a_database(guard: ModuleType) -> None:
    with pytest.raises(guard.Refused) as refused:
        guard.TraceHomes("").experiment_of("tr-1")
    assert refused.value.status == 503


@pytest.mark.parametrize(
    "body, may",
    [
        (json.dumps({"run_id": "r", "metrics": [{"key": "loss", "value": 1.0}]}).encode(), False),
        (b'  {"EXPERIMENT_IDS": ["01"]}', True),
        (b'{"\\u0065xperiment_ids": ["01"]}', True),  # an escape spells the key
        (json.dumps({"experiment_ids": ["01"]}).encode("utf-16"), True),
        (json.dumps({"experiment_ids": ["01"]}).encode("utf-16-le"), True),
        (json.dumps(json.dumps({"experiment_ids": ["01"]})).encode(), True),  # encoded twice
        (b"[1, 2]", True),
    ],
)
def test_bodies_that_cannot_name_an_id_skip_the_parse(guard: ModuleType, body: bytes, may: bool) -> None:
    assert guard.may_name_ids(body) is may
    if may and b"01" in body.replace(b"\x00", b""):
        status, _ = call(guard.RequestGuard(Recorder()), "POST", "/api/2.0/mlflow/runs/search", body)
        assert status == 400


def test_trace_writes_fail_closed_with_a_clear_answer_without_the_database(guard: ModuleType) -> None:
    start = {"trace": {"trace_info": {"trace_id": "tr-" + "c" * 32, "trace_location": {}}}}
    inner = Recorder()
    status, answer = call(
        guard.RequestGuard(inner, guard.TraceHomes("")), "POST", "/api/3.0/mlflow/traces", json.dumps(start).encode()
    )
    assert status == 503 and json.loads(answer)["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert inner.calls == []


def test_location_tags_are_mlflows_own_names(guard: ModuleType) -> None:
    """The tags get-trace-artifact reads a trace's data from, and how OTLP spans carry trace tags."""
    from mlflow.tracing.constant import SpanAttributeKey, TraceTagKey
    from mlflow.utils.mlflow_tags import MLFLOW_ARTIFACT_LOCATION

    assert guard.LOCATION_TAGS == {MLFLOW_ARTIFACT_LOCATION, TraceTagKey.SPANS_LOCATION, TraceTagKey.ARCHIVE_LOCATION}
    assert guard.TRACE_TAG_ATTRIBUTE == SpanAttributeKey.TRACE_TAG_PREFIX


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("PATCH", "/api/3.0/mlflow/traces/tr-1/tags", {"key": "mlflow.artifactLocation", "value": "s3://b/1"}),
        ("PATCH", "/ajax-api/2.0/mlflow/traces/tr-1/tags/", {"key": "mlflow.trace.archiveLocation", "value": "x"}),
        ("PATCH", "/api/2.0/mlflow/traces/tr-1", {"tags": [{"key": "mlflow.trace.spansLocation", "value": "A"}]}),
        ("POST", "/api/3.0/mlflow/traces", {"trace": {"trace_info": {"tags": {"mlflow.artifactLocation": "x"}}}}),
        ("POST", "/api/2.0/mlflow/traces", {"tags": [{"key": "mlflow.artifactLocation", "value": "x"}]}),
        # Encoded twice, as old clients send JSON; and deeper than Python's recursion limit.
        ("PATCH", "/api/3.0/mlflow/traces/tr-1/tags", json.dumps({"key": "mlflow.artifactLocation", "value": "x"})),
        ("PATCH", "/api/3.0/mlflow/traces/tr-1/tags", [[{"k": "mlflow.artifactLocation"}]]),
    ],
)
def test_trace_location_tags_are_the_servers(guard: ModuleType, method: str, path: str, body: Any) -> None:
    inner = Recorder()
    status, answer = call(guard.RequestGuard(inner, Homes({})), method, path, json.dumps(body).encode())
    assert (status, json.loads(answer)["message"]) == (
        400,
        f"trace tag {_location_in(body)!r} is set by the server only",
    )
    assert inner.calls == []


def _location_in(body: Any) -> str:
    return next(tag for tag in ("mlflow.artifactLocation", "mlflow.trace.archiveLocation", "mlflow.trace.spansLocation")
                if tag in json.dumps(body))  # fmt: skip


def test_a_deeply_nested_trace_body_is_walked_without_recursion(guard: ModuleType) -> None:
    body = "[" * 100_000 + '"mlflow.artifactLocation"' + "]" * 100_000
    document: Any = "mlflow.artifactLocation"
    for _ in range(5_000):
        document = [document]
    with pytest.raises(guard.Refused):
        guard.check_trace_tags(document)
    inner = Recorder()  # too deep for json itself: MLflow cannot read it either, and refuses it
    assert call(guard.RequestGuard(inner, Homes({})), "PATCH", "/api/3.0/mlflow/traces/t/tags", body.encode())[0] == 200


def test_ordinary_trace_tags_pass(guard: ModuleType) -> None:
    inner = Recorder()
    body = json.dumps({"key": "mlflow.traceName", "value": "mlflow.artifactLocations"}).encode()
    assert call(guard.RequestGuard(inner), "PATCH", "/api/3.0/mlflow/traces/tr-1/tags", body)[0] == 200
    assert inner.calls[0][1] == body


def test_otlp_spans_cannot_set_location_tags(guard: ModuleType) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(trace_id=os.urandom(16), span_id=os.urandom(8))
    span.attributes.add(key="mlflow.traceTag.team").value.string_value = "b"
    protobuf = {b"content-type": b"application/x-protobuf"}
    assert len(guard.otlp_trace_ids(request.SerializeToString(), protobuf)) == 1
    span.attributes.add(key="mlflow.traceTag.mlflow.trace.archiveLocation").value.string_value = "s3://b/1"
    with pytest.raises(guard.Refused, match="set by the server only"):
        guard.otlp_trace_ids(request.SerializeToString(), protobuf)
    as_json = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "ab" * 16, "attributes": [{"key": "mlflow.traceTag.mlflow.artifactLocation", "value": {}}],
    }]}]}]}  # fmt: skip
    with pytest.raises(guard.Refused, match="set by the server only"):
        guard.otlp_trace_ids(json.dumps(as_json).encode(), {b"content-type": b"application/json"})


@pytest.mark.parametrize("content_type", [None, b"text/plain", b"application/x-www-form-urlencoded", b"text/json"])
@pytest.mark.parametrize("method", ["DELETE", "PATCH"])
def test_a_delete_or_patch_body_is_declared_json(guard: ModuleType, method: str, content_type: bytes | None) -> None:
    """MLflow's basic-auth app reads a DELETE's target from the query unless the body is declared JSON;
    the handler reads the body whatever it is declared as."""
    inner = Recorder()
    headers = [(b"content-type", content_type)] if content_type else []
    path, body = "/api/2.0/mlflow/registered-models/delete", b'{"name": "theirs"}'
    status, answer = call(guard.RequestGuard(inner), method, path, body, b"name=mine", headers, declare_json=False)
    assert status == 415 and "Content-Type: application/json" in json.loads(answer)["message"]
    assert inner.calls == []


@pytest.mark.parametrize(
    "method, body, content_type",
    [
        ("DELETE", b'{"name": "m"}', b"application/json"),
        ("DELETE", b'{"name": "m"}', b"Application/JSON; charset=utf-8"),
        ("PATCH", b'{"name": "m"}', b"application/merge-patch+json"),
        ("DELETE", b"", None),  # the target in the query, as for GET
        ("GET", b"{}", None),
    ],
)
def test_declared_json_and_bodiless_requests_pass(
    guard: ModuleType, method: str, body: bytes, content_type: bytes | None
) -> None:
    inner = Recorder()
    headers = [(b"content-type", content_type)] if content_type else []
    path = "/api/2.0/mlflow/registered-models/delete"
    assert call(guard.RequestGuard(inner), method, path, body, b"", headers, declare_json=False) == (200, b"ok")
    assert inner.calls[0][1] == body


def test_run_id_and_run_uuid_naming_one_run_pass(guard: ModuleType) -> None:
    """Older clients send both names with the same run."""
    inner = Recorder()
    body = b'{"run_id": "r1", "run_uuid": "r1", "key": "k", "value": 1.0, "timestamp": 1}'
    assert call(guard.RequestGuard(inner), "POST", "/api/2.0/mlflow/runs/log-metric", body)[0] == 200
    query = b"run_id=r1&run_uuid=r1&path=f"
    assert call(guard.RequestGuard(inner), "POST", "/ajax-api/2.0/mlflow/upload-artifact", b"x", query)[0] == 200
    # The bulk metric routes take one name repeated, one run each.
    bulk = b"run_id=r1&run_id=r2&metric_key=loss"
    assert call(guard.RequestGuard(inner), "GET", "/ajax-api/2.0/mlflow/metrics/get-history-bulk", b"", bulk)[0] == 200
    assert len(inner.calls) == 3


def test_a_path_parameter_repeated_alike_passes(guard: ModuleType) -> None:
    """MLflow's client sends a logged model's id in the path and, alike, in the body."""
    inner = Recorder()
    body = b'{"model_id": "m-1", "status": 2}'
    assert call(guard.RequestGuard(inner), "PATCH", "/api/2.0/mlflow/logged-models/m-1", body)[0] == 200
    assert guard.path_parameters("/api/2.0/mlflow/logged-models/m-1", "PATCH") == {"model_id": "m-1"}
    assert guard.path_parameters("/api/2.0/mlflow/runs/search", "POST") == {}
