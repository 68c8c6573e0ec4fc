"""MLflow basic-auth check that is cheap per request and forgets at once.

MLflow's auth app verifies the password (a scrypt/PBKDF2 hash, tens of ms of
CPU by design) every time it authenticates, which is several times per API
call. Its optional cache (`auth_cache_ttl_seconds`) lives in each worker
process, so a user deleted, re-keyed or promoted through another worker or
task stays accepted there as before until the TTL ends.

This cache remembers a successful check together with every field of the
user's row that MLflow's check reads (id, password hash, admin flag), and
reads that row again (one indexed SELECT) on every request: a deleted user
has no row and is refused, and a changed password, a promotion to admin or
a user deleted and made again misses the cache and goes through MLflow's
full check (which, for one, refuses an admin the old public default
password), on every worker of every task at once. The password check itself
is MLflow's own `authenticate_request_basic_auth`.

Plugged in with the auth app's documented setting
`authorization_function = credential_cache:authenticate_request`
(entrypoint.py writes it, with MLflow's TTL cache off). Importing this module
also gives the auth app its cheaper lookups (auth_lookups.py), so the default
`validated` setting carries them.

Each of these patches is installed only when the MLflow internals it relies
on are the reviewed ones (reviewed_source.py); otherwise it is left out with
one log line and stock MLflow answers. `MLFLOW_AUTH_PATCHES_OFF` (a comma
list of :data:`PATCHES`) leaves some out on purpose: the benchmark
(benchmarks/accounts_and_artifacts.py) measures each against the others so.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping

import auth_lookups
import reviewed_source
from flask import Flask, Response, g, request
from mlflow.server import app as mlflow_app
from mlflow.server import auth as mlflow_auth
from werkzeug.datastructures import Authorization

# What MLFLOW_AUTH_PATCHES_OFF may name: this module's cache and auth_lookups' two.
PATCHES = ("cache", *auth_lookups.PATCHES)

# What the cache relies on, read in MLflow 3.17.2: the check it remembers (MLflow's own, which reads
# the user's row by name: password hash, and admin flag for the refused legacy password), the user
# row and entity (every field of which is in the key), how the user is read and a 401 is made.
REVIEWED_FOR_CACHE = {
    "mlflow.server.auth": {
        "authenticate_request_basic_auth": "71031142141467295a48cd30079702afea58a04062986a583d3f20e223407d15",
        "_is_disabled_legacy_admin_login": "4383832009a5e669d0a6fed2adf0b575a3cb8d7bad60644c5a240dc4c70e119c",
        "_fetch_or_none": "cbbbdb9b3e128da56116c46dce8a71999c55f0898392182b82b61dacccd064ad",
        "make_basic_auth_response": "bc911dea5dee942878acaf78f26e7a7c5e1e6e0d3c4333ecc392b3f0da209b05",
    },
    "mlflow.server.auth.sqlalchemy_store": {
        "SqlAlchemyStore.authenticate_user": "c472bd4fddf6b5049e7a87818e2ec39c37df6af505ce6fb56d1ba8e709d9a67f",
        "SqlAlchemyStore.get_user": "d7a5d659abecfc5e7f7bdef106963911b368e3a7c870be7b23c1be4a79fb5b18",
        "SqlAlchemyStore._get_user": "459b9df3037c82fc68f84d72636d9c1502670aec1a154860446b10ce21672e6d",
    },
    "mlflow.server.auth.db.models": {
        "SqlUser": "e287d7977093b98a388825c78fc6f14761dfe6eb8d89e89afb811dcf489e8130",
    },
    "mlflow.server.auth.entities": {
        "User": "3f5a84010c44f54be1ae1518045013556b3f833868ab6ecc2c3a92fbfaa3156c",
    },
}
# `/users/current`'s view, whose `is_basic_auth` report_basic_auth corrects.
REVIEWED_FOR_CURRENT_USER = {
    "mlflow.server.auth": {
        "get_current_user": "6ca5c449e3adea104f552a38f717bf8e8da355b4623f684c56bfb22119c6c172",
    },
}

_logger = logging.getLogger(__name__)


def patches_off(env: Mapping[str, str] = os.environ) -> set[str]:
    """The patches MLFLOW_AUTH_PATCHES_OFF leaves out (names not in PATCHES mean nothing)."""
    return {name.strip() for name in env.get("MLFLOW_AUTH_PATCHES_OFF", "").split(",")} & set(PATCHES)


OFF = patches_off()
auth_lookups.install(OFF)
CACHING = "cache" not in OFF and reviewed_source.is_reviewed(
    _logger, "credential_cache.py: cache", REVIEWED_FOR_CACHE,
    "every request's password is checked by MLflow's own check, correct but slower",
)  # fmt: skip

MAX_ENTRIES = 10_000
# Keys hold an HMAC of the password under a per-process random key, never the
# password: a memory dump yields nothing to test guesses against offline.
_HMAC_KEY = secrets.token_bytes(32)
# (username, password HMAC, user id, password hash, is_admin): every field of the row MLflow's check reads.
CacheKey = tuple[str, bytes, int, str, bool]
_verified: OrderedDict[CacheKey, None] = OrderedDict()
_lock = threading.Lock()


def _stored_user(username: str) -> tuple[int, str, bool] | None:
    """The user's row as MLflow's check reads it (id, password hash, admin flag), or None if there is none."""
    # Read once per request (auth_lookups.py): the admin and permission checks reuse it. The
    # auth app's own _fetch_or_none: None when the user does not exist, other failures raised.
    user = mlflow_auth._fetch_or_none(mlflow_auth.store.get_user, username)
    return (user.id, user.password_hash, bool(user.is_admin)) if user is not None else None


def _check(authorization: Authorization) -> Authorization | Response:
    username, password = authorization.username or "", authorization.password or ""
    stored = _stored_user(username)
    if stored is None:
        return mlflow_auth.make_basic_auth_response()
    key = (username, hmac.digest(_HMAC_KEY, password.encode("utf-8"), "sha256"), *stored)
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
    if not CACHING:
        return mlflow_auth.authenticate_request_basic_auth()
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
if reviewed_source.is_reviewed(
    _logger, "credential_cache.py: current-user", REVIEWED_FOR_CURRENT_USER,
    "the UI offers no Logout and no Change password",
):  # fmt: skip
    report_basic_auth(mlflow_app)
