"""The value of every MLflow login secret: ``{"username": <fixed>, "password": <generated>}``.

The tasks, the lab helper and the Lambda functions read these two keys; CloudFormation
generates the password, so it is in no template.
"""

import json

from aws_cdk import aws_secretsmanager as secretsmanager

# Alphanumeric only: a password travels in HTTP basic auth and in shell-friendly environment
# variables; 32 characters keep about 190 bits.
PASSWORD_LENGTH = 32


def login_secret_value(
    username: str, *, password_length: int = PASSWORD_LENGTH
) -> secretsmanager.SecretStringGenerator:
    """A secret string holding `username` and a generated password."""
    return secretsmanager.SecretStringGenerator(
        secret_string_template=json.dumps({"username": username}),
        generate_string_key="password",
        password_length=password_length,
        exclude_punctuation=True,
    )
