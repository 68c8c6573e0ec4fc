"""Which AWS account and region a command will act on, or one line saying what to fix."""

from __future__ import annotations

import os

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

# Where the CDK CLI looks for the region, in its order, before the profile's
# config (boto3 alone reads only AWS_DEFAULT_REGION).
REGION_VARIABLES = ("AWS_REGION", "AMAZON_REGION", "AWS_DEFAULT_REGION", "AMAZON_DEFAULT_REGION")


class AwsSetupError(Exception):
    """A problem with the caller's AWS setup; the message is one line saying what to do."""


def cdk_session() -> boto3.session.Session:
    """A boto3 session for the account and region `cdk deploy` would use."""
    region = next((os.environ[name] for name in REGION_VARIABLES if os.environ.get(name)), None)
    return boto3.session.Session(region_name=region)


def resolve(session: boto3.session.Session) -> tuple[str, str]:
    """(account id, region) of the session's credentials, checked with STS."""
    region = session.region_name
    if not region:
        raise AwsSetupError(
            "no AWS region is set: export AWS_REGION=<region> (e.g. eu-west-1) "
            "or set one in your profile with `aws configure set region <region>`"
        )
    try:
        identity = session.client("sts").get_caller_identity()
    except (NoCredentialsError, NoRegionError):
        raise AwsSetupError(
            "no AWS credentials found: run `aws configure` (access keys) or `aws sso login --profile <name>` "
            "and export AWS_PROFILE=<name>"
        ) from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        raise AwsSetupError(
            f"AWS refused the credentials ({code}): renew them (`aws sso login`, or new access keys) and retry"
        ) from None
    except BotoCoreError as error:
        raise AwsSetupError(f"cannot reach AWS in region {region} ({error}): check the network and region") from None
    return identity["Account"], region
