"""CloudFormation custom resource: MLflow's registry webhook that starts model deployments.

Create registers a webhook for ``model_version_alias.created`` pointing at the
receiver's URL, signed with the webhook secret; Update changes the same webhook
in place (URL, secret, events) or registers a new one if it was deleted by
hand; Delete removes it (one already gone counts as removed). The physical id is
MLflow's webhook id. MLflow allows webhooks to admins only, so the function uses
the functions' login (the shared login, MLflow's admin, or in sso mode the admin
service account the tasks issue a token for), read from Secrets Manager at run
time with the webhook secret: neither is in the template, the event or a log line.

Environment: ``MLFLOW_SECRET_ARN``, ``MLFLOW_URL``, optional ``MLFLOW_TLS_SERVER_NAME``
(as the worker). ResourceProperties: ``Name``, ``Url``, ``WebhookSecretArn``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..mlflow_accounts.index import Mlflow
from .index import mlflow_from_environment

WEBHOOKS = "/api/2.0/mlflow/webhooks"
# The one event that deploys: an alias set on a version (first time or moved).
EVENTS = [{"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}]


class WebhookError(Exception):
    """One line for CloudFormation's event log (never a secret)."""


def _call(mlflow: Mlflow, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    status, answer = mlflow.request(method, path, body)
    if status in (200, 404):
        return status, answer
    reason = answer.get("message") or answer.get("error_code") or "no details"
    raise WebhookError(f"MLflow answered {method} {WEBHOOKS} with {status}: {str(reason)[:200]}")


def handle(event: Mapping[str, Any], *, mlflow: Mlflow, secret: str) -> dict[str, Any]:
    """The custom resource's answer: PhysicalResourceId is the webhook id."""
    properties = event["ResourceProperties"]
    body = {
        "name": properties["Name"],
        "url": properties["Url"],
        "events": EVENTS,
        "secret": secret,
        "description": "Deploys registered models to SageMaker endpoints when their alias moves",
        "status": "ACTIVE",
    }
    kind = event["RequestType"]
    if kind == "Delete":
        _call(mlflow, "DELETE", f"{WEBHOOKS}/{event['PhysicalResourceId']}")
        return {"PhysicalResourceId": event["PhysicalResourceId"]}
    if kind == "Update":
        status, answer = _call(mlflow, "PATCH", f"{WEBHOOKS}/{event['PhysicalResourceId']}", body)
        if status == 200:
            return {"PhysicalResourceId": answer["webhook"]["webhook_id"]}
    status, answer = _call(mlflow, "POST", WEBHOOKS, body)
    if status != 200:
        raise WebhookError(f"MLflow has no webhook API at {WEBHOOKS} (404)")
    return {"PhysicalResourceId": answer["webhook"]["webhook_id"]}


def on_event(event: Mapping[str, Any], _context: object) -> dict[str, Any]:  # pragma: no cover - AWS wiring
    import boto3

    secret_arn = event["ResourceProperties"]["WebhookSecretArn"]
    secret = boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    return handle(event, mlflow=mlflow_from_environment(), secret=secret)
