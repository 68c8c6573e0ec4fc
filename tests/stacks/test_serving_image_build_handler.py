"""The deploy-time build custom resource's handler, against CodeBuild's API shapes (botocore Stubber)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from types import ModuleType

import boto3
import pytest
from botocore.stub import Stubber

from stacks.components.function_code import function_dir

PROJECT = "mlflow-pyfunc-image-build"
BUILD_ID = f"{PROJECT}:0b4c7a52-8d6e-4f3a-9c1b-2e5d6f7a8b9c"


@pytest.fixture()
def handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, Stubber]]:
    path = function_dir("serving_image_build") / "index.py"
    spec = importlib.util.spec_from_file_location("serving_image_build_handler", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    client = boto3.client("codebuild", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    monkeypatch.setattr(module, "codebuild", lambda: client)
    with Stubber(client) as stubber:
        yield module, stubber
        stubber.assert_no_pending_responses()


def event(request_type: str, version: str = "3.17.2", **extra: object) -> dict:
    return {
        "RequestType": request_type,
        "ResourceProperties": {"ServiceToken": "arn:x", "ProjectName": PROJECT, "MlflowVersion": version},
        **extra,
    }


def build(status: str, phases: list[dict] | None = None) -> dict:
    return {
        "id": BUILD_ID,
        "buildStatus": status,
        "phases": phases or [],
        "logs": {"deepLink": "https://console.aws.amazon.com/cloudwatch/home#logEvent:group=x"},
    }


@pytest.mark.parametrize("request_type", ["Create", "Update"])
def test_create_and_update_start_a_build(handler, request_type: str) -> None:
    module, stubber = handler
    stubber.add_response("start_build", {"build": build("IN_PROGRESS")}, {"projectName": PROJECT})
    result = module.on_event(event(request_type, "3.18.0", PhysicalResourceId=f"{PROJECT}:3.17.2"))
    assert result == {"PhysicalResourceId": f"{PROJECT}:3.18.0", "Data": {"BuildId": BUILD_ID}}


def test_delete_keeps_the_image_and_starts_nothing(handler) -> None:
    module, _ = handler  # the stubber fails on any call
    physical = f"{PROJECT}:3.17.2"
    assert module.on_event(event("Delete", PhysicalResourceId=physical)) == {"PhysicalResourceId": physical}
    assert module.is_complete(event("Delete", PhysicalResourceId=physical)) == {"IsComplete": True}


def test_waits_while_the_build_runs_then_completes(handler) -> None:
    module, stubber = handler
    stubber.add_response("batch_get_builds", {"builds": [build("IN_PROGRESS")]}, {"ids": [BUILD_ID]})
    stubber.add_response("batch_get_builds", {"builds": [build("SUCCEEDED")]}, {"ids": [BUILD_ID]})
    waiting = event("Create", Data={"BuildId": BUILD_ID}, PhysicalResourceId=f"{PROJECT}:3.17.2")
    assert module.is_complete(waiting) == {"IsComplete": False}
    assert module.is_complete(waiting) == {"IsComplete": True}


@pytest.mark.parametrize("status", ["FAILED", "FAULT", "TIMED_OUT", "STOPPED"])
def test_a_failed_build_fails_the_deploy_with_its_reason(handler, status: str) -> None:
    module, stubber = handler
    phases = [
        {"phaseType": "INSTALL", "phaseStatus": "SUCCEEDED"},
        {
            "phaseType": "BUILD",
            "phaseStatus": "FAILED",
            "contexts": [{"statusCode": "COMMAND_EXECUTION_ERROR", "message": "Error while executing command"}],
        },
    ]
    stubber.add_response("batch_get_builds", {"builds": [build(status, phases)]}, {"ids": [BUILD_ID]})
    with pytest.raises(RuntimeError) as raised:
        module.is_complete(event("Update", Data={"BuildId": BUILD_ID}, PhysicalResourceId="x"))
    message = str(raised.value)
    assert message.startswith(f"Serving image build {BUILD_ID} {status}: BUILD FAILED (Error while executing")
    assert "Build log: https://console.aws.amazon.com/cloudwatch" in message and "INSTALL" not in message
