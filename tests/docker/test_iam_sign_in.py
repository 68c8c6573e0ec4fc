"""docker/mlflow/iam_sign_in.py without a server: the principal table (SSM against moto), the refusal of
repeated caller headers, and the audit line's user.

The sign-in itself, through nginx and MLflow: tests/integration/test_iam_sign_in_accounts.py.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stacks.iam_callers import profile_parameter
from tests.docker.image_modules import image_module
from tests.docker.test_request_guard import Recorder, call
from tests.fake_aws import use_fake_aws

PATH = "/mlflow/iam-principals"
ROLE_A = "arn:aws:iam::123456789012:role/studio-alice"
ROLE_B = "arn:aws:iam::123456789012:role/service-role/studio-bob"
CI = "arn:aws:iam::123456789012:user/ci"


@pytest.fixture(scope="module")
def iam() -> Iterator[ModuleType]:
    with image_module("iam_sign_in") as module:
        yield module


@pytest.fixture
def ssm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    use_fake_aws(monkeypatch, "eu-west-1")
    with mock_aws():
        yield boto3.client("ssm")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def put(ssm: Any, name: str, value: str) -> None:
    ssm.put_parameter(Name=f"{PATH}/{name}", Value=value, Type="String", Overwrite=True)


def table(iam: ModuleType, ssm: Any, clock: Clock | None = None, static: dict[str, str] | None = None) -> Any:
    return iam.Principals(static or {}, PATH, client=lambda: ssm, **({"clock": clock} if clock else {}))


def test_every_profile_parameter_under_the_path_is_read_across_pages(iam: ModuleType, ssm: Any) -> None:
    # More than one page (GetParametersByPath returns at most 10) and nested below the path.
    for number in range(23):
        put(ssm, f"team{number % 2}/user-{number}", profile_parameter(f"user-{number}", [
            f"arn:aws:iam::123456789012:role/execution-{number}",
            f"arn:aws:iam::123456789012:role/training-{number}",
        ]))  # fmt: skip
    ssm.put_parameter(Name="/elsewhere/profile", Value=profile_parameter("intruder", [ROLE_A]), Type="String")
    principals = table(iam, ssm)
    for number in range(23):
        assert principals.user_of(f"123456789012:role/execution-{number}") == f"user-{number}"
        assert principals.user_of(f"123456789012:role/training-{number}") == f"user-{number}"
    assert principals.user_of("123456789012:role/studio-alice") is None


def test_the_static_table_and_the_parameters_are_one_table(iam: ModuleType, ssm: Any) -> None:
    put(ssm, "alice", profile_parameter("alice", [ROLE_A, ROLE_B]))
    static = iam.principals_from_json(json.dumps({CI: "ci-pipeline"}))
    principals = table(iam, ssm, static=static)
    assert principals.user_of("123456789012:user/ci") == "ci-pipeline"
    assert principals.user_of("123456789012:role/studio-alice") == "alice"
    assert principals.user_of("123456789012:role/studio-bob") == "alice"  # the role's path does not matter


def test_a_malformed_parameter_or_a_caller_mapped_twice_signs_in_as_nobody(
    iam: ModuleType, ssm: Any, caplog: pytest.LogCaptureFixture
) -> None:
    put(ssm, "alice", profile_parameter("alice", [ROLE_A]))
    put(ssm, "mallory", profile_parameter("mallory", [ROLE_A]))  # claims alice's role too
    put(ssm, "broken", '{"user": "bob", "roles": "' + ROLE_B + '"}')
    put(ssm, "carol", profile_parameter("carol", ["arn:aws:iam::123456789012:role/studio-carol"]))
    clock = Clock()
    principals = table(iam, ssm, clock)
    with caplog.at_level(logging.WARNING):
        assert principals.user_of("123456789012:role/studio-alice") is None
        assert principals.user_of("123456789012:role/studio-bob") is None
        assert principals.user_of("123456789012:role/studio-carol") == "carol"
        clock.now += iam.REFRESH_SECONDS
        principals.user_of("123456789012:role/studio-carol")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        f'IAM sign-in: SSM parameter {PATH}/broken is not {{"user": ..., "roles": [...]}}; its roles sign in as nobody',
        "IAM sign-in: 123456789012:role/studio-alice is mapped to more than one MLflow user; it signs in as nobody",
    ]  # once each, not at every read


def test_a_parameter_naming_another_user_than_its_own_name_signs_in_as_nobody(
    iam: ModuleType, ssm: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Whoever may write /mallory may not point mallory's roles at alice (or at the admin)."""
    put(ssm, "alice", profile_parameter("alice", [ROLE_A]))
    put(ssm, "mallory", profile_parameter("alice", [ROLE_B]))
    put(ssm, "team/alice", profile_parameter("alice", ["arn:aws:iam::123456789012:role/studio-carol"]))
    with caplog.at_level(logging.WARNING):
        principals = table(iam, ssm)
        assert principals.user_of("123456789012:role/studio-alice") == "alice"
        assert principals.user_of("123456789012:role/studio-bob") is None
        assert principals.user_of("123456789012:role/studio-carol") == "alice"  # nested: the last segment counts
    assert [record.getMessage() for record in caplog.records] == [
        f"IAM sign-in: SSM parameter {PATH}/mallory maps to alice, not the user it is named for; "
        "its roles sign in as nobody"
    ]


