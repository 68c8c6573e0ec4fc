"""ModelDeployment: webhook secret, receiver URL, worker role scoped to the project's endpoints and instance types."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stacks import names
from stacks.components.model_deployment import FAILURES_ALARM_NAME, WEBHOOK_NAME, WEBHOOK_RESOURCE_TYPE
from stacks.mlflow_version import pinned_mlflow_version
from tests.docker.image_modules import image_module
from tests.stacks.helpers import Template, as_list, only, props, render, resources, service_task_definition
from tests.synth import MODEL_DEPLOYMENT_VARIANT, SSO_MODEL_DEPLOYMENT_VARIANT, synth_directory, synth_templates

ALLOWED = ["ml.m5.large", "ml.m5.xlarge", "ml.c5.xlarge"]  # cdk.json's allowed_instance_types
SAGEMAKER = "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}"


@pytest.fixture(scope="module")
def studio() -> Template:
    return synth_templates(**MODEL_DEPLOYMENT_VARIANT)[names.STUDIO_STACK]


def _ours(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    """Logical id -> properties of the construct's resources of one type."""
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in resources(template, resource_type).items()
        if logical_id.startswith("ModelDeployment")
    }


def _functions(template: Template) -> dict[str, dict[str, Any]]:
    return _ours(template, "AWS::Lambda::Function")


def _function(template: Template, fragment: str) -> dict[str, Any]:
    (found,) = [p for logical_id, p in _functions(template).items() if fragment in logical_id]
    return found


def _statements_of(template: Template, role_fragment: str) -> dict[str, dict[str, Any]]:
    (role,) = [
        r["Properties"]
        for logical_id, r in resources(template, "AWS::IAM::Role").items()
        if logical_id.startswith("ModelDeployment") and role_fragment in logical_id
    ]
    return {s["Sid"]: s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]}


def test_nothing_is_created_without_model_deployments(studio_template: Template) -> None:
    assert not _functions(studio_template)
    assert not resources(studio_template, "AWS::Lambda::Url")
    assert not _ours(studio_template, "AWS::StepFunctions::StateMachine")
    assert not _ours(studio_template, "AWS::SecretsManager::Secret")


def test_the_webhook_secret_is_generated_at_deploy_and_never_in_the_template(studio: Template) -> None:
    (secret,) = [r["Properties"] for i, r in resources(studio, "AWS::SecretsManager::Secret").items() if "Webhook" in i]
    assert "SecretString" not in secret
    assert secret["GenerateSecretString"]["PasswordLength"] >= 32
    receiver = _function(studio, "Receiver")
    assert set(receiver["Environment"]["Variables"]) == {"WEBHOOK_SECRET_ARN", "STATE_MACHINE_ARN", "DEPLOYMENTS"}


def test_the_receiver_is_a_public_function_url_outside_the_vpc(studio: Template) -> None:
    url = props(studio, "AWS::Lambda::Url")
    assert url["AuthType"] == "NONE"  # the HMAC signature is the auth (receiver.py)
    receiver_id = url["TargetFunctionArn"]["Fn::GetAtt"][0]
    assert "Receiver" in receiver_id
    assert "VpcConfig" not in _function(studio, "Receiver")
    url_id = only(studio, "AWS::Lambda::Url")[0]
    assert studio["Outputs"][names.OUTPUT_DEPLOYMENT_WEBHOOK_URL]["Value"] == {"Fn::GetAtt": [url_id, "FunctionUrl"]}


def test_the_worker_runs_in_the_vpc_and_reaches_mlflow_through_the_alb(studio: Template) -> None:
    worker = _function(studio, "Worker")
    assert worker["VpcConfig"]["SubnetIds"]
    variables = worker["Environment"]["Variables"]
    assert render(variables["MLFLOW_URL"]).startswith("http://")
    assert variables["ENDPOINT_PREFIX"] == names.MODEL_DEPLOYMENT_PREFIX
    # <account>.dkr.ecr.<region>.<suffix>/<the serving image repository>:<pinned MLflow version>
    image = variables["SERVING_IMAGE_URI"]["Fn::Join"][1]
    (repository,) = resources(studio, "AWS::ECR::Repository")
    assert image[-3:] == ["/", {"Ref": repository}, f":{pinned_mlflow_version()}"]
    assert "Password" not in str(variables) and "SecretString" not in str(variables)


