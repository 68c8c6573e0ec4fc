"""What nginx forwards and refuses, checked against an upstream that echoes the request."""

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
from stacks.iam_callers import CALLER_HEADER
from tests.integration.proxy_log import logged_text

pytestmark = pytest.mark.integration

USER, PASSWORD = "echo-user", "echo:pass@word%"
API_GATEWAY_HOST = "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
API_GATEWAY = {"X-Public-Host": API_GATEWAY_HOST, "X-Public-Proto": "https"}


class Echo(BaseHTTPRequestHandler):
    """Answers every request with the method, path and headers it received."""

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({
            "method": self.command, "path": self.path, "headers": dict(self.headers.items()),
            # Every copy of the IAM caller header (dict() above keeps one).
            "callers": self.headers.get_all(CALLER_HEADER) or [],
        }).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _echo  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer((LOOPBACK, 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def start_proxy(root: Path, upstream: int, mode: str) -> NginxProxy:
    nginx = NginxProxy(
        root / "nginx", log_dir=root / "logs", username=USER, password=PASSWORD,
        upstream_port=upstream, auth_mode=mode,
    )  # fmt: skip
    nginx.start()
    return nginx


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, upstream: int) -> Iterator[NginxProxy]:
    nginx = start_proxy(tmp_path_factory.mktemp("echo-proxy"), upstream, "shared")
    yield nginx
    nginx.stop()


@pytest.fixture(scope="module")
def accounts_proxy(tmp_path_factory: pytest.TempPathFactory, upstream: int) -> Iterator[NginxProxy]:
    nginx = start_proxy(tmp_path_factory.mktemp("echo-accounts-proxy"), upstream, "accounts")
    yield nginx
    nginx.stop()


@pytest.fixture(params=["shared", "accounts"])
def any_proxy(request: pytest.FixtureRequest) -> NginxProxy:
    return request.getfixturevalue("proxy" if request.param == "shared" else "accounts_proxy")


def send(proxy: NginxProxy, method: str, path: str, **headers: str) -> requests.Response:
    return requests.request(
        method, proxy.url + path, headers=headers, auth=(USER, PASSWORD), timeout=30,
        **({"json": {}} if method != "GET" else {}),
    )  # fmt: skip


def echo(proxy: NginxProxy, path: str, **headers: str) -> dict:
    response = send(proxy, "GET", path, **headers)
    assert response.status_code == 200
    seen = response.json()
    seen["headers"] = {key.lower(): value for key, value in seen["headers"].items()}
    return seen


def test_host_and_forwarded_headers_reach_mlflow(proxy: NginxProxy) -> None:
    seen = echo(proxy, "/api/2.0/x?y=1", Host="abc.execute-api.eu-west-1.amazonaws.com")
    headers = seen["headers"]
    assert seen["path"] == "/api/2.0/x?y=1"
    assert headers["host"] == "abc.execute-api.eu-west-1.amazonaws.com"
    assert headers["x-forwarded-host"] == "abc.execute-api.eu-west-1.amazonaws.com"
    assert headers["x-forwarded-for"] == LOOPBACK
    assert headers["x-forwarded-proto"] == "http"


def test_direct_requests_keep_the_port_of_their_host(proxy: NginxProxy) -> None:
    """A local browser's origin is http://127.0.0.1:<port>: MLflow must see that host."""
    headers = echo(proxy, "/")["headers"]
    assert headers["host"] == f"{LOOPBACK}:{proxy.port}"


def test_forwarded_chain_from_the_alb_is_kept(proxy: NginxProxy) -> None:
    seen = echo(proxy, "/", **{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
    headers = seen["headers"]
    assert headers["x-forwarded-for"] == f"203.0.113.9, {LOOPBACK}"
    assert headers["x-forwarded-proto"] == "https"


def test_api_gateway_public_host_and_scheme_win(any_proxy: NginxProxy) -> None:
    headers = echo(
        any_proxy, "/", Host="internal-alb-1.eu-west-1.elb.amazonaws.com",
        **{"X-Forwarded-Proto": "http"}, **API_GATEWAY,
    )["headers"]  # fmt: skip
    assert headers["host"] == API_GATEWAY_HOST
    assert headers["x-forwarded-host"] == API_GATEWAY_HOST
    assert headers["x-forwarded-proto"] == "https"


@pytest.mark.parametrize("public", [{"X-Public-Proto": "javascript"}, {"X-Public-Host": "evil.example/path?x"}])
def test_malformed_public_headers_are_ignored(proxy: NginxProxy, public: dict[str, str]) -> None:
    headers = echo(proxy, "/", **public)["headers"]
    assert headers["x-forwarded-proto"] == "http"
    assert headers["host"] == f"{LOOPBACK}:{proxy.port}"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    "origin",
    [
        "https://f6g7h8i9j0.execute-api.eu-west-1.amazonaws.com",  # another API in the region
        f"http://{API_GATEWAY_HOST}",  # same host, other scheme
        "https://attacker.example",
        "null",
    ],
)
def test_cross_site_writes_are_refused(any_proxy: NginxProxy, method: str, origin: str) -> None:
    response = send(any_proxy, method, "/ajax-api/2.0/mlflow/runs/create", Origin=origin, **API_GATEWAY)
    assert response.status_code == 403
    assert "method" not in response.text, "the request must not reach MLflow"


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_same_site_and_non_browser_writes_pass(any_proxy: NginxProxy, method: str) -> None:
    same_site = send(
        any_proxy, method, "/ajax-api/2.0/x", Origin=f"https://{API_GATEWAY_HOST.upper()}",
        **API_GATEWAY,
    )  # fmt: skip
    assert same_site.status_code == 200 and same_site.json()["method"] == method
    local = send(any_proxy, method, "/ajax-api/2.0/x", Origin=f"http://{LOOPBACK}:{any_proxy.port}")
    assert local.status_code == 200
    no_origin = send(any_proxy, method, "/api/2.0/x", **API_GATEWAY)
    assert no_origin.status_code == 200


def test_cross_site_reads_are_mlflows_business(any_proxy: NginxProxy) -> None:
    """Reading is not refused by nginx (MLflow's CORS rules decide what a browser may see)."""
    response = send(any_proxy, "GET", "/api/2.0/x", Origin="https://attacker.example", **API_GATEWAY)
    assert response.status_code == 200


def test_credentials_stop_at_the_proxy(proxy: NginxProxy) -> None:
    seen = echo(proxy, "/")
    assert "authorization" not in seen["headers"]


def test_accounts_mode_hands_the_credentials_to_mlflow(accounts_proxy: NginxProxy) -> None:
    seen = echo(accounts_proxy, "/")
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert seen["headers"]["authorization"] == f"Basic {token}"


def test_accounts_mode_stops_requests_without_credentials(accounts_proxy: NginxProxy) -> None:
    """MLflow's auth app would let /health and the UI's files through; nginx does not."""
    for path in ["/", "/health", "/static-files/index.html", "/api/2.0/mlflow/experiments/search"]:
        response = requests.get(accounts_proxy.url + path, timeout=30)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
        assert "method" not in response.text
    assert requests.get(accounts_proxy.url + "/elb-status", timeout=30).status_code == 200


def test_access_log_names_the_user_but_holds_no_secret(proxy: NginxProxy) -> None:
    echo(proxy, "/logged")
    requests.get(proxy.url + "/logged", auth=(USER, PASSWORD + "x"), timeout=30)
    log = logged_text(Path(proxy.process.log_path), '"GET /logged')
    line = next(line for line in log.splitlines() if '"GET /logged' in line)
    assert f" - {USER} [" in line
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for secret in (PASSWORD, token, "Basic "):
        assert secret not in log


def test_accounts_access_log_holds_no_secret(accounts_proxy: NginxProxy) -> None:
    echo(accounts_proxy, "/logged-accounts")
    log = logged_text(Path(accounts_proxy.process.log_path), '"GET /logged-accounts')
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for secret in (PASSWORD, token, "Basic "):
        assert secret not in log
