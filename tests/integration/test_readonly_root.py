"""nginx and MLflow run with a read-only root filesystem, as their containers do, and write only to scratch.

The session's stack starts both entrypoints in a private mount namespace
where everything but their scratch directories is read-only
(localrun/readonly.py): every integration test that passes is a run with a
read-only root. These tests check that the sandbox is really in place and
what the entrypoints left in their scratch directories.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from localrun import readonly
from localrun.process import ManagedProcess
from localrun.stack import MlflowStack

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not readonly.available(),
        reason="no mount namespaces here (needs root or unprivileged user namespaces, util-linux unshare)",
    ),
]


def mounts(process: ManagedProcess) -> dict[str, set[str]]:
    """Mount point -> its per-mount options, as the running process sees them."""
    assert process.pid is not None and process.running
    result = {}
    for line in Path(f"/proc/{process.pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        result[fields[4].replace("\\040", " ")] = set(fields[5].split(","))
    return result


@pytest.mark.parametrize("name", ["nginx", "mlflow"])
def test_root_is_read_only_and_scratch_writable(mlflow_stack: MlflowStack, name: str) -> None:
    server = getattr(mlflow_stack, name)
    seen = mounts(server.process)
    assert "ro" in seen["/"], f"{name} can write its root filesystem: {seen['/']}"
    writable = {str(Path(p).resolve()) for p in server.process.readonly_root}
    assert str(server.workdir.resolve()) in writable
    for mount, options in seen.items():
        if mount in writable:
            assert "rw" in options, mount
        elif not mount.startswith(("/proc", "/sys", "/dev")):
            assert "ro" in options, f"{name} may write {mount}"


def test_the_sandbox_refuses_writes_outside_scratch(tmp_path: Path) -> None:
    scratch, outside = tmp_path / "scratch", tmp_path / "outside"
    scratch.mkdir()
    outside.mkdir()
    script = 'touch "$1/ok" && ! touch "$2/no" 2>/dev/null && ! touch /etc/localrun-probe 2>/dev/null'
    argv = readonly.wrap(["/bin/sh", "-c", script, "sh", str(scratch), str(outside)], [scratch], None)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert (scratch / "ok").exists() and not (outside / "no").exists()


def test_entrypoints_wrote_only_their_runtime_files(mlflow_stack: MlflowStack) -> None:
    runtime = mlflow_stack.nginx.workdir / "runtime"
    assert sorted(p.name for p in runtime.iterdir()) == [
        "client_body", "fastcgi", "htpasswd", "nginx.conf", "nginx.pid", "proxy", "scgi", "server_common.conf", "uwsgi",
    ]  # fmt: skip
    assert sorted(p.name for p in mlflow_stack.nginx.workdir.iterdir()) == ["runtime"]
    # MLflow's scratch: HOME, MLFLOW_RUNTIME_DIR and TMPDIR, all inside its one writable directory.
    env = mlflow_stack.mlflow.process.env
    workdir = str(mlflow_stack.mlflow.workdir)
    assert env["HOME"] == env["MLFLOW_RUNTIME_DIR"] == workdir and env["TMPDIR"].startswith(workdir)
