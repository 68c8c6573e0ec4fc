"""Upgrade MLflow on a copy of a deployment, on loopback, and say whether it is safe.

What a rollout of a new MLflow version does to a deployment, in small:

1. a server of the running version (docker/mlflow/entrypoint.py, as in the
   image) in accounts mode creates its schemas in a fresh PostgreSQL database
   (tracking) and the users' database next to it, and serves artifacts from
   an S3 bucket (moto); the real MLflow client logs a sample of everything
   (localrun/mlflow_inventory.py), including a user with grants, and reads it
   back, with what that user may do;
2. the order a deploy that changes the MLflow version follows (README,
   "Upgrading MLflow"; the upgrade gate in stacks/components/upgrade_gate.py):
   a backup first (pg_dump of both databases, as the deploy's cluster
   snapshot), then the old version's server stopped, no connection of it
   left, then two servers of the new version started at the same moment, as
   the tasks of the service scaled back up: the entrypoint's advisory lock
   lets one of them migrate the schemas, the other waits and finds them
   current. The check writes each step into PostgreSQL's own log as it
   happens, so the log shows the order, and where the first write of a new
   server and the migration fall in it;
3. the sample and the user's access, read back through a new server, must be
   unchanged, `alembic_version` (and the users' `alembic_version_auth`) must
   have moved from the old head to the new one, PostgreSQL's statement log
   must show each migration step once and the steps in that order, and the
   backup must restore into a fresh database at the old heads with every run.

Accounts mode is shared mode's server plus MLflow's auth app, so this covers
both. The old server checks passwords with MLflow's own cached check
(`mlflow-ttl`): the deployed `validated` check (credential_cache.py) is
written against the pinned version and may not load on an older one. The
new servers use `validated`; where the new release moved internals its
patches were reviewed against, they serve with MLflow's own code instead,
and the verdict names those patches.

`make upgrade-check VERSION=x.y.z` runs it from the pinned version to x.y.z;
the test suite runs it from the previous release to the pinned one
(tests/integration/test_mlflow_upgrade.py).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from localrun.mlflow_inventory import access, counts, inventory, log_sample_access, log_sample_data
from localrun.mlflow_versions import PREVIOUS_MLFLOW_VERSION, VersionUnavailable, mlflow_python
from localrun.process import ServiceError, environment
from localrun.services import FAKE_AWS, MlflowServer, MotoServer, Postgres, base_env
from localrun.stack import ARTIFACT_PREFIX, new_password
from stacks.mlflow_version import pinned_mlflow_version

NEW_SERVERS = 2
# The upgrade's steps, in the order they must happen (each written into PostgreSQL's log as it does).
BACKUP, OLD_STOPPED, FIRST_WRITE, MIGRATION, NEW_READY = (
    "backup taken", "old server stopped", "first write of a new server", "migration", "new servers ready",
)  # fmt: skip
STEPS = (BACKUP, OLD_STOPPED, FIRST_WRITE, MIGRATION, NEW_READY)
STEP_MARK = "upgrade-check step: "
# What docker/mlflow's patches (auth_lookups.py, credential_cache.py) log when the new
# MLflow's internals they rely on are not the reviewed ones: the module, and the patch where it has several.
PATCH_LEFT_OUT = re.compile(r"is not the reviewed one \(([\w.]+\.py(?:: [\w-]+)?)")


@dataclass
class UpgradeResult:
    """What happened to the database and the data; `problems()` is the verdict."""

    old_version: str
    new_version: str
    old_revision: str = ""
    new_revision: str = ""
    expected_revision: str = ""
    migration_path: list[str] = field(default_factory=list)
    steps_in_database_log: list[str] = field(default_factory=list)
    server_logs: list[str] = field(default_factory=list)
    # The steps in the order PostgreSQL's log shows them (STEPS), and the old server's connections
    # still open once it had stopped.
    step_order: list[str] = field(default_factory=list)
    connections_after_stop: int = -1
    # What the backup restores to: tracking and users' revisions, and how many runs.
    backup_revisions: tuple[str, str] = ("", "")
    backup_runs: int = -1
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    # The users' database (accounts mode): the same checks on its own schema.
    old_auth_revision: str = ""
    new_auth_revision: str = ""
    expected_auth_revision: str = ""
    auth_migration_path: list[str] = field(default_factory=list)
    auth_steps_in_database_log: list[str] = field(default_factory=list)
    access_before: dict[str, int] = field(default_factory=dict)
    access_after: dict[str, int] = field(default_factory=dict)
    # Why a server of the new version did not start (its log's last line).
    start_failures: list[str] = field(default_factory=list)
    log_dir: Path | None = None

    def migrations_logged(self, schema: str = "tracking") -> int:
        return sum(log.count(f"{schema} schema migrated from") for log in self.server_logs)

    def _schema_problems(self, schema: str) -> list[str]:
        """The same three checks for the tracking schema and the users' one ("auth")."""
        if schema == "tracking":
            label, table = "", "alembic_version"
            new, expected, path = self.new_revision, self.expected_revision, self.migration_path
            steps = self.steps_in_database_log
        else:
            label, table = "users' ", "alembic_version_auth"
            new, expected, path = self.new_auth_revision, self.expected_auth_revision, self.auth_migration_path
            steps = self.auth_steps_in_database_log
        found = []
        if new != expected:
            found.append(f"{table} is {new or 'missing'}, MLflow {self.new_version}'s {label}schema head is {expected}")
        if steps != path:
            found.append(f"PostgreSQL's log shows {label}schema steps {steps}, expected each of {path} once")
        runs, expected_runs = self.migrations_logged(schema), 1 if path else 0
        if runs != expected_runs:
            found.append(f"{runs} servers migrated the {label}schema, expected {expected_runs}")
        return found

    def expected_order(self) -> list[str]:
        """STEPS without the migration when there was none, and without a first write when none came."""
        migrated = bool(self.migration_path or self.auth_migration_path)
        return [
            step for step in STEPS
            if (step != MIGRATION or migrated) and (step != FIRST_WRITE or FIRST_WRITE in self.step_order)
        ]  # fmt: skip

    def _order_problems(self) -> list[str]:
        found = []
        if self.step_order != self.expected_order():
            found.append(f"PostgreSQL's log shows the steps {self.step_order}, expected {self.expected_order()}")
        if self.connections_after_stop != 0:
            found.append(f"{self.connections_after_stop} connections of the old server were left after it stopped")
        expected_backup = (self.old_revision, self.old_auth_revision)
        if self.backup_revisions != expected_backup or self.backup_runs != len(self.before.get("runs", {})):
            found.append(
                f"the backup restores to revisions {self.backup_revisions} with {self.backup_runs} runs, "
                f"expected {expected_backup} with {len(self.before.get('runs', {}))}"
            )
        return found

    def problems(self) -> list[str]:
        if self.start_failures:
            return [f"a server of MLflow {self.new_version} did not start: {self.start_failures[0]}"]
        found = self._order_problems() + self._schema_problems("tracking") + self._schema_problems("auth")
        if any("Traceback" in log for log in self.server_logs):
            found.append("a new server logged a traceback")
        if self.before != self.after:
            changed = [key for key in self.before if self.before[key] != self.after.get(key)]
            found.append(f"data changed by the upgrade: {', '.join(changed)}")
        if self.access_before != self.access_after:
            changed = [key for key in self.access_before if self.access_before[key] != self.access_after.get(key)]
            found.append(f"a user's access changed: {'; '.join(changed)}")
        return found

    def verdict(self) -> str:
        head = f"upgrade check MLflow {self.old_version} -> {self.new_version}:"
        problems = self.problems()
        if problems:
            where = f" (server and database logs in {self.log_dir})" if self.log_dir else ""
            return f"{head} FAIL: {'; '.join(problems)}{where}"
        steps, auth_steps = len(self.migration_path), len(self.auth_migration_path)
        schema = (
            f"schema {self.old_revision} -> {self.new_revision} ({steps} migration{'s' * (steps != 1)}, "
            f"run once while {NEW_SERVERS} new servers started together)"
            if steps
            else f"schema unchanged ({self.new_revision}: no migrations)"
        )
        users = (
            f"users' schema {self.old_auth_revision} -> {self.new_auth_revision} "
            f"({auth_steps} migration{'s' * (auth_steps != 1)}, run once)"
            if auth_steps
            else f"users' schema unchanged ({self.new_auth_revision})"
        )
        order = f"in PostgreSQL's log: {' < '.join(self.step_order)}"
        left_out = sorted({patch for log in self.server_logs for patch in PATCH_LEFT_OUT.findall(log)})
        fast_path = (
            f"; NOTE: MLflow {self.new_version} changed internals that the image's patches were reviewed "
            f"against ({', '.join(left_out)} in docker/mlflow), so MLflow's own code serves instead (same answers, "
            "at the cost the servers' logs name) until they are reviewed against it (make test fails until then)"
            if left_out
            else ""
        )
        return (
            f"{head} PASS: {schema}; {users}; data unchanged ({counts(self.after)}) and a reader's access "
            f"unchanged ({len(self.access_after)} checks); the backup restores to the old heads; {order}{fast_path}"
        )


