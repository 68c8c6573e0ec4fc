"""The SageMaker steps of the notebook, kept out of its cells so they stay short.

Plain boto3 calls (no SageMaker Python SDK): the notebook reads as the list of
AWS calls it makes, and the Studio role's policy (stacks/) can be checked
against exactly those calls. Every name the flow creates starts with the
profile's own prefix (`mlflow-<8 hex digits>-`, a tag on its role), the names its
roles' SageMaker and bucket permissions are scoped to.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3

LAB_DIR = Path(__file__).resolve().parent
SOURCE_DIR = LAB_DIR / "source_dir"
if str(SOURCE_DIR) not in sys.path:  # mlflow_setup ships with the training job's code
    sys.path.insert(0, str(SOURCE_DIR))
import mlflow_setup  # noqa: E402

# The one file that pins MLflow for the server, the tests and this lab.
PINNED_REQUIREMENTS = LAB_DIR.parent / "docker" / "mlflow" / "requirements.txt"
NAME_PREFIX = "mlflow-"
# Names the registry's alias deployments use: the Studio role may not change them.
REGISTRY_DEPLOYMENT_PREFIX = "mlflow-registry-"
S3_PREFIX = "sagemaker"  # training jobs' keys: S3_PREFIX/<job name>/source|output
SERVING_REPOSITORY = "mlflow-pyfunc"
STUDIO_STACK_NAME = "SageMakerStudioUserStack"
# Published only when the stack deploys models on alias moves (model_deployments).
DEPLOYMENT_WEBHOOK_OUTPUT_KEY = "ModelDeploymentWebhookUrl"
# What the deployment worker tags a model version with, and the statuses it ends on.
DEPLOYMENT_STATUS_TAG = "deployment_status"
DEPLOYMENT_ENDPOINT_TAG = "sagemaker_endpoint"
DEPLOYMENT_SETTLED = ("deployed", "failed")
# Tags on each Studio execution role: the roles its SageMaker workloads run as.
TRAINING_ROLE_TAG = "mlflow:training-role"
SERVING_ROLE_TAG = "mlflow:serving-role"
NAME_PREFIX_TAG = "mlflow:name-prefix"

# SageMaker's scikit-learn 1.4-2 image (Python 3.10, which MLflow 3 needs) is
# published by one AWS account per region.
SKLEARN_IMAGE_TAG = "1.4-2-cpu-py3"
SKLEARN_IMAGE_ACCOUNTS = {
    "af-south-1": "510948584623",
    "ap-east-1": "651117190479",
    "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698",
    "ap-northeast-3": "867004704886",
    "ap-south-1": "720646828776",
    "ap-southeast-1": "121021644041",
    "ap-southeast-2": "783357654285",
    "ap-southeast-3": "951798379941",
    "ca-central-1": "341280168497",
    "eu-central-1": "492215442770",
    "eu-north-1": "662702820516",
    "eu-south-1": "978288397137",
    "eu-west-1": "141502667606",
    "eu-west-2": "764974769150",
    "eu-west-3": "659782779980",
    "me-south-1": "801668240914",
    "sa-east-1": "737474898029",
    "us-east-1": "683313688378",
    "us-east-2": "257758044811",
    "us-west-1": "746614075791",
    "us-west-2": "246618743249",
}


class WorkflowError(RuntimeError):
    """A step cannot go on; the message says what to do."""


def pinned_mlflow_requirement(path: Path = PINNED_REQUIREMENTS) -> str:
    """The `mlflow==X.Y.Z` line of the server's requirements file."""
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.lower().startswith("mlflow=="):
            return line
    raise WorkflowError(f"{path} pins no mlflow version (expected a line mlflow==X.Y.Z)")


def pinned_mlflow_version(path: Path = PINNED_REQUIREMENTS) -> str:
    return pinned_mlflow_requirement(path).split("==", 1)[1]


