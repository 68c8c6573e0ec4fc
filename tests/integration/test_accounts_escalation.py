"""accounts mode: an ordinary user cannot make itself more than it is.

MLflow 3's auth app has more ways to hand out power than the grant calls the
other modules use: the admin flag, users and passwords, roles (RBAC) and their
assignments, the per-user grant API of 3.x beside the older per-resource ones.
User B (no grants, default permission NO_PERMISSIONS) tries each on itself,
through REST and the UI's ajax prefix, with A's experiment and model as the
prize; afterwards the admin finds nothing changed: B is no admin and holds no
grant, A's account and the admin's password are as they were, no user or role
was made.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import pytest

from localrun.stack import MlflowStack
from tests.integration.mlflow_users import ACCOUNTS_GROUP, Account, Accounts, api
from tests.integration.test_audit_trail import audit_lines

pytestmark = [pytest.mark.integration, ACCOUNTS_GROUP]

PREFIXES = ["/api", "/ajax-api"]


@dataclass(frozen=True)
class Prize:
    a: Account
    b: Account
    experiment_id: str
    model_name: str
    role_id: int  # a role the admin made, with MANAGE on A's experiment


@pytest.fixture(scope="module")
def prize(accounts: Accounts, accounts_stack: MlflowStack) -> Prize:
    a, b = accounts.new_user("owner"), accounts.new_user("climber")
    created = api(accounts_stack, "POST", "/api/2.0/mlflow/experiments/create", a, json={"name": f"a-{a.username}"})
    created.raise_for_status()
    experiment_id = created.json()["experiment_id"]
    model_name = f"a-model-{a.username}"
    api(
        accounts_stack, "POST", "/api/2.0/mlflow/registered-models/create", a, json={"name": model_name}
    ).raise_for_status()
    role = api(
        accounts_stack, "POST", "/api/3.0/mlflow/roles/create", accounts.admin,
        json={"name": f"experiment-managers-{secrets.token_hex(3)}", "workspace": "default"},
    )  # fmt: skip
    role.raise_for_status()
    role_id = int(role.json()["role"]["id"])
    granted = api(
        accounts_stack, "POST", "/api/3.0/mlflow/roles/permissions/add", accounts.admin,
        json={"role_id": role_id, "resource_type": "experiment", "resource_pattern": experiment_id,
              "permission": "MANAGE"},
    )  # fmt: skip
    granted.raise_for_status()
    return Prize(a=a, b=b, experiment_id=experiment_id, model_name=model_name, role_id=role_id)


def _attempts(prize: Prize, new_user: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path after the prefix, body) of every call that would raise B; B sends each."""
    b, exp = prize.b.username, prize.experiment_id
    manage_experiment = {"experiment_id": exp, "username": b, "permission": "MANAGE"}
    return [
        ("PATCH", "/2.0/mlflow/users/update-admin", {"username": b, "is_admin": True}),
        ("PATCH", "/2.0/mlflow/users/update-admin", {"username": b, "is_admin": "true"}),
        ("POST", "/2.0/mlflow/users/create", {"username": new_user, "password": secrets.token_urlsafe(16)}),
        ("PATCH", "/2.0/mlflow/users/update-password", {"username": prize.a.username, "password": "taken-over-1"}),
        ("DELETE", "/2.0/mlflow/users/delete", {"username": prize.a.username}),
        ("POST", "/2.0/mlflow/experiments/permissions/create", manage_experiment),
        ("PATCH", "/2.0/mlflow/experiments/permissions/update", manage_experiment),
        ("POST", "/2.0/mlflow/registered-models/permissions/create",
         {"name": prize.model_name, "username": b, "permission": "MANAGE"}),
        *[
            ("POST", "/3.0/mlflow/users/permissions/grant",
             {"username": b, "resource_type": "experiment", "resource_id": resource_id, "permission": "MANAGE"})
            for resource_id in (exp, f"0{exp}", f" {exp}", "*")
        ],
        ("POST", "/3.0/mlflow/users/permissions/grant",
         {"username": b, "resource_type": "registered_model", "resource_id": prize.model_name, "permission": "MANAGE"}),
        ("POST", "/3.0/mlflow/roles/assign", {"username": b, "role_id": prize.role_id}),
        ("POST", "/3.0/mlflow/roles/create", {"name": f"mine-{new_user}", "workspace": "default"}),
        ("POST", "/3.0/mlflow/roles/permissions/add",
         {"role_id": prize.role_id, "resource_type": "experiment", "resource_pattern": "*", "permission": "MANAGE"}),
    ]  # fmt: skip


