"""Other MLflow releases next to the pinned one, for upgrade checks.

An upgrade check runs two MLflow versions against one database: the pinned
one (this venv) and another (the release before it, or a candidate). The
other one lives in a small venv of its own, made once and kept under the
running venv (`<venv>/mlflow-versions/`), that sees this venv's packages
through a `.pth` file: pip installs only what differs (mlflow,
mlflow-skinny, mlflow-tracing and any dependency the release needs at
another version), and those shadow the pinned ones. About 25 s the first
time (the download), nothing after that.

    python -m localrun.mlflow_versions [VERSION]   # prepare it (default: the previous release)
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from stacks.mlflow_version import PINNED_REQUIREMENTS, pinned_mlflow_version

# The release deployments upgrade from in the test suite: the pin before the
# current one. When you move the pin, put the version it had here.
PREVIOUS_MLFLOW_VERSION = "3.16.1"

_VERSION = re.compile(r"\d+\.\d+\.\d+(?:(?:rc|\.post|\.dev)\d+)?")
_PIN_LINE = re.compile(r"^\s*mlflow\s*==")


class VersionUnavailable(Exception):
    """The MLflow version cannot be installed here; one line."""


def cache_root() -> Path:
    """Where the other versions' venvs live: inside the running venv, removed with it."""
    return Path(sys.prefix) / "mlflow-versions"


def _base_key() -> str:
    """Changes whenever the packages the small venvs build on may have changed."""
    purelib = sysconfig.get_paths()["purelib"]
    stamp = Path(sys.prefix) / ".installed"  # make install touches it after every install
    parts = [sys.version, purelib, PINNED_REQUIREMENTS.read_text(encoding="utf-8")]
    parts.append(str(stamp.stat().st_mtime_ns) if stamp.exists() else "")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:10]


def _requirements(version: str) -> str:
    """The pinned requirements with only the MLflow pin changed."""
    lines = PINNED_REQUIREMENTS.read_text(encoding="utf-8").splitlines()
    return "\n".join(f"mlflow=={version}" if _PIN_LINE.match(line) else line for line in lines) + "\n"


def _pip_error(output: str) -> str:
    """pip's first ERROR line, without the list of every version the index has."""
    errors = [
        line for line in output.splitlines()
        if line.startswith("ERROR:") and not line.startswith("ERROR: Ignored the following")
    ]  # fmt: skip
    line = errors[0].removeprefix("ERROR:").strip() if errors else (output.strip().splitlines() or ["pip failed"])[-1]
    return re.sub(r" \(from versions: [^)]*\)", "", line)


def venv_python(root: Path) -> Path:
    return root / "bin" / "python"


def mlflow_python(version: str, *, cache: Path | None = None, quiet: bool = True) -> Path:
    """The Python interpreter that runs MLflow `version` (installed on first use)."""
    if not _VERSION.fullmatch(version):
        raise VersionUnavailable(f"VERSION must be an MLflow release like 3.18.0, got {version!r}")
    if version == pinned_mlflow_version():
        return Path(sys.executable)
    cache = cache or cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    root = cache / f"mlflow-{version}-{_base_key()}"
    done = root / ".complete"
    if done.exists():
        return venv_python(root)
    # Test workers and people may ask for the same version at once: one builds.
    with open(cache / f".lock-{version}", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return venv_python(root)
        _build(root, version, quiet=quiet)
        done.touch()
    return venv_python(root)


def _build(root: Path, version: str, *, quiet: bool) -> None:
    shutil.rmtree(root, ignore_errors=True)
    for stale in root.parent.glob(f"mlflow-{version}-*"):
        shutil.rmtree(stale, ignore_errors=True)  # built on packages that changed since
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = venv_python(root)
    purelib = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    # After the venv's own site-packages on sys.path: what pip installs there wins.
    (purelib / "pinned-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    requirements = root / "requirements.txt"
    requirements.write_text(_requirements(version))
    if not quiet:
        print(f"installing MLflow {version} into {root} (once)", file=sys.stderr, flush=True)
    # pip comes from the pinned venv too; it installs into this venv's prefix.
    result = subprocess.run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet",
         "-r", requirements],  # fmt: skip
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise VersionUnavailable(
            f"MLflow {version} cannot be installed from the package index: {_pip_error(result.stderr + result.stdout)}"
        )
    installed = subprocess.run(
        [python, "-c", "from importlib.metadata import version; print(version('mlflow'))"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    if installed != version:
        shutil.rmtree(root, ignore_errors=True)
        raise VersionUnavailable(f"MLflow {version}: the venv at {root} imports MLflow {installed or 'nothing'}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    version = args[0] if args else PREVIOUS_MLFLOW_VERSION
    try:
        python = mlflow_python(version, quiet=False)
    except VersionUnavailable as error:
        print(f"mlflow versions: {error}", file=sys.stderr)
        return 1
    print(f"MLflow {version}: {python}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
