"""Lambda function URL behind MLflow's registry webhook: verify, then start a deployment.

MLflow signs each delivery with HMAC-SHA256 over ``<delivery id>.<timestamp>.<body>``
(header ``X-MLflow-Signature: v1,<base64>``). A delivery whose signature does not
match, or whose timestamp is more than five minutes off, is refused before anything
is started: a captured delivery cannot be replayed later. Within those minutes
the same delivery (MLflow retries one that got no answer; a replay) starts at most
one execution: it is named after the delivery id, which the signature covers, and
Step Functions keeps execution names unique. Only
``model_version_alias.created`` for a configured model and alias starts anything;
a deleted alias never deletes an endpoint.

Standard library and boto3 only (what the Lambda runtime has). The secret is read
from Secrets Manager at run time (``WEBHOOK_SECRET_ARN``), never from the environment.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

MAX_AGE_SECONDS = 300
SIGNATURE_VERSION = "v1"
# What Step Functions takes as an execution name (at most 80 of letters, digits, - and _).
_EXECUTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")


class Refused(Exception):
    """A delivery that must not start anything; the message says why (no secret in it)."""


def expected_signature(secret: str, delivery_id: str, timestamp: str, body: str) -> str:
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


class Delivery(NamedTuple):
    body: dict[str, Any]
    delivery_id: str


def execution_name(delivery_id: str) -> str:
    """The deployment's execution name: the delivery id, or its digest if Step Functions would refuse it."""
    if _EXECUTION_NAME.fullmatch(delivery_id):
        return delivery_id
    return hashlib.sha256(delivery_id.encode()).hexdigest()


def verify(secret: str, headers: Mapping[str, str], body: str, now: float) -> Delivery:
    """The parsed delivery and its id, or Refused: bad or missing signature, stale or future timestamp."""
    lower = {k.lower(): v for k, v in headers.items()}
    signature = lower.get("x-mlflow-signature", "")
    timestamp = lower.get("x-mlflow-timestamp", "")
    delivery_id = lower.get("x-mlflow-delivery-id", "")
    if not (signature and timestamp.isdigit() and delivery_id):
        raise Refused("missing signature headers")
    if abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        raise Refused("timestamp older than 5 minutes (or in the future)")
    if not hmac.compare_digest(signature, expected_signature(secret, delivery_id, timestamp, body)):
        raise Refused("bad signature")
    parsed: dict[str, Any] = json.loads(body)
    return Delivery(parsed, delivery_id)


def deployment_request(delivery: Mapping[str, Any], deployments: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The worker's input for an alias set on a configured model, else None (nothing to do)."""
    if (delivery.get("entity"), delivery.get("action")) != ("model_version_alias", "created"):
        return None
    data = delivery.get("data") or {}
    for deployment in deployments:
        if deployment["model_name"] == data.get("name") and deployment["alias"] == data.get("alias"):
            return {**deployment, "version": str(data["version"])}
    return None


def handle(
    event: Mapping[str, Any],
    *,
    secret: str,
    deployments: list[dict[str, Any]],
    start: Callable[[dict[str, Any], str], bool],
    now: float | None = None,
) -> dict[str, Any]:
    """Function URL event in, function URL response out.

    ``start(request, execution name)`` launches the worker; False when an execution of that
    name has already been started (with another input, or has ended): nothing new starts.
    """
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    try:
        delivery = verify(secret, event.get("headers") or {}, body, time.time() if now is None else now)
    except (Refused, ValueError) as refused:
        return {"statusCode": 401, "body": json.dumps({"refused": str(refused)})}
    request = deployment_request(delivery.body, deployments)
    if request is None:
        return {"statusCode": 200, "body": json.dumps({"started": False})}
    if not start(request, execution_name(delivery.delivery_id)):
        return {"statusCode": 200, "body": json.dumps({"started": False, "duplicate": True})}
    return {"statusCode": 202, "body": json.dumps({"started": True, "version": request["version"]})}


def start_execution(sfn: Any, machine: str, request: dict[str, Any], name: str) -> bool:
    """Start the state machine once per name; False if that name was taken (a repeated delivery).

    Step Functions answers a repeat of a running execution's name and input with that
    execution, and ExecutionAlreadyExists otherwise.
    """
    try:
        sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps(request))
    except sfn.exceptions.ExecutionAlreadyExists:
        return False
    return True


def handler(event: Mapping[str, Any], _context: object) -> dict[str, Any]:  # pragma: no cover - AWS wiring
    import boto3

    secret = boto3.client("secretsmanager").get_secret_value(SecretId=os.environ["WEBHOOK_SECRET_ARN"])["SecretString"]
    machine = os.environ["STATE_MACHINE_ARN"]
    sfn = boto3.client("stepfunctions")

    def start(request: dict[str, Any], name: str) -> bool:
        return start_execution(sfn, machine, request, name)

    return handle(event, secret=secret, deployments=json.loads(os.environ["DEPLOYMENTS"]), start=start)
