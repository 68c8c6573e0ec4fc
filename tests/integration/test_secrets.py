"""Passwords stay out of command lines and logs."""

from __future__ import annotations

from urllib.parse import quote

import psutil
import pytest
import requests

from localrun.stack import MlflowStack

pytestmark = pytest.mark.integration


def secrets_of(stack: MlflowStack) -> list[str]:
    return [stack.db_password, quote(stack.db_password, safe=""), stack.password]


def test_no_password_on_any_command_line(mlflow_stack: MlflowStack) -> None:
    auth = (mlflow_stack.username, mlflow_stack.password)
    requests.get(mlflow_stack.proxy_url + "/", auth=auth, timeout=30)
    seen = 0
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        seen += 1
        for secret in secrets_of(mlflow_stack):
            assert secret not in cmdline, f"password on the command line of {process.info['pid']}"
    assert seen > 10


def test_no_password_in_any_captured_log(mlflow_stack: MlflowStack) -> None:
    # Exercise both failure and success paths first, so the logs have content.
    user = mlflow_stack.username
    requests.get(mlflow_stack.proxy_url + "/", auth=(user, "wrong"), timeout=30)
    requests.get(mlflow_stack.proxy_url + "/", auth=(user, mlflow_stack.password), timeout=30)
    logs = mlflow_stack.log_files()
    assert {path.name for path in logs} >= {"mlflow.log", "nginx.log", "postgres.log"}
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in secrets_of(mlflow_stack):
            assert secret not in text, f"password in {path}"


def test_database_password_is_url_encoded_and_works(mlflow_stack: MlflowStack) -> None:
    """The test password contains @:/%#?& and MLflow still reaches PostgreSQL."""
    assert set("@:/%#?&") <= set(mlflow_stack.db_password)
    auth = (mlflow_stack.username, mlflow_stack.password)
    response = requests.post(
        mlflow_stack.proxy_url + "/api/2.0/mlflow/experiments/create",
        json={"name": "password-encoding"}, auth=auth, timeout=30,
    )  # fmt: skip
    assert response.status_code == 200, response.text
