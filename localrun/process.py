"""Child processes with logs in files, bounded waits and a clean stop.

Everything here binds to loopback on ports chosen at run time, so parallel
runs never collide.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from localrun import readonly

LOOPBACK = "127.0.0.1"


class ServiceError(RuntimeError):
    """A service could not be started or did not become ready."""


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with `values` set, and as it was afterwards (for clients that read their settings there)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def http_status(url: str, timeout: float = 10.0, headers: Mapping[str, str] | None = None) -> int:
    """The HTTP status of a GET, or 0 when nothing answered."""
    request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310 - loopback http URLs
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, urllib.error.URLError):
        return 0


def run_as_user() -> tuple[int, int] | None:
    """The unprivileged (uid, gid) servers drop to when we are root, else None.

    PostgreSQL refuses to run as root, and the images run nginx and PostgreSQL
    as non-root users, so natively we do the same with `nobody`.
    """
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


# Where durable data of a server that cannot reach its directory in the repo
# lives instead (only when running as root: servers then run as `nobody`).
DURABLE_ROOT = Path("/var/lib/mlflow-localrun")


def private_dir(
    path: Path, owner: tuple[int, int] | None, *, durable: bool = False, durable_root: Path = DURABLE_ROOT
) -> Path:
    """A 0700 directory for a server that runs as `owner`; returns its real path.

    The owner must be able to reach it for as long as the server runs. When an
    ancestor of `path` is closed to other users (pytest's temp root, a repo
    under /root), the directory is made elsewhere and `path` becomes a symlink
    to it, so its files are still found next to the logs: for `durable` data
    (`make local`'s database) a fixed place under `durable_root` that the next
    run finds again, otherwise a temp dir removed at exit.
    """
    if path.is_symlink() and not path.exists():
        # Left by an earlier run whose temp dir is gone: the data went with it.
        path.unlink()
    if path.is_symlink():
        real = path.resolve()
    elif owner is None or _reachable_by_others(path.parent):
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        real = path
    else:
        if durable:
            real = _durable_home(path, durable_root)
        else:
            real = Path(tempfile.mkdtemp(prefix=f"localrun-{path.name}-"))
            atexit.register(shutil.rmtree, real, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(real, target_is_directory=True)
    real.chmod(0o700)
    if owner is not None:
        os.chown(real, *owner)
    return real


def _durable_home(path: Path, root: Path) -> Path:
    """The same directory for the same `path` on every run: root/<hash of path>/<name>."""
    key = hashlib.sha256(str(path.absolute()).encode()).hexdigest()[:16]
    parent = root / key
    parent.mkdir(parents=True, exist_ok=True)
    for directory in (root, parent):
        directory.chmod(0o711)  # others may pass through, not list
    real = parent / path.name
    real.mkdir(exist_ok=True, mode=0o700)
    return real


def _reachable_by_others(path: Path) -> bool:
    """Whether every existing ancestor lets any user pass through."""
    for directory in [path, *path.parents]:
        if directory.exists() and not directory.stat().st_mode & 0o001:
            return False
    return True


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    process: ManagedProcess | None = None,
) -> None:
    """Poll `check` until it holds; fail early if `process` dies."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        if check():
            return
        if process is not None and not process.running:
            raise ServiceError(
                f"{what}: {process.name} exited with {process.returncode}\n"
                f"--- {process.log_path} ---\n{process.log_tail()}"
            )
        if time.monotonic() > deadline:
            tail = f"\n--- {process.log_path} ---\n{process.log_tail()}" if process else ""
            raise ServiceError(f"{what}: not ready after {timeout:.0f} s{tail}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


class ManagedProcess:
    """One server process (and its children) in its own process group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str],
        log_path: Path,
        run_as: tuple[int, int] | None = None,
        stop_signal: int = signal.SIGTERM,
        cwd: Path | None = None,
        readonly_root: Sequence[Path] | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(arg) for arg in argv]
        self.env = dict(env)
        self.log_path = log_path
        self.run_as = run_as
        self.stop_signal = stop_signal
        self.cwd = cwd
        # Writable directories when the process runs with a read-only root
        # filesystem, as its container does (localrun/readonly.py).
        self.readonly_root = list(readonly_root) if readonly_root is not None else None
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def sandboxed(self) -> bool:
        """Runs with a read-only root filesystem (asked for, and possible on this machine)."""
        return self.readonly_root is not None and readonly.available()

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen else None

    def start(self) -> None:
        if self.running:
            raise ServiceError(f"{self.name} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Appending keeps the whole history across restarts in one file.
        with open(self.log_path, "ab") as log:
            if self.run_as is not None:
                # nginx reopens /dev/stdout, i.e. this file, as its own user.
                os.chown(self.log_path, *self.run_as)
            argv = self.argv
            user: dict[str, Any] = {}
            if self.sandboxed:
                assert self.readonly_root is not None
                # The sandbox mounts as root, then drops to run_as itself.
                argv = readonly.wrap(self.argv, self.readonly_root, self.run_as)
            elif self.run_as is not None:
                user = {"user": self.run_as[0], "group": self.run_as[1], "extra_groups": []}
            self._popen = subprocess.Popen(
                argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **user,
            )

    def stop(self, timeout: float = 20.0) -> None:
        """Signal the leader as a container runtime would, then reap the group."""
        if self._popen is None:
            return
        popen, pgid = self._popen, self._popen.pid
        if popen.poll() is None:
            try:
                popen.send_signal(self.stop_signal)
                popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(pgid)
                popen.wait(timeout=10)
        # Children that outlived their parent must not leak out of a test.
        _kill_group(pgid)
        self._popen = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def process_tree_pids(self) -> list[int]:
        """The leader and all its descendants."""
        import psutil

        if not self.running or self.pid is None:
            return []
        leader = psutil.Process(self.pid)
        return [leader.pid, *(child.pid for child in leader.children(recursive=True))]


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
