"""Checks, before `cdk deploy`, what it needs and would otherwise complain about late or vaguely.

- AWS credentials and a region (the account and region the stacks go to);
- a running Docker engine (the CDK builds the nginx and MLflow images);
- the CDK bootstrap stack in that account and region, recent enough;
- in sso mode with an external issuer, the secret ``oidc_client_secret_name``
  names: it exists and holds ``client_id`` and ``client_secret`` (the tasks
  could not start without them, and ECS would say so only after a long wait);
- in sso mode with Cognito, each ``client_secret_name`` of ``cognito_federation``:
  it exists and holds ``client_secret`` (CloudFormation resolves it mid-deploy).

Every problem is printed as one line that says what to do; the exit status is
1 if there was any. `make deploy` runs it before the CDK CLI, `make destroy`
runs the credentials check; run it alone with `make preflight`.

    python -m tools.preflight [--only credentials] [--toolkit-stack-name CDKToolkit] [-c key=value ...]

``-c`` takes the same settings as the CDK CLI (make passes its CDK_ARGS and PRESET); they are
validated by the model synth uses (stacks.config), so a bad setting is reported here in the same words.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from stacks.config import ConfigError, ProjectConfig
from stacks.federation import CLIENT_SECRET_FIELD
from tools.aws_account import AwsSetupError, cdk_session, resolve

# The templates' CheckBootstrapVersion rule (aws-cdk-lib's DefaultStackSynthesizer)
# refuses bootstrap versions below this (tests/tools/test_preflight.py pins it).
MIN_BOOTSTRAP_VERSION = 6
DEFAULT_TOOLKIT_STACK = "CDKToolkit"
DOCKER_TIMEOUT_SECONDS = 20
CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"


class CheckFailed(Exception):
    """One failed check; the message is the line to print."""


def check_docker(env: dict[str, str]) -> str:
    """The Docker engine's version; the CDK uses CDK_DOCKER instead of `docker` when it is set."""
    command = env.get("CDK_DOCKER") or "docker"
    try:
        result = subprocess.run(
            [*shlex.split(command), "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=DOCKER_TIMEOUT_SECONDS,
            env=env,
            check=False,
        )
    except FileNotFoundError:
        raise CheckFailed(
            f"`{command}` is not installed: the CDK builds the two container images with Docker; "
            "install Docker (or set CDK_DOCKER to a compatible command) and retry"
        ) from None
    except subprocess.TimeoutExpired:
        raise CheckFailed(
            f"`{command} info` did not answer within {DOCKER_TIMEOUT_SECONDS} s: restart the Docker engine and retry"
        ) from None
    version = result.stdout.strip()
    if result.returncode != 0 or not version:
        detail = (result.stderr.strip().splitlines() or ["no answer"])[-1]
        raise CheckFailed(
            f"the Docker engine is not running ({detail}): start it (Docker Desktop, or "
            "`sudo systemctl start docker`) and retry"
        )
    return version


def check_bootstrap(session: boto3.session.Session, account: str, region: str, stack_name: str) -> int:
    """The bootstrap stack's version (its BootstrapVersion output)."""
    bootstrap = f"run `npx cdk bootstrap aws://{account}/{region}`"
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        if "does not exist" in str(error):
            raise CheckFailed(
                f"the CDK is not bootstrapped in account {account}, region {region} (no stack {stack_name}): "
                f"{bootstrap} once, then retry"
            ) from None
        code = error.response.get("Error", {}).get("Code", "error")
        raise CheckFailed(
            f"cannot read the CDK bootstrap stack {stack_name} ({code}): the deploying identity needs "
            "cloudformation:DescribeStacks"
        ) from None
    except BotoCoreError as error:
        raise CheckFailed(f"cannot reach CloudFormation in region {region} ({error})") from None
    stack = stacks[0]
    status = stack["StackStatus"]
    if not status.endswith("_COMPLETE") or status.startswith(("ROLLBACK", "DELETE")):
        raise CheckFailed(
            f"the CDK bootstrap stack {stack_name} in account {account}, region {region} is {status}: "
            f"fix or delete it in the CloudFormation console, then {bootstrap}"
        )
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
    version = outputs.get("BootstrapVersion", "")
    if not version.isdigit() or int(version) < MIN_BOOTSTRAP_VERSION:
        raise CheckFailed(
            f"the CDK bootstrap stack {stack_name} in account {account}, region {region} is version "
            f"{version or 'unknown'}, these stacks need {MIN_BOOTSTRAP_VERSION} or later: {bootstrap} to upgrade it"
        )
    return int(version)


def settings(overrides: list[str], cdk_json: Path = CDK_JSON) -> ProjectConfig:
    """cdk.json's context with ``key=value`` overrides, as the CDK CLI combines them, validated by the
    same model synth uses (an invalid setting raises ConfigError with synth's one-line message)."""
    context = dict(json.loads(cdk_json.read_text(encoding="utf-8"))["context"])
    for override in overrides:
        key, _, value = override.partition("=")
        context[key.strip()] = value
    return ProjectConfig.from_context(context)


def external_oidc_secret(config: ProjectConfig) -> str | None:
    """The secret the tasks read the external issuer's client from, when the settings use one."""
    if config.auth.sso_enabled and config.sso.oidc_provider == "external":
        return config.sso.oidc_client_secret_name
    return None


def federation_secrets(config: ProjectConfig) -> list[tuple[str, str]]:
    """(secret name, provider name) for each federated provider with a client secret, in sso mode with Cognito."""
    if not config.cognito_enabled:
        return []
    return [
        (provider.client_secret_name, provider.name)
        for provider in config.sso.cognito_federation
        if provider.client_secret_name
    ]


def check_client_secret(
    session: boto3.session.Session,
    name: str,
    account: str,
    region: str,
    *,
    source: str = "oidc_client_secret_name",
    fields: tuple[str, ...] = ("client_id", "client_secret"),
    readme: str = "docs/auth-modes.md, Single sign-on",
) -> None:
    """The secret exists and its JSON has non-empty ``fields`` (values never printed)."""
    where = f"in account {account}, region {region}"
    wanted = " and ".join(fields)
    shape = "{" + ", ".join(f'"{field}": ...' for field in fields) + "}"
    try:
        value = session.client("secretsmanager").get_secret_value(SecretId=name)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        if code == "ResourceNotFoundException":
            raise CheckFailed(
                f"the secret {name} ({source}) does not exist {where}: create it with your "
                f"provider's {wanted} ({readme}) and retry"
            ) from None
        raise CheckFailed(
            f"cannot read the secret {name} ({source}) {where} ({code}): the deploying "
            "identity needs secretsmanager:GetSecretValue on it (and kms:Decrypt for its key) to check it"
        ) from None
    except BotoCoreError as error:
        raise CheckFailed(f"cannot reach Secrets Manager in region {region} ({error})") from None
    try:
        stored = json.loads(value.get("SecretString") or "")
    except ValueError:
        stored = None
    if not isinstance(stored, dict):
        raise CheckFailed(f"the secret {name} ({source}) is not a JSON object: store {shape} in it ({readme})")
    missing = [key for key in fields if not isinstance(stored.get(key), str) or not stored[key]]
    if missing:
        raise CheckFailed(
            f"the secret {name} ({source}) has no {' and no '.join(missing)}: store {shape} in it ({readme})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["credentials"], help="check only the AWS credentials and region")
    parser.add_argument("--toolkit-stack-name", default=DEFAULT_TOOLKIT_STACK, help="the CDK bootstrap stack's name")
    parser.add_argument(
        "-c", "--context", action="append", default=[], metavar="KEY=VALUE", help="a setting, as for the CDK CLI"
    )
    args = parser.parse_args(argv)

    problems: list[str] = []
    found: list[str] = []
    session = cdk_session()
    account = region = None
    try:
        account, region = resolve(session)
        found.append(f"AWS account {account}, region {region}")
    except AwsSetupError as error:
        problems.append(str(error))
    if args.only != "credentials":
        try:
            found.append(f"Docker engine {check_docker(dict(os.environ))}")
        except CheckFailed as error:
            problems.append(str(error))
        if account and region:
            try:
                version = check_bootstrap(session, account, region, args.toolkit_stack_name)
                found.append(f"CDK bootstrap version {version}")
            except CheckFailed as error:
                problems.append(str(error))
            try:
                config: ProjectConfig | None = settings(args.context)
            except ConfigError as error:
                problems.append(str(error))
                config = None
            secret_name = external_oidc_secret(config) if config else None
            if config and secret_name is not None:
                try:
                    check_client_secret(session, secret_name, account, region)
                    found.append(f"OIDC client secret {secret_name}")
                except CheckFailed as error:
                    problems.append(str(error))
            for secret_name, provider in federation_secrets(config) if config else []:
                try:
                    check_client_secret(
                        session, secret_name, account, region,
                        source=f"cognito_federation provider {provider}", fields=(CLIENT_SECRET_FIELD,),
                        readme="docs/auth-modes.md, Federating Google or your company's IdP",
                    )  # fmt: skip
                    found.append(f"{provider} client secret {secret_name}")
                except CheckFailed as error:
                    problems.append(str(error))

    for problem in problems:
        print(f"preflight: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"preflight: ok ({'; '.join(found)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
