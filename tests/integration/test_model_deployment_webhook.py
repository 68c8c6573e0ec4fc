"""The stack's webhook registration against the local task in accounts mode, end to end.

The custom resource's handler (stacks/functions/model_deployment/webhook.py)
registers the webhook through nginx as the admin, the real MLflow client sets
and moves an alias, and MLflow's own delivery posts the signed event to a
loopback receiver running the receiver's handler: each move starts exactly
one deployment of the new version. A non-admin cannot register webhooks; an
update changes the secret in place; a delete removes the webhook.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from localrun.stack import MlflowStack
from stacks.functions.mlflow_accounts.index import Mlflow
from stacks.functions.model_deployment import webhook
from tests.integration.mlflow_users import Account, Accounts, api, as_mlflow_user
from tests.integration.webhook_receiver import CACHE_TTL, WEBHOOK_STACK_GROUP, Receiver
from tests.test_readme import doc, section

# On the worker that holds the session's webhook_stack (conftest.py), not a second one of its own.
pytestmark = [pytest.mark.integration, WEBHOOK_STACK_GROUP]

SECRET = "first-webhook-secret-for-tests"
ROTATED = "second-webhook-secret-for-tests"
MODEL = "churn"
DEPLOYMENTS = [{"model_name": MODEL, "alias": "champion", "instance_type": "ml.m5.large", "instance_count": 1}]


@pytest.fixture(scope="module")
def stack(webhook_stack: MlflowStack) -> MlflowStack:
    """The session's accounts-mode stack whose MLflow may deliver to loopback over http (the receiver here,
    not a function URL); test_model_deployment_e2e's accounts run uses it too and deletes its webhook."""
    return webhook_stack


@pytest.fixture(scope="module")
def hook() -> Iterator[Receiver]:
    server = Receiver(SECRET, DEPLOYMENTS)
    yield server
    server.stop()


def _event(kind: str, url: str, physical_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "RequestType": kind,
        "ResourceProperties": {"Name": "sagemaker-model-deployment", "Url": url, "WebhookSecretArn": "unused"},
    }
    if physical_id:
        event["PhysicalResourceId"] = physical_id
    return event


def _admin_client(stack: MlflowStack) -> Mlflow:
    return Mlflow(stack.proxy_url, (stack.username, stack.password), None, 30)


def _webhooks(stack: MlflowStack) -> list[dict[str, Any]]:
    response = api(stack, "GET", "/api/2.0/mlflow/webhooks", Account(stack.username, stack.password))
    response.raise_for_status()
    hooks: list[dict[str, Any]] = response.json().get("webhooks", [])
    return hooks


def _register_version(stack: MlflowStack) -> str:
    with as_mlflow_user(stack):
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                LogisticRegression().fit([[0.0], [1.0]], [0, 1]), name="model",
                registered_model_name=MODEL, pip_requirements=["scikit-learn"],
            )  # fmt: skip
    return str(info.registered_model_version)


def _set_alias(stack: MlflowStack, version: str) -> None:
    with as_mlflow_user(stack):
        MlflowClient().set_registered_model_alias(MODEL, "champion", version)


def test_registered_webhook_deploys_each_alias_move_and_follows_updates(stack: MlflowStack, hook: Receiver) -> None:
    created = webhook.handle(_event("Create", hook.url), mlflow=_admin_client(stack), secret=SECRET)
    webhook_id = created["PhysicalResourceId"]
    (registered,) = _webhooks(stack)
    assert registered["webhook_id"] == webhook_id
    assert registered["url"] == hook.url
    assert registered["status"] == "ACTIVE"
    assert registered["events"] == webhook.EVENTS == [{"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}]
    assert SECRET not in json.dumps(registered)  # MLflow never hands the secret back

    first, second = _register_version(stack), _register_version(stack)
    _set_alias(stack, first)
    hook.wait_for(1)
    _set_alias(stack, second)
    hook.wait_for(2)
    assert hook.statuses == [202, 202]
    assert [s["version"] for s in hook.started] == [first, second]
    assert all(s["model_name"] == MODEL and s["instance_type"] == "ml.m5.large" for s in hook.started)

    # Update rotates the secret in place: the same webhook, and deliveries signed with the new one.
    updated = webhook.handle(_event("Update", hook.url, webhook_id), mlflow=_admin_client(stack), secret=ROTATED)
    assert updated["PhysicalResourceId"] == webhook_id
    time.sleep(CACHE_TTL + 1)
    _set_alias(stack, first)
    hook.wait_for(3)
    assert hook.statuses[2] == 401  # the receiver still holds the old secret
    hook.secret = ROTATED
    _set_alias(stack, second)
    hook.wait_for(4)
    assert hook.statuses[3] == 202
    assert [s["version"] for s in hook.started] == [first, second, second]

    webhook.handle(_event("Delete", hook.url, webhook_id), mlflow=_admin_client(stack), secret=ROTATED)
    assert _webhooks(stack) == []
    # Deleting again (already gone) succeeds: CloudFormation may retry a delete.
    webhook.handle(_event("Delete", hook.url, webhook_id), mlflow=_admin_client(stack), secret=ROTATED)


def test_the_readmes_release_and_roll_back_lines_each_start_a_deployment(stack: MlflowStack, hook: Receiver) -> None:
    """README "Deploying models": the release line deploys version 2, the roll-back line version 1."""
    block = re.search(r"```python\n(.*?)```", section(doc("README.md"), "## Deploying models"), re.S)
    assert block is not None
    hook.secret, before, started_before = SECRET, len(hook.statuses), len(hook.started)
    with as_mlflow_user(stack):
        # The test above left it on version 2; setting an alias where it is already is no event.
        MlflowClient().delete_registered_model_alias(MODEL, "champion")
    created = webhook.handle(_event("Create", hook.url), mlflow=_admin_client(stack), secret=SECRET)
    time.sleep(CACHE_TTL + 1)  # the workers forget the webhooks of the test before
    try:
        with as_mlflow_user(stack):
            versions = {v.version for v in MlflowClient().search_model_versions(f"name='{MODEL}'")}
            assert {"1", "2"} <= versions  # made by the test above
            exec(block.group(1), {})  # noqa: S102 - the README's own lines, against the local server
        hook.wait_for(before + 2)
    finally:
        webhook.handle(
            _event("Delete", hook.url, created["PhysicalResourceId"]), mlflow=_admin_client(stack), secret=SECRET
        )
    assert hook.statuses[before:] == [202, 202]
    assert [s["version"] for s in hook.started[started_before:]] == ["2", "1"]


def test_an_update_of_a_webhook_deleted_by_hand_registers_a_new_one(stack: MlflowStack, hook: Receiver) -> None:
    answer = webhook.handle(_event("Update", hook.url, "gone-by-hand"), mlflow=_admin_client(stack), secret=SECRET)
    assert [h["webhook_id"] for h in _webhooks(stack)] == [answer["PhysicalResourceId"]]
    webhook.handle(_event("Delete", hook.url, answer["PhysicalResourceId"]), mlflow=_admin_client(stack), secret=SECRET)


def test_only_the_admin_may_register_webhooks(stack: MlflowStack, hook: Receiver) -> None:
    user = Accounts(stack).new_user("webhooks")
    client = Mlflow(stack.proxy_url, user.auth, None, 30)
    with pytest.raises(webhook.WebhookError, match="403"):
        webhook.handle(_event("Create", hook.url), mlflow=client, secret=SECRET)
    assert _webhooks(stack) == []
