"""Session-wide services on loopback for the integration tests.

`moto_server` is one moto process in multi-service mode (S3 here; other
suites use its Secrets Manager, CloudFormation, SageMaker, ... APIs).
`mlflow_stack` is PostgreSQL + MLflow + nginx started from the images' own
entrypoints. Missing nginx or PostgreSQL binaries fail the run (they are
apt packages CI installs), they never skip it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import mlflow
import pytest

from localrun.services import MotoServer
from localrun.stack import MlflowStack


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(log_dir=tmp_path_factory.mktemp("moto") / "logs")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_stack(
    tmp_path_factory: pytest.TempPathFactory, moto_server: MotoServer
) -> Iterator[MlflowStack]:
    stack = MlflowStack(
        tmp_path_factory.mktemp("mlflow-stack"), moto=moto_server,
        # Short, so the idle-connection test is quick and every test also
        # exercises MLflow reconnecting after PostgreSQL closed its connections.
        db_idle_timeout=3,
    )  # fmt: skip
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def client_env(mlflow_stack: MlflowStack) -> Iterator[dict[str, str]]:
    """Point the in-process MLflow client (and boto3) at the proxy and moto."""
    env = mlflow_stack.client_env()
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    yield env
    mlflow.set_tracking_uri(None)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
