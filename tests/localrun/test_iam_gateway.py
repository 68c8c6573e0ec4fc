"""The local IAM route verifies real SigV4 signatures and writes the caller header as API Gateway does.

Clients are the real signers: requests-auth-aws-sigv4 (what MLflow's client loads for
MLFLOW_TRACKING_AWS_SIGV4=true) and botocore's SigV4Auth. The upstream is a small HTTP
server that records what reached it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import json
import logging
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from requests_auth_aws_sigv4 import AWSSigV4

from localrun.iam_gateway import MAX_BODY_BYTES, CredentialTable, IamGateway, IssuedCredentials
from localrun.process import LOOPBACK
from stacks.iam_callers import CALLER_HEADER
from stacks.names import API_REQUEST_ID_HEADER, PUBLIC_HOST_HEADER, PUBLIC_PROTO_HEADER

REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/studio/ProfileAExecutionRole"
SESSION_ARN = "arn:aws:sts::123456789012:assumed-role/ProfileAExecutionRole/notebook"
USER = "arn:aws:iam::123456789012:user/ci/pipeline"
SIGNING_HEADERS = ("authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256")


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, list[str]]
    body: bytes


@dataclass
class Upstream:
    url: str
    seen: list[Seen] = field(default_factory=list)

    def header(self, name: str) -> list[str]:
        return self.seen[-1].headers.get(name.lower(), [])


def _handler(record: list[Seen]) -> type[BaseHTTPRequestHandler]:
    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers: dict[str, list[str]] = {}
            for name, value in self.headers.items():
                headers.setdefault(name.lower(), []).append(value)
            record.append(Seen(self.command, self.path, headers, body))
            if self.path.startswith("/download/"):
                self._download(int(self.path.rsplit("/", 1)[1]))
                return
            reply = json.dumps({"path": self.path, "caller": self.headers.get(CALLER_HEADER)}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Upstream", "echo")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def _download(self, size: int) -> None:
            """`size` bytes of a repeating pattern, chunked (no Content-Length)."""
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            block = bytes(range(256)) * 4096
            sent = 0
            while sent < size:
                piece = block[: size - sent]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
            self.wfile.write(b"0\r\n\r\n")

        do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815 - http.server's method names

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
            pass

    return Echo


def _expected_download(size: int) -> bytes:
    block = bytes(range(256)) * 4096
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    seen: list[Seen] = []
    server = ThreadingHTTPServer((LOOPBACK, 0), _handler(seen))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield Upstream(f"http://{LOOPBACK}:{server.server_port}", seen)
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def table() -> CredentialTable:
    return CredentialTable()


@pytest.fixture
def gateway(upstream: Upstream, table: CredentialTable) -> Iterator[IamGateway]:
    with IamGateway(upstream=upstream.url, region=REGION, credentials=table) as running:
        yield running


@pytest.fixture
def keys(table: CredentialTable) -> IssuedCredentials:
    return table.issue(ROLE, "notebook")


def botocore_signed(
    keys: IssuedCredentials,
    url: str,
    *,
    method: str = "POST",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    region: str = REGION,
    service: str = "execute-api",
    secret: str | None = None,
) -> dict[str, str]:
    """The headers botocore's signer adds for this request (host taken from `url`)."""
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    credentials = Credentials(keys.access_key_id, secret or keys.secret_access_key, keys.session_token)
    SigV4Auth(credentials, service, region).add_auth(request)
    return dict(request.headers.items())


def send(method: str, url: str, headers: dict[str, str], body: bytes = b"") -> requests.Response:
    return requests.request(method, url, headers=headers, data=body, timeout=30)


