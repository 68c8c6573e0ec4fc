"""The app `mlflow server --app-name deployment` serves: the mode's own app behind the request guard.

MLflow finds server apps through the `mlflow.app` entry point group; the
`mlflow_deployment-1.0.dist-info` folder next to this file registers this factory
there (the entrypoint puts this folder on PYTHONPATH). Each mode keeps the app it
had: MLflow's own (shared), MLflow's basic-auth app (accounts), the
mlflow-oidc-auth plugin (sso); request_guard.py only refuses requests before them.
In accounts mode, setting a model's alias needs MANAGE (alias_permissions.py).
"""

from __future__ import annotations

import importlib
import os

from audit_log import AuditLog
from request_guard import ASGIApp, RequestGuard

# What `mlflow server` would serve in each mode without this wrapper: module and attribute,
# and whether the attribute is a factory to call.
INNER_APPS = {
    "shared": ("mlflow.server.fastapi_app", "app", False),
    "accounts": ("mlflow.server.auth", "create_app", True),
    "sso": ("mlflow_oidc_auth.app", "app", False),
}


def inner_app(mode: str) -> ASGIApp:
    module, attribute, factory = INNER_APPS[mode]
    app = getattr(importlib.import_module(module), attribute)
    return app() if factory else app


def create_app() -> AuditLog:
    """uvicorn's factory (MLflow passes --factory for a function entry point)."""
    mode = os.environ.get("MLFLOW_AUTH_MODE") or "shared"
    app = inner_app(mode)
    if mode == "accounts":
        import alias_permissions  # imports MLflow's auth module: accounts mode only

        alias_permissions.install()
    return AuditLog(RequestGuard(app), mode)
