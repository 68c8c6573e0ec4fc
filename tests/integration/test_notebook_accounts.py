"""The lab notebook in accounts mode: a Studio profile with its own MLflow user runs it end to end.

The profile's login is a generated secret its roles are tagged with; its
MLflow user was made by the account provisioner (the stack's custom resource
handler) as the admin; the server runs MLflow's auth app with default
permission NO_PERMISSIONS (the session's accounts_stack). Nothing in the
notebook changes between modes.
"""

from __future__ import annotations

import pytest
import requests

from tests.integration import studio_flow
from tests.integration.mlflow_users import ACCOUNTS_GROUP, Account, Accounts
from tests.integration.studio_flow import ACCOUNTS, PROFILE

# On the worker that holds the session's accounts_stack (and its moto server).
pytestmark = [pytest.mark.integration, pytest.mark.e2e, ACCOUNTS_GROUP]

accounts_studio_aws = studio_flow.accounts_studio_aws
accounts_notebook_run = studio_flow.accounts_notebook_run

EXPERIMENT = f"sagemaker-studio-demo-{PROFILE}"
MODEL = f"breast-cancer-classifier-{PROFILE}"


def test_every_cell_ran(accounts_notebook_run):
    accounts_notebook_run.assert_every_cell_ran()


def test_notebook_used_the_profiles_own_login(accounts_notebook_run, accounts_studio_aws, accounts_stack):
    out = accounts_notebook_run.outputs()
    assert (
        f"user {PROFILE!r} (secret {ACCOUNTS.login_secret!r}, from tag mlflow:credentials-secret of role "
        f"{ACCOUNTS.role})" in out
    )
    assert f"experiment      {EXPERIMENT}" in out
    accounts_notebook_run.assert_model_served_and_removed()
    assert accounts_studio_aws.password not in out and accounts_stack.password not in out


def test_no_process_read_the_admins_secret(accounts_notebook_run):
    reads = [c for c in accounts_notebook_run.calls if c["operation"] == "GetSecretValue"]
    # The notebook as the execution role, the training job's process as the training role.
    assert {c["job"] is None for c in reads} == {True, False}
    assert {c["params"]["SecretId"] for c in reads} == {ACCOUNTS.login_secret}


def test_runs_and_model_belong_to_the_profile(
    accounts_notebook_run, accounts_studio_aws, accounts: Accounts, accounts_stack
):
    experiment_id, job_run, other = studio_flow.profiles_own_work(accounts, PROFILE, "colleague")

    # The profile's login reads them; the colleague does not.
    profile = Account(PROFILE, accounts_studio_aws.password)
    for who, expected in ((profile, 200), (other, 403)):
        for path, params in (
            ("/api/2.0/mlflow/experiments/get", {"experiment_id": experiment_id}),
            ("/api/2.0/mlflow/runs/get", {"run_id": job_run.info.run_id}),
            ("/api/2.0/mlflow/registered-models/get", {"name": MODEL}),
        ):
            response = requests.get(accounts_stack.proxy_url + path, params=params, auth=who.auth, timeout=30)
            assert response.status_code == expected, (who.username, path, response.text[:200])
