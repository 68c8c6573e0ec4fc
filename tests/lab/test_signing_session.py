"""signing_session: MLflow's own SigV4 path, one boto3 session for every signed request."""

from __future__ import annotations

import logging

import boto3
import pytest
import requests
import requests_auth_aws_sigv4
import signing_session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from mlflow.utils.rest_utils import MlflowHostCreds, http_request
from mlflow_setup import CURRENT_USER_PATH, configure_mlflow

from tests.lab.conftest import REGION
from tests.lab.signing_stub import SignedRequests, signing_stub
from tests.lab.test_mlflow_setup import deploy
from tests.lab.test_mlflow_setup_iam import LOGIN_TAG, ROLE, as_role, with_iam_output


def sessions_made(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every boto3 session built from now on (MLflow's stock path builds one per request)."""
    made: list[int] = []
    original = boto3.session.Session.__init__

    def counting(self: boto3.session.Session, *args: object, **kwargs: object) -> None:
        made.append(1)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(boto3.session.Session, "__init__", counting)
    return made


def signed_get(url: str) -> int:
    """MLflow's own client request with MLFLOW_TRACKING_AWS_SIGV4 (http_request builds the signer)."""
    response = http_request(MlflowHostCreds(url, aws_sigv4=True), CURRENT_USER_PATH, "GET", max_retries=0)
    return response.status_code


def test_the_reviewed_sources_are_the_pinned_ones():
    """Fails when MLflow or requests-auth-aws-sigv4 moves: review the new source, then update REVIEWED."""
    assert signing_session.changed() == []


def test_mlflow_signs_every_request_with_the_checked_session(aws, monkeypatch):
    alice = as_role(aws, ROLE, LOGIN_TAG)
    keys = alice.get_credentials()
    assert keys is not None
    with signing_stub(SignedRequests(keys.get_frozen_credentials(), REGION)) as api:
        deploy(aws, template=with_iam_output(api.url))
        configure_mlflow(session=alice, environ={})
        # The process's default chain has other keys (moto's); the stub accepts only alice's.
        made = sessions_made(monkeypatch)
        assert [signed_get(api.url) for _ in range(3)] == [200, 200, 200]
    assert made == []
    assert len(api.seen) == 4  # configure_mlflow's check, then the three
    assert {seen["x-amz-security-token"] for seen in api.seen} == {keys.get_frozen_credentials().token}


def test_without_it_mlflow_builds_a_session_per_request(aws, monkeypatch):
    """What reuse() saves: the stock signer resolves the default chain again for every request."""
    keys = aws.get_credentials()
    assert keys is not None
    with signing_stub(SignedRequests(keys.get_frozen_credentials(), REGION)) as api:
        made = sessions_made(monkeypatch)
        assert [signed_get(api.url) for _ in range(3)] == [200, 200, 200]
    assert len(made) == 3


def test_each_signer_reads_the_sessions_current_keys(aws):
    """Keys botocore refreshed (or replaced) are the next request's keys: nothing is copied once."""
    session = boto3.session.Session(aws_access_key_id="AKIAOLD", aws_secret_access_key="old", region_name=REGION)
    assert signing_session.reuse(session, REGION)
    assert requests_auth_aws_sigv4.AWSSigV4("execute-api").aws_access_key_id == "AKIAOLD"
    session._session.set_credentials("AKIANEW", "new", "token-new")
    signer = requests_auth_aws_sigv4.AWSSigV4("execute-api")
    assert (signer.aws_access_key_id, signer.aws_secret_access_key, signer.aws_session_token) == (
        "AKIANEW",
        "new",
        "token-new",
    )
    assert signer.region == REGION


def test_explicit_keys_and_region_still_win(aws):
    assert signing_session.reuse(boto3.session.Session(region_name=REGION), REGION)
    signer = requests_auth_aws_sigv4.AWSSigV4(
        "execute-api", aws_access_key_id="AKIAMINE", aws_secret_access_key="mine", region="us-east-2"
    )
    assert (signer.aws_access_key_id, signer.region) == ("AKIAMINE", "us-east-2")


def test_a_second_call_replaces_the_first_session(aws):
    first = boto3.session.Session(aws_access_key_id="AKIAFIRST", aws_secret_access_key="1", region_name=REGION)
    second = boto3.session.Session(aws_access_key_id="AKIASECOND", aws_secret_access_key="2", region_name=REGION)
    assert signing_session.reuse(first, REGION) and signing_session.reuse(second, REGION)
    assert requests_auth_aws_sigv4.AWSSigV4("execute-api").aws_access_key_id == "AKIASECOND"
    assert requests_auth_aws_sigv4.AWSSigV4.__mro__[1] is signing_session.stock_signer()


@pytest.mark.parametrize("name", sorted(signing_session.REVIEWED))
def test_unreviewed_source_leaves_mlflows_own_signer(aws, monkeypatch, caplog, name):
    monkeypatch.setitem(signing_session.REVIEWED, name, "0" * 64)
    with caplog.at_level(logging.WARNING, logger=signing_session.__name__):
        assert not signing_session.reuse(boto3.session.Session(region_name=REGION), REGION)
    assert requests_auth_aws_sigv4.AWSSigV4 is signing_session.stock_signer()
    assert f"{name} is not the reviewed source" in caplog.text


def test_a_query_goes_out_as_sigv4_encodes_it(aws):
    """Both values of a repeated name, and a space as %20 rather than requests' `+`, signed as sent."""
    keys = aws.get_credentials()
    assert keys is not None
    params = {"filter": "name LIKE 'a b%'", "order_by": ["name ASC", "version DESC"]}
    with signing_stub(SignedRequests(keys.get_frozen_credentials(), REGION)) as api:
        stock = http_request(MlflowHostCreds(api.url, aws_sigv4=True), "/search", "GET", max_retries=0, params=params)
        assert signing_session.reuse(aws, REGION)
        ours = http_request(MlflowHostCreds(api.url, aws_sigv4=True), "/search", "GET", max_retries=0, params=params)
    assert (stock.status_code, ours.status_code) == (403, 200)  # the stock signer signs one order_by
    sent = api.seen[-1]["path"]
    assert sent == "/search?filter=name%20LIKE%20%27a%20b%25%27&order_by=name%20ASC&order_by=version%20DESC"


def test_an_open_file_body_is_hashed_and_left_where_it_was(aws, tmp_path):
    """MLflow streams a proxied upload from the open file; the stock signer fails on it (upstream 15051)."""
    path = tmp_path / "body.bin"
    path.write_bytes(b"0123456789")
    assert signing_session.reuse(aws, REGION)
    with open(path, "rb") as body:
        body.seek(2)
        signed = requests_auth_aws_sigv4.AWSSigV4("execute-api")(
            requests.Request("PUT", "https://api.example.invalid/a%20b/c", data=body).prepare()
        )
        assert body.tell() == 2
    copy = AWSRequest(method="PUT", url="https://api.example.invalid/a%20b/c", data=b"23456789")
    copy.context["timestamp"] = signed.headers["X-Amz-Date"]
    keys = aws.get_credentials()
    assert keys is not None
    signer = SigV4Auth(keys.get_frozen_credentials(), "execute-api", REGION)
    names = signed.headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    for name in names:
        if name != "host":
            copy.headers[name] = signed.headers[name]
    expected = signer.signature(signer.string_to_sign(copy, signer.canonical_request(copy)), copy)
    assert signed.headers["Authorization"].endswith(f"Signature={expected}")
    assert "/a%2520b/c\n" in signer.canonical_request(copy)  # execute-api's path: encoded twice
