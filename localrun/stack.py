"""The whole MLflow task on loopback: PostgreSQL, MLflow, nginx (+ moto S3).

Wired the way the ECS task is: nginx is the only entry, MLflow listens on
loopback, the database password reaches MLflow only through its entrypoint's
environment, and clients write artifacts straight to the object store.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from localrun.process import ServiceError
from localrun.services import FAKE_AWS, MlflowServer, MotoServer, NginxProxy, Postgres


def new_password(reserved: str = "") -> str:
    """A random password; `reserved` appends characters that need escaping."""
    return secrets.token_urlsafe(18) + reserved


class MlflowStack:
    """Start, restart and stop the services; hand clients what they need."""

    db_name = "mlflow"
    db_user = "mlflow"
    username = "mlflow"

    def __init__(
        self,
        root: Path,
        *,
        moto: MotoServer | None = None,
        password: str | None = None,
        db_password: str | None = None,
        db_superuser_password: str | None = None,
        workers: int | None = None,
        durable: bool = False,
        db_idle_timeout: int | None = None,
        proxy_port: int | None = None,
        sqlite_fallback: bool = False,
        server_env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.log_dir = root / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.moto = moto
        self.db_idle_timeout = db_idle_timeout
        # Characters that break naive URL or header handling on purpose.
        self.password = password or new_password(":@%")
        self.db_password = db_password or new_password("@:/%#?&")
        self.bucket = f"mlflow-artifacts-{secrets.token_hex(4)}"
        self.postgres: Postgres | None = None
        db_env: dict[str, str]
        # What MLflow may write besides its scratch (the task's S3 and Aurora).
        data_dirs: list[Path] = []
        try:
            self.postgres = Postgres(
                root / "postgres", log_dir=self.log_dir, durable=durable,
                superuser_password=db_superuser_password or new_password(),
            )  # fmt: skip
            db_env = {
                "DB_HOST": self.postgres.host,
                "DB_PORT": str(self.postgres.port),
                "DB_NAME": self.db_name,
                "DB_USERNAME": self.db_user,
                "DB_PASSWORD": self.db_password,
                # Local PostgreSQL speaks no TLS; Aurora requires it and the
                # entrypoint verifies its certificate (verify-full, the default).
                "DB_SSLMODE": "disable",
            }
            if db_idle_timeout is not None:
                db_env["DB_IDLE_SESSION_TIMEOUT"] = str(db_idle_timeout)
        except ServiceError:
            if not sqlite_fallback:
                raise
            # In a directory of its own: SQLite writes a journal next to the file.
            (root / "sqlite").mkdir(exist_ok=True, mode=0o700)
            if (root / "mlflow.db").exists() and not (root / "sqlite" / "mlflow.db").exists():
                (root / "mlflow.db").rename(root / "sqlite" / "mlflow.db")  # where earlier versions kept it
            db_env = {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{root / 'sqlite' / 'mlflow.db'}"}
            data_dirs.append(root / "sqlite")
        if moto is not None:
            self.artifact_root = f"s3://{self.bucket}/artifacts"
            store_env = {**FAKE_AWS, "MLFLOW_S3_ENDPOINT_URL": moto.endpoint_url}
        else:
            (root / "artifacts").mkdir(exist_ok=True, mode=0o700)
            self.artifact_root = str((root / "artifacts").resolve())
            data_dirs.append(root / "artifacts")
            store_env = {}
        self.mlflow = MlflowServer(
            root / "mlflow", log_dir=self.log_dir, workers=workers, writable=data_dirs,
            env={**db_env, **store_env, "MLFLOW_ARTIFACT_ROOT": self.artifact_root,
                 **(server_env or {})},
        )  # fmt: skip
        self.nginx = NginxProxy(
            root / "nginx", log_dir=self.log_dir, username=self.username,
            password=self.password, upstream_port=self.mlflow.port, port=proxy_port,
        )  # fmt: skip

    @property
    def proxy_url(self) -> str:
        return self.nginx.url

    @property
    def direct_url(self) -> str:
        return self.mlflow.url

    @property
    def moto_endpoint(self) -> str | None:
        return self.moto.endpoint_url if self.moto else None

    def client_env(self) -> dict[str, str]:
        """What a real MLflow client needs to log through the proxy."""
        env = {
            "MLFLOW_TRACKING_URI": self.proxy_url,
            "MLFLOW_TRACKING_USERNAME": self.username,
            "MLFLOW_TRACKING_PASSWORD": self.password,
        }
        if self.moto is not None:
            env |= {**FAKE_AWS, "MLFLOW_S3_ENDPOINT_URL": self.moto.endpoint_url}
        return env

    def log_files(self) -> list[Path]:
        return sorted(self.log_dir.glob("*.log"))

    def start(self) -> None:
        try:
            if self.postgres is not None:
                self.postgres.start()
                self.postgres.ensure_database(self.db_name, self.db_user, self.db_password)
            if self.moto is not None:
                self.moto.create_bucket(self.bucket)
            self.mlflow.start()
            self.nginx.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop in reverse order; never leave a process behind."""
        for stop in (self.nginx.stop, self.mlflow.stop, self.postgres and self.postgres.stop):
            if stop:
                stop()

    def stop_mlflow(self) -> None:
        self.mlflow.stop()

    def start_mlflow(self) -> None:
        self.mlflow.start()

    def restart_mlflow(self) -> None:
        self.mlflow.restart()

    def restart_nginx(self) -> None:
        self.nginx.restart()


@contextmanager
def running_stack(root: Path, **kwargs: object) -> Iterator[MlflowStack]:
    """An MlflowStack (with its own moto server) for scripts and benchmarks."""
    moto = MotoServer(log_dir=root / "logs")
    moto.start()
    try:
        stack = MlflowStack(root, moto=moto, **kwargs)  # type: ignore[arg-type]
        stack.start()
        try:
            yield stack
        finally:
            stack.stop()
    finally:
        moto.stop()
