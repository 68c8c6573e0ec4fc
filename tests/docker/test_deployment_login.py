"""entrypoint.ensure_deployment_login: sso mode's login for the model deployment functions.

Against mlflow-oidc-auth's own store (SQLite here, PostgreSQL in the task) and moto's
Secrets Manager: the secret's user becomes an internal admin service account, its password
the access token the plugin issued, renewed only when it no longer signs in or nears expiry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stacks import names
from tests.docker.image_modules import image_module
from tests.fake_aws import use_fake_aws
from tests.mlflow_databases import fresh_database

GENERATED = {"username": names.DEPLOYMENT_LOGIN_USERNAME, "password": "generated-by-cloudformation-0123456789"}


@pytest.fixture(scope="module")
def entrypoint() -> Iterator[ModuleType]:
    with image_module("entrypoint") as module:
        yield module


@pytest.fixture
def store(tmp_path: Path) -> Any:
    """The plugin's users store, its schema migrated as the entrypoint migrates it."""
    from mlflow_oidc_auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(fresh_database("oidc-users", tmp_path / "users.db"))
    yield store
    store.engine.dispose()


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    use_fake_aws(monkeypatch, "us-east-1")
    with mock_aws():
        client = boto3.client("secretsmanager")
        arn = client.create_secret(Name="mlflow-deployment-login", SecretString=json.dumps(GENERATED))["ARN"]
        yield client, arn


def _login(secret: tuple[Any, str]) -> dict[str, str]:
    client, arn = secret
    return json.loads(client.get_secret_value(SecretId=arn)["SecretString"])


def test_the_secrets_user_becomes_an_admin_service_account_signing_in_with_an_issued_token(
    entrypoint: ModuleType, store: Any, secret: tuple[Any, str]
) -> None:
    entrypoint.ensure_deployment_login(secret[1], store)
    login = _login(secret)
    assert login["username"] == GENERATED["username"]
    assert login["password"] != GENERATED["password"]
    assert store.authenticate_user(login["username"], login["password"])
    assert not store.authenticate_user(login["username"], GENERATED["password"])
    user = store.get_user(login["username"])
    assert (user.is_admin, user.is_service_account, user.service_account_source) == (True, True, "internal")
    (token,) = store.list_user_tokens(login["username"])
    lifetime = token.expires_at - datetime.now(timezone.utc).replace(tzinfo=None)
    assert timedelta(days=364) < lifetime <= entrypoint.DEPLOYMENT_TOKEN_LIFETIME


def test_a_live_token_is_kept_and_one_near_expiry_or_not_signing_in_is_replaced(
    entrypoint: ModuleType, store: Any, secret: tuple[Any, str]
) -> None:
    client, arn = secret
    entrypoint.ensure_deployment_login(arn, store)
    issued = _login(secret)
    # Every task start runs it: a live token far from expiry stays (no new secret version).
    versions = len(client.list_secret_version_ids(SecretId=arn)["Versions"])
    entrypoint.ensure_deployment_login(arn, store)
    assert _login(secret) == issued
    assert len(client.list_secret_version_ids(SecretId=arn)["Versions"]) == versions

    # A token with fewer days left than the renewal margin is replaced by a new year's one.
    soon = datetime.now(timezone.utc).replace(tzinfo=None) + entrypoint.DEPLOYMENT_TOKEN_RENEW_BEFORE / 2
    _, expiring, _ = store.replace_user_token(issued["username"], entrypoint.DEPLOYMENT_TOKEN_NAME, soon, None)
    client.put_secret_value(SecretId=arn, SecretString=json.dumps({**issued, "password": expiring}))
    entrypoint.ensure_deployment_login(arn, store)
    renewed = _login(secret)["password"]
    assert renewed not in (expiring, issued["password"])
    assert store.authenticate_user(issued["username"], renewed)
    assert not store.authenticate_user(issued["username"], expiring)

    # A value that does not sign in (edited by hand, say) is replaced too.
    client.put_secret_value(SecretId=arn, SecretString=json.dumps({**issued, "password": "edited-by-hand"}))
    entrypoint.ensure_deployment_login(arn, store)
    assert store.authenticate_user(issued["username"], _login(secret)["password"])


@pytest.mark.parametrize(
    "value",
    ["not json", json.dumps({"password": "no user"}), json.dumps(["a", "list"])],
    ids=["text", "no user", "list"],
)
def test_an_unreadable_secret_leaves_mlflow_starting_and_says_so(
    entrypoint: ModuleType, store: Any, secret: tuple[Any, str], capsys: pytest.CaptureFixture[str], value: str
) -> None:
    client, arn = secret
    client.put_secret_value(SecretId=arn, SecretString=value)
    entrypoint.ensure_deployment_login(arn, store)
    said = capsys.readouterr()
    assert f"model deployments get no MLflow login: could not read {{username, password}} from {arn}" in (
        said.out + said.err
    )
    assert not store.has_user(GENERATED["username"])
    assert client.get_secret_value(SecretId=arn)["SecretString"] == value, "left as it was"


def test_a_missing_secret_leaves_mlflow_starting(
    entrypoint: ModuleType, store: Any, secret: tuple[Any, str], capsys: pytest.CaptureFixture[str]
) -> None:
    entrypoint.ensure_deployment_login(secret[1] + "-gone", store)
    said = capsys.readouterr()
    assert "(ResourceNotFoundException)" in said.out + said.err
    assert not store.has_user(GENERATED["username"])


def test_a_persons_account_named_in_the_secret_gets_no_token(
    entrypoint: ModuleType, store: Any, secret: tuple[Any, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Whoever may write the secret cannot have the tasks issue a token for somebody else's user."""
    client, arn = secret
    store.create_user("alice@example.com", "Alice", is_admin=False)
    client.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": "alice@example.com", "password": "x"}))
    entrypoint.ensure_deployment_login(arn, store)
    said = capsys.readouterr()
    assert "alice@example.com (from" in said.out + said.err and "no token issued" in said.out + said.err
    assert store.list_user_tokens("alice@example.com") == []
    assert _login(secret)["password"] == "x"
