"""nginx's IAM server (NGINX_IAM_LISTEN) and the password server's removal of the caller header,
checked against the upstream of test_proxy_headers.py that echoes what it received."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from localrun.process import free_port
from localrun.services import NginxProxy
from stacks.iam_callers import CALLER_HEADER
from tests.integration.proxy_log import logged_text
from tests.integration.test_proxy_headers import API_GATEWAY, API_GATEWAY_HOST, PASSWORD, USER, start_proxy
from tests.integration.test_proxy_headers import upstream as upstream  # the echoing upstream, as a fixture here

pytestmark = pytest.mark.integration

ARN = "arn:aws:sts::123456789012:assumed-role/studio-execution/SageMaker"
# What MLflow's client sends with MLFLOW_TRACKING_AWS_SIGV4=true: never a password for MLflow.
SIGV4 = (
    "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20261206/eu-west-1/execute-api/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64
)


@pytest.fixture(scope="module")
def iam_proxy(tmp_path_factory: pytest.TempPathFactory, upstream: int) -> Iterator[NginxProxy]:
    root = tmp_path_factory.mktemp("echo-iam-proxy")
    nginx = NginxProxy(
        root / "nginx", log_dir=root / "logs", upstream_port=upstream, auth_mode="accounts", iam_port=free_port(),
    )  # fmt: skip
    nginx.start()
    yield nginx
    nginx.stop()


def get_with_headers(url: str, headers: list[tuple[str, str]]) -> tuple[int, dict]:
    """GET with headers as given, repeated names included (requests merges them)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=30)
    try:
        connection.putrequest("GET", parts.path or "/")
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
        return response.status, json.loads(body) if response.status == 200 else {}
    finally:
        connection.close()


def iam_url(proxy: NginxProxy) -> str:
    assert proxy.iam_url is not None
    return proxy.iam_url


def test_the_iam_server_passes_the_caller_on_and_never_the_signature(iam_proxy: NginxProxy) -> None:
    response = requests.post(
        iam_url(iam_proxy) + "/api/2.0/mlflow/runs/create", json={},
        headers={CALLER_HEADER: ARN, "Authorization": SIGV4, "X-Amz-Date": "20261206T000000Z", **API_GATEWAY},
        timeout=30,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    seen = response.json()
    headers = {key.lower(): value for key, value in seen["headers"].items()}
    assert seen["callers"] == [ARN]
    assert "authorization" not in headers
    # The same public origin, forwarded headers and request id as the password server gives.
    assert headers["host"] == API_GATEWAY_HOST
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-request-id"]


@pytest.mark.parametrize("caller", [None, ""])
def test_the_iam_server_stops_requests_without_a_caller(iam_proxy: NginxProxy, caller: str | None) -> None:
    headers = {"Authorization": SIGV4} if caller is None else {CALLER_HEADER: caller, "Authorization": SIGV4}
    response = requests.get(iam_url(iam_proxy) + "/api/2.0/mlflow/experiments/search", headers=headers, timeout=30)
    assert response.status_code == 401
    assert "No verified IAM caller" in response.text
    assert "method" not in response.text, "the request must not reach MLflow"


def test_the_iam_server_passes_every_copy_so_mlflow_can_refuse_two(iam_proxy: NginxProxy) -> None:
    other = "arn:aws:iam::123456789012:role/other"
    status, seen = get_with_headers(iam_url(iam_proxy) + "/", [(CALLER_HEADER, ARN), (CALLER_HEADER, other)])
    assert status == 200
    assert seen["callers"] == [ARN, other]


def test_the_iam_server_keeps_the_cross_site_check_limits_and_health_path(iam_proxy: NginxProxy) -> None:
    url = iam_url(iam_proxy)
    cross_site = requests.post(
        url + "/ajax-api/2.0/mlflow/runs/create", json={},
        headers={CALLER_HEADER: ARN, "Origin": "https://attacker.example", **API_GATEWAY}, timeout=30,
    )  # fmt: skip
    assert cross_site.status_code == 403 and "method" not in cross_site.text
    too_big = requests.post(url + "/api/2.0/x", data=b"x" * (10 * 2**20 + 1), headers={CALLER_HEADER: ARN}, timeout=30)
    assert too_big.status_code == 413
    assert requests.get(url + "/elb-status", timeout=30).status_code == 200


def test_the_password_server_of_every_mode_removes_a_forged_caller(
    tmp_path: Path,
    upstream: int,
    iam_proxy: NginxProxy,
) -> None:
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    shared = start_proxy(tmp_path, upstream, "shared")
    try:
        for proxy in (shared, iam_proxy):
            for copies in ([ARN], [ARN, ARN], [""]):
                headers = [("Authorization", basic), *((CALLER_HEADER, value) for value in copies)]
                status, seen = get_with_headers(proxy.url + "/api/2.0/mlflow/experiments/search", headers)
                assert status == 200
                assert seen["callers"] == [], (proxy.url, copies)
    finally:
        shared.stop()


def test_the_iam_access_log_holds_no_signature(iam_proxy: NginxProxy) -> None:
    requests.get(iam_url(iam_proxy) + "/logged-iam", headers={CALLER_HEADER: ARN, "Authorization": SIGV4}, timeout=30)
    log = logged_text(Path(iam_proxy.process.log_path), '"GET /logged-iam')
    assert "Signature=" not in log and "AWS4-HMAC-SHA256" not in log