@pytest.mark.parametrize("prefix", PREFIXES)
def test_an_ordinary_user_cannot_raise_itself(accounts_stack: MlflowStack, prize: Prize, prefix: str) -> None:
    new_user = f"ghost-{secrets.token_hex(3)}"
    allowed = []
    before = len(audit_lines(accounts_stack))
    attempts = _attempts(prize, new_user)
    for method, path, body in attempts:
        response = api(accounts_stack, method, prefix + path, prize.b, json=body)
        # 403: the route exists and refused B (a 404 would prove nothing).
        if response.status_code != 403:
            allowed.append(f"{method} {prefix}{path} {body}: {response.status_code} {response.text[:200]}")
    assert not allowed, "not refused with 403:\n" + "\n".join(allowed)
    # Each attempt is in the audit trail: B's name, the refusal, what it was after.
    tried = [line for line in audit_lines(accounts_stack)[before:] if line["user"] == prize.b.username]
    assert [(line["route"], line["status"]) for line in tried] == [(prefix + path, 403) for _, path, _ in attempts]
    assert tried[0]["resource"] == {"username": prize.b.username, "is_admin": True}
    grant = tried[[path for _, path, _ in attempts].index("/3.0/mlflow/users/permissions/grant")]
    assert grant["resource"] == {
        "username": prize.b.username, "resource_type": "experiment", "resource_id": prize.experiment_id,
        "permission": "MANAGE",
    }  # fmt: skip

    admin = Account(accounts_stack.username, accounts_stack.password)
    current = api(accounts_stack, "GET", "/api/2.0/mlflow/users/current", prize.b)
    assert current.json()["user"]["is_admin"] is False
    # A and the admin still sign in with their own passwords; nobody new does.
    assert api(accounts_stack, "GET", "/api/2.0/mlflow/users/current", prize.a).status_code == 200
    assert api(accounts_stack, "GET", "/api/2.0/mlflow/users/current", admin).status_code == 200
    found = api(accounts_stack, "GET", f"/api/2.0/mlflow/users/get?username={new_user}", admin)
    assert found.status_code == 404, found.text
    # B holds no grant on A's things (MLflow keeps a user's own grants in a role of its
    # own), not the admin's role, and still cannot read A's experiment or model.
    grants = api(accounts_stack, "GET", f"/api/3.0/mlflow/users/permissions/list?username={prize.b.username}", admin)
    grants.raise_for_status()
    prizes = {prize.experiment_id, f"0{prize.experiment_id}", f" {prize.experiment_id}", "*", prize.model_name}
    assert not [g for g in grants.json()["permissions"] if g["resource_pattern"] in prizes], grants.text
    roles = api(accounts_stack, "GET", f"/api/3.0/mlflow/users/roles/list?username={prize.b.username}", admin)
    roles.raise_for_status()
    assert prize.role_id not in [role["id"] for role in roles.json()["roles"]], roles.text
    experiment = api(
        accounts_stack, "GET", f"/api/2.0/mlflow/experiments/get?experiment_id={prize.experiment_id}", prize.b
    )
    assert experiment.status_code == 403
    model = api(accounts_stack, "GET", f"/api/2.0/mlflow/registered-models/get?name={prize.model_name}", prize.b)
    assert model.status_code == 403
    # The role B tried to widen still holds only what the admin gave it.
    permissions = api(accounts_stack, "GET", f"/api/3.0/mlflow/roles/permissions/list?role_id={prize.role_id}", admin)
    permissions.raise_for_status()
    assert [(p["resource_pattern"], p["permission"]) for p in permissions.json()["role_permissions"]] == [
        (prize.experiment_id, "MANAGE")
    ], permissions.text


def test_the_same_calls_work_for_the_admin(accounts: Accounts, accounts_stack: MlflowStack, prize: Prize) -> None:
    """Guard against a vacuous pass: the calls are well formed, only B lacks the right."""
    admin = accounts.admin
    assigned = api(
        accounts_stack, "POST", "/api/3.0/mlflow/roles/assign", admin,
        json={"username": prize.b.username, "role_id": prize.role_id},
    )  # fmt: skip
    assert assigned.status_code == 200, assigned.text
    try:
        experiment = api(
            accounts_stack, "GET", f"/api/2.0/mlflow/experiments/get?experiment_id={prize.experiment_id}", prize.b
        )
        assert experiment.status_code == 200, experiment.text
    finally:
        api(
            accounts_stack, "DELETE", "/api/3.0/mlflow/roles/unassign", admin,
            json={"username": prize.b.username, "role_id": prize.role_id},
        ).raise_for_status()  # fmt: skip
    granted = api(
        accounts_stack, "POST", "/api/3.0/mlflow/users/permissions/grant", prize.a,
        json={"username": prize.b.username, "resource_type": "registered_model", "resource_id": prize.model_name,
              "permission": "READ"},
    )  # fmt: skip
    assert granted.status_code == 200, granted.text
    try:
        model = api(accounts_stack, "GET", f"/api/2.0/mlflow/registered-models/get?name={prize.model_name}", prize.b)
        assert model.status_code == 200, model.text
    finally:
        api(
            accounts_stack, "POST", "/api/3.0/mlflow/users/permissions/revoke", prize.a,
            json={"username": prize.b.username, "resource_type": "registered_model", "resource_id": prize.model_name},
        ).raise_for_status()  # fmt: skip
