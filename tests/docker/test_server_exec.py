"""docker/mlflow/server_exec.py: MLflow's server command execs uvicorn in the entrypoint's process.

The process tree of a real start (no entrypoint left waiting): tests/docker/test_mlflow_two_stage.py.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType

import mlflow.server
import pytest

from localrun.services import MLFLOW_ENTRYPOINT
from tests.docker.image_modules import image_module

# Run by a child Python: open a descriptor a child process could inherit, then hand MLflow's server
# command to the patched _exec_cmd, as _run_server does.
EXEC = """
import os, sys
sys.path.insert(0, {image!r})
import server_exec
stray = os.dup2(os.open(os.devnull, os.O_RDONLY), 57)  # inheritable, as dup2 makes it
print(os.getpid(), stray, flush=True)
report = "import json, os; print(json.dumps([os.getpid(), os.environ['FROM_MLFLOW'], os.listdir('/proc/self/fd')]))"
command = [sys.executable, "-c", report]
server_exec.exec_in_place(None)(command, extra_env={{"FROM_MLFLOW": "set"}}, capture_output=False, synchronous=False)
print("not reached", flush=True)
"""


@pytest.fixture(scope="module")
def server_exec() -> Iterator[ModuleType]:
    with image_module("server_exec") as module:
        yield module


def test_the_server_command_takes_over_the_process() -> None:
    """Same pid, MLflow's extra environment, and only stdin, stdout and stderr open (as Popen's close_fds)."""
    child = subprocess.run(
        [sys.executable, "-c", EXEC.format(image=str(MLFLOW_ENTRYPOINT.parent))],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    first, second = child.stdout.splitlines()
    pid, stray = first.split()
    exec_pid, marker, descriptors = json.loads(second)
    assert exec_pid == int(pid) and marker == "set"
    assert stray not in descriptors and sorted(descriptors) == ["0", "1", "2", "3"]  # 3: listdir's own


@pytest.mark.parametrize(
    "arguments",
    [
        {"synchronous": True, "capture_output": False},
        {"synchronous": False, "capture_output": True},
        {"synchronous": False, "capture_output": False, "stream_output": True},
    ],
)
def test_other_commands_run_as_mlflow_runs_them(server_exec: ModuleType, arguments: dict) -> None:
    calls: list[tuple] = []

    def stock(cmd: list, **kwargs: object) -> str:
        calls.append((cmd, kwargs))
        return "stock"

    exec_cmd = server_exec.exec_in_place(stock)
    assert exec_cmd(["true"], extra_env={"A": "1"}, **arguments) == "stock"
    assert calls == [(["true"], {"extra_env": {"A": "1"}, **arguments})]


def test_installed_only_on_the_reviewed_mlflow_without_job_execution(
    server_exec: ModuleType, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stock = mlflow.server._exec_cmd
    monkeypatch.setattr(mlflow.server, "_exec_cmd", stock)
    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "true")
    assert server_exec.install() is False and mlflow.server._exec_cmd is stock
    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    changed = {**server_exec.REVIEWED, "mlflow.server": {"_run_server": "0" * 64}}
    with monkeypatch.context() as patch, caplog.at_level(logging.WARNING):
        patch.setattr(server_exec, "REVIEWED", changed)
        assert server_exec.install() is False and mlflow.server._exec_cmd is stock
    assert "mlflow.server:_run_server is not the reviewed one (server_exec.py)" in caplog.text
    assert server_exec.install() is True and mlflow.server._exec_cmd is not stock
