"""The accounts-mode stack with IAM sign-in that test_iam_sign_in_accounts and test_iam_sign_in_signed share.

Default permission READ: everyone reads, only grants write. Both modules' callers are mapped
before the stack starts: the static table (the iam_principals setting) is the server's
environment, and the server reads the per-profile SSM parameters at its first IAM request and
then only once a minute, so parameters a module put later would not be seen in time. Each
module has users of its own (random names), so neither finds the other's runs or grants as its
own. One stack instead of one per module: a start is 15-20 CPU-seconds, mostly MLflow's imports.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from localrun.services import MotoServer
from localrun.stack import MlflowStack
from stacks.iam_callers import profile_parameter
from tests.integration.mlflow_users import Accounts

# The modules that use `iam_accounts` run on the worker that holds it.
IAM_ACCOUNTS_GROUP = pytest.mark.xdist_group("iam-accounts-stack")

ACCOUNT = "123456789012"

# test_iam_sign_in_accounts (the caller header sent straight to nginx's IAM server): role A maps to
# its user through the static table, role B through a profile parameter.
ROLE_A = f"arn:aws:iam::{ACCOUNT}:role/studio-alice"
ROLE_B = f"arn:aws:iam::{ACCOUNT}:role/studio/studio-bob"  # a role path: the same caller as without
GHOST_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ghost"  # mapped to a user nobody created

# test_iam_sign_in_signed (real signatures through the IAM API's stand-in): each Studio profile's
# execution and training roles, as the Studio stack lists them in its parameter.
PROFILE_ROLES = {
    profile: (
        f"arn:aws:iam::{ACCOUNT}:role/studio-{profile}-execution",
        f"arn:aws:iam::{ACCOUNT}:role/{profile}-training",
    )
    for profile in ("alice", "bob", "carol")
}
CAROL_PASSWORD = secrets.token_urlsafe(16)
# Roles of someone who may write SSM parameters under the path: one named for the admin,
# one named "squatter" that claims bob's user.
ROGUE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/rogue"
SQUATTER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/squatter"


@dataclass(frozen=True)
class IamAccounts:
    """The started stack and each module's users (profile -> MLflow username)."""

    stack: MlflowStack
    header_users: dict[str, str]  # test_iam_sign_in_accounts: alice (ROLE_A), bob (ROLE_B)
    profile_users: dict[str, str]  # test_iam_sign_in_signed: one per profile of PROFILE_ROLES


def running_iam_accounts(root: Path, moto: MotoServer) -> Iterator[IamAccounts]:
    """Start the stack with every mapping and user both modules need; stop it when done."""
    header_users = {profile: f"{profile}-{secrets.token_hex(3)}" for profile in ("alice", "bob")}
    profile_users = {profile: f"{profile}-{secrets.token_hex(3)}" for profile in PROFILE_ROLES}
    stack = MlflowStack(
        root, moto=moto, auth_mode="accounts", default_permission="READ",
        iam_principals={ROLE_A: header_users["alice"], GHOST_ROLE: "ghost-user"},
        # One uvicorn worker, as the session's shared-mode stack: each imports MLflow anew (seconds
        # of CPU), and no test here is about workers (the accounts stack's cache tests are).
        workers=1,
    )  # fmt: skip
    parameters = {header_users["bob"]: profile_parameter(header_users["bob"], [ROLE_B])}
    for profile, user in profile_users.items():
        parameters[user] = profile_parameter(user, list(PROFILE_ROLES[profile]))
    # A parameter may only map roles to the user it is named for: these two try otherwise.
    parameters[stack.username] = profile_parameter(stack.username, [ROGUE_ROLE])
    parameters["squatter"] = profile_parameter(profile_users["bob"], [SQUATTER_ROLE])
    ssm = moto.client("ssm")
    for name, value in parameters.items():
        ssm.put_parameter(Name=f"{stack.iam_principals_path}/{name}", Type="String", Value=value)
    stack.start()
    try:
        with Accounts(stack).client() as admin:
            for user in [*header_users.values(), *profile_users.values()]:
                password = CAROL_PASSWORD if user == profile_users["carol"] else secrets.token_urlsafe(16)
                admin.create_user(user, password)
        yield IamAccounts(stack, header_users, profile_users)
    finally:
        stack.stop()
