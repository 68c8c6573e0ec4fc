"""docker/mlflow/script_links.py: tag values and run links a browser would run as script are refused.

MLflow's UI makes a run's `mlflow.source.name` the href of a `target="_top"` link, so a
`javascript:` value there runs in the MLflow page as whoever clicks it (tried in Chromium:
tests/integration/test_request_guard_accounts.py keeps such values out end to end).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.docker.image_modules import image_module
from tests.docker.test_request_guard import Recorder, call

PAYLOAD = "javascript:void(document.title='x')//git/x"


@pytest.fixture(scope="module")
def links() -> Iterator[ModuleType]:
    with image_module("script_links") as module:
        yield module


@pytest.fixture(scope="module")
def guard() -> Iterator[ModuleType]:
    with image_module("request_guard") as module:
        yield module


@pytest.mark.parametrize(
    "value",
    [
        PAYLOAD, "JavaScript:alert(1)", "JAVASCRIPT:x", "vbscript:x", " javascript:x", "\x00\x1fjavascript:x",
        "\tjava\nscr\ripT:x", "java\tscript:x", "javascript\n:x",
    ],
)  # fmt: skip
def test_script_urls_in_every_spelling_a_browser_reads(links: ModuleType, value: str) -> None:
    assert links.is_script_url(value)


@pytest.mark.parametrize(
    "value",
    [
        "https://github.com/org/repo", "git@github.com:org/repo.git", "/home/sagemaker-user/train.py",
        "javascript", "my javascript: notes", "java script:x", "\u212aavascript:x", "javaſcript:x",
        "ｊavascript:x", "data:text/html,x", "", None, 7,
    ],
)  # fmt: skip
def test_other_values_pass(links: ModuleType, value: object) -> None:
    """Only ASCII letters fold (the URL parser's scheme is ASCII); other characters make no scheme."""
    assert not links.is_script_url(value)


def test_a_value_encoded_as_json_is_read_as_the_string_it_encodes(links: ModuleType) -> None:
    with pytest.raises(links.ScriptLink, match="script URL"):
        links.check_value(json.dumps(PAYLOAD), "span attribute")
    links.check_value(json.dumps("https://example.com"), "span attribute")
    links.check_value('"not json', "span attribute")


def test_free_text_tags_are_mlflows_own_names(links: ModuleType) -> None:
    from mlflow.prompt.constants import PROMPT_TEXT_TAG_KEY
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

    assert links.FREE_TEXT_TAGS == {PROMPT_TEXT_TAG_KEY, MLFLOW_RUN_NOTE}


def _body(document: object) -> bytes:
    return json.dumps(document).encode()


SOURCE = "mlflow.source.name"


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/2.0/mlflow/runs/set-tag", _body({"run_id": "r", "key": SOURCE, "value": PAYLOAD})),
        ("/ajax-api/2.0/mlflow/runs/set-tag", _body({"run_id": "r", "key": SOURCE, "value": PAYLOAD})),
        ("/api/2.0/mlflow/runs/create", _body({"experiment_id": "1", "tags": [{"key": SOURCE, "value": PAYLOAD}]})),
        ("/api/2.0/mlflow/runs/log-batch", _body({"run_id": "r", "tags": [{"key": SOURCE, "value": PAYLOAD}]})),
        ("/api/2.0/mlflow/runs/log-parameter", _body({"run_id": "r", "key": "p", "value": PAYLOAD})),
        ("/api/2.0/mlflow/experiments/set-experiment-tag", _body({"experiment_id": "1", "key": "k", "value": PAYLOAD})),
        ("/api/2.0/mlflow/registered-models/set-tag", _body({"name": "m", "key": "k", "value": PAYLOAD})),
        ("/api/2.0/mlflow/model-versions/set-tag", _body({"name": "m", "version": "1", "key": "k", "value": PAYLOAD})),
        ("/api/3.0/mlflow/traces", _body({"trace": {"trace_info": {"tags": {"k": PAYLOAD}}}})),
        # A trace's metadata: the UI links its source's git remote and a notebook's workspace URL.
        (
            "/api/3.0/mlflow/traces",
            _body({"trace": {"trace_info": {"trace_metadata": {"mlflow.source.git.repoURL": PAYLOAD}}}}),
        ),
        ("/api/3.0/mlflow/traces", _body({"trace": {"traceInfo": {"traceMetadata": {"k": PAYLOAD}}}})),
        ("/api/2.0/mlflow/traces", _body({"experiment_id": "1", "request_metadata": [{"key": "k", "value": PAYLOAD}]})),
        # A dataset's source is JSON; the UI links an HTTP source's url.
        (
            "/api/2.0/mlflow/runs/log-inputs",
            _body(
                {
                    "run_id": "r",
                    "datasets": [
                        {
                            "dataset": {
                                "name": "d",
                                "digest": "1",
                                "source_type": "http",
                                "source": json.dumps({"url": PAYLOAD}),
                            }
                        }
                    ],
                }
            ),
        ),
        ("/api/3.0/mlflow/datasets/d-1/tags", _body({"dataset_id": "d-1", "tags": json.dumps({"k": PAYLOAD})})),
        # Escapes spell it, or split it where the browser drops the character again.
        ("/api/2.0/mlflow/runs/set-tag", b'{"run_id": "r", "key": "k", "value": "\\u006aavascript:x"}'),
        ("/api/2.0/mlflow/runs/set-tag", b'{"run_id": "r", "key": "k", "value": "java\\tscr\\nipt:x"}'),
        # Encoded twice, as old clients post it.
        ("/api/2.0/mlflow/runs/set-tag", _body(json.dumps({"run_id": "r", "key": "k", "value": PAYLOAD}))),
    ],
)
def test_every_route_that_stores_a_tag_refuses_a_script_url(guard: ModuleType, path: str, body: bytes) -> None:
    inner = Recorder()
    method = "PATCH" if path.endswith("/tags") else "POST"
    status, answer = call(guard.RequestGuard(inner), method, path, body)
    assert status == 400 and "script URL" in json.loads(answer)["message"]
    assert inner.calls == []


