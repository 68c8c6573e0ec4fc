"""docker/mlflow/audit_log.py without a server: which requests leave a line, and what it holds."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.docker.image_modules import image_module
from tests.docker.test_request_guard import Recorder, call


@pytest.fixture(scope="module")
def audit() -> Iterator[ModuleType]:
    with image_module("audit_log") as module:
        yield module


def logged(audit: ModuleType, mode: str, method: str, path: str, body: Any = None, **kwargs: Any) -> list[dict]:
    lines: list[str] = []
    inner = Recorder()
    raw = json.dumps(body).encode() if body is not None else b""
    call(audit.AuditLog(inner, mode, lines.append), method, path, raw, **kwargs)
    assert inner.calls[0][1] == raw  # the app still reads the whole body
    return [json.loads(line) for line in lines]


def basic(user: str, password: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", b"Basic " + base64.b64encode(f"{user}:{password}".encode()))]


def test_a_change_is_logged_once_with_ids_and_names_only(audit: ModuleType) -> None:
    body = {"name": "exp", "tags": [{"key": "secret-tag", "value": "hidden-value"}], "artifact_location": "s3://x"}
    headers = [(b"x-authenticated-user", b"alice"), (b"x-request-id", b"req-1")]
    (line,) = logged(audit, "shared", "POST", "/api/2.0/mlflow/experiments/create", body, headers=headers)
    assert line["user"] == "alice"
    assert line["request_id"] == "req-1"
    assert line["method"] == "POST"
    assert line["route"] == "/api/2.0/mlflow/experiments/create"
    assert line["resource"] == {"name": "exp"}
    assert line["status"] == 200
    assert "hidden-value" not in json.dumps(line) and "s3://x" not in json.dumps(line)


def test_creating_a_user_logs_the_name_never_the_password(audit: ModuleType) -> None:
    body = {"username": "bob", "password": "hunter2-secret"}
    (line,) = logged(audit, "accounts", "POST", "/api/2.0/mlflow/users/create", body, headers=basic("admin", "pw-x"))
    assert line["user"] == "admin"
    assert line["resource"] == {"username": "bob"}
    assert "hunter2" not in json.dumps(line) and "pw-x" not in json.dumps(line)


def test_deletes_log_query_string_ids(audit: ModuleType) -> None:
    (line,) = logged(
        audit, "accounts", "DELETE", "/api/2.0/mlflow/registered-models/alias",
        query=b"name=m&alias=prod&token=abc", headers=basic("carol", "p"),
    )  # fmt: skip
    assert line["resource"] == {"name": "m", "alias": "prod"}
    assert line["user"] == "carol"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/2.0/mlflow/experiments/get", None),
        ("POST", "/api/2.0/mlflow/runs/search", {"experiment_ids": ["1"]}),
        ("POST", "/ajax-api/2.0/mlflow/experiments/search", {}),
        ("POST", "/graphql", {"query": 'query { mlflowGetRun(input: {runId: "r"}) { run { info { runId } } } }'}),
    ],
)
def test_reads_are_not_logged(audit: ModuleType, method: str, path: str, body: Any) -> None:
    assert logged(audit, "shared", method, path, body) == []


def test_graphql_mutations_and_ajax_changes_are_logged(audit: ModuleType) -> None:
    assert len(logged(audit, "shared", "POST", "/graphql", {"query": "mutation { x }"})) == 1
    (line,) = logged(audit, "shared", "POST", "/ajax-api/2.0/mlflow/experiments/delete", {"experiment_id": "12"})
    assert line["resource"] == {"experiment_id": "12"}


def test_refused_changes_are_logged_with_their_status(audit: ModuleType) -> None:
    lines: list[str] = []
    inner = Recorder({"/api/2.0/mlflow/experiments/delete": 403})
    body = json.dumps({"experiment_id": "12"}).encode()
    call(audit.AuditLog(inner, "accounts", lines.append), "POST", "/api/2.0/mlflow/experiments/delete", body)
    assert [json.loads(line)["status"] for line in lines] == [403]


def test_the_user_header_counts_only_where_nginx_sets_it(audit: ModuleType) -> None:
    forged = [(b"x-authenticated-user", b"mallory"), *basic("dave", "p")]
    assert audit.caller("accounts", dict(forged)) == "dave"
    assert audit.caller("shared", dict(forged)) == "mallory"  # nginx overwrites it in shared mode
    assert audit.caller("sso", dict(forged)) == "dave"
    assert audit.caller("sso", {b"x-authenticated-user": b"mallory"}) is None
    assert audit.caller("accounts", {b"authorization": b"Basic !!!"}) is None


def test_file_sink_appends_lines(audit: ModuleType, tmp_path: Any) -> None:
    sink = audit.file_sink(str(tmp_path / "audit.log"))
    sink("a")
    sink("b")
    assert (tmp_path / "audit.log").read_text() == "a\nb\n"


def test_an_app_that_fails_before_answering_is_logged_as_500(audit: ModuleType) -> None:
    lines: list[str] = []

    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        call(audit.AuditLog(failing, "shared", lines.append), "POST", "/api/2.0/mlflow/runs/delete", b'{"run_id":"r"}')
    assert [json.loads(line)["status"] for line in lines] == [500]
