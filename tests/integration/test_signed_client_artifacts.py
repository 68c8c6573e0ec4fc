"""IAM sign-in's artifact settings: no artifact body passes through the proxy, at any size but zero.

MLflow's SigV4 signer cannot hash the open file a proxied upload streams, so a
signed client must upload through presigned URLs. Presigning does not depend on
how a client signs in: the shared-mode stack's password route shows which
requests the settings make (nginx's access log) and that the bytes come back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from requests_auth_aws_sigv4 import AWSSigV4

from localrun.stack import MlflowStack, artifact_transfer_settings
from tests.integration.proxy_log import ProxyLog, Traffic
from tests.integration.transfer_client import sha256

pytestmark = [pytest.mark.integration]

CLIENT = Path(__file__).with_name("signed_transfer_client.py")
MIB = 1024 * 1024
# One byte, a small file, one just under the unsigned clients' 5 MiB threshold; the 200 MB one is big_file.
SMALL_SIZES = (1, 1024, 5 * MIB - 1)


def signed_client(stack: MlflowStack, workdir: Path, files: list[Path]) -> tuple[dict, Traffic]:
    """Run the client with the settings configure_mlflow() gives an IAM client; its result and nginx's view."""
    home = workdir / "home"
    home.mkdir(parents=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "PYTHONPATH": str(CLIENT.parent),
        "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
        **stack.client_env(),
        **artifact_transfer_settings(signed=True),
    }
    log = ProxyLog(stack.nginx_log)
    done = subprocess.run(
        [sys.executable, str(CLIENT), str(workdir / "downloads"), *map(str, files)],
        env=env, capture_output=True, text=True, timeout=900, cwd=workdir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), log.since()


@pytest.fixture(scope="module")
def files(big_file: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("signed-files")
    small = [folder / f"size-{size}.bin" for size in SMALL_SIZES]
    for path, size in zip(small, SMALL_SIZES, strict=True):
        path.write_bytes(os.urandom(size))
    return [*small, big_file]


@pytest.fixture(scope="module")
def transfer(mlflow_stack: MlflowStack, files: list[Path], tmp_path_factory: pytest.TempPathFactory):
    return signed_client(mlflow_stack, tmp_path_factory.mktemp("signed-client"), files)


def test_every_size_comes_back_byte_exact(transfer, files: list[Path]) -> None:
    result, _ = transfer
    expected = {path.name: sha256(path) for path in files}
    assert result["artifacts"] == expected
    assert {name: digest for name, digest in result["model"].items() if name in expected} == expected
    assert "MLmodel" in result["model"]


def test_no_upload_goes_through_the_proxy(transfer, files: list[Path]) -> None:
    """Not one PUT: the files, and the model's own small files (MLmodel, requirements.txt, ...), went presigned."""
    _, traffic = transfer
    assert not [line for line in traffic.requests if line.startswith("PUT ")]
    creates = [line for line in traffic.requests if line.startswith("POST /api/2.0/mlflow-artifacts/mpu/create/")]
    assert len(creates) > 2 * len(files)  # each file twice, plus the model's own files
    # Only API calls passed: the uploads' and downloads' bytes (over 400 MB) did not.
    assert traffic.bytes_in + traffic.bytes_out < 2 * MIB, (traffic.bytes_in, traffic.bytes_out)


def test_downloads_take_presigned_urls_at_every_size(transfer, files: list[Path]) -> None:
    _, traffic = transfer
    for path in files:
        presigned = [line for line in traffic.requests if "/mlflow-artifacts/presigned/" in line and path.name in line]
        assert len(presigned) == 2, path.name  # the artifact and the model's copy
    proxied = [line for line in traffic.requests if line.startswith("GET /api/2.0/mlflow-artifacts/artifacts/")]
    assert proxied == []


def test_an_empty_file_is_the_one_upload_left_on_the_proxy(mlflow_stack: MlflowStack, tmp_path: Path) -> None:
    """S3 multipart needs a part: the server hands out no URL for an empty file, so MLflow's client PUTs it."""
    empty = tmp_path / "empty.bin"
    empty.touch()
    result, traffic = signed_client(mlflow_stack, tmp_path / "client", [empty])
    assert result["artifacts"] == {"empty.bin": sha256(empty)}
    puts = [line for line in traffic.requests if line.startswith("PUT ")]
    assert len(puts) == 2 and all("empty.bin" in line for line in puts)  # the artifact and the model's copy


def test_the_signer_cannot_sign_a_streamed_body(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the proxied upload is closed to IAM clients (upstream issue 15051): even an empty file fails to sign."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "a",
        "AWS_SECRET_ACCESS_KEY": "b",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    empty = tmp_path / "empty.bin"
    empty.touch()
    with open(empty, "rb") as body, pytest.raises(AttributeError, match="encode"):
        requests.Request("PUT", "https://api.example.invalid/x", data=body, auth=AWSSigV4("execute-api")).prepare()
    signed = requests.Request("PUT", "https://api.example.invalid/x", data=b"", auth=AWSSigV4("execute-api")).prepare()
    assert signed.headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")
