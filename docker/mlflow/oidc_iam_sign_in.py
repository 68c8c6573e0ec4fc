"""IAM sign-in in sso mode: a caller API Gateway verified is authenticated by mlflow-oidc-auth as its mapped user.

mlflow-oidc-auth 10.2.0 has no extension point for another way to authenticate (its plugin
settings detect groups and workspaces only), so this wraps three names of its
authentication middleware, checked first against the reviewed source (reviewed_source.py):

- ``AuthMiddleware._authenticate_user``: a request with the caller header is the user
  :class:`IamSignIn` (outside the plugin's app) mapped it to; without the header, the plugin's
  own path (basic, bearer, session) unchanged. The Authorization header and any session
  cookie of such a request are never looked at (nginx's IAM server drops Authorization).
- ``_auth_method``: such a request counts as a workload credential, so the plugin's
  ``require_interactive_login`` refuses it access-token issuance: a short-lived role session
  cannot mint a long-lived token.
- ``_service_account_denial``: the mapped user may be a service account (a Studio profile's app
  client, OIDC_MACHINE_CLIENTS); the IAM mapping is that account's binding for this request.

Everything after authentication is the plugin's: the user must exist and be active, the admin
flag, the permissions and the default permission apply unchanged. A caller mapped to nobody gets
403 naming its ARN. When the plugin's source differs, IAM sign-in is off: a request with the
header gets 403 saying so (one line logged at start), never the plugin's path for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import reviewed_source
from iam_callers import CALLER_HEADER, callers_in
from iam_sign_in import admin_by_parameter, caller_user, mapped_by_setting, send_refusal
from request_guard import ASGIApp, Receive, Scope, Send

MIDDLEWARE = "mlflow_oidc_auth.middleware.auth_middleware"
REVIEWED = {
    MIDDLEWARE: {
        # Calls the three below in this order, then reads the user's active and admin facts.
        "AuthMiddleware.dispatch": "b0de7e62969dc422f10b4df3eb8f72980fa5d14e04ba7de19650634ff2165ec9",
        "AuthMiddleware._authenticate_user": "cc2931ee7659a48e61d55a6a7dd9679b66a7d229606289974b08c01feac89183",
        "_auth_method": "fd444e74e0660e3771037e12fb9cd37f34eb0bc71a284021e92c5620533eccc9",
        "_service_account_denial": "221ce9e059da98b4d066b0ba5d3b9a7c0cd472a7328126f1ed8908753fc3da38",
    },
    "mlflow_oidc_auth.dependencies": {
        # Refuses token issuance to anything but a session or an IdP user token.
        "require_interactive_login": "b400403646c376c6c480f8e594c5aebc53567ca1be5647cc2f4e4ae5dc1aa99f",
    },
}
CONSEQUENCE = "IAM sign-in is off: requests with the caller header are refused"
OFF_MESSAGE = f"IAM sign-in is off on this server (the OIDC plugin is not the reviewed one); {CALLER_HEADER} refused"

_logger = logging.getLogger(__name__)
# The user this request's caller header maps to, set by IamSignIn for the plugin's middleware below it.
_IAM_USER: ContextVar[str | None] = ContextVar("mlflow_iam_user", default=None)


def _is_admin(username: str) -> bool:
    """The plugin's admin flag of `username` (False when it has no such user: the plugin refuses it later)."""
    from mlflow_oidc_auth.store import store

    try:
        return bool(getattr(store.get_user_profile(username), "is_admin", False))
    except Exception:  # noqa: BLE001 - the plugin raises its own "not found"; it answers that user itself
        return False


def _has_caller(request: Any) -> bool:
    return CALLER_HEADER in request.headers


def install() -> bool:
    """Wrap the plugin's authentication; False (and one line logged) when its source is not the reviewed one."""
    if not reviewed_source.is_reviewed(_logger, "oidc_iam_sign_in.py", REVIEWED, CONSEQUENCE):
        return False
    import mlflow_oidc_auth.middleware.auth_middleware as middleware
    from mlflow_oidc_auth.entities.auth_context import AUTH_METHOD_WORKLOAD

    authenticate_user: Callable[..., Any] = middleware.AuthMiddleware._authenticate_user
    auth_method: Callable[..., str] = middleware._auth_method
    service_account_denial: Callable[..., str] = middleware._service_account_denial

    async def _authenticate_user(self: Any, request: Any) -> tuple[bool, str | None, str]:
        if not _has_caller(request):
            return await authenticate_user(self, request)
        user = _IAM_USER.get()
        if user is None:  # the header without IamSignIn's decision: never the plugin's path
            return False, None, f"{CALLER_HEADER} without a decision"
        return True, user, ""

    def _auth_method(request: Any, workload_bearer: bool = False) -> str:
        if _has_caller(request):
            return AUTH_METHOD_WORKLOAD
        return auth_method(request, workload_bearer=workload_bearer)

    def _service_account_denial(username: str, *args: Any, **kwargs: Any) -> str:
        user = _IAM_USER.get()
        if user is not None and user == username:
            return ""
        return service_account_denial(username, *args, **kwargs)

    middleware.AuthMiddleware._authenticate_user = _authenticate_user
    middleware._auth_method = _auth_method
    middleware._service_account_denial = _service_account_denial
    return True


class IamSignIn:
    """ASGI middleware around the plugin's app: maps a request's caller header to its user, or answers 403.

    ``active`` is what :func:`install` returned: when False every request with the header is refused.
    """

    def __init__(self, app: ASGIApp, *, active: bool) -> None:
        self.app = app
        self.active = active

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        callers = callers_in(scope.get("headers", [])) if scope["type"] == "http" else []
        if not callers:
            await self.app(scope, receive, send)
            return
        user, why_not = caller_user(callers) if self.active else (None, OFF_MESSAGE)
        if user is not None and not mapped_by_setting(callers[0], user) and _is_admin(user):
            why_not, user = admin_by_parameter(callers[0], user), None
        if user is None:
            await send_refusal(send, why_not)
            return
        marker = _IAM_USER.set(user)
        try:
            await self.app(scope, receive, send)
        finally:
            _IAM_USER.reset(marker)
