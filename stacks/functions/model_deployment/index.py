"""Deployment worker: one alias move becomes one SageMaker model and endpoint update.

Runs in the VPC (it reaches MLflow through the internal load balancer) as the
Step Functions task the webhook receiver starts. For the version the alias now
names it creates a SageMaker model (the endpoint role, the serving image, the
version's artifacts in S3: no MLflow credential reaches the container), an
endpoint config with one variant named for the version, and then creates the
endpoint or updates it blue/green with automatic rollback on an alarm of the new
variant's errors, so a bad version never replaces the one serving. Endpoints are
never deleted here. The outcome is tagged on the model version
(``sagemaker_endpoint``, ``deployment_status``); a failure is tagged ``failed``
and re-raised so the execution fails and its alarm notifies the alarm topic.

Standard library and boto3 only. The MLflow credential is read from Secrets
Manager at run time.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

Tagger = Callable[[str, str, dict[str, str]], None]

STATUS_TAG = "deployment_status"
ENDPOINT_TAG = "sagemaker_endpoint"


def endpoint_name(prefix: str, model_name: str) -> str:
    """SageMaker names: letters, digits and hyphens, at most 63 characters."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", f"{prefix}-{model_name}").strip("-")[:63]


def errors_alarm_name(endpoint: str, variant: str) -> str:
    return f"{endpoint}-{variant}-errors"


def model_data_s3_uri(artifact_uri: str, artifact_s3_root: str) -> str:
    """The S3 prefix of a version's files; MLflow's proxied scheme maps onto the artifact bucket."""
    if artifact_uri.startswith("s3://"):
        return artifact_uri.rstrip("/") + "/"
    if artifact_uri.startswith("mlflow-artifacts:/"):
        path = artifact_uri.removeprefix("mlflow-artifacts:").lstrip("/")
        return f"{artifact_s3_root.rstrip('/')}/{path.rstrip('/')}/"
    raise ValueError(f"artifacts at {artifact_uri!r} are not in S3")


def deploy(
    request: Mapping[str, Any],
    *,
    sagemaker: Any,
    cloudwatch: Any,
    tag: Tagger,
    image_uri: str,
    role_arn: str,
    model_data: str,
    prefix: str,
    allowed_instance_types: list[str],
    alarm_actions: list[str] | None = None,
) -> str:
    """Create or update the endpoint for request's version; returns the endpoint name."""
    name, version = request["model_name"], str(request["version"])
    endpoint = endpoint_name(prefix, name)
    tag(name, version, {ENDPOINT_TAG: endpoint, STATUS_TAG: "deploying"})
    try:
        if request["instance_type"] not in allowed_instance_types:
            raise ValueError(f"instance type {request['instance_type']} is not in allowed_instance_types")
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        resource = f"{endpoint[:40]}-v{version}-{stamp}"
        variant = f"v{version}"
        sagemaker.create_model(
            ModelName=resource,
            ExecutionRoleArn=role_arn,
            PrimaryContainer={
                "Image": image_uri,
                "ModelDataSource": {
                    "S3DataSource": {"S3Uri": model_data, "S3DataType": "S3Prefix", "CompressionType": "None"}
                },
            },
        )
        sagemaker.create_endpoint_config(
            EndpointConfigName=resource,
            ProductionVariants=[
                {
                    "VariantName": variant,
                    "ModelName": resource,
                    "InstanceType": request["instance_type"],
                    "InitialInstanceCount": int(request["instance_count"]),
                }
            ],
        )
        if _exists(sagemaker, endpoint):
            alarm = errors_alarm_name(endpoint, variant)
            cloudwatch.put_metric_alarm(
                AlarmName=alarm,
                Namespace="AWS/SageMaker",
                MetricName="Invocation5XXErrors",
                Dimensions=[{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}],
                Statistic="Sum",
                Period=60,
                EvaluationPeriods=1,
                Threshold=1,
                ComparisonOperator="GreaterThanOrEqualToThreshold",
                TreatMissingData="notBreaching",
                AlarmActions=alarm_actions or [],
            )
            sagemaker.update_endpoint(
                EndpointName=endpoint,
                EndpointConfigName=resource,
                DeploymentConfig={
                    "BlueGreenUpdatePolicy": {
                        "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 300},
                        "TerminationWaitInSeconds": 300,
                    },
                    "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm}]},
                },
            )
        else:
            sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=resource)
    except Exception:
        tag(name, version, {STATUS_TAG: "failed"})
        raise
    tag(name, version, {STATUS_TAG: "updating"})
    return endpoint


