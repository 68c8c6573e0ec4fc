"""A moto server standing in for AWS, and the environment the tools and `make` run with against it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from localrun.services import MotoServer

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account
# What the caller's environment must not bring in: real AWS settings, an outer make's flags.
_DROPPED = ("AWS_", "CDK_DOCKER", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(log_dir=tmp_path_factory.mktemp("moto") / "logs")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def aws(moto: MotoServer) -> MotoServer:
    """The moto server, emptied before each test."""
    requests.post(f"{moto.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()
    return moto


def client(moto: MotoServer, service: str):  # noqa: ANN201 - a boto3 client
    import boto3

    return boto3.client(
        service,
        endpoint_url=moto.endpoint_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def run_from_root(argv: list[str], env: dict[str, str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``argv`` run from the repository's root, output captured as text; the test reads the exit code."""
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def fake_command(directory: Path, name: str, script: str) -> Path:
    """An executable shell script standing in for a command that cannot run here (docker, npx)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + script, encoding="utf-8")
    path.chmod(0o755)
    return path


def tool_env(moto: MotoServer | None, path: list[Path], **overrides: str) -> dict[str, str]:
    """Credentials and region for ``moto`` (none if None), no AWS config files, ``path`` first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED)}
    env.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        PATH=os.pathsep.join([*map(str, path), str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    if moto is not None:
        env.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_REGION=REGION,
            AWS_ENDPOINT_URL=moto.endpoint_url,
        )
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}
