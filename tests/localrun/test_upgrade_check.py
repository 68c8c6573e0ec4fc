"""`make upgrade-check`'s verdict and its one-line refusals (the full run is in tests/integration)."""

from __future__ import annotations

import copy
import logging

import pytest

from localrun import mlflow_versions, upgrade_check
from localrun.upgrade_check import BACKUP, FIRST_WRITE, MIGRATION, NEW_READY, OLD_STOPPED, STEPS, UpgradeResult
from stacks.mlflow_version import pinned_mlflow_version
from tests.docker.image_modules import image_module

SAMPLE = {
    "experiments": {"1": {"name": "e"}},
    "runs": {"r1": {"artifacts": {"notes.txt": "ab12"}, "metrics": {"loss": 0.5}}},
    "logged_models": {},
    "registered_models": {"m": {"aliases": {"champion": "2"}, "versions": {"1": {}, "2": {}}}},
}


ACCESS = {"reader reads the granted experiment": 200, "reader reads the private experiment": 403}


def passing() -> UpgradeResult:
    return UpgradeResult(
        old_version="3.16.1", new_version="3.17.2", old_revision="a", new_revision="c", expected_revision="c",
        migration_path=["b", "c"], steps_in_database_log=["b", "c"],
        old_auth_revision="u1", new_auth_revision="u1", expected_auth_revision="u1",
        server_logs=["tracking schema migrated from a to c\nauth schema is current (u1)",
                     "tracking schema is current (c)\nauth schema is current (u1)"],
        step_order=list(STEPS), connections_after_stop=0, backup_revisions=("a", "u1"), backup_runs=1,
        before=copy.deepcopy(SAMPLE), after=copy.deepcopy(SAMPLE), access_before=dict(ACCESS),
        access_after=dict(ACCESS),
    )  # fmt: skip


def test_a_clean_upgrade_passes() -> None:
    result = passing()
    assert result.problems() == []
    assert result.verdict().startswith("upgrade check MLflow 3.16.1 -> 3.17.2: PASS: schema a -> c (2 migrations")
    assert "; users' schema unchanged (u1); " in result.verdict()
    assert "a reader's access unchanged (2 checks)" in result.verdict()
    assert result.verdict().endswith(
        "the backup restores to the old heads; in PostgreSQL's log: backup taken < old server stopped < "
        "first write of a new server < migration < new servers ready"
    )


def test_a_users_schema_migrated_once_passes_and_says_so() -> None:
    result = passing()
    result.new_auth_revision = result.expected_auth_revision = "u2"
    result.auth_migration_path = result.auth_steps_in_database_log = ["u2"]
    result.server_logs[1] = "tracking schema is current (c)\nauth schema migrated from u1 to u2"
    assert result.problems() == []
    assert "users' schema u1 -> u2 (1 migration, run once)" in result.verdict()


def test_a_users_schema_short_of_its_head_or_migrated_twice_fails() -> None:
    result = passing()
    result.expected_auth_revision, result.auth_migration_path, result.auth_steps_in_database_log = "u2", ["u2"], []
    result.server_logs = [log.replace("auth schema is current (u1)", "auth schema migrated from u1 to u2")
                          for log in result.server_logs]  # fmt: skip
    assert result.problems() == [
        "alembic_version_auth is u1, MLflow 3.17.2's users' schema head is u2",
        "PostgreSQL's log shows users' schema steps [], expected each of ['u2'] once",
        "2 servers migrated the users' schema, expected 1",
    ]


def test_a_grant_lost_in_the_upgrade_fails() -> None:
    result = passing()
    result.access_after["reader reads the granted experiment"] = 403
    assert result.problems() == ["a user's access changed: reader reads the granted experiment"]


def test_a_new_server_that_does_not_start_fails_with_its_reason() -> None:
    result = UpgradeResult(old_version="3.17.2", new_version="3.18.0", start_failures=["... refusing to start"])
    assert result.problems() == ["a server of MLflow 3.18.0 did not start: ... refusing to start"]
    assert result.verdict().startswith("upgrade check MLflow 3.17.2 -> 3.18.0: FAIL: a server of MLflow 3.18.0")


def test_a_changed_artifact_fails() -> None:
    result = passing()
    result.after["runs"]["r1"]["artifacts"]["notes.txt"] = "ffff"
    assert result.problems() == ["data changed by the upgrade: runs"]
    assert ": FAIL: data changed by the upgrade: runs" in result.verdict()


