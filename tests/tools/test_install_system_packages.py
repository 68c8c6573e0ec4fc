"""tools/install-system-packages.sh decides right: fake dpkg-query, apt-get, sudo and id on a bare PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "install-system-packages.sh"
PACKAGE_LIST = REPO / "tools" / "system-packages.txt"
# Real tools the script (and the fake dpkg-query: grep) use besides the faked ones.
TOOLS = ("dirname", "sed", "tr", "grep")

FAKE_DPKG_QUERY = """#!/bin/sh
# dpkg-query -W -f='${Status}' PACKAGE: installed if listed in $FAKE_STATE/installed
package=$3
if grep -qx "$package" "$FAKE_STATE/installed" 2>/dev/null; then
    printf 'install ok installed'
else
    echo "dpkg-query: no packages found matching $package" >&2; exit 1
fi
"""
FAKE_APT_GET = """#!/bin/sh
echo "apt-get $* (uid $(id -u))" >> "$FAKE_STATE/calls"
[ -z "${FAKE_APT_FAILS:-}" ] || { echo "E: Unable to locate package" >&2; exit 100; }
if [ "$1" = install ]; then
    for word in "$@"; do case $word in -*|install) ;; *) echo "$word" >> "$FAKE_STATE/installed" ;; esac; done
fi
"""
FAKE_SUDO = """#!/bin/sh
echo "sudo $*" >> "$FAKE_STATE/calls"
FAKE_UID=0 exec "$@"
"""
FAKE_ID = """#!/bin/sh
echo "$FAKE_UID"
"""
FAKE_SERVICE = """#!/bin/sh
echo "service $* (uid $(id -u))" >> "$FAKE_STATE/calls"
"""


def packages() -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in PACKAGE_LIST.read_text().splitlines())
    return [line for line in lines if line]


def run(
    tmp_path: Path, *, uid: int, installed: list[str], fakes: tuple[str, ...], **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the script with only the given fakes (and a few real tools) on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    sources = {"dpkg-query": FAKE_DPKG_QUERY, "apt-get": FAKE_APT_GET, "sudo": FAKE_SUDO, "id": FAKE_ID,
               "service": FAKE_SERVICE}  # fmt: skip
    for name in ("id", *fakes):
        (bin_dir / name).write_text(sources[name])
        (bin_dir / name).chmod(0o755)
    for tool in TOOLS:
        if not (bin_dir / tool).exists():
            real = next(Path(d) / tool for d in ("/usr/bin", "/bin") if (Path(d) / tool).exists())
            (bin_dir / tool).symlink_to(real)
    (tmp_path / "installed").write_text("".join(f"{p}\n" for p in installed))
    result = subprocess.run(
        ["/bin/sh", SCRIPT], capture_output=True, text=True, timeout=30,
        env={"PATH": str(bin_dir), "FAKE_STATE": str(tmp_path), "FAKE_UID": str(uid), **env},
    )  # fmt: skip
    calls_file = tmp_path / "calls"
    calls = calls_file.read_text().splitlines() if calls_file.exists() else []
    return result, calls


DEBIAN = ("dpkg-query", "apt-get", "sudo", "service")


def test_the_list_holds_what_the_suite_runs() -> None:
    assert {"nginx-light", "postgresql", "postgresql-contrib", "openssl", "curl"} <= set(packages())


def test_nothing_happens_when_everything_is_installed(tmp_path: Path) -> None:
    result, calls = run(tmp_path, uid=1000, installed=packages(), fakes=DEBIAN)
    assert result.returncode == 0 and result.stdout == result.stderr == ""
    assert calls == []


def test_root_installs_only_the_missing_packages(tmp_path: Path) -> None:
    have = [p for p in packages() if p not in ("nginx-light", "openssl")]
    result, calls = run(tmp_path, uid=0, installed=have, fakes=DEBIAN)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "system packages: installing nginx-light openssl\n"
    assert calls[:2] == [
        "apt-get update -qq (uid 0)",
        "apt-get install -y -qq --no-install-recommends nginx-light openssl (uid 0)",
    ]
    assert not any(call.startswith("sudo") for call in calls)
    # A second run finds everything and does nothing.
    (tmp_path / "calls").unlink()
    again, calls = run(tmp_path, uid=0, installed=packages(), fakes=DEBIAN)
    assert again.returncode == 0 and calls == []


def test_a_user_installs_through_sudo(tmp_path: Path) -> None:
    missing = packages()
    result, calls = run(tmp_path, uid=1000, installed=[], fakes=DEBIAN)
    assert result.returncode == 0, result.stderr
    assert calls[:4] == [
        "sudo apt-get update -qq",
        "apt-get update -qq (uid 0)",
        f"sudo apt-get install -y -qq --no-install-recommends {' '.join(missing)}",
        f"apt-get install -y -qq --no-install-recommends {' '.join(missing)} (uid 0)",
    ]
    # The system services the packages start are stopped (the tests run their own).
    assert "service nginx stop (uid 0)" in calls and "service postgresql stop (uid 0)" in calls


def test_a_user_without_sudo_gets_one_clear_line(tmp_path: Path) -> None:
    result, calls = run(tmp_path, uid=1000, installed=["curl"], fakes=("dpkg-query", "apt-get"))
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "missing nginx-light postgresql" in line and "run as root or install sudo" in line
    assert calls == []


def test_without_apt_it_says_so_and_goes_on(tmp_path: Path) -> None:
    result, calls = run(tmp_path, uid=1000, installed=[], fakes=())
    assert result.returncode == 0
    (line,) = result.stderr.splitlines()
    assert line.startswith("system packages: no apt-get here;") and "nginx-light" in line
    assert calls == []


def test_a_failing_apt_get_stops_with_one_line_of_ours(tmp_path: Path) -> None:
    result, _ = run(tmp_path, uid=0, installed=[], fakes=DEBIAN, FAKE_APT_FAILS="1")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("system packages: apt-get could not install nginx-light")


def test_make_test_and_ci_use_it() -> None:
    makefile = (REPO / "Makefile").read_text()
    # The previous MLflow release (for the upgrade test) is prepared the same way.
    assert "test: install system-packages mlflow-previous\n" in makefile
    assert "mlflow-previous: install\n\t$(BIN)/python -m localrun.mlflow_versions\n" in makefile
    assert "\ttools/install-system-packages.sh\n" in makefile
    ci = (REPO / ".ci" / "run").read_text()
    assert "exec make test" in ci and "apt-get" not in ci
    assert os.access(SCRIPT, os.X_OK)


@pytest.mark.skipif(not Path("/usr/bin/dpkg-query").exists(), reason="not a Debian/Ubuntu machine")
def test_this_machine_has_every_package() -> None:
    """`make test` ran the script before this suite: on Debian/Ubuntu every package is there."""
    result = subprocess.run([SCRIPT], capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.stderr == "", result.stderr
