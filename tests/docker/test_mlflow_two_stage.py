"""docker/mlflow/entrypoint.py's two stages: secrets stay out of the server's environment, MLflow loads once.

Stage 1 (the container's command) hands the original environment to stage 2
over a pipe and execs it with the server's environment; stage 2 runs MLflow's
CLI in-process. /proc/<pid>/environ shows a process's initial environment for
its whole life, so these tests read it from the running server's processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import psutil
import pytest

from localrun.services import MLFLOW_ENTRYPOINT, MlflowServer, Postgres
from localrun.stack import new_password
from tests.docker.image_modules import image_module
from tests.docker.test_mlflow_entrypoint import ACCOUNTS, ADMIN_PASSWORD, PASSWORD

WEBHOOK_KEY = "shared-webhook-key-0123456789"


@pytest.fixture(scope="module")
def entrypoint() -> Iterator[ModuleType]:
    with image_module("entrypoint") as module:
        yield module


def environ(pid: int) -> dict[str, str]:
    """The process's initial environment, as anyone who may read /proc/<pid>/environ sees it."""
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().partition("=")[::2] for entry in entries if entry)


@pytest.fixture(scope="module")
def accounts_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MlflowServer, dict[str, str]]]:
    """A real start in accounts mode on PostgreSQL, with every secret ECS would give the task."""
    root = tmp_path_factory.mktemp("two-stage")
    postgres = Postgres(root / "postgres", log_dir=root / "logs", superuser_password=new_password())
    postgres.start()
    try:
        postgres.ensure_database("mlflow", "mlflow_user", PASSWORD)
        env = {
            **ACCOUNTS,
            "DB_HOST": postgres.host, "DB_PORT": str(postgres.port), "DB_USERNAME": "mlflow_user",
            "DB_SSLMODE": "disable", "MLFLOW_WEBHOOK_KEY": WEBHOOK_KEY,
        }  # fmt: skip
        server = MlflowServer(root / "mlflow", log_dir=root / "logs", env=env, workers=2)
        server.start()
        try:
            yield server, server.process.env
        finally:
            server.stop()
    finally:
        postgres.stop()


@pytest.mark.integration
def test_the_servers_processes_hold_no_secret_they_do_not_need(
    accounts_server: tuple[MlflowServer, dict[str, str]], entrypoint: ModuleType
) -> None:
    server, task_env = accounts_server
    assert task_env["MLFLOW_AUTH_ADMIN_PASSWORD"] == ADMIN_PASSWORD and task_env["DB_PASSWORD"] == PASSWORD
    pids = server.process.process_tree_pids()
    assert len(pids) >= 3  # uvicorn (the entrypoint's process), its two workers
    # The container's process runs uvicorn with the server's environment and what MLflow's CLI adds.
    leader = environ(pids[0])
    leader.pop("PWD", None)  # the read-only sandbox's shell (localrun/readonly.py) exports it
    assert entrypoint.server_environment(task_env).items() <= leader.items()
    for pid in pids:
        env = environ(pid)
        values = "\0".join(env.values())
        assert ADMIN_PASSWORD not in values and WEBHOOK_KEY not in values, psutil.Process(pid).cmdline()
        assert not {"DB_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_WEBHOOK_KEY"} & set(env)
        # The database password only where libpq and SQLAlchemy read it (the users' database, the URI).
        assert [name for name, value in env.items() if PASSWORD in value] in ([], ["PGPASSWORD"])
    # MLflow's default allowed hosts, which only stage 2 knows, reach the processes that serve.
    (uvicorn,) = (environ(pid) for pid in pids if psutil.Process(pid).cmdline()[1:3] == ["-m", "uvicorn"])
    assert (
        uvicorn["MLFLOW_SERVER_ALLOWED_HOSTS"] == entrypoint.server_environment(task_env)["MLFLOW_SERVER_ALLOWED_HOSTS"]
    )
    assert uvicorn["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"] == entrypoint.webhook_encryption_key(WEBHOOK_KEY)


