"""MLflow's AI gateway is off in the task as deployed, and on only when asked for (`make local AI_GATEWAY=true`).

MLflow itself says whether its gateway is on: the server-info endpoint lists
its enabled features. Asked through nginx, as a client would.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from localrun.services import MotoServer
from localrun.stack import MlflowStack

pytestmark = pytest.mark.integration

SERVER_INFO = "/api/3.0/mlflow/server-info"


@pytest.fixture(scope="module")
def gateway_stack(tmp_path_factory: pytest.TempPathFactory, moto_server: MotoServer) -> Iterator[MlflowStack]:
    """A stack of its own: the gateway is set when the server starts, and the session's stacks keep it off."""
    stack = MlflowStack(tmp_path_factory.mktemp("ai-gateway-stack"), moto=moto_server, workers=1, ai_gateway=True)
    stack.start()
    yield stack
    stack.stop()


def _gateway_feature(stack: MlflowStack) -> bool:
    answer = requests.get(f"{stack.proxy_url}{SERVER_INFO}", auth=(stack.username, stack.password), timeout=30)
    answer.raise_for_status()
    return answer.json()["features_enabled"]["gateway"]


def test_the_gateway_is_off_by_default(mlflow_stack: MlflowStack) -> None:
    assert _gateway_feature(mlflow_stack) is False  # MLflow's own default is on
    assert mlflow_stack.server_env()["MLFLOW_ENABLE_AI_GATEWAY"] == "false"


def test_the_gateway_is_on_when_asked_for(gateway_stack: MlflowStack) -> None:
    assert _gateway_feature(gateway_stack) is True
