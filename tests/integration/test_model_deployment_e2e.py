"""Issue 21 end to end on the local stack: an alias move becomes a SageMaker endpoint (moto's).

The local task runs in accounts mode, then in sso mode, with the webhook the
stack registers (webhook.py's handler). A user with MANAGE on the model (sso: an
app client with a bearer token) sets its alias; MLflow's own signed delivery
reaches a loopback receiver running the receiver's code, and each deployment it
starts runs the worker's Lambda handler (`index.handler`, with the environment
the stack gives it) the way the state machine does: Deploy, then CheckEndpoint
until the status is no longer pending. The worker reads its MLflow login from
Secrets Manager (sso: the token the server issued into it), asks the real MLflow
where the version's files are, copies them in S3 and creates the SageMaker model
and endpoint: Secrets Manager, S3 (the bucket MLflow stores artifacts in),
SageMaker and CloudWatch are moto's server. The version's tags come back through
the real MLflow.

The second move updates the endpoint blue/green: moto has no UpdateEndpoint,
and the local stand-in adds it (localrun/moto_sagemaker.py: Updating, then
InService with the new config, rolled back when a rollback alarm is in ALARM).
A third move is rolled back by its alarm, tripped during the bake as the new
variant's errors would trip it, and a fourth is refused by SageMaker: both are
tagged `failed` while the second version's variant keeps serving.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import boto3
import mlflow
import pytest
import requests
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from localrun.process import environment
from localrun.services import FAKE_AWS, MotoServer
from localrun.stack import MlflowStack
from stacks import names
from stacks.functions.mlflow_accounts.index import read_login
from stacks.functions.model_deployment import index, receiver, webhook
from tests.integration.mlflow_users import Account, Accounts, as_mlflow_user
from tests.integration.webhook_receiver import WEBHOOK_STACK_GROUP, Receiver, started_webhook_stack

# On the worker that holds the session's webhook_stack (conftest.py), not a second one of its own.
pytestmark = [pytest.mark.integration, WEBHOOK_STACK_GROUP]

SECRET = secrets.token_urlsafe(36)
MODEL = f"churn-{secrets.token_hex(3)}"
INSTANCE_TYPE = "ml.m5.large"
# In the project's list, but SageMaker offers no such instance type: the endpoint config is refused.
REFUSED_TYPE = "ml.m5.colossal"
DEPLOYMENT = {"model_name": MODEL, "alias": "champion", "instance_type": INSTANCE_TYPE, "instance_count": 1}
ROLE = "arn:aws:iam::123456789012:role/mlflow-endpoint-role"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlflow-pyfunc:3.17.2"
ENDPOINT = index.endpoint_name(names.MODEL_DEPLOYMENT_PREFIX, MODEL)


@contextmanager
def as_app_client(stack: MlflowStack, client_id: str) -> Iterator[None]:
    """The in-process MLflow client with an app client's bearer token (sso mode's code)."""
    assert stack.oidc is not None
    env = {
        k: v for k, v in stack.client_env().items() if k not in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    }
    token = stack.oidc.client_credentials_token(client_id)
    with environment(
        {**env, "MLFLOW_TRACKING_TOKEN": token, "MLFLOW_TRACKING_USERNAME": "", "MLFLOW_TRACKING_PASSWORD": ""}
    ):
        # (empty: a login some earlier code left in this process would be sent instead of the token)
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        try:
            yield
        finally:
            mlflow.set_tracking_uri(None)


class Deployment:
    """The local stack, its registered webhook, the receiver, and the worker's view of AWS (moto).

    `as_releaser`: the MLflow client as the user who registers the versions and moves the
    alias (their creator: MANAGE); `login`: the deployment functions' own MLflow login.
    """

    def __init__(
        self, stack: MlflowStack, moto: MotoServer, hook: Receiver,
        as_releaser: Callable[[], AbstractContextManager[object]], login: Account,
    ) -> None:  # fmt: skip
        self.stack, self.moto, self.hook, self.as_releaser, self.login = stack, moto, hook, as_releaser, login
        self.sagemaker = moto.client("sagemaker")
        self.update_calls: list[dict[str, Any]] = []
        # sso mode: the login secret's value before the server issued its token.
        self.replaced: dict[str, str] | None = None

    def release(self, version: str) -> dict[str, Any]:
        """Set the alias as the model's manager; the one deployment MLflow's delivery started."""
        seen = len(self.hook.statuses)
        with self.as_releaser():
            MlflowClient().set_registered_model_alias(MODEL, "champion", version)
        self.hook.wait_for(seen + 1)
        assert self.hook.statuses[seen:] == [202]
        request = self.hook.started[-1]
        assert request == {**self.hook.deployments[0], "version": version}
        return request

    def tags(self, version: str) -> dict[str, str]:
        with as_mlflow_user(self.stack, self.login):
            return dict(MlflowClient().get_model_version(MODEL, version).tags)

    def serving(self) -> tuple[str, list[str]]:
        described = self.sagemaker.describe_endpoint(EndpointName=ENDPOINT)
        return described["EndpointStatus"], [v["VariantName"] for v in described["ProductionVariants"]]


def run_execution(request: dict[str, Any]) -> str:
    """The state machine: Deploy (again while it answers waiting), then CheckEndpoint until settled.

    A raise fails the execution; superseded ends it.
    """
    answer = index.handler(request, None)
    for _ in range(int(30 / CHECK_INTERVAL)):
        if answer["status"] != index.WAITING:
            break
        time.sleep(CHECK_INTERVAL)
        answer = index.handler(answer, None)
    if answer["status"] == index.SUPERSEDED:
        return index.SUPERSEDED
    return check_until_settled(answer)


# The state machine's wait between checks, shortened: moto's endpoints change state when described
# (localrun/moto_sagemaker.py), not as time passes, so a longer wait would only be idle.
CHECK_INTERVAL = 0.1


def check_until_settled(answer: dict[str, Any]) -> str:
    """The state machine after Deploy: CheckEndpoint every CHECK_INTERVAL until settled (30 s at most)."""
    for _ in range(int(30 / CHECK_INTERVAL)):
        if answer["status"] != index.PENDING:
            return str(answer["status"])
        time.sleep(CHECK_INTERVAL)
        answer = index.handler(answer, None)
    raise AssertionError(f"the endpoint did not settle: {answer}")


# sso mode: the app client (a Studio profile's, say) that releases.
RELEASER_CLIENT = "studio-releaser"


@pytest.fixture(scope="module", params=["accounts", "sso"])
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, moto_server: MotoServer
) -> Iterator[Deployment]:
    """The flow in `accounts` mode (the functions sign in as MLflow's admin) and `sso` mode (as the
    service account the server issues a token for into the deployment login secret)."""
    mode: str = request.param
    secretsmanager = moto_server.client("secretsmanager")
    placeholder: dict[str, str] = {}
    if mode == "sso":
        # What the VPC stack creates: a generated password the server replaces with its token.
        placeholder = {"username": names.DEPLOYMENT_LOGIN_USERNAME, "password": secrets.token_urlsafe(24)}
        login_arn = secretsmanager.create_secret(
            Name=f"mlflow-deployment-login-{secrets.token_hex(3)}", SecretString=json.dumps(placeholder)
        )["ARN"]
        server_env = {
            names.DEPLOYMENT_LOGIN_SECRET_ENV: login_arn,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_server.endpoint_url,
        }
        stack = started_webhook_stack(
            tmp_path_factory.mktemp("deploy-stack"), moto_server, auth_mode="sso", server_env=server_env,
            machine_clients=[RELEASER_CLIENT],
        )  # fmt: skip
    else:
        # The session's (conftest.py), which test_model_deployment_webhook also uses: this module's
        # webhook is deleted below, and its model has a name of its own.
        stack = request.getfixturevalue("webhook_stack")
        login_arn = secretsmanager.create_secret(
            Name=f"mlflow-login-{secrets.token_hex(3)}",
            SecretString=json.dumps({"username": stack.username, "password": stack.password}),
        )["ARN"]
    hook = Receiver(SECRET, [dict(DEPLOYMENT)])
    worker_env = {
        **FAKE_AWS,
        "AWS_ENDPOINT_URL": moto_server.endpoint_url,
        "MLFLOW_SECRET_ARN": login_arn,
        "MLFLOW_URL": stack.proxy_url,
        "SERVING_IMAGE_URI": IMAGE,
        "ENDPOINT_ROLE_ARN": ROLE,
        "ARTIFACT_S3_ROOT": stack.artifacts_destination,
        "MODEL_DATA_S3_ROOT": f"s3://{stack.bucket}/{names.MODEL_COPY_PREFIX}",
        "ENDPOINT_PREFIX": names.MODEL_DEPLOYMENT_PREFIX,
        "ALLOWED_INSTANCE_TYPES": json.dumps([INSTANCE_TYPE, REFUSED_TYPE]),
        "ALARM_ACTIONS": json.dumps(["arn:aws:sns:us-east-1:123456789012:mlflow-alarms"]),
    }
    properties = {"Name": "sagemaker-model-deployment", "Url": hook.url}
    if mode == "sso":
        as_releaser: Callable[[], AbstractContextManager[object]] = lambda: as_app_client(stack, RELEASER_CLIENT)  # noqa: E731
    else:
        releaser = Accounts(stack).new_user("releaser")
        as_releaser = lambda: as_mlflow_user(stack, releaser)  # noqa: E731
    session = boto3.DEFAULT_SESSION
    try:
        with environment(worker_env):
            boto3.setup_default_session()
            # The registrar's and the worker's own sign-in: the login they read from Secrets Manager.
            admin = index.mlflow_from_environment()
            created = webhook.handle(
                {"RequestType": "Create", "ResourceProperties": properties}, mlflow=admin, secret=SECRET
            )
            login = Account(*read_login(login_arn, "MLflow login secret"))
            result = Deployment(stack, moto_server, hook, as_releaser, login)
            result.replaced = placeholder if mode == "sso" else None
            # Observe (not change) what the worker asks SageMaker to update.
            boto3.DEFAULT_SESSION.events.register(
                "before-parameter-build.sagemaker.UpdateEndpoint",
                lambda params, **_: result.update_calls.append(params),
            )
            yield result
            # The next mode's run starts without an endpoint (moto is the session's).
            result.sagemaker.delete_endpoint(EndpointName=ENDPOINT)
            deleted = {"RequestType": "Delete", "PhysicalResourceId": created["PhysicalResourceId"]}
            webhook.handle({**deleted, "ResourceProperties": properties}, mlflow=admin, secret=SECRET)
    finally:
        boto3.DEFAULT_SESSION = session
        hook.stop()
        if mode == "sso":  # its own: no other module needs sso mode with the deployment login
            stack.stop()


def _keys(deployment: Deployment, prefix_uri: str) -> set[str]:
    """The object names under an s3:// prefix of the stack's bucket, relative to it."""
    bucket, prefix = prefix_uri.removeprefix("s3://").split("/", 1)
    listed = deployment.moto.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {item["Key"][len(prefix) :] for item in listed.get("Contents", [])}


