"""The whole MLflow task on loopback: PostgreSQL, MLflow, nginx, with moto as S3.

Wired the way the ECS task is: nginx is the only entry, MLflow listens on
loopback, the database password reaches MLflow only through its entrypoint's
environment, and MLflow serves the artifacts from the bucket (clients move
large ones straight to and from S3 through presigned URLs).
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType

from localrun.iam_gateway import CredentialTable, IamGateway
from localrun.oidc import OidcClient, OidcProvider, OidcUser
from localrun.process import ServiceError, free_port
from localrun.services import FAKE_AWS, MLFLOW_ENTRYPOINT, REPO_ROOT, MlflowServer, MotoServer, NginxProxy, Postgres
from stacks.auth_modes import DEFAULT_AUTH_MODE, needs_of, parse_mode
from stacks.iam_callers import PRINCIPALS_ENV, PRINCIPALS_PATH_ENV, SIGN_IN_ENV

# sso mode: the MLflow app client at the local OpenID provider, and its groups.
SSO_CLIENT_ID = "mlflow"
SSO_ADMIN_GROUP = "mlflow-admins"
SSO_ALLOWED_GROUP = "mlflow-users"
ARTIFACT_PREFIX = "mlflow-artifacts"


def new_password(reserved: str = "") -> str:
    """A random password; `reserved` appends characters that need escaping."""
    return secrets.token_urlsafe(18) + reserved


@cache
def check_mode(mode: str) -> None:
    """ServiceError unless `mode` is an auth mode."""
    try:
        parse_mode(mode)
    except ValueError as error:
        raise ServiceError(f"auth mode {error}") from None


def lab_mlflow_setup() -> ModuleType:
    """lab/source_dir/mlflow_setup.py: the client settings users get, for our clients too."""
    path = REPO_ROOT / "lab" / "source_dir" / "mlflow_setup.py"
    spec = importlib.util.spec_from_file_location("lab_mlflow_setup", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def artifact_transfer_settings(*, signed: bool = False) -> dict[str, str]:
    """The MLflow client settings for artifacts through the proxy (from mlflow_setup.py); `signed`: IAM sign-in's."""
    return dict(lab_mlflow_setup().artifact_transfer_settings(signed=signed))


