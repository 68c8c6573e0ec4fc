"""accounts mode: setting a registered model's alias needs MANAGE on the model, not EDIT.

An alias is a release step in this deployment (model_deployments deploys the version
`champion` names to a SageMaker endpoint), so moving it is a decision for the model's
managers. MLflow 3.17 lets EDIT set an alias (`validate_can_set_model_or_prompt_version_alias`
asks for update); removing one already needs delete, which EDIT lacks. This swaps the
validator MLflow registered for the set-alias route (POST `registered-models/alias`,
under /api/2.0 and /ajax-api/2.0 alike: the same dict entry serves both) for MLflow's own
manage check on the model or prompt (grants, roles, DENY, the default permission and
workspaces resolved as for every other check), together with MLflow's own requirement
that the caller may read the version. GraphQL has no alias mutation in 3.17.

MLflow's internals this leans on are checked against the reviewed source first
(reviewed_source.py); if they differ, stock MLflow decides (EDIT may set aliases) and
one line is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import mlflow.server.auth as mlflow_auth
import reviewed_source

REVIEWED = {
    "mlflow.server.auth": {
        # The validator replaced, and how a request finds its validator.
        "validate_can_set_model_or_prompt_version_alias": (
            "657827e70a65fbbf469a96abeef76a4743441e54be98d82a452d8faaebb44ae3"
        ),
        "_find_validator": "45e15fd98b00b0e8b270af0232ef4f728abea97c49dd08b33f64bf1dd197ad90",
        # What the new one calls.
        "_validate_can_manage_registered_model_or_prompt": (
            "459b11e500f7264e89d410c0a7d90593460dc7feed016888af1b825f66d252de"
        ),
        "_get_permission_from_registered_model_or_prompt_name": (
            "2f5312f7aabd2e901df7b2a5e75e6af10d87486300ef4c6c59d0507abc1daa9f"
        ),
        "_alias_version_requirement_met": "b76175c7b3e6b597ef84373678f60f713624808fe1dacb8a6b3dc9660a24af95",
    },
}
CONSEQUENCE = "stock MLflow decides, and EDIT on a registered model may set its aliases"
_logger = logging.getLogger(__name__)


def validate_can_set_alias_with_manage() -> bool:
    """MANAGE on the model (or prompt), and read on its versions."""
    return bool(
        mlflow_auth._validate_can_manage_registered_model_or_prompt() and mlflow_auth._alias_version_requirement_met()
    )


def install() -> list[tuple[str, str]]:
    """Put the manage check on every route MLflow guards with its set-alias validator; those routes."""
    if not reviewed_source.is_reviewed(_logger, "alias_permissions.py", REVIEWED, CONSEQUENCE):
        return []
    stock: Callable[[], bool] = mlflow_auth.validate_can_set_model_or_prompt_version_alias
    routes = [key for key, validator in mlflow_auth.BEFORE_REQUEST_VALIDATORS.items() if validator is stock]
    for key in routes:
        mlflow_auth.BEFORE_REQUEST_VALIDATORS[key] = validate_can_set_alias_with_manage
    return routes
