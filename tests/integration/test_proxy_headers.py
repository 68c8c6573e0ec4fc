"""What nginx forwards, checked against an upstream that echoes the request."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from localrun.process import LOOPBACK
from localrun.services import NginxProxy

pytestmark = pytest.mark.integration

USER, PASSWORD = "echo-user", "echo:pass@word%"


class Echo(BaseHTTPRequestHandler):
    """Answers every GET with the path and headers it received."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxProxy]:
    upstream = ThreadingHTTPServer((LOOPBACK, 0), Echo)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    root = tmp_path_factory.mktemp("echo-proxy")
    nginx = NginxProxy(
        root / "nginx", log_dir=root / "logs", username=USER, password=PASSWORD,
        upstream_port=upstream.server_address[1],
    )  # fmt: skip
    nginx.start()
    yield nginx
    nginx.stop()
    upstream.shutdown()
    upstream.server_close()


def echo(proxy: NginxProxy, path: str, **headers: str) -> dict:
    response = requests.get(proxy.url + path, headers=headers, auth=(USER, PASSWORD), timeout=30)
    assert response.status_code == 200
    return response.json()


def test_host_and_forwarded_headers_reach_mlflow(proxy: NginxProxy) -> None:
    seen = echo(proxy, "/api/2.0/x?y=1", Host="abc.execute-api.eu-west-1.amazonaws.com")
    headers = {key.lower(): value for key, value in seen["headers"].items()}
    assert seen["path"] == "/api/2.0/x?y=1"
    assert headers["host"] == "abc.execute-api.eu-west-1.amazonaws.com"
    assert headers["x-forwarded-host"] == "abc.execute-api.eu-west-1.amazonaws.com"
    assert headers["x-forwarded-for"] == LOOPBACK
    assert headers["x-forwarded-proto"] == "http"


def test_forwarded_chain_from_the_alb_is_kept(proxy: NginxProxy) -> None:
    seen = echo(proxy, "/", **{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
    headers = {key.lower(): value for key, value in seen["headers"].items()}
    assert headers["x-forwarded-for"] == f"203.0.113.9, {LOOPBACK}"
    assert headers["x-forwarded-proto"] == "https"


def test_credentials_stop_at_the_proxy(proxy: NginxProxy) -> None:
    seen = echo(proxy, "/")
    assert "authorization" not in {key.lower() for key in seen["headers"]}


def test_access_log_names_the_user_but_holds_no_secret(proxy: NginxProxy) -> None:
    echo(proxy, "/logged")
    requests.get(proxy.url + "/logged", auth=(USER, PASSWORD + "x"), timeout=30)
    log = Path(proxy.process.log_path).read_text()
    line = next(line for line in log.splitlines() if '"GET /logged' in line)
    assert f" - {USER} [" in line
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for secret in (PASSWORD, token, "Basic "):
        assert secret not in log
