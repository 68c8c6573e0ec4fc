"""IAM callers for the stacks, localrun and tools: the image's docker/mlflow/iam_callers.py.

Imported after stacks.auth_modes, which puts the image's module folder on the path.
"""
# ruff: noqa: I001

import stacks.auth_modes  # noqa: F401  (puts the image's module folder on the path)
from iam_callers import (
    CALLER_HEADER,
    PRINCIPALS_ENV,
    PASSWORD_CHECK_SETTING,
    PRINCIPALS_PATH_ENV,
    SIGN_IN_ENV,
    caller_key,
    callers_in,
    check_user,
    principals_from_json,
    principals_from_mapping,
    principals_from_profile_parameter,
    profile_parameter,
)

__all__ = [
    "CALLER_HEADER",
    "PRINCIPALS_ENV",
    "PASSWORD_CHECK_SETTING",
    "PRINCIPALS_PATH_ENV",
    "SIGN_IN_ENV",
    "caller_key",
    "callers_in",
    "check_user",
    "principals_from_json",
    "principals_from_mapping",
    "principals_from_profile_parameter",
    "profile_parameter",
]