@pytest.mark.parametrize("name", ["run_link", "runLink"])
def test_a_model_versions_run_link_is_not_a_script_url(guard: ModuleType, name: str) -> None:
    """The model version page makes `run_link` the href of its run link."""
    inner = Recorder(statuses={})
    source = {"name": "m", "source": "models:/m-1", name: " javascript:alert(1)"}
    status, answer = call(guard.RequestGuard(inner), "POST", "/api/2.0/mlflow/model-versions/create", _body(source))
    assert status == 400 and name in json.loads(answer)["message"]
    assert all(scope["method"] == "GET" for scope, _ in inner.calls)  # at most the source's readability check


PROMPT_VERSION = {
    "name": "p",
    "source": "prompt-template",
    "tags": [{"key": "mlflow.prompt.text", "value": "JavaScript: {{q}}"}],
}
GIT_SOURCE = {"run_id": "r", "key": SOURCE, "value": "git@github.com:o/r.git"}
HTTP_DATASET = {"name": "d", "digest": "1", "source_type": "http", "source": json.dumps({"url": "https://x/d.csv"})}


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/2.0/mlflow/runs/set-tag", _body(GIT_SOURCE)),
        (
            "/api/2.0/mlflow/runs/set-tag",
            _body({"run_id": "r", "key": "mlflow.note.content", "value": "JavaScript: x"}),
        ),
        ("/api/2.0/mlflow/model-versions/create", _body(PROMPT_VERSION)),
        ("/api/2.0/mlflow/runs/log-inputs", _body({"run_id": "r", "datasets": [{"dataset": HTTP_DATASET}]})),
        ("/api/2.0/mlflow/runs/log-batch", _body({"run_id": "r", "metrics": [{"key": "javascript:", "value": 1}]})),
    ],
)
def test_ordinary_and_free_text_values_pass(guard: ModuleType, path: str, body: bytes) -> None:
    inner = Recorder()
    assert call(guard.RequestGuard(inner), "POST", path, body)[0] == 200
    assert inner.calls[-1][1] == body


def _otlp(value: str) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(trace_id=os.urandom(16), span_id=os.urandom(8))
    span.attributes.add(key="mlflow.traceTag.team").value.string_value = value
    return request.SerializeToString()


def test_otlp_spans_cannot_set_a_trace_tag_to_a_script_url(guard: ModuleType) -> None:
    """The store makes `mlflow.traceTag.<tag>` attributes trace tags, decoding a JSON-encoded value once."""
    protobuf = {b"content-type": b"application/x-protobuf"}
    assert len(guard.otlp_trace_ids(_otlp("b"), protobuf)) == 1
    for value in (PAYLOAD, json.dumps(PAYLOAD)):
        with pytest.raises(guard.Refused, match="script URL"):
            guard.otlp_trace_ids(_otlp(value), protobuf)
    attribute = {"key": "mlflow.traceTag.team", "value": {"stringValue": PAYLOAD}}
    as_json = {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "ab" * 16, "attributes": [attribute]}]}]}]}
    with pytest.raises(guard.Refused, match="script URL"):
        guard.otlp_trace_ids(json.dumps(as_json).encode(), {b"content-type": b"application/json"})
    # Other attributes are the span's own data (inputs, outputs), shown as text.
    attribute["key"] = "mlflow.spanInputs"
    assert guard.otlp_trace_ids(json.dumps(as_json).encode(), {b"content-type": b"application/json"})


@pytest.mark.parametrize(
    "body, may",
    [
        (b'{"run_id": "r", "key": "k", "value": "v"}', False),
        (b'{"run_id": "r", "key": "k", "value": "JavaScript:x"}', True),
        # An escaped quote neither spells "script" nor splits it; \u, \t, \n and \r could.
        (b'{"run_id": "r", "key": "k", "value": "a\\"b"}', False),
        (b'{"run_id": "r", "key": "k", "value": "scr\\u0069pt"}', True),
        (b'{"run_id": "r", "key": "k", "value": "scr\\tipt"}', True),
        (b"[1]", True),
        ('{"a": 1}'.encode("utf-16"), True),
    ],
)
def test_bodies_that_cannot_hold_a_script_url_skip_the_parse(links: ModuleType, body: bytes, may: bool) -> None:
    assert links.may_hold_script_url(body) is may
