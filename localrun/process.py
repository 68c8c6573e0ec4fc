"""Child processes with logs in files, bounded waits and a clean stop.

Everything here binds to loopback on ports chosen at run time, so parallel
runs never collide.
"""

from __future__ import annotations

import atexit
import hashlib
import json
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
from types import FrameType
from typing import Any

from localrun import readonly

LOOPBACK = "127.0.0.1"


class ServiceError(RuntimeError):
    """A service could not be started or did not become ready."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopSignals:
    """The first stop signal interrupts (as KeyboardInterrupt), once; later ones are only noted.

    A group signal reaches `make` and localrun together, and make passes
    SIGTERM on: the second signal must not interrupt the clean-up the first
    one started. Starting or stopping a child is shielded, so an interrupt
    never falls between a child's fork and the record of it.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self.interrupted = False
        self._shields = 0

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def settle(self) -> None:
        """From now on (the clean-up) no signal interrupts."""
        self.interrupted = True

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        if not self.interrupted and not self._shields:
            self.interrupted = True
            raise KeyboardInterrupt

    @contextmanager
    def shielded(self) -> Iterator[None]:
        self._shields += 1
        try:
            yield
        finally:
            self._shields -= 1
        if not self._shields and self.received and not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt


# Installed by `make local` only; elsewhere its shields are inert.
STOP = StopSignals()


class ProcessRecord:
    """The children of a run, in a file, so the next run can stop those a hard kill left behind.

    Each entry is a pid with its start time: a pid reused by an unrelated
    process since then never matches.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.children: dict[str, dict[str, object]] = {}

    def _write(self) -> None:
        import psutil

        owner = psutil.Process()
        data = {"owner": {"pid": owner.pid, "started": owner.create_time()}, "children": self.children}
        staging = self.path.with_name(self.path.name + ".new")
        staging.write_text(json.dumps(data))
        staging.replace(self.path)

    def add(self, name: str, pid: int, stop_signal: int) -> None:
        import psutil

        try:
            started = psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            return
        self.children[str(pid)] = {"name": name, "started": started, "stop_signal": int(stop_signal)}
        self._write()

    def remove(self, pid: int) -> None:
        if self.children.pop(str(pid), None) is not None:
            self._write()

    def close(self) -> None:
        """After a clean stop: nothing left to record."""
        if not self.children:
            self.path.unlink(missing_ok=True)

    def stop_leftovers(self, timeout: float = 20.0) -> list[str]:
        """Stop what an earlier run recorded and left running; the names of those stopped.

        Refuses (ServiceError) while the run that recorded them is alive.
        """
        import psutil

        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return []
        owner = data.get("owner", {})
        if _same_process(int(owner.get("pid", 0)), float(owner.get("started", 0))):
            raise ServiceError(f"another run (pid {owner['pid']}) is using {self.path.parent}; stop it first")
        stopped = []
        for pid_text, entry in data.get("children", {}).items():
            pid, started = int(pid_text), float(entry["started"])
            if _same_process(pid, started):
                stopped.append(str(entry["name"]))
                try:
                    os.kill(pid, int(entry["stop_signal"]))
                    psutil.Process(pid).wait(timeout)
                except (ProcessLookupError, psutil.NoSuchProcess):
                    pass
                except psutil.TimeoutExpired:
                    pass
            # Its group (the child was a session leader): whatever of it is left.
            for member in psutil.process_iter(["create_time"]):
                try:
                    if member.pid != pid and os.getpgid(member.pid) == pid and member.info["create_time"] >= started:
                        member.kill()
                except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            if _same_process(pid, started):
                _kill_group(pid)
        self.path.unlink(missing_ok=True)
        return stopped


def _same_process(pid: int, started: float) -> bool:
    """Whether `pid` is still the process that started at `started` (not a reuse of its pid)."""
    import psutil

    if pid <= 0:
        return False
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - started) < 0.01 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


_record: ProcessRecord | None = None


def record_children(record: ProcessRecord | None) -> None:
    """Every ManagedProcess started from now on is noted in `record` until it is stopped."""
    global _record
    _record = record


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


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, readable by this user only from its first byte (keys, passwords)."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, path)


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
            with STOP.shielded():
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
                if _record is not None:
                    _record.add(self.name, self._popen.pid, self.stop_signal)

    def stop(self, timeout: float = 20.0) -> None:
        """Signal the leader as a container runtime would, then reap the group."""
        if self._popen is None:
            return
        with STOP.shielded():
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
            if _record is not None:
                _record.remove(pgid)
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
