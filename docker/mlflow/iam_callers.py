"""Who an IAM caller is, as MLflow sees them: the header, the ARN forms and the principal table.

No CDK or MLflow imports: the MLflow image copies this file beside entrypoint.py, and the
stacks (the API's parameter mapping, the settings check) and localrun import the same
definitions through stacks/iam_callers.py.

API Gateway's IAM route writes the caller's ARN (``$context.identity.userArn``) into
CALLER_HEADER; every other route removes it. A caller is keyed by account and role or
user name: an assumed-role session (what a notebook or a training job signs with) and
the role itself are the same caller, whatever the session name or the role's path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Final

CALLER_HEADER: Final = "X-Mlflow-Iam-Caller"
# The MLflow container's settings: "true" turns IAM sign-in on (modes whose row has iam_sign_in);
# the static table (JSON ARN -> user, the iam_principals setting); the SSM path holding one
# parameter per Studio profile (profile_parameter's format), read with GetParametersByPath.
SIGN_IN_ENV: Final = "MLFLOW_IAM_SIGN_IN"
PRINCIPALS_ENV: Final = "MLFLOW_IAM_PRINCIPALS"
PRINCIPALS_PATH_ENV: Final = "MLFLOW_IAM_PRINCIPALS_PATH"
# basic_auth.ini: the password check requests without a caller go to (entrypoint.py writes it,
# iam_sign_in.py reads it).
PASSWORD_CHECK_SETTING: Final = "iam_password_check"  # noqa: S105 - a setting's name

# The two identity kinds API Gateway reports for a signed request that can be mapped:
# an assumed-role session and an IAM user; plus the role ARNs a setting names.
# Names: IAM's own character set (letters, digits, +=,.@_-), paths /-separated.
_NAME = r"[\w+=,.@-]{1,128}"
_PATH = r"/(?:[\w+=,.@-]{1,64}/){0,16}"
_ARN = re.compile(
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov):"
    r"(?:iam::(?P<account>\d{12}):(?P<kind>role|user)(?P<path>" + _PATH + r")(?P<name>" + _NAME + r")"
    r"|sts::(?P<sts_account>\d{12}):assumed-role/(?P<role>" + _NAME + r")/" + _NAME + r")",
    re.ASCII,
)
# MLflow user names this deployment hands out: a Studio profile's name, a CI user.
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,255}", re.ASCII)


def caller_key(arn: str) -> str:
    """``<account>:role/<name>`` or ``<account>:user/<name>`` for an identity ARN; ValueError otherwise."""
    match = _ARN.fullmatch(arn) if isinstance(arn, str) else None
    if match is None:
        raise ValueError(f"{arn!r} is not an IAM role, assumed-role or user ARN")
    if match["role"] is not None:
        return f"{match['sts_account']}:role/{match['role']}"
    return f"{match['account']}:{match['kind']}/{match['name']}"


def callers_in(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Every CALLER_HEADER value among an ASGI request's headers, as sent (repeated copies each)."""
    name = CALLER_HEADER.lower().encode()
    return [value.decode("latin-1") for key, value in headers if key.lower() == name]


def check_user(user: object) -> str:
    """An MLflow user name this table may map a caller to; ValueError otherwise."""
    if not isinstance(user, str) or _USER.fullmatch(user) is None:
        raise ValueError(f"{user!r} is not an MLflow user name (1-256 of A-Z a-z 0-9 . _ @ + -, not starting with one)")
    return user


def principals_from_mapping(mapping: Mapping[str, object]) -> dict[str, str]:
    """caller key -> MLflow user for ``{ARN: user}`` (the iam_principals setting); ValueError on any bad entry."""
    table: dict[str, str] = {}
    for arn, user in mapping.items():
        key = caller_key(arn)
        if table.get(key, user) != user:
            raise ValueError(f"{arn} is mapped to two users: {table[key]} and {user}")
        table[key] = check_user(user)
    return table


def principals_from_json(text: str) -> dict[str, str]:
    """The same for JSON text (an environment variable); ValueError when it is not a JSON object."""
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as error:
        raise ValueError(f"is not JSON: {error.msg}") from None
    if not isinstance(value, dict):
        raise ValueError("is not a JSON object of ARN -> MLflow user")
    return principals_from_mapping(value)


def profile_parameter(user: str, roles: list[str]) -> str:
    """The value of one Studio profile's parameter: its MLflow user and the roles that sign in as it."""
    return json.dumps({"user": user, "roles": roles}, separators=(",", ":"))


def principals_from_profile_parameter(text: str) -> dict[str, str]:
    """caller key -> user for one profile parameter; ValueError when malformed."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"is not JSON: {error.msg}") from None
    if not isinstance(value, dict) or set(value) != {"user", "roles"} or not isinstance(value["roles"], list):
        raise ValueError('is not {"user": ..., "roles": [...]}')
    return principals_from_mapping(dict.fromkeys(value["roles"], value["user"]))
