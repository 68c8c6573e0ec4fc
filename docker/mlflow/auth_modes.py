"""The auth modes, defined once: their names, the default and what each needs.

No CDK or MLflow imports: the MLflow image copies this file beside entrypoint.py,
and the stacks, localrun and tools read the same table. Code asks a mode's row
what it needs (``MODES[mode].admin_login``), never which mode it is: a new mode
is a new row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

AuthMode = Literal["shared", "accounts", "sso"]
AUTH_MODES: tuple[AuthMode, ...] = get_args(AuthMode)
DEFAULT_AUTH_MODE: AuthMode = "shared"

# What MLflow serves behind request_guard.py: its own app, its basic-auth app, or the
# mlflow-oidc-auth plugin. deployment_app.py loads it, entrypoint.py prepares it, the
# stacks and localrun hand it its settings.
ServerApp = Literal["mlflow", "basic-auth", "oidc"]

ADMIN_ENV = ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD")
PROVIDER_ENV = ("OIDC_DISCOVERY_URL", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET")
SESSION_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"


@dataclass(frozen=True)
class ModeNeeds:
    """What one mode asks of nginx, MLflow, the database and the deployment around them."""

    server_app: ServerApp
    nginx_basic_auth: bool  # nginx checks the one shared user (and names them to the audit log)
    # The credentials secret is MLflow's admin (created and re-keyed at start, rotated in MLflow
    # too) and each Studio profile gets an MLflow user of its own.
    admin_login: bool
    sign_in_provider: bool  # people sign in at an OpenID provider; code sends its tokens
    session_key: bool  # MLflow signs sessions: every task shares one key
    auth_database: str | None  # default name of the users' database, None without one
    # Code may sign in with its IAM identity (iam_callers.py): the app maps a verified caller to a user.
    iam_sign_in: bool

    @property
    def required_env(self) -> tuple[str, ...]:
        """What the mlflow container refuses to start without."""
        return (
            *(ADMIN_ENV if self.admin_login else ()),
            *(PROVIDER_ENV if self.sign_in_provider else ()),
            *((SESSION_KEY_ENV,) if self.session_key else ()),
        )

    @property
    def uses_credentials(self) -> bool:
        """The credentials secret is a password something checks (nginx or MLflow's auth app)."""
        return self.nginx_basic_auth or self.admin_login

    @property
    def permissions(self) -> bool:
        """MLflow decides who may do what per experiment and model (the default_permission setting)."""
        return self.server_app != "mlflow"


MODES: dict[AuthMode, ModeNeeds] = {
    "shared": ModeNeeds(
        server_app="mlflow",
        nginx_basic_auth=True,
        admin_login=False,
        sign_in_provider=False,
        session_key=False,
        auth_database=None,
        iam_sign_in=False,
    ),
    "accounts": ModeNeeds(
        server_app="basic-auth",
        nginx_basic_auth=False,
        admin_login=True,
        sign_in_provider=False,
        session_key=True,
        auth_database="mlflow_auth",
        iam_sign_in=True,
    ),
    "sso": ModeNeeds(
        server_app="oidc",
        nginx_basic_auth=False,
        admin_login=False,
        sign_in_provider=True,
        session_key=True,
        auth_database="mlflow_oidc_auth",
        iam_sign_in=True,
    ),
}


def parse_mode(value: str) -> AuthMode:
    """`value` as a mode; ValueError saying which names are modes (the caller names the setting)."""
    for known in AUTH_MODES:
        if value == known:
            return known
    raise ValueError(f"must be one of {', '.join(AUTH_MODES)}, got {value!r}")


def needs_of(mode: str) -> ModeNeeds:
    """The row of `mode`, a name read from the environment or a command line (KeyError if not a mode)."""
    for known, needs in MODES.items():
        if known == mode:
            return needs
    raise KeyError(mode)
