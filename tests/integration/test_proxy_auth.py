"""What nginx lets through: credentials, the one open health path, limits."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import pytest
import requests

from localrun.stack import MlflowStack

pytestmark = pytest.mark.integration

SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"
LIMIT = 10 * 1024 * 1024


def raw_get(base_url: str, path: str) -> int:
    """GET `path` byte for byte: no client-side `..` normalisation."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def test_credentials_open_the_api(mlflow_stack: MlflowStack) -> None:
    auth = (mlflow_stack.username, mlflow_stack.password)
    response = requests.get(mlflow_stack.proxy_url + SEARCH, auth=auth, timeout=30)
    assert response.status_code == 200
    assert "experiments" in response.json()


def test_no_credentials_is_401_with_a_challenge(mlflow_stack: MlflowStack) -> None:
    response = requests.get(mlflow_stack.proxy_url + SEARCH, timeout=30)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


@pytest.mark.parametrize("user_suffix, password_suffix", [("", "-wrong"), ("-other", ""), ("", None)])
def test_wrong_credentials_are_401(mlflow_stack: MlflowStack, user_suffix: str, password_suffix: str | None) -> None:
    password = "" if password_suffix is None else mlflow_stack.password + password_suffix
    auth = (mlflow_stack.username + user_suffix, password)
    response = requests.get(mlflow_stack.proxy_url + SEARCH, auth=auth, timeout=30)
    assert response.status_code == 401


def test_every_ui_and_api_path_needs_credentials(mlflow_stack: MlflowStack) -> None:
    paths = ["/", "/health", "/version", "/static-files/", "/ajax-api/2.0/mlflow/experiments/search"]
    for path in paths:
        assert requests.get(mlflow_stack.proxy_url + path, timeout=30).status_code == 401, path


def test_elb_status_answers_without_credentials(mlflow_stack: MlflowStack) -> None:
    response = requests.get(mlflow_stack.proxy_url + "/elb-status", timeout=30)
    assert response.status_code == 200
    assert response.text == "OK"  # MLflow's own /health body


@pytest.mark.parametrize(
    "path",
    [
        "/elb-status/../api/2.0/mlflow/experiments/search",
        "/elb-status/",
        "/elb-statusX",
        "/elb-status.json",
        "/elb-status/../health",
    ],
)
def test_paths_merely_starting_with_elb_status_need_credentials(mlflow_stack: MlflowStack, path: str) -> None:
    assert raw_get(mlflow_stack.proxy_url, path) == 401


def test_server_version_is_hidden(mlflow_stack: MlflowStack) -> None:
    auth = (mlflow_stack.username, mlflow_stack.password)
    for response in [
        requests.get(mlflow_stack.proxy_url + SEARCH, auth=auth, timeout=30),
        requests.get(mlflow_stack.proxy_url + SEARCH, timeout=30),
    ]:
        assert response.headers["Server"] == "nginx"
    assert "nginx/" not in requests.get(mlflow_stack.proxy_url + "/", timeout=30).text


def test_body_over_the_api_gateway_limit_is_413(mlflow_stack: MlflowStack) -> None:
    auth = (mlflow_stack.username, mlflow_stack.password)
    url = mlflow_stack.proxy_url + "/api/2.0/mlflow/runs/log-batch"
    over = requests.post(url, data=b"x" * (LIMIT + 1), auth=auth, timeout=30)
    assert over.status_code == 413
    # At the limit the request reaches MLflow, which answers it itself.
    body = b'{"run_id": "0123456789abcdef0123456789abcdef"}'
    at = requests.post(url, data=body.ljust(LIMIT), auth=auth, timeout=30,
                       headers={"Content-Type": "application/json"})  # fmt: skip
    assert at.status_code in (400, 404), at.text[:200]
    assert "error_code" in at.json()  # an MLflow error, not an nginx page
