"""The app `mlflow server --app-name deployment` serves: the mode's own app behind the request guard.

MLflow finds server apps through the `mlflow.app` entry point group; the
`mlflow_deployment-1.0.dist-info` folder next to this file registers this factory
there (the entrypoint puts this folder on PYTHONPATH). Each mode keeps the app it
had: MLflow's own (shared), MLflow's basic-auth app (accounts), the
mlflow-oidc-auth plugin (sso); request_guard.py only refuses requests before them.
In accounts and sso modes, setting a model's alias needs MANAGE (alias_permissions.py,
oidc_alias_permissions.py); in sso mode reading an MCP server follows the default permission
(oidc_mcp_permissions.py). With IAM sign-in (iam_sign_in.py), a request with more than one
caller header is refused before the app, and the audit lines name the caller's user; in
sso mode oidc_iam_sign_in.py maps the caller for the plugin. Where users have accounts, a run's
user is the signed-in one (run_users.py).
"""

from __future__ import annotations

import importlib
import os

from audit_log import AuditLog, IamUser
from auth_modes import DEFAULT_AUTH_MODE, ServerApp, needs_of
from iam_callers import SIGN_IN_ENV
from request_guard import ASGIApp, RequestGuard

# What `mlflow server` would serve for each server app without this wrapper: module and
# attribute, and whether the attribute is a factory to call.
INNER_APPS: dict[ServerApp, tuple[str, str, bool]] = {
    "mlflow": ("mlflow.server.fastapi_app", "app", False),
    "basic-auth": ("mlflow.server.auth", "create_app", True),
    "oidc": ("mlflow_oidc_auth.app", "app", False),
}


def inner_app(mode: str) -> ASGIApp:
    module, attribute, factory = INNER_APPS[needs_of(mode).server_app]
    app = getattr(importlib.import_module(module), attribute)
    return app() if factory else app


def create_app() -> AuditLog:
    """uvicorn's factory (MLflow passes --factory for a function entry point)."""
    mode = os.environ.get("MLFLOW_AUTH_MODE") or DEFAULT_AUTH_MODE
    needs = needs_of(mode)
    app = inner_app(mode)
    if needs.server_app == "basic-auth":
        import alias_permissions  # imports MLflow's auth module: the basic-auth app's modes only

        alias_permissions.install()
    elif needs.server_app == "oidc":
        import oidc_alias_permissions  # imports the OIDC plugin's hooks: sso mode only
        import oidc_mcp_permissions

        oidc_alias_permissions.install()
        oidc_mcp_permissions.install()
    if needs.permissions:
        import run_users  # the auth apps name the signed-in user on Flask's `g`
        from mlflow.server import app as flask_app

        run_users.install(flask_app)
    # Demo data only where the one login owns everything anyway (shared mode).
    guarded: ASGIApp = RequestGuard(app, demo_data=not needs.permissions)
    iam_user: IamUser | None = None
    if os.environ.get(SIGN_IN_ENV) == "true" and needs.iam_sign_in:
        import iam_sign_in

        if needs.server_app == "oidc":
            import oidc_iam_sign_in  # the plugin has no authorization_function: its middleware is wrapped

            guarded = oidc_iam_sign_in.IamSignIn(guarded, active=oidc_iam_sign_in.install())
        guarded, iam_user = iam_sign_in.OneCaller(guarded), iam_sign_in.audit_user
    return AuditLog(guarded, mode, iam_user=iam_user)
