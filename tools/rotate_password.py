"""Give the login in the credentials secret a new generated password, then restart the tasks.

1. Reads MLflowVpcStack's outputs: the credentials secret's name, the ECS
   cluster and service, and the authentication mode.
2. Has Secrets Manager generate a password like the first one (32 letters and
   digits).
3. In accounts mode the secret's user is MLflow's admin, whose password MLflow
   keeps in its own database: the admin first changes it through MLflow's
   users API (update-password), reached at HttpGatewayStack's TrackingUrl like
   every other client (the tool runs outside the VPC, so the internal load
   balancer is out of reach). The old login is checked first; if anything
   after the change fails, the old password is put back, so the secret and
   MLflow never disagree for longer than this command runs.
4. Stores the password in the secret, keeping every other field of its JSON
   (``{"username", "password"}``).
5. Forces a new deployment of the service: new tasks read the new password
   when they start. In shared mode nginx checks it, and the old tasks keep the
   old password until they are replaced (a few minutes, during which clients
   see both passwords work, one per task); in accounts mode MLflow already
   checks the new one on every task, and the new tasks find the admin's stored
   password equal to the secret.

The password is never printed. Clients read the new one from the secret
(`configure_mlflow()`, the README's credentials commands).

    python -m tools.rotate_password [--stack-name MLflowVpcStack]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from stacks import names
from stacks.auth_modes import MODES, needs_of
from tools.aws_account import AwsSetupError, cdk_session, resolve
from tools.mlflow_admin import MlflowAdmin, MlflowAdminError

# The modes whose secret is a password: the one nginx checks, or MLflow's admin.
SUPPORTED_MODES = tuple(mode for mode, needs in MODES.items() if needs.uses_credentials)


class RotationError(Exception):
    """What stopped the rotation; one line."""


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    try:
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    except ClientError as error:
        raise RotationError(
            f"cannot read stack {stack_name} ({error.response.get('Error', {}).get('Message', error)}): "
            "is it deployed in this account and region?"
        ) from None
    return {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}


def _required(outputs: dict[str, str], key: str, stack_name: str) -> str:
    if not outputs.get(key):
        raise RotationError(f"stack {stack_name} has no output {key}: deploy this version of the project first")
    return outputs[key]


def parse_secret(current: str) -> dict[str, Any]:
    """The secret's JSON fields, refusing any other shape before anything changes."""
    try:
        fields = json.loads(current)
    except json.JSONDecodeError:
        fields = None
    if not isinstance(fields, dict) or "password" not in fields:
        raise RotationError('the secret is not the JSON {"username", "password"} this project stores: not touched')
    return fields


def new_secret_string(current: str, password: str) -> str:
    """The secret's JSON with only ``password`` replaced (key order and other fields kept)."""
    fields = parse_secret(current)
    fields["password"] = password
    return json.dumps(fields)


def tracking_url(session: boto3.session.Session) -> str:
    outputs = stack_outputs(session.client("cloudformation"), names.GATEWAY_STACK)
    return _required(outputs, names.OUTPUT_TRACKING_URL, names.GATEWAY_STACK)


def _restart_hint(cluster: str, service: str) -> str:
    return f"`aws ecs update-service --cluster {cluster} --service {service} --force-new-deployment`"


