"""Upgrade MLflow on a copy of a deployment, on loopback, and say whether it is safe.

What a rollout of a new MLflow version does to a deployment, in small:

1. a server of the running version (docker/mlflow/entrypoint.py, as in the
   image) creates its schema in a fresh PostgreSQL database and serves
   artifacts from an S3 bucket (moto); the real MLflow client logs a sample of
   everything (localrun/mlflow_inventory.py) and reads it back;
2. two servers of the new version start at the same moment against that
   database while the old one keeps running, as the tasks of an ECS rollout
   do: the entrypoint's advisory lock lets one of them migrate the schema,
   the other waits and finds it current;
3. the sample, read back through a new server, must be unchanged, the
   database's `alembic_version` must have moved from the old head to the new
   one, and PostgreSQL's statement log must show each migration step once.

`make upgrade-check VERSION=x.y.z` runs it from the pinned version to x.y.z;
the test suite runs it from the previous release to the pinned one
(tests/integration/test_mlflow_upgrade.py).
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localrun.mlflow_inventory import counts, inventory, log_sample_data
from localrun.mlflow_versions import PREVIOUS_MLFLOW_VERSION, VersionUnavailable, mlflow_python
from localrun.process import ServiceError, http_status
from localrun.services import FAKE_AWS, MlflowServer, MotoServer, Postgres
from localrun.stack import ARTIFACT_PREFIX, new_password
from stacks.mlflow_version import pinned_mlflow_version

NEW_SERVERS = 2


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
    old_server_status_after: int = 0
    old_server_reads_after: bool = False
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    log_dir: Path | None = None

    def migrations_logged(self) -> int:
        return sum(log.count("tracking schema migrated from") for log in self.server_logs)

    def problems(self) -> list[str]:
        found = []
        if self.new_revision != self.expected_revision:
            found.append(
                f"alembic_version is {self.new_revision or 'missing'}, MLflow {self.new_version}'s head is "
                f"{self.expected_revision}"
            )
        if self.steps_in_database_log != self.migration_path:
            found.append(
                f"PostgreSQL's log shows migration steps {self.steps_in_database_log}, expected each of "
                f"{self.migration_path} once"
            )
        expected_runs = 1 if self.migration_path else 0
        if self.migrations_logged() != expected_runs:
            found.append(f"{self.migrations_logged()} servers migrated the schema, expected {expected_runs}")
        if any("Traceback" in log for log in self.server_logs):
            found.append("a new server logged a traceback")
        if self.before != self.after:
            changed = [key for key in self.before if self.before[key] != self.after.get(key)]
            found.append(f"data changed by the upgrade: {', '.join(changed)}")
        return found

    def verdict(self) -> str:
        head = f"upgrade check MLflow {self.old_version} -> {self.new_version}:"
        problems = self.problems()
        if problems:
            where = f" (server and database logs in {self.log_dir})" if self.log_dir else ""
            return f"{head} FAIL: {'; '.join(problems)}{where}"
        steps = len(self.migration_path)
        schema = (
            f"schema {self.old_revision} -> {self.new_revision} ({steps} migration{'s' * (steps != 1)}, "
            f"run once while {NEW_SERVERS} new servers started together)"
            if steps
            else f"schema unchanged ({self.new_revision}: no migrations)"
        )
        old = (
            "the old server kept serving reads on the migrated schema"
            if self.old_server_status_after == 200 and self.old_server_reads_after
            else "WARNING: the old server failed reads on the migrated schema (requests that reach old tasks "
            "fail until the rollout ends)"
        )
        return f"{head} PASS: {schema}; data unchanged ({counts(self.after)}); {old}"


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
    }


def _query(postgres: Postgres, db_name: str, statement: str) -> list[tuple]:
    conn = postgres.connect(db_name)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def _migration_path(python: Path, old_revision: str) -> dict[str, Any]:
    """The head of `python`'s MLflow and the revisions from `old_revision` up to it.

    Read from that version's alembic scripts, without importing its MLflow.
    """
    from alembic.script import ScriptDirectory

    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    scripts = ScriptDirectory(str(Path(purelib) / "mlflow" / "store" / "db_migrations"))
    head = scripts.get_current_head()
    path = [revision.revision for revision in scripts.iterate_revisions(head, old_revision or None)]
    return {"head": head, "path": path[::-1]}


def _reads(client: Any, before: dict[str, Any]) -> bool:
    """Whether a server still lists the runs and models it knew (the old one, after the migration)."""
    from mlflow.entities import ViewType

    try:
        runs = client.search_runs(sorted(before["experiments"]), run_view_type=ViewType.ALL)
        models = client.search_registered_models()
    except Exception:  # noqa: BLE001 - any failure means it no longer serves
        return False
    return {run.info.run_id for run in runs} == set(before["runs"]) and {model.name for model in models} == set(
        before["registered_models"]
    )


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
    bucket = f"upgrade-check-{suffix}"
    postgres.ensure_database(db_name, user, password)
    moto.create_bucket(bucket)
    env = shared_mode_env(postgres, db_name, user, password, moto, bucket)

    def server(name: str, python: Path) -> MlflowServer:
        return MlflowServer(
            workdir / name, log_dir=workdir / "logs", log_name=f"{name}.log", env=env, workers=1, python=python
        )

    old = server(f"mlflow-{old_version}", old_python)
    new = [server(f"mlflow-{new_version}-{index}", new_python) for index in range(NEW_SERVERS)]
    try:
        old.start()
        client = MlflowClient(tracking_uri=old.url)
        log_sample_data(client, workdir / "sample")
        result.before = inventory(client)
        result.old_revision = _query(postgres, db_name, "SELECT version_num FROM alembic_version")[0][0]
        path = _migration_path(new_python, result.old_revision)
        result.expected_revision, result.migration_path = path["head"], path["path"]

        # From here on PostgreSQL logs every data-changing statement of this database.
        _query(postgres, db_name, f"ALTER DATABASE {db_name} SET log_statement = 'mod'")
        db_log = postgres.log_dir / "postgres.log"
        log_start = db_log.stat().st_size if db_log.exists() else 0
        for each in new:  # at the same moment, like the tasks of a rollout
            each.process.start()
        for each in new:
            each.wait_ready()
        result.old_server_status_after = http_status(f"{old.url}/health")
        result.old_server_reads_after = _reads(MlflowClient(tracking_uri=old.url), result.before)
        result.after = inventory(MlflowClient(tracking_uri=new[0].url))
        result.new_revision = _query(postgres, db_name, "SELECT version_num FROM alembic_version")[0][0]
        time.sleep(0.5)  # the logging collector's last lines
        with open(db_log, encoding="utf-8", errors="replace") as handle:
            handle.seek(log_start)
            result.steps_in_database_log = [
                line.split("SET version_num='", 1)[1].split("'", 1)[0]
                for line in handle
                if "UPDATE alembic_version SET version_num='" in line
            ]
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
        for version in (args.old, args.version):
            mlflow_python(version, quiet=False)  # installs first, so a bad version fails in seconds
    except VersionUnavailable as error:
        print(f"upgrade check: {error}", file=sys.stderr)
        return 2
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
