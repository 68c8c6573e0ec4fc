"""configure_mlflow() with IAM sign-in: the role is the login, no secret is read, MLflow signs its requests."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import boto3
import mlflow_setup
import pytest
from mlflow_setup import MlflowSetupError, configure_mlflow

from tests.lab.conftest import REGION
from tests.lab.signing_stub import SignedRequests, signing_stub
from tests.lab.test_mlflow_setup import PASSWORD, SECRET_NAME, STACK_TEMPLATE, URL, as_role, deploy

ROLE = "alice-studio"
LOGIN_TAG = {"mlflow:credentials-secret": SECRET_NAME}
# What an earlier password sign-in in the same kernel left behind.
LEFTOVERS = {
    "MLFLOW_TRACKING_USERNAME": "mlflow",
    "MLFLOW_TRACKING_PASSWORD": PASSWORD,
    "MLFLOW_TRACKING_TOKEN": "old-token",
    "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": str(5 * 1024 * 1024),
}


def with_iam_output(iam_url: str) -> dict:
    """The gateway stack of a deployment with IAM sign-in: both URLs as outputs."""
    return {**STACK_TEMPLATE, "Outputs": {**STACK_TEMPLATE["Outputs"], "IamTrackingUrl": {"Value": iam_url + "/"}}}


def secret_reads(session: boto3.session.Session) -> list[str]:
    """Every Secrets Manager call made through `session` from now on, by operation name."""
    calls: list[str] = []
    session.events.register("before-call.secrets-manager.*", lambda model, **_: calls.append(model.name))
    return calls


@pytest.fixture
def alice(aws: boto3.session.Session) -> boto3.session.Session:
    return as_role(aws, ROLE, LOGIN_TAG)


@pytest.fixture
def api(alice: boto3.session.Session) -> Iterator[SignedRequests]:
    """The IAM API, checking signatures against the role session's credentials."""
    credentials = alice.get_credentials()
    assert credentials is not None
    with signing_stub(SignedRequests(credentials.get_frozen_credentials(), REGION)) as answers:
        yield answers


def test_signs_in_as_the_role_without_reading_the_secret(aws, alice, api, capsys):
    deploy(aws, template=with_iam_output(api.url))
    reads = secret_reads(alice)
    env = dict(LEFTOVERS)
    conn = configure_mlflow(session=alice, environ=env)
    print(conn, repr(conn))
    assert reads == []
    assert env == {
        "MLFLOW_TRACKING_URI": api.url,
        "MLFLOW_TRACKING_AWS_SIGV4": "true",
        "AWS_DEFAULT_REGION": REGION,
        **mlflow_setup.artifact_transfer_settings(signed=True),
    }
    assert (conn.username, conn.password, conn.token, conn.secret_name) == ("alice", "", "", "")
    assert re.fullmatch(rf"arn:aws:sts::\d{{12}}:assumed-role/{ROLE}/SageMaker", conn.iam_caller)
    assert conn.url_source == "stack HttpGatewayStack output IamTrackingUrl"
    # One request, signed with the role's credentials for execute-api in this region (the stub checked it).
    assert [seen["path"] for seen in api.seen] == [mlflow_setup.CURRENT_USER_PATH]
    assert "Authorization" in api.seen[0] and "x-amz-security-token" in api.seen[0]
    out = capsys.readouterr().out
    assert f"IAM sign-in as {conn.iam_caller}: MLflow user 'alice', no secret read" in out and PASSWORD not in out


def test_signed_uploads_go_presigned_from_one_byte():
    """A client that signs cannot stream a file body to the proxy; every non-empty one takes presigned URLs."""
    signed = mlflow_setup.artifact_transfer_settings(signed=True)
    assert signed["MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD"] == "true"
    assert signed["MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE"] == "1"
    unsigned = mlflow_setup.artifact_transfer_settings()
    assert {k: v for k, v in signed.items() if unsigned[k] != v} == {"MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": "1"}


def test_the_ssm_parameter_beside_the_tracking_url_names_it(aws, alice, api):
    deploy(aws, template={"Resources": STACK_TEMPLATE["Resources"]})  # no outputs: parameters only
    aws.client("ssm").put_parameter(Name="/mlflow/iam-tracking-url", Value=api.url, Type="String")
    reads = secret_reads(alice)
    env: dict[str, str] = {}
    conn = configure_mlflow(session=alice, tracking_url_parameter="/mlflow/tracking-url", environ=env)
    assert (env["MLFLOW_TRACKING_URI"], env["MLFLOW_TRACKING_AWS_SIGV4"]) == (api.url, "true")
    assert conn.url_source == "SSM parameter /mlflow/iam-tracking-url" and reads == []


