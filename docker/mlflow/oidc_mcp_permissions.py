"""sso mode: reading an MCP server nobody granted you follows `default_permission`, as in accounts mode.

MLflow 3 keeps a registry of MCP servers (`/api/3.0/mlflow/mcp-servers`: descriptions,
versions with their server.json and tools, access-endpoint URLs). MLflow's basic-auth app
reads a server nobody granted a user under the default permission. With workspaces off,
mlflow-oidc-auth lets every signed-in user read such a server (get, list, search, its
versions and endpoints) whatever the default. So with `NO_PERMISSIONS` a colleague would
read what another team registered. This swaps the plugin's read check for its own
permission resolution (the user's grant, then the groups', then the default), the one its
update and delete checks use.

The plugin's internals this leans on are checked against the reviewed source first
(reviewed_source.py); if they differ, the plugin decides (every signed-in user reads
ungranted servers) and one line is logged.
"""

from __future__ import annotations

import logging

import mlflow_oidc_auth.middleware.mcp_server_registry as registry
import reviewed_source
from mlflow_oidc_auth.utils.permissions import effective_mcp_server_permission

REVIEWED = {
    "mlflow_oidc_auth.middleware.mcp_server_registry": {
        # The check replaced, and the two callers that look it up by its module name.
        "_may_read": "1074859c1b118fd73901ec30aea16aefcb858f7ee22ff46d0f1528b8cbca9e00",
        "get_mcp_server_validator": "dc00e6ee98a7a78ecad2ba26cb55189b1605fa0fb851120bb99d9505e5bcb972",
        "_filter_search_body": "a674b494150d54f367c15a186d756f27748a3769fc1efb4b34eaee399ace95c8",
    },
    "mlflow_oidc_auth.utils.permissions": {
        # Grant, groups, then the default permission (workspaces are off here).
        "effective_mcp_server_permission": "8672adcea782dad0d5b9e4d260179298ac4b61a39178607fbc16fbfad69b07b6",
    },
}
CONSEQUENCE = "the OIDC plugin decides, and every signed-in user reads the MCP servers nobody granted them"
_logger = logging.getLogger(__name__)


def may_read(name: str, username: str) -> bool:
    """READ as the plugin resolves it for every other check: no grant leaves the default permission."""
    return effective_mcp_server_permission(name, username).permission.can_read


def install() -> bool:
    """Put `may_read` in the plugin's registry middleware; whether it was."""
    if not reviewed_source.is_reviewed(_logger, "oidc_mcp_permissions.py", REVIEWED, CONSEQUENCE):
        return False
    registry._may_read = may_read
    return True
