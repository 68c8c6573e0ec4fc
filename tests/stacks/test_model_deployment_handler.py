"""The webhook receiver and deployment worker against MLflow's own signing and moto's SageMaker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature
from moto import mock_aws

from stacks.functions.model_deployment import index, receiver
from tests.fake_aws import use_fake_aws

SECRET = "webhook-secret-for-tests"
DEPLOYMENTS = [{"model_name": "churn", "alias": "champion", "instance_type": "ml.m5.large", "instance_count": 1}]
ROLE = "arn:aws:iam::123456789012:role/endpoint-role"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlflow-pyfunc:3.17.2"


def delivery(data: dict[str, Any], *, action: str = "created", at: float | None = None, secret: str = SECRET) -> dict:
    body = json.dumps({"entity": "model_version_alias", "action": action, "timestamp": "x", "data": data})
    stamp = str(int(time.time() if at is None else at))
    headers = {
        "x-mlflow-delivery-id": "d-1",
        "x-mlflow-timestamp": stamp,
        "x-mlflow-signature": _generate_hmac_signature(secret, "d-1", stamp, body),
    }
    return {"headers": headers, "body": body, "isBase64Encoded": False}


def recorder(started: list[dict[str, Any]]) -> Any:
    """A receiver's `start` that records the requests it starts."""

    def start(request: dict[str, Any], _name: str) -> bool:
        started.append(request)
        return True

    return start


def receive(event: dict) -> tuple[int, list[dict[str, Any]]]:
    started: list[dict[str, Any]] = []
    response = receiver.handle(event, secret=SECRET, deployments=DEPLOYMENTS, start=recorder(started))
    return response["statusCode"], started


def test_a_signed_alias_move_starts_the_configured_deployment() -> None:
    status, started = receive(delivery({"name": "churn", "alias": "champion", "version": "3"}))
    assert status == 202
    assert started == [{**DEPLOYMENTS[0], "version": "3"}]


