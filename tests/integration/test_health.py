"""/elb-status mirrors MLflow's own health, so the ALB drains a broken task."""

from __future__ import annotations

import pytest
import requests

from localrun.process import http_status, wait_until
from localrun.stack import MlflowStack

pytestmark = pytest.mark.integration


def test_alb_health_check_with_the_task_ip_as_host(mlflow_stack: MlflowStack) -> None:
    """The ALB sends the target's private IP and port as Host."""
    response = requests.get(mlflow_stack.proxy_url + "/elb-status", headers={"Host": "10.0.12.34:8080"}, timeout=30)
    assert response.status_code == 200


def test_elb_status_fails_while_mlflow_is_down_and_recovers(mlflow_stack: MlflowStack) -> None:
    health = mlflow_stack.proxy_url + "/elb-status"
    wait_until(lambda: http_status(health) == 200, timeout=60, what="/elb-status")
    mlflow_stack.stop_mlflow()
    try:
        status = http_status(health)
        assert status != 200
        assert status == 502  # nginx could not reach MLflow
    finally:
        mlflow_stack.start_mlflow()
    # nginx keeps no memory of the failure: healthy as soon as MLflow is.
    wait_until(lambda: http_status(health) == 200, timeout=60, what="/elb-status recovery")