def shared_mode_env(postgres: Postgres, db_name: str, user: str, password: str, moto: MotoServer, bucket: str) -> dict:
    """The MLflow container's environment (shared mode), pointed at the loopback services."""
    return {
        "DB_HOST": postgres.host,
        "DB_PORT": str(postgres.port),
        "DB_NAME": db_name,
        "DB_USERNAME": user,
        "DB_PASSWORD": password,
        "DB_SSLMODE": "disable",
        **FAKE_AWS,
        "MLFLOW_S3_ENDPOINT_URL": moto.endpoint_url,
        "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{bucket}/{ARTIFACT_PREFIX}",
        "MLFLOW_AUTH_MODE": "shared",
        "MLFLOW_ENABLE_AI_GATEWAY": "false",
    }


def accounts_mode_env(shared: dict[str, str], db_name: str, admin: tuple[str, str], secret_key: str) -> dict:
    """The same container in accounts mode: MLflow's auth app, its users in `<db_name>_auth`."""
    return {
        **shared,
        "MLFLOW_AUTH_MODE": "accounts",
        "MLFLOW_AUTH_ADMIN_USERNAME": admin[0],
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin[1],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secret_key,
        "MLFLOW_AUTH_DEFAULT_PERMISSION": "NO_PERMISSIONS",
        "MLFLOW_AUTH_DB_NAME": f"{db_name}_auth",
    }


