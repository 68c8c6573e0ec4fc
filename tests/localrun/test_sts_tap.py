"""The STS relay in front of moto: AssumeRole's keys reach the IAM gateway's table, nothing else does."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest

from localrun.iam_gateway import CredentialTable
from localrun.services import MotoServer
from localrun.sts_tap import StsTap, assumed_session


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(log_dir=tmp_path_factory.mktemp("moto") / "logs")
    server.start()
    yield server
    server.stop()


def sts_through(tap: StsTap, keys: dict[str, str] | None = None):  # noqa: ANN201 - a boto3 client
    keys = keys or {"AccessKeyId": "testing", "SecretAccessKey": "testing", "SessionToken": "testing"}
    return boto3.client(
        "sts", endpoint_url=tap.url, region_name="eu-central-1", aws_access_key_id=keys["AccessKeyId"],
        aws_secret_access_key=keys["SecretAccessKey"], aws_session_token=keys["SessionToken"],
    )  # fmt: skip


def test_assume_roles_keys_are_registered_as_the_session_moto_reports(moto: MotoServer) -> None:
    role = moto.client("iam").create_role(RoleName="job-role", AssumeRolePolicyDocument=json.dumps({}))["Role"]
    table = CredentialTable()
    with StsTap(upstream=moto.endpoint_url, credentials=table) as tap:
        answer = sts_through(tap).assume_role(RoleArn=role["Arn"], RoleSessionName="SageMaker")
        keys = answer["Credentials"]
        # The session's own calls pass through unchanged: moto knows it, and nothing new is registered.
        caller = sts_through(tap, keys).get_caller_identity()["Arn"]
    registered = table.get(keys["AccessKeyId"])
    assert registered is not None
    assert registered.arn == answer["AssumedRoleUser"]["Arn"] == caller
    assert registered.arn == "arn:aws:sts::123456789012:assumed-role/job-role/SageMaker"
    assert (registered.secret_access_key, registered.session_token) == (keys["SecretAccessKey"], keys["SessionToken"])


def test_other_answers_register_nothing() -> None:
    assert assumed_session(b"<GetCallerIdentityResponse/>") is None
    assert assumed_session(b"not xml") is None
    assert assumed_session(b"") is None