def kernel_requirements(region: str | None = None, session: boto3.session.Session | None = None) -> list[str]:
    """What the notebook's kernel needs: the server's MLflow pin, and the signer or the OAuth client.

    The same choice configure_mlflow() makes: with IAM sign-in (the gateway
    stack publishes its URL) MLflow's client signs with requests-auth-aws-sigv4
    and no secret is read; in sso mode this profile's MLflow login (the same
    secret it reads) is an app client, whose token it gets with Authlib. In
    shared and accounts modes without IAM the login is a password: the pin only.
    """
    session = session or boto3.session.Session()
    region = mlflow_setup.resolve_region(region, session)
    requirements = [pinned_mlflow_requirement()]
    if mlflow_setup.iam_tracking_url(session, region) is not None:
        return [*requirements, mlflow_setup.SIGV4_SIGNER_REQUIREMENT]
    secret_name, _ = mlflow_setup.find_credentials_secret(session, region)
    if mlflow_setup.is_app_client(mlflow_setup.read_login(session, region, secret_name)):
        requirements.append(mlflow_setup.OAUTH_CLIENT_REQUIREMENT)
    return requirements


def unmet_requirements(requirements: list[str]) -> list[str]:
    """Those of ``requirements`` no installed distribution satisfies (what pip must install)."""
    from packaging.requirements import Requirement

    unmet = []
    for text in requirements:
        requirement = Requirement(text)
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is None or not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(text)
    return unmet


def write_training_requirements(source_dir: Path = SOURCE_DIR) -> Path:
    """source_dir/requirements.txt, which the training container pip-installs first.

    The server's MLflow pin, the OAuth client mlflow_setup gets an sso-mode
    profile's token with, and the signer MLflow's client uses with IAM sign-in
    (the scikit-learn image has none of them).
    """
    target = source_dir / "requirements.txt"
    target.write_text(
        "# Generated by the notebook from docker/mlflow/requirements.txt: do not edit.\n"
        f"{pinned_mlflow_requirement()}\n"
        f"{mlflow_setup.OAUTH_CLIENT_REQUIREMENT}\n"
        f"{mlflow_setup.SIGV4_SIGNER_REQUIREMENT}\n"
    )
    return target


def unique_name(base: str, prefix: str = NAME_PREFIX, max_length: int = 63) -> str:
    """`<prefix><base>-<UTC timestamp>`, short enough for any SageMaker name.

    `prefix`: the profile's (`WorkloadRoles.name_prefix`), the only names its roles may use.
    """
    if not prefix.startswith(NAME_PREFIX):
        raise WorkflowError(f"{prefix!r} does not start with {NAME_PREFIX!r}")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    name = f"{prefix}{base}-{stamp}"
    if len(name) > max_length:
        raise WorkflowError(f"{name!r} is longer than {max_length} characters; shorten {base!r}")
    if name.startswith(REGISTRY_DEPLOYMENT_PREFIX):
        raise WorkflowError(
            f"{name!r} starts with {REGISTRY_DEPLOYMENT_PREFIX!r}, the registry deployments' names, which this "
            f"role may not create or change; choose a base other than {base!r}"
        )
    return name


def _studio_role(session: boto3.session.Session) -> mlflow_setup.CallerRole:
    role = mlflow_setup.caller_role(session)
    if role is None:
        caller = session.client("sts").get_caller_identity()["Arn"]
        raise WorkflowError(
            f"Running as {caller}, not as an IAM role. Run the notebook in SageMaker Studio "
            "with a user profile from SageMakerStudioUserStack."
        )
    return role


def execution_role_arn(session: boto3.session.Session) -> str:
    """The ARN of the role this notebook runs as (the Studio execution role)."""
    return _studio_role(session).arn


@dataclass(frozen=True)
class WorkloadRoles:
    """The roles SageMaker runs this user's work as; the Studio role passes them."""

    training: str  # training jobs: this user's MLflow login, job code and output
    serving: str  # models and endpoints: model data and the serving image, no MLflow login
    name_prefix: str  # the SageMaker names (and bucket keys) this profile's roles may use


def workload_roles(session: boto3.session.Session) -> WorkloadRoles:
    """From the Studio execution role's tags."""
    role = _studio_role(session)
    training = role.tags.get(TRAINING_ROLE_TAG)
    if not training:
        raise WorkflowError(
            f"Role {role.name} has no tag {TRAINING_ROLE_TAG!r}: run the notebook as a user profile "
            f"created by {STUDIO_STACK_NAME} (redeploy it if the profile predates its training roles)."
        )
    serving = role.tags.get(SERVING_ROLE_TAG)
    name_prefix = role.tags.get(NAME_PREFIX_TAG)
    if not (serving and name_prefix):
        raise WorkflowError(
            f"Role {role.name} has no tags {SERVING_ROLE_TAG!r} and {NAME_PREFIX_TAG!r}: redeploy "
            f"{STUDIO_STACK_NAME}, which gives each profile its own serving role and names."
        )
    return WorkloadRoles(training=training, serving=serving, name_prefix=name_prefix)