def _register_versions(deployment: Deployment, count: int) -> list[str]:
    """Versions the releaser logs and registers (its creator: MANAGE on the model)."""
    versions = []
    with deployment.as_releaser():
        # Its own experiment (the default one is not the releaser's), not left active for other modules.
        found = MlflowClient().get_experiment_by_name(MODEL)
        experiment = found.experiment_id if found else MlflowClient().create_experiment(MODEL)
        for _ in range(count):
            with mlflow.start_run(experiment_id=experiment):
                info = mlflow.sklearn.log_model(
                    LogisticRegression().fit([[0.0], [1.0]], [0, 1]), name="model",
                    registered_model_name=MODEL, pip_requirements=["scikit-learn"],
                )  # fmt: skip
            versions.append(str(info.registered_model_version))
    return versions


def test_alias_moves_deploy_through_mlflows_webhook_to_the_endpoint(deployment: Deployment) -> None:
    first, second, third, fourth = _register_versions(deployment, 4)

    # 1. The first release creates the endpoint with the version's model.
    assert run_execution(deployment.release(first)) == "deployed"
    assert deployment.tags(first) == {"sagemaker_endpoint": ENDPOINT, "deployment_status": "deployed"}
    assert deployment.serving() == ("InService", [f"v{first}"])
    sagemaker = deployment.sagemaker
    config = sagemaker.describe_endpoint_config(
        EndpointConfigName=sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    )
    (variant,) = config["ProductionVariants"]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == (INSTANCE_TYPE, 1)
    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    assert (model["ExecutionRoleArn"], model["PrimaryContainer"]["Image"]) == (ROLE, IMAGE)
    model_data = model["PrimaryContainer"]["ModelDataSource"]["S3DataSource"]["S3Uri"]
    copy_prefix = f"{names.MODEL_COPY_PREFIX}/{ENDPOINT}-v{first}/"
    assert model_data == f"s3://{deployment.stack.bucket}/{copy_prefix}"
    with as_mlflow_user(deployment.stack, deployment.login):
        source = index.model_data_s3_uri(
            MlflowClient().get_model_version_download_uri(MODEL, first), deployment.stack.artifacts_destination
        )
    # The version's own files, all of them, outside MLflow's prefix.
    assert "MLmodel" in _keys(deployment, model_data) == _keys(deployment, source)

    # 2. The second release updates the endpoint blue/green, with auto-rollback on its variant's errors.
    assert run_execution(deployment.release(second)) == "deployed"
    assert deployment.tags(second) == {"sagemaker_endpoint": ENDPOINT, "deployment_status": "deployed"}
    assert deployment.serving() == ("InService", [f"v{second}"])
    (update,) = deployment.update_calls
    alarm = index.errors_alarm_name(ENDPOINT, f"v{second}")
    assert update["EndpointName"] == ENDPOINT
    assert update["DeploymentConfig"]["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": alarm}]}
    described = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert described["EndpointConfigName"] == update["EndpointConfigName"]
    assert described["LastDeploymentConfig"] == update["DeploymentConfig"]
    (variant,) = sagemaker.describe_endpoint_config(EndpointConfigName=update["EndpointConfigName"])[
        "ProductionVariants"
    ]
    model_data = sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]["ModelDataSource"]
    assert model_data["S3DataSource"]["S3Uri"].endswith(f"/{ENDPOINT}-v{second}/")
    cloudwatch = deployment.moto.client("cloudwatch")
    (rollback,) = cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"]
    assert {d["Name"]: d["Value"] for d in rollback["Dimensions"]} == {
        "EndpointName": ENDPOINT,
        "VariantName": f"v{second}",
    }
    assert deployment.tags(first)["deployment_status"] == "deployed"  # a record of that release, kept

    # 3. The third release's variant fails during the bake: its alarm rolls the update back.
    deploying = index.handler(deployment.release(third), None)
    third_alarm = index.errors_alarm_name(ENDPOINT, f"v{third}")
    assert deployment.update_calls[-1]["DeploymentConfig"]["AutoRollbackConfiguration"] == {
        "Alarms": [{"AlarmName": third_alarm}]
    }
    cloudwatch.set_alarm_state(AlarmName=third_alarm, StateValue="ALARM", StateReason="5xx from the new variant")
    assert check_until_settled(deploying) == "failed"
    assert deployment.tags(third) == {"sagemaker_endpoint": ENDPOINT, "deployment_status": "failed"}
    assert deployment.serving() == ("InService", [f"v{second}"])
    described = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert described["EndpointConfigName"] == update["EndpointConfigName"]
    assert third_alarm in described["FailureReason"]

    # 4. A deployment SageMaker refuses (no such instance type) is tagged failed; the old variant serves on.
    deployment.hook.deployments[0]["instance_type"] = REFUSED_TYPE
    with pytest.raises(Exception, match="ValidationException.*instanceType"):
        run_execution(deployment.release(fourth))
    assert deployment.tags(fourth) == {"sagemaker_endpoint": ENDPOINT, "deployment_status": "failed"}
    assert len(deployment.update_calls) == 2  # nothing reached the endpoint
    assert deployment.serving() == ("InService", [f"v{second}"])
    assert deployment.tags(second)["deployment_status"] == "deployed"

    # 5. A roll-back while the release before is still updating waits its turn, then deploys:
    #    what serves in the end is what the alias names.
    deployment.hook.deployments[0]["instance_type"] = INSTANCE_TYPE
    first_again = deployment.release(first)
    updating = index.handler(first_again, None)  # the endpoint is updating (moto: until it is next described)
    rollback = index.handler(deployment.release(second), None)
    assert rollback["status"] == index.WAITING
    assert deployment.tags(second)["deployment_status"] == "waiting"
    assert check_until_settled(updating) == "deployed"  # the release before finishes as it began
    assert run_execution(rollback) == "deployed"
    assert deployment.serving() == ("InService", [f"v{second}"])
    assert deployment.tags(second)["deployment_status"] == "deployed"
    assert len(deployment.update_calls) == 4

    # 6. A delivery of a move the alias has gone past (late, or sent twice) starts nothing.
    assert run_execution(first_again) == index.SUPERSEDED
    assert len(deployment.update_calls) == 4
    assert deployment.serving() == ("InService", [f"v{second}"])
    assert deployment.tags(first)["deployment_status"] == "deployed"


