"""A loopback stand-in for the model deployment receiver's function URL, and the server settings it needs.

The server runs `receiver.handle` (the Lambda function's own code) on every POST,
with the event shaped as a function URL delivers it (lower-case headers, the body
as text). `start` records the request instead of starting a Step Functions
execution; the deliveries are kept as they arrived, so a test can replay one.
"""

from __future__ import annotations

import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from localrun.services import MotoServer
from localrun.stack import MlflowStack
from stacks.functions.model_deployment import receiver

# The modules that use the session's webhook_stack (conftest.py) run on the worker that holds it.
WEBHOOK_STACK_GROUP = pytest.mark.xdist_group("webhook-stack")

# MLflow lists webhooks once per MLFLOW_WEBHOOK_CACHE_TTL per worker (60 s by default): one here.
CACHE_TTL = 1


def webhook_server_env() -> dict[str, str]:
    """MLflow may deliver to loopback over http, forgets webhooks after a second, and shares one key.

    MLflow encrypts webhook secrets with MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY, or else with a
    key each process makes up: the stack hands every task MLFLOW_WEBHOOK_KEY, from which the
    entrypoint derives one key for all of its workers, as it does here.
    """
    return {
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http",
        "MLFLOW_WEBHOOK_CACHE_TTL": str(CACHE_TTL),
        "MLFLOW_WEBHOOK_KEY": secrets.token_urlsafe(32),
    }


def started_webhook_stack(
    root: Path, moto: MotoServer, *, auth_mode: str = "accounts", server_env: dict[str, str] | None = None,
    machine_clients: list[str] | None = None,
) -> MlflowStack:  # fmt: skip
    """The task (accounts mode unless told) with the webhook settings above, started (stop it when done)."""
    stack = MlflowStack(
        root, moto=moto, auth_mode=auth_mode, server_env={**webhook_server_env(), **(server_env or {})},
        machine_clients=machine_clients,
    )  # fmt: skip
    stack.start()
    return stack


class Receiver:
    """A loopback HTTP server running receiver.handle with a given secret; records what it started."""

    def __init__(self, secret: str, deployments: list[dict[str, Any]]) -> None:
        self.secret = secret
        self.deployments = deployments
        self.started: list[dict[str, Any]] = []
        self.execution_names: list[str] = []
        self.statuses: list[int] = []
        self.deliveries: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                event = {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                response = receiver.handle(event, secret=outer.secret, deployments=outer.deployments, start=outer.start)
                outer.deliveries.append(event)
                outer.statuses.append(response["statusCode"])
                self.send_response(response["statusCode"])
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def start(self, request: dict[str, Any], name: str) -> bool:
        """Record the execution the receiver starts; a name used before starts nothing, as in Step Functions."""
        if name in self.execution_names:
            return False
        self.execution_names.append(name)
        self.started.append(request)
        return True

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.statuses) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.shutdown()