def sklearn_training_image(region: str) -> str:
    """URI of SageMaker's scikit-learn training image in `region`."""
    account = SKLEARN_IMAGE_ACCOUNTS.get(region)
    if account is None:
        raise WorkflowError(f"No scikit-learn image account known for {region}; set TRAINING_IMAGE in the notebook.")
    return f"{account}.dkr.ecr.{region}.amazonaws.com/sagemaker-scikit-learn:{SKLEARN_IMAGE_TAG}"


def upload_source_dir(session: boto3.session.Session, bucket: str, job_name: str, source_dir: Path = SOURCE_DIR) -> str:
    """Tar source_dir (train.py, mlflow_setup.py and its signing_session.py, requirements.txt) to S3 for the job."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(source_dir.iterdir()):
            if path.name != "__pycache__":
                tar.add(path, arcname=path.name)
    key = f"{S3_PREFIX}/{job_name}/source/sourcedir.tar.gz"
    session.client("s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
    return f"s3://{bucket}/{key}"


def training_job_request(
    *,
    job_name: str,
    role_arn: str,
    image_uri: str,
    code_uri: str,
    bucket: str,
    region: str,
    hyperparameters: dict[str, Any],
    instance_type: str = "ml.m5.large",
    max_runtime_seconds: int = 3600,
) -> dict[str, Any]:
    """CreateTrainingJob arguments for a script-mode job running source_dir/train.py.

    The framework image's training toolkit downloads `sagemaker_submit_directory`,
    pip-installs its requirements.txt and runs `sagemaker_program` with every
    other hyperparameter as `--name value`; values are JSON-encoded like the
    SageMaker SDK does.
    """
    hyper = {name: json.dumps(value) for name, value in hyperparameters.items()}
    hyper.update(
        sagemaker_program=json.dumps("train.py"),
        sagemaker_submit_directory=json.dumps(code_uri),
        sagemaker_region=json.dumps(region),
    )
    return {
        "TrainingJobName": job_name,
        "RoleArn": role_arn,
        "AlgorithmSpecification": {"TrainingImage": image_uri, "TrainingInputMode": "File"},
        "HyperParameters": hyper,
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/{S3_PREFIX}/{job_name}/output"},
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_seconds},
    }


def wait_for_training_job(session: boto3.session.Session, job_name: str, poll_seconds: float = 30) -> dict[str, Any]:
    """Poll DescribeTrainingJob until the job ends; raise with SageMaker's reason if it failed."""
    sagemaker = session.client("sagemaker")
    while True:
        job = sagemaker.describe_training_job(TrainingJobName=job_name)
        status = job["TrainingJobStatus"]
        if status == "Completed":
            return job
        if status in ("Failed", "Stopped"):
            raise WorkflowError(
                f"Training job {job_name} {status.lower()}: {job.get('FailureReason', 'no reason')}."
                " See its logs in CloudWatch under /aws/sagemaker/TrainingJobs."
            )
        print(f"{job_name}: {status} / {job.get('SecondaryStatus', '')}")
        time.sleep(poll_seconds)


def deployments_configured(session: boto3.session.Session) -> bool:
    """Whether moving an alias deploys anything here: the Studio stack then publishes the webhook's URL."""
    try:
        mlflow_setup.stack_output(session, session.region_name, STUDIO_STACK_NAME, DEPLOYMENT_WEBHOOK_OUTPUT_KEY)
    except mlflow_setup.MlflowSetupError:
        return False
    return True


def wait_for_deployment(
    client: Any,
    name: str,
    version: str,
    *,
    start_seconds: float = 180,
    finish_seconds: float = 3600,
    poll_seconds: float = 15,
) -> dict[str, str]:
    """Poll the version's tags until the deployment its alias started settles; its status and endpoint.

    No status tag within `start_seconds` means no deployment started (MLflow's servers may
    take a minute to see a new webhook); the error says what to check.
    """
    started = time.monotonic()
    while True:
        tags = client.get_model_version(name, version).tags
        status = tags.get(DEPLOYMENT_STATUS_TAG)
        if status in DEPLOYMENT_SETTLED:
            return {key: tags[key] for key in (DEPLOYMENT_STATUS_TAG, DEPLOYMENT_ENDPOINT_TAG) if key in tags}
        waited = time.monotonic() - started
        if status is None and waited > start_seconds:
            raise WorkflowError(
                f"No {DEPLOYMENT_STATUS_TAG!r} tag on {name} version {version} after {waited:.0f} s: moving the "
                f"alias started no deployment. Check that model_deployments lists {name!r} with this alias "
                "(docs/model-deployment.md) and the webhook receiver's logs."
            )
        if waited > finish_seconds:
            raise WorkflowError(
                f"{name} version {version} is still {status!r} after {waited:.0f} s; see the deployment state "
                "machine's executions in the Step Functions console."
            )
        print(f"{name} version {version}: {status or 'waiting for the deployment to start'}")
        time.sleep(poll_seconds)


