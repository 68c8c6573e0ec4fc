"""sso mode: setting a registered model's alias needs MANAGE on the model, as in accounts mode.

An alias is a release step here (model_deployments deploys the version `champion`
names), so moving it is a decision for the model's managers. mlflow-oidc-auth guards
SetRegisteredModelAlias with its update check, so EDIT may move an alias; this swaps,
for that request type and every route MLflow serves it under (/api/2.0 and /ajax-api/2.0),
the plugin's validator for the plugin's own manage check (its users, groups, regex grants
and default permission resolved as for every other check). Removing an alias already
needs delete, which EDIT lacks.

The plugin's internals this leans on are checked against the reviewed source first
(reviewed_source.py); if they differ, the plugin decides (EDIT may set aliases) and one
line is logged.
"""

from __future__ import annotations

import logging

import mlflow_oidc_auth.hooks.before_request as hooks
import reviewed_source
from mlflow.protos.model_registry_pb2 import SetRegisteredModelAlias
from mlflow.server.handlers import get_endpoints
from mlflow_oidc_auth.validators.registered_model import validate_can_manage_registered_model

REVIEWED = {
    "mlflow_oidc_auth.hooks.before_request": {
        # How a request finds its validator, and that it is called with the user's name.
        "_find_validator": "718cbb7b0e981cc4e22d2ed378210126633a3b863fbcdd4b44e497a8aa549df4",
        "_get_before_request_handler": "33e315f27782200a1e009e1ad8a189168b29cf0a900b766bf2c39a3fb373cb9d",
        "before_request_hook": "ab1bd13ca79ffb0c151ff005e1296877afdb275c327690f439a5e84505e1e034",
    },
    "mlflow_oidc_auth.validators.registered_model": {
        # The validator put in, and the permission lookup behind it.
        "validate_can_manage_registered_model": "5ca6975c268b279f8d431798216bdb29c52ba8fe1966f798f119da462efccff6",
        "_get_permission_from_registered_model_name": (
            "94f7e20417ff97c86675184fdd2d82756657ace98e5966bea6f6022e66031f83"
        ),
    },
}
CONSEQUENCE = "the OIDC plugin decides, and EDIT on a registered model may set its aliases"
_logger = logging.getLogger(__name__)


def set_alias_routes() -> list[tuple[str, str]]:
    """(path, method) of every route MLflow serves SetRegisteredModelAlias under."""
    return [
        (path, method)
        for path, request_class, methods in get_endpoints(lambda request_class: request_class)
        if request_class is SetRegisteredModelAlias
        for method in methods
    ]


def install() -> list[tuple[str, str]]:
    """Put the manage check on the set-alias request type and its routes; those routes."""
    if not reviewed_source.is_reviewed(_logger, "oidc_alias_permissions.py", REVIEWED, CONSEQUENCE):
        return []
    hooks.BEFORE_REQUEST_HANDLERS[SetRegisteredModelAlias] = validate_can_manage_registered_model
    routes = set_alias_routes()
    for route in routes:
        hooks.BEFORE_REQUEST_VALIDATORS[route] = validate_can_manage_registered_model
    return routes
