"""accounts mode on an MLflow its patches were not reviewed against: the task starts, and answers
as the reviewed one does, with MLflow's own code where a patch is left out.

Each case is another task of the accounts stack (same database and key)
whose image files are changed as a new MLflow release would look to them:
either credential_cache.py does not even load (a private name auth_lookups.py
imports is gone), or every reviewed source differs (each patch is left out
with one log line). Both are asked what the stack's own task is asked.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from localrun.services import MLFLOW_ENTRYPOINT, MlflowServer
from localrun.stack import MlflowStack
from tests.integration.mlflow_users import ACCOUNTS_GROUP, Account, Accounts

pytestmark = [pytest.mark.integration, ACCOUNTS_GROUP]

NOT_REVIEWED = re.compile(r"is not the reviewed one \(([\w.]+\.py(?:: [\w-]+)?)")


def does_not_load(app: Path) -> None:
    (app / "auth_lookups.py").write_text("from mlflow.server.auth.sqlalchemy_store import GrantRowOfANewRelease\n")


def every_source_differs(app: Path) -> None:
    text = (app / "reviewed_source.py").read_text()
    old = "hashlib.sha256(text.encode())"
    assert old in text
    (app / "reviewed_source.py").write_text(text.replace(old, "hashlib.sha256(text.encode() + b'a release')"))


EVERY_PATCH = {
    "credential_cache.py: cache", "credential_cache.py: current-user", "auth_lookups.py: runs",
    "auth_lookups.py: users", "alias_permissions.py", "server_exec.py",
}  # fmt: skip
# What is changed in the image's files -> the patches the task must say it left out.
CHANGES = {
    "does not load": (does_not_load, {"credential_cache.py"}),
    "every source differs": (every_source_differs, EVERY_PATCH),
}


@pytest.fixture(scope="module", params=list(CHANGES))
def unreviewed(
    request: pytest.FixtureRequest, accounts_stack: MlflowStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[MlflowServer, set[str]]]:
    """A started task of the changed image, and the patches it must say it left out."""
    change, left_out = CHANGES[request.param]
    app = tmp_path_factory.mktemp("image") / "mlflow"
    shutil.copytree(MLFLOW_ENTRYPOINT.parent, app, ignore=shutil.ignore_patterns("__pycache__"))
    change(app)
    name = "mlflow-" + request.param.replace(" ", "-")
    server = accounts_stack.new_mlflow_server(name=name, port=None, entrypoint=app / "entrypoint.py")
    server.start()
    try:
        yield server, left_out
    finally:
        server.stop()


@pytest.fixture(scope="module")
def people(accounts: Accounts, accounts_stack: MlflowStack) -> dict[str, object]:
    """An owner with an experiment and a run, someone else, and an admin (the stack's)."""
    owner, other = accounts.new_user("owner"), accounts.new_user("other")
    created = requests.post(
        accounts_stack.mlflow.url + "/api/2.0/mlflow/experiments/create",
        json={"name": f"owned-{owner.username}"}, auth=owner.auth, timeout=30,
    )  # fmt: skip
    created.raise_for_status()
    experiment_id = created.json()["experiment_id"]
    run = requests.post(
        accounts_stack.mlflow.url + "/api/2.0/mlflow/runs/create",
        json={"experiment_id": experiment_id}, auth=owner.auth, timeout=30,
    )  # fmt: skip
    run.raise_for_status()
    return {
        "owner": owner, "other": other, "admin": accounts.admin, "experiment_id": experiment_id,
        "run_id": run.json()["run"]["info"]["run_id"],
    }  # fmt: skip


def questions(people: dict[str, object]) -> list[tuple[str, str, Account | None, dict | None]]:
    owner, other, admin = people["owner"], people["other"], people["admin"]
    assert isinstance(owner, Account) and isinstance(other, Account) and isinstance(admin, Account)
    wrong = Account(owner.username, owner.password + "x")
    experiment = f"/api/2.0/mlflow/experiments/get?experiment_id={people['experiment_id']}"
    batch = {"run_id": people["run_id"], "metrics": [{"key": "m", "value": 1.0, "timestamp": 1, "step": 0}]}
    return [
        ("GET", "/api/2.0/mlflow/experiments/search?max_results=5", account, None)
        for account in (owner, other, admin, wrong, None)
    ] + [
        ("GET", experiment, owner, None),
        ("GET", experiment, other, None),
        ("POST", "/api/2.0/mlflow/runs/log-batch", owner, batch),
        ("POST", "/api/2.0/mlflow/runs/log-batch", other, batch),
        ("POST", "/api/2.0/mlflow/runs/log-batch", owner, {**batch, "run_id": "0" * 32}),
        ("GET", "/api/2.0/mlflow/users/get?username=" + other.username, other, None),
        ("GET", "/api/2.0/mlflow/users/get?username=" + owner.username, other, None),
        ("GET", "/api/2.0/mlflow/users/current", other, None),
        ("GET", "/ajax-api/3.0/jobs/123", other, None),
    ]


def answers(base: str, people: dict[str, object]) -> list[int]:
    return [
        requests.request(method, base + path, auth=account.auth if account else None, json=body, timeout=60).status_code
        for method, path, account, body in questions(people)
    ]


def test_a_task_whose_patches_do_not_fit_starts_and_answers_as_the_reviewed_one(
    unreviewed: tuple[MlflowServer, set[str]], accounts_stack: MlflowStack, people: dict[str, object]
) -> None:
    server, left_out = unreviewed
    expected = answers(accounts_stack.mlflow.url, people)
    assert {200, 401, 403} <= set(expected)  # the comparison compares something
    for _ in range(3):  # every worker, its first requests and later ones
        assert answers(server.url, people) == expected
    log = server.process.log_path.read_text()
    assert set(NOT_REVIEWED.findall(log)) == left_out
    assert "Traceback" not in log
    # Without server_exec.py MLflow's CLI stays in the entrypoint's process as uvicorn's parent.
    leader = psutil.Process(server.process.pid).cmdline()
    if "server_exec.py" in left_out:
        assert leader[1].endswith("/entrypoint.py") and leader[2] == "serve", leader
    else:
        assert leader[1:3] == ["-m", "uvicorn"], leader
