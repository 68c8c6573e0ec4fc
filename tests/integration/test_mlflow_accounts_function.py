"""stacks/functions/mlflow_accounts: the Studio profiles' MLflow users, against the real thing.

The handler runs in this process as Lambda would run it, against the
accounts-mode stack (nginx + MLflow's auth app, standing in for the internal
load balancer) and moto's Secrets Manager, with CloudFormation's events.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import secrets
from collections.abc import Iterator
from types import ModuleType

import pytest
import requests

from localrun.process import free_port
from localrun.services import FAKE_AWS, REPO_ROOT, MotoServer
from localrun.stack import MlflowStack
from tests.integration.mlflow_users import ACCOUNTS_GROUP, Account, Accounts

pytestmark = [pytest.mark.integration, ACCOUNTS_GROUP]

HANDLER = REPO_ROOT / "stacks" / "functions" / "mlflow_accounts" / "index.py"
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


@pytest.fixture(scope="module")
def handler() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mlflow_accounts_index", HANDLER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def admin_secret_arn(accounts_stack: MlflowStack, moto_server: MotoServer) -> str:
    secret = moto_server.client("secretsmanager").create_secret(
        Name=f"mlflow-server-credentials-{secrets.token_hex(3)}",
        SecretString=json.dumps({"username": accounts_stack.username, "password": accounts_stack.password}),
    )
    return secret["ARN"]


@pytest.fixture
def lambda_env(
    monkeypatch: pytest.MonkeyPatch, accounts_stack: MlflowStack, moto_server: MotoServer, admin_secret_arn: str
) -> Iterator[None]:
    """What the function's configuration and the Lambda runtime give it."""
    for name, value in {**FAKE_AWS, "AWS_ENDPOINT_URL": moto_server.endpoint_url,
                        "ADMIN_SECRET_ARN": admin_secret_arn, "MLFLOW_URL": accounts_stack.proxy_url,
                        "MLFLOW_WAIT_SECONDS": "5"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    yield


def user_secret(moto: MotoServer, username: str, password: str | None = None, raw: str | None = None) -> str:
    value = raw if raw is not None else json.dumps({"username": username, "password": password})
    return moto.client("secretsmanager").create_secret(Name=f"studio-{secrets.token_hex(4)}", SecretString=value)["ARN"]


def event(request: str, username: str, secret_arn: str, physical_id: str | None = None) -> dict:
    body = {
        "RequestType": request,
        "ResourceType": "Custom::MlflowAccount",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:x",
                               "Username": username, "UserSecretArn": secret_arn},
    }  # fmt: skip
    if physical_id:
        body["PhysicalResourceId"] = physical_id
    return body


def status(stack: MlflowStack, account: Account) -> int:
    return requests.get(stack.proxy_url + SEARCH, auth=account.auth, timeout=30).status_code


def new_login() -> Account:
    return Account(f"studio-{secrets.token_hex(3)}", secrets.token_urlsafe(24))