class MlflowStack:
    """Start, restart and stop the services; hand clients what they need.

    `username`/`password` are the deployment's credentials secret: the one
    user nginx checks in `shared` mode, MLflow's admin in `accounts` mode.
    """

    db_name = "mlflow"
    db_user = "mlflow"
    username = "mlflow"

    def __init__(
        self,
        root: Path,
        *,
        moto: MotoServer,
        auth_mode: str = DEFAULT_AUTH_MODE,
        password: str | None = None,
        db_password: str | None = None,
        db_superuser_password: str | None = None,
        secret_key: str | None = None,
        default_permission: str | None = None,
        workers: int | None = None,
        durable: bool = False,
        db_idle_timeout: int | None = None,
        proxy_port: int | None = None,
        sqlite_fallback: bool = False,
        server_env: dict[str, str] | None = None,
        bucket: str | None = None,
        oidc_users: list[OidcUser] | None = None,
        machine_clients: list[str] | None = None,
        ai_gateway: bool = False,
        iam_principals: dict[str, str] | None = None,
    ) -> None:
        check_mode(auth_mode)
        self.root = root
        self.log_dir = root / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The audit lines, which the task sends to the audit log group (docs/security.md).
        self.audit_log = root / "audit" / "audit.log"
        self.audit_log.parent.mkdir(exist_ok=True, mode=0o700)
        self.moto = moto
        self.auth_mode = auth_mode
        self.db_idle_timeout = db_idle_timeout
        self.workers = workers
        self.default_permission = default_permission
        self.extra_server_env = dict(server_env or {})
        # As the stack's ai_gateway setting: MLflow's AI gateway only when asked for.
        self.ai_gateway = ai_gateway
        # IAM sign-in, on in the modes that have it (as the stack's iam_sign_in setting's default):
        # the static table (ARN -> MLflow user, the iam_principals setting) and, in the moto server's
        # SSM, the path of the per-profile parameters (profile_parameter's format).
        self.iam_principals = dict(iam_principals or {})
        self.iam_principals_path = f"/mlflow-local-{secrets.token_hex(4)}/iam-principals"
        self.iam_port = free_port()
        # API Gateway's IAM route, stood in for on loopback (localrun/iam_gateway.py): it verifies
        # SigV4 with keys this stack issues per role (kept 0600 beside the logs) and forwards to
        # nginx's IAM server. One port and one key table for the stack's life (mode switches too).
        self.iam_gateway_port = free_port()
        (root / "iam").mkdir(exist_ok=True, mode=0o700)
        self.iam_credentials = CredentialTable(root / "iam" / "issued-keys.json")
        self.iam_gateway: IamGateway | None = None
        # Characters that break naive URL or header handling on purpose.
        self.password = password or new_password(":@%")
        self.db_password = db_password or new_password("@:/%#?&")
        # The Flask secret key every task shares (an ECS secret when deployed).
        self.secret_key = secret_key or secrets.token_hex(32)
        self.bucket = bucket or f"mlflow-artifacts-{secrets.token_hex(4)}"
        self.artifacts_destination = f"s3://{self.bucket}/{ARTIFACT_PREFIX}"
        self.postgres: Postgres | None = None
        self.db_env: dict[str, str]
        # What MLflow may write besides its scratch (the task's S3 and Aurora).
        self.data_dirs: list[Path] = [self.audit_log.parent]
        try:
            self.postgres = Postgres(
                root / "postgres", log_dir=self.log_dir, durable=durable,
                superuser_password=db_superuser_password or new_password(),
            )  # fmt: skip
            self.db_env = self.database_env(self.db_name)
        except ServiceError:
            if not sqlite_fallback:
                raise
            # In a directory of its own: SQLite writes a journal next to the file
            # (and accounts mode keeps its users' database there too).
            (root / "sqlite").mkdir(exist_ok=True, mode=0o700)
            if (root / "mlflow.db").exists() and not (root / "sqlite" / "mlflow.db").exists():
                (root / "mlflow.db").rename(root / "sqlite" / "mlflow.db")  # where earlier versions kept it
            self.db_env = {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{(root / 'sqlite' / 'mlflow.db').resolve()}"}
            self.data_dirs.append(root / "sqlite")
        # sso: the local OpenID provider (Cognito's part), its users and app clients.
        self.oidc: OidcProvider | None = None
        self.machine_clients = list(machine_clients or [])
        if needs_of(auth_mode).sign_in_provider:
            self.oidc = OidcProvider(
                root / "oidc", log_dir=self.log_dir, users=list(oidc_users or []),
                clients=[OidcClient(client_id) for client_id in self.machine_clients],
                audience=SSO_CLIENT_ID, port=free_port(),
            )  # fmt: skip
            self.sso_client = OidcClient(SSO_CLIENT_ID)  # redirect URIs added below
        self.mlflow = self.new_mlflow_server(name="mlflow", port=None)
        self.nginx = self._new_nginx(port=proxy_port)
        if self.oidc is not None:
            self.sso_client = OidcClient(
                SSO_CLIENT_ID, self.sso_client.client_secret,
                redirect_uris=(f"{self.proxy_url}/callback",),
                post_logout_redirect_uris=(f"{self.proxy_url}/oidc/ui/auth",),
            )  # fmt: skip
            self.oidc.add_client(self.sso_client)

    def database_env(self, db_name: str) -> dict[str, str]:
        """What ECS gives the MLflow container for the database `db_name`."""
        assert self.postgres is not None
        env = {
            "DB_HOST": self.postgres.host,
            "DB_PORT": str(self.postgres.port),
            "DB_NAME": db_name,
            "DB_USERNAME": self.db_user,
            "DB_PASSWORD": self.db_password,
            # Local PostgreSQL speaks no TLS; Aurora requires it and the
            # entrypoint verifies its certificate (verify-full, the default).
            "DB_SSLMODE": "disable",
        }
        if self.db_idle_timeout is not None:
            env["DB_IDLE_SESSION_TIMEOUT"] = str(self.db_idle_timeout)
        return env

    def server_env(self, db_env: dict[str, str] | None = None) -> dict[str, str]:
        """The MLflow container's environment in the current mode."""
        env = {
            **(db_env or self.db_env),
            **FAKE_AWS,
            # The server's S3 client (and the presigned URLs it signs) use moto.
            "MLFLOW_S3_ENDPOINT_URL": self.moto.endpoint_url,
            "MLFLOW_ARTIFACTS_DESTINATION": self.artifacts_destination,
            "MLFLOW_AUTH_MODE": self.auth_mode,
            "MLFLOW_ENABLE_AI_GATEWAY": "true" if self.ai_gateway else "false",
            "MLFLOW_AUDIT_LOG_FILE": str(self.audit_log.resolve()),
        }
        needs = needs_of(self.auth_mode)
        if needs.admin_login:
            env |= {"MLFLOW_AUTH_ADMIN_USERNAME": self.username, "MLFLOW_AUTH_ADMIN_PASSWORD": self.password}
        if needs.sign_in_provider:
            assert self.oidc is not None
            env |= {
                "OIDC_DISCOVERY_URL": self.oidc.discovery_url,
                "OIDC_CLIENT_ID": self.sso_client.client_id,
                "OIDC_CLIENT_SECRET": self.sso_client.client_secret,
                "OIDC_ADMIN_GROUP": SSO_ADMIN_GROUP,
                "OIDC_ALLOWED_GROUP": SSO_ALLOWED_GROUP,
                "OIDC_MACHINE_CLIENTS": ",".join(self.machine_clients),
                # Local runs are plain http: a Secure cookie would never come back.
                "SESSION_COOKIE_SECURE": "false",
            }
        if needs.session_key:
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = self.secret_key
        if needs.permissions and self.default_permission:
            env["MLFLOW_AUTH_DEFAULT_PERMISSION"] = self.default_permission
        if needs.iam_sign_in:
            env |= {
                SIGN_IN_ENV: "true",
                PRINCIPALS_ENV: json.dumps(self.iam_principals),
                PRINCIPALS_PATH_ENV: self.iam_principals_path,
                "AWS_ENDPOINT_URL_SSM": self.moto.endpoint_url,
            }
        return env | self.extra_server_env

    def new_mlflow_server(
        self, *, name: str, port: int | None, db_env: dict[str, str] | None = None,
        workers: int | None = None, entrypoint: Path = MLFLOW_ENTRYPOINT,
    ) -> MlflowServer:  # fmt: skip
        """One more MLflow task's server (its own runtime dir and log), same settings (`entrypoint`:
        another image's)."""
        return MlflowServer(
            self.root / name, log_dir=self.log_dir, log_name=f"{name}.log", port=port,
            workers=workers or self.workers, env=self.server_env(db_env), writable=self.data_dirs,
            entrypoint=entrypoint,
        )  # fmt: skip

    def _new_nginx(self, *, port: int | None) -> NginxProxy:
        return NginxProxy(
            self.root / "nginx", log_dir=self.log_dir, username=self.username,
            password=self.password, upstream_port=self.mlflow.port, port=port,
            auth_mode=self.auth_mode, iam_port=self.iam_port if needs_of(self.auth_mode).iam_sign_in else None,
        )  # fmt: skip

    @property
    def proxy_url(self) -> str:
        return self.nginx.url

    @property
    def iam_proxy_url(self) -> str | None:
        """nginx's IAM server, where API Gateway's IAM route (here: a stand-in) sends verified callers."""
        return self.nginx.iam_url

    @property
    def iam_url(self) -> str | None:
        """The signed entry point (the IAM API's URL when deployed), None in a mode without IAM sign-in."""
        return self.iam_gateway.url if self.iam_gateway is not None else None

    def signed_client_env(self, role_arn: str, session_name: str = "localrun") -> dict[str, str]:
        """What an MLflow client signing as a session of `role_arn` needs: keys issued for it, no password."""
        if self.iam_url is None:
            raise ServiceError(f"IAM sign-in is off in {self.auth_mode} mode")
        issued = self.iam_credentials.issue(role_arn, session_name)
        return {
            "MLFLOW_TRACKING_URI": self.iam_url,
            "MLFLOW_TRACKING_AWS_SIGV4": "true",
            "AWS_DEFAULT_REGION": FAKE_AWS["AWS_REGION"],
            "AWS_REGION": FAKE_AWS["AWS_REGION"],
            **issued.env(),
            **artifact_transfer_settings(signed=True),
        }

    def _start_iam_gateway(self) -> None:
        if self.nginx.iam_url is None:
            return
        self.iam_gateway = IamGateway(
            upstream=self.nginx.iam_url, region=FAKE_AWS["AWS_REGION"], credentials=self.iam_credentials,
            port=self.iam_gateway_port,
        ).start()  # fmt: skip

    def _stop_iam_gateway(self) -> None:
        if self.iam_gateway is not None:
            self.iam_gateway.stop()
            self.iam_gateway = None

    @property
    def direct_url(self) -> str:
        return self.mlflow.url

    @property
    def moto_endpoint(self) -> str:
        return self.moto.endpoint_url

    @property
    def nginx_log(self) -> Path:
        return self.log_dir / "nginx.log"

    def client_env(self, username: str | None = None, password: str | None = None) -> dict[str, str]:
        """What a real MLflow client needs to log through the proxy: no AWS credentials."""
        return {
            "MLFLOW_TRACKING_URI": self.proxy_url,
            "MLFLOW_TRACKING_USERNAME": username or self.username,
            "MLFLOW_TRACKING_PASSWORD": password or self.password,
            **artifact_transfer_settings(),
        }

    def log_files(self) -> list[Path]:
        return sorted(self.log_dir.glob("*.log"))

    def start(self) -> None:
        try:
            if self.postgres is not None:
                self.postgres.start()
                self.postgres.ensure_database(self.db_name, self.db_user, self.db_password)
            if self.oidc is not None:
                self.oidc.start()
            # The UI opens presigned URLs from the proxy's origin.
            self.moto.create_bucket(self.bucket, cors_origins=[self.proxy_url])
            self.mlflow.start()
            self.nginx.start()
            self._start_iam_gateway()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop in reverse order; never leave a process behind."""
        oidc, postgres = self.oidc and self.oidc.stop, self.postgres and self.postgres.stop
        for stop in (self._stop_iam_gateway, self.nginx.stop, self.mlflow.stop, oidc, postgres):
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

    def switch_auth_mode(self, auth_mode: str) -> None:
        """Redeploy both containers in another mode, on the same data and ports."""
        check_mode(auth_mode)
        self._stop_iam_gateway()
        self.nginx.stop()
        self.mlflow.stop()
        self.auth_mode = auth_mode
        self.mlflow = self.new_mlflow_server(name="mlflow", port=self.mlflow.port)
        self.nginx = self._new_nginx(port=self.nginx.port)
        self.mlflow.start()
        self.nginx.start()
        self._start_iam_gateway()


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
