"""A loopback stand-in for API Gateway's IAM route (issue 20): real SigV4 checks, the caller header.

Deployed, the second HTTP API's AWS_IAM authorization verifies a signed request and its
parameter mapping writes the caller's ARN into CALLER_HEADER before nginx's IAM server block
sees it. Locally this server does the same, so the whole signed path runs offline:

- credentials come from a `CredentialTable` the local stack fills per role (what an STS
  AssumeRole hands a notebook or a job); an unknown key or a wrong session token is refused;
- the signature is recomputed with botocore's own SigV4 signer over the request as received,
  at its X-Amz-Date, for service ``execute-api`` in the configured region, and compared in
  constant time; the scope's date, region and service, the clock skew (5 minutes either
  way), the signed Host (this gateway's) and the payload hash are checked as API Gateway
  does, with its status codes, ``x-amzn-ErrorType`` and messages;
- bodies over API Gateway's 10 MB are refused with 413;
- a verified request reaches the upstream without Authorization, the X-Amz-* signing headers
  or any CALLER_HEADER the client sent, with CALLER_HEADER set to the key's ARN and the
  public host, scheme and request id headers the API's mapping sets; the response streams back.

Only header-signed requests are accepted (the MLflow client's and botocore's way); a
presigned query string counts as no signature here.

What signed clients can send (requests-auth-aws-sigv4 0.7, the signer MLflow's client loads
for MLFLOW_TRACKING_AWS_SIGV4=true; tests/localrun/test_iam_gateway.py shows each):

- it signs the Host without its port; API Gateway listens on 443, where the two are the
  same. This gateway therefore accepts its bare host name as well as ``host:port``, so a
  request signed for it and replayed to another gateway is refused only when that one has
  another address (as two APIs have two host names);
- it hashes bytes and str bodies only: a file or generator body (MLflow's artifact upload
  streams the file) fails in the client with AttributeError before anything is sent
  (upstream MLflow issue 15051). Signed clients therefore upload artifacts through presigned
  URLs, which go to S3 directly and are not signed by this signer;
- it encodes the path once, while SigV4 for every service but S3 (botocore's signer here)
  encodes it twice, so a path holding a percent-escape (an artifact name with a space) is
  refused here, and is expected to be by API Gateway (not checked against a deployed API);
  it also keeps one value of a query name given twice (MLflow's GET with a list, such as
  ``order_by`` of a registered-model search), so that request is refused too.

The query string is canonicalised as sent (botocore's rule for a URL it did not build).
Whether API Gateway reads a ``+`` there as a space first is not checked against a deployed
API: MLflow's clients send spaces in query values as ``+`` (a registered-model search's
filter always holds some), so a deployed test should cover one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import secrets
import string
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Self
from urllib.parse import urlsplit

import urllib3
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from localrun.process import LOOPBACK, write_private
from localrun.wsgi_thread import ThreadedWsgi
from stacks.iam_callers import CALLER_HEADER, caller_key
from stacks.names import API_REQUEST_ID_HEADER, PUBLIC_HOST_HEADER, PUBLIC_PROTO_HEADER

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

LOG = logging.getLogger(__name__)

SERVICE: Final = "execute-api"
MAX_BODY_BYTES: Final = 10 * 1024 * 1024  # an HTTP API request's limit
MAX_CLOCK_SKEW: Final = dt.timedelta(minutes=5)
UPSTREAM_TIMEOUT: Final = urllib3.Timeout(connect=5.0, read=30.0)  # an HTTP API integration's 30 s
_CHUNK: Final = 64 * 1024
_ALGORITHM: Final = "AWS4-HMAC-SHA256"
_AUTHORIZATION = re.compile(
    _ALGORITHM + r"\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})",
    re.ASCII,
)
# What the client signs but the upstream must not see, and the headers the mapping writes.
_SIGNING_HEADERS: Final = ("authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256")
_MAPPED_HEADERS: Final = frozenset(
    name.lower() for name in (CALLER_HEADER, PUBLIC_HOST_HEADER, PUBLIC_PROTO_HEADER, API_REQUEST_ID_HEADER)
)
_HOP_BY_HOP: Final = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    )
)
_KEY_ALPHABET: Final = string.ascii_uppercase + string.digits
_KEY_ID: Final = re.compile(r"[A-Z0-9]{16,128}", re.ASCII)


@dataclass(frozen=True)
class IssuedCredentials:
    """A key pair the local stack handed out, and the identity API Gateway would report for it."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(repr=False)
    arn: str

    def env(self) -> dict[str, str]:
        """The environment a signing client (boto3, MLflow's signer) reads them from."""
        values = {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}
        if self.session_token is not None:
            values["AWS_SESSION_TOKEN"] = self.session_token
        return values


