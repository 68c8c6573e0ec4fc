"""One boto3 session for every request MLflow's client signs with IAM sign-in.

With MLFLOW_TRACKING_AWS_SIGV4 MLflow's client (`mlflow.utils.rest_utils.http_request`)
builds a new requests-auth-aws-sigv4 signer for each request, and that signer a new
boto3 session that resolves the credentials again: CPU on every request and, in
Studio or a training job, a call to the container's credential endpoint. `reuse()`
makes those signers take the session `configure_mlflow()` checked the caller
with; botocore refreshes its role credentials before they expire, and each
signer reads one consistent set of keys. They sign with botocore's SigV4
(`SigV4Auth`, what boto3 signs AWS requests with) instead of the library's own
canonicalisation, which keeps one value of a repeated query parameter, encodes
the path once where execute-api wants it twice, and cannot hash a streamed body:
requests API Gateway would refuse. A query is sent as SigV4 canonicalises it.

This leans on how the two libraries build and look up the signer (MLflow imports
the class by name for every request), so it is installed only when their source
is the one reviewed below; otherwise MLflow's own signer stays, which is slower
and signs the same way. tests/lab/test_signing_session.py fails when a pinned
version moves, so a version bump comes with a fresh review.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import boto3
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

logger = logging.getLogger(__name__)

SIGNER_MODULE = "requests_auth_aws_sigv4"
# What the signature covers besides the body: SigV4's own headers and the body's type.
SIGNED_HEADERS = ("Content-Type",)
# `module:qualified.name` -> SHA-256 of its source as reviewed (MLflow 3.17.2, requests-auth-aws-sigv4 0.7).
REVIEWED = {
    "mlflow.utils.rest_utils:http_request": "f886d55e0e812f53ef4e17d4080971fdb382e2c4f65a32e07a6e36d83bf50f12",
    f"{SIGNER_MODULE}:AWSSigV4.__init__": "0460b7bc7986b3a834ed81241b4403aa52f2857aa80822b44707aebc81853e11",
}


def stock_signer() -> type:
    """The library's own signer class, also after `reuse()` replaced the name MLflow imports."""
    cls: type = importlib.import_module(SIGNER_MODULE).AWSSigV4
    return getattr(cls, "stock", cls)


def current_sha256(name: str) -> str | None:
    """The SHA-256 of the installed source of `name` (the stock signer's, never ours); None when missing."""
    module_name, _, qualified = name.partition(":")
    try:
        target: Any = stock_signer() if module_name == SIGNER_MODULE else importlib.import_module(module_name)
        parts = qualified.split(".")[1:] if module_name == SIGNER_MODULE else qualified.split(".")
        for part in parts:
            target = getattr(target, part)
        return hashlib.sha256(inspect.getsource(target).encode()).hexdigest()
    except (ImportError, AttributeError, OSError, TypeError):
        return None


def changed() -> list[str]:
    """The reviewed names whose installed source is missing or differs."""
    return [name for name, digest in REVIEWED.items() if current_sha256(name) != digest]


def reuse(session: boto3.session.Session, region: str) -> bool:
    """Make the signer MLflow's client builds per request use `session` and `region`; False if left stock."""
    differing = changed()
    if differing:
        logger.warning(
            "IAM sign-in: MLflow's client signs with a new boto3 session per request (slower): %s "
            "is not the reviewed source",
            ", ".join(differing),
        )
        return False
    module = importlib.import_module(SIGNER_MODULE)
    stock = stock_signer()

    class SessionSigner(stock):  # type: ignore[misc,valid-type]
        """requests-auth-aws-sigv4's signer, keys and region from one long-lived session."""

        def __init__(self, service: str, **kwargs: Any) -> None:
            if not {"session", "aws_access_key_id", "aws_secret_access_key"} & kwargs.keys():
                credentials = session.get_credentials()
                if credentials is not None:  # none: the stock signer raises its own error
                    keys = credentials.get_frozen_credentials()  # one refresh-safe snapshot
                    kwargs.update(
                        session=session,
                        aws_access_key_id=keys.access_key,
                        aws_secret_access_key=keys.secret_key,
                        aws_session_token=keys.token,
                    )
                kwargs.setdefault("region", region)
            super().__init__(service, **kwargs)

        def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
            return sign(request, Credentials(self.aws_access_key_id, self.aws_secret_access_key,
                                             self.aws_session_token), self.service, self.region)  # fmt: skip

    SessionSigner.stock = stock
    setattr(module, "AWSSigV4", SessionSigner)  # the name MLflow imports per request
    return True


def sigv4_query(query: str) -> str:
    """`query` encoded as SigV4's canonical form encodes it: a space as %20, never the `+` requests sends.

    A `+` could be read back as a plus or a space by whoever recomputes the signature; %20 cannot.
    """
    return urlencode(parse_qsl(query, keep_blank_values=True), quote_via=quote)


def sign(request: requests.PreparedRequest, keys: Credentials, service: str, region: str) -> requests.PreparedRequest:
    """Add botocore's SigV4 headers to `request`, its body (bytes, text or an open file) hashed as sent."""
    parts = urlsplit(request.url or "")
    if parts.query:
        request.url = urlunsplit(parts._replace(query=sigv4_query(parts.query)))
    body: Any = request.body
    if isinstance(body, str):
        body = body.encode("iso-8859-1")  # how http.client sends a text body
    copy = AWSRequest(
        method=request.method,
        url=request.url,
        data=body if body is not None else b"",
        headers={name: request.headers[name] for name in SIGNED_HEADERS if name in request.headers},
    )
    SigV4Auth(keys, service, region).add_auth(copy)  # reads an open file's rest and seeks back
    for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
        if name in copy.headers:
            request.headers[name] = copy.headers[name]
    return request