def test_the_same_delivery_starts_one_execution_named_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's retry of a delivery it got no answer for, or a replay within the five minutes."""
    use_fake_aws(monkeypatch, "us-east-1")
    with mock_aws():
        sfn = boto3.client("stepfunctions")
        machine = sfn.create_state_machine(
            name="deploy", definition=json.dumps({"StartAt": "S", "States": {"S": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/machine",
        )["stateMachineArn"]  # fmt: skip

        def start(request: dict[str, Any], name: str) -> bool:
            return receiver.start_execution(sfn, machine, request, name)

        def post(event: dict) -> int:
            return int(receiver.handle(event, secret=SECRET, deployments=DEPLOYMENTS, start=start)["statusCode"])

        first = delivery({"name": "churn", "alias": "champion", "version": "5"})
        assert post(first) == 202
        assert post(first) == 202  # Step Functions answers with the running execution
        executions = sfn.list_executions(stateMachineArn=machine)["executions"]
        assert [e["name"] for e in executions] == ["d-1"]
        # The same id with another body (signed again): that name is taken, nothing new starts.
        other = delivery({"name": "churn", "alias": "champion", "version": "6"})
        assert post(other) == 200
        assert len(sfn.list_executions(stateMachineArn=machine)["executions"]) == 1


@pytest.mark.parametrize(
    ("delivery_id", "name"),
    [("0b7c6d3e-1f2a-4b5c-8d9e-0f1a2b3c4d5e", "0b7c6d3e-1f2a-4b5c-8d9e-0f1a2b3c4d5e"), ("d_1", "d_1")],
)
def test_an_execution_is_named_after_its_delivery(delivery_id: str, name: str) -> None:
    assert receiver.execution_name(delivery_id) == name


@pytest.mark.parametrize("delivery_id", ["a b", "x" * 81, "id:with/other*characters"])
def test_a_delivery_id_step_functions_would_refuse_becomes_its_digest(delivery_id: str) -> None:
    name = receiver.execution_name(delivery_id)
    assert len(name) == 64 and all(c in "0123456789abcdef" for c in name)
    assert name != receiver.execution_name(delivery_id + "x")


@pytest.mark.parametrize(
    ("secret", "offset"),
    [("another", 0), (SECRET, -301), (SECRET, 301)],
    ids=["bad signature", "older", "future"],
)
def test_a_forged_or_stale_delivery_is_refused(secret: str, offset: int) -> None:
    # Built when the test runs, not at collection: a slow run must not age the stamps into the window.
    event = delivery({"name": "churn", "alias": "champion", "version": "3"}, secret=secret, at=time.time() + offset)
    status, started = receive(event)
    assert (status, started) == (401, [])


def test_a_tampered_body_is_refused() -> None:
    event = delivery({"name": "churn", "alias": "champion", "version": "3"})
    event["body"] = event["body"].replace('"3"', '"4"')
    assert receive(event) == (401, [])


def test_a_missing_signature_is_refused() -> None:
    event = delivery({"name": "churn", "alias": "champion", "version": "3"})
    del event["headers"]["x-mlflow-signature"]
    assert receive(event) == (401, [])


@pytest.mark.parametrize(
    ("data", "action"),
    [
        ({"name": "churn", "alias": "champion"}, "deleted"),
        ({"name": "churn", "alias": "challenger", "version": "3"}, "created"),
        ({"name": "other", "alias": "champion", "version": "3"}, "created"),
    ],
)
def test_other_events_start_nothing(data: dict, action: str) -> None:
    assert receive(delivery(data, action=action)) == (200, [])


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    use_fake_aws(monkeypatch, "us-east-1")
    with mock_aws():
        yield boto3.client("sagemaker"), boto3.client("cloudwatch")


def run(aws: tuple[Any, Any], tags: dict, version: str, instance_type: str = "ml.m5.large") -> str:
    sagemaker, cloudwatch = aws

    def tag(name: str, v: str, new: dict[str, str]) -> None:
        tags.setdefault((name, v), {}).update(new)

    request = {**DEPLOYMENTS[0], "instance_type": instance_type, "version": version}
    endpoint = index.deploy(
        request, sagemaker=sagemaker, cloudwatch=cloudwatch, tag=tag, image_uri=IMAGE, role_arn=ROLE,
        model_data=f"s3://bucket/artifacts/{version}/", prefix="mlflow", allowed_instance_types=["ml.m5.large"],
    )  # fmt: skip
    index.finish(request, endpoint, sagemaker=sagemaker, tag=tag)
    return endpoint


def test_the_first_deployment_creates_the_endpoint_with_the_version(aws: tuple[Any, Any]) -> None:
    tags: dict = {}
    endpoint = run(aws, tags, "1")
    described = aws[0].describe_endpoint(EndpointName=endpoint)
    assert [v["VariantName"] for v in described["ProductionVariants"]] == ["v1"]
    config = aws[0].describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    model = aws[0].describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert tags[("churn", "1")] == {"sagemaker_endpoint": "mlflow-churn", "deployment_status": "deployed"}


def test_a_failed_deployment_is_tagged_failed_and_the_old_variant_keeps_serving(aws: tuple[Any, Any]) -> None:
    tags: dict = {}
    endpoint = run(aws, tags, "1")
    with pytest.raises(ValueError, match="allowed_instance_types"):
        run(aws, tags, "2", instance_type="ml.p4d.24xlarge")
    assert tags[("churn", "2")]["deployment_status"] == "failed"
    described = aws[0].describe_endpoint(EndpointName=endpoint)
    assert [v["VariantName"] for v in described["ProductionVariants"]] == ["v1"]


@pytest.mark.parametrize(
    ("alias_version", "endpoint_status", "step"),
    [
        ("2", None, index.DEPLOY),  # the first release
        ("2", "InService", index.DEPLOY),
        ("2", "Failed", index.DEPLOY),  # SageMaker says what it makes of the update
        *[("2", state, index.WAITING) for state in sorted(index.SETTLING)],  # the release before is not done
        ("3", "InService", index.SUPERSEDED),  # the alias moved on: a quick roll-back, a late or repeated delivery
        ("3", "Updating", index.SUPERSEDED),
        ("1", None, index.SUPERSEDED),
        (None, "InService", index.SUPERSEDED),  # the alias (or the model) is gone
    ],
)
def test_a_release_starts_only_for_what_the_alias_names_on_a_settled_endpoint(
    alias_version: str | None, endpoint_status: str | None, step: str
) -> None:
    assert index.next_step("2", alias_version, endpoint_status) == step
    assert index.next_step(2, alias_version, endpoint_status) == step  # the version as a number


@pytest.mark.parametrize("state", ["Creating", "Updating", "SystemUpdating", "RollingBack"])
def test_an_endpoint_still_changing_is_pending_and_tags_nothing(state: str) -> None:
    class Settling:
        def describe_endpoint(self, **_name: str) -> dict[str, Any]:
            return {"EndpointStatus": state, "ProductionVariants": [{"VariantName": "v1"}]}

    tags: dict = {}
    request = {**DEPLOYMENTS[0], "version": "2"}
    status = index.finish(request, "mlflow-churn", sagemaker=Settling(), tag=lambda n, v, t: tags.update(t))
    assert (status, tags) == (index.PENDING, {})


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://b/p/m", "s3://b/p/m/"),
        ("mlflow-artifacts:/1/models/m-1/artifacts", "s3://bucket/root/1/models/m-1/artifacts/"),
    ],
)
def test_model_data_maps_onto_the_artifact_bucket(uri: str, expected: str) -> None:
    assert index.model_data_s3_uri(uri, "s3://bucket/root") == expected


def test_a_versions_files_are_copied_out_of_mlflows_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """The endpoint role may not read MLflow's prefix: the worker copies the version's files for it."""
    use_fake_aws(monkeypatch, "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="artifacts")
        files = {"MLmodel": b"flavors: {}", "model.pkl": b"\x80\x04", "sub/conda.yaml": b"name: m"}
        for name, body in files.items():
            s3.put_object(Bucket="artifacts", Key=f"mlflow-artifacts/1/models/m-1/artifacts/{name}", Body=body)
        s3.put_object(Bucket="artifacts", Key="mlflow-artifacts/1/models/m-10/artifacts/other", Body=b"no")
        source = index.model_data_s3_uri("mlflow-artifacts:/1/models/m-1/artifacts", "s3://artifacts/mlflow-artifacts")
        target = index.model_data_copy_uri("s3://artifacts/model-deployments", "mlflow-registry-churn", "3")
        assert target == "s3://artifacts/model-deployments/mlflow-registry-churn-v3/"
        assert index.copy_model_files(s3, source, target) == 3
        copied = s3.list_objects_v2(Bucket="artifacts", Prefix="model-deployments/mlflow-registry-churn-v3/")[
            "Contents"
        ]
        bodies = {
            o["Key"].removeprefix("model-deployments/mlflow-registry-churn-v3/"): s3.get_object(
                Bucket="artifacts", Key=o["Key"]
            )["Body"].read()
            for o in copied
        }
        assert bodies == files
        with pytest.raises(ValueError, match="no model files"):
            index.copy_model_files(s3, "s3://artifacts/mlflow-artifacts/9/none/", target)


def test_model_data_outside_s3_is_refused() -> None:
    with pytest.raises(ValueError, match="not in S3"):
        index.model_data_s3_uri("file:///tmp/m", "s3://bucket/root")


def test_mlflows_own_delivery_of_an_alias_move_reaches_the_receiver(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's delivery code (headers, body, signature) posts to a loopback receiver running `handle`."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from mlflow.entities.webhook import Webhook, WebhookEvent
    from mlflow.webhooks import delivery as mlflow_delivery

    monkeypatch.setenv("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")  # loopback receiver
    monkeypatch.setenv("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http")
    started: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            event = {"headers": dict(self.headers.items()), "body": body}
            response = receiver.handle(event, secret=SECRET, deployments=DEPLOYMENTS, start=recorder(started))
            self.send_response(response["statusCode"])
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        event = WebhookEvent("model_version_alias", "created")
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        statuses = []
        for secret in (SECRET, "not-the-secret"):
            hook = Webhook("w-1", "deploy", url, [event], 0, 0, secret=secret)
            session = mlflow_delivery._create_webhook_session()
            data = {"name": "churn", "alias": "champion", "version": "5"}
            statuses.append(mlflow_delivery._send_webhook_request(hook, data, event, session).status_code)
    finally:
        server.shutdown()
    assert statuses == [202, 401]
    assert started == [{**DEPLOYMENTS[0], "version": "5"}]
