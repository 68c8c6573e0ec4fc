"""MLflow 3 checks Host and Origin; the names clients use in AWS must pass."""

from __future__ import annotations

import pytest
import requests

from localrun.stack import MlflowStack
from tests.integration.public_urls import ALB_HOSTS, API_GATEWAY_HOST, redirect_location

pytestmark = pytest.mark.integration

SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


def get(stack: MlflowStack, host: str) -> requests.Response:
    return requests.get(
        stack.proxy_url + SEARCH, headers={"Host": host},
        auth=(stack.username, stack.password), timeout=30,
    )  # fmt: skip


@pytest.mark.parametrize("host", [API_GATEWAY_HOST, *ALB_HOSTS])
def test_aws_host_names_are_accepted(mlflow_stack: MlflowStack, host: str) -> None:
    assert get(mlflow_stack, host).status_code == 200


def test_foreign_host_names_are_still_rejected(mlflow_stack: MlflowStack) -> None:
    """The check stays on: nginx forwards the client's Host untouched."""
    response = get(mlflow_stack, "mlflow.attacker.example")
    assert response.status_code == 403
    assert "Invalid Host header" in response.text


@pytest.mark.parametrize(
    "origin, expected",
    [
        (f"https://{API_GATEWAY_HOST}", 200),
        ("https://attacker.example", 403),
        # Another API Gateway API in the same region: MLflow's own CORS
        # allowlist (*.execute-api.<region>.amazonaws.com) admits it, nginx not.
        ("https://f6g7h8i9j0.execute-api.us-east-1.amazonaws.com", 403),
    ],
)
def test_ui_writes_from_the_api_gateway_origin_only(mlflow_stack: MlflowStack, origin: str, expected: int) -> None:
    response = requests.post(
        mlflow_stack.proxy_url + "/ajax-api/2.0/mlflow/experiments/search",
        json={"max_results": 1},
        # What API Gateway's integration sends on (parameter mapping).
        headers={"Host": ALB_HOSTS[0], "X-Public-Host": API_GATEWAY_HOST,
                 "X-Public-Proto": "https", "Origin": origin},
        auth=(mlflow_stack.username, mlflow_stack.password),
        timeout=30,
    )  # fmt: skip
    assert response.status_code == expected


@pytest.mark.parametrize(
    "headers, expected",
    [
        # Through API Gateway: HTTPS at the edge, plain HTTP on every hop after it.
        ({"Host": ALB_HOSTS[0], "X-Public-Host": API_GATEWAY_HOST, "X-Public-Proto": "https"},
         f"https://{API_GATEWAY_HOST}"),
        # Reached directly (make local): the host and scheme the client used.
        ({}, None),
    ],
)  # fmt: skip
def test_mlflow_builds_absolute_urls_with_the_public_scheme_and_host(
    mlflow_stack: MlflowStack, headers: dict[str, str], expected: str | None
) -> None:
    """MLflow (werkzeug) answers a path with doubled slashes with an absolute redirect,
    built from the scheme uvicorn takes from X-Forwarded-Proto (it trusts nginx on
    127.0.0.1) and the Host nginx sends."""
    status, location = redirect_location(mlflow_stack, "/api/2.0/mlflow//experiments/search?max_results=1", headers)
    assert status == 308
    assert location == f"{expected or mlflow_stack.proxy_url}/api/2.0/mlflow/experiments/search?max_results=1"