def test_the_functions_sign_in_with_their_own_login(deployment: Deployment) -> None:
    """accounts: MLflow's admin (the server login). sso: the service account the server issued a token for."""
    whoami = requests.get(f"{deployment.stack.proxy_url}/api/2.0/mlflow/users/current", auth=deployment.login.auth,
                          timeout=30)  # fmt: skip
    if deployment.replaced is None:
        assert deployment.login == Account(deployment.stack.username, deployment.stack.password)
        return
    assert whoami.status_code == 200, whoami.text
    assert whoami.json()["username"] == names.DEPLOYMENT_LOGIN_USERNAME
    assert whoami.json()["is_admin"] is True
    # The value the stack generated was replaced; as a password it signs in nowhere.
    assert deployment.login.password != deployment.replaced["password"]
    refused = requests.get(
        f"{deployment.stack.proxy_url}/api/2.0/mlflow/users/current",
        auth=(deployment.replaced["username"], deployment.replaced["password"]), timeout=30,
    )  # fmt: skip
    assert refused.status_code == 401


def test_a_forged_or_replayed_delivery_is_refused(deployment: Deployment) -> None:
    """MLflow's own delivery, re-sent with another signature, or after its five minutes: nothing starts."""
    (version,) = _register_versions(deployment, 1)
    deployment.hook.deployments[0]["instance_type"] = INSTANCE_TYPE
    started, seen = len(deployment.hook.started), len(deployment.hook.statuses)
    with deployment.as_releaser():
        MlflowClient().set_registered_model_alias(MODEL, "challenger", version)  # not configured: 200, no start
    # Counted before the move: the delivery may have arrived by the time the call returns.
    deployment.hook.wait_for(seen + 1)
    genuine = deployment.hook.deliveries[-1]
    assert deployment.hook.statuses[seen:] == [200]
    stamp = int(genuine["headers"]["x-mlflow-timestamp"])

    # An attacker's edit of it, posted to the receiver with MLflow's headers: the signature no longer fits.
    forged = genuine["body"].replace('"challenger"', '"champion"')
    answer = requests.post(deployment.hook.url, data=forged, headers=genuine["headers"], timeout=10)
    assert answer.status_code == 401
    assert deployment.hook.deliveries[-1]["body"] == forged

    # The genuine delivery, unchanged, five minutes and a second later.
    aged = receiver.handle(
        genuine, secret=SECRET, deployments=deployment.hook.deployments, start=deployment.hook.start,
        now=stamp + 301,
    )  # fmt: skip
    assert aged["statusCode"] == 401
    assert "older than 5 minutes" in json.loads(aged["body"])["refused"]
    assert len(deployment.hook.started) == started

    # A configured move's delivery, posted again within its five minutes: one execution, named for it.
    request = deployment.release(version)
    release = deployment.hook.deliveries[-1]
    assert deployment.hook.execution_names[-1] == release["headers"]["x-mlflow-delivery-id"]
    again = requests.post(deployment.hook.url, data=release["body"], headers=release["headers"], timeout=10)
    assert again.status_code == 200
    assert deployment.hook.started[-1] == request and len(deployment.hook.started) == started + 1
