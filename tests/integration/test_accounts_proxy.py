"""accounts mode through nginx with the real MLflow: the one open path, refusals, URLs."""

from __future__ import annotations

import pytest
import requests

from localrun.stack import MlflowStack
from tests.integration.mlflow_users import ACCOUNTS_GROUP, Accounts, api
from tests.integration.public_urls import ALB_HOSTS, API_GATEWAY_HOST, redirect_location

pytestmark = [pytest.mark.integration, ACCOUNTS_GROUP]

GATEWAY = {"Host": ALB_HOSTS[0], "X-Public-Host": API_GATEWAY_HOST, "X-Public-Proto": "https"}


def test_elb_status_is_the_one_open_path(accounts_stack: MlflowStack) -> None:
    assert requests.get(accounts_stack.proxy_url + "/elb-status", timeout=30).text == "OK"
    for path in ["/", "/health", "/version", "/static-files/", "/api/2.0/mlflow/experiments/search",
                 "/ajax-api/2.0/mlflow/users/current", "/signup", "/elb-status/"]:  # fmt: skip
        response = requests.get(accounts_stack.proxy_url + path, timeout=30)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_the_ui_loads_for_a_user(accounts: Accounts, accounts_stack: MlflowStack) -> None:
    user = accounts.new_user("ui")
    page = api(accounts_stack, "GET", "/", user)
    assert page.status_code == 200 and "<script" in page.text


@pytest.mark.parametrize(
    "origin, expected",
    [
        (f"https://{API_GATEWAY_HOST}", 200),
        ("https://f6g7h8i9j0.execute-api.us-east-1.amazonaws.com", 403),
        ("https://attacker.example", 403),
    ],
)
def test_writes_from_other_origins_are_refused(
    accounts: Accounts, accounts_stack: MlflowStack, origin: str, expected: int
) -> None:
    response = api(
        accounts_stack, "POST", "/ajax-api/2.0/mlflow/experiments/create", accounts.admin,
        json={"name": f"from-{origin.split('//')[1].split('.')[0]}-{expected}"},
        headers={**GATEWAY, "Origin": origin},
    )  # fmt: skip
    assert response.status_code == expected, response.text[:200]


def test_mlflow_builds_https_urls_behind_api_gateway(accounts_stack: MlflowStack) -> None:
    status, location = redirect_location(accounts_stack, "/api/2.0/mlflow//experiments/search", GATEWAY)
    assert status == 308
    assert location == f"https://{API_GATEWAY_HOST}/api/2.0/mlflow/experiments/search"
