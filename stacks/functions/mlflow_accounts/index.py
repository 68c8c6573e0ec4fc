"""CloudFormation custom resource: one MLflow user per SageMaker Studio profile (accounts mode).

Wired by CDK's `custom_resources.Provider` (stacks/components/); the handler
is `index.on_event`. It talks to MLflow's auth API through the internal load
balancer as the admin, whose login it reads from Secrets Manager, so that
credential never leaves AWS: CloudFormation only sees a user name and a
secret ARN. Standard library and boto3 only (what the Lambda runtime has).

Environment:
  ADMIN_SECRET_ARN   JSON secret {"username", "password"}: MLflow's admin
  MLFLOW_URL         base URL of the internal load balancer
  MLFLOW_TLS_SERVER_NAME
                     optional: the name the load balancer's certificate is
                     for (custom domain), sent as SNI and as Host
  MLFLOW_WAIT_SECONDS
                     optional: how long to keep trying while MLflow is
                     unreachable or answers 5xx, e.g. tasks restarting (90)
ResourceProperties:
  Username           the MLflow user
  UserSecretArn      JSON secret {"username", "password"} of that user

Create and Update create the user if it is missing and otherwise set its
password from the secret, so repeating them is safe. Delete deletes the user;
one that is already gone counts as deleted. PhysicalResourceId is
`mlflow-user/<username>`. No secret value is ever logged or put in an error.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import re
import socket
import ssl
import time
import urllib.parse
from typing import Any

import boto3

PREFIX = "mlflow-user/"
USERS = "/api/2.0/mlflow/users"
REQUEST_TIMEOUT = 15
RETRY_STATUSES = {502, 503, 504}

logger = logging.getLogger()
logger.setLevel(logging.INFO)


class AccountError(Exception):
    """One line for CloudFormation's event log: what failed and what to check."""


