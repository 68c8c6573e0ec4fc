"""MLflow's users API as its admin, over the tracking URL every client uses (accounts mode).

Standard library only: the tools need nothing beyond boto3. Passwords travel
only in the basic-auth header and the JSON body, never in a URL, a log or an
error message.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request

USERS = "/api/2.0/mlflow/users"
TIMEOUT = 30


class MlflowAdminError(Exception):
    """A refused or failed call; one line, `status` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class MlflowAdmin:
    """Calls MLflow's auth REST API as one user (the admin) through the tracking URL."""

    def __init__(self, tracking_url: str, username: str, password: str) -> None:
        parts = urllib.parse.urlsplit(tracking_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise MlflowAdminError(f"the tracking URL must be http(s)://host..., got {tracking_url!r}")
        self.url = tracking_url.rstrip("/")
        self.username = username
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}

    def _call(self, method: str, path: str, body: dict[str, str] | None = None) -> dict:
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 - http(s) checked above
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise MlflowAdminError(self._refusal(method, path, error), error.code) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise MlflowAdminError(f"MLflow at {self.url} did not answer {method} {path} ({reason})") from None
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return {}

    def _refusal(self, method: str, path: str, error: urllib.error.HTTPError) -> str:
        if error.code == 401:
            return f"MLflow at {self.url} refused the login of {self.username!r} (401)"
        if error.code == 403:
            return f"MLflow at {self.url} says {self.username!r} may not {method} {path} (403): not an admin?"
        if error.code == 404:
            return f"MLflow at {self.url} has no {path} (404): does it run with auth_mode accounts?"
        try:
            detail = json.loads(error.read() or b"{}").get("message", "")
        except ValueError:
            detail = ""
        return f"MLflow at {self.url} answered {method} {path} with {error.code}: {str(detail)[:200] or 'no details'}"

    def check_login(self) -> None:
        """Raise unless this login works and reads its own user."""
        self._call("GET", f"{USERS}/get?{urllib.parse.urlencode({'username': self.username})}")

    def change_own_password(self, current: str, new: str) -> None:
        """Set this login's password (MLflow asks for the current one when users change their own)."""
        body = {"username": self.username, "password": new, "current_password": current}
        self._call("PATCH", f"{USERS}/update-password", body)
