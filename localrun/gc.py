"""`make gc`: the scheduled garbage collection, on demand, against the running `make local` stack.

`make local` leaves the MLflow container's database and bucket settings in a
private file in its state directory (removed when it stops); this runs the
image's own `entrypoint.py gc` with them, as the scheduled task runs it: a dry
run that prints what it would delete, unless `--apply` (`make gc APPLY=1`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from localrun.process import write_private
from localrun.services import MLFLOW_ENTRYPOINT, REPO_ROOT

SETTINGS_FILE = "gc.json"
# What gc needs of the MLflow container's environment: the database, the bucket and its S3.
GC_KEYS = ("DB_", "AWS_", "MLFLOW_BACKEND_STORE_URI", "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_ARTIFACTS_DESTINATION")


def gc_settings(server_env: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in server_env.items() if key.startswith(GC_KEYS)}


def save_settings(state_dir: Path, server_env: Mapping[str, str]) -> Path:
    """The running stack's gc settings, readable by this user only (they hold the database password)."""
    path = state_dir / SETTINGS_FILE
    write_private(path, json.dumps(gc_settings(server_env)))
    return path


def run_gc(settings: Mapping[str, str], args: Sequence[str], scratch: Path) -> subprocess.CompletedProcess[str]:
    """`entrypoint.py gc ARGS` with the stack's settings (nothing of this shell's environment but PATH)."""
    env = {**settings, "PATH": os.environ["PATH"], "HOME": str(scratch), "MLFLOW_RUNTIME_DIR": str(scratch / "gc")}
    return subprocess.run(
        [sys.executable, str(MLFLOW_ENTRYPOINT), "gc", *args], env=env, capture_output=True, text=True, timeout=3600
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make gc", description=__doc__.splitlines()[0])
    parser.add_argument("--apply", action="store_true", help="delete (default: print what would be deleted)")
    parser.add_argument("--delete-orphans", action="store_true", help="with --apply, orphaned prefixes too")
    parser.add_argument("--older-than-days", help="how long a deleted run is kept (default: the image's, 30)")
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".local-run", help="make local's state dir")
    args = parser.parse_args(argv)
    path = args.state_dir / SETTINGS_FILE
    if not path.exists():
        print(f"make gc: no running `make local` stack ({path} is missing); start one first", file=sys.stderr)
        return 2
    settings = json.loads(path.read_text())
    if args.older_than_days is not None:
        settings["GC_OLDER_THAN_DAYS"] = args.older_than_days
    flags = ["--apply"] * args.apply + ["--delete-orphans"] * args.delete_orphans
    done = run_gc(settings, flags, args.state_dir)
    print(done.stdout, end="")
    print(done.stderr, end="", file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
