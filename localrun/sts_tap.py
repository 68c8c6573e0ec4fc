"""moto's STS behind a loopback relay that hands the role sessions it issues to the IAM gateway.

Deployed, API Gateway learns a signing key's secret from STS itself. Locally the IAM gateway's
stand-in only knows keys in its CredentialTable, and moto's server shows no way to read the
secret of a session it issued (its model dump fails once a multipart upload exists). A process
that assumes a role itself (the simulated training job) points AWS_ENDPOINT_URL_STS here: every
STS request goes to moto unchanged, and the keys of each AssumeRole answer are registered with
the table on the way back (`CredentialTable.register` checks them), so they sign in as that
role's session while moto still accepts them for its own APIs.
"""

from __future__ import annotations

import logging
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Final

import urllib3
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from localrun.iam_gateway import CredentialTable, IssuedCredentials
from localrun.process import LOOPBACK

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

LOG = logging.getLogger(__name__)

_NAMESPACE: Final = "{https://sts.amazonaws.com/doc/2011-06-15/}"
_PASSED_BACK: Final = ("content-type", "x-amzn-requestid", "x-amz-request-id")


def assumed_session(xml: bytes) -> IssuedCredentials | None:
    """The session an AssumeRole answer hands out; None for any other answer."""
    try:
        root = ET.fromstring(xml)  # noqa: S314 - moto's answer on loopback
    except ET.ParseError:
        return None
    result = root.find(f"{_NAMESPACE}AssumeRoleResult")
    if result is None:
        return None
    keys = result.find(f"{_NAMESPACE}Credentials")
    arn = result.findtext(f"{_NAMESPACE}AssumedRoleUser/{_NAMESPACE}Arn")
    if keys is None or not arn:
        return None
    return IssuedCredentials(
        keys.findtext(f"{_NAMESPACE}AccessKeyId") or "",
        keys.findtext(f"{_NAMESPACE}SecretAccessKey") or "",
        keys.findtext(f"{_NAMESPACE}SessionToken"),
        arn,
    )


class StsTap:
    """``with StsTap(upstream=moto_url, credentials=table) as tap:`` serves STS on `tap.url`."""

    def __init__(self, *, upstream: str, credentials: CredentialTable) -> None:
        self.upstream = upstream.rstrip("/")
        self.credentials = credentials
        self._pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5.0, read=60.0))
        self._server: BaseWSGIServer = make_server(LOOPBACK, 0, self._app, threaded=True, request_handler=_Quiet)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_port}"

    def start(self) -> StsTap:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self._pool.clear()

    def __enter__(self) -> StsTap:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {
            key[5:].replace("_", "-").title(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_") and key != "HTTP_HOST"
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = str(environ["CONTENT_TYPE"])
        target = environ.get("RAW_URI") or environ.get("PATH_INFO", "/")
        method = environ["REQUEST_METHOD"]
        answer = self._pool.urlopen(method, self.upstream + target, body=body or None, headers=headers)
        if answer.status == 200 and (session := assumed_session(answer.data)) is not None:
            self.credentials.register(session)
            LOG.info("STS tap: %s registered for %s", session.access_key_id, session.arn)
        passed = [(name, value) for name, value in answer.headers.items() if name.lower() in _PASSED_BACK]
        passed.append(("Content-Length", str(len(answer.data))))
        start_response(f"{answer.status} {answer.reason or ''}".rstrip(), passed)
        return [answer.data]


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass
