"""`make local` keeps its data between runs, for root (servers drop to `nobody`) and for any other user.

Two real runs of `python -m localrun` each: start in shared mode, log a run
and an artifact through the proxy, stop with SIGTERM (as Ctrl-C or `docker
stop` would), start again in accounts mode (`make local AUTH_MODE=accounts`)
and find both, as the admin it prints.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from requests_auth_aws_sigv4 import AWSSigV4

from localrun.__main__ import LOCAL_IAM_ROLE
from localrun.process import free_port, private_dir
from localrun.services import REPO_ROOT
from tests.integration.sigv4 import env_signer

pytestmark = pytest.mark.integration

NOBODY = pwd.getpwnam("nobody")


# As root, "another user" is uid 1000 in a user namespace: the process and
# everything it starts see a non-root uid (PostgreSQL and nginx run as that
# user, nothing drops privileges), while the virtualenv, which may sit under
# root's closed home directory, stays readable.
AS_ANOTHER_USER = ["unshare", "--user", "--map-user=1000", "--map-group=1000"] if os.geteuid() == 0 else []


class LocalRun:
    """One `python -m localrun` process, as root or as another user."""

    def __init__(self, state_dir: Path, prefix: list[str], auth_mode: str = "shared") -> None:
        self.state_dir = state_dir
        self.prefix = prefix
        self.auth_mode = auth_mode
        self.output: list[str] = []

    def __enter__(self) -> LocalRun:
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "LANG": "C.UTF-8",
               "HOME": str(self.state_dir.parent)}  # fmt: skip
        self.process = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "localrun", "--state-dir", str(self.state_dir),
             "--port", str(free_port()), "--workers", "1", "--auth-mode", self.auth_mode],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 240
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if "Press Ctrl-C to stop." in line:
                break
            assert time.monotonic() < deadline, "".join(self.output)
        self.text = text = "".join(self.output)
        assert "Starting nginx + MLflow (PostgreSQL)" in text, text
        assert f"(auth mode {self.auth_mode})" in text, text
        self.url = re.search(r"export MLFLOW_TRACKING_URI=(\S+)", text).group(1)
        login = re.search(r"username: (\S+)\n  password: (\S+)", text)  # sso mode prints people and a client
        self.auth = (login[1], login[2]) if login else None
        return self

    def api(self, method: str, path: str, **kwargs: object) -> dict:
        response = requests.request(method, f"{self.url}/api/2.0/mlflow/{path}", auth=self.auth, timeout=30, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def artifact(self, method: str, path: str, **kwargs: object) -> requests.Response:
        response = requests.request(
            method, f"{self.url}/api/2.0/mlflow-artifacts/artifacts/{path}", auth=self.auth, timeout=30, **kwargs
        )  # fmt: skip
        assert response.status_code == 200, response.text
        return response

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        rest, _ = self.process.communicate(timeout=60)
        self.output.append(rest)
        assert self.process.returncode == 0, "".join(self.output)
        assert "Stopped." in rest


def iam_sign_in(run: LocalRun) -> tuple[str, AWSSigV4]:
    """The IAM URL the banner names (API base) and a signer with the keys of the file it names.

    Checks on the way that the file is the owner's alone, the banner shows no key, and an
    unsigned request is refused there.
    """
    iam = re.search(r"signed requests at (\S+) .*?  set -a; \. (\S+); set \+a", run.text, re.S)
    assert iam is not None, run.text
    env_file = Path(iam[2])
    assert env_file.stat().st_mode & 0o077 == 0, "the keys are the owner's alone"
    keys = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert keys["MLFLOW_TRACKING_URI"] == iam[1] and keys["MLFLOW_TRACKING_AWS_SIGV4"] == "true"
    assert keys["AWS_SECRET_ACCESS_KEY"] not in run.text, "no key in the banner"
    url = f"{iam[1]}/api/2.0/mlflow"
    assert requests.get(f"{url}/experiments/search", params={"max_results": 1}, timeout=30).status_code == 403
    return url, env_signer(keys)


def two_runs(state_dir: Path, prefix: list[str]) -> None:
    name = f"durable-{uuid.uuid4().hex[:8]}"
    with LocalRun(state_dir, prefix) as first:
        experiment = first.api("POST", "experiments/create", json={"name": name})["experiment_id"]
        run = first.api("POST", "runs/create", json={"experiment_id": experiment})["run"]["info"]["run_id"]
        first.api("POST", "runs/log-metric", json={"run_id": run, "key": "accuracy", "value": 0.93, "timestamp": 0})
        first.artifact("PUT", f"{experiment}/{run}/artifacts/notes.txt", data=b"kept in the local S3\n")
    with LocalRun(state_dir, prefix, auth_mode="accounts") as second:
        assert "admin (MLflow's auth app)" in "".join(second.output)
        assert second.auth[1] != first.auth[1], "a new password each run"
        found = second.api("GET", "experiments/get-by-name", params={"experiment_name": name})
        assert found["experiment"]["experiment_id"] == experiment
        metrics = second.api("GET", "runs/get", params={"run_id": run})["run"]["data"]["metrics"]
        assert [(m["key"], m["value"]) for m in metrics] == [("accuracy", 0.93)]
        notes = second.artifact("GET", f"{experiment}/{run}/artifacts/notes.txt")
        assert notes.content == b"kept in the local S3\n"
        url, signer = iam_sign_in(second)
        found = requests.get(
            f"{url}/experiments/get-by-name", params={"experiment_name": name}, auth=signer, timeout=30
        )
        assert found.status_code == 200 and found.json()["experiment"]["experiment_id"] == experiment
    assert "IAM sign-in" not in first.text, "shared mode has no IAM sign-in"
    postgres = state_dir / "postgres"
    assert postgres.is_dir() and not postgres.is_symlink(), "the database lives in the state dir"
    assert (postgres / "data" / "PG_VERSION").exists()


@pytest.fixture()
def state_dir() -> Iterator[Path]:
    """A fresh `.local-run` in a directory every user can pass through, like a cloned repo."""
    parent = Path(tempfile.mkdtemp(prefix="make-local-"))
    parent.chmod(0o755)
    yield parent / ".local-run"
    subprocess.run(["rm", "-rf", str(parent)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="the root case needs root (a dev container's default user)")
def test_data_survives_a_restart_as_root(state_dir: Path) -> None:
    two_runs(state_dir, [])


def test_data_survives_a_restart_as_another_user(state_dir: Path) -> None:
    two_runs(state_dir, AS_ANOTHER_USER)


@pytest.mark.skipif(os.geteuid() != 0, reason="servers drop to another user only when run as root")
def test_durable_data_behind_a_closed_directory_goes_to_a_fixed_place(tmp_path: Path) -> None:
    """A repo under a directory others cannot enter (e.g. /root): the data moves out, durably."""
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    durable_root = Path(tempfile.mkdtemp(prefix="durable-"))
    try:
        owner = (NOBODY.pw_uid, NOBODY.pw_gid)
        real = private_dir(closed / ".local-run" / "postgres", owner, durable=True, durable_root=durable_root)
        assert real.parent.parent == durable_root and real.name == "postgres"
        assert (closed / ".local-run" / "postgres").resolve() == real
        assert (real.stat().st_uid, real.stat().st_mode & 0o777) == (NOBODY.pw_uid, 0o700)
        (real / "PG_VERSION").write_text("16\n")
        # The next run (same path) finds the same directory and its data.
        assert private_dir(closed / ".local-run" / "postgres", owner, durable=True, durable_root=durable_root) == real
        assert (real / "PG_VERSION").exists()
    finally:
        subprocess.run(["rm", "-rf", str(durable_root)], check=False)


def test_a_dangling_link_from_an_earlier_version_is_replaced(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "postgres").symlink_to(tmp_path / "localrun-postgres-gone")
    real = private_dir(state / "postgres", None, durable=True)
    assert real == state / "postgres" and real.is_dir() and not real.is_symlink()


def test_sso_mode_offers_iam_sign_in_as_the_local_app_client(state_dir: Path) -> None:
    """`make local AUTH_MODE=sso`: the banner's keys sign in as the machine user its app client is."""
    with LocalRun(state_dir, AS_ANOTHER_USER, auth_mode="sso") as run:
        client = re.search(r"a token of app client (\S+) \(MLflow user", run.text)
        assert client is not None and run.auth is None, run.text
        url, signer = iam_sign_in(run)
        name = f"signed-{uuid.uuid4().hex[:8]}"
        created = requests.post(f"{url}/experiments/create", json={"name": name}, auth=signer, timeout=30)
        assert created.status_code == 200, created.text
        audit = [json.loads(each) for each in (state_dir / "audit" / "audit.log").read_text().splitlines()]
        line = [each for each in audit if each["route"].endswith("/experiments/create")][-1]
        role = LOCAL_IAM_ROLE.split(":role/")[1]
        assert line["user"] == client[1] and f":assumed-role/{role}/" in line["iam_caller"], line
