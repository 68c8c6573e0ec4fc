"""lab/sagemaker_steps.py: the notebook's SageMaker calls, against moto in-process."""

from __future__ import annotations

import importlib.metadata
import io
import json
import re
import tarfile

import boto3
import mlflow
import pytest
import sagemaker_steps as steps
from packaging.requirements import Requirement

from tests.lab.conftest import REGION
from tests.mlflow_databases import tracking_database


def test_mlflow_pin_comes_from_the_server_requirements():
    text = steps.PINNED_REQUIREMENTS.read_text()
    line = steps.pinned_mlflow_requirement()
    assert re.fullmatch(r"mlflow==\d+\.\d+\.\d+", line) and line in text
    # The suite itself installs the pinned version, so the notebook runs with it.
    assert steps.pinned_mlflow_version() == mlflow.__version__


def test_pin_missing_is_an_error(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("boto3==1\n# mlflow==1.0.0 commented out\nmlflow-skinny==2\n")
    with pytest.raises(steps.WorkflowError, match="pins no mlflow"):
        steps.pinned_mlflow_requirement(path)


def test_training_requirements_repeat_the_pin_and_bring_the_oauth_client_and_the_signer(tmp_path):
    written = steps.write_training_requirements(tmp_path)
    lines = [line for line in written.read_text().splitlines() if not line.startswith("#")]
    # The job's container has neither MLflow nor Authlib nor the signer; in sso mode train.py
    # needs the first two, with IAM sign-in the first and the last.
    assert lines == [steps.pinned_mlflow_requirement(), "Authlib>=1.8,<2", "requests-auth-aws-sigv4==0.7"]
    for line in lines[1:]:  # what the tests ran with
        requirement = Requirement(line)
        assert importlib.metadata.version(requirement.name) in requirement.specifier
    requirement = Requirement(lines[1])
    # The same range the server's OIDC plugin accepts.
    plugin = [Requirement(r) for r in importlib.metadata.requires("mlflow-oidc-auth") or []]
    assert [r.specifier for r in plugin if r.name.lower() == "authlib"] == [requirement.specifier]


@pytest.mark.parametrize(
    ("login", "extra"),
    [
        ({"username": "alice", "password": "pw"}, []),  # shared and accounts: a password, the pin only
        ({"client_id": "studio-alice", "client_secret": "s", "token_url": "https://idp.example.com/token"},
         ["Authlib>=1.8,<2"]),  # sso: an app client, whose token Authlib gets
    ],
    ids=["password", "app-client"],
)  # fmt: skip
def test_kernel_requirements_follow_the_profiles_login(aws, login, extra):
    from tests.lab.test_mlflow_setup import STACK_TEMPLATE, as_role

    aws.client("cloudformation").create_stack(StackName="HttpGatewayStack", TemplateBody=json.dumps(STACK_TEMPLATE))
    aws.client("secretsmanager").create_secret(Name="mlflow/users/alice/x", SecretString=json.dumps(login))
    studio = as_role(aws, "alice-studio", {"mlflow:credentials-secret": "mlflow/users/alice/x"})
    assert steps.kernel_requirements(REGION, session=studio) == [steps.pinned_mlflow_requirement(), *extra]


def test_kernel_requirements_with_iam_sign_in_bring_the_signer_and_read_no_secret(aws):
    from tests.lab.test_mlflow_setup import SECRET_NAME, as_role, deploy
    from tests.lab.test_mlflow_setup_iam import secret_reads, with_iam_output

    deploy(aws, template=with_iam_output("https://iam.example.invalid"))
    studio = as_role(aws, "alice-studio", {"mlflow:credentials-secret": SECRET_NAME})
    reads = secret_reads(studio)
    assert steps.kernel_requirements(REGION, session=studio) == [
        steps.pinned_mlflow_requirement(), "requests-auth-aws-sigv4==0.7",
    ]  # fmt: skip
    assert reads == []


def test_unmet_requirements_are_what_pip_must_install():
    mlflow_version = importlib.metadata.version("mlflow")
    authlib = f"Authlib=={importlib.metadata.version('authlib')}"
    assert steps.unmet_requirements([f"mlflow=={mlflow_version}", authlib]) == []
    assert steps.unmet_requirements(["mlflow==0.0.1", "Authlib>=1.8,<2", "no-such-distribution==1"]) == [
        "mlflow==0.0.1", "no-such-distribution==1",
    ]  # fmt: skip


def test_unique_name_is_prefixed_and_short():
    from stacks import names

    name = steps.unique_name("demo")
    assert re.fullmatch(r"mlflow-demo-\d{8}-\d{6}", name)
    prefix = names.workflow_name_prefix("alice")
    assert re.fullmatch(re.escape(prefix) + r"demo-\d{8}-\d{6}", steps.unique_name("demo", prefix))
    with pytest.raises(steps.WorkflowError):
        steps.unique_name("x" * 60)
    with pytest.raises(steps.WorkflowError):
        steps.unique_name("x" * 32, prefix)  # the profile's prefix takes 9 more characters
    with pytest.raises(steps.WorkflowError, match="the registry deployments' names"):
        steps.unique_name("registry-demo")
    assert steps.unique_name("registryish").startswith("mlflow-registryish-")
    with pytest.raises(steps.WorkflowError, match="does not start with 'mlflow-'"):
        steps.unique_name("demo", "other-")


def test_training_job_request_for_script_mode():
    request = steps.training_job_request(
        job_name="mlflow-train-1",
        role_arn="arn:aws:iam::123456789012:role/r",
        image_uri=steps.sklearn_training_image(REGION),
        code_uri="s3://b/sagemaker/mlflow-train-1/source/sourcedir.tar.gz",
        bucket="b",
        region=REGION,
        hyperparameters={"c": 0.5, "experiment-name": "demo"},
    )
    hyper = request["HyperParameters"]
    assert json.loads(hyper["c"]) == 0.5 and json.loads(hyper["experiment-name"]) == "demo"
    assert json.loads(hyper["sagemaker_program"]) == "train.py"
    assert json.loads(hyper["sagemaker_submit_directory"]).endswith("sourcedir.tar.gz")
    assert request["OutputDataConfig"]["S3OutputPath"] == "s3://b/sagemaker/mlflow-train-1/output"
    image = request["AlgorithmSpecification"]["TrainingImage"]
    assert image == "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"


def test_unknown_region_has_no_training_image():
    with pytest.raises(steps.WorkflowError, match="TRAINING_IMAGE"):
        steps.sklearn_training_image("xx-nowhere-1")


def test_execution_role_from_assumed_role(aws):
    iam = aws.client("iam")
    trust = {
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]
    }
    role = iam.create_role(RoleName="studio-role", Path="/service/", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    creds = aws.client("sts").assume_role(RoleArn=role["Arn"], RoleSessionName="SageMaker")["Credentials"]
    studio = boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=REGION,
    )
    # The role's path is not in the assumed-role ARN: GetRole gives the real ARN.
    assert steps.execution_role_arn(studio) == "arn:aws:iam::123456789012:role/service/studio-role"


