"""A loopback stand-in for the IAM API's answer to `GET /users/current`, checking the SigV4 signature.

It recomputes the signature with botocore's signer from the headers the client
says it signed and the role's own credentials, as API Gateway does with its
copy of them; a request whose signature differs is refused with 403.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from requests.structures import CaseInsensitiveDict


@dataclass
class SignedRequests:
    """What the stub saw and answers; `credentials` are the caller's, to check signatures with."""

    credentials: ReadOnlyCredentials
    region: str
    username: str = "alice"
    status: int = 200
    body: str = ""
    seen: list[CaseInsensitiveDict[str]] = field(default_factory=list)
    url: str = ""

    def verified(self, method: str, path: str, headers: CaseInsensitiveDict[str]) -> bool:
        authorization = headers.get("Authorization", "")
        if not authorization.startswith("AWS4-HMAC-SHA256 "):
            return False
        fields = dict(part.strip().split("=", 1) for part in authorization[len("AWS4-HMAC-SHA256 ") :].split(","))
        signed = fields["SignedHeaders"].split(";")
        request = AWSRequest(method=method, url=self.url + path, headers={name: headers[name] for name in signed})
        request.context["timestamp"] = headers["X-Amz-Date"]
        signer = SigV4Auth(self.credentials, "execute-api", self.region)
        expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        scope = f"{self.credentials.access_key}/{headers['X-Amz-Date'][:8]}/{self.region}/execute-api/aws4_request"
        return fields["Credential"] == scope and fields["Signature"] == expected


@contextmanager
def signing_stub(answers: SignedRequests) -> Iterator[SignedRequests]:
    """Serve `answers` on a loopback port; `answers.url` is its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            headers = CaseInsensitiveDict(self.headers.items())
            answers.seen.append(CaseInsensitiveDict({"path": self.path, **headers}))
            if not answers.verified("GET", self.path, headers):
                status, body = 403, json.dumps({"message": "Forbidden"})
            elif answers.body:
                status, body = answers.status, answers.body
            else:
                status, body = 200, json.dumps({"user": {"id": 2, "username": answers.username, "is_admin": False}})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    answers.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield answers
    finally:
        server.shutdown()
        server.server_close()
