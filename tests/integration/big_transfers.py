"""Shared checks of the big-artifact tests, run once per auth mode.

A client process with no AWS credentials logs a 200 MB artifact and a 200 MB
model through the proxy (which refuses bodies over 10 MB) and reads both back;
the bytes must land in the bucket and none of them may pass through nginx.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from localrun.services import MotoServer
from localrun.stack import MlflowStack
from tests.integration.mlflow_users import Account
from tests.integration.proxy_log import ProxyLog, Traffic

CLIENT = Path(__file__).with_name("transfer_client.py")
BIG_FILE_BYTES = 200 * 1024 * 1024


@dataclass
class Transfer:
    result: dict[str, Any]
    traffic: Traffic
    account: Account


def run_client(stack: MlflowStack, account: Account, big_file: Path, workdir: Path) -> Transfer:
    home = workdir / "home"
    home.mkdir(parents=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(home),  # no ~/.aws
        "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
        **stack.client_env(account.username, account.password),
    }
    proxy_log = ProxyLog(stack.nginx_log)
    done = subprocess.run(
        [sys.executable, str(CLIENT), str(big_file), str(workdir / "downloads")],
        env=env, capture_output=True, text=True, timeout=900, cwd=workdir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return Transfer(json.loads(done.stdout.strip().splitlines()[-1]), proxy_log.since(), account)


def assert_round_trip(transfer: Transfer, expected_sha256: str) -> None:
    assert transfer.result["artifact_sha256"] == expected_sha256
    assert transfer.result["model_blob_sha256"] == [expected_sha256]


def assert_in_bucket(transfer: Transfer, stack: MlflowStack, moto: MotoServer, size: int) -> None:
    result = transfer.result
    listing = moto.client("s3").list_objects_v2(
        Bucket=stack.bucket, Prefix=f"mlflow-artifacts/{result['experiment_id']}/"
    )
    sizes = {item["Key"]: item["Size"] for item in listing.get("Contents", [])}
    root = f"mlflow-artifacts/{result['experiment_id']}"
    assert sizes[f"{root}/{result['run_id']}/artifacts/data/big.bin"] == size
    model_root = f"{root}/models/{result['model_id']}/"
    model_blobs = [key for key in sizes if key.startswith(model_root) and key.endswith("big.bin")]
    assert [sizes[key] for key in model_blobs] == [size]


def assert_not_through_nginx(transfer: Transfer, size: int) -> None:
    """Four times `size` moved (two uploads, two downloads); nginx saw a few API calls."""
    traffic = transfer.traffic
    assert traffic.requests, "the client must have used the proxy for the API calls"
    assert traffic.bytes_in + traffic.bytes_out < 2 * 1024 * 1024, (traffic.bytes_in, traffic.bytes_out)
    assert not any(" 413 " in request for request in traffic.requests)


def assert_presigned_urls_point_at_the_bucket(transfer: Transfer, stack: MlflowStack) -> None:
    result = transfer.result
    prefix = f"{stack.moto_endpoint}/{stack.bucket}/mlflow-artifacts/{result['experiment_id']}/{result['run_id']}/"
    base = f"{stack.proxy_url}/api/2.0/mlflow-artifacts"
    path = f"{result['experiment_id']}/{result['run_id']}/artifacts/data"
    auth = transfer.account.auth
    download = requests.get(f"{base}/presigned/{path}/big.bin", auth=auth, timeout=30)
    assert download.status_code == 200, download.text
    assert download.json()["url"].startswith(prefix)
    upload = requests.post(
        f"{base}/mpu/create/{path}", json={"path": "more.bin", "num_parts": 2}, auth=auth, timeout=30
    )
    assert upload.status_code == 200, upload.text
    urls = [credential["url"] for credential in upload.json()["credentials"]]
    assert len(urls) == 2 and all(url.startswith(prefix) for url in urls)
    requests.post(
        f"{base}/mpu/abort/{path}", json={"path": "more.bin", "upload_id": upload.json()["upload_id"]},
        auth=auth, timeout=30,
    )  # fmt: skip
