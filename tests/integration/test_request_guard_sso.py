"""sso mode: the request guard stands in front of the OIDC plugin as it does in front of MLflow's auth app.

A colleague's app client (no grants; default NO_PERMISSIONS) tries the Studio profile's
experiment under other spellings of its id, and points its own registered model and a new
experiment at that experiment's files.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pytest
import requests

from localrun.stack import MlflowStack
from tests.integration.conftest import SSO_COLLEAGUE, SSO_GROUP, SSO_MACHINE

pytestmark = [pytest.mark.integration, SSO_GROUP]

SEARCH_RUNS = "mutation q($i: [String]) { mlflowSearchRuns(input: {experimentIds: $i}) { runs { info { runId } } } }"
SPELLINGS = ["0{e}", "+{e}", " {e}", "{e} ", "0_{e}", "\uff10{e}"]


@dataclass
class Scene:
    owner: dict[str, str]
    colleague: dict[str, str]
    experiment_id: str
    run_id: str


def call(stack: MlflowStack, method: str, path: str, headers: dict[str, str], **kwargs) -> requests.Response:
    return requests.request(method, stack.proxy_url + path, headers=headers, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def scene(sso_stack: MlflowStack) -> Scene:
    assert sso_stack.oidc is not None
    owner = {"Authorization": f"Bearer {sso_stack.oidc.client_credentials_token(SSO_MACHINE)}"}
    colleague = {"Authorization": f"Bearer {sso_stack.oidc.client_credentials_token(SSO_COLLEAGUE)}"}
    created = call(
        sso_stack, "POST", "/api/2.0/mlflow/experiments/create", owner, json={"name": f"owned-{secrets.token_hex(3)}"}
    )
    experiment_id = created.json()["experiment_id"]
    run = call(sso_stack, "POST", "/api/2.0/mlflow/runs/create", owner, json={"experiment_id": experiment_id})
    return Scene(owner, colleague, experiment_id, run.json()["run"]["info"]["run_id"])


def test_other_spellings_are_refused_before_the_plugin(sso_stack: MlflowStack, scene: Scene) -> None:
    e = scene.experiment_id
    probes = {
        "experiments/get": lambda s: call(
            sso_stack, "GET", "/api/2.0/mlflow/experiments/get", scene.colleague, params={"experiment_id": s}
        ),
        "runs/search": lambda s: call(
            sso_stack, "POST", "/api/2.0/mlflow/runs/search", scene.colleague, json={"experimentIds": [s]}
        ),
        "graphql": lambda s: call(
            sso_stack,
            "POST",
            "/graphql",
            scene.colleague,
            json={
                "query": SEARCH_RUNS,
                "variables": {"i": [s]},
            },
        ),  # fmt: skip
        "artifact": lambda s: call(
            sso_stack, "GET", f"/api/2.0/mlflow-artifacts/artifacts/{s}/{scene.run_id}/artifacts/x", scene.colleague
        ),
    }
    for route, probe in probes.items():
        canonical = probe(e)
        assert scene.run_id not in canonical.text, (route, canonical.text[:200])
        assert canonical.status_code in (200, 403, 404), (route, canonical.status_code, canonical.text[:200])
        for spelling in SPELLINGS:
            response = probe(spelling.format(e=e))
            assert response.status_code == 400, (route, spelling, response.status_code, response.text[:200])
            assert scene.run_id not in response.text
    # Refused for the owner too: it is the spelling that is refused, not the caller.
    owner_spelled = call(
        sso_stack, "GET", "/api/2.0/mlflow/experiments/get", scene.owner, params={"experiment_id": f"0{e}"}
    )
    assert owner_spelled.status_code == 400


def test_sources_and_locations_are_refused(sso_stack: MlflowStack, scene: Scene) -> None:
    name = f"colleague-model-{secrets.token_hex(3)}"
    assert call(sso_stack, "POST", "/api/2.0/mlflow/registered-models/create", scene.colleague, json={"name": name}).ok
    e, run = scene.experiment_id, scene.run_id
    for source, status in {
        f"{sso_stack.artifacts_destination}/{e}/{run}/artifacts": 400,
        f"mlflow-artifacts:/{e}/{run}/artifacts": 403,
        f"runs:/{run}/model": 403,
    }.items():
        response = call(
            sso_stack, "POST", "/api/2.0/mlflow/model-versions/create", scene.colleague,
            json={"name": name, "source": source, "run_id": run},
        )  # fmt: skip
        assert response.status_code == status, (source, response.status_code, response.text[:200])
    planted = call(
        sso_stack, "POST", "/api/2.0/mlflow/experiments/create", scene.colleague,
        json={"name": f"planted-{secrets.token_hex(3)}", "artifact_location": f"{sso_stack.artifacts_destination}/{e}"},
    )  # fmt: skip
    assert planted.status_code == 400 and "assigned by the server" in planted.text


def test_a_trace_cannot_be_pointed_at_the_owners_files(sso_stack: MlflowStack, scene: Scene) -> None:
    """The colleague's own trace, retagged to read the owner's trace data (accounts mode: every route)."""
    own = call(
        sso_stack, "POST", "/api/2.0/mlflow/experiments/create", scene.colleague,
        json={"name": f"colleague-traces-{secrets.token_hex(3)}"},
    )  # fmt: skip
    assert own.status_code == 200, own.text
    where = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": own.json()["experiment_id"]}}
    info = {
        "trace_id": f"tr-{secrets.token_hex(16)}", "request_time": "2026-01-01T00:00:00Z", "state": "OK",
        "trace_location": where,
    }  # fmt: skip
    started = call(sso_stack, "POST", "/api/3.0/mlflow/traces", scene.colleague, json={"trace": {"trace_info": info}})
    assert started.status_code == 200, started.text
    location = f"mlflow-artifacts:/{scene.experiment_id}/traces/tr-{'0' * 32}/artifacts"
    retagged = call(
        sso_stack, "PATCH", f"/api/3.0/mlflow/traces/{info['trace_id']}/tags", scene.colleague,
        json={"key": "mlflow.artifactLocation", "value": location},
    )  # fmt: skip
    assert retagged.status_code == 400 and "set by the server only" in retagged.text, retagged.text
    kept = call(sso_stack, "GET", f"/api/3.0/mlflow/traces/{info['trace_id']}", scene.colleague)
    assert kept.json()["trace"]["trace_info"]["tags"]["mlflow.artifactLocation"] != location


def test_demo_data_is_off(sso_stack: MlflowStack, scene: Scene) -> None:
    """The plugin leaves MLflow's demo generator to admins; the guard refuses it before the plugin, to
    everyone (what the generator does to a user's data: test_request_guard_accounts.py)."""
    for headers in (scene.owner, scene.colleague):
        for route in ("generate", "delete"):
            answer = call(sso_stack, "POST", f"/ajax-api/3.0/mlflow/demo/{route}", headers, json={})
            assert answer.status_code == 403 and "demo data is off" in answer.text, (route, answer.text)


def test_a_tag_that_would_run_script_is_refused(sso_stack: MlflowStack, scene: Scene) -> None:
    """The owner's own run: a `javascript:` source would be a link that runs in the viewer's session
    (what it does: test_request_guard_accounts.py). The run keeps the source it has."""
    tag = {"run_id": scene.run_id, "key": "mlflow.source.name"}
    assert call(sso_stack, "POST", "/api/2.0/mlflow/runs/set-tag", scene.owner, json={**tag, "value": "train.py"}).ok
    for path in ("/api/2.0/mlflow/runs/set-tag", "/ajax-api/2.0/mlflow/runs/set-tag"):
        answer = call(sso_stack, "POST", path, scene.owner, json={**tag, "value": " JavaScript:alert(1)"})
        assert answer.status_code == 400 and "script URL" in answer.text, (path, answer.text)
    run = call(sso_stack, "GET", "/api/2.0/mlflow/runs/get", scene.owner, params={"run_id": scene.run_id}).json()
    assert {"key": "mlflow.source.name", "value": "train.py"} in run["run"]["data"]["tags"]
