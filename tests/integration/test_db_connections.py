"""An idle server ends up holding no database connection, so Aurora Serverless
v2 can pause at 0 ACU; a busy one reuses pooled connections and reconnects
transparently after PostgreSQL closed the idle ones."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from localrun.process import wait_until
from localrun.services import Postgres
from localrun.stack import MlflowStack
from tests.integration.mlflow_users import ACCOUNTS_GROUP

pytestmark = pytest.mark.integration
# Each mode's session stack (conftest.py); the accounts cases run where the accounts-mode
# modules run, on that worker's accounts_stack, instead of starting another.
MODES = ["shared", pytest.param("accounts", marks=ACCOUNTS_GROUP)]


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


# A team arriving in the morning: everyone's first request lands together on a
# server whose pooled connections PostgreSQL has just closed (issue 23).
BURST_CLIENTS = 32
BURST_ROUNDS = 10


def terminate_sessions(postgres: Postgres) -> None:
    """What idle_session_timeout does to every pooled connection, at once."""
    conn = postgres.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
    finally:
        conn.close()


def burst(stack: MlflowStack, run_ids: list[str], step: int) -> list[int]:
    """One log-batch per run, all sent at the same moment; the status codes."""
    start = threading.Barrier(len(run_ids))

    def send(run_id: str) -> int:
        start.wait()
        response = requests.post(
            stack.proxy_url + "/api/2.0/mlflow/runs/log-batch",
            json={"run_id": run_id, "metrics": [{"key": "burst", "value": step, "timestamp": 0, "step": step}]},
            auth=(stack.username, stack.password), timeout=60,
        )  # fmt: skip
        return response.status_code

    with ThreadPoolExecutor(len(run_ids)) as pool:
        return list(pool.map(send, run_ids))


def logged_steps(stack: MlflowStack, run_id: str) -> set[int]:
    response = requests.get(
        stack.proxy_url + "/api/2.0/mlflow/metrics/get-history",
        params={"run_id": run_id, "metric_key": "burst"}, auth=(stack.username, stack.password), timeout=30,
    )  # fmt: skip
    response.raise_for_status()
    return {int(metric["step"]) for metric in response.json().get("metrics", [])}


def check_bursts(stack: MlflowStack, interrupt: Callable[[], None], rounds: int) -> None:
    experiment = requests.post(
        stack.proxy_url + "/api/2.0/mlflow/experiments/create",
        json={"name": f"burst-{uuid.uuid4().hex}"}, auth=(stack.username, stack.password), timeout=30,
    ).json()["experiment_id"]  # fmt: skip
    run_ids = [
        requests.post(
            stack.proxy_url + "/api/2.0/mlflow/runs/create",
            json={"experiment_id": experiment},
            auth=(stack.username, stack.password),
            timeout=30,
        ).json()["run"]["info"]["run_id"]  # fmt: skip
        for _ in range(BURST_CLIENTS)
    ]
    acknowledged: dict[str, set[int]] = {run_id: set() for run_id in run_ids}
    failures = []
    for step in range(rounds):
        interrupt()
        statuses = burst(stack, run_ids, step)
        failures += [(step, status) for status in statuses if status != 200]
        for run_id, status in zip(run_ids, statuses, strict=True):
            if status == 200:
                acknowledged[run_id].add(step)
    assert not failures, f"(round, status) of failed requests: {failures}"
    for run_id, steps in acknowledged.items():
        assert steps <= logged_steps(stack, run_id), f"run {run_id} lost acknowledged batches"


@pytest.mark.parametrize("mode", MODES)
def test_burst_after_closed_sessions(mode: str, request: pytest.FixtureRequest) -> None:
    stack: MlflowStack = request.getfixturevalue("mlflow_stack" if mode == "shared" else "accounts_stack")
    postgres = stack.postgres
    assert postgres is not None
    check_bursts(stack, lambda: terminate_sessions(postgres), BURST_ROUNDS)


@pytest.mark.parametrize("mode", MODES)
def test_burst_after_postgres_restart(mode: str, request: pytest.FixtureRequest) -> None:
    stack: MlflowStack = request.getfixturevalue("mlflow_stack" if mode == "shared" else "accounts_stack")
    postgres = stack.postgres
    assert postgres is not None

    def restart() -> None:
        postgres.stop()
        postgres.start()

    check_bursts(stack, restart, 3)
