"""Give the MLflow basic-auth user a new generated password, then restart the tasks so nginx reads it.

1. Reads MLflowVpcStack's outputs: the credentials secret's name, the ECS
   cluster and service, and the authentication mode.
2. Has Secrets Manager generate a password like the first one (32 letters and
   digits) and stores it in the secret, keeping every other field of its JSON
   (``{"username", "password"}``).
3. Forces a new deployment of the service: new tasks read the new password
   when they start; the old ones keep the old password until they are replaced
   (a few minutes, during which clients see both passwords work, one per task).

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
from tools.aws_account import AwsSetupError, cdk_session, resolve

# Modes in which the credentials secret is the password nginx checks.
SUPPORTED_MODES = ("shared",)


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


def new_secret_string(current: str, password: str) -> str:
    """The secret's JSON with only ``password`` replaced (key order and other fields kept)."""
    try:
        fields = json.loads(current)
    except json.JSONDecodeError:
        fields = None
    if not isinstance(fields, dict) or "password" not in fields:
        raise RotationError('the secret is not the JSON {"username", "password"} this project stores: not touched')
    fields["password"] = password
    return json.dumps(fields)


def rotate(session: boto3.session.Session, stack_name: str) -> str:
    """Rotate and restart; returns the summary to print."""
    outputs = stack_outputs(session.client("cloudformation"), stack_name)
    mode = outputs.get(names.OUTPUT_AUTH_MODE) or "shared"  # deployments before the output existed were shared
    if mode not in SUPPORTED_MODES:
        raise RotationError(
            f"auth_mode is {mode}: MLflow keeps the admin's password in its own database, so changing the "
            "secret alone would lock the admin out; not supported by this command"
        )
    secret_name = _required(outputs, names.OUTPUT_CREDENTIALS_SECRET, stack_name)
    cluster = _required(outputs, names.OUTPUT_ECS_CLUSTER, stack_name)
    service = _required(outputs, names.OUTPUT_ECS_SERVICE, stack_name)

    secrets = session.client("secretsmanager")
    current = secrets.get_secret_value(SecretId=secret_name)["SecretString"]
    # Same rules as the generator that made the first password (stacks/components/server_credentials.py).
    password = secrets.get_random_password(PasswordLength=32, ExcludePunctuation=True)["RandomPassword"]
    secrets.put_secret_value(SecretId=secret_name, SecretString=new_secret_string(current, password))

    try:
        session.client("ecs").update_service(cluster=cluster, service=service, forceNewDeployment=True)
    except (ClientError, BotoCoreError) as error:
        raise RotationError(
            f"the secret {secret_name} holds the new password, but restarting the tasks failed ({error}): run "
            f"`aws ecs update-service --cluster {cluster} --service {service} --force-new-deployment`"
        ) from None
    return (
        f"new password stored in secret {secret_name}; service {service} in cluster {cluster} is replacing its "
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