class Mlflow:
    """MLflow's auth REST API as the admin, through the load balancer."""

    def __init__(self, url: str, admin: tuple[str, str], tls_server_name: str | None, wait_seconds: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AccountError(f"MLFLOW_URL must be http(s)://host[:port], got {url!r}")
        self.url = url.rstrip("/")
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        self.tls_server_name = tls_server_name
        self.wait_seconds = wait_seconds
        token = base64.b64encode(f"{admin[0]}:{admin[1]}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}
        if tls_server_name:
            self.headers["Host"] = tls_server_name

    def _connection(self) -> http.client.HTTPConnection:
        if self.scheme == "http":
            return http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
        return _TlsConnection(self.host, self.port, self.tls_server_name or self.host)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """(status, JSON body or {}), retrying while MLflow is unreachable or restarting."""
        deadline = time.monotonic() + self.wait_seconds
        delay = 1.0
        while True:
            problem = None
            try:
                status, data = self._once(method, path, body)
                if status not in RETRY_STATUSES:
                    return status, data
                problem = f"HTTP {status}"
            except (OSError, http.client.HTTPException) as error:
                problem = f"{type(error).__name__}: {error}"
            if time.monotonic() + delay > deadline:
                raise AccountError(
                    f"MLflow at {self.url} is unreachable or not ready ({problem}) after "
                    f"{self.wait_seconds:.0f} s; check that its tasks are running and healthy"
                )
            logger.info("MLflow not ready (%s); retrying in %.0f s", problem, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _once(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        headers = dict(self.headers)
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection = self._connection()
        try:
            connection.request(method, self.base_path + path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        return response.status, data if isinstance(data, dict) else {}

    def checked(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, ok: tuple[int, ...] = (200,)
    ) -> tuple[int, dict[str, Any]]:
        """The answer if its status is in `ok`; otherwise one clear AccountError."""
        status, data = self.request(method, path, body)
        if status == 401:
            raise AccountError(
                f"MLflow at {self.url} refused the admin login from ADMIN_SECRET_ARN (401); check that the "
                "secret holds the admin's current password"
            )
        if status == 403:
            raise AccountError(f"MLflow at {self.url} says the login from ADMIN_SECRET_ARN is not an admin (403)")
        if status == 404 and data.get("error_code") is None:
            raise AccountError(
                f"MLflow at {self.url} has no user API ({method} {path}: 404); does it run with auth_mode accounts?"
            )
        if status not in ok:
            reason = data.get("message") or data.get("error_code") or "no details"
            raise AccountError(f"MLflow at {self.url} answered {method} {path} with {status}: {str(reason)[:200]}")
        return status, data


class _TlsConnection(http.client.HTTPSConnection):
    """HTTPS to the load balancer's address, verifying its certificate for another name."""

    def __init__(self, host: str, port: int, server_name: str) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(host, port, timeout=REQUEST_TIMEOUT, context=self._tls)
        self.server_name = server_name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.server_name)


def read_login(secret_arn: str, what: str) -> tuple[str, str]:
    """(username, password) from a JSON secret; errors name the secret, never its value."""
    try:
        value = boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)
    except Exception as error:  # noqa: BLE001 - boto's errors vary; the message says which secret
        code = getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__)
        raise AccountError(f"cannot read {what} {secret_arn} ({code})") from None
    malformed = AccountError(
        f"{what} {secret_arn} is malformed: expected JSON with non-empty string fields username and password"
    )
    try:
        data = json.loads(value.get("SecretString") or "")
    except ValueError:
        raise malformed from None  # the decoder's message quotes the secret
    if not isinstance(data, dict):
        raise malformed
    username, password = data.get("username"), data.get("password")
    if not (isinstance(username, str) and username and isinstance(password, str) and password):
        raise malformed
    return username, password


def _settings() -> tuple[Mlflow, str]:
    missing = [name for name in ("ADMIN_SECRET_ARN", "MLFLOW_URL") if not os.environ.get(name)]
    if missing:
        raise AccountError(f"missing environment: {', '.join(missing)}")
    wait = os.environ.get("MLFLOW_WAIT_SECONDS") or "90"
    try:
        wait_seconds = float(wait)
    except ValueError:
        raise AccountError(f"MLFLOW_WAIT_SECONDS must be a number, got {wait!r}") from None
    admin = read_login(os.environ["ADMIN_SECRET_ARN"], "admin secret")
    mlflow = Mlflow(os.environ["MLFLOW_URL"], admin, os.environ.get("MLFLOW_TLS_SERVER_NAME") or None, wait_seconds)
    return mlflow, admin[0]


def _username(event: dict[str, Any]) -> str:
    username = (event.get("ResourceProperties") or {}).get("Username")
    if not isinstance(username, str) or not re.fullmatch(r"[^\s:]{1,255}", username):
        raise AccountError(
            f"ResourceProperties.Username must be 1-255 characters without ':' or spaces, got {username!r}"
        )
    return username


def create_or_update(event: dict[str, Any]) -> dict[str, Any]:
    username = _username(event)
    secret_arn = (event.get("ResourceProperties") or {}).get("UserSecretArn")
    if not isinstance(secret_arn, str) or not secret_arn:
        raise AccountError("ResourceProperties.UserSecretArn is missing")
    secret_username, password = read_login(secret_arn, "user secret")
    if secret_username != username:
        raise AccountError(f"user secret {secret_arn} is for {secret_username!r}, not for Username {username!r}")
    mlflow, admin_username = _settings()
    if username == admin_username:
        raise AccountError(f"{username!r} is MLflow's admin (from ADMIN_SECRET_ARN); choose another Username")
    status, _ = mlflow.checked("GET", f"{USERS}/get?{urllib.parse.urlencode({'username': username})}", ok=(200, 404))
    if status == 404:
        login = {"username": username, "password": password}
        created, data = mlflow.checked("POST", f"{USERS}/create", login, ok=(200, 400))
        if created == 200:
            logger.info("created MLflow user %s", username)
        elif data.get("error_code") == "RESOURCE_ALREADY_EXISTS":  # created meanwhile: set the password
            status = 200
        else:
            raise AccountError(f"MLflow refused to create user {username!r}: {str(data.get('message'))[:200]}")
    if status == 200:
        mlflow.checked("PATCH", f"{USERS}/update-password", {"username": username, "password": password})
        logger.info("set the password of MLflow user %s from its secret", username)
    return {"PhysicalResourceId": PREFIX + username, "Data": {"Username": username}}


def delete(event: dict[str, Any]) -> dict[str, Any]:
    physical_id = event.get("PhysicalResourceId") or ""
    if not physical_id.startswith(PREFIX):
        # Create failed before a user existed; CloudFormation cleans up an id we never issued.
        logger.info("nothing to delete for physical id %s", physical_id)
        return {"PhysicalResourceId": physical_id}
    username = physical_id[len(PREFIX) :]
    mlflow, admin_username = _settings()
    if username == admin_username:
        logger.info("not deleting %s: it is MLflow's admin", username)
        return {"PhysicalResourceId": physical_id}
    status, data = mlflow.checked("DELETE", f"{USERS}/delete", {"username": username}, ok=(200, 404))
    if status == 404:
        logger.info("MLflow user %s was already gone", username)
    else:
        logger.info("deleted MLflow user %s", username)
    return {"PhysicalResourceId": physical_id}


def on_event(event: dict[str, Any], context: Any) -> dict[str, Any]:  # noqa: ARG001 - Lambda's signature
    request = event.get("RequestType")
    logger.info("%s for %s", request, (event.get("ResourceProperties") or {}).get("Username"))
    try:
        if request in ("Create", "Update"):
            return create_or_update(event)
        if request == "Delete":
            return delete(event)
        raise AccountError(f"unknown RequestType {request!r}")
    except AccountError as error:
        logger.error("%s", error)
        raise
