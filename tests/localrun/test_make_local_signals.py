"""`make local` stops cleanly on SIGTERM, SIGINT or SIGHUP to its process group, at start or when up.

A real `make` runs `python -m localrun` (GNU make passes SIGTERM on to its
child, so localrun gets that one twice: the second arrives during its
clean-up). One state dir goes through seven runs, each signalled, and after
each nothing of it is left (no process with the state dir in its command
line, working directory or open files) and the next one starts on its data:

    run  mode      signal   moment
    1    shared    SIGTERM  at start (MLflow starting, PostgreSQL and moto up)
    2    shared    SIGKILL  at start, to localrun alone: a crash, which leaves its servers
    3    shared    SIGINT   when up (stops what run 2 left first; logs a run and an artifact)
    4    sso       SIGINT   at start
    5    sso       SIGHUP   when up (finds the run, with a machine client's token)
    6    accounts  SIGHUP   at start
    7    accounts  SIGTERM  when up (finds the run and the artifact, as the admin)

Every signal comes once at start and once when up, and every mode gets two
different signals, one at each moment: the six signal and moment pairs
without the eighteen starts of all their combinations.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import requests

from localrun.process import free_port
from localrun.services import REPO_ROOT

pytestmark = pytest.mark.integration


def leftovers(state_dir: Path) -> list[str]:
    """Processes that belong to a run in `state_dir`: it is in their argv, cwd or open files."""
    mark = str(state_dir)
    found = []
    for process in psutil.process_iter(["pid", "name", "cmdline", "cwd"]):
        if process.pid == os.getpid():
            continue
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            paths = [process.info["cwd"] or "", *(f.path for f in process.open_files())]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if mark in cmdline or any(path.startswith(mark) for path in paths):
            found.append(f"{process.info['name']} ({process.pid}): {cmdline}")
    return found


def wait_for(check: Callable[[], bool], what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.1)


class MakeLocal:
    """`make` running `python -m localrun` in a process group of its own, as a terminal starts it."""

    def __init__(self, state_dir: Path, auth_mode: str) -> None:
        self.state_dir = state_dir
        self.auth_mode = auth_mode
        self.lines: list[str] = []
        mlflow_log = state_dir / "logs" / "mlflow.log"
        self.mlflow_log_size = mlflow_log.stat().st_size if mlflow_log.exists() else 0
        makefile = state_dir.parent / "Makefile"
        makefile.write_text(
            "local:\n"
            f"\t{sys.executable} -m localrun --state-dir {state_dir} --port {free_port()} --workers 1 "
            f"--auth-mode {auth_mode}\n"
        )
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "LANG": "C.UTF-8",
               "HOME": str(state_dir.parent)}  # fmt: skip
        self.make = subprocess.Popen(
            ["make", "-s", "-f", str(makefile), "local"], cwd=REPO_ROOT, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.make.stdout is not None
        for line in self.make.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_starting(self) -> None:
        """Until MLflow is starting: PostgreSQL and moto (and the OpenID provider) are up."""
        log = self.state_dir / "logs" / "mlflow.log"
        wait_for(lambda: log.exists() and log.stat().st_size > self.mlflow_log_size, "MLflow starting")
        assert "Press Ctrl-C to stop." not in self.output

    def wait_up(self) -> None:
        wait_for(lambda: "Press Ctrl-C to stop." in self.output or self.make.poll() is not None, "banner")
        assert "Press Ctrl-C to stop." in self.output, self.output
        self.url = re.search(r"export MLFLOW_TRACKING_URI=(\S+)", self.output).group(1)

    def stop_with(self, signum: int) -> None:
        """The signal to the whole group; localrun's clean-up must end with nothing left."""
        os.killpg(self.make.pid, signum)
        self.make.wait(timeout=120)
        self.reader.join(timeout=10)
        assert "Stopped." in self.output, self.output
        assert "Traceback" not in self.output, self.output
        assert leftovers(self.state_dir) == [], self.output
        assert not (self.state_dir / "processes.json").exists()

    def api(self, method: str, path: str, **kwargs: object) -> dict:
        response = requests.request(method, f"{self.url}/api/2.0/mlflow/{path}", timeout=30, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def artifact(self, method: str, path: str, **kwargs: object) -> requests.Response:
        url = f"{self.url}/api/2.0/mlflow-artifacts/artifacts/{path}"
        response = requests.request(method, url, timeout=30, **kwargs)
        assert response.status_code == 200, response.text
        return response


def basic_auth(run: MakeLocal) -> tuple[str, str]:
    return re.search(r"username: (\S+)", run.output).group(1), re.search(r"password: (\S+)", run.output).group(1)


def bearer_auth(run: MakeLocal) -> dict[str, str]:
    """A token of the machine client the sso banner prints, fetched as the banner says."""
    client, secret, token_url = re.search(r"curl -s -u ([^:\s]+):(\S+) .* (\S+) \| python3", run.output).groups()
    response = requests.post(
        token_url, data={"grant_type": "client_credentials", "scope": "mlflow"}, auth=(client, secret), timeout=30
    )  # fmt: skip
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture()
def state_dir() -> Iterator[Path]:
    parent = Path(tempfile.mkdtemp(prefix="make-local-signals-"))
    parent.chmod(0o755)
    yield parent / ".local-run"
    for line in leftovers(parent):  # a failed run's servers must not outlive the test
        os.kill(int(line.split("(")[1].split(")")[0]), signal.SIGKILL)
    subprocess.run(["rm", "-rf", str(parent)], check=False)


def test_any_stop_signal_at_any_moment_leaves_nothing_and_keeps_the_data(state_dir: Path) -> None:
    name = f"signals-{uuid.uuid4().hex[:8]}"

    run = MakeLocal(state_dir, "shared")
    run.wait_starting()
    run.stop_with(signal.SIGTERM)

    crash = MakeLocal(state_dir, "shared")
    crash.wait_starting()
    localrun = next(p for p in psutil.Process(crash.make.pid).children(recursive=True) if "localrun" in p.cmdline())
    localrun.kill()
    crash.make.wait(timeout=30)
    left = leftovers(state_dir)
    assert any("postgres" in line for line in left), left  # what the record is for

    run = MakeLocal(state_dir, "shared")
    run.wait_up()
    assert "Stopped what an earlier run left running: " in run.output, run.output
    assert left and leftovers(state_dir) != left
    auth = basic_auth(run)
    experiment = run.api("POST", "experiments/create", json={"name": name}, auth=auth)["experiment_id"]
    run_id = run.api("POST", "runs/create", json={"experiment_id": experiment}, auth=auth)["run"]["info"]["run_id"]
    run.artifact("PUT", f"{experiment}/{run_id}/artifacts/notes.txt", data=b"through every signal\n", auth=auth)
    run.stop_with(signal.SIGINT)

    run = MakeLocal(state_dir, "sso")
    run.wait_starting()
    run.stop_with(signal.SIGINT)

    run = MakeLocal(state_dir, "sso")
    run.wait_up()
    found = run.api("GET", "experiments/get-by-name", params={"experiment_name": name}, headers=bearer_auth(run))
    assert found["experiment"]["experiment_id"] == experiment
    run.stop_with(signal.SIGHUP)

    run = MakeLocal(state_dir, "accounts")
    run.wait_starting()
    run.stop_with(signal.SIGHUP)

    run = MakeLocal(state_dir, "accounts")
    run.wait_up()
    auth = basic_auth(run)
    info = run.api("GET", "runs/get", params={"run_id": run_id}, auth=auth)["run"]["info"]
    assert info["experiment_id"] == experiment
    notes = run.artifact("GET", f"{experiment}/{run_id}/artifacts/notes.txt", auth=auth)
    assert notes.content == b"through every signal\n"
    run.stop_with(signal.SIGTERM)
