"""docker/mlflow/audit_log.py without a server: which requests leave a line, and what it holds."""

from __future__ import annotations

import asyncio
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
    headers = [(b"x-authenticated-user", b"alice"), (b"x-request-id", b"req-1"), (b"x-api-request-id", b"api-1")]
    (line,) = logged(audit, "shared", "POST", "/api/2.0/mlflow/experiments/create", body, headers=headers)
    assert line["user"] == "alice"
    assert (line["request_id"], line["api_request_id"]) == ("req-1", "api-1")
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


@pytest.mark.parametrize(
    ("path", "body", "resource"),
    [
        (
            "/api/3.0/mlflow/users/permissions/grant",
            {"username": "bob", "resource_type": "experiment", "resource_id": "12", "permission": "MANAGE"},
            {"username": "bob", "resource_type": "experiment", "resource_id": "12", "permission": "MANAGE"},
        ),
        (
            "/api/3.0/mlflow/roles/permissions/add",
            {"role_id": 3, "resource_type": "experiment", "resource_pattern": "*", "permission": "READ"},
            {"role_id": 3, "resource_type": "experiment", "resource_pattern": "*", "permission": "READ"},
        ),
        ("/api/3.0/mlflow/roles/assign", {"username": "bob", "role_id": 3}, {"username": "bob", "role_id": 3}),
        (
            "/api/3.0/mlflow/roles/create",
            {"name": "auditors", "workspace": "default", "description": "free text, not logged"},
            {"name": "auditors", "workspace": "default"},
        ),
        (
            "/api/2.0/mlflow/users/update-admin",
            {"username": "bob", "is_admin": True},
            {"username": "bob", "is_admin": True},
        ),
    ],
    ids=["grant", "role permission", "assign", "role", "admin flag"],
)
def test_grants_roles_and_the_admin_flag_log_what_they_give_to_whom(
    audit: ModuleType, path: str, body: dict, resource: dict
) -> None:
    """MLflow 3's grant and role APIs: a year later the line still says which experiment, which role."""
    (line,) = logged(audit, "accounts", "POST", path, body, headers=basic("admin", "pw-x"))
    assert line["resource"] == resource
    assert "free text" not in json.dumps(line)


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


class SignsIn(Recorder):
    """Answers as mlflow-oidc-auth's app does after its AuthMiddleware authenticated `username`."""

    def __init__(self, username: str | None) -> None:
        super().__init__()
        self.username = username

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        from mlflow_oidc_auth.entities.auth_context import AUTH_CONTEXT_KEY, AuthContext

        if self.username:
            scope[AUTH_CONTEXT_KEY] = AuthContext(username=self.username, is_admin=False)
        await super().__call__(scope, receive, send)


def sso_user(audit: ModuleType, inner: Recorder, headers: list[tuple[bytes, bytes]]) -> Any:
    lines: list[str] = []
    body = b'{"experiment_id": "12"}'
    call(
        audit.AuditLog(inner, "sso", lines.append), "POST", "/api/2.0/mlflow/experiments/delete", body, headers=headers
    )
    (line,) = lines
    return json.loads(line)["user"]


def test_sso_names_the_user_the_plugin_authenticated_not_what_the_client_claims(audit: ModuleType) -> None:
    forged = [(b"x-authenticated-user", b"mallory"), (b"authorization", b"Bearer a.b.c")]
    assert sso_user(audit, SignsIn("alice@example.com"), forged) == "alice@example.com"
    # The plugin's access tokens are basic credentials: the name it checked wins over the claimed one.
    assert sso_user(audit, SignsIn("alice@example.com"), basic("bob", "token")) == "alice@example.com"
    assert sso_user(audit, SignsIn(None), forged) is None  # refused: nobody was authenticated
    assert sso_user(audit, SignsIn(None), basic("bob", "wrong")) == "bob"  # refused, as in accounts mode


def test_the_scope_key_is_read_in_sso_mode_only(audit: ModuleType) -> None:
    lines: list[str] = []
    call(audit.AuditLog(SignsIn("alice"), "accounts", lines.append), "POST", "/api/2.0/mlflow/runs/delete", b"{}")
    assert json.loads(lines[0])["user"] is None


def test_the_pinned_plugin_is_what_the_sso_user_was_reviewed_against(audit: ModuleType) -> None:
    with image_module("reviewed_source") as reviewed_source:
        assert reviewed_source.changed(audit.REVIEWED_FOR_SSO_USER) == [], (
            "mlflow-oidc-auth's source changed: check that AuthMiddleware still sets the AuthContext only for an "
            "authenticated, active user, then record reviewed_source.current_sha256() of each name"
        )


