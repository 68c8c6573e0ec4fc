"""Run a server as the ECS task runs it: read-only root filesystem, writable scratch only.

Both containers start with `readonlyRootFilesystem` and one writable volume
(/tmp). Natively a private mount namespace does the same: the scratch
directories are bound onto themselves, then every other mount is remounted
read-only (/proc, /sys and /dev stay as they are, as in a container, where
/dev/shm is writable too). Any write outside the scratch directories then
fails with "Read-only file system", so a server that runs proves it writes
nowhere else.

Needs util-linux's `unshare` and `setpriv` and mount namespaces: root has
them; other users need unprivileged user namespaces. Where they are missing,
`available()` is False and servers run without the sandbox.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

# $1..: writable directories, then "--", then the command.
_SETUP = r"""
set -eu
writable=""
while [ "$1" != "--" ]; do
    mount --bind "$1" "$1"
    writable="$writable $1"
    shift
done
shift
findmnt -rn -o TARGET | while read -r target; do
    case $target in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
    for dir in $writable; do [ "$target" = "$dir" ] && continue 2; done
    mount -o remount,bind,ro "$target"
done
exec "$@"
"""


def wrap(argv: Sequence[str], writable: Sequence[Path], run_as: tuple[int, int] | None) -> list[str]:
    """`argv` run in a read-only mount namespace where only `writable` can be written, as `run_as`."""
    if os.geteuid() == 0:
        namespace = ["unshare", "--mount", "--propagation", "private"]
        # Mount as root, then become the server's user (caps go with the uid).
        drop = ["setpriv", f"--reuid={run_as[0]}", f"--regid={run_as[1]}", "--clear-groups"] if run_as else []
    else:
        # A user namespace grants the capability to mount; the server then
        # runs without any capability, as the same user.
        namespace = ["unshare", "--user", "--map-current-user", "--keep-caps", "--mount", "--propagation", "private"]
        drop = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all"]
    dirs = [str(Path(d).resolve()) for d in writable]
    return [*namespace, "/bin/sh", "-c", _SETUP, "sh", *dirs, "--", *drop, *map(str, argv)]


@functools.cache
def available() -> bool:
    """Whether this machine can run the sandbox (checked once by running it)."""
    if not (shutil.which("unshare") and shutil.which("setpriv") and shutil.which("findmnt")):
        return False
    scratch = Path(os.environ.get("TMPDIR", "/tmp"))  # noqa: S108 - only mounted read-only
    probe = wrap(["/bin/sh", "-c", "! touch /etc/.localrun-readonly-probe 2>/dev/null"], [scratch], None)
    try:
        return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
