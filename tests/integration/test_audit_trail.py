"""The audit trail through the real nginx and MLflow: one line per change, the right user, no secrets."""

from __future__ import annotations

import json
import secrets

import pytest
import requests

from localrun.stack import MlflowStack

pytestmark = pytest.mark.integration


def audit_lines(stack: MlflowStack) -> list[dict]:
    text = (stack.log_dir / "mlflow.log").read_text(errors="replace")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{") and '"mlflow-change"' in line]


def call(stack: MlflowStack, method: str, path: str, body: dict, auth: tuple[str, str], **kw: str) -> requests.Response:
    return requests.request(method, stack.proxy_url + path, json=body, auth=auth, timeout=30, headers=kw or None)


def test_shared_mode_changes_are_logged_once_with_the_checked_user(mlflow_stack: MlflowStack) -> None:
    auth = (mlflow_stack.username, mlflow_stack.password)
    before = len(audit_lines(mlflow_stack))
    name = f"audit-{secrets.token_hex(3)}"
    created = call(
        mlflow_stack, "POST", "/api/2.0/mlflow/experiments/create",
        {"name": name, "tags": [{"key": "k", "value": "tag-value-not-logged"}]}, auth,
        **{"X-Authenticated-User": "mallory"},
    )  # fmt: skip
    experiment_id = created.json()["experiment_id"]
    call(mlflow_stack, "GET", f"/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}", {}, auth)
    call(mlflow_stack, "POST", "/api/2.0/mlflow/experiments/search", {"max_results": 5}, auth)
    assert call(mlflow_stack, "POST", "/api/2.0/mlflow/experiments/delete", {"experiment_id": experiment_id}, auth).ok
    new = audit_lines(mlflow_stack)[before:]
    assert [(line["route"], line["status"]) for line in new] == [
        ("/api/2.0/mlflow/experiments/create", 200),
        ("/api/2.0/mlflow/experiments/delete", 200),
    ]
    assert {line["user"] for line in new} == {mlflow_stack.username}
    assert new[0]["resource"] == {"name": name}
    assert new[1]["resource"] == {"experiment_id": experiment_id}
    assert all(line["request_id"] for line in new)
    text = json.dumps(new)
    assert "tag-value-not-logged" not in text and mlflow_stack.password not in text and "mallory" not in text


def test_accounts_mode_logs_the_user_the_auth_app_checked_and_no_password(accounts_stack: MlflowStack) -> None:
    admin = (accounts_stack.username, accounts_stack.password)
    before = len(audit_lines(accounts_stack))
    username, password = f"audit-{secrets.token_hex(3)}", f"Pw-{secrets.token_hex(12)}"
    assert call(
        accounts_stack, "POST", "/api/2.0/mlflow/users/create", {"username": username, "password": password}, admin
    ).ok
    refused = call(accounts_stack, "POST", "/api/2.0/mlflow/experiments/create", {"name": "x"}, (username, "wrong"))
    assert refused.status_code == 401
    new = audit_lines(accounts_stack)[before:]
    assert [(line["route"], line["user"], line["status"]) for line in new] == [
        ("/api/2.0/mlflow/users/create", accounts_stack.username, 200),
        ("/api/2.0/mlflow/experiments/create", username, 401),
    ]
    assert new[0]["resource"] == {"username": username}
    assert password not in json.dumps(new) and accounts_stack.password not in json.dumps(new)