def finish(request: Mapping[str, Any], endpoint: str, *, sagemaker: Any, tag: Tagger) -> str:
    """After the endpoint settles: ``deployed`` if it serves the version's variant, else ``failed``."""
    described = sagemaker.describe_endpoint(EndpointName=endpoint)
    variants = {v["VariantName"] for v in described.get("ProductionVariants", [])}
    ok = described["EndpointStatus"] == "InService" and f"v{request['version']}" in variants
    status = "deployed" if ok else "failed"
    tag(request["model_name"], str(request["version"]), {STATUS_TAG: status})
    return status


def _exists(sagemaker: Any, endpoint: str) -> bool:
    try:
        sagemaker.describe_endpoint(EndpointName=endpoint)
    except sagemaker.exceptions.ClientError as error:
        if "Could not find endpoint" in str(error):
            return False
        raise
    return True


def _mlflow_call(tracking_uri: str, auth: str, path: str, body: dict[str, str] | None = None) -> dict[str, Any]:
    """One MLflow REST call with basic auth; only http(s) URLs (the stack's internal address)."""
    url = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/{path}"
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("MLFLOW_TRACKING_URI is not an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Basic {auth}"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310 - scheme checked above
        answer: dict[str, Any] = json.loads(response.read() or b"{}")
    return answer


def basic_auth(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()


def rest_tagger(tracking_uri: str, auth: str) -> Tagger:
    """Tags through MLflow's REST API as the given basic-auth user."""

    def tag(name: str, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            body = {"name": name, "version": version, "key": key, "value": value}
            _mlflow_call(tracking_uri, auth, "model-versions/set-tag", body)

    return tag


def rest_artifact_uri(tracking_uri: str, auth: str, name: str, version: str) -> str:
    query = urllib.parse.urlencode({"name": name, "version": version})
    uri: str = _mlflow_call(tracking_uri, auth, f"model-versions/get-download-uri?{query}")["artifact_uri"]
    return uri


def handler(event: Mapping[str, Any], _context: object) -> dict[str, Any]:  # pragma: no cover - AWS wiring
    import boto3

    secret = json.loads(
        boto3.client("secretsmanager").get_secret_value(SecretId=os.environ["MLFLOW_SECRET_ARN"])["SecretString"]
    )
    uri = os.environ["MLFLOW_TRACKING_URI"]
    auth = basic_auth(secret["username"], secret["password"])
    tag = rest_tagger(uri, auth)
    sagemaker = boto3.client("sagemaker")
    if event.get("step") == "finish":
        return {"status": finish(event["request"], event["endpoint"], sagemaker=sagemaker, tag=tag)}
    request = event
    artifacts = rest_artifact_uri(uri, auth, request["model_name"], request["version"])
    endpoint = deploy(
        request,
        sagemaker=sagemaker,
        cloudwatch=boto3.client("cloudwatch"),
        tag=tag,
        image_uri=os.environ["SERVING_IMAGE_URI"],
        role_arn=os.environ["ENDPOINT_ROLE_ARN"],
        model_data=model_data_s3_uri(artifacts, os.environ["ARTIFACT_S3_ROOT"]),
        prefix=os.environ["ENDPOINT_PREFIX"],
        allowed_instance_types=json.loads(os.environ["ALLOWED_INSTANCE_TYPES"]),
        alarm_actions=json.loads(os.environ.get("ALARM_ACTIONS", "[]")),
    )
    return {"request": dict(request), "endpoint": endpoint, "step": "finish"}
