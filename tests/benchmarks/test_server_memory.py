"""The task cgroup the memory benchmark reads its enforced figures from."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server_memory() -> ModuleType:
    spec = importlib.util.spec_from_file_location("server_memory", REPO / "benchmarks" / "server_memory.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_what_starts_inside_is_charged_there_and_the_group_goes_away(server_memory: ModuleType) -> None:
    """64 MiB a child allocates while the benchmark hosts the cgroup show in its charge and peak.

    A machine without a writable cgroup v1 memory hierarchy gets the reason instead,
    and the benchmark prints that rather than figures.
    """
    with server_memory.TaskCgroup() as cgroup:
        if not cgroup.available:
            assert cgroup.why.startswith(f"{server_memory.TaskCgroup.ROOT}: ") and not cgroup.path.exists()
            return
        cgroup.reset_peak()
        with cgroup.hosting():
            child = subprocess.Popen(
                [sys.executable, "-c", "import sys; b = bytearray(64 << 20); sys.stdout.write('ok\\n'); "
                 "sys.stdout.flush(); sys.stdin.read()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
        assert child.stdout is not None and child.stdout.readline() == "ok\n"
        charged, anonymous = cgroup.charge()
        assert anonymous >= 64 * MIB and charged >= anonymous, (charged, anonymous)
        assert cgroup.peak() >= charged
        own = (Path("/proc/self/cgroup").read_text().splitlines(), Path(f"/proc/{child.pid}/cgroup").read_text())
        assert cgroup.path.name in own[1] and not any(cgroup.path.name in line for line in own[0]), own
        child.communicate("", timeout=30)
    assert not cgroup.path.exists()
