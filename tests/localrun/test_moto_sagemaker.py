"""The local AWS stand-in's UpdateEndpoint (localrun/moto_sagemaker.py), through MotoServer with boto3.

Each test has its own endpoint in one moto process started the way localrun
starts it; what it checks is what the AWS API reference says of UpdateEndpoint
and of automatic rollback.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localrun.services import MotoServer

ROLE = "arn:aws:iam::123456789012:role/endpoint-role"
ALARM = "new-variant-errors"
DEPLOYMENT = {
    "BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 300},
        "TerminationWaitInSeconds": 300,
    },
    "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": ALARM}]},
}


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with tempfile.TemporaryDirectory() as logs:
        server = MotoServer(log_dir=Path(logs))
        server.start()
        try:
            yield server
        finally:
            server.stop()


class Endpoint:
    """An endpoint serving config `<name>-blue`; config `<name>-green` is ready for an update."""

    def __init__(self, moto: MotoServer) -> None:
        self.sagemaker, self.cloudwatch = moto.client("sagemaker"), moto.client("cloudwatch")
        self.name = f"ep-{secrets.token_hex(4)}"
        for colour in ("blue", "green"):
            self.sagemaker.create_model(
                ModelName=f"{self.name}-{colour}", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "serving:1"}
            )
            self.sagemaker.create_endpoint_config(
                EndpointConfigName=f"{self.name}-{colour}",
                ProductionVariants=[
                    {"VariantName": colour, "ModelName": f"{self.name}-{colour}", "InstanceType": "ml.m5.large",
                     "InitialInstanceCount": 1},
                ],
            )  # fmt: skip
        self.sagemaker.create_endpoint(EndpointName=self.name, EndpointConfigName=f"{self.name}-blue")
        self.cloudwatch.put_metric_alarm(
            AlarmName=ALARM, Namespace="AWS/SageMaker", MetricName="Invocation5XXErrors", Statistic="Sum",
            Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
        )  # fmt: skip

    def update(self, config: str | None = None, **kwargs: Any) -> dict[str, Any]:
        return self.sagemaker.update_endpoint(
            EndpointName=self.name, EndpointConfigName=config or f"{self.name}-green", **kwargs
        )

    def describe(self) -> dict[str, Any]:
        return self.sagemaker.describe_endpoint(EndpointName=self.name)

    def serving(self) -> tuple[str, str, list[str]]:
        described = self.describe()
        variants = [v["VariantName"] for v in described["ProductionVariants"]]
        return described["EndpointStatus"], described["EndpointConfigName"], variants


@pytest.fixture
def endpoint(moto: MotoServer) -> Endpoint:
    return Endpoint(moto)


def test_an_update_is_updating_then_in_service_with_the_new_config(endpoint: Endpoint) -> None:
    answer = endpoint.update(DeploymentConfig=DEPLOYMENT)
    # The old fleet serves while the update runs; a poller sees Updating, then InService.
    updating = endpoint.describe()
    assert answer["EndpointArn"] == updating["EndpointArn"]
    assert (updating["EndpointStatus"], updating["EndpointConfigName"]) == ("Updating", f"{endpoint.name}-blue")
    assert endpoint.serving() == ("InService", f"{endpoint.name}-green", ["green"])
    described = endpoint.describe()
    assert described["LastDeploymentConfig"] == DEPLOYMENT
    assert "FailureReason" not in described


def test_an_alarm_in_alarm_state_rolls_the_update_back(endpoint: Endpoint) -> None:
    endpoint.update(DeploymentConfig=DEPLOYMENT)
    assert endpoint.serving()[0] == "Updating"
    # The new variant's errors trip the alarm during the baking period.
    endpoint.cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="5xx from the new variant")
    try:
        assert endpoint.serving() == ("InService", f"{endpoint.name}-blue", ["blue"])
        described = endpoint.describe()
        assert ALARM in described["FailureReason"] and "rolled back" in described["FailureReason"]
        assert described["LastDeploymentConfig"] == DEPLOYMENT
        # The endpoint takes the next update; without the alarm in its config nothing rolls it back.
        endpoint.update(DeploymentConfig={"BlueGreenUpdatePolicy": DEPLOYMENT["BlueGreenUpdatePolicy"]})
        endpoint.describe()
        assert endpoint.serving() == ("InService", f"{endpoint.name}-green", ["green"])
        assert "FailureReason" not in endpoint.describe()
    finally:
        endpoint.cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="OK", StateReason="test over")


@pytest.mark.parametrize(
    ("target", "message"),
    [("endpoint", "Could not find endpoint '.*:endpoint/nowhere'"),
     ("config", "Could not find endpoint configuration '.*:endpoint-config/nowhere'")],
)  # fmt: skip
def test_an_unknown_endpoint_or_config_is_refused(endpoint: Endpoint, target: str, message: str) -> None:
    call = {"EndpointName": endpoint.name, "EndpointConfigName": f"{endpoint.name}-green"}
    call["EndpointName" if target == "endpoint" else "EndpointConfigName"] = "nowhere"
    with pytest.raises(ClientError, match=message) as refused:
        endpoint.sagemaker.update_endpoint(**call, DeploymentConfig=DEPLOYMENT)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert endpoint.serving() == ("InService", f"{endpoint.name}-blue", ["blue"])
    assert "LastDeploymentConfig" not in endpoint.describe()


def test_an_endpoint_being_updated_cannot_be_updated_again(endpoint: Endpoint) -> None:
    endpoint.update()
    with pytest.raises(ClientError, match="ValidationException.*Cannot update in-progress endpoint"):
        endpoint.update(f"{endpoint.name}-blue")
    # The first update goes on; once it is done, the endpoint takes another.
    assert endpoint.serving() == ("Updating", f"{endpoint.name}-blue", ["blue"])
    assert endpoint.serving() == ("InService", f"{endpoint.name}-green", ["green"])
    endpoint.update(f"{endpoint.name}-blue")
    endpoint.describe()
    assert endpoint.serving() == ("InService", f"{endpoint.name}-blue", ["blue"])