def signed_in(username: str, password: str) -> AbstractContextManager[None]:
    """The in-process MLflow client as this user (it reads its credentials from the environment)."""
    return environment({"MLFLOW_TRACKING_USERNAME": username, "MLFLOW_TRACKING_PASSWORD": password})


def _query(postgres: Postgres, db_name: str, statement: str) -> list[tuple]:
    conn = postgres.connect(db_name)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


TRACKING_MIGRATIONS = "mlflow/store/db_migrations"
AUTH_MIGRATIONS = "mlflow/server/auth/db/migrations"


def _migration_path(python: Path, old_revision: str, scripts_dir: str = TRACKING_MIGRATIONS) -> dict[str, Any]:
    """The head of `python`'s MLflow and the revisions from `old_revision` up to it.

    Read from that version's alembic scripts, without importing its MLflow.
    """
    from alembic.script import ScriptDirectory

    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    scripts = ScriptDirectory(str(Path(purelib) / scripts_dir))
    head = scripts.get_current_head()
    path = [revision.revision for revision in scripts.iterate_revisions(head, old_revision or None)]
    return {"head": head, "path": path[::-1]}


def _mark(postgres: Postgres, db_name: str, step: str) -> None:
    """Write a step into PostgreSQL's own log, between the statements of the servers."""
    _query(postgres, db_name, f"DO $$ BEGIN RAISE LOG '{STEP_MARK}{step}'; END $$")


def _order_logged(db_log: Path, offset: int) -> list[str]:
    """The steps in the order PostgreSQL logged them: the check's marks, a new server's first
    data-changing statement, and the first migration step (an UPDATE of either alembic table)."""
    order: list[str] = []
    with open(db_log, encoding="utf-8", errors="replace") as handle:
        handle.seek(offset)
        for line in handle:
            if STEP_MARK in line:
                order.append(line.split(STEP_MARK, 1)[1].strip())
            elif "statement: " in line:
                if FIRST_WRITE not in order:
                    order.append(FIRST_WRITE)
                if MIGRATION not in order and re.search(r"UPDATE alembic_version(_auth)? SET version_num=", line):
                    order.append(MIGRATION)
    return order


