"""sso mode: only MANAGE on a registered model moves its aliases, as in accounts mode.

mlflow-oidc-auth guards setting an alias with its update check (EDIT would do);
docker/mlflow/oidc_alias_permissions.py asks for its manage check instead, on the
REST and the UI's ajax-api routes. One app client's user creates the model (and so
manages it) and grants another EDIT; the editor keeps what EDIT may do.
"""

from __future__ import annotations

import secrets

import pytest
import requests

from localrun.stack import MlflowStack
from tests.integration.conftest import SSO_COLLEAGUE, SSO_GROUP, SSO_MACHINE

pytestmark = [pytest.mark.integration, SSO_GROUP]

ROUTES = ["/api/2.0/mlflow/registered-models/alias", "/ajax-api/2.0/mlflow/registered-models/alias"]


class Caller:
    """REST calls through the proxy with an app client's bearer token."""

    def __init__(self, stack: MlflowStack, client_id: str) -> None:
        assert stack.oidc is not None
        self.stack, self.headers = stack, {"Authorization": f"Bearer {stack.oidc.client_credentials_token(client_id)}"}

    def __call__(self, method: str, path: str, **kwargs: object) -> requests.Response:
        return requests.request(method, self.stack.proxy_url + path, headers=self.headers, timeout=60, **kwargs)  # type: ignore[arg-type]

    def ok(self, method: str, path: str, **kwargs: object) -> dict:
        response = self(method, path, **kwargs)
        assert response.status_code in (200, 201), (path, response.status_code, response.text)
        return response.json()


@pytest.fixture(scope="module")
def release(sso_stack: MlflowStack) -> tuple[str, Caller, Caller]:
    """A model with two versions, managed by its creator; a colleague holds EDIT on it."""
    manager, editor = Caller(sso_stack, SSO_MACHINE), Caller(sso_stack, SSO_COLLEAGUE)
    editor.ok("GET", "/api/2.0/mlflow/users/current")  # the plugin knows a user once it has called
    name = f"sso-release-{secrets.token_hex(3)}"
    experiment = manager.ok("POST", "/api/2.0/mlflow/experiments/create", json={"name": name})["experiment_id"]
    run = manager.ok("POST", "/api/2.0/mlflow/runs/create", json={"experiment_id": experiment})["run"]["info"]
    manager.ok("POST", "/api/2.0/mlflow/registered-models/create", json={"name": name})
    for _ in range(2):
        body = {"name": name, "source": f"{run['artifact_uri']}/model", "run_id": run["run_id"]}
        manager.ok("POST", "/api/2.0/mlflow/model-versions/create", json=body)
    manager.ok(
        "POST", f"/api/2.0/mlflow/permissions/users/{SSO_COLLEAGUE}/registered-models/{name}",
        json={"permission": "EDIT"},
    )  # fmt: skip
    return name, manager, editor


def _aliases(manager: Caller, name: str) -> dict[str, str]:
    model = manager.ok("GET", "/api/2.0/mlflow/registered-models/get", params={"name": name})["registered_model"]
    return {a["alias"]: a["version"] for a in model.get("aliases", [])}


@pytest.mark.parametrize("route", ROUTES)
def test_edit_may_not_set_an_alias(release: tuple[str, Caller, Caller], route: str) -> None:
    name, manager, editor = release
    before = _aliases(manager, name)
    response = editor("POST", route, json={"name": name, "alias": "champion", "version": "2"})
    assert response.status_code == 403, response.text
    assert _aliases(manager, name) == before


def test_edit_keeps_what_edit_may_do(release: tuple[str, Caller, Caller]) -> None:
    name, _, editor = release
    editor.ok("PATCH", "/api/2.0/mlflow/registered-models/update", json={"name": name, "description": "edited"})
    editor.ok("POST", "/api/2.0/mlflow/model-versions/set-tag",
              json={"name": name, "version": "1", "key": "k", "value": "v"})  # fmt: skip


@pytest.mark.parametrize(("route", "version"), zip(ROUTES, ["1", "2"], strict=True))
def test_manage_sets_and_moves_the_alias(release: tuple[str, Caller, Caller], route: str, version: str) -> None:
    name, manager, _ = release
    manager.ok("POST", route, json={"name": name, "alias": "champion", "version": version})
    assert _aliases(manager, name)["champion"] == version
