"""accounts mode with several tasks: what one task decides holds on every other at once.

A second MLflow server (another ECS task: same database, same Flask secret
key, its own workers and caches) runs next to the stack's; it is called
directly, the stack's own through the proxy. Each is asked often enough that
every worker process has checked (and cached) the credential before it
changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests
from mlflow.server import auth as mlflow_auth

from localrun.services import MlflowServer
from localrun.stack import MlflowStack
from tests.integration.conftest import another_task
from tests.integration.mlflow_users import ACCOUNTS_GROUP, Account, Accounts

pytestmark = [pytest.mark.integration, ACCOUNTS_GROUP]

PATH = "/api/2.0/mlflow/experiments/search?max_results=1"
ASKS = 8  # per task: spread over all its workers
# The password older MLflow versions shipped for the admin, which MLflow refuses an admin since.
LEGACY_DEFAULT_ADMIN_PASSWORD = mlflow_auth._LEGACY_DEFAULT_ADMIN_PASSWORD


@pytest.fixture(scope="module")
def second_task(accounts_stack: MlflowStack) -> Iterator[MlflowServer]:
    yield from another_task(accounts_stack)


def statuses(stack: MlflowStack, task: MlflowServer, account: Account) -> set[int]:
    """What the stack's task (through the proxy) and the other task answer `account`."""
    seen = set()
    for base in (stack.proxy_url, task.url):
        for _ in range(ASKS):
            seen.add(requests.get(base + PATH, auth=account.auth, timeout=30).status_code)
    return seen


def test_a_deleted_user_is_refused_at_once_on_every_task(
    accounts: Accounts, accounts_stack: MlflowStack, second_task: MlflowServer
) -> None:
    user = accounts.new_user("leaver")
    assert statuses(accounts_stack, second_task, user) == {200}
    accounts.delete_user(user)
    assert statuses(accounts_stack, second_task, user) == {401}


def test_a_changed_password_takes_effect_at_once_on_every_task(
    accounts: Accounts, accounts_stack: MlflowStack, second_task: MlflowServer
) -> None:
    old = accounts.new_user("rotating")
    assert statuses(accounts_stack, second_task, old) == {200}
    new = Account(old.username, old.password + "-rotated")
    with accounts.client() as admin:
        admin.update_user_password(old.username, new.password)
    assert statuses(accounts_stack, second_task, old) == {401}
    assert statuses(accounts_stack, second_task, new) == {200}


def test_a_promoted_user_is_checked_again_at_once_on_every_task(
    accounts: Accounts, accounts_stack: MlflowStack, second_task: MlflowServer
) -> None:
    """Promotion changes no password hash, yet MLflow refuses an admin the old public default
    password (GHSA-gq3w-7jj3-x7gr): a sign-in remembered before must not outlive it."""
    user = accounts.new_user("promoted", password=LEGACY_DEFAULT_ADMIN_PASSWORD)
    assert statuses(accounts_stack, second_task, user) == {200}  # an ordinary user may have it
    with accounts.client() as admin:
        admin.update_user_admin(user.username, True)
    assert statuses(accounts_stack, second_task, user) == {401}
    with accounts.client() as admin:
        admin.update_user_admin(user.username, False)
    assert statuses(accounts_stack, second_task, user) == {200}


def test_a_form_token_from_one_task_is_accepted_by_another(
    accounts: Accounts, accounts_stack: MlflowStack, second_task: MlflowServer
) -> None:
    """The sign-up form's CSRF token is signed with the shared Flask secret key."""
    session = requests.Session()
    session.auth = accounts.admin.auth
    page = session.get(accounts_stack.mlflow.url + "/signup", timeout=30)
    assert page.status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text[:300]
    username = "signed-up-" + token.group(1)[-6:].lower().replace("-", "x").replace("_", "x").replace(".", "x")
    created = session.post(
        second_task.url + "/api/2.0/mlflow/users/create-ui",
        data={"csrf_token": token.group(1), "username": username, "password": "a-long-password-1"},
        timeout=30,
    )
    assert created.status_code == 200, created.text[:300]
    assert "Successfully signed up" in created.text
    response = requests.get(second_task.url + PATH, auth=(username, "a-long-password-1"), timeout=30)
    assert response.status_code == 200
