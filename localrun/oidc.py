"""A local OpenID Provider on loopback (npm `oidc-provider`, see oidc_provider.mjs).

It stands in for the Cognito user pool (or a company IdP) in sso mode: people
sign in on its login page, code gets JWT access tokens by the
client-credentials grant. `make local AUTH_MODE=sso` and the tests share it.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import requests

from localrun.process import ManagedProcess, ServiceError, free_port
from localrun.services import REPO_ROOT, HttpService, base_env

SCRIPT = REPO_ROOT / "localrun" / "oidc_provider.mjs"
# The resource indicator code asks tokens for; its audience is the MLflow
# app client's id, which the server checks (OIDC_AUDIENCE).
MLFLOW_RESOURCE = "urn:mlflow:api"


@dataclass(frozen=True)
class OidcUser:
    """A person who can sign in: `username` and `password` on the login page."""

    username: str
    password: str
    email: str
    name: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class OidcClient:
    """An app client: the MLflow UI (authorization code) or code (client credentials)."""

    client_id: str
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    # Seconds a client-credentials token lives (the expiry tests ask for 1).
    access_token_ttl: int | None = None

    @property
    def machine(self) -> bool:
        return not self.redirect_uris

    def registration(self) -> dict[str, object]:
        entry: dict[str, object] = {"client_id": self.client_id, "client_secret": self.client_secret}
        if self.machine:
            entry |= {"grant_types": ["client_credentials"], "response_types": [], "redirect_uris": []}
        else:
            entry |= {
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "redirect_uris": list(self.redirect_uris),
                "post_logout_redirect_uris": list(self.post_logout_redirect_uris),
            }
        if self.access_token_ttl:
            entry["access_token_ttl"] = self.access_token_ttl
        return entry


def node_binary() -> str:
    node = shutil.which("node")
    if not node:
        raise ServiceError("node not found: the local OpenID provider runs on Node.js (the CDK CLI needs it too)")
    if not (REPO_ROOT / "node_modules" / "oidc-provider").is_dir():
        raise ServiceError("npm package oidc-provider missing: run `make install` (npm ci)")
    return node


class OidcProvider(HttpService):
    """npm `oidc-provider` on loopback with the given users and clients.

    `audience` is what code's access tokens carry in `aud` (the MLflow app
    client's id, as the server expects).
    """

    what = "OpenID provider"
    probe_path = "/.well-known/openid-configuration"
    start_timeout = 30.0

    def __init__(
        self, workdir: Path, *, log_dir: Path, users: list[OidcUser], clients: list[OidcClient],
        audience: str, port: int | None = None, log_name: str = "oidc.log",
    ) -> None:  # fmt: skip
        self.port = port or free_port()
        self.users = {user.username: user for user in users}
        self.clients = {client.client_id: client for client in clients}
        self.audience = audience
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config_path = workdir / "oidc-provider.json"
        self.process = ManagedProcess(
            "oidc", [node_binary(), SCRIPT, self.config_path], env=base_env(),
            log_path=log_dir / log_name, cwd=REPO_ROOT,
        )  # fmt: skip

    @property
    def issuer(self) -> str:
        return self.url

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/token"

    def add_client(self, client: OidcClient) -> None:
        """Register one more client (takes effect at the next start)."""
        self.clients[client.client_id] = client

    def write_config(self) -> None:
        config = {
            "issuer": self.issuer,
            "port": self.port,
            "users": {
                user.username: {
                    "password": user.password,
                    "email": user.email,
                    "name": user.name,
                    "groups": list(user.groups),
                }
                for user in self.users.values()
            },
            "clients": [client.registration() for client in self.clients.values()],
            "default_resource": MLFLOW_RESOURCE,
            "resource_servers": {
                MLFLOW_RESOURCE: {"audience": self.audience, "scope": "mlflow"},
                # Another API of the same issuer: its tokens are for someone else.
                "urn:other:api": {"audience": "some-other-api", "scope": "other"},
            },
            "cookie_keys": [secrets.token_hex(32)],
        }
        self.config_path.touch(mode=0o600)
        self.config_path.write_text(json.dumps(config))

    def start(self, timeout: float | None = None) -> None:
        self.write_config()
        super().start(timeout)

    def client_credentials_token(self, client_id: str, *, resource: str | None = None) -> str:
        """An access token for `client_id` by the client-credentials grant."""
        client = self.clients[client_id]
        data = {"grant_type": "client_credentials", "scope": "mlflow" if resource is None else "other"}
        if resource:
            data["resource"] = resource
        response = requests.post(self.token_url, data=data, auth=(client.client_id, client.client_secret), timeout=10)
        response.raise_for_status()
        return str(response.json()["access_token"])
