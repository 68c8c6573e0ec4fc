"""docker/mlflow/iam_callers.py: which ARNs are one caller, and which are nobody."""

import json

import pytest

from stacks.iam_callers import (
    caller_key,
    principals_from_json,
    principals_from_mapping,
    principals_from_profile_parameter,
    profile_parameter,
)

ACCOUNT = "111122223333"


@pytest.mark.parametrize(
    ("arn", "key"),
    [
        (f"arn:aws:sts::{ACCOUNT}:assumed-role/Studio-alice/SageMaker", f"{ACCOUNT}:role/Studio-alice"),
        (f"arn:aws:sts::{ACCOUNT}:assumed-role/Studio-alice/other-session@x", f"{ACCOUNT}:role/Studio-alice"),
        (f"arn:aws:iam::{ACCOUNT}:role/Studio-alice", f"{ACCOUNT}:role/Studio-alice"),
        (f"arn:aws:iam::{ACCOUNT}:role/service-role/team/Studio-alice", f"{ACCOUNT}:role/Studio-alice"),
        (f"arn:aws:iam::{ACCOUNT}:user/ci-bot", f"{ACCOUNT}:user/ci-bot"),
        (f"arn:aws-cn:iam::{ACCOUNT}:user/path/ci-bot", f"{ACCOUNT}:user/ci-bot"),
        (f"arn:aws-us-gov:sts::{ACCOUNT}:assumed-role/r/s", f"{ACCOUNT}:role/r"),
    ],
)
def test_sessions_and_paths_of_one_identity_are_one_caller(arn: str, key: str) -> None:
    assert caller_key(arn) == key


@pytest.mark.parametrize(
    "arn",
    [
        "",
        f"arn:aws:iam::{ACCOUNT}:root",
        f"arn:aws:sts::{ACCOUNT}:federated-user/bob",
        f"arn:aws:iam::{ACCOUNT}:group/admins",
        f" arn:aws:iam::{ACCOUNT}:role/a",
        f"arn:aws:iam::{ACCOUNT}:role/a\n",
        f"arn:aws:iam::{ACCOUNT}:role/a,arn:aws:iam::{ACCOUNT}:role/b",
        f"arn:aws:iam::{ACCOUNT[:-1]}:role/a",
        f"arn:aws:iam::{ACCOUNT}:role//a",
        f"arn:aws:iam::{ACCOUNT}:role/",
        f"arn:aws:sts::{ACCOUNT}:assumed-role/r",
        f"arn:aws:sts::{ACCOUNT}:assumed-role/r/s/t",
        f"arn:aws:iam::{ACCOUNT}:role/r\u00e9",
        f"arn:aws:iam::{ACCOUNT}:role/{'a' * 129}",
        f"arn:aws:s3:::{ACCOUNT}-bucket",
        f"arn:aws-iso:iam::{ACCOUNT}:role/a",
        f"ARN:AWS:IAM::{ACCOUNT}:ROLE/a",
    ],
)
def test_anything_else_is_nobody(arn: str) -> None:
    with pytest.raises(ValueError, match="is not an IAM role"):
        caller_key(arn)


def test_the_setting_maps_keys_to_users_and_refuses_a_caller_with_two_users() -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/ci"
    assert principals_from_json(json.dumps({role: "ci-pipeline"})) == {f"{ACCOUNT}:role/ci": "ci-pipeline"}
    assert principals_from_json("") == {}
    with pytest.raises(ValueError, match="two users"):
        principals_from_mapping({role: "a", f"arn:aws:iam::{ACCOUNT}:role/path/ci": "b"})
    bad_values = ("[]", "{", json.dumps({role: ""}), json.dumps({role: 7}), json.dumps({role: "-x"}), '{"x": "a"}')
    for bad in bad_values:
        with pytest.raises(ValueError):
            principals_from_json(bad)


def test_a_profile_parameter_round_trips_and_malformed_ones_are_refused() -> None:
    roles = [f"arn:aws:iam::{ACCOUNT}:role/exec", f"arn:aws:iam::{ACCOUNT}:role/train"]
    text = profile_parameter("alice", roles)
    assert principals_from_profile_parameter(text) == {
        f"{ACCOUNT}:role/exec": "alice",
        f"{ACCOUNT}:role/train": "alice",
    }
    for bad in ("", "[]", '{"user": "alice"}', '{"user": "alice", "roles": [], "x": 1}', '{"user": "a", "roles": "x"}'):
        with pytest.raises(ValueError):
            principals_from_profile_parameter(bad)
