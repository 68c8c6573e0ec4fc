"""The task's services, run natively on loopback.

MlflowServer and NginxProxy run the images' own entrypoints
(docker/mlflow/entrypoint.py, docker/nginx/entrypoint.sh) with the repo's
config, so tests exercise what ships. Postgres stands in for Aurora and
MotoServer for S3 (and any other AWS API a test needs).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from localrun.process import (
    LOOPBACK,
    ManagedProcess,
    ServiceError,
    free_port,
    http_status,
    private_dir,
    run_as_user,
    wait_until,
)
from stacks.auth_modes import DEFAULT_AUTH_MODE, needs_of

REPO_ROOT = Path(__file__).resolve().parent.parent
MLFLOW_ENTRYPOINT = REPO_ROOT / "docker" / "mlflow" / "entrypoint.py"
NGINX_ENTRYPOINT = REPO_ROOT / "docker" / "nginx" / "entrypoint.sh"
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def base_env() -> dict[str, str]:
    """A minimal environment: nothing of the caller's leaks into a server."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    # The caller's venv, so `python -m mlflow` finds the same packages.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def postgres_bindir() -> Path:
    """Where initdb and postgres live (Debian keeps them out of PATH)."""
    configured = os.environ.get("PG_BINDIR")
    candidates = [configured] if configured else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    if initdb := shutil.which("initdb"):
        candidates.append(str(Path(initdb).parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    raise ServiceError(
        "PostgreSQL server binaries (initdb, postgres) not found: install the Debian "
        "package 'postgresql' (apt-get install postgresql postgresql-contrib) "
        "or set PG_BINDIR"
    )


def nginx_binary() -> Path:
    configured = os.environ.get("NGINX_BIN") or shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(configured, os.X_OK):
        raise ServiceError(
            "nginx not found: install the Debian package 'nginx-light' (apt-get install nginx-light) or set NGINX_BIN"
        )
    return Path(configured)


class Postgres:
    """A throw-away PostgreSQL cluster with password (SCRAM) auth on loopback."""

    superuser = "postgres"

    def __init__(
        self, workdir: Path, *, log_dir: Path, superuser_password: str,
        port: int | None = None, durable: bool = False, settings: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.bindir = postgres_bindir()
        self.log_dir = log_dir
        self.superuser_password = superuser_password
        self.port = port or free_port()
        self.durable = durable
        # Extra server settings (e.g. ssl=on and its files for the TLS tests).
        self.settings = dict(settings or {})
        self.run_as = run_as_user()
        self.workdir = private_dir(workdir, self.run_as, durable=durable)
        self.data_dir = self.workdir / "data"
        self.process: ManagedProcess | None = None

    @property
    def host(self) -> str:
        return LOOPBACK

    def _initdb(self) -> None:
        # The password goes through a private file, never through argv.
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.superuser_password + "\n")
        pwfile.chmod(0o600)
        if self.run_as:
            os.chown(pwfile, *self.run_as)
        user: dict[str, Any] = {}
        if self.run_as:
            user = {"user": self.run_as[0], "group": self.run_as[1], "extra_groups": []}
        # Throw-away data (as with fsync=off below): initdb need not wait for its files to reach
        # the disk, which takes it about half of its 5 s here.
        no_sync = [] if self.durable else ["--no-sync"]
        try:
            subprocess.run(
                [str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", self.superuser,
                 "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                 "--no-instructions", *no_sync],  # fmt: skip
                check=True, capture_output=True, env=base_env(), cwd=self.workdir, **user,
            )  # fmt: skip
        except subprocess.CalledProcessError as error:
            output = error.stdout.decode() + error.stderr.decode()
            raise ServiceError(f"initdb failed:\n{output}") from error
        finally:
            pwfile.unlink(missing_ok=True)

    def _clear_stale_lock(self) -> None:
        """Remove postmaster.pid when the pid it names now belongs to something other than PostgreSQL.

        After a hard kill PostgreSQL finds its lock stale by itself, unless the
        pid went to another process since; a lock whose pid is PostgreSQL (or
        no process at all) stays, as PostgreSQL's own checks need it.
        """
        import psutil

        lock = self.data_dir / "postmaster.pid"
        try:
            pid = int(lock.read_text().split("\n", 1)[0])
            name = psutil.Process(pid).name()
        except (FileNotFoundError, ValueError, psutil.NoSuchProcess, psutil.AccessDenied):
            return
        if name not in ("postgres", "postmaster"):
            lock.unlink(missing_ok=True)

    def start(self, timeout: float = 60) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._clear_stale_lock()
        settings = [
            f"listen_addresses={LOOPBACK}",
            f"port={self.port}",
            "unix_socket_directories=",
            "max_connections=100",
            # Statements that fail are not logged with their text, so a
            # CREATE ROLE ... PASSWORD can never leave a trace in the log.
            "log_min_error_statement=panic",
        ]
        if not self.durable:
            # Test data is disposable: trade crash safety for speed.
            settings += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
        settings += [f"{name}={value}" for name, value in self.settings.items()]
        argv: list[str | os.PathLike[str]] = [self.bindir / "postgres", "-D", self.data_dir]
        for setting in settings:
            argv += ["-c", setting]
        self.process = ManagedProcess(
            "postgres", argv, env=base_env(), log_path=self.log_dir / "postgres.log",
            run_as=self.run_as, stop_signal=signal.SIGINT, cwd=self.workdir,
        )  # fmt: skip
        self.process.start()
        wait_until(self._accepts_connections, timeout=timeout, what="PostgreSQL",
                   process=self.process)  # fmt: skip

    def connect(self, dbname: str = "postgres"):  # noqa: ANN201 - psycopg2 connection
        import psycopg2

        return psycopg2.connect(
            host=LOOPBACK, port=self.port, user=self.superuser,
            password=self.superuser_password, dbname=dbname, connect_timeout=3,
        )  # fmt: skip

    def _accepts_connections(self) -> bool:
        import psycopg2

        try:
            self.connect().close()
            return True
        except psycopg2.OperationalError:
            return False

    def ensure_database(self, name: str, owner: str, password: str) -> None:
        """Create (or update) a login role and its database, like Aurora's secret.

        The role may create databases, as Aurora's master user may: in
        accounts mode the MLflow entrypoint creates the users' database.
        """
        from psycopg2 import sql
        from psycopg2.extensions import encrypt_password

        conn = self.connect()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                # Only the SCRAM verifier is sent to the server, not the password.
                verifier = encrypt_password(password, owner, conn, "scram-sha-256")
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(
                    sql.SQL(verb + " ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                        sql.Identifier(owner), sql.Literal(verifier)
                    )
                )
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if not cur.fetchone():
                    cur.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner))
                    )
        finally:
            conn.close()

    def count_connections(self, dbname: str) -> int:
        """Client connections currently open to `dbname` (ours excluded)."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    (dbname,),
                )
                return int(cur.fetchone()[0])
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process:
            self.process.stop()


class HttpService:
    """A process on loopback that is ready once an HTTP probe of it succeeds."""

    what = "service"
    probe_path = "/"
    start_timeout = 60.0
    process: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def is_ready(self, status: int) -> bool:
        return status == 200

    def start(self, timeout: float | None = None) -> None:
        self.process.start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Until the probe succeeds (fails early if the process exits)."""
        wait_until(
            lambda: self.is_ready(http_status(f"{self.url}{self.probe_path}")),
            timeout=timeout or self.start_timeout, what=self.what, process=self.process,
        )  # fmt: skip

    def stop(self) -> None:
        self.process.stop()

    def restart(self) -> None:
        self.stop()
        self.start()


