"""Deployment worker: one alias move becomes one SageMaker model and endpoint update.

Runs in the VPC (it reaches MLflow through the internal load balancer) as the
Step Functions task the webhook receiver starts. For the version the alias now
names it copies the version's files out of MLflow's artifact prefix (which the
endpoint role may not read) to ``<endpoint>-v<version>/`` in the same bucket,
creates a SageMaker model (the endpoint role, the serving image, that copy: no
MLflow credential reaches the container), an
endpoint config with one variant named for the version, and then creates the
endpoint or updates it blue/green with automatic rollback on an alarm of the new
variant's errors, so a bad version never replaces the one serving. Endpoints are
never deleted here. The outcome is tagged on the model version
(``sagemaker_endpoint``, ``deployment_status``); a failure is tagged ``failed``
and re-raised so the execution fails and its alarm notifies the alarm topic.

Standard library and boto3 only, plus the MLflow REST client of
``functions/mlflow_accounts`` (packaged beside it). The MLflow login is read from
Secrets Manager at run time (``MLFLOW_SECRET_ARN``). The state machine calls
``handler`` once to deploy, then with the answer (``step: finish``) until its
``status`` is no longer ``pending``.

What serves is what the alias names: before it starts anything the worker asks
MLflow where the alias points now. A release the alias has moved past (a quick
roll-back, a delivery that arrived late or twice) starts nothing and ends
``superseded``; one that finds the endpoint still busy with the release before
it ends ``waiting``, and the state machine asks again a minute later, so the
last move is the one deployed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from ..mlflow_accounts.index import Mlflow, read_login

Tagger = Callable[[str, str, dict[str, str]], None]
logger = logging.getLogger(__name__)

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


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def model_data_copy_uri(model_data_root: str, endpoint: str, version: str) -> str:
    """Where a version's files are copied for SageMaker: outside MLflow's prefix, named like the endpoint."""
    return f"{model_data_root.rstrip('/')}/{endpoint}-v{version}/"


def copy_model_files(s3: Any, source: str, destination: str) -> int:
    """Copy every object under ``source`` to ``destination`` (both s3:// prefixes) in S3 itself; how many.

    The serving role may not read MLflow's artifact prefix (MLflow decides who reads what
    there): the endpoint reads this copy instead. Versions are immutable, so a copy made
    before is simply made again.
    """
    source_bucket, source_prefix = _split_s3(source)
    target_bucket, target_prefix = _split_s3(destination)
    copied = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=source_bucket, Prefix=source_prefix):
        for item in page.get("Contents", []):
            target = target_prefix + item["Key"][len(source_prefix) :]
            s3.copy({"Bucket": source_bucket, "Key": item["Key"]}, target_bucket, target)
            copied += 1
    if not copied:
        raise ValueError(f"no model files under {source}")
    return copied


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
        if endpoint_status(sagemaker, endpoint) is not None:
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


# SageMaker's endpoint states that end on their own; the state machine asks again after a wait.
SETTLING = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})
PENDING = "pending"
# Answers of the deploy step that started nothing: the state machine waits and deploys again,
# or ends (the alias names another version now, or none).
WAITING = "waiting"
SUPERSEDED = "superseded"
DEPLOY = "deploy"


def next_step(version: str, alias_version: str | None, endpoint_status: str | None) -> str:
    """SUPERSEDED, WAITING or DEPLOY for a release of ``version``.

    ``alias_version``: what the alias names now (None: the alias is gone);
    ``endpoint_status``: the endpoint's SageMaker status (None: no endpoint yet).
    """
    if alias_version != str(version):
        return SUPERSEDED
    if endpoint_status in SETTLING:
        return WAITING
    return DEPLOY


def finish(request: Mapping[str, Any], endpoint: str, *, sagemaker: Any, tag: Tagger) -> str:
    """After the endpoint settles: ``deployed`` if it serves the version's variant, else ``failed``.

    ``pending`` (nothing tagged) while SageMaker is still creating, updating or rolling back.
    """
    described = sagemaker.describe_endpoint(EndpointName=endpoint)
    if described["EndpointStatus"] in SETTLING:
        return PENDING
    variants = {v["VariantName"] for v in described.get("ProductionVariants", [])}
    ok = described["EndpointStatus"] == "InService" and f"v{request['version']}" in variants
    status = "deployed" if ok else "failed"
    tag(request["model_name"], str(request["version"]), {STATUS_TAG: status})
    return status


def endpoint_status(sagemaker: Any, endpoint: str) -> str | None:
    """The endpoint's SageMaker status, None when there is no such endpoint."""
    try:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
    except sagemaker.exceptions.ClientError as error:
        if "Could not find endpoint" in str(error):
            return None
        raise
    return str(described["EndpointStatus"])


