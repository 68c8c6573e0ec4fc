"""The Studio workflow step by step: helper -> train.py -> registry -> SageMaker endpoint -> delete.

Real nginx + MLflow + PostgreSQL (the proxy stack's integration setup) and
moto's server for every AWS API, with the process running as the Studio
execution role. Each step checks what it left behind, not just that it returned.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import boto3
import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.deployments import get_deploy_client

from tests.integration import studio_flow
from tests.integration.studio_flow import LAB_DIR, StudioAws, mlflow_setup, sagemaker_steps, studio_env

# One worker executes the notebook once for all three Studio modules.
pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.xdist_group("studio")]

# The Studio e2e fixtures live in studio_flow.py (tests/integration/conftest.py is the proxy suite's).
studio_aws = studio_flow.studio_aws

EXPERIMENT = "studio-workflow-e2e"
REGISTERED_MODEL = "studio-workflow-e2e-classifier"


@dataclass
class Flow:
    aws: StudioAws
    connection: mlflow_setup.MlflowConnection | None = None
    run_id: str = ""
    model_uri: str = ""
    app_name: str = ""


@pytest.fixture(scope="module")
def flow(studio_aws, tmp_path_factory):
    """This test process as a Studio kernel; state handed from step to step."""
    with studio_env(studio_aws, scratch=tmp_path_factory.mktemp("kernel-tmp")):
        yield Flow(aws=studio_aws)
        mlflow.set_tracking_uri(None)


def test_helper_configures_mlflow_from_moto(flow):
    conn = mlflow_setup.configure_mlflow()
    flow.connection = conn
    assert conn.tracking_uri == flow.aws.tracking_url  # the proxy, from the stack output
    assert conn.secret_name == flow.aws.secret_name  # configured name, from the role's tag
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == flow.aws.username
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == flow.aws.password
    search = f"{conn.tracking_uri}/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(search, auth=(conn.username, conn.password), timeout=10).status_code == 200
    assert requests.get(search, timeout=10).status_code == 401  # the proxy wants the secret's user
    # The SSM route gives the same URL (for roles that may not read the stack).
    env: dict[str, str] = {}
    mlflow_setup.configure_mlflow(tracking_url_parameter="/mlflow/tracking-url", environ=env)
    assert env["MLFLOW_TRACKING_URI"] == conn.tracking_uri


def test_train_script_configures_itself_and_logs_through_the_proxy(flow, mlflow_stack):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    out = subprocess.run(
        [sys.executable, "train.py", "--c", "0.5", "--experiment-name", EXPERIMENT, "--run-name", "e2e"],
        cwd=LAB_DIR / "source_dir",
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert f"MLflow tracking URI {flow.aws.tracking_url}" in out
    assert flow.aws.password not in out
    flow.run_id = out.rsplit("run ", 1)[1].split(":", 1)[0]

    # The run is in the server's database, written through nginx as the secret's user.
    direct = MlflowClient(tracking_uri=mlflow_stack.direct_url)
    run = direct.get_run(flow.run_id)
    assert run.info.run_name == "e2e" and run.data.params["C"] == "0.5"
    nginx_log = next(p for p in mlflow_stack.log_files() if p.name.startswith("nginx")).read_text()
    assert f"{flow.aws.username} " in nginx_log and "POST /api/2.0/mlflow/runs/create" in nginx_log
    # MLflow serves the model's artifacts; their bytes are in the artifact bucket (S3 in moto).
    model_id = run.outputs.model_outputs[0].model_id
    logged = direct.get_logged_model(model_id)
    assert logged.artifact_location.startswith("mlflow-artifacts:/")
    destination = mlflow_stack.artifacts_destination.removeprefix(f"s3://{flow.aws.bucket}/").strip("/")
    prefix = f"{destination}/{logged.artifact_location.removeprefix('mlflow-artifacts:/')}"
    s3 = mlflow_stack.moto.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=flow.aws.bucket, Prefix=prefix)["Contents"]}
    assert f"{prefix}/MLmodel" in keys and f"{prefix}/input_example.json" in keys
    flow.model_uri = f"models:/{model_id}"


def test_model_is_registered(flow):
    version = mlflow.register_model(flow.model_uri, REGISTERED_MODEL)
    assert version.run_id == flow.run_id
    assert MlflowClient().get_model_version(REGISTERED_MODEL, version.version).status == "READY"
    flow.model_uri = f"models:/{REGISTERED_MODEL}/{version.version}"


def test_deploy_client_creates_the_endpoint_in_service(flow, moto_server):
    session = boto3.session.Session(region_name=flow.aws.region)
    assert sagemaker_steps.execution_role_arn(session) == flow.aws.role_arn
    roles = sagemaker_steps.workload_roles(session)
    assert (roles.training, roles.serving) == (flow.aws.training_role_arn, flow.aws.serving_role_arn)
    role_arn = roles.serving
    image = sagemaker_steps.serving_image_uri(session, mlflow.__version__)
    flow.app_name = sagemaker_steps.unique_name("e2e")
    deployer = get_deploy_client(f"sagemaker:/{flow.aws.region}")
    deployer.create_deployment(
        flow.app_name,
        model_uri=flow.model_uri,
        flavor="python_function",
        config={"execution_role_arn": role_arn, "bucket": flow.aws.bucket, "image_url": image, "timeout_seconds": 60},
    )
    assert deployer.get_deployment(flow.app_name)["EndpointStatus"] == "InService"

    sagemaker = moto_server.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName=flow.app_name)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["ModelName"].startswith(f"{flow.app_name}-model-")
    assert config["EndpointConfigName"].startswith(f"{flow.app_name}-config-")
    assert model["ExecutionRoleArn"] == flow.aws.serving_role_arn
    container = model["PrimaryContainer"]
    assert (
        container["Image"]
        == f"{flow.aws.account}.dkr.ecr.{flow.aws.region}.amazonaws.com/mlflow-pyfunc:{mlflow.__version__}"
    )
    assert container["ModelDataUrl"] == f"s3://{flow.aws.bucket}/{model['ModelName']}/model.tar.gz"
    assert container["Environment"]["MLFLOW_DEPLOYMENT_FLAVOR_NAME"] == "python_function"
    head = moto_server.client("s3").head_object(Bucket=flow.aws.bucket, Key=f"{model['ModelName']}/model.tar.gz")
    assert head["ContentLength"] > 0


def test_endpoint_is_deleted_with_its_config_model_and_data(flow, moto_server):
    sagemaker = moto_server.client("sagemaker")
    config_name = sagemaker.describe_endpoint(EndpointName=flow.app_name)["EndpointConfigName"]
    model_name = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"][0][
        "ModelName"
    ]
    get_deploy_client(f"sagemaker:/{flow.aws.region}").delete_deployment(flow.app_name, config={"timeout_seconds": 60})
    assert not sagemaker.list_endpoints(NameContains=flow.app_name)["Endpoints"]
    assert not sagemaker.list_endpoint_configs(NameContains=flow.app_name)["EndpointConfigs"]
    assert not sagemaker.list_models(NameContains=model_name)["Models"]
    listing = moto_server.client("s3").list_objects_v2(Bucket=flow.aws.bucket, Prefix=f"{model_name}/")
    assert listing.get("KeyCount", 0) == 0
