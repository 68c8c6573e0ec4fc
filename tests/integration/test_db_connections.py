"""An idle server ends up holding no database connection, so Aurora Serverless
v2 can pause at 0 ACU; a busy one reuses pooled connections and reconnects
transparently after PostgreSQL closed the idle ones."""

from __future__ import annotations

import pytest
import requests

from localrun.process import wait_until
from localrun.stack import MlflowStack

pytestmark = pytest.mark.integration


def search(stack: MlflowStack) -> None:
    response = requests.get(
        stack.proxy_url + "/api/2.0/mlflow/experiments/search?max_results=5",
        auth=(stack.username, stack.password), timeout=30,
    )  # fmt: skip
    assert response.status_code == 200


def test_idle_connections_are_closed_and_reopened(mlflow_stack: MlflowStack) -> None:
    postgres = mlflow_stack.postgres
    assert postgres is not None
    for _ in range(10):
        search(mlflow_stack)
    assert postgres.count_connections(mlflow_stack.db_name) > 0, "expected pooled connections"
    wait_until(
        lambda: postgres.count_connections(mlflow_stack.db_name) == 0,
        timeout=(mlflow_stack.db_idle_timeout or 60) + 15, what="idle MLflow connections to close",
    )  # fmt: skip
    # The pool notices the closed connections and opens new ones.
    for _ in range(10):
        search(mlflow_stack)