def test_another_plugin_release_leaves_the_sso_user_out(
    audit: ModuleType, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stale = {"mlflow_oidc_auth.middleware.auth_middleware": {"AuthMiddleware.dispatch": "0" * 64}}
    monkeypatch.setattr(audit, "REVIEWED_FOR_SSO_USER", stale)
    with caplog.at_level("WARNING"):
        assert sso_user(audit, SignsIn("alice@example.com"), [(b"authorization", b"Bearer a.b.c")]) is None
    assert [record.getMessage() for record in caplog.records] == [
        "MLflow's mlflow_oidc_auth.middleware.auth_middleware:AuthMiddleware.dispatch is not the reviewed one "
        "(audit_log.py: sso user): bearer-token and session users are not named in the audit lines"
    ]


def test_every_response_names_its_user_to_nginx_and_only_the_audit_layer_can(audit: ModuleType) -> None:
    sent = {"type": "http.response.start", "status": 200, "headers": [(b"X-Mlflow-User", b"forged-by-app")]}
    assert audit.with_user_header(sent, "alice@example.com")["headers"] == [(b"x-mlflow-user", b"alice@example.com")]
    assert audit.with_user_header(sent, None)["headers"] == []
    # A claimed basic-auth name is the client's text: it cannot add a header line.
    assert audit.with_user_header(sent, 'eve\r\nSet-Cookie: x"')["headers"] == [
        (b"x-mlflow-user", b"eve%0D%0ASet-Cookie:%20x%22")
    ]


def test_reads_name_their_user_too(audit: ModuleType) -> None:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/api/2.0/mlflow/experiments/get", "headers": basic("dave", "p")}
    lines: list[str] = []
    asyncio.run(audit.AuditLog(Recorder(), "accounts", lines.append)(scope, receive, send))
    assert (b"x-mlflow-user", b"dave") in sent[0]["headers"]
    assert lines == []  # a read leaves no audit line


def test_get_or_create_routes_are_changes(audit: ModuleType) -> None:
    """MLflow's review-queues/get-or-create-user creates a queue: not one of the read-only POSTs."""
    (line,) = logged(audit, "shared", "POST", "/api/3.0/mlflow/review-queues/get-or-create-user", {})
    assert line["route"] == "/api/3.0/mlflow/review-queues/get-or-create-user"


@pytest.fixture(scope="module")
def max_event_bytes() -> Iterator[int]:
    with image_module("audit_cloudwatch") as module:
        yield module.MAX_EVENT_BYTES


def test_a_padded_request_still_names_what_it_changed(audit: ModuleType, max_event_bytes: int) -> None:
    """MLflow ignores fields it does not know: padding with them must not push the line out of the audit group.

    A line over one CloudWatch event goes to the task's own log (shorter retention), so a
    colleague could otherwise delete experiment 12 without a year-long trace.
    """
    body: dict[str, Any] = {
        "experiment_id": "12",
        "experiment_ids": ["x" * 500] * 600,  # MLflow's spelling of an audited list
        **{"n" + "_" * i + "ame": "y" * 512 for i in range(1, 600)},  # other spellings of `name`
        "key": "\U0001f600" * 600,  # 12 bytes per character once escaped
    }
    (line,) = logged(audit, "shared", "POST", "/api/2.0/mlflow/experiments/delete", body, headers=[
        (b"x-authenticated-user", b"mallory"),
    ])  # fmt: skip
    raw = json.dumps(line, sort_keys=True)
    assert len(raw.encode()) <= max_event_bytes
    resource = line["resource"]
    assert (line["user"], resource["experiment_id"], resource["resource_truncated"]) == ("mallory", "12", True)
    assert resource["experiment_ids"] == ["x" * 500] * audit.MAX_LIST_ITEMS
    assert resource["key"] and set(resource["key"]) == {"\U0001f600"}
    assert len(json.dumps(resource["key"])) - 2 <= audit.MAX_VALUE_BYTES


def test_mlflows_own_spellings_always_fit(audit: ModuleType, max_event_bytes: int) -> None:
    """Every audited field in MLflow's snake_case and camelCase spellings at its longest: all kept."""
    names = {spelling for name in audit.AUDITED_NAMES for spelling in (name, audit._camel(name))}
    body = {name: "\U0001f600" * 600 for name in names}
    (line,) = logged(audit, "accounts", "POST", "/api/2.0/mlflow/experiments/update", body, headers=basic("a", "p"))
    assert set(line["resource"]) == names | {"resource_truncated"}
    assert len(json.dumps(line).encode()) <= max_event_bytes


def test_a_long_name_is_cut_not_dropped(audit: ModuleType) -> None:
    (line,) = logged(audit, "shared", "POST", "/api/2.0/mlflow/experiments/create", {"name": "n" * 600})
    assert line["resource"] == {"name": "n" * audit.MAX_VALUE_CHARS, "resource_truncated": True}
