"""Tasks that start together against an empty database: one migrates, all serve.

Three MLflow servers in accounts mode (tracking schema, users' database and
schema, admin) start at the same moment against a database nobody has
touched, as a fresh deployment's tasks do. The entrypoint's advisory lock lets
exactly one of them create the schemas; the others wait, find them current,
and come up too.
"""

from __future__ import annotations

import secrets

import pytest
import requests

from localrun.stack import MlflowStack
from tests.integration.mlflow_users import ACCOUNTS_GROUP

pytestmark = [pytest.mark.integration, ACCOUNTS_GROUP]

TASKS = 3


def test_tasks_starting_together_migrate_once(accounts_stack: MlflowStack) -> None:
    assert accounts_stack.postgres is not None
    name = f"fresh_{secrets.token_hex(3)}"
    accounts_stack.postgres.ensure_database(name, accounts_stack.db_user, accounts_stack.db_password)
    db_env = {**accounts_stack.database_env(name), "MLFLOW_AUTH_DB_NAME": f"{name}_auth"}
    servers = [
        accounts_stack.new_mlflow_server(name=f"{name}-task-{i}", port=None, db_env=db_env, workers=1)
        for i in range(TASKS)
    ]
    try:
        for server in servers:
            server.process.start()
        for server in servers:
            server.wait_ready()
        for server in servers:
            response = requests.get(
                server.url + "/api/2.0/mlflow/users/current",
                auth=(accounts_stack.username, accounts_stack.password), timeout=30,
            )  # fmt: skip
            assert response.status_code == 200 and response.json()["user"]["is_admin"]
    finally:
        for server in servers:
            server.stop()
    logs = [server.process.log_path.read_text() for server in servers]
    everything = "\n".join(logs)
    assert everything.count("tracking schema migrated from an empty database") == 1, everything
    assert everything.count("tracking schema is current") == TASKS - 1
    assert everything.count(f"created database {name}_auth") == 1
    assert everything.count("auth schema migrated from an empty database") == 1
    assert everything.count("auth schema is current") == TASKS - 1
    assert everything.count("Created admin user") == 1
    assert "Traceback" not in everything