def run_train_locally(*args: str, source_dir: Path = SOURCE_DIR) -> str:
    """Run train.py in this environment (MLflow already configured); returns its output."""
    done = subprocess.run(
        [sys.executable, str(source_dir / "train.py"), *args],
        cwd=source_dir,
        text=True,
        capture_output=True,
    )
    if done.returncode != 0:
        raise WorkflowError(f"train.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def run_like_training_job(
    request: dict[str, Any], source_dir: Path = SOURCE_DIR, region: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Offline stand-in for the training container: same script, arguments, role and job identity.

    Runs train.py the way the scikit-learn image's toolkit does: hyperparameters
    (minus the toolkit's own) decoded into `--name value` arguments, the job's
    name and ARN in the environment, SM_MODEL_DIR set, and no MLflow variables,
    so the script configures MLflow from the stacks itself as it does in AWS.
    Like SageMaker, it assumes the job's role, so the script runs with that
    role's credentials (offline, the fake AWS lets any caller assume any role).
    """
    hyper = {k: json.loads(v) for k, v in request["HyperParameters"].items()}
    args: list[str] = []
    for name, value in hyper.items():
        if not name.startswith("sagemaker_"):
            args += [f"--{name}", str(value)]
    region = region or hyper.get("sagemaker_region") or os.environ.get("AWS_REGION", "")
    job_name = request["TrainingJobName"]
    sts = boto3.session.Session().client("sts")
    account = sts.get_caller_identity()["Account"]
    credentials = sts.assume_role(RoleArn=request["RoleArn"], RoleSessionName="SageMaker")["Credentials"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "AWS_PROFILE"))}
    with tempfile.TemporaryDirectory(prefix="sm-model-") as model_dir:
        env.update(
            request.get("Environment", {}),
            AWS_ACCESS_KEY_ID=credentials["AccessKeyId"],
            AWS_SECRET_ACCESS_KEY=credentials["SecretAccessKey"],
            AWS_SESSION_TOKEN=credentials["SessionToken"],
            TRAINING_JOB_NAME=job_name,
            TRAINING_JOB_ARN=f"arn:aws:sagemaker:{region}:{account}:training-job/{job_name}",
            SM_MODEL_DIR=model_dir,
            SM_CURRENT_INSTANCE_TYPE=request["ResourceConfig"]["InstanceType"],
            SM_TRAINING_ENV=json.dumps({"job_name": job_name, "hyperparameters": hyper}),
        )
        done = subprocess.run(
            [sys.executable, str(source_dir / "train.py"), *args],
            cwd=source_dir,
            env=env,
            text=True,
            capture_output=True,
        )
    if done.returncode != 0:
        raise WorkflowError(f"train.py failed as training job {job_name}:\n{done.stderr[-3000:]}")
    return done


def serving_image_uri(session: boto3.session.Session, mlflow_version: str) -> str:
    """URI of the mlflow-pyfunc serving image for this MLflow version, checked to exist."""
    ecr = session.client("ecr")
    try:
        image = ecr.describe_images(repositoryName=SERVING_REPOSITORY, imageIds=[{"imageTag": mlflow_version}])[
            "imageDetails"
        ][0]
    except (ecr.exceptions.ImageNotFoundException, ecr.exceptions.RepositoryNotFoundException):
        raise WorkflowError(
            f"No {SERVING_REPOSITORY}:{mlflow_version} image in ECR. `make deploy` builds it for the MLflow "
            "version pinned in docker/mlflow/requirements.txt; this clone pins one the deployed stacks do not "
            "have: ask whoever deployed them to deploy this version, or use a clone at the deployed version."
        ) from None
    region = session.region_name
    return f"{image['registryId']}.dkr.ecr.{region}.amazonaws.com/{SERVING_REPOSITORY}:{mlflow_version}"
