"""The lab notebook with IAM sign-in (issue 20): the profile's roles are its login, no secret anywhere.

The deployment (accounts mode, against the session's accounts_stack) publishes the IAM API's
URL, so `configure_mlflow` signs every request with the kernel's role credentials, and the
training job with its training role's; the profile's parameter maps both roles to the
profile's MLflow user. The IAM API is a local stand-in verifying real SigV4 with the keys
moto's STS handed out (studio_flow.iam_studio_aws). Nothing in the notebook changes.
"""

from __future__ import annotations

import re

import pytest
import requests

from tests.integration import studio_flow
from tests.integration.mlflow_users import ACCOUNTS_GROUP, Accounts
from tests.integration.sigv4 import env_signer
from tests.integration.studio_flow import IAM, IAM_PROFILE, StudioAws
from tests.integration.test_audit_trail import audit_lines

# On the worker that holds the session's accounts_stack (and its moto server).
pytestmark = [pytest.mark.integration, pytest.mark.e2e, ACCOUNTS_GROUP]

iam_studio_aws = studio_flow.iam_studio_aws
iam_notebook_run = studio_flow.iam_notebook_run

EXPERIMENT = f"sagemaker-studio-demo-{IAM_PROFILE}"
LOGINS = {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"}


def session_arn(aws: StudioAws, role: str) -> str:
    """The ARN API Gateway reports for a role's session (both sessions are named SageMaker here)."""
    return f"arn:aws:sts::{aws.account}:assumed-role/{role}/SageMaker"


def test_every_cell_ran(iam_notebook_run):
    iam_notebook_run.assert_every_cell_ran()


def test_notebook_signed_in_with_its_role(iam_notebook_run, iam_studio_aws, accounts_stack):
    out = iam_notebook_run.outputs()
    assert (
        f"MLflow tracking URI {iam_studio_aws.iam_tracking_url} (from stack HttpGatewayStack output IamTrackingUrl), "
        f"IAM sign-in as {session_arn(iam_studio_aws, IAM.role)}: MLflow user {IAM_PROFILE!r}, no secret read"
    ) in out
    assert f"experiment      {EXPERIMENT}" in out
    iam_notebook_run.assert_model_served_and_removed()
    assert iam_studio_aws.password not in out and accounts_stack.password not in out


def test_no_process_read_a_secret_or_held_a_login(iam_notebook_run):
    calls = iam_notebook_run.calls
    assert [c for c in calls if c["endpoint_prefix"] == "secretsmanager"] == []
    # The kernel (as the execution role) and the job's process (as the training role) were both recorded.
    assert {c["job"] is None for c in calls if c["operation"] == "GetCallerIdentity"} == {True, False}
    assert not [c for c in calls if LOGINS & set(c["mlflow_env"])]
    # What each process held when it ended: the kernel and the job both signed (and held no login).
    exits = iam_notebook_run.exits
    assert not [e for e in exits if LOGINS & set(e["mlflow_env"])]
    signing = {e["job"] is None for e in exits if "MLFLOW_TRACKING_AWS_SIGV4" in e["mlflow_env"]}
    assert signing == {True, False}


def test_runs_model_and_artifacts_belong_to_the_profile(
    iam_notebook_run, iam_studio_aws, accounts: Accounts, accounts_stack
):
    _, job_run, other = studio_flow.profiles_own_work(accounts, IAM_PROFILE, "iam-colleague")

    # MLflow's run user_id is whatever the client says; the audit trail is the server's word.
    execution, training = session_arn(iam_studio_aws, IAM.role), session_arn(iam_studio_aws, IAM.training_role)
    lines = [line for line in audit_lines(accounts_stack) if line.get("iam_caller") in (execution, training)]
    assert {line["user"] for line in lines} == {IAM_PROFILE}

    def routes(caller: str, pattern: str) -> list[str]:
        return [line["route"] for line in lines if line["iam_caller"] == caller and re.search(pattern, line["route"])]

    for caller in (execution, training):  # notebook and local runs; the job's run
        assert routes(caller, r"/runs/create$"), caller
        assert routes(caller, r"/logged-models$|/logged-models/create$"), caller
        assert routes(caller, r"mpu/create|presigned"), caller  # its artifacts, uploaded through presigned URLs
    assert routes(execution, r"/registered-models/create$")

    # The job run's artifacts: the profile's role lists them over the IAM API, the colleague may not.
    signed = env_signer(iam_studio_aws.env())
    path = "/api/2.0/mlflow/artifacts/list"
    params = {"run_id": job_run.info.run_id}
    mine = requests.get(iam_studio_aws.iam_tracking_url + path, params=params, auth=signed, timeout=30)
    assert mine.status_code == 200, mine.text[:200]
    theirs = requests.get(accounts_stack.proxy_url + path, params=params, auth=other.auth, timeout=30)
    assert theirs.status_code == 403, theirs.text[:200]


def test_the_profiles_requests_came_through_the_iam_api(iam_notebook_run, accounts_stack):
    """nginx logs the user MLflow named and the API's request id: every one of the profile's came signed."""
    profile_lines = [
        line for line in accounts_stack.nginx_log.read_text().splitlines() if f" - {IAM_PROFILE} [" in line
    ]
    assert len(profile_lines) > 20
    # The last field is the API's request id, which only the IAM API's stand-in sets here.
    unsigned = [line for line in profile_lines if line.endswith('"-"')]
    assert unsigned == []
