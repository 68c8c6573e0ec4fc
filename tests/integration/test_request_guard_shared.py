"""shared mode: the same guard (one user, so no permission to get around, but the server's S3
credentials must still serve only the locations it assigns), and MLflow 3's surfaces that stay off."""

from __future__ import annotations

import secrets

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.genai.scorers import scorer
from mlflow.tracking import MlflowClient

from localrun.stack import MlflowStack

pytestmark = pytest.mark.integration


def post(stack: MlflowStack, path: str, body: dict) -> requests.Response:
    return requests.post(stack.proxy_url + path, json=body, auth=(stack.username, stack.password), timeout=30)


def test_locations_sources_spellings_and_single_url_presigned_routes(mlflow_stack: MlflowStack) -> None:
    planted = post(
        mlflow_stack, "/api/2.0/mlflow/experiments/create",
        {"name": f"planted-{secrets.token_hex(3)}", "artifact_location": "s3://another-bucket/anywhere"},
    )  # fmt: skip
    assert planted.status_code == 400 and "assigned by the server" in planted.text
    experiment_id = post(
        mlflow_stack, "/api/2.0/mlflow/experiments/create", {"name": f"e-{secrets.token_hex(3)}"}
    ).json()["experiment_id"]
    run_id = post(mlflow_stack, "/api/2.0/mlflow/runs/create", {"experiment_id": experiment_id}).json()["run"]["info"][
        "run_id"
    ]
    model = f"m-{secrets.token_hex(3)}"
    assert post(mlflow_stack, "/api/2.0/mlflow/registered-models/create", {"name": model}).ok
    for source in (
        "s3://another-bucket/model",
        f"{mlflow_stack.artifacts_destination}/{experiment_id}/{run_id}/artifacts",
        "file:///etc",
    ):
        refused = post(
            mlflow_stack, "/api/2.0/mlflow/model-versions/create", {"name": model, "source": source, "run_id": run_id}
        )
        assert refused.status_code == 400, (source, refused.text)
    spelled = post(mlflow_stack, "/api/2.0/mlflow/runs/search", {"experiment_ids": [f"0{experiment_id}"]})
    assert spelled.status_code == 400
    closed = post(mlflow_stack, "/api/2.0/mlflow/artifacts/presigned-upload-url", {"run_id": run_id, "path": "x"})
    assert closed.status_code == 404


def test_custom_scorers_are_refused(client_env: dict[str, str]) -> None:
    """A @scorer carries code the server would exec(); MLFLOW_SERVER_ENABLE_CUSTOM_SCORERS stays off."""
    experiment_id = MlflowClient().create_experiment(f"scorers-{secrets.token_hex(3)}")

    @scorer
    def always_yes(outputs: object) -> bool:
        return True

    with pytest.raises(MlflowException, match="Custom scorer registration"):
        always_yes.register(experiment_id=experiment_id)
    listed = requests.get(
        f"{client_env['MLFLOW_TRACKING_URI']}/api/3.0/mlflow/scorers/list",
        params={"experiment_id": experiment_id},
        auth=(client_env["MLFLOW_TRACKING_USERNAME"], client_env["MLFLOW_TRACKING_PASSWORD"]),
        timeout=30,
    )
    assert listed.ok and listed.json().get("scorers", []) == [], listed.text
    assert mlflow.get_tracking_uri() == client_env["MLFLOW_TRACKING_URI"]


def test_mlflows_client_is_told_why_a_script_url_tag_is_refused(client_env: dict[str, str]) -> None:
    """A `javascript:` source would be a link that runs in the viewer's session (test_request_guard_accounts.py);
    MLflow's client gets the guard's reason, and its run keeps the source it had."""
    client = MlflowClient()
    run = client.create_run(
        client.create_experiment(f"links-{secrets.token_hex(3)}"), tags={"mlflow.source.name": "a.py"}
    )
    with pytest.raises(MlflowException, match="starts with a script URL"):
        client.set_tag(run.info.run_id, "mlflow.source.name", "javascript:alert(document.cookie)")
    assert client.get_run(run.info.run_id).data.tags["mlflow.source.name"] == "a.py"


def test_the_ai_gateway_is_off(mlflow_stack: MlflowStack) -> None:
    auth = (mlflow_stack.username, mlflow_stack.password)
    info = requests.get(f"{mlflow_stack.proxy_url}/api/3.0/mlflow/server-info", auth=auth, timeout=30)
    assert info.ok and info.json()["features_enabled"]["gateway"] is False, info.text
    secret = requests.post(
        f"{mlflow_stack.proxy_url}/api/3.0/mlflow/gateway/secrets/create",
        json={"secret_name": "openai", "secret_value": {"api_key": "sk-not-a-key"}, "provider": "openai"},
        auth=auth, timeout=30,
    )  # fmt: skip
    assert secret.status_code == 501, (secret.status_code, secret.text[:200])
    assert "AI Gateway feature is disabled" in secret.text


def test_the_assistant_is_not_offered(mlflow_stack: MlflowStack) -> None:
    """MLflow's assistant trusts callers on loopback, and nginx reaches MLflow from loopback."""
    auth = (mlflow_stack.username, mlflow_stack.password)
    for method, path in (("PUT", "/config"), ("POST", "/message"), ("GET", "/providers")):
        response = requests.request(
            method, f"{mlflow_stack.proxy_url}/ajax-api/3.0/mlflow/assistant{path}", json={},
            headers={"X-Forwarded-For": "127.0.0.1"}, auth=auth, timeout=30,
        )  # fmt: skip
        assert response.status_code == 404 and "not offered" in response.text, (path, response.text[:200])


def test_demo_data_stays_on_where_one_login_owns_everything(mlflow_stack: MlflowStack) -> None:
    """The guard leaves MLflow's demo routes to the one user (accounts and sso refuse them).

    An empty feature list runs no generator, so the shared stack gets no demo experiment.
    """
    answer = post(mlflow_stack, "/ajax-api/3.0/mlflow/demo/generate", {"features": []})
    assert answer.status_code == 200, answer.text[:200]
    assert answer.json()["features_generated"] == []
    demo = requests.get(
        mlflow_stack.proxy_url + "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "MLflow Demo"},
        auth=(mlflow_stack.username, mlflow_stack.password), timeout=30,
    )  # fmt: skip
    assert demo.status_code == 404, demo.text[:200]