def test_without_an_iam_url_the_password_as_before(aws, alice):
    """A deployment without IAM sign-in (shared mode, or switched off): the secret, and no signing left on."""
    deploy(aws)
    reads = secret_reads(alice)
    env = {"MLFLOW_TRACKING_AWS_SIGV4": "true"}
    conn = configure_mlflow(session=alice, tracking_url_parameter="/mlflow/tracking-url", environ=env)
    assert reads == ["GetSecretValue"]  # what the IAM tests see none of
    assert (env["MLFLOW_TRACKING_URI"], env["MLFLOW_TRACKING_PASSWORD"], conn.iam_caller) == (URL, PASSWORD, "")
    assert "MLFLOW_TRACKING_AWS_SIGV4" not in env


@pytest.mark.parametrize("ask", [{"iam_sign_in": False}, {"secret_name": SECRET_NAME}], ids=["switched-off", "secret"])
def test_a_password_can_still_be_asked_for(aws, alice, ask):
    deploy(aws, template=with_iam_output("https://iam.example.invalid"))
    env: dict[str, str] = {}
    conn = configure_mlflow(session=alice, environ=env, **ask)
    assert (env["MLFLOW_TRACKING_URI"], env["MLFLOW_TRACKING_PASSWORD"], conn.iam_caller) == (URL, PASSWORD, "")


def test_requiring_iam_sign_in_where_there_is_none_says_so(aws, alice):
    deploy(aws)
    with pytest.raises(MlflowSetupError) as info:
        configure_mlflow(session=alice, iam_sign_in=True, environ={})
    text = str(info.value)
    assert "no IAM sign-in URL (stack HttpGatewayStack output IamTrackingUrl is missing)" in text
    assert "auth_mode=accounts" in text and "\n" not in text
    with pytest.raises(MlflowSetupError, match="leave secret_name out"):
        configure_mlflow(session=alice, iam_sign_in=True, secret_name=SECRET_NAME, environ={})


def test_a_refused_role_is_named_and_nothing_is_set(aws, alice, api):
    """The server's 403 names the ARN it could not map; the environment stays as it was."""
    deploy(aws, template=with_iam_output(api.url))
    refusal = {"error_code": "PERMISSION_DENIED", "message": "arn:aws:iam::x:role/y maps to no user"}
    api.status, api.body = 403, json.dumps(refusal)
    env = dict(LEFTOVERS)
    with pytest.raises(MlflowSetupError) as info:
        configure_mlflow(session=alice, environ=env)
    assert "refused IAM sign-in (HTTP 403:" in str(info.value) and "maps to no user" in str(info.value)
    assert env == LEFTOVERS


def test_a_signature_from_other_credentials_is_refused(aws, api):
    """The stub checks signatures for real: the account's own credentials are not the role's."""
    deploy(aws, template=with_iam_output(api.url))
    with pytest.raises(MlflowSetupError, match=r"HTTP 403: \{\"message\": \"Forbidden\"\}"):
        configure_mlflow(session=aws, environ={})


def test_iam_names_match_the_stacks_and_the_pinned_signer():
    from stacks import names

    assert mlflow_setup.IAM_TRACKING_URL_OUTPUT_KEY == names.OUTPUT_IAM_TRACKING_URL
    assert mlflow_setup.IAM_TRACKING_URL_PARAMETER == names.SSM_IAM_TRACKING_URL
    pins = Path(__file__).parents[2].joinpath("requirements-dev.txt").read_text().splitlines()
    assert mlflow_setup.SIGV4_SIGNER_REQUIREMENT in pins


def test_what_the_signer_signs_differently_from_sigv4(alice, api):
    """Known limits (docs/studio.md) of requests-auth-aws-sigv4 0.7: it keeps one value per query key, and it
    encodes the path once where SigV4 for execute-api encodes it twice, so a GET with a repeated query key
    (search_registered_models with two order_by keys) or a percent-escaped path (an artifact name with a
    space) fails the signature check."""
    import requests
    from requests_auth_aws_sigv4 import AWSSigV4

    def status(path: str, params: dict[str, object]) -> int:
        signer = AWSSigV4("execute-api", session=alice, region=REGION)
        return requests.get(api.url + path, params=params, auth=signer, timeout=30).status_code

    presigned = "/api/2.0/mlflow-artifacts/presigned/1/run/artifacts/data"
    assert status(presigned + "/report.txt", {"filter": "name = 'a b'", "max_results": 5}) == 200
    assert status(presigned + "/report.txt", {"order_by": ["name", "last_updated_timestamp DESC"]}) == 403
    assert status(presigned + "/my report.txt", {}) == 403
