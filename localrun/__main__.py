"""`make local`: the MLflow task (nginx + MLflow) on this machine, to try out.

Same entrypoints and nginx config as the images. PostgreSQL stands in for
Aurora (SQLite if the Debian package is missing) and artifacts go to a local
directory; both persist in .local-run/ between runs. The basic-auth password
is new each run. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType

from localrun.process import LOOPBACK, ServiceError, free_port
from localrun.services import REPO_ROOT
from localrun.stack import MlflowStack, new_password

STATE_DIR = REPO_ROOT / ".local-run"


def preferred_port(port: int) -> int:
    """`port` if it is free on loopback, otherwise any free one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
            return port
        except OSError:
            return free_port()


def database_superuser_password(state_dir: Path) -> str:
    """Kept in a private file: the PostgreSQL data directory outlives a run."""
    state_file = state_dir / "state.json"
    if state_file.exists():
        return json.loads(state_file.read_text())["db_superuser_password"]
    password = new_password()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    state_file.touch(mode=0o600)
    state_file.write_text(json.dumps({"db_superuser_password": password}))
    return password


def stop_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080, help="proxy port, if free")
    parser.add_argument("--workers", type=int, default=None, help="MLflow workers (default 2)")
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR, help="where data persists (default .local-run)")
    args = parser.parse_args()

    state_dir = args.state_dir.absolute()
    state_dir.mkdir(parents=True, exist_ok=True)
    # Run as root, PostgreSQL runs as `nobody` and must pass through to its
    # data directory: others may traverse the state dir (not list it); what
    # is inside keeps its own private modes.
    state_dir.chmod(0o711)
    stack = MlflowStack(
        state_dir, durable=True, sqlite_fallback=True, workers=args.workers,
        db_superuser_password=database_superuser_password(state_dir),
        proxy_port=preferred_port(args.port),
    )  # fmt: skip
    backend = "PostgreSQL" if stack.postgres else "SQLite (install 'postgresql' for PostgreSQL)"
    print(f"Starting nginx + MLflow ({backend}), logs in {stack.log_dir} ...", flush=True)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        stack.start()
    except ServiceError as error:
        print(f"could not start: {error}", file=sys.stderr)
        return 1
    try:
        print(
            f"\nMLflow is up at {stack.proxy_url}\n"
            f"  username: {stack.username}\n"
            f"  password: {stack.password}\n"
            f"  artifacts: {stack.artifact_root}\n\n"
            "For the mlflow client:\n"
            f"  export MLFLOW_TRACKING_URI={stack.proxy_url}\n"
            f"  export MLFLOW_TRACKING_USERNAME={stack.username}\n"
            f"  export MLFLOW_TRACKING_PASSWORD='{stack.password}'\n\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        while all(p.running for p in (stack.mlflow.process, stack.nginx.process)):
            time.sleep(1)
        print(f"A server exited unexpectedly; see {stack.log_dir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping ...", flush=True)
        return 0
    finally:
        stack.stop()
        print("Stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
