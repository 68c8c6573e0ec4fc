"""MLflow basic-auth check that is cheap per request and forgets at once.

MLflow's auth app verifies the password (a scrypt/PBKDF2 hash, tens of ms of
CPU by design) every time it authenticates, which is several times per API
call. Its optional cache (`auth_cache_ttl_seconds`) lives in each worker
process, so a user deleted or re-keyed through another worker or task stays
accepted there until the TTL ends.

This cache remembers a successful check together with the user's stored
password hash, and looks that hash up again (one indexed SELECT) on every
request: a deleted user has no hash and is refused, a changed password has a
new hash and misses the cache, on every worker of every task at once. The
password check itself is MLflow's own `authenticate_request_basic_auth`.

Plugged in with the auth app's documented setting
`authorization_function = credential_cache:authenticate_request`
(entrypoint.py writes it, with MLflow's TTL cache off). Importing this module
also gives the auth app its cheaper lookups (auth_lookups.py: a run's experiment read once, the user with
grants once per request, Core queries, remembered route matches) and the direct path for requests bound for Flask
(asgi_fast_path.py), so the default `validated` setting carries them.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
from collections import OrderedDict

import asgi_fast_path
import auth_lookups
from flask import Flask, Response, g, request
from mlflow.server import app as mlflow_app
from mlflow.server import auth as mlflow_auth
from werkzeug.datastructures import Authorization

auth_lookups.install()
asgi_fast_path.install()

MAX_ENTRIES = 10_000
# Keys hold an HMAC of the password under a per-process random key, never the
# password: a memory dump yields nothing to test guesses against offline.
_HMAC_KEY = secrets.token_bytes(32)
_verified: OrderedDict[tuple[str, bytes, str], None] = OrderedDict()
_lock = threading.Lock()


def _stored_password_hash(username: str) -> str | None:
    """The user's current password hash, or None when the user does not exist."""
    # Read once per request (auth_lookups.py): the admin and permission checks reuse it. The
    # auth app's own _fetch_or_none: None when the user does not exist, other failures raised.
    user = mlflow_auth._fetch_or_none(mlflow_auth.store.get_user, username)
    return user.password_hash if user is not None else None


def _check(authorization: Authorization) -> Authorization | Response:
    username, password = authorization.username or "", authorization.password or ""
    stored = _stored_password_hash(username)
    if stored is None:
        return mlflow_auth.make_basic_auth_response()
    key = (username, hmac.digest(_HMAC_KEY, password.encode("utf-8"), "sha256"), stored)
    with _lock:
        if key in _verified:
            _verified.move_to_end(key)
            return authorization
    result = mlflow_auth.authenticate_request_basic_auth()
    if isinstance(result, Authorization):
        with _lock:
            _verified[key] = None
            while len(_verified) > MAX_ENTRIES:
                _verified.popitem(last=False)
    return result


def authenticate_request() -> Authorization | Response:
    """MLflow `authorization_function`: the request's Authorization, or a 401 challenge."""
    authorization = request.authorization
    if authorization is None or authorization.type != "basic":
        return mlflow_auth.make_basic_auth_response()
    # MLflow asks several times per request (before-request hook, admin
    # check, validators): decide once per request.
    header = request.headers.get("Authorization", "")
    decided = g.get("_credential_cache_decision")
    if decided is None or decided[0] != header:
        decided = (header, _check(authorization))
        g._credential_cache_decision = decided
    return decided[1]


def current_user_as_basic_auth() -> Response:
    """MLflow's `/users/current`, saying that sign-in is HTTP Basic (it is: MLflow's own check).

    MLflow reports `is_basic_auth` only for its default authorization function, and its UI
    offers "Logout" and "Change password" only when it is true.
    """
    response = mlflow_auth.get_current_user()
    body = response.get_json(silent=True) if response.status_code == 200 else None
    if isinstance(body, dict) and body.get("is_basic_auth") is False:
        body["is_basic_auth"] = True
        response.set_data(json.dumps(body))
    return response


def report_basic_auth(app: Flask) -> None:
    """Serve `/users/current` (both its paths) through :func:`current_user_as_basic_auth`."""
    for endpoint, view in list(app.view_functions.items()):
        if view is mlflow_auth.get_current_user:
            app.view_functions[endpoint] = current_user_as_basic_auth


# MLflow imports this module at the first request, after its auth app added its routes.
report_basic_auth(mlflow_app)
