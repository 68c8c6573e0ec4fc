"""Where users have accounts, a run's user is the signed-in user, not the one the client reports.

MLflow stores the `user_id` and the `mlflow.user` tag a client sends with a new run: its
operating-system user (`sagemaker-user` in every Studio notebook), or any other login's name.
So a colleague could log runs in someone else's name, and the UI's User column (the tag) said
nothing about who logged them. In `accounts` and `sso` modes this Flask hook runs after the
mode's auth app has signed the request in (both name the user in
`g.mlflow_authenticated_user`, which MLflow's own handlers read too) and:

* writes that user into a new run's `user_id` and `mlflow.user` tag (runs/create; the prompt
  lab's runs/create-promptlab-run takes only a `user_id`);
* refuses any later write of the `mlflow.user` tag (set-tag, log-batch) and its deletion: someone
  who may edit a colleague's run must not make it theirs either.

If the auth app named nobody (an MLflow that stopped setting the name), the request goes on as
MLflow's own and one line is logged: run users are then the clients' again.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Flask, Response, g, jsonify, request

USER_TAG = "mlflow.user"  # mlflow.utils.mlflow_tags.MLFLOW_USER (tests/docker/test_run_users.py)
_RUNS = r"/(?:api|ajax-api)/2\.0/(?:preview/)?mlflow/runs/"
_CREATE = re.compile(_RUNS + "create")
# The UI's prompt lab creates a run with the `user_id` it is sent (its tags must be RunTag objects
# there: any JSON tag is a 500 in MLflow, so the UI sends none and they are left alone).
_CREATE_PROMPTLAB = re.compile(_RUNS + "create-promptlab-run")
_SET_TAG = re.compile(_RUNS + "set-tag")
_LOG_BATCH = re.compile(_RUNS + "log-batch")
_DELETE_TAG = re.compile(_RUNS + "delete-tag")
# The spellings MLflow's handlers read (the proto's field name and its camelCase JSON name).
_USER_ID = ("user_id", "userId")

_logger = logging.getLogger(__name__)
_warned = False


def install(app: Flask) -> None:
    """Run after the auth app's own before-request hook (registered earlier, so it runs first)."""
    app.before_request(stamp)


def _refusal(message: str) -> Response:
    response = jsonify({"error_code": "INVALID_PARAMETER_VALUE", "message": message})
    response.status_code = 400
    return response


def _signed_in() -> str | None:
    global _warned
    user = getattr(g, "mlflow_authenticated_user", None)
    if isinstance(user, str) and user:
        return user
    if not _warned:
        _warned = True
        _logger.warning("run_users.py: the auth app named no user; run users are what clients report")
    return None


def _tag_list(tags: object) -> list[Any]:
    return tags if isinstance(tags, list) else []


def _is_user_tag(entry: object) -> bool:
    return isinstance(entry, dict) and entry.get("key") == USER_TAG


def _body() -> dict[str, Any] | str | None:
    """The JSON body the handler will read: the parsed object itself (Flask caches it), or a JSON
    string (old clients encode the object twice, and MLflow decodes it again)."""
    body = request.get_json(force=True, silent=True)
    return body if isinstance(body, (dict, str)) else None


def stamp() -> Response | None:
    """The before-request hook: None lets the request go on, a Response refuses it."""
    if request.method != "POST":
        return None
    # The rule Flask matched, not the path as sent: other spellings of a path reach the same rule.
    rule = request.url_rule.rule if request.url_rule is not None else ""
    routes = (_CREATE, _CREATE_PROMPTLAB, _SET_TAG, _LOG_BATCH, _DELETE_TAG)
    route = next((pattern for pattern in routes if pattern.fullmatch(rule)), None)
    body = _body() if route else None
    if body is None:
        return None  # not a route that names a run's user, or a body MLflow refuses itself
    user = _signed_in()
    if user is None:
        return None
    if isinstance(body, str):
        return _refusal("send this request's body as a JSON object, not as a JSON-encoded string")
    if route in (_CREATE, _CREATE_PROMPTLAB):
        for name in _USER_ID:
            body.pop(name, None)
        body["user_id"] = user
        if route is _CREATE:
            kept = [entry for entry in _tag_list(body.get("tags")) if not _is_user_tag(entry)]
            body["tags"] = [*kept, {"key": USER_TAG, "value": user}]
        return None
    entries = _tag_list(body.get("tags")) if route is _LOG_BATCH else [body]
    if any(_is_user_tag(entry) for entry in entries):
        return _refusal(
            f"the {USER_TAG} tag names who logged the run and is written when the run is created "
            f"(for runs you create: {user!r}); it is not changed or deleted afterwards"
        )
    return None