def _backup(postgres: Postgres, databases: tuple[str, ...], directory: Path) -> dict[str, Path]:
    """pg_dump of each database (custom format): what the deploy's cluster snapshot stands for."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The password reaches pg_dump through its environment, never its command line.
    env = {**base_env(), "PGPASSWORD": postgres.superuser_password}
    dumps = {}
    for db_name in databases:
        dumps[db_name] = directory / f"{db_name}.dump"
        subprocess.run(
            [postgres.bindir / "pg_dump", "-h", postgres.host, "-p", str(postgres.port), "-U", postgres.superuser,
             "-d", db_name, "-Fc", "-f", dumps[db_name]],
            env=env, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    return dumps


def _restore(postgres: Postgres, dump: Path, db_name: str) -> None:
    """Restore a dump into a new database `db_name` (objects owned by the superuser)."""
    _query(postgres, "postgres", f"CREATE DATABASE {db_name}")
    env = {**base_env(), "PGPASSWORD": postgres.superuser_password}
    subprocess.run(
        [postgres.bindir / "pg_restore", "-h", postgres.host, "-p", str(postgres.port), "-U", postgres.superuser,
         "-d", db_name, "--no-owner", "--exit-on-error", dump],
        env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip


def _steps_logged(db_log: Path, offset: int, tables: tuple[str, ...]) -> dict[str, list[str]]:
    """For each table, the revisions PostgreSQL's statement log shows it set to, from `offset` on."""
    markers = {table: f"UPDATE {table} SET version_num='" for table in tables}  # noqa: S608 - matched, not run
    steps: dict[str, list[str]] = {table: [] for table in tables}
    with open(db_log, encoding="utf-8", errors="replace") as handle:
        handle.seek(offset)
        for line in handle:
            for table, marker in markers.items():
                if marker in line:
                    steps[table].append(line.split(marker, 1)[1].split("'", 1)[0])
    return steps