def change_admin_password(
    session: boto3.session.Session, current: str, password: str, cluster: str, service: str
) -> tuple[MlflowAdmin, str]:
    """Accounts mode: the admin sets its new password in MLflow; returns how to undo it."""
    fields = parse_secret(current)
    username, old = fields.get("username"), fields.get("password")
    if not (isinstance(username, str) and username and isinstance(old, str) and old):
        raise RotationError('the secret is not the JSON {"username", "password"} this project stores: not touched')
    url = tracking_url(session)
    try:
        admin = MlflowAdmin(url, username, old)
        admin.check_login()
    except MlflowAdminError as error:
        if error.status == 401:
            raise RotationError(
                f"{error}: the secret and MLflow already disagree on the admin's password; restart the tasks "
                f"({_restart_hint(cluster, service)}), which set it from the secret, then retry; nothing changed"
            ) from None
        raise RotationError(f"{error}; nothing changed") from None
    try:
        admin.change_own_password(old, password)
    except MlflowAdminError as error:
        if error.status == 0:  # no answer: the change may have happened
            raise RotationError(
                f"changing the admin's password got no answer ({error}); the secret keeps the old one: restart "
                f"the tasks ({_restart_hint(cluster, service)}), which set the admin's password from the secret"
            ) from None
        raise RotationError(f"changing the admin's password failed: {error}; nothing changed") from None
    return MlflowAdmin(url, username, password), old


def rotate(session: boto3.session.Session, stack_name: str) -> str:
    """Rotate and restart; returns the summary to print."""
    outputs = stack_outputs(session.client("cloudformation"), stack_name)
    mode = outputs.get(names.OUTPUT_AUTH_MODE) or "shared"  # deployments before the output existed were shared
    if mode not in SUPPORTED_MODES:
        raise RotationError(
            f"auth_mode is {mode}: the credentials secret is not a password this command can rotate "
            f"(it supports {', '.join(SUPPORTED_MODES)}); nothing changed"
        )
    admin_login = needs_of(mode).admin_login
    secret_name = _required(outputs, names.OUTPUT_CREDENTIALS_SECRET, stack_name)
    cluster = _required(outputs, names.OUTPUT_ECS_CLUSTER, stack_name)
    service = _required(outputs, names.OUTPUT_ECS_SERVICE, stack_name)

    secrets = session.client("secretsmanager")
    current = secrets.get_secret_value(SecretId=secret_name)["SecretString"]
    parse_secret(current)
    # Same rules as the generator that made the first password (stacks/components/server_credentials.py).
    password = secrets.get_random_password(PasswordLength=32, ExcludePunctuation=True)["RandomPassword"]
    updated = new_secret_string(current, password)
    undo: tuple[MlflowAdmin, str] | None = None
    if admin_login:
        undo = change_admin_password(session, current, password, cluster, service)
    try:
        secrets.put_secret_value(SecretId=secret_name, SecretString=updated)
    except (ClientError, BotoCoreError) as error:
        if undo is None:
            raise
        admin, old = undo
        try:
            admin.change_own_password(password, old)
        except MlflowAdminError as undo_error:
            raise RotationError(
                f"storing the new password in secret {secret_name} failed ({error}), and setting the admin's "
                f"old password back in MLflow failed too ({undo_error}): restart the tasks "
                f"({_restart_hint(cluster, service)}), which set the admin's password from the secret"
            ) from None
        raise RotationError(
            f"storing the new password in secret {secret_name} failed ({error}); the admin's old password "
            "was set back in MLflow: nothing changed"
        ) from None

    try:
        session.client("ecs").update_service(cluster=cluster, service=service, forceNewDeployment=True)
    except (ClientError, BotoCoreError) as error:
        raise RotationError(
            f"the secret {secret_name} holds the new password, but restarting the tasks failed ({error}): run "
            f"{_restart_hint(cluster, service)}"
        ) from None
    changed = "new admin password set in MLflow and" if admin_login else "new password"
    return (
        f"{changed} stored in secret {secret_name}; service {service} in cluster {cluster} is replacing its "
        f"tasks (a few minutes; follow with `aws ecs wait services-stable --cluster {cluster} --services {service}`)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack-name", default=names.VPC_STACK, help="the stack holding the service")
    args = parser.parse_args(argv)
    session = cdk_session()
    try:
        account, region = resolve(session)
        summary = rotate(session, args.stack_name)
    except (AwsSetupError, RotationError) as error:
        print(f"rotate-password: {error}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as error:
        print(f"rotate-password: AWS refused a step ({error}); nothing after it was done", file=sys.stderr)
        return 1
    print(f"rotate-password: account {account}, region {region}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