def test_the_worker_role_creates_and_updates_only_the_projects_endpoints(studio: Template) -> None:
    statements = _statements_of(studio, "WorkerRole")
    sagemaker_actions = {
        action for s in statements.values() for action in as_list(s["Action"]) if action.startswith("sagemaker:")
    }
    assert sagemaker_actions == {
        "sagemaker:CreateModel",
        "sagemaker:CreateEndpointConfig",
        "sagemaker:CreateEndpoint",
        "sagemaker:UpdateEndpoint",
        "sagemaker:DescribeEndpoint",
    }
    prefix = names.MODEL_DEPLOYMENT_PREFIX
    assert {render(r) for r in as_list(statements["CreateModels"]["Resource"])} == {f"{SAGEMAKER}:model/{prefix}-*"}
    assert {render(r) for r in as_list(statements["CreateAndUpdateEndpoints"]["Resource"])} == {
        f"{SAGEMAKER}:endpoint/{prefix}-*",
        f"{SAGEMAKER}:endpoint-config/{prefix}-*",
    }
    for statement in statements.values():
        assert statement["Effect"] == "Allow"
        assert not any(a.endswith("*") for a in as_list(statement["Action"])), statement


def test_endpoint_configs_only_on_allowed_instance_types(studio: Template) -> None:
    statement = _statements_of(studio, "WorkerRole")["CreateEndpointConfigsOnAllowedInstanceTypes"]
    assert statement["Action"] == "sagemaker:CreateEndpointConfig"
    assert statement["Condition"] == {
        "ForAllValues:StringEquals": {"sagemaker:InstanceTypes": ALLOWED},
        "Null": {"sagemaker:InstanceTypes": "false"},
    }