def test_execution_role_refuses_a_user(aws):
    with pytest.raises(steps.WorkflowError, match="not as an IAM role"):
        steps.execution_role_arn(aws)


def test_workload_roles_come_from_the_studio_roles_tags(aws):
    from stacks import names
    from tests.lab.test_mlflow_setup import as_role

    studio = as_role(
        aws,
        "alice-studio",
        {
            "mlflow:training-role": "arn:aws:iam::123456789012:role/alice-training",
            "mlflow:serving-role": "arn:aws:iam::123456789012:role/alice-serving",
            "mlflow:name-prefix": names.workflow_name_prefix("alice"),
        },
    )
    roles = steps.workload_roles(studio)
    assert roles == steps.WorkloadRoles(
        training="arn:aws:iam::123456789012:role/alice-training",
        serving="arn:aws:iam::123456789012:role/alice-serving",
        name_prefix=names.workflow_name_prefix("alice"),
    )
    assert steps.unique_name("demo", roles.name_prefix).startswith(names.workflow_name_prefix("alice") + "demo-")


def test_a_role_from_before_per_profile_names_says_to_redeploy(aws):
    from tests.lab.test_mlflow_setup import as_role

    studio = as_role(aws, "bob-studio", {"mlflow:training-role": "arn:aws:iam::123456789012:role/bob-training"})
    with pytest.raises(steps.WorkflowError, match=r"no tags 'mlflow:serving-role' and 'mlflow:name-prefix'.*redeploy"):
        steps.workload_roles(studio)


def test_a_role_without_a_training_role_says_which_profile_to_use(aws):
    from tests.lab.test_mlflow_setup import as_role

    with pytest.raises(steps.WorkflowError, match=r"no tag 'mlflow:training-role'.*SageMakerStudioUserStack"):
        steps.workload_roles(as_role(aws, "old-role"))
    with pytest.raises(steps.WorkflowError, match="not as an IAM role"):
        steps.workload_roles(aws)


