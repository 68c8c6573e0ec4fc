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
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

import urllib3

from localrun.iam_gateway import CredentialTable, IssuedCredentials
from localrun.wsgi_thread import ThreadedWsgi

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


class StsTap(ThreadedWsgi):
    """``with StsTap(upstream=moto_url, credentials=table) as tap:`` serves STS on `tap.url`."""

    def __init__(self, *, upstream: str, credentials: CredentialTable) -> None:
        self.upstream = upstream.rstrip("/")
        self.credentials = credentials
        self._pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5.0, read=60.0))
        super().__init__(self._app, name="sts-tap")

    def stop(self) -> None:
        super().stop()
        self._pool.clear()

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