class CredentialTable:
    """Access key id -> issued credentials, in memory and, with `path`, in a 0600 JSON file.

    The file lets another process (a notebook, a job) pick up the keys issued for its role.
    Keys another issuer handed out (moto's STS, for a process that assumes its own role) enter
    with `register` (localrun/sts_tap.py does it as moto answers AssumeRole); their signature
    and session token are checked like any others.
    """

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._keys: dict[str, IssuedCredentials] = {}
        self._lock = threading.Lock()

    def issue(self, arn: str, session_name: str = "localrun") -> IssuedCredentials:
        """Fresh keys: for a role an assumed-role session with a token (STS AssumeRole), for a user long-term keys."""
        key = caller_key(arn)  # ValueError for anything that cannot sign in
        account, kind_name = key.split(":", 1)
        kind, name = kind_name.split("/", 1)
        partition = arn.split(":", 2)[1]
        if kind == "role":
            signer = f"arn:{partition}:sts::{account}:assumed-role/{name}/{session_name}"
            caller_key(signer)  # the session name follows IAM's rules
            issued = IssuedCredentials(_key_id("ASIA"), secrets.token_urlsafe(30), secrets.token_urlsafe(96), signer)
        else:
            issued = IssuedCredentials(_key_id("AKIA"), secrets.token_urlsafe(30), None, arn)
        with self._lock:
            self._keys[issued.access_key_id] = issued
            self._save()
        return issued

    def register(self, credentials: IssuedCredentials) -> IssuedCredentials:
        """Accept keys issued elsewhere, signing as `credentials.arn`; ValueError for keys that could not sign.

        As STS hands them out: a role session (``assumed-role``) with a session token, an IAM
        user's long-term keys without one; a role ARN itself never signs. A key id already
        held for other keys is refused, never replaced.
        """
        if _KEY_ID.fullmatch(credentials.access_key_id) is None:
            raise ValueError(f"{credentials.access_key_id!r} is not an access key id")
        if not credentials.secret_access_key:
            raise ValueError(f"access key {credentials.access_key_id} has no secret")
        kind = caller_key(credentials.arn).split(":", 1)[1].split("/", 1)[0]  # ValueError for what cannot sign in
        session = ":assumed-role/" in credentials.arn
        if kind == "role" and not session:
            raise ValueError(f"{credentials.arn} is a role: only a session of it signs")
        if session != bool(credentials.session_token):
            raise ValueError(f"{credentials.arn}: a role session signs with a session token, a user without one")
        with self._lock:
            held = self._keys.setdefault(credentials.access_key_id, credentials)
            if held != credentials:
                raise ValueError(f"access key {credentials.access_key_id} is already held for other keys")
            self._save()
        return credentials

    def get(self, access_key_id: str) -> IssuedCredentials | None:
        with self._lock:
            return self._keys.get(access_key_id)

    def _save(self) -> None:
        if self._path is None:
            return
        text = json.dumps(
            {
                key: {"secret_access_key": c.secret_access_key, "session_token": c.session_token, "arn": c.arn}
                for key, c in self._keys.items()
            },
            indent=1,
        )
        write_private(self._path, text)


def _key_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))


class Refusal(Exception):
    """A request API Gateway would answer itself, with this status, error type and message."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


# API Gateway's answers: (status, x-amzn-ErrorType, message); a fresh Refusal per request.
_MISSING_TOKEN: Final = (403, "MissingAuthenticationTokenException", "Missing Authentication Token")
_INVALID_TOKEN: Final = (403, "UnrecognizedClientException", "The security token included in the request is invalid.")
_BAD_SIGNATURE: Final = (
    403,
    "InvalidSignatureException",
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
)
_FORBIDDEN: Final = (403, "ForbiddenException", "Forbidden")
_TOO_LARGE: Final = (413, "RequestEntityTooLargeException", "Request Entity Too Large")
_UNAVAILABLE: Final = (503, "ServiceUnavailableException", "Service Unavailable")


def _incomplete(message: str) -> Refusal:
    return Refusal(403, "IncompleteSignatureException", message)


def _invalid(message: str) -> Refusal:
    return Refusal(403, "InvalidSignatureException", message)


class _ClientSignedHeaders(SigV4Auth):
    """botocore's signer over exactly the headers the client listed in SignedHeaders (SigV4's rule)."""

    def __init__(self, credentials: Credentials, region: str, signed: Mapping[str, str]) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:  # noqa: ARG002 - botocore's signature
        headers = HTTPHeaders()
        for name, value in self._signed.items():
            headers[name] = value
        return headers


@dataclass(frozen=True)
class SignedRequest:
    """A request as the gateway received it: method, raw target, lower-case headers, body."""

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes


def verify(
    request: SignedRequest,
    *,
    table: CredentialTable,
    region: str,
    hosts: Iterable[str],
    now: dt.datetime,
) -> IssuedCredentials:
    """The credentials that signed `request`; Refusal with API Gateway's answer otherwise."""
    headers = request.headers
    if headers.get("host") not in set(hosts):
        raise Refusal(*_FORBIDDEN)  # another API's host name: API Gateway would not route it here
    authorization = headers.get("authorization")
    if not authorization:
        raise Refusal(*_MISSING_TOKEN)
    match = _AUTHORIZATION.fullmatch(authorization.strip())
    if match is None:
        raise _incomplete(
            f"Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters of {_ALGORITHM}."
        )
    key_id, _, scope = match["credential"].partition("/")
    signed_names = match["signed"].split(";")
    if not {"host", "x-amz-date"} <= set(signed_names) or any(name not in headers for name in signed_names):
        raise _incomplete("'Host' and 'X-Amz-Date' must be signed, and every signed header sent.")
    try:
        signed_at = dt.datetime.strptime(headers["x-amz-date"], SIGV4_TIMESTAMP).replace(tzinfo=dt.UTC)
    except ValueError:
        raise _incomplete("X-Amz-Date must be in the ISO8601 basic format yyyyMMdd'T'HHmmss'Z'.") from None
    scope_parts = scope.split("/")
    if len(scope_parts) != 4 or scope_parts[3] != "aws4_request":
        raise _incomplete("Credential must be <key>/<date>/<region>/<service>/aws4_request.")
    scope_date, scope_region, scope_service, _ = scope_parts
    if scope_date != headers["x-amz-date"][:8]:
        raise _invalid(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{scope_date}' != '{headers['x-amz-date'][:8]}'"
        )
    if scope_region != region:
        raise _invalid(f"Credential should be scoped to a valid region, not '{scope_region}'. ")
    if scope_service != SERVICE:
        raise _invalid(f"Credential should be scoped to correct service: '{SERVICE}'. ")
    stamp = now.strftime(SIGV4_TIMESTAMP)
    if signed_at < now - MAX_CLOCK_SKEW:
        earliest = (now - MAX_CLOCK_SKEW).strftime(SIGV4_TIMESTAMP)
        raise _invalid(f"Signature expired: {headers['x-amz-date']} is now earlier than {earliest} ({stamp} - 5 min.)")
    if signed_at > now + MAX_CLOCK_SKEW:
        latest = (now + MAX_CLOCK_SKEW).strftime(SIGV4_TIMESTAMP)
        raise _invalid(
            f"Signature not yet current: {headers['x-amz-date']} is still later than {latest} ({stamp} + 5 min.)"
        )
    issued = table.get(key_id)
    if issued is None or not _same_token(issued.session_token, headers.get("x-amz-security-token")):
        raise Refusal(*_INVALID_TOKEN)
    payload_hash = hashlib.sha256(request.body).hexdigest()
    if not hmac.compare_digest(headers.get("x-amz-content-sha256", payload_hash), payload_hash):
        raise _incomplete("The provided 'x-amz-content-sha256' header does not match what was computed.")

    rebuilt = AWSRequest(
        method=request.method, url=f"http://{headers['host']}{_origin_form(request.target)}", data=request.body
    )
    rebuilt.context["timestamp"] = headers["x-amz-date"]
    signer = _ClientSignedHeaders(
        Credentials(issued.access_key_id, issued.secret_access_key, issued.session_token),
        region,
        {name: headers[name] for name in signed_names},
    )
    expected = signer.signature(signer.string_to_sign(rebuilt, signer.canonical_request(rebuilt)), rebuilt)
    if not hmac.compare_digest(expected, match["signature"]):
        raise Refusal(*_BAD_SIGNATURE)
    return issued


def _same_token(expected: str | None, sent: str | None) -> bool:
    if expected is None or sent is None:
        return expected is sent
    return hmac.compare_digest(expected.encode(), sent.encode())


def _origin_form(target: str) -> str:
    """The request target's path and query as sent ("//x" is a path; an absolute URI gives its own).

    urllib3 resolves dot segments in it on the way upstream, as the signature's canonical form does.
    """
    if target.startswith("/"):
        return target
    parts = urlsplit(target)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