def test_a_second_migration_fails() -> None:
    result = passing()
    result.server_logs[1] = "tracking schema migrated from a to c"
    result.steps_in_database_log = ["b", "c", "b", "c"]
    problems = result.problems()
    assert "2 servers migrated the schema, expected 1" in problems
    assert any(problem.startswith("PostgreSQL's log shows schema steps") for problem in problems)


def test_a_schema_short_of_the_new_head_fails() -> None:
    result = passing()
    result.new_revision = "b"
    assert result.problems() == ["alembic_version is b, MLflow 3.17.2's schema head is c"]


def test_a_new_mlflow_whose_auth_internals_changed_passes_with_a_note(caplog: pytest.LogCaptureFixture) -> None:
    assert "NOTE" not in passing().verdict()
    with image_module("reviewed_source") as reviewed:  # what a new server logs for a patch left out
        for patch in ("auth_lookups.py: runs", "credential_cache.py: cache"):
            reviewed.is_reviewed(logging.getLogger("test"), patch, {"x": {"y": ""}}, "slower")
    runs, cache = (record.getMessage() for record in caplog.records)
    result = passing()
    result.server_logs[1] += "\n" + runs + "\n" + cache
    result.server_logs[0] += "\n" + cache  # each server says it, named once
    assert result.problems() == []
    assert result.verdict().endswith(
        "; NOTE: MLflow 3.17.2 changed internals that the image's patches were reviewed against "
        "(auth_lookups.py: runs, credential_cache.py: cache in docker/mlflow), so MLflow's own code serves "
        "instead (same answers, at the cost the servers' logs name) until they are reviewed against it (make test "
        "fails until then)"
    )


@pytest.mark.parametrize(
    "order",
    [
        # Today's rolling update: the new servers migrate while the old one still runs.
        [BACKUP, FIRST_WRITE, MIGRATION, NEW_READY, OLD_STOPPED],
        # The backup after the old server stopped: not what the deploy does (its snapshot comes first).
        [OLD_STOPPED, BACKUP, FIRST_WRITE, MIGRATION, NEW_READY],
        # No backup at all.
        [OLD_STOPPED, FIRST_WRITE, MIGRATION, NEW_READY],
    ],
)
def test_steps_out_of_order_fail(order: list[str]) -> None:
    result = passing()
    result.step_order = order
    assert result.problems() == [f"PostgreSQL's log shows the steps {order}, expected {list(STEPS)}"]


def test_without_migrations_or_writes_the_order_needs_only_the_marks() -> None:
    result = passing()
    result.migration_path = result.steps_in_database_log = []
    result.new_revision = result.expected_revision = result.old_revision
    result.server_logs = ["tracking schema is current (a)\nauth schema is current (u1)"] * 2
    result.step_order = [BACKUP, OLD_STOPPED, NEW_READY]
    assert result.problems() == []
    result.step_order = [BACKUP, OLD_STOPPED, MIGRATION, NEW_READY]  # a migration nobody expected
    assert result.problems() == [
        f"PostgreSQL's log shows the steps {result.step_order}, expected {[BACKUP, OLD_STOPPED, NEW_READY]}"
    ]


def test_an_old_server_still_connected_fails() -> None:
    result = passing()
    result.connections_after_stop = 3
    assert result.problems() == ["3 connections of the old server were left after it stopped"]


def test_a_backup_that_does_not_restore_to_the_old_heads_fails() -> None:
    result = passing()
    result.backup_revisions, result.backup_runs = ("c", "u1"), 1
    assert result.problems() == [
        "the backup restores to revisions ('c', 'u1') with 1 runs, expected ('a', 'u1') with 1"
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["3.18"], "VERSION must be an MLflow release like 3.18.0, got '3.18'"),
        ([pinned_mlflow_version()], f"MLflow {pinned_mlflow_version()} is the version to upgrade from"),
        (["3.0.0"], f"MLflow 3.0.0 is older than {pinned_mlflow_version()}, the version to upgrade from; give a newer"),
        # Asks the package index (like pip); nothing is left behind.
        (["99.0.0"], "MLflow 99.0.0 cannot be installed from the package index: Could not find a version"),
    ],
)
def test_versions_that_cannot_be_checked_get_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mlflow_versions, "cache_root", lambda: tmp_path)
    assert upgrade_check.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("upgrade check: ") and message in err[-1]
    assert not list(tmp_path.glob("mlflow-99*"))
