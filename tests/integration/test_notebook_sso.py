"""The lab notebook in sso mode: a Studio profile acts through its own app client's bearer tokens.

The profile's roles are tagged with its own secret, which holds a
client-credentials app client of the stack's OpenID provider (as
SageMakerStudioUserStack fills it from Cognito); the server (the session's
sso_stack, default permission NO_PERMISSIONS) knows that client as a machine
user. The notebook and the training job's stand-in each get a token with the
client-credentials grant; nothing in the notebook changes between modes.
"""

from __future__ import annotations

import pytest
import requests

from tests.integration import studio_flow
from tests.integration.conftest import SSO_COLLEAGUE, SSO_GROUP
from tests.integration.studio_flow import PROFILE, SSO

# On the worker that holds the session's sso_stack (and its moto server).
pytestmark = [pytest.mark.integration, pytest.mark.e2e, SSO_GROUP]

sso_studio_aws = studio_flow.sso_studio_aws
sso_notebook_run = studio_flow.sso_notebook_run

EXPERIMENT = f"sagemaker-studio-demo-{PROFILE}"
MODEL = f"breast-cancer-classifier-{PROFILE}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_cell_ran(sso_notebook_run):
    sso_notebook_run.assert_every_cell_ran()


def test_notebook_used_the_profiles_app_client_and_printed_no_secret(sso_notebook_run, sso_studio_aws, sso_stack):
    out = sso_notebook_run.outputs()
    assert (
        f"bearer token of app client {PROFILE!r} (secret {SSO.login_secret!r}, from tag "
        f"mlflow:credentials-secret of role {SSO.role})" in out
    )
    assert f"experiment      {EXPERIMENT}" in out
    sso_notebook_run.assert_model_served_and_removed()
    # Neither the app client's secret nor any token (JWTs start with a base64 '{"').
    assert sso_studio_aws.password not in out and sso_stack.password not in out
    assert "eyJ" not in out


def test_only_the_profiles_own_secret_was_read(sso_notebook_run):
    reads = [c for c in sso_notebook_run.calls if c["operation"] == "GetSecretValue"]
    # The notebook as the execution role, the training job's process as the training role.
    assert {c["job"] is None for c in reads} == {True, False}
    assert {c["params"]["SecretId"] for c in reads} == {SSO.login_secret}


def test_runs_and_model_belong_to_the_profiles_machine_user(sso_notebook_run, sso_stack):
    assert sso_stack.oidc is not None
    profile = sso_stack.oidc.client_credentials_token(PROFILE)
    colleague = sso_stack.oidc.client_credentials_token(SSO_COLLEAGUE)
    url = sso_stack.proxy_url

    def get(path: str, token: str, **params: str) -> requests.Response:
        return requests.get(url + path, params=params, headers=bearer(token), timeout=30)

    experiment = get("/api/2.0/mlflow/experiments/get-by-name", profile, experiment_name=EXPERIMENT).json()
    experiment_id = experiment["experiment"]["experiment_id"]
    runs = requests.post(
        url + "/api/2.0/mlflow/runs/search", json={"experiment_ids": [experiment_id]}, headers=bearer(profile),
        timeout=30,
    ).json()["runs"]  # fmt: skip
    names = {r["info"]["run_name"] for r in runs}
    assert {"local-c0.01", "local-c0.1"} <= names
    (job_run,) = [r for r in runs if "sagemaker.training_job_name" in {t["key"] for t in r["data"].get("tags", [])}]
    versions = get("/api/2.0/mlflow/model-versions/search", profile, filter=f"name='{MODEL}'").json()
    assert versions.get("model_versions")
    assert {v["run_id"] for v in versions["model_versions"]} <= {r["info"]["run_id"] for r in runs}

    # Whoever creates an experiment or a registered model gets MANAGE on it; with default
    # permission NO_PERMISSIONS nobody else has any.
    prefix = f"/api/2.0/mlflow/permissions/users/{PROFILE}"
    experiment_grant = get(f"{prefix}/experiments/{experiment_id}", profile).json()
    assert experiment_grant["experiment_permission"]["permission"] == "MANAGE"
    model_grant = get(f"{prefix}/registered-models/{MODEL}", profile).json()
    assert model_grant["registered_model_permission"]["permission"] == "MANAGE"

    # The profile reads them; another profile's app client does not.
    for token, expected in ((profile, 200), (colleague, 403)):
        for path, params in (
            ("/api/2.0/mlflow/experiments/get", {"experiment_id": experiment_id}),
            ("/api/2.0/mlflow/runs/get", {"run_id": job_run["info"]["run_id"]}),
            ("/api/2.0/mlflow/registered-models/get", {"name": MODEL}),
        ):
            response = get(path, token, **params)
            assert response.status_code == expected, (path, response.status_code, response.text[:200])
