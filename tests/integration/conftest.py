"""Session-wide services on loopback for the integration tests.

`moto_server` is one moto process in multi-service mode (S3 here; other
suites use its Secrets Manager, CloudFormation, SageMaker, ... APIs).
`mlflow_stack` is PostgreSQL + MLflow + nginx started from the images' own
entrypoints in `shared` mode; `accounts_stack` the same in `accounts` mode
(MLflow's auth app, default permission NO_PERMISSIONS). `accounts` hands
out the admin (from the stack's secret) and new users (helpers in
mlflow_users.py). Modules that use `accounts_stack` carry
`pytestmark = [..., ACCOUNTS_GROUP]`, so they run on one worker and share one
stack; so do `sso_stack`'s (SSO_GROUP), `iam_accounts`' (the accounts
stack with IAM sign-in, iam_accounts.py: IAM_ACCOUNTS_GROUP) and `webhook_stack`'s
(WEBHOOK_STACK_GROUP). A module starts a
stack of its own only when it needs other settings or a fresh database, and
says why. Missing nginx or PostgreSQL binaries fail the run (they are apt
packages CI installs), they never skip it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from localrun.oidc import OidcUser
from localrun.services import MlflowServer, MotoServer
from localrun.stack import SSO_ADMIN_GROUP, SSO_ALLOWED_GROUP, MlflowStack
from tests.integration.big_transfers import BIG_FILE_BYTES
from tests.integration.iam_accounts import IamAccounts, running_iam_accounts
from tests.integration.mlflow_users import Accounts, as_mlflow_user
from tests.integration.webhook_receiver import started_webhook_stack


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(log_dir=tmp_path_factory.mktemp("moto") / "logs")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_stack(tmp_path_factory: pytest.TempPathFactory, moto_server: MotoServer) -> Iterator[MlflowStack]:
    stack = MlflowStack(
        tmp_path_factory.mktemp("mlflow-stack"), moto=moto_server,
        # Short, so the idle-connection test is quick and every test also
        # exercises MLflow reconnecting after PostgreSQL closed its connections.
        db_idle_timeout=3,
        # One uvicorn worker: each one imports MLflow anew (seconds of CPU per start or
        # restart). The accounts stack keeps the default two, which its cache tests need.
        workers=1,
    )  # fmt: skip
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def accounts_stack(tmp_path_factory: pytest.TempPathFactory, moto_server: MotoServer) -> Iterator[MlflowStack]:
    """The task in accounts mode; its `username`/`password` are the admin's (the secret's)."""
    stack = MlflowStack(
        tmp_path_factory.mktemp("accounts-stack"), moto=moto_server, auth_mode="accounts",
        default_permission="NO_PERMISSIONS",
    )  # fmt: skip
    stack.start()
    yield stack
    stack.stop()


# sso mode's people at the local OpenID provider, and the app clients code uses.
SSO_USER = OidcUser("alice", "alice-Passw0rd", "alice@example.com", "Alice", (SSO_ALLOWED_GROUP,))
SSO_ADMIN = OidcUser("olga", "olga-Passw0rd", "olga@example.com", "Olga", (SSO_ADMIN_GROUP,))
SSO_OUTSIDER = OidcUser("mallory", "mallory-Passw0rd", "mallory@example.com", "Mallory", ("contractors",))
SSO_MACHINE = "studio-alice"
SSO_SHORT_LIVED = "short-lived"
# Another profile's app client: a machine user with no grants (the notebook test's colleague).
SSO_COLLEAGUE = "studio-bob"
# An app client the tracing tests grant READ on one experiment (and nothing else).
SSO_READER = "studio-carol"
# Modules that use `sso_stack` carry this, so one worker holds the one stack.
SSO_GROUP = pytest.mark.xdist_group("sso-stack")


@pytest.fixture(scope="session")
def sso_stack(tmp_path_factory: pytest.TempPathFactory, moto_server: MotoServer) -> Iterator[MlflowStack]:
    """The task in sso mode with its OpenID provider; default permission NO_PERMISSIONS."""
    stack = MlflowStack(
        tmp_path_factory.mktemp("sso-stack"), moto=moto_server, auth_mode="sso",
        default_permission="NO_PERMISSIONS", oidc_users=[SSO_USER, SSO_ADMIN, SSO_OUTSIDER],
        machine_clients=[SSO_MACHINE, SSO_SHORT_LIVED, SSO_COLLEAGUE, SSO_READER],
    )  # fmt: skip
    assert stack.oidc is not None
    from localrun.oidc import OidcClient

    # Its tokens live one second (the expiry test).
    stack.oidc.add_client(OidcClient(SSO_SHORT_LIVED, access_token_ttl=1))
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def iam_accounts(tmp_path_factory: pytest.TempPathFactory, moto_server: MotoServer) -> Iterator[IamAccounts]:
    """accounts mode, default permission READ, with IAM sign-in's callers mapped (iam_accounts.py)."""
    yield from running_iam_accounts(tmp_path_factory.mktemp("iam-accounts-stack"), moto_server)


@pytest.fixture(scope="session")
def webhook_stack(tmp_path_factory: pytest.TempPathFactory, moto_server: MotoServer) -> Iterator[MlflowStack]:
    """accounts mode whose MLflow delivers webhooks to loopback receivers (webhook_receiver.py).

    Its users delete the webhooks they register: a module finds none of another's.
    """
    stack = started_webhook_stack(tmp_path_factory.mktemp("webhook-stack"), moto_server)
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def accounts(accounts_stack: MlflowStack) -> Accounts:
    return Accounts(accounts_stack)


@pytest.fixture(scope="module")
def client_env(mlflow_stack: MlflowStack) -> Iterator[dict[str, str]]:
    """Point the in-process MLflow client at the shared-mode proxy as its one user."""
    with as_mlflow_user(mlflow_stack):
        yield mlflow_stack.client_env()


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 MB of random bytes, made once per worker: 20x what the proxy lets through."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    with open(path, "wb") as handle:
        for _ in range(BIG_FILE_BYTES // (8 << 20)):
            handle.write(os.urandom(8 << 20))
    return path


def another_task(stack: MlflowStack) -> Iterator[MlflowServer]:
    """A second MLflow task of `stack` (same database, bucket and secret key), stopped afterwards."""
    server = stack.new_mlflow_server(name="mlflow-task-2", port=None)
    server.start()
    try:
        yield server
    finally:
        server.stop()
