"""`make rotate-password` in accounts mode: MLflow's admin password changes first, then the secret, then the tasks.

AWS is moto (its own region of the session's moto server); MLflow is the
session's accounts-mode stack, reached through the proxy as the gateway's
TrackingUrl. The secret's admin is a second admin of that stack, so the
stack's own admin login (which other modules use) never changes.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from localrun.services import MotoServer
from localrun.stack import MlflowStack
from stacks import names
from tests.integration.mlflow_users import ACCOUNTS_GROUP, Account, Accounts
from tests.tools.conftest import ROOT, tool_env
from tools import rotate_password

pytestmark = [pytest.mark.integration, ACCOUNTS_GROUP]

REGION = "eu-central-1"
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


def status(stack: MlflowStack, account: Account) -> int:
    return requests.get(stack.proxy_url + SEARCH, auth=account.auth, timeout=30).status_code


class Deployment:
    """What MLflowVpcStack and HttpGatewayStack leave in moto for the command, with a fresh admin in MLflow."""

    def __init__(self, moto: MotoServer, stack: MlflowStack, admin: Account, secret: str | None = None) -> None:
        self.moto = moto
        tag = secrets.token_hex(3)
        self.secret = f"mlflow-login-{tag}"
        self.cluster, self.service = f"cluster-{tag}", f"service-{tag}"
        self.vpc_stack = f"MLflowVpcStack{tag}"
        self.admin = admin
        self.client("secretsmanager").create_secret(
            Name=self.secret,
            SecretString=secret or json.dumps({"username": admin.username, "password": admin.password}),
        )
        ecs = self.client("ecs")
        ecs.create_cluster(clusterName=self.cluster)
        ecs.register_task_definition(
            family="mlflow", containerDefinitions=[{"name": "nginx", "image": "nginx", "memory": 128}]
        )
        ecs.create_service(cluster=self.cluster, serviceName=self.service, taskDefinition="mlflow", desiredCount=2)
        outputs = {
            self.vpc_stack: {
                names.OUTPUT_CREDENTIALS_SECRET: self.secret,
                names.OUTPUT_ECS_CLUSTER: self.cluster,
                names.OUTPUT_ECS_SERVICE: self.service,
                names.OUTPUT_AUTH_MODE: "accounts",
            },
            names.GATEWAY_STACK: {names.OUTPUT_TRACKING_URL: stack.proxy_url},
        }
        cfn = self.client("cloudformation")
        for stack_name, values in outputs.items():
            template = {
                "Resources": {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
                "Outputs": {key: {"Value": value} for key, value in values.items()},
            }
            try:
                cfn.create_stack(StackName=stack_name, TemplateBody=json.dumps(template))
            except ClientError as error:  # the gateway stack of an earlier test: the same URL
                if error.response["Error"]["Code"] != "AlreadyExistsException":
                    raise

    def client(self, service: str):
        return self.moto.client(service, region_name=REGION)

    def stored(self) -> dict[str, str]:
        return json.loads(self.client("secretsmanager").get_secret_value(SecretId=self.secret)["SecretString"])

    def deployment_id(self) -> str:
        service = self.client("ecs").describe_services(cluster=self.cluster, services=[self.service])["services"][0]
        return service["deployments"][0]["id"]


@pytest.fixture
def admin(accounts: Accounts) -> Iterator[Account]:
    """Another admin of the accounts stack, deleted afterwards."""
    account = accounts.new_user("admin")
    with accounts.client() as client:
        client.update_user_admin(account.username, True)
    yield account
    accounts.delete_user(account)


def run_tool(moto: MotoServer, stack_name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.rotate_password", "--stack-name", stack_name],
        cwd=ROOT,
        env=tool_env(moto, [], AWS_REGION=REGION),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_admin_password_changes_in_mlflow_and_the_secret(
    moto_server: MotoServer, accounts_stack: MlflowStack, admin: Account
) -> None:
    deployed = Deployment(moto_server, accounts_stack, admin)
    before = deployed.deployment_id()
    result = run_tool(moto_server, deployed.vpc_stack)
    assert result.returncode == 0, result.stderr
    stored = deployed.stored()
    assert stored["username"] == admin.username
    assert re.fullmatch(r"[A-Za-z0-9]{32}", stored["password"]) and stored["password"] != admin.password
    # MLflow and the secret agree: the new password works (still as an admin), the old one no longer does.
    assert status(accounts_stack, Account(admin.username, stored["password"])) == 200
    users = requests.get(
        accounts_stack.proxy_url + "/api/2.0/mlflow/users/get",
        params={"username": admin.username},
        auth=(admin.username, stored["password"]),
        timeout=30,
    ).json()
    assert users["user"]["is_admin"] is True
    assert status(accounts_stack, admin) == 401
    assert deployed.deployment_id() != before
    assert result.stdout.startswith(
        f"rotate-password: account 123456789012, region {REGION}: new admin password set in MLflow and stored "
        f"in secret {deployed.secret}; service {deployed.service}"
    )
    assert stored["password"] not in result.stdout + result.stderr
    assert admin.password not in result.stdout + result.stderr


def test_a_secret_mlflow_does_not_accept_changes_nothing_and_a_restart_heals_it(
    moto_server: MotoServer, accounts_stack: MlflowStack, accounts: Accounts
) -> None:
    """The admin's password was changed in MLflow by hand: the tool refuses; restarted tasks take the secret's."""
    secret = accounts.admin  # the stack's admin: what its tasks got from the secret when they started
    deployed = Deployment(moto_server, accounts_stack, secret)
    before = deployed.deployment_id()
    by_hand = Account(secret.username, secret.password + "-by-hand")
    with accounts.client() as admin:
        admin.update_user_password(secret.username, by_hand.password, current_password=secret.password)
    try:
        assert status(accounts_stack, secret) == 401
        result = run_tool(moto_server, deployed.vpc_stack)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and "already disagree on the admin's password" in result.stderr
        assert f"aws ecs update-service --cluster {deployed.cluster} --service {deployed.service}" in result.stderr
        assert deployed.stored()["password"] == secret.password and deployed.deployment_id() == before
        assert status(accounts_stack, by_hand) == 200
    finally:
        accounts_stack.restart_mlflow()  # what the suggested force-new-deployment does to each task
    assert status(accounts_stack, secret) == 200
    assert status(accounts_stack, by_hand) == 401


def test_when_the_secret_cannot_be_stored_mlflow_gets_the_old_password_back(
    moto_server: MotoServer, accounts_stack: MlflowStack, admin: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployed = Deployment(moto_server, accounts_stack, admin)
    before = deployed.deployment_id()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    session = boto3.session.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    seen: list[int] = []

    def refuse(**_: object) -> None:
        # By now MLflow has the new password: the old one is refused.
        seen.append(status(accounts_stack, admin))
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "denied"}}, "PutSecretValue")

    session.events.register("before-call.secrets-manager.PutSecretValue", refuse)
    with pytest.raises(rotate_password.RotationError, match="the admin's old password was set back in MLflow"):
        rotate_password.rotate(session, deployed.vpc_stack)
    assert seen == [401]
    assert status(accounts_stack, admin) == 200
    assert deployed.stored()["password"] == admin.password and deployed.deployment_id() == before
