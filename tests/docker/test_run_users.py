"""docker/mlflow/run_users.py: a run's user is the signed-in user where users have accounts.

A Flask app stands in for MLflow's: an auth hook names the user on `g` as both auth apps do,
and the handler answers with the JSON it reads (the same cached object MLflow's handlers
read). The real apps: tests/integration/test_audit_trail.py (accounts, sso) and
test_iam_sign_in_signed.py (IAM sign-in).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from flask import Flask, g, request

from tests.docker.image_modules import image_module

CREATE = "/api/2.0/mlflow/runs/create"
# The routes the stand-in app serves, as MLflow's Flask app declares them (under both prefixes).
ROUTES = (
    "/runs/create", "/runs/create-promptlab-run", "/runs/set-tag", "/runs/log-batch", "/runs/delete-tag",
    "/experiments/create",
)  # fmt: skip


@pytest.fixture(scope="module")
def run_users() -> Iterator[ModuleType]:
    with image_module("run_users") as module:
        yield module


def app_for(run_users: ModuleType, signed_in: str | None) -> Flask:
    app = Flask(__name__)

    @app.before_request
    def auth() -> None:  # what MLflow's basic-auth app and the OIDC plugin do once signed in
        if signed_in:
            g.mlflow_authenticated_user = signed_in

    run_users.install(app)

    def handler() -> Any:
        return {"seen": request.get_json(force=True, silent=True)}

    for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"):
        for route in ROUTES:
            app.add_url_rule(prefix + route, prefix + route, handler, methods=["GET", "POST"])
    return app


def post(app: Flask, path: str, body: object, *, encode_twice: bool = False) -> tuple[int, Any]:
    data = json.dumps(json.dumps(body) if encode_twice else body)
    response = app.test_client().post(path, data=data, content_type="application/json")
    return response.status_code, response.get_json()


def test_the_tag_is_mlflows_own_name(run_users: ModuleType) -> None:
    from mlflow.utils.mlflow_tags import MLFLOW_USER

    assert run_users.USER_TAG == MLFLOW_USER


@pytest.mark.parametrize("field", ["user_id", "userId"])
def test_a_new_run_is_the_signed_in_users_whatever_the_client_says(run_users: ModuleType, field: str) -> None:
    claimed = {"key": "mlflow.user", "value": "admin"}
    body = {"experiment_id": "1", field: "admin", "tags": [claimed, {"key": "team", "value": "a"}, claimed]}
    status, answer = post(app_for(run_users, "bob"), CREATE, body)
    assert status == 200
    assert answer["seen"] == {
        "experiment_id": "1", "user_id": "bob",
        "tags": [{"key": "team", "value": "a"}, {"key": "mlflow.user", "value": "bob"}],
    }  # fmt: skip


def test_a_new_run_without_user_or_tags_gets_both(run_users: ModuleType) -> None:
    """Other spellings of the path reach the same rule: the rule Flask matched is what counts."""
    for path in (CREATE, "/ajax-api/2.0/mlflow/runs/create", "/api/2.0/mlflow/runs/%63reate"):
        status, answer = post(app_for(run_users, "bob"), path, {"experiment_id": "1"})
        assert (status, answer["seen"]["user_id"]) == (200, "bob")
        assert answer["seen"]["tags"] == [{"key": "mlflow.user", "value": "bob"}]


def test_a_prompt_lab_run_is_the_signed_in_users_and_its_tags_are_left_alone(run_users: ModuleType) -> None:
    """MLflow's prompt lab route takes tags as RunTag objects only (any JSON tag is a 500 there)."""
    body = {"experiment_id": "1", "user_id": "admin", "prompt_template": "t"}
    status, answer = post(app_for(run_users, "bob"), "/ajax-api/2.0/mlflow/runs/create-promptlab-run", body)
    assert (status, answer["seen"]) == (200, {**body, "user_id": "bob"})


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/2.0/mlflow/runs/set-tag", {"run_id": "r", "key": "mlflow.user", "value": "admin"}),
        ("/ajax-api/2.0/mlflow/runs/log-batch", {"run_id": "r", "tags": [{"key": "mlflow.user", "value": "admin"}]}),
        ("/api/2.0/mlflow/runs/delete-tag", {"run_id": "r", "key": "mlflow.user"}),
        ("/api/2.0/mlflow/runs/delete-tag", {"run_id": "r", "key": "mlflow.user", "value": "bob"}),
        # Not even one's own name: whoever may edit a colleague's run must not make it theirs.
        ("/api/2.0/mlflow/runs/set-tag", {"run_id": "r", "key": "mlflow.user", "value": "bob"}),
        ("/api/2.0/mlflow/runs/log-batch", {"run_id": "r", "tags": [{"key": "mlflow.user", "value": "bob"}]}),
        (CREATE, "encoded twice"),
    ],
)
def test_the_user_tag_is_not_written_or_deleted_later(run_users: ModuleType, path: str, body: Any) -> None:
    encode_twice = body == "encoded twice"
    document = {"experiment_id": "1", "user_id": "admin"} if encode_twice else body
    status, answer = post(app_for(run_users, "bob"), path, document, encode_twice=encode_twice)
    assert status == 400 and answer["message"], answer


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/2.0/mlflow/runs/set-tag", {"run_id": "r", "key": "team", "value": "admin"}),
        ("/api/2.0/mlflow/runs/log-batch", {"run_id": "r", "tags": [{"key": "team", "value": "bob"}]}),
        ("/api/2.0/mlflow/runs/delete-tag", {"run_id": "r", "key": "team"}),
        ("/api/2.0/mlflow/experiments/create", {"name": "e", "user_id": "admin"}),
    ],
)
def test_everything_else_reaches_mlflow_unchanged(run_users: ModuleType, path: str, body: Any) -> None:
    assert post(app_for(run_users, "bob"), path, body) == (200, {"seen": body})


def test_without_a_signed_in_user_the_client_is_believed_and_it_is_said_once(
    run_users: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    """An MLflow whose auth app stopped naming the user: its own behaviour, and one log line."""
    run_users._warned = False
    body = {"experiment_id": "1", "user_id": "admin"}
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert post(app_for(run_users, None), CREATE, body) == (200, {"seen": body})
    assert [r.message for r in caplog.records].count(
        "run_users.py: the auth app named no user; run users are what clients report"
    ) == 1