def check_upgrade(
    *, postgres: Postgres, moto: MotoServer, workdir: Path, old_version: str, new_version: str
) -> UpgradeResult:
    """Run the upgrade on a fresh database and bucket of `postgres` and `moto` (both running)."""
    from mlflow import MlflowClient

    old_python = mlflow_python(old_version)
    new_python = mlflow_python(new_version)
    result = UpgradeResult(old_version=old_version, new_version=new_version, log_dir=workdir / "logs")
    suffix = secrets.token_hex(3)
    db_name, user, password = f"upgrade_{suffix}", f"upgrade_{suffix}", new_password("@:/%")
    auth_db = f"{db_name}_auth"
    bucket = f"upgrade-check-{suffix}"
    postgres.ensure_database(db_name, user, password)
    moto.create_bucket(bucket)
    admin, reader_password = ("admin", new_password()), new_password()
    env = accounts_mode_env(
        shared_mode_env(postgres, db_name, user, password, moto, bucket), db_name, admin, secrets.token_hex(24)
    )

    def server(name: str, python: Path, **extra: str) -> MlflowServer:
        return MlflowServer(
            workdir / name, log_dir=workdir / "logs", log_name=f"{name}.log", env={**env, **extra}, workers=1,
            python=python,
        )  # fmt: skip

    old = server(f"mlflow-{old_version}", old_python, MLFLOW_AUTH_CREDENTIAL_CACHE="mlflow-ttl")
    new = [server(f"mlflow-{new_version}-{index}", new_python) for index in range(NEW_SERVERS)]
    try:
        old.start()
        with signed_in(*admin):
            client = MlflowClient(tracking_uri=old.url)
            log_sample_data(client, workdir / "sample")
            log_sample_access(old.url, admin, reader_password)
            result.before = inventory(client)
        result.access_before = access(old.url, admin, reader_password)
        result.old_revision = _query(postgres, db_name, "SELECT version_num FROM alembic_version")[0][0]
        result.old_auth_revision = _query(postgres, auth_db, "SELECT version_num FROM alembic_version_auth")[0][0]
        path = _migration_path(new_python, result.old_revision)
        result.expected_revision, result.migration_path = path["head"], path["path"]
        path = _migration_path(new_python, result.old_auth_revision, AUTH_MIGRATIONS)
        result.expected_auth_revision, result.auth_migration_path = path["head"], path["path"]

        # From here on PostgreSQL logs every data-changing statement of both databases.
        for each_db in (db_name, auth_db):
            _query(postgres, each_db, f"ALTER DATABASE {each_db} SET log_statement = 'mod'")
        db_log = postgres.log_dir / "postgres.log"
        log_start = db_log.stat().st_size if db_log.exists() else 0

        # 1. The backup, while the old version still serves (the deploy's snapshot).
        dumps = _backup(postgres, (db_name, auth_db), workdir / "backup")
        _mark(postgres, db_name, BACKUP)
        # 2. Every writer of the old version stopped (the service scaled to 0): none of its connections left.
        old.stop()
        result.connections_after_stop = sum(postgres.count_connections(each_db) for each_db in (db_name, auth_db))
        _mark(postgres, db_name, OLD_STOPPED)
        # 3. The new version's servers start together (the service scaled back up); one migrates.
        for each in new:
            each.process.start()
        try:
            for each in new:
                each.wait_ready()
        except ServiceError as error:
            # The server's own last words (the entrypoint's one-line refusal, or a traceback's end).
            result.start_failures.append(str(error).strip().splitlines()[-1])
            return result
        _mark(postgres, db_name, NEW_READY)
        with signed_in(*admin):
            result.after = inventory(MlflowClient(tracking_uri=new[0].url))
        result.access_after = access(new[-1].url, admin, reader_password)
        result.new_revision = _query(postgres, db_name, "SELECT version_num FROM alembic_version")[0][0]
        result.new_auth_revision = _query(postgres, auth_db, "SELECT version_num FROM alembic_version_auth")[0][0]
        time.sleep(0.5)  # the logging collector's last lines
        steps = _steps_logged(db_log, log_start, ("alembic_version", "alembic_version_auth"))
        result.steps_in_database_log = steps["alembic_version"]
        result.auth_steps_in_database_log = steps["alembic_version_auth"]
        result.step_order = _order_logged(db_log, log_start)

        # The backup is restorable: it holds the old heads and every run.
        restored, restored_auth = f"{db_name}_restored", f"{db_name}_restored_auth"
        _restore(postgres, dumps[db_name], restored)
        _restore(postgres, dumps[auth_db], restored_auth)
        result.backup_revisions = (
            _query(postgres, restored, "SELECT version_num FROM alembic_version")[0][0],
            _query(postgres, restored_auth, "SELECT version_num FROM alembic_version_auth")[0][0],
        )
        result.backup_runs = _query(postgres, restored, "SELECT count(*) FROM runs")[0][0]
    finally:
        for each in (*new, old):
            each.stop()
        result.server_logs = [each.process.log_path.read_text() for each in new if each.process.log_path.exists()]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make upgrade-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("version", help="the MLflow release to upgrade to, e.g. 3.18.0")
    parser.add_argument(
        "--from", dest="old", default=pinned_mlflow_version(),
        help=f"the release to upgrade from (default: the pinned {pinned_mlflow_version()}; "
        f"the test suite uses {PREVIOUS_MLFLOW_VERSION})",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs) on success")
    args = parser.parse_args(argv)
    if args.version == args.old:
        print(
            f"upgrade check: MLflow {args.version} is the version to upgrade from; give the release to try",
            file=sys.stderr,
        )
        return 2
    try:
        older = Version(args.version) < Version(args.old)
    except InvalidVersion:
        older = False  # mlflow_python() below says what a release looks like
    if older:
        print(
            f"upgrade check: MLflow {args.version} is older than {args.old}, the version to upgrade from; "
            "give a newer release (to go back, see Rolling back in docs/operations.md)",
            file=sys.stderr,
        )
        return 2
    try:
        for version in (args.old, args.version):
            mlflow_python(version, quiet=False)  # installs first, so a bad version fails in seconds
    except VersionUnavailable as error:
        print(f"upgrade check: {error}", file=sys.stderr)
        return 2
    # The verdict is the output, not the MLflow client's links to each run it logs or its progress
    # notes (read when mlflow is first imported; the servers get their own environment).
    os.environ.update({"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true", "MLFLOW_LOGGING_LEVEL": "WARNING"})
    workdir = Path(tempfile.mkdtemp(prefix="mlflow-upgrade-check-"))
    logs = workdir / "logs"
    try:
        moto = MotoServer(log_dir=logs)
        postgres = Postgres(workdir / "postgres", log_dir=logs, superuser_password=new_password())
        moto.start()
        try:
            postgres.start()
            result = check_upgrade(
                postgres=postgres, moto=moto, workdir=workdir, old_version=args.old, new_version=args.version
            )
        finally:
            postgres.stop()
            moto.stop()
    except VersionUnavailable as error:
        print(f"upgrade check: {error}", file=sys.stderr)
        return 2
    except ServiceError as error:
        print(f"upgrade check: could not run: {error} (logs in {logs})", file=sys.stderr)
        return 2
    print(result.verdict())
    if result.problems() or args.keep:
        return 1 if result.problems() else 0
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