class IamGateway(ThreadedWsgi):
    """The IAM route on loopback: verify, map the caller, forward to `upstream`, stream back.

    ``with IamGateway(upstream=..., region=...) as gateway:`` serves on `gateway.url`;
    `gateway.credentials.issue(role_arn)` hands out keys that sign in as that role.
    """

    def __init__(
        self,
        *,
        upstream: str,
        region: str,
        credentials: CredentialTable | None = None,
        host: str = LOOPBACK,
        port: int = 0,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.region = region
        self.credentials = credentials if credentials is not None else CredentialTable()
        self._clock = clock
        self._pool = urllib3.PoolManager(maxsize=16, block=False, retries=False, timeout=UPSTREAM_TIMEOUT)
        super().__init__(self._app, name="iam-gateway", host=host, port=port)

    def start(self) -> Self:
        super().start()
        LOG.info("IAM gateway on %s -> %s (region %s)", self.url, self.upstream, self.region)
        return self

    def stop(self) -> None:
        super().stop()
        self._pool.clear()

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request_id = secrets.token_urlsafe(12)
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        try:
            request = SignedRequest(method, environ.get("RAW_URI") or path, _headers(environ), _read_body(environ))
            issued = verify(request, table=self.credentials, region=self.region, hosts=self._hosts(), now=self._clock())
            upstream = self._forward(request, issued, request_id)
        except Refusal as refusal:
            LOG.info("%s %s -> %d %s (%s)", method, path, refusal.status, refusal.error_type, request_id)
            body = json.dumps({"message": refusal.message}).encode()
            start_response(
                f"{refusal.status} {_REASONS[refusal.status]}",
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("x-amzn-ErrorType", refusal.error_type),
                    ("Apigw-Requestid", request_id),
                ],
            )
            return [body]
        LOG.info("%s %s -> %d as %s (%s)", method, path, upstream.status, issued.arn, request_id)
        response_headers = [
            (name, value) for name, value in upstream.headers.items() if name.lower() not in _HOP_BY_HOP
        ]
        response_headers.append(("Apigw-Requestid", request_id))
        start_response(f"{upstream.status} {upstream.reason or ''}".rstrip(), response_headers)
        return _Relay(upstream)

    def _hosts(self) -> tuple[str, str]:
        # requests-auth-aws-sigv4 signs the host without its port (see the module docstring).
        return (f"{self.host}:{self.port}", self.host)

    def _forward(self, request: SignedRequest, issued: IssuedCredentials, request_id: str) -> urllib3.BaseHTTPResponse:
        headers = {
            name: value
            for name, value in request.headers.items()
            if name not in _HOP_BY_HOP
            and name not in _SIGNING_HEADERS
            and name not in _MAPPED_HEADERS
            and name not in ("host", "content-length")
        }
        headers[CALLER_HEADER] = issued.arn
        headers[PUBLIC_HOST_HEADER] = f"{self.host}:{self.port}"  # the API's domainName: its own, not the client's
        headers[PUBLIC_PROTO_HEADER] = "http"
        headers[API_REQUEST_ID_HEADER] = request_id
        if request.body or request.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            headers["Content-Length"] = str(len(request.body))
        try:
            return self._pool.urlopen(
                request.method,
                self.upstream + _origin_form(request.target),
                body=request.body or None,
                headers=headers,
                redirect=False,
                preload_content=False,
                decode_content=False,
            )
        except urllib3.exceptions.HTTPError as error:
            LOG.warning("IAM gateway: upstream %s failed: %s", self.upstream, type(error).__name__)
            raise Refusal(*_UNAVAILABLE) from None


_REASONS: Final = {403: "Forbidden", 413: "Request Entity Too Large", 503: "Service Unavailable"}


def _headers(environ: WSGIEnvironment) -> dict[str, str]:
    """The request's headers, lower-cased (WSGI joins repeated ones with commas, as SigV4 does)."""
    headers = {
        key[5:].replace("_", "-").lower(): str(value) for key, value in environ.items() if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    return headers


def _read_body(environ: WSGIEnvironment) -> bytes:
    """The whole body, or Refusal 413 past 10 MB (the rest is read and dropped, so the client hears the answer)."""
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        remaining = None  # chunked: read to its end
    else:
        try:
            remaining = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise _incomplete("Content-Length is not a number.") from None
    body = bytearray()
    too_large = False
    while remaining is None or remaining > 0:
        chunk = stream.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
        if not chunk:
            break
        if remaining is not None:
            remaining -= len(chunk)
        if not too_large:
            body += chunk
            too_large = len(body) > MAX_BODY_BYTES
            if too_large:
                body.clear()
    if too_large:
        raise Refusal(*_TOO_LARGE)
    return bytes(body)


class _Relay:
    """The upstream's body as it arrives; closing it (the client went away) frees the connection."""

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        yield from self._response.stream(_CHUNK, decode_content=False)

    def close(self) -> None:
        self._response.release_conn()