def test_lab_names_match_the_stacks():
    from stacks import names

    assert steps.STUDIO_STACK_NAME == names.STUDIO_STACK
    assert steps.DEPLOYMENT_WEBHOOK_OUTPUT_KEY == names.OUTPUT_DEPLOYMENT_WEBHOOK_URL
    from stacks.functions.model_deployment import index

    assert (steps.DEPLOYMENT_STATUS_TAG, steps.DEPLOYMENT_ENDPOINT_TAG) == (index.STATUS_TAG, index.ENDPOINT_TAG)
    assert (steps.TRAINING_ROLE_TAG, steps.SERVING_ROLE_TAG, steps.NAME_PREFIX_TAG) == (
        names.ROLE_TAG_TRAINING_ROLE,
        names.ROLE_TAG_SERVING_ROLE,
        names.ROLE_TAG_NAME_PREFIX,
    )
    assert steps.SERVING_REPOSITORY == names.SERVING_IMAGE_REPOSITORY
    assert steps.NAME_PREFIX == names.SAGEMAKER_RESOURCE_PREFIX
    assert steps.S3_PREFIX == names.TRAINING_KEY_PREFIX
    assert steps.REGISTRY_DEPLOYMENT_PREFIX + "*" == names.MODEL_DEPLOYMENT_NAMES


def test_upload_source_dir(aws, tmp_path):
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"0")
    aws.client("s3").create_bucket(Bucket="bucket-x", CreateBucketConfiguration={"LocationConstraint": REGION})
    uri = steps.upload_source_dir(aws, "bucket-x", "mlflow-train-1", tmp_path)
    assert uri == "s3://bucket-x/sagemaker/mlflow-train-1/source/sourcedir.tar.gz"
    body = aws.client("s3").get_object(Bucket="bucket-x", Key=uri.split("/", 3)[3])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.getnames() == ["train.py"]


def test_serving_image_missing_says_how_to_build_it(aws):
    # Studio users cannot start the build themselves: the deploy builds it.
    expected = r"`make deploy` builds it .* docker/mlflow/requirements.txt"
    with pytest.raises(steps.WorkflowError, match=expected) as raised:
        steps.serving_image_uri(aws, "3.17.2")
    assert "codebuild" not in str(raised.value)
    aws.client("ecr").create_repository(repositoryName="mlflow-pyfunc")
    with pytest.raises(steps.WorkflowError, match="mlflow-pyfunc:3.17.2"):
        steps.serving_image_uri(aws, "3.17.2")


def test_serving_image_uri_when_built(aws):
    ecr = aws.client("ecr")
    ecr.create_repository(repositoryName="mlflow-pyfunc")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {},
        "layers": [],
    }
    ecr.put_image(repositoryName="mlflow-pyfunc", imageManifest=json.dumps(manifest), imageTag="3.17.2")
    assert steps.serving_image_uri(aws, "3.17.2") == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlflow-pyfunc:3.17.2"


@pytest.fixture
def registry(tmp_path):
    """A real MLflow registry (SQLite) with one version of model `churn`."""
    client = mlflow.MlflowClient(tracking_uri=tracking_database(tmp_path / "mlflow.db"))
    client.create_registered_model("churn")
    client.create_model_version("churn", source=str(tmp_path / "model"))
    return client


def test_waiting_for_a_deployment_returns_its_settled_tags(registry):
    registry.set_model_version_tag("churn", "1", "deployment_status", "deployed")
    registry.set_model_version_tag("churn", "1", "sagemaker_endpoint", "mlflow-registry-churn")
    settled = steps.wait_for_deployment(registry, "churn", "1", poll_seconds=0)
    assert settled == {"deployment_status": "deployed", "sagemaker_endpoint": "mlflow-registry-churn"}


def test_an_alias_that_deploys_nothing_says_what_to_check(registry):
    with pytest.raises(steps.WorkflowError, match=r"started no deployment.*model_deployments lists 'churn'"):
        steps.wait_for_deployment(registry, "churn", "1", start_seconds=0.2, poll_seconds=0.1)


def test_a_deployment_that_never_settles_times_out(registry):
    registry.set_model_version_tag("churn", "1", "deployment_status", "updating")
    with pytest.raises(steps.WorkflowError, match="still 'updating'.*Step Functions"):
        steps.wait_for_deployment(registry, "churn", "1", finish_seconds=0.2, poll_seconds=0.1)


def test_deployments_are_configured_when_the_studio_stack_publishes_the_webhook(aws):
    cloudformation = aws.client("cloudformation")
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}, "Outputs": {}}
    cloudformation.create_stack(StackName=steps.STUDIO_STACK_NAME, TemplateBody=json.dumps(template))
    assert not steps.deployments_configured(aws)
    template["Outputs"] = {steps.DEPLOYMENT_WEBHOOK_OUTPUT_KEY: {"Value": "https://receiver.example/"}}
    cloudformation.update_stack(StackName=steps.STUDIO_STACK_NAME, TemplateBody=json.dumps(template))
    assert steps.deployments_configured(aws)
