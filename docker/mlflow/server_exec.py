"""Stage 2 becomes uvicorn: MLflow's CLI execs its server instead of waiting on it as a child.

`mlflow server` (mlflow.server._run_server) starts uvicorn as a child process, forwards
SIGTERM and SIGINT to it and waits. Here the waiting parent would be the entrypoint's
stage 2, which imported MLflow to migrate the schemas and create users, and which would
keep all of that resident for the life of the task while doing nothing. So the one call
that starts the server (`_exec_cmd(..., synchronous=False)`) execs the command in place
instead: uvicorn takes over stage 2's process (the container's PID 1), with the
environment and the open descriptors the child would have had (Popen's defaults: stdin,
stdout and stderr only), and stop signals reach it directly.

Only while job execution is off (this deployment's setting): with it on, _run_server
starts MLflow's job runner after the server and must stay. On MLflow source other than
the reviewed one, the CLI runs as shipped and one line is logged.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import reviewed_source

REVIEWED = {
    "mlflow.server": {
        # The caller: its only asynchronous _exec_cmd is the server's, and after it comes only the
        # signal forwarding, the job runner (job execution on) and the wait.
        "_run_server": "8a85124a03c8070a4220d6ee01fb4ba4b62382c183618066cea4de8b95151416",
    },
    # What the exec replaces: the environment it builds and the descriptors Popen leaves open.
    "mlflow.utils.process": {"_exec_cmd": "9b236c90b9be508160c46573ed4d854039fa39cb9b37664258f7ed84af644e08"},
}
CONSEQUENCE = "MLflow's CLI stays uvicorn's parent, and the entrypoint's memory stays in use"
_logger = logging.getLogger(__name__)

ExecCmd = Callable[..., Any]


def exec_in_place(stock: ExecCmd) -> ExecCmd:
    """`_exec_cmd` that execs an asynchronous, uncaptured command in place; anything else goes to `stock`."""

    def exec_cmd(
        cmd: Sequence[object],
        *,
        extra_env: Mapping[str, str] | None = None,
        capture_output: bool = True,
        synchronous: bool = True,
        **kwargs: Any,
    ) -> Any:
        if synchronous or capture_output or kwargs or isinstance(cmd, str):
            return stock(cmd, extra_env=extra_env, capture_output=capture_output, synchronous=synchronous, **kwargs)
        argv = [str(part) for part in cmd]
        environment = {**os.environ, **(extra_env or {})}
        sys.stdout.flush()
        sys.stderr.flush()
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # as Popen's close_fds
        os.execve(argv[0], argv, environment)  # noqa: S606 - MLflow's own command, no shell

    return exec_cmd


def install() -> bool:
    """Make MLflow's server command exec uvicorn; whether it will."""
    from mlflow.environment_variables import MLFLOW_SERVER_ENABLE_JOB_EXECUTION

    if MLFLOW_SERVER_ENABLE_JOB_EXECUTION.get():
        return False  # the job runner starts after the server: MLflow's CLI must stay
    if not reviewed_source.is_reviewed(_logger, "server_exec.py", REVIEWED, CONSEQUENCE):
        return False
    import mlflow.server

    mlflow.server._exec_cmd = exec_in_place(mlflow.server._exec_cmd)
    return True