def test_the_worker_passes_only_the_endpoint_role_to_sagemaker(studio: Template) -> None:
    statements = _statements_of(studio, "WorkerRole")
    passing = [s for s in statements.values() if "iam:PassRole" in as_list(s["Action"])]
    assert len(passing) == 1
    (serving_role,) = [i for i in resources(studio, "AWS::IAM::Role") if i.startswith("ServingRole")]
    assert passing[0]["Resource"] == {"Fn::GetAtt": [serving_role, "Arn"]}
    assert passing[0]["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert _function(studio, "Worker")["Environment"]["Variables"]["ENDPOINT_ROLE_ARN"] == passing[0]["Resource"]


def test_each_function_reads_only_its_own_secret(studio: Template) -> None:
    worker = _statements_of(studio, "WorkerRole")
    receiver = _statements_of(studio, "ReceiverRole")
    (webhook_secret,) = [i for i in resources(studio, "AWS::SecretsManager::Secret") if "Webhook" in i]
    assert receiver["ReadWebhookSecret"]["Resource"] == {"Ref": webhook_secret}
    readers = [s for s in worker.values() if "secretsmanager:GetSecretValue" in as_list(s["Action"])]
    assert len(readers) == 1
    assert "CredentialsSecret" in render(readers[0]["Resource"])  # the server login, imported from the VPC stack
    assert set(receiver) == {"WriteOwnLogs", "ReadWebhookSecret", "StartDeployments"}
    (machine,) = _ours(studio, "AWS::StepFunctions::StateMachine")
    assert receiver["StartDeployments"] == {
        "Sid": "StartDeployments",
        "Effect": "Allow",
        "Action": "states:StartExecution",
        "Resource": {"Ref": machine},
    }


def test_failures_alarm_the_alarm_topic(studio: Template) -> None:
    (alarm,) = _ours(studio, "AWS::CloudWatch::Alarm").values()
    assert alarm["AlarmName"] == FAILURES_ALARM_NAME
    assert alarm["AlarmName"].startswith("mlflow-")  # the topic takes alarms of this prefix only
    assert "AlarmTopic" in render(alarm["AlarmActions"][0])
    metrics = {m["Id"]: m for m in alarm["Metrics"]}
    assert {m["MetricStat"]["Metric"]["MetricName"] for m in metrics.values() if "MetricStat" in m} == {
        "ExecutionsFailed",
        "ExecutionsTimedOut",
        "Errors",
    }


def test_functions_and_state_machine_log_to_groups_with_the_projects_retention(studio: Template) -> None:
    groups = {i: r["Properties"] for i, r in resources(studio, "AWS::Logs::LogGroup").items()}
    for function in _functions(studio).values():
        assert groups[function["LoggingConfig"]["LogGroup"]["Ref"]]["RetentionInDays"] == 30
    (machine,) = _ours(studio, "AWS::StepFunctions::StateMachine").values()
    assert machine["LoggingConfiguration"]["Level"] == "ALL"


def test_the_handlers_package_imports_as_lambda_loads_it(tmp_path: Path) -> None:
    """The asset holds the two handler folders only, and the worker finds the MLflow client beside it."""
    directory = synth_directory(**MODEL_DEPLOYMENT_VARIANT)
    studio = synth_templates(**MODEL_DEPLOYMENT_VARIANT)[names.STUDIO_STACK]
    asset = _function(studio, "Worker")["Code"]["S3Key"].removesuffix(".zip")
    root = directory / f"asset.{asset}"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [
        "functions/mlflow_accounts/index.py",
        "functions/model_deployment/index.py",
        "functions/model_deployment/receiver.py",
        "functions/model_deployment/webhook.py",
    ]
    shutil.copytree(root, tmp_path / "task")
    # One Python for the three handlers, each imported afresh (the package's modules dropped
    # before each), as each function's own runtime imports it.
    fresh = "[sys.modules.pop(name) for name in list(sys.modules) if name.split('.')[0] == 'functions']"
    checks = ["import importlib, sys"]
    for handler in (_function(studio, part)["Handler"] for part in ("Worker", "Receiver", "Registrar")):
        module, _, function = handler.rpartition(".")
        checks += [fresh, f"assert callable(importlib.import_module({module!r}).{function}), {handler!r}"]
    subprocess.run(
        [sys.executable, "-c", "\n".join(checks)],
        cwd=tmp_path / "task",
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        check=True,
    )


def test_the_stack_registers_the_webhook_with_the_receiver_url_and_the_secrets_arn(studio: Template) -> None:
    (webhook,) = resources(studio, WEBHOOK_RESOURCE_TYPE).values()
    url_id = only(studio, "AWS::Lambda::Url")[0]
    (secret_id,) = [i for i in resources(studio, "AWS::SecretsManager::Secret") if "Webhook" in i]
    properties = webhook["Properties"]
    assert properties["Name"] == WEBHOOK_NAME
    assert properties["Url"] == {"Fn::GetAtt": [url_id, "FunctionUrl"]}
    assert properties["WebhookSecretArn"] == {"Ref": secret_id}  # the value is read at run time
    registrar = _function(studio, "Registrar")
    assert registrar["VpcConfig"]["SubnetIds"]
    assert set(registrar["Environment"]["Variables"]) <= {"MLFLOW_SECRET_ARN", "MLFLOW_URL", "MLFLOW_TLS_SERVER_NAME"}
    statements = _statements_of(studio, "RegistrarRole")
    assert set(statements) == {"WriteOwnLogs", "ManageVpcNetworkInterfaces", "ReadMlflowLoginAndWebhookSecret"}
    read = as_list(statements["ReadMlflowLoginAndWebhookSecret"]["Resource"])
    assert {"Ref": secret_id} in read and len(read) == 2


def test_every_mlflow_task_gets_the_shared_webhook_key_only_with_model_deployments(vpc_template: Template) -> None:
    """MLflow stores the webhook's secret encrypted; every task derives the same key (entrypoint.py)."""

    def mlflow_secrets(template: Template) -> dict[str, Any]:
        task = service_task_definition(template)
        (mlflow,) = [c for c in task["ContainerDefinitions"] if c["Name"] == "mlflow"]
        return {s["Name"]: s["ValueFrom"] for s in mlflow.get("Secrets", [])}

    assert "MLFLOW_WEBHOOK_KEY" not in mlflow_secrets(vpc_template)
    vpc = synth_templates(**MODEL_DEPLOYMENT_VARIANT)[names.VPC_STACK]
    (key_id,) = [i for i in resources(vpc, "AWS::SecretsManager::Secret") if i.startswith("WebhookKey")]
    assert mlflow_secrets(vpc)["MLFLOW_WEBHOOK_KEY"] == {"Ref": key_id}
    assert "SecretString" not in vpc["Resources"][key_id]["Properties"]


def _managed_policy(template: Template, fragment: str) -> tuple[str, dict[str, dict[str, Any]]]:
    (found,) = [(i, r) for i, r in resources(template, "AWS::IAM::ManagedPolicy").items() if fragment in i]
    return found[0], {s["Sid"]: s for s in found[1]["Properties"]["PolicyDocument"]["Statement"]}


def test_the_worker_copies_version_files_and_endpoints_read_only_the_copies(vpc_template: Template) -> None:
    assert not [i for i in resources(vpc_template, "AWS::IAM::ManagedPolicy") if "ModelDeployment" in i]
    templates = synth_templates(**MODEL_DEPLOYMENT_VARIANT)
    vpc, studio = templates[names.VPC_STACK], templates[names.STUDIO_STACK]
    (bucket,) = [i for i in resources(vpc, "AWS::S3::Bucket") if i.startswith("StorageArtifacts")]
    _, worker = _managed_policy(vpc, "ModelDeploymentWorkerAccess")
    _, serving = _managed_policy(vpc, "ModelDeploymentServingAccess")
    copies = f"${{{bucket}.Arn}}/{names.MODEL_COPY_PREFIX}/*"
    assert {render(r) for r in as_list(worker["ReadVersionFiles"]["Resource"])} == {
        f"${{{bucket}.Arn}}/mlflow-artifacts/*"
    }
    assert {render(r) for r in as_list(worker["WriteModelCopies"]["Resource"])} == {copies}
    assert {render(r) for r in as_list(serving["ReadModelCopies"]["Resource"])} == {copies}
    assert serving["ListModelCopies"]["Condition"] == {"StringLike": {"s3:prefix": [f"{names.MODEL_COPY_PREFIX}/*"]}}
    # Outside what Studio users may write (mlflow-*/model.tar.gz, sagemaker/*): nobody else adds files there.
    assert not names.MODEL_COPY_PREFIX.startswith((names.SAGEMAKER_RESOURCE_PREFIX, "sagemaker"))
    assert all(not a.startswith("s3:Put") for s in serving.values() for a in as_list(s["Action"]))
    roles = resources(studio, "AWS::IAM::Role")
    (worker_role,) = [r for i, r in roles.items() if i.startswith("ModelDeploymentWorkerRole")]
    (serving_role,) = [r for i, r in roles.items() if i.startswith("ServingRole")]
    assert "ModelDeploymentWorkerAccess" in json.dumps(worker_role["Properties"]["ManagedPolicyArns"])
    assert "ModelDeploymentServingAccess" in json.dumps(serving_role["Properties"]["ManagedPolicyArns"])


def _mlflow_container(template: Template) -> dict[str, Any]:
    (mlflow,) = [c for c in service_task_definition(template)["ContainerDefinitions"] if c["Name"] == "mlflow"]
    return mlflow


def _task_role_statements(template: Template) -> dict[str, dict[str, Any]]:
    (policy,) = [
        r["Properties"]
        for i, r in resources(template, "AWS::IAM::Policy").items()
        if i.startswith("TrackingTaskRoleDefaultPolicy")
    ]
    return {s.get("Sid", ""): s for s in policy["PolicyDocument"]["Statement"]}


def test_in_sso_mode_the_functions_sign_in_with_a_login_the_tasks_issue() -> None:
    """sso mode signs nobody in with the server login: the functions read a secret the tasks write their token to."""
    templates = synth_templates(**SSO_MODEL_DEPLOYMENT_VARIANT)
    vpc, studio = templates[names.VPC_STACK], templates[names.STUDIO_STACK]
    (login_id,) = [i for i in resources(vpc, "AWS::SecretsManager::Secret") if i.startswith("DeploymentLogin")]
    generated = vpc["Resources"][login_id]["Properties"]["GenerateSecretString"]
    assert json.loads(generated["SecretStringTemplate"]) == {"username": names.DEPLOYMENT_LOGIN_USERNAME}
    assert generated["GenerateStringKey"] == "password"
    # The tasks learn where to write (an ARN in the environment: the value never passes through ECS)...
    with image_module("entrypoint") as entrypoint:
        assert entrypoint.DEPLOYMENT_LOGIN_ENV == names.DEPLOYMENT_LOGIN_SECRET_ENV
    environment = {e["Name"]: e["Value"] for e in _mlflow_container(vpc)["Environment"]}
    assert environment[names.DEPLOYMENT_LOGIN_SECRET_ENV] == {"Ref": login_id}
    assert names.DEPLOYMENT_LOGIN_SECRET_ENV not in {s["Name"] for s in _mlflow_container(vpc)["Secrets"]}
    # ... and may read and write that secret, no other one.
    issue = _task_role_statements(vpc)["IssueDeploymentLogin"]
    assert sorted(as_list(issue["Action"])) == ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"]
    assert as_list(issue["Resource"]) == [{"Ref": login_id}]
    # The worker and the registrar read it instead of the server login.
    for part in ("Worker", "Registrar"):
        arn = _function(studio, part)["Environment"]["Variables"]["MLFLOW_SECRET_ARN"]
        assert "DeploymentLogin" in json.dumps(arn) and "Credentials" not in json.dumps(arn)
    read = as_list(_statements_of(studio, "RegistrarRole")["ReadMlflowLoginAndWebhookSecret"]["Resource"])
    assert any("DeploymentLogin" in json.dumps(r) for r in read)


def test_the_modes_with_a_server_login_make_no_deployment_login(vpc_template: Template) -> None:
    """shared and accounts modes: the functions sign in as the shared user or MLflow's admin."""
    for template in (vpc_template, synth_templates(**MODEL_DEPLOYMENT_VARIANT)[names.VPC_STACK]):
        assert not [i for i in resources(template, "AWS::SecretsManager::Secret") if i.startswith("DeploymentLogin")]
        environment = {e["Name"] for e in _mlflow_container(template)["Environment"]}
        assert names.DEPLOYMENT_LOGIN_SECRET_ENV not in environment
        assert "IssueDeploymentLogin" not in _task_role_statements(template)
    studio = synth_templates(**MODEL_DEPLOYMENT_VARIANT)[names.STUDIO_STACK]
    assert "Credentials" in json.dumps(_function(studio, "Worker")["Environment"]["Variables"]["MLFLOW_SECRET_ARN"])


def test_a_release_waits_for_the_one_before_and_ends_when_the_alias_moved_on(studio: Template) -> None:
    """The state machine follows the worker's answers (its statuses, index.py) around the Deploy step."""
    from stacks.functions.model_deployment import index

    (machine,) = _ours(studio, "AWS::StepFunctions::StateMachine").values()
    states = json.loads(render(machine["DefinitionString"]))["States"]
    assert states["Deploy"]["Next"] == "Started"

    def choices(state: str) -> dict[str, str]:
        assert all(c["Variable"] == "$.status" for c in states[state]["Choices"])
        return {c["StringEquals"]: c["Next"] for c in states[state]["Choices"]}

    assert choices("Started") == {index.WAITING: "WaitForPreviousRelease", index.SUPERSEDED: "Superseded"}
    assert states["Started"]["Default"] == "WaitForEndpoint"
    assert (states["WaitForPreviousRelease"]["Seconds"], states["WaitForPreviousRelease"]["Next"]) == (60, "Deploy")
    assert states["Superseded"]["Type"] == "Succeed"
    assert states["WaitForEndpoint"]["Next"] == "CheckEndpoint"
    assert states["CheckEndpoint"]["Next"] == "Settled"
    assert choices("Settled") == {index.PENDING: "WaitForEndpoint", "deployed": "Deployed"}
