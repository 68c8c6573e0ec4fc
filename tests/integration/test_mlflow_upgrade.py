"""Upgrading MLflow keeps every item and every grant, and migrates each schema exactly once.

The previous release (localrun.mlflow_versions.PREVIOUS_MLFLOW_VERSION, in a
cached venv) serves a fresh database and bucket in accounts mode; the real
client logs runs, metrics, params, tags, a deleted run, artifacts, a logged
model and a registered model with versions and an alias, and the admin gives
a user READ on some of it. Then the order of a deploy that changes the
version: a backup of both databases, the old server stopped, two servers of
the pinned version started at the same moment on those databases
(localrun/upgrade_check.py, the same check `make upgrade-check` runs).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.version import Version

from localrun.mlflow_inventory import ALIAS, REGISTERED_MODEL
from localrun.mlflow_versions import PREVIOUS_MLFLOW_VERSION
from localrun.services import MotoServer
from localrun.stack import MlflowStack
from localrun.upgrade_check import (
    BACKUP,
    FIRST_WRITE,
    MIGRATION,
    NEW_READY,
    NEW_SERVERS,
    OLD_STOPPED,
    UpgradeResult,
    check_upgrade,
)
from stacks.mlflow_version import pinned_mlflow_version

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def upgrade(
    mlflow_stack: MlflowStack, moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory
) -> UpgradeResult:
    assert mlflow_stack.postgres is not None
    return check_upgrade(
        postgres=mlflow_stack.postgres, moto=moto_server, workdir=tmp_path_factory.mktemp("upgrade"),
        old_version=PREVIOUS_MLFLOW_VERSION, new_version=pinned_mlflow_version(),
    )  # fmt: skip


def test_the_previous_release_is_older_than_the_pin() -> None:
    assert Version(PREVIOUS_MLFLOW_VERSION) < Version(pinned_mlflow_version())


def test_the_schema_moves_from_the_old_head_to_the_new_one(upgrade: UpgradeResult) -> None:
    # Otherwise nothing would have been migrated and the test would prove little.
    assert upgrade.migration_path, "the previous release has the pinned one's schema: choose an older one"
    assert upgrade.old_revision not in upgrade.migration_path
    assert upgrade.new_revision == upgrade.expected_revision == upgrade.migration_path[-1]


def test_servers_starting_together_migrate_once(upgrade: UpgradeResult) -> None:
    logs = "\n".join(upgrade.server_logs)
    assert len(upgrade.server_logs) == NEW_SERVERS
    assert logs.count(f"tracking schema migrated from {upgrade.old_revision} to {upgrade.new_revision}") == 1, logs
    assert logs.count(f"tracking schema is current ({upgrade.new_revision})") == NEW_SERVERS - 1, logs
    # The database saw each step once: no second server re-ran one.
    assert upgrade.steps_in_database_log == upgrade.migration_path
    assert "Traceback" not in logs


def test_the_users_schema_reaches_the_new_head_migrated_by_at_most_one_server(upgrade: UpgradeResult) -> None:
    logs = "\n".join(upgrade.server_logs)
    path = upgrade.auth_migration_path
    assert upgrade.new_auth_revision == upgrade.expected_auth_revision == (path or [upgrade.old_auth_revision])[-1]
    migrated = logs.count(f"auth schema migrated from {upgrade.old_auth_revision} to {upgrade.new_auth_revision}")
    current = logs.count(f"auth schema is current ({upgrade.new_auth_revision})")
    assert (migrated, current) == ((1, NEW_SERVERS - 1) if path else (0, NEW_SERVERS)), logs
    assert upgrade.auth_steps_in_database_log == path


def test_the_readers_grants_hold_on_the_new_version(upgrade: UpgradeResult) -> None:
    assert upgrade.access_before == {
        "admin reads the reader's account": 200,
        "reader reads the granted experiment": 200,
        "reader reads the private experiment": 403,
        "reader starts a run in the granted experiment": 403,
        "reader reads the granted registered model": 200,
        "reader with a wrong password": 401,
    }
    assert upgrade.access_after == upgrade.access_before


def test_the_new_servers_check_passwords_with_the_deployed_validated_check(upgrade: UpgradeResult) -> None:
    assert upgrade.log_dir is not None
    for index in range(NEW_SERVERS):
        ini = upgrade.log_dir.parent / f"mlflow-{pinned_mlflow_version()}-{index}" / "basic_auth.ini"
        assert "authorization_function = credential_cache:authenticate_request" in ini.read_text()


def test_every_item_is_unchanged(upgrade: UpgradeResult) -> None:
    before = upgrade.before
    assert len(before["runs"]) == 3
    assert [run["lifecycle_stage"] for run in before["runs"].values()].count("deleted") == 1
    assert all(len(run["history"]["loss"]) == 4 for run in before["runs"].values() if run["artifacts"] is not None)
    assert all(len(run["artifacts"]) == 6 for run in before["runs"].values() if run["artifacts"] is not None)
    assert len(next(iter(before["logged_models"].values()))["artifacts"]) == 3
    model = before["registered_models"][REGISTERED_MODEL]
    assert model["aliases"] == {ALIAS: "2"} and sorted(model["versions"]) == ["1", "2"]
    assert upgrade.after == before


def test_backup_then_old_server_stopped_then_migration_then_new_servers(upgrade: UpgradeResult) -> None:
    # Read from PostgreSQL's log: the check's marks and the statements of the new servers, as logged.
    assert upgrade.step_order == [BACKUP, OLD_STOPPED, FIRST_WRITE, MIGRATION, NEW_READY]
    assert upgrade.connections_after_stop == 0


def test_the_backup_restores_to_the_old_heads_with_every_run(upgrade: UpgradeResult) -> None:
    assert upgrade.backup_revisions == (upgrade.old_revision, upgrade.old_auth_revision)
    assert upgrade.backup_runs == len(upgrade.before["runs"]) == 3


def test_the_verdict_passes(upgrade: UpgradeResult) -> None:
    assert upgrade.problems() == []
    assert f"MLflow {PREVIOUS_MLFLOW_VERSION} -> {pinned_mlflow_version()}: PASS" in upgrade.verdict()


def test_server_logs_are_kept(upgrade: UpgradeResult) -> None:
    assert upgrade.log_dir is not None and isinstance(upgrade.log_dir, Path)
    assert {path.name for path in upgrade.log_dir.glob("mlflow-*.log")} == {
        f"mlflow-{PREVIOUS_MLFLOW_VERSION}.log",
        *(f"mlflow-{pinned_mlflow_version()}-{i}.log" for i in range(NEW_SERVERS)),
    }