def test_parameters_are_read_again_after_a_minute_not_per_request(iam: ModuleType, ssm: Any) -> None:
    clock = Clock()
    principals = table(iam, ssm, clock)
    assert principals.user_of("123456789012:role/studio-alice") is None
    put(ssm, "alice", profile_parameter("alice", [ROLE_A]))
    clock.now += iam.REFRESH_SECONDS - 1
    assert principals.user_of("123456789012:role/studio-alice") is None
    clock.now += 1
    assert principals.user_of("123456789012:role/studio-alice") == "alice"
    ssm.delete_parameter(Name=f"{PATH}/alice")
    clock.now += iam.REFRESH_SECONDS
    assert principals.user_of("123456789012:role/studio-alice") is None


class FailingSsm:
    """An SSM client whose reads fail until told otherwise, then answer from the real (moto) one."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.failing = False

    def get_paginator(self, name: str) -> Any:
        if self.failing:
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url="https://ssm.eu-west-1.amazonaws.com/")
        return self.real.get_paginator(name)


def test_a_failed_read_keeps_the_last_table_and_logs_once(
    iam: ModuleType, ssm: Any, caplog: pytest.LogCaptureFixture
) -> None:
    put(ssm, "alice", profile_parameter("alice", [ROLE_A]))
    client, clock = FailingSsm(ssm), Clock()
    principals = iam.Principals({}, PATH, client=lambda: client, clock=clock)
    assert principals.user_of("123456789012:role/studio-alice") == "alice"
    client.failing = True
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            clock.now += iam.REFRESH_SECONDS
            assert principals.user_of("123456789012:role/studio-alice") == "alice"
        client.failing = False
        clock.now += iam.REFRESH_SECONDS
        assert principals.user_of("123456789012:role/studio-alice") == "alice"
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith(
        f"IAM sign-in: cannot read the profile parameters under {PATH} (EndpointConnectionError"
    )
    assert messages[1] == f"IAM sign-in: the profile parameters under {PATH} are read again"


class SlowSsm:
    """An SSM client whose reads wait until released."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.release = threading.Event()
        self.reading = threading.Event()

    def get_paginator(self, name: str) -> Any:
        self.reading.set()
        assert self.release.wait(30)
        return self.real.get_paginator(name)


def test_while_one_request_reads_again_the_others_use_the_table_they_have(iam: ModuleType, ssm: Any) -> None:
    put(ssm, "alice", profile_parameter("alice", [ROLE_A]))
    client, clock = SlowSsm(ssm), Clock()
    client.release.set()
    principals = iam.Principals({}, PATH, client=lambda: client, clock=clock)
    assert principals.user_of("123456789012:role/studio-alice") == "alice"
    client.release.clear()
    client.reading.clear()
    ssm.delete_parameter(Name=f"{PATH}/alice")
    clock.now += iam.REFRESH_SECONDS
    reader = threading.Thread(target=principals.user_of, args=("123456789012:role/studio-alice",))
    reader.start()
    assert client.reading.wait(30)
    assert principals.user_of("123456789012:role/studio-alice") == "alice"  # not waiting for the slow read
    client.release.set()
    reader.join(30)
    assert principals.user_of("123456789012:role/studio-alice") is None


def test_without_a_path_only_the_static_table_counts(iam: ModuleType) -> None:
    def no_client() -> Any:
        raise AssertionError("SSM must not be asked")

    principals = iam.Principals({"123456789012:user/ci": "ci"}, None, client=no_client)
    assert principals.user_of("123456789012:user/ci") == "ci"


@pytest.mark.parametrize("count", [2, 3])
def test_more_than_one_caller_header_is_refused_before_the_app(iam: ModuleType, count: int) -> None:
    inner = Recorder()
    headers = [(b"X-Mlflow-Iam-Caller", ROLE_A.encode())] * (count - 1) + [(b"x-mlflow-iam-caller", CI.encode())]
    status, body = call(iam.OneCaller(inner), "GET", "/api/2.0/mlflow/experiments/search", headers=headers)
    assert status == 403
    assert json.loads(body) == {
        "error_code": "PERMISSION_DENIED",
        "message": f"a request carries one X-Mlflow-Iam-Caller, this one {count}",
    }
    assert inner.calls == []
    assert call(iam.OneCaller(inner), "GET", "/", headers=headers[-1:]) == (200, b"ok")
    assert call(iam.OneCaller(inner), "GET", "/") == (200, b"ok")


def test_the_audit_line_names_the_callers_user_and_arn(iam: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(iam, "PRINCIPALS", iam.Principals({"123456789012:role/studio-alice": "alice"}, None))
    with image_module("audit_log") as audit:
        for arns, user in [([ROLE_A], "alice"), ([CI], None), (["not an arn"], None), ([CI, ROLE_A], None)]:
            lines: list[str] = []
            headers = [(b"x-mlflow-iam-caller", arn.encode()) for arn in arns]
            app = audit.AuditLog(Recorder(), "accounts", lines.append, iam_user=iam.audit_user)
            call(app, "POST", "/api/2.0/mlflow/runs/delete", b'{"run_id": "r"}', headers=headers)
            (line,) = map(json.loads, lines)
            assert (line["user"], line["iam_caller"]) == (user, ", ".join(arns))
        # Without IAM sign-in the header is nobody's word: not read, not logged.
        lines = []
        app = audit.AuditLog(Recorder(), "accounts", lines.append)
        call(app, "POST", "/api/2.0/mlflow/runs/delete", b"{}", headers=[(b"x-mlflow-iam-caller", ROLE_A.encode())])
        (line,) = map(json.loads, lines)
        assert line["user"] is None and "iam_caller" not in line
