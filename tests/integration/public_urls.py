"""The names a deployment is reached by, and a look at MLflow's absolute URLs."""

from __future__ import annotations

import base64
import http.client
from urllib.parse import urlsplit

from localrun.stack import MlflowStack

# The stacks run with AWS_REGION=us-east-1, as ECS sets it in the task.
API_GATEWAY_HOST = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
ALB_HOSTS = [
    "internal-mlflow-alb-1234567890.us-east-1.elb.amazonaws.com",
    "internal-mlflow-alb-1234567890.us-east-1.elb.amazonaws.com:80",
]


def redirect_location(stack: MlflowStack, path: str, headers: dict[str, str]) -> tuple[int, str | None]:
    """Status and Location of one GET through the proxy, without following the redirect."""
    parts = urlsplit(stack.proxy_url)
    token = base64.b64encode(f"{stack.username}:{stack.password}".encode()).decode()
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", path, headers={**headers, "Authorization": f"Basic {token}"})
        response = conn.getresponse()
        return response.status, response.getheader("Location")
    finally:
        conn.close()