def mlflow_from_environment() -> Mlflow:
    """MLflow through the internal load balancer with the login of ``MLFLOW_SECRET_ARN``."""
    login = read_login(os.environ["MLFLOW_SECRET_ARN"], "MLflow login secret")
    return Mlflow(os.environ["MLFLOW_URL"], login, os.environ.get("MLFLOW_TLS_SERVER_NAME") or None, 90)


def _answer(mlflow: Mlflow, method: str, path: str, body: dict[str, str] | None = None) -> dict[str, Any]:
    return _ok(method, path, *mlflow.request(method, f"/api/2.0/mlflow/{path}", body))


def _ok(method: str, path: str, status: int, answer: dict[str, Any]) -> dict[str, Any]:
    if status != 200:
        raise RuntimeError(f"MLflow answered {method} {path.split('?')[0]} with {status}: {answer.get('error_code')}")
    return answer


def rest_tagger(mlflow: Mlflow) -> Tagger:
    """Tags through MLflow's REST API as the client's user."""

    def tag(name: str, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            _answer(
                mlflow, "POST", "model-versions/set-tag", {"name": name, "version": version, "key": key, "value": value}
            )

    return tag


def rest_alias_version(mlflow: Mlflow, name: str, alias: str) -> str | None:
    """The version ``alias`` names now; None when the alias (or the model) is gone."""
    path = "registered-models/alias?" + urllib.parse.urlencode({"name": name, "alias": alias})
    status, answer = mlflow.request("GET", f"/api/2.0/mlflow/{path}", None)
    if status == 404:
        return None
    return str(_ok("GET", path, status, answer)["model_version"]["version"])


def rest_artifact_uri(mlflow: Mlflow, name: str, version: str) -> str:
    query = urllib.parse.urlencode({"name": name, "version": version})
    uri: str = _answer(mlflow, "GET", f"model-versions/get-download-uri?{query}")["artifact_uri"]
    return uri


def handler(event: Mapping[str, Any], _context: object) -> dict[str, Any]:  # pragma: no cover - AWS wiring
    import boto3

    mlflow = mlflow_from_environment()
    tag = rest_tagger(mlflow)
    sagemaker = boto3.client("sagemaker")
    if event.get("step") == "finish":
        status = finish(event["request"], event["endpoint"], sagemaker=sagemaker, tag=tag)
        return {**event, "status": status}
    # The receiver's request, or the answer of a deploy step that waited (the request and its status).
    request = {key: value for key, value in event.items() if key != "status"}
    prefix = os.environ["ENDPOINT_PREFIX"]
    name, version = request["model_name"], str(request["version"])
    endpoint = endpoint_name(prefix, name)
    step = next_step(version, rest_alias_version(mlflow, name, request["alias"]), endpoint_status(sagemaker, endpoint))
    if step == SUPERSEDED:
        logger.info(
            "%s version %s: alias %s names another version now; nothing started", name, version, request["alias"]
        )
        return {**request, "status": SUPERSEDED}
    if step == WAITING:
        if event.get("status") != WAITING:
            tag(name, version, {ENDPOINT_TAG: endpoint, STATUS_TAG: WAITING})
        return {**request, "status": WAITING}
    artifacts = rest_artifact_uri(mlflow, name, version)
    model_data = model_data_copy_uri(os.environ["MODEL_DATA_S3_ROOT"], endpoint, version)
    try:
        copy_model_files(boto3.client("s3"), model_data_s3_uri(artifacts, os.environ["ARTIFACT_S3_ROOT"]), model_data)
    except Exception:
        tag(name, version, {STATUS_TAG: "failed"})
        raise
    endpoint = deploy(
        request,
        sagemaker=sagemaker,
        cloudwatch=boto3.client("cloudwatch"),
        tag=tag,
        image_uri=os.environ["SERVING_IMAGE_URI"],
        role_arn=os.environ["ENDPOINT_ROLE_ARN"],
        model_data=model_data,
        prefix=prefix,
        allowed_instance_types=json.loads(os.environ["ALLOWED_INSTANCE_TYPES"]),
        alarm_actions=json.loads(os.environ.get("ALARM_ACTIONS", "[]")),
    )
    return {"request": dict(request), "endpoint": endpoint, "step": "finish", "status": PENDING}