@pytest.mark.integration
def test_uvicorn_takes_over_the_entrypoints_process(accounts_server: tuple[MlflowServer, dict[str, str]]) -> None:
    """Stage 1 became stage 2, which became uvicorn (server_exec.py): one process, the container's PID 1.

    No `python -m mlflow server` hop, and no entrypoint process left waiting with MLflow loaded
    (docs/benchmarks.md measures what that kept resident); uvicorn's workers are its children.
    """
    server, _ = accounts_server
    processes = [psutil.Process(pid) for pid in server.process.process_tree_pids()]
    leader, cmdlines = processes[0], [process.cmdline() for process in processes]
    assert leader.pid == server.process.pid
    assert leader.cmdline()[1:3] == ["-m", "uvicorn"]
    assert [process.ppid() for process in processes[1:]] == [leader.pid] * (len(processes) - 1)
    workers = [cmdline for cmdline in cmdlines if "spawn_main" in " ".join(cmdline)]
    assert len(workers) == 2  # (and multiprocessing's resource tracker)
    assert not [cmdline for cmdline in cmdlines if cmdline[1:3] == ["-m", "mlflow"]]
    assert not [cmdline for cmdline in cmdlines if "entrypoint.py" in " ".join(cmdline)]


def serve(args: list[str], *, pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Stage 2 run by hand, in an environment full of secrets, as a confused operator might."""
    return subprocess.run(
        [sys.executable, str(MLFLOW_ENTRYPOINT), "serve", *args], env={**os.environ, **ACCOUNTS},
        pass_fds=pass_fds, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def pipe_holding(data: bytes) -> int:
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    return read_end


def assert_refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 64, result.stderr
    assert result.stderr == f"mlflow entrypoint: {message}; refusing to start\n"
    assert not result.stdout
    for secret in (PASSWORD, ADMIN_PASSWORD, ACCOUNTS["MLFLOW_FLASK_SERVER_SECRET_KEY"]):
        assert secret not in result.stderr


@pytest.mark.parametrize("args", [[], ["--environment-fd"], ["--environment-fd", "three"], ["--env", "3"]])
def test_stage_2_refuses_to_start_without_the_pipe(args: list[str]) -> None:
    assert_refused(
        serve(args), "serve needs --environment-fd <fd> from the entrypoint's first stage (run it without arguments)"
    )


def test_stage_2_refuses_a_descriptor_it_cannot_read() -> None:
    # subprocess closes every descriptor but 0-2 and pass_fds in the child.
    message = "cannot read the environment from --environment-fd 9 (Bad file descriptor)"
    assert_refused(serve(["--environment-fd", "9"]), message)


@pytest.mark.parametrize(
    "data",
    [
        json.dumps(ACCOUNTS).encode()[:-40],  # cut short, a secret in what arrived
        json.dumps(list(ACCOUNTS.items())).encode(),
        json.dumps({**ACCOUNTS, "MLFLOW_WORKERS": 2}).encode(),
        b"",
    ],
)
def test_stage_2_refuses_what_is_not_an_environment(data: bytes) -> None:
    fd = pipe_holding(data)
    try:
        result = serve(["--environment-fd", str(fd)], pass_fds=(fd,))
    finally:
        os.close(fd)
    assert_refused(result, f"--environment-fd {fd} does not hold the environment as a JSON object of strings")


def test_an_environment_larger_than_a_pipe_buffer_arrives_whole(entrypoint: ModuleType) -> None:
    """Stage 1 writes before stage 2 reads: the pipe grows to what it must hold (Linux's default is 64 KiB)."""
    env = {**ACCOUNTS, **{f"LARGE_{index}": "x" * 10_000 for index in range(20)}}
    fd = entrypoint.hand_over_environment(env)
    try:
        assert os.get_inheritable(fd)
        with os.fdopen(fd, "rb", closefd=False) as pipe:
            assert json.loads(pipe.read()) == env  # and the end: the write end is closed
    finally:
        os.close(fd)