def assert_refused(response: requests.Response, status: int, error_type: str, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["x-amzn-ErrorType"] == error_type
    assert response.headers["Content-Type"] == "application/json"
    assert message in response.json()["message"]


def assert_reached_as(upstream: Upstream, arn: str) -> None:
    assert upstream.header(CALLER_HEADER) == [arn]
    for name in SIGNING_HEADERS:
        assert upstream.header(name) == [], name


@pytest.fixture
def signer_env(monkeypatch: pytest.MonkeyPatch, keys: IssuedCredentials, tmp_path: Path) -> None:
    """The issued keys where boto3's chain (used by MLflow's signer) finds them, and nothing else."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name, value in keys.env().items():
        monkeypatch.setenv(name, value)


# What passes


@pytest.mark.usefixtures("signer_env")
def test_mlflow_signer_signs_in_as_the_assumed_role(gateway: IamGateway, upstream: Upstream) -> None:
    body = json.dumps({"run_id": "abc", "metrics": [{"key": "loss", "value": 0.5}]}).encode()
    response = requests.post(
        f"{gateway.url}/api/2.0/mlflow/runs/log-batch?b=2&a=1",
        data=body,
        headers={"Content-Type": "application/json"},
        auth=AWSSigV4("execute-api", region=REGION),
        timeout=30,
    )
    assert response.status_code == 201, response.text
    assert response.headers["X-Upstream"] == "echo"
    assert response.headers["Apigw-Requestid"]
    seen = upstream.seen[-1]
    assert (seen.method, seen.path, seen.body) == ("POST", "/api/2.0/mlflow/runs/log-batch?b=2&a=1", body)
    assert_reached_as(upstream, SESSION_ARN)
    assert upstream.header(PUBLIC_HOST_HEADER) == [f"{LOOPBACK}:{gateway.port}"]
    assert upstream.header(PUBLIC_PROTO_HEADER) == ["http"]
    assert upstream.header(API_REQUEST_ID_HEADER) == [response.headers["Apigw-Requestid"]]


@pytest.mark.usefixtures("signer_env")
def test_mlflow_client_with_sigv4_on_reaches_the_upstream(
    gateway: IamGateway, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's own request path with MLFLOW_TRACKING_AWS_SIGV4=true (it loads the signer itself)."""
    monkeypatch.setenv("MLFLOW_TRACKING_AWS_SIGV4", "true")
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    response = http_request(
        get_default_host_creds(gateway.url), "/api/2.0/mlflow/experiments/get", "GET", params={"experiment_id": "0"}
    )
    assert response.status_code == 201, response.text
    assert upstream.seen[-1].path == "/api/2.0/mlflow/experiments/get?experiment_id=0"
    assert_reached_as(upstream, SESSION_ARN)


def test_botocore_signed_request_passes(gateway: IamGateway, upstream: Upstream, keys: IssuedCredentials) -> None:
    url = f"{gateway.url}/api/2.0/mlflow/runs/search?max_results=5&filter=a%20b"
    body = b'{"experiment_ids": ["1"]}'
    response = send("POST", url, botocore_signed(keys, url, body=body), body)
    assert response.status_code == 201, response.text
    assert upstream.seen[-1].path == "/api/2.0/mlflow/runs/search?max_results=5&filter=a%20b"
    assert_reached_as(upstream, SESSION_ARN)


def test_a_user_signs_with_long_term_keys(gateway: IamGateway, upstream: Upstream, table: CredentialTable) -> None:
    user_keys = table.issue(USER)
    assert user_keys.session_token is None and "AWS_SESSION_TOKEN" not in user_keys.env()
    url = f"{gateway.url}/api/2.0/mlflow/experiments/list"
    response = send("GET", url, botocore_signed(user_keys, url, method="GET"))
    assert response.status_code == 201, response.text
    assert_reached_as(upstream, USER)


# Keys another issuer handed out (moto's STS for a process that assumes its own role).
ELSEWHERE = IssuedCredentials("ASIAMOTO0000EXAMPLE1", "moto-secret", "moto-session-token", SESSION_ARN)


def test_registered_keys_sign_in_as_their_session_and_still_need_their_token(
    gateway: IamGateway, upstream: Upstream, table: CredentialTable
) -> None:
    assert table.register(ELSEWHERE) == ELSEWHERE
    assert table.register(ELSEWHERE) == ELSEWHERE  # the same keys again change nothing
    url = f"{gateway.url}/api/2.0/mlflow/experiments/list"
    response = send("GET", url, botocore_signed(ELSEWHERE, url, method="GET"))
    assert response.status_code == 201, response.text
    assert_reached_as(upstream, SESSION_ARN)
    wrong_token = IssuedCredentials(ELSEWHERE.access_key_id, ELSEWHERE.secret_access_key, "other-token", SESSION_ARN)
    refused = send("GET", url, botocore_signed(wrong_token, url, method="GET"))
    assert_refused(refused, 403, "UnrecognizedClientException", INVALID_TOKEN)
    assert len(upstream.seen) == 1


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (IssuedCredentials("short", "s", "t", SESSION_ARN), "not an access key id"),
        (IssuedCredentials("ASIAMOTO0000EXAMPLE2", "", "t", SESSION_ARN), "has no secret"),
        (IssuedCredentials("ASIAMOTO0000EXAMPLE2", "s", "t", ROLE), "only a session of it signs"),
        (IssuedCredentials("ASIAMOTO0000EXAMPLE2", "s", None, SESSION_ARN), "session token"),
        (IssuedCredentials("AKIAMOTO0000EXAMPLE2", "s", "t", USER), "session token"),
        (IssuedCredentials("ASIAMOTO0000EXAMPLE2", "s", "t", "arn:aws:iam::123456789012:root"), "not an IAM role"),
        (IssuedCredentials(ELSEWHERE.access_key_id, "other", "t", SESSION_ARN), "already held"),
    ],
    ids=["bad key id", "no secret", "a role, not a session", "session without token", "user with token", "root",
         "key id taken"],
)  # fmt: skip
def test_keys_that_could_not_sign_are_not_registered(
    table: CredentialTable, keys: IssuedCredentials, message: str
) -> None:
    table.register(ELSEWHERE)
    with pytest.raises(ValueError, match=message):
        table.register(keys)
    assert table.get(keys.access_key_id) in (None, ELSEWHERE)
    assert table.get(ELSEWHERE.access_key_id) == ELSEWHERE