class MotoServer(HttpService):
    """moto in multi-service server mode: S3, Secrets Manager, SageMaker, ...

    S3 answers browsers' CORS requests as the real one does, from the
    bucket's CORS rules only: moto's server otherwise allows every origin
    on every response, which would hide a missing or wrong rule. SageMaker
    also answers UpdateEndpoint, which moto lacks (localrun/moto_sagemaker.py).
    """

    what = "moto server"
    probe_path = "/moto-api/"

    def __init__(self, *, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process = ManagedProcess(
            "moto",
            [sys.executable, "-m", "localrun.moto_sagemaker", "-H", LOOPBACK, "-p", str(self.port)],
            # PYTHONPATH: this checkout's localrun, whatever the caller's working directory.
            env={**base_env(), **FAKE_AWS, "MOTO_DISABLE_GLOBAL_CORS": "true", "PYTHONPATH": str(REPO_ROOT)},
            log_path=log_dir / "moto.log",
        )

    @property
    def endpoint_url(self) -> str:
        return self.url

    def client(  # noqa: ANN201 - a boto3 client
        self, service: str, *, region_name: str | None = None, config: object | None = None
    ):
        """`config`: a botocore Config (e.g. the client's checksum behaviour)."""
        import boto3

        return boto3.client(
            service, endpoint_url=self.endpoint_url, region_name=region_name or FAKE_AWS["AWS_REGION"],
            aws_access_key_id="testing", aws_secret_access_key="testing", config=config,  # noqa: S106 - moto's
        )  # fmt: skip

    def create_bucket(self, name: str, *, cors_origins: list[str] | None = None) -> None:
        """A bucket (kept if it exists), with the deployment's CORS rule for `cors_origins`."""
        from stacks.components.artifact_cors import artifact_cors_rules

        s3 = self.client("s3")
        if name not in {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=name)
        if cors_origins:
            s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": artifact_cors_rules(cors_origins)})

    @property
    def running(self) -> bool:
        return self.process.running

    def save_bucket(self, bucket: str, directory: Path) -> int:
        """Copy every object of `bucket` into `directory` (which then holds nothing else)."""
        s3 = self.client("s3")
        staging = directory.with_name(directory.name + ".saving")
        shutil.rmtree(staging, ignore_errors=True)
        count = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                target = staging / item["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, item["Key"], str(target))
                count += 1
        staging.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
        return count

    def restore_bucket(self, bucket: str, directory: Path) -> int:
        """Upload what `save_bucket` left in `directory` (moto keeps nothing between runs)."""
        if not directory.is_dir():
            return 0
        s3 = self.client("s3")
        files = [path for path in directory.rglob("*") if path.is_file()]
        for path in files:
            s3.upload_file(str(path), bucket, path.relative_to(directory).as_posix())
        return len(files)


class MlflowServer(HttpService):
    """docker/mlflow/entrypoint.py on loopback, with the environment ECS gives it."""

    what = "MLflow server"
    probe_path = "/health"
    start_timeout = 180.0

    def __init__(
        self, workdir: Path, *, log_dir: Path, env: dict[str, str],
        port: int | None = None, workers: int | None = None, writable: Sequence[Path] = (),
        log_name: str = "mlflow.log", python: Path | None = None, entrypoint: Path = MLFLOW_ENTRYPOINT,
    ) -> None:  # fmt: skip
        """`python`: the interpreter to run the entrypoint with (another MLflow version's venv);
        `entrypoint`: the image's entrypoint.py (a changed copy of the image's files)."""
        self.port = port or free_port()
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (workdir / "tmp").mkdir(exist_ok=True, mode=0o700)
        # The image's scratch is /tmp: HOME and MLFLOW_RUNTIME_DIR are /tmp/mlflow
        # there. Natively all three live in workdir, the one writable directory
        # (plus `writable`: a SQLite file's directory).
        scratch = {"HOME": str(workdir), "MLFLOW_RUNTIME_DIR": str(workdir), "TMPDIR": str(workdir / "tmp")}
        # As in the image: no bytecode caches written next to docker/mlflow's files.
        server_env = {**base_env(), **scratch, "PYTHONDONTWRITEBYTECODE": "1", **env, "MLFLOW_PORT": str(self.port)}
        python = python or Path(sys.executable)
        server_env["PATH"] = f"{python.parent}{os.pathsep}{server_env['PATH']}"
        if workers is not None:
            server_env["MLFLOW_WORKERS"] = str(workers)
        self.workdir = workdir
        self.process = ManagedProcess(
            "mlflow", [python, entrypoint], env=server_env,
            log_path=log_dir / log_name, cwd=workdir, readonly_root=[workdir, *writable],
        )  # fmt: skip

    def rss_bytes(self) -> int:
        """Resident memory of the whole process tree (server, uvicorn, workers)."""
        import psutil

        total = 0
        for pid in self.process.process_tree_pids():
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total


class NginxProxy(HttpService):
    """docker/nginx/entrypoint.sh with the repo's config template, on loopback."""

    what = "nginx"
    probe_path = "/elb-status"
    start_timeout = 30.0

    def __init__(
        self, workdir: Path, *, log_dir: Path, username: str | None = None,
        password: str | None = None, upstream_port: int, port: int | None = None,
        auth_mode: str = DEFAULT_AUTH_MODE, iam_port: int | None = None,
    ) -> None:  # fmt: skip
        self.port = port or free_port()
        # The IAM server (NGINX_IAM_LISTEN): what API Gateway's IAM route reaches, when given.
        self.iam_port = iam_port
        run_as = run_as_user()
        workdir = private_dir(workdir, run_as)
        credentials = {"MLFLOW_USERNAME": username, "MLFLOW_PASSWORD": password}
        env = {
            **base_env(),
            "MLFLOW_AUTH_MODE": auth_mode,
            # The task passes the credentials to nginx in shared mode only.
            **({k: v for k, v in credentials.items() if v} if needs_of(auth_mode).nginx_basic_auth else {}),
            "NGINX_PORT": str(self.port),
            "NGINX_LISTEN_ADDRESS": LOOPBACK,
            **({"NGINX_IAM_LISTEN": str(iam_port)} if iam_port else {}),
            "MLFLOW_UPSTREAM": f"{LOOPBACK}:{upstream_port}",
            "NGINX_RUNTIME_DIR": str(workdir / "runtime"),
            "NGINX_BIN": str(nginx_binary()),
        }
        self.workdir = workdir
        self.process = ManagedProcess(
            "nginx", [NGINX_ENTRYPOINT], env=env, log_path=log_dir / "nginx.log",
            run_as=run_as, cwd=workdir, readonly_root=[workdir],
        )  # fmt: skip

    @property
    def iam_url(self) -> str | None:
        """The IAM server's URL: requests there carry the caller header API Gateway would write."""
        return f"http://{LOOPBACK}:{self.iam_port}" if self.iam_port else None

    def is_ready(self, status: int) -> bool:
        # Any HTTP answer means nginx is up, whether or not MLflow is.
        return status != 0
