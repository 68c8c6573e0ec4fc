"""MLflow users for the accounts-mode tests: accounts, the admin, REST calls as someone.

`ACCOUNTS_GROUP` puts a module on the xdist worker that holds the session's
`accounts_stack` (conftest.py), so one stack serves every accounts-mode module.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import mlflow
import pytest
import requests
from mlflow.server.auth.client import AuthServiceClient

from localrun.process import environment
from localrun.stack import MlflowStack

ACCOUNTS_GROUP = pytest.mark.xdist_group("accounts-stack")


@dataclass(frozen=True)
class Account:
    """An MLflow user and its password (kept out of repr)."""

    username: str
    password: str = field(repr=False)

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.password)


@contextmanager
def as_mlflow_user(stack: MlflowStack, account: Account | None = None) -> Iterator[Account]:
    """The in-process MLflow client (and AuthServiceClient) as `account` (default: the secret's user)."""
    account = account or Account(stack.username, stack.password)
    env = stack.client_env(account.username, account.password)
    with environment(env):
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        try:
            yield account
        finally:
            mlflow.set_tracking_uri(None)


class Accounts:
    """The admin of an accounts-mode stack, making users through MLflow's own client."""

    def __init__(self, stack: MlflowStack) -> None:
        self.stack = stack
        self.admin = Account(stack.username, stack.password)

    @contextmanager
    def client(self, account: Account | None = None) -> Iterator[AuthServiceClient]:
        """MLflow's AuthServiceClient through the proxy, as the admin unless told otherwise."""
        with as_mlflow_user(self.stack, account or self.admin):
            yield AuthServiceClient(self.stack.proxy_url)

    def new_user(self, prefix: str = "user", password: str | None = None) -> Account:
        account = Account(f"{prefix}-{secrets.token_hex(3)}", password or secrets.token_urlsafe(16) + ":@%")
        with self.client() as admin:
            admin.create_user(account.username, account.password)
        return account

    def delete_user(self, account: Account) -> None:
        with self.client() as admin:
            admin.delete_user(account.username)


def api(stack: MlflowStack, method: str, path: str, account: Account | None, **kwargs) -> requests.Response:
    """One REST call through the proxy as `account` (None: no credentials)."""
    return requests.request(
        method, stack.proxy_url + path, auth=account.auth if account else None, timeout=60, **kwargs
    )
