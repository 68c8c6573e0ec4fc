"""The auth modes, defined once: their names, the default and what each needs.

No CDK or MLflow imports: the MLflow image copies this file beside entrypoint.py,
and the stacks, localrun and tools read the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

AuthMode = Literal["shared", "accounts", "sso"]
AUTH_MODES: tuple[AuthMode, ...] = get_args(AuthMode)
DEFAULT_AUTH_MODE: AuthMode = "shared"


@dataclass(frozen=True)
class ModeNeeds:
    """What one mode asks of nginx, MLflow and the database."""

    nginx_basic_auth: bool  # nginx checks the one shared user
    auth_database: str | None  # default name of the users' database, None without one
    required_env: tuple[str, ...]  # what the mlflow container refuses to start without


MODES: dict[AuthMode, ModeNeeds] = {
    "shared": ModeNeeds(nginx_basic_auth=True, auth_database=None, required_env=()),
    "accounts": ModeNeeds(
        nginx_basic_auth=False,
        auth_database="mlflow_auth",
        required_env=("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"),
    ),
    "sso": ModeNeeds(
        nginx_basic_auth=False,
        auth_database="mlflow_oidc_auth",
        required_env=("OIDC_DISCOVERY_URL", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET", "MLFLOW_FLASK_SERVER_SECRET_KEY"),
    ),
}