def test_a_signed_caller_header_is_overwritten(
    gateway: IamGateway, upstream: Upstream, keys: IssuedCredentials
) -> None:
    """The client may sign a forged identity header: the mapping replaces it all the same."""
    url = f"{gateway.url}/api/2.0/mlflow/runs/create"
    forged = {CALLER_HEADER: "arn:aws:iam::123456789012:role/Admin", PUBLIC_HOST_HEADER: "evil.example"}
    response = send("POST", url, botocore_signed(keys, url, body=b"{}", headers=forged), b"{}")
    assert response.status_code == 201, response.text
    assert_reached_as(upstream, SESSION_ARN)
    assert upstream.header(PUBLIC_HOST_HEADER) == [f"{LOOPBACK}:{gateway.port}"]


def test_concurrent_callers_each_reach_the_upstream_as_themselves(gateway: IamGateway, table: CredentialTable) -> None:
    other_role = "arn:aws:iam::210987654321:role/ProfileBExecutionRole"
    callers = [table.issue(ROLE, f"job-{n}") if n % 2 else table.issue(other_role, f"job-{n}") for n in range(8)]
    mixed_up: list[str] = []

    def client(keys: IssuedCredentials) -> None:
        session = requests.Session()
        for _ in range(10):
            url = f"{gateway.url}/api/2.0/mlflow/runs/log-metric"
            response = session.post(url, data=b"{}", headers=botocore_signed(keys, url, body=b"{}"), timeout=30)
            if response.status_code != 201 or response.json()["caller"] != keys.arn:
                mixed_up.append(f"{keys.arn}: {response.status_code} {response.text}")

    threads = [threading.Thread(target=client, args=(keys,)) for keys in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert mixed_up == []


def test_the_upstream_gets_the_path_without_dot_segments(
    gateway: IamGateway, upstream: Upstream, keys: IssuedCredentials
) -> None:
    """SigV4 signs the path with dot segments resolved; the upstream gets it resolved too, never the raw ones."""
    target = "/api/2.0/mlflow//runs/./x/../get?run_id=1"
    connection = http.client.HTTPConnection(LOOPBACK, gateway.port, timeout=30)  # sends the target unchanged
    connection.request("GET", target, headers=botocore_signed(keys, gateway.url + target, method="GET"))
    assert connection.getresponse().status == 201
    connection.close()
    assert upstream.seen[-1].path == "/api/2.0/mlflow//runs/get?run_id=1"


def test_a_large_download_streams_back_byte_exact(
    gateway: IamGateway, upstream: Upstream, keys: IssuedCredentials
) -> None:
    size = 12 * 1024 * 1024 + 7
    url = f"{gateway.url}/download/{size}"
    with requests.get(url, headers=botocore_signed(keys, url, method="GET"), stream=True, timeout=60) as response:
        assert response.status_code == 200
        digest = hashlib.sha256()
        for chunk in response.iter_content(1 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(_expected_download(size)).hexdigest()


def test_a_body_of_exactly_10_mb_passes(gateway: IamGateway, upstream: Upstream, keys: IssuedCredentials) -> None:
    url = f"{gateway.url}/upload"
    body = b"x" * MAX_BODY_BYTES
    response = send("PUT", url, botocore_signed(keys, url, method="PUT", body=body), body)
    assert response.status_code == 201, response.text
    assert upstream.seen[-1].body == body


# What is refused


def test_an_unsigned_request_is_refused(gateway: IamGateway, upstream: Upstream) -> None:
    response = requests.get(f"{gateway.url}/api/2.0/mlflow/experiments/list", timeout=30)
    assert_refused(response, 403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    basic = requests.get(f"{gateway.url}/", auth=("mlflow", "password"), timeout=30)
    assert_refused(basic, 403, "IncompleteSignatureException", "Authorization header requires")
    assert upstream.seen == []


BAD_SIGNATURE = "The request signature we calculated does not match"


@pytest.mark.parametrize(
    ("signed_target", "sent_target", "signed_body", "sent_body"),
    [
        ("/api/2.0/mlflow/runs/update", "/api/2.0/mlflow/runs/update", b'{"a":1}', b'{"a":2}'),
        ("/api/2.0/mlflow/runs/get", "/api/2.0/mlflow/runs/delete", b"{}", b"{}"),
        ("/api/2.0/mlflow/runs/get?run_id=1", "/api/2.0/mlflow/runs/get?run_id=2", b"", b""),
    ],
    ids=["body", "path", "query"],
)
def test_a_tampered_request_is_refused(
    gateway: IamGateway,
    upstream: Upstream,
    keys: IssuedCredentials,
    signed_target: str,
    sent_target: str,
    signed_body: bytes,
    sent_body: bytes,
) -> None:
    headers = botocore_signed(keys, gateway.url + signed_target, body=signed_body)
    assert_refused(
        send("POST", gateway.url + sent_target, headers, sent_body), 403, "InvalidSignatureException", BAD_SIGNATURE
    )
    assert upstream.seen == []


def test_a_body_not_matching_its_signed_hash_is_refused(
    gateway: IamGateway, upstream: Upstream, keys: IssuedCredentials
) -> None:
    """requests-auth-aws-sigv4 sends X-Amz-Content-Sha256: the gateway checks it against the body."""
    auth = AWSSigV4("execute-api", region=REGION, **_signer_keys(keys))
    prepared = requests.Request("POST", f"{gateway.url}/api/2.0/mlflow/runs/update", data=b'{"a":1}').prepare()
    auth(prepared)
    prepared.body = b'{"a":2}'
    response = requests.Session().send(prepared, timeout=30)
    assert_refused(response, 403, "IncompleteSignatureException", "x-amz-content-sha256")
    assert upstream.seen == []


def _signer_keys(keys: IssuedCredentials) -> dict[str, str | None]:
    return {
        "aws_access_key_id": keys.access_key_id,
        "aws_secret_access_key": keys.secret_access_key,
        "aws_session_token": keys.session_token,
    }


def _without_host_signed(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Authorization": headers["Authorization"].replace("SignedHeaders=host;", "SignedHeaders=")}


def _without_date(headers: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name != "X-Amz-Date"}


def _date_not_iso(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "X-Amz-Date": "Sun, 06 Dec 2026 22:00:00 GMT"}


def _short_scope(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Authorization": headers["Authorization"].replace(f"/{REGION}/", "/")}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_without_host_signed, "'Host' and 'X-Amz-Date' must be signed"),
        (_without_date, "'Host' and 'X-Amz-Date' must be signed, and every signed header sent"),
        (_date_not_iso, "X-Amz-Date must be in the ISO8601 basic format"),
        (_short_scope, "Credential must be"),
    ],
    ids=["host not signed", "date not sent", "date not ISO 8601", "scope without region"],
)
def test_an_incomplete_signature_is_refused(
    gateway: IamGateway,
    upstream: Upstream,
    keys: IssuedCredentials,
    change: Callable[[dict[str, str]], dict[str, str]],
    message: str,
) -> None:
    url = f"{gateway.url}/api/2.0/mlflow/experiments/list"
    headers = change(botocore_signed(keys, url, method="GET"))
    assert_refused(send("GET", url, headers), 403, "IncompleteSignatureException", message)
    assert upstream.seen == []


def test_a_wrong_secret_is_refused(gateway: IamGateway, upstream: Upstream, keys: IssuedCredentials) -> None:
    url = f"{gateway.url}/api/2.0/mlflow/experiments/list"
    headers = botocore_signed(keys, url, method="GET", secret="not-the-secret")
    assert_refused(send("GET", url, headers), 403, "InvalidSignatureException", BAD_SIGNATURE)
    assert upstream.seen == []


INVALID_TOKEN = "The security token included in the request is invalid."


@pytest.mark.parametrize(
    "change",
    [
        lambda k: IssuedCredentials("ASIAUNKNOWNKEY000000", k.secret_access_key, k.session_token, k.arn),
        lambda k: IssuedCredentials(k.access_key_id, k.secret_access_key, None, k.arn),
        lambda k: IssuedCredentials(k.access_key_id, k.secret_access_key, k.session_token + "x", k.arn),
    ],
    ids=["unknown key", "no session token", "wrong session token"],
)
def test_unknown_keys_and_bad_session_tokens_are_refused(
    gateway: IamGateway,
    upstream: Upstream,
    keys: IssuedCredentials,
    change: Callable[[IssuedCredentials], IssuedCredentials],
) -> None:
    url = f"{gateway.url}/api/2.0/mlflow/experiments/list"
    headers = botocore_signed(change(keys), url, method="GET")
    assert_refused(send("GET", url, headers), 403, "UnrecognizedClientException", INVALID_TOKEN)
    assert upstream.seen == []


@pytest.mark.parametrize(
    ("skew", "message"),
    [(dt.timedelta(minutes=6), "Signature expired"), (dt.timedelta(minutes=-6), "Signature not yet current")],
    ids=["6 minutes old", "6 minutes ahead"],
)
def test_a_request_signed_more_than_5_minutes_from_now_is_refused(
    upstream: Upstream, table: CredentialTable, keys: IssuedCredentials, skew: dt.timedelta, message: str
) -> None:
    """The gateway's clock moved instead of the signer's: the same distance between the two."""
    clock = lambda: dt.datetime.now(dt.UTC) + skew  # noqa: E731
    with IamGateway(upstream=upstream.url, region=REGION, credentials=table, clock=clock) as gateway:
        url = f"{gateway.url}/api/2.0/mlflow/experiments/list"
        assert_refused(
            send("GET", url, botocore_signed(keys, url, method="GET")), 403, "InvalidSignatureException", message
        )
    assert upstream.seen == []


def test_a_request_4_minutes_old_still_passes(
    upstream: Upstream, table: CredentialTable, keys: IssuedCredentials
) -> None:
    clock = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(minutes=4)  # noqa: E731
    with IamGateway(upstream=upstream.url, region=REGION, credentials=table, clock=clock) as gateway:
        url = f"{gateway.url}/api/2.0/mlflow/experiments/list"
        assert send("GET", url, botocore_signed(keys, url, method="GET")).status_code == 201


@pytest.mark.parametrize(
    ("region", "service", "message"),
    [
        ("us-east-1", "execute-api", "Credential should be scoped to a valid region"),
        (REGION, "s3", "Credential should be scoped to correct service: 'execute-api'"),
    ],
    ids=["wrong region", "wrong service"],
)
def test_a_scope_for_another_region_or_service_is_refused(
    gateway: IamGateway, upstream: Upstream, keys: IssuedCredentials, region: str, service: str, message: str
) -> None:
    url = f"{gateway.url}/api/2.0/mlflow/experiments/list"
    headers = botocore_signed(keys, url, method="GET", region=region, service=service)
    assert_refused(send("GET", url, headers), 403, "InvalidSignatureException", message)
    assert upstream.seen == []


def test_a_request_replayed_to_another_gateway_is_refused(
    gateway: IamGateway, upstream: Upstream, table: CredentialTable, keys: IssuedCredentials
) -> None:
    """Same keys, same upstream, another gateway: the signed Host is the first one's."""
    target = "/api/2.0/mlflow/runs/delete"
    headers = botocore_signed(keys, gateway.url + target, body=b"{}")
    with IamGateway(upstream=upstream.url, region=REGION, credentials=table) as other:
        as_sent = {**headers, "Host": f"{LOOPBACK}:{gateway.port}"}
        assert_refused(send("POST", other.url + target, as_sent, b"{}"), 403, "ForbiddenException", "Forbidden")
        host_changed = {**headers, "Host": f"{LOOPBACK}:{other.port}"}
        assert_refused(
            send("POST", other.url + target, host_changed, b"{}"), 403, "InvalidSignatureException", BAD_SIGNATURE
        )
    assert upstream.seen == []
    assert send("POST", gateway.url + target, headers, b"{}").status_code == 201


def test_the_mlflow_signers_portless_host_is_refused_by_a_gateway_at_another_address(
    gateway: IamGateway, upstream: Upstream, table: CredentialTable, keys: IssuedCredentials
) -> None:
    """requests-auth-aws-sigv4 signs the bare host name: two APIs differ by it, so do two gateways here."""
    prepared = requests.Request("POST", f"{gateway.url}/api/2.0/mlflow/runs/delete", data=b"{}").prepare()
    AWSSigV4("execute-api", region=REGION, **_signer_keys(keys))(prepared)
    assert prepared.headers["Host"] == LOOPBACK
    with IamGateway(upstream=upstream.url, region=REGION, credentials=table, host="127.0.0.2") as other:
        prepared.url = f"{other.url}/api/2.0/mlflow/runs/delete"
        assert_refused(requests.Session().send(prepared, timeout=30), 403, "ForbiddenException", "Forbidden")
    assert upstream.seen == []


def test_more_than_10_mb_is_refused_with_413(gateway: IamGateway, upstream: Upstream, keys: IssuedCredentials) -> None:
    url = f"{gateway.url}/upload"
    body = b"x" * (MAX_BODY_BYTES + 1)
    response = send("PUT", url, botocore_signed(keys, url, method="PUT", body=body), body)
    assert_refused(response, 413, "RequestEntityTooLargeException", "Request Entity Too Large")
    chunked = requests.put(url, data=iter([b"y" * (1 << 20)] * 11), timeout=30)
    assert_refused(chunked, 413, "RequestEntityTooLargeException", "Request Entity Too Large")
    assert upstream.seen == []


def test_an_unreachable_upstream_answers_503(table: CredentialTable, keys: IssuedCredentials) -> None:
    with IamGateway(upstream=f"http://{LOOPBACK}:9", region=REGION, credentials=table) as gateway:
        url = f"{gateway.url}/api/2.0/mlflow/experiments/list"
        response = send("GET", url, botocore_signed(keys, url, method="GET"))
    assert_refused(response, 503, "ServiceUnavailableException", "Service Unavailable")


# What MLflow's signer (requests-auth-aws-sigv4 0.7) cannot sign


def test_the_mlflow_signer_cannot_sign_a_streamed_upload(
    gateway: IamGateway, upstream: Upstream, keys: IssuedCredentials, tmp_path: Path
) -> None:
    """Upstream issue 15051: MLflow's artifact upload streams the file, the signer hashes only bytes and str.

    The client fails before sending anything, whatever the file's size: signed clients upload
    artifacts through presigned URLs instead.
    """
    artifact = tmp_path / "model.pkl"
    artifact.write_bytes(b"\x80weights")
    auth = AWSSigV4("execute-api", region=REGION, **_signer_keys(keys))
    url = f"{gateway.url}/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/model.pkl"
    with artifact.open("rb") as stream, pytest.raises(AttributeError, match="encode"):
        requests.put(url, data=stream, auth=auth, timeout=30)
    with pytest.raises(AttributeError, match="encode"):
        requests.put(url, data=iter([b"chunk"]), auth=auth, timeout=30)
    assert upstream.seen == []


@pytest.mark.parametrize(
    "target",
    [
        "/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/my%20file.txt",
        "/api/2.0/mlflow/registered-models/search?order_by=name&order_by=version",
    ],
    ids=["escaped path", "repeated query name"],
)
def test_what_the_mlflow_signer_signs_differently_from_botocore_is_refused(
    gateway: IamGateway, upstream: Upstream, keys: IssuedCredentials, target: str
) -> None:
    """SigV4 for execute-api encodes the path twice and keeps every query value; this signer does neither."""
    url = gateway.url + target
    mlflow_signed = requests.get(url, auth=AWSSigV4("execute-api", region=REGION, **_signer_keys(keys)), timeout=30)
    assert_refused(mlflow_signed, 403, "InvalidSignatureException", BAD_SIGNATURE)
    assert upstream.seen == []
    assert send("GET", url, botocore_signed(keys, url, method="GET")).status_code == 201
    assert upstream.seen[-1].path == target


# Keys and logs


def test_issued_keys_go_to_a_file_only_the_owner_reads(tmp_path: Path) -> None:
    path = tmp_path / "iam-keys.json"
    table = CredentialTable(path)
    first, second = table.issue(ROLE, "job-1"), table.issue(ROLE, "job-2")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert saved[second.access_key_id] == {
        "secret_access_key": second.secret_access_key,
        "session_token": second.session_token,
        "arn": "arn:aws:sts::123456789012:assumed-role/ProfileAExecutionRole/job-2",
    }
    assert set(saved) == {first.access_key_id, second.access_key_id}
    assert first.access_key_id.startswith("ASIA") and len(first.access_key_id) == 20
    assert second.secret_access_key not in repr(second) and str(second.session_token) not in repr(second)


@pytest.mark.parametrize(
    ("arn", "session"),
    [
        ("arn:aws:iam::123456789012:root", "s"),
        ("arn:aws:sts::123456789012:federated-user/bob", "s"),
        (ROLE, "bad session"),
    ],
)
def test_keys_are_issued_only_for_roles_and_users(arn: str, session: str) -> None:
    with pytest.raises(ValueError, match="is not an IAM role"):
        CredentialTable().issue(arn, session)


def test_logs_name_the_caller_but_hold_no_secret(
    gateway: IamGateway, keys: IssuedCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="localrun.iam_gateway")
    url = f"{gateway.url}/api/2.0/mlflow/runs/get?run_id=secret-looking"
    headers = botocore_signed(keys, url, method="GET")
    assert send("GET", url, headers).status_code == 201
    wrong = botocore_signed(keys, url, method="GET", secret="wrong")
    assert send("GET", url, wrong).status_code == 403
    text = caplog.text
    assert SESSION_ARN in text and "InvalidSignatureException" in text
    signatures = [h["Authorization"].rsplit("=", 1)[1] for h in (headers, wrong)]
    for secret in (keys.secret_access_key, str(keys.session_token), *signatures, "secret-looking"):
        assert secret not in text
    assert urlsplit(url).path in text