@pytest.mark.usefixtures("lambda_env")
def test_create_update_delete_round_trip(
    handler: ModuleType, accounts_stack: MlflowStack, moto_server: MotoServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    login = new_login()
    arn = user_secret(moto_server, login.username, login.password)

    created = handler.on_event(event("Create", login.username, arn), None)
    assert created["PhysicalResourceId"] == f"mlflow-user/{login.username}"
    assert status(accounts_stack, login) == 200
    # CloudFormation may repeat a request: same answer, same user.
    assert handler.on_event(event("Create", login.username, arn), None) == created
    assert status(accounts_stack, login) == 200

    rotated = Account(login.username, secrets.token_urlsafe(24))
    moto_server.client("secretsmanager").put_secret_value(
        SecretId=arn, SecretString=json.dumps({"username": rotated.username, "password": rotated.password})
    )
    updated = handler.on_event(event("Update", login.username, arn, created["PhysicalResourceId"]), None)
    assert updated["PhysicalResourceId"] == created["PhysicalResourceId"]
    assert status(accounts_stack, rotated) == 200
    assert status(accounts_stack, login) == 401

    deleted = handler.on_event(event("Delete", login.username, arn, created["PhysicalResourceId"]), None)
    assert deleted["PhysicalResourceId"] == created["PhysicalResourceId"]
    assert status(accounts_stack, rotated) == 401
    # Already gone counts as deleted.
    handler.on_event(event("Delete", login.username, arn, created["PhysicalResourceId"]), None)

    for secret in (login.password, rotated.password, accounts_stack.password):
        assert secret not in caplog.text


@pytest.mark.usefixtures("lambda_env")
def test_update_recreates_a_user_deleted_by_hand(
    handler: ModuleType, accounts: Accounts, accounts_stack: MlflowStack, moto_server: MotoServer
) -> None:
    login = new_login()
    arn = user_secret(moto_server, login.username, login.password)
    created = handler.on_event(event("Create", login.username, arn), None)
    accounts.delete_user(login)
    assert status(accounts_stack, login) == 401
    handler.on_event(event("Update", login.username, arn, created["PhysicalResourceId"]), None)
    assert status(accounts_stack, login) == 200


@pytest.mark.usefixtures("lambda_env")
def test_delete_after_a_failed_create_touches_nothing(handler: ModuleType, moto_server: MotoServer) -> None:
    """CloudFormation deletes what a failed Create returned: an id this function never issued."""
    login = new_login()
    arn = user_secret(moto_server, login.username, login.password)
    physical_id = "2026/11/23/[$LATEST]0123456789abcdef"
    assert handler.on_event(event("Delete", login.username, arn, physical_id), None) == {
        "PhysicalResourceId": physical_id
    }


@pytest.mark.usefixtures("lambda_env")
@pytest.mark.parametrize(
    "raw, message",
    [
        ("not json: hunter2-secret-value", "is malformed"),
        (json.dumps({"username": "x"}), "is malformed"),
        (json.dumps(["hunter2-secret-value"]), "is malformed"),
        (json.dumps({"username": "someone-else", "password": "hunter2-secret-value"}), "is for 'someone-else'"),
    ],
)
def test_malformed_user_secret_is_a_clear_error(
    handler: ModuleType, moto_server: MotoServer, raw: str, message: str
) -> None:
    login = new_login()
    arn = user_secret(moto_server, login.username, raw=raw)
    with pytest.raises(handler.AccountError, match=message) as error:
        handler.on_event(event("Create", login.username, arn), None)
    assert "hunter2" not in str(error.value) and arn in str(error.value)


@pytest.mark.usefixtures("lambda_env")
def test_wrong_admin_password_is_a_clear_error(
    handler: ModuleType, accounts_stack: MlflowStack, moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = user_secret(moto_server, accounts_stack.username, accounts_stack.password + "-stale")
    monkeypatch.setenv("ADMIN_SECRET_ARN", wrong)
    login = new_login()
    arn = user_secret(moto_server, login.username, login.password)
    with pytest.raises(handler.AccountError, match=r"refused the admin login from ADMIN_SECRET_ARN \(401\)"):
        handler.on_event(event("Create", login.username, arn), None)


@pytest.mark.usefixtures("lambda_env")
def test_unreachable_server_is_a_clear_error(
    handler: ModuleType, moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_WAIT_SECONDS", "2")
    login = new_login()
    arn = user_secret(moto_server, login.username, login.password)
    with pytest.raises(handler.AccountError, match="is unreachable or not ready"):
        handler.on_event(event("Create", login.username, arn), None)


@pytest.mark.usefixtures("lambda_env")
def test_the_admin_is_not_a_profile_user(
    handler: ModuleType, accounts_stack: MlflowStack, moto_server: MotoServer
) -> None:
    arn = user_secret(moto_server, accounts_stack.username, "another-password-123")
    with pytest.raises(handler.AccountError, match="is MLflow's admin"):
        handler.on_event(event("Create", accounts_stack.username, arn), None)
    assert status(accounts_stack, Account(accounts_stack.username, accounts_stack.password)) == 200
