"""Start the MLflow tracking server the way this deployment needs it.

The image runs this file; the integration tests and `make local` run the very
same file natively. It builds the database URI itself (so the password never
appears on a command line), upgrades the schema, then replaces itself with
`mlflow server` bound to loopback: only the nginx container of the task can
reach it.

Environment:
  DB_HOST, DB_PORT (5432), DB_NAME, DB_USERNAME, DB_PASSWORD
      the Aurora PostgreSQL database (fields of the generated secret)
  DB_SSLMODE            libpq sslmode (default verify-full: TLS, and the server's
                        certificate must be signed by the CA bundle and name DB_HOST)
  DB_SSLROOTCERT        CA bundle for verify-ca/verify-full (default: the RDS
                        bundle the image downloads at build time)
  DB_IDLE_SESSION_TIMEOUT
      seconds after which PostgreSQL closes an idle pooled connection
      (default 60), so an idle server holds none and Aurora can pause
  MLFLOW_ARTIFACT_ROOT  s3://bucket/prefix; clients write artifacts there
                        directly, the server never proxies them
  MLFLOW_WORKERS        uvicorn worker processes (default 2)
  MLFLOW_PORT           loopback port (default 5000)
  MLFLOW_BACKEND_STORE_URI
      only when DB_HOST is unset: a ready URI for local runs (e.g. SQLite)
MLflow's own MLFLOW_SERVER_ALLOWED_HOSTS, MLFLOW_SERVER_CORS_ALLOWED_ORIGINS
and the switches set in `server_environment` may be overridden too.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from urllib.parse import quote

HOST = "127.0.0.1"
DEFAULT_WORKERS = "2"
DB_VARIABLES = ("DB_HOST", "DB_NAME", "DB_USERNAME", "DB_PASSWORD")
# Amazon RDS's certificate bundle for all commercial regions; the Dockerfile
# downloads it here when the image is built.
DEFAULT_SSLROOTCERT = "/opt/mlflow/rds-global-bundle.pem"
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
VERIFYING_SSLMODES = ("verify-ca", "verify-full")


class ConfigError(Exception):
    """The environment does not describe a server we can start."""


def backend_store_uri(env: Mapping[str, str]) -> str:
    """The SQLAlchemy URI for the database, with user and password URL-encoded.

    Encoding every reserved character (`@:/%#?&` ...) keeps a generated
    password from being read as part of the host, path or query.
    """
    if not env.get("DB_HOST") and env.get("MLFLOW_BACKEND_STORE_URI"):
        return env["MLFLOW_BACKEND_STORE_URI"]
    missing = [name for name in DB_VARIABLES if not env.get(name)]
    if missing:
        raise ConfigError(f"missing database settings: {', '.join(missing)}")
    port = env.get("DB_PORT") or "5432"
    if not port.isdigit():
        raise ConfigError(f"DB_PORT must be a number, got {port!r}")
    user = quote(env["DB_USERNAME"], safe="")
    password = quote(env["DB_PASSWORD"], safe="")
    name = quote(env["DB_NAME"], safe="")
    tls = tls_parameters(env)
    idle = env.get("DB_IDLE_SESSION_TIMEOUT") or "60"
    if not idle.isdigit() or int(idle) < 1:
        raise ConfigError(f"DB_IDLE_SESSION_TIMEOUT must be a positive number, got {idle!r}")
    # MLflow pools connections (and pings them before use). The server, not
    # the pool, ends the idle ones: SQLAlchemy's pool never closes a
    # connection just for being idle, and Aurora Serverless v2 only pauses
    # at 0 ACU when no connection is open.
    options = quote(f"-c idle_session_timeout={int(idle) * 1000}", safe="")
    return (
        f"postgresql+psycopg2://{user}:{password}@{env['DB_HOST']}:{port}/{name}"
        f"?{tls}&options={options}"
    )


def tls_parameters(env: Mapping[str, str]) -> str:
    """libpq's sslmode (and CA bundle) as URI query parameters.

    verify-full by default: `require` encrypts but accepts any certificate, so
    anyone on the path could pose as the database and collect the password.
    """
    sslmode = env.get("DB_SSLMODE") or "verify-full"
    if sslmode not in SSLMODES:
        raise ConfigError(f"DB_SSLMODE must be one of {', '.join(SSLMODES)}, got {sslmode!r}")
    if sslmode not in VERIFYING_SSLMODES:
        return f"sslmode={sslmode}"
    rootcert = env.get("DB_SSLROOTCERT") or DEFAULT_SSLROOTCERT
    return f"sslmode={sslmode}&sslrootcert={quote(rootcert, safe='/')}"


def check_tls_files(env: Mapping[str, str]) -> None:
    """Fail before starting when the CA bundle a verifying sslmode needs is missing."""
    if not env.get("DB_HOST") or (env.get("DB_SSLMODE") or "verify-full") not in VERIFYING_SSLMODES:
        return
    rootcert = env.get("DB_SSLROOTCERT") or DEFAULT_SSLROOTCERT
    if not os.path.isfile(rootcert):
        raise ConfigError(f"DB_SSLROOTCERT {rootcert} is not a file; it must hold the CA bundle of the database")


def redacted(uri: str) -> str:
    """The URI with its password replaced, fit for a log line."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", uri)


def aws_region(env: Mapping[str, str]) -> str:
    """The task's region (ECS sets AWS_REGION) or a wildcard when unknown."""
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or ""
    return region if re.fullmatch(r"[a-z0-9-]+", region) else "*"


def default_allowed_hosts(env: Mapping[str, str]) -> str:
    """Host headers MLflow accepts: its defaults plus the AWS front doors.

    MLflow 3 rejects unknown Host headers (DNS-rebinding protection). Clients
    reach this server as the API Gateway host name and the ALB's host name;
    the ALB health check uses the task's private IP, which MLflow's defaults
    (loopback and private ranges) already cover.
    """
    from mlflow.server.security_utils import get_default_allowed_hosts

    region = aws_region(env)
    aws = [f"*.execute-api.{region}.amazonaws.com", f"*.{region}.elb.amazonaws.com"]
    return ",".join([*get_default_allowed_hosts(), *aws, *(f"{h}:*" for h in aws)])


def server_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The environment `mlflow server` runs with."""
    result = dict(env)
    result["MLFLOW_BACKEND_STORE_URI"] = backend_store_uri(env)
    # The database password now lives only inside the URI above.
    result.pop("DB_PASSWORD", None)
    result.setdefault("MLFLOW_SERVER_ALLOWED_HOSTS", default_allowed_hosts(env))
    # The UI's own POSTs carry the API Gateway origin; MLflow blocks
    # state-changing cross-origin requests from anywhere else.
    result.setdefault(
        "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS",
        f"https://*.execute-api.{aws_region(env)}.amazonaws.com",
    )
    # The job runner (huey consumers for GenAI scorers, prompt optimisation
    # and trace rollups) starts extra processes worth hundreds of MB; this
    # deployment tracks experiments and models and uses none of it.
    result.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # A private server has no business reporting usage to a third party.
    result.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow's default connection pool stays: NullPool (a new connection
    # per request) would also leave an idle server without connections, but
    # it halves log-batch throughput (benchmarks/proxy_overhead.py
    # --poolclass NullPool: about 50 vs 110 req/s). The server-side idle
    # timeout in the URI frees idle connections instead.
    result.setdefault("PYTHONUNBUFFERED", "1")
    return result


def server_argv(env: Mapping[str, str]) -> list[str]:
    """The `mlflow server` command line: nothing secret in it."""
    artifact_root = env.get("MLFLOW_ARTIFACT_ROOT")
    if not artifact_root:
        raise ConfigError("MLFLOW_ARTIFACT_ROOT is missing (e.g. s3://bucket/prefix)")
    workers = env.get("MLFLOW_WORKERS") or DEFAULT_WORKERS
    port = env.get("MLFLOW_PORT") or "5000"
    if not workers.isdigit() or int(workers) < 1:
        raise ConfigError(f"MLFLOW_WORKERS must be a positive number, got {workers!r}")
    if not port.isdigit():
        raise ConfigError(f"MLFLOW_PORT must be a number, got {port!r}")
    return [
        sys.executable, "-m", "mlflow", "server",
        "--host", HOST,
        "--port", port,
        "--workers", workers,
        "--default-artifact-root", artifact_root,
        # Clients read and write artifacts in S3 with their own IAM role; the
        # 10 MB API Gateway limit would break proxied uploads anyway.
        "--no-serve-artifacts",
    ]  # fmt: skip


def upgrade_schema(uri: str) -> None:
    """Create or migrate the tables before serving, as `mlflow db upgrade` does.

    The command runs in this process so the URI is not an argument of any
    process.
    """
    from mlflow.db import upgrade

    upgrade.main(args=[uri], standalone_mode=False)


def log(message: str) -> None:
    print(f"mlflow entrypoint: {message}", file=sys.stderr, flush=True)


def main() -> None:
    try:
        env = server_environment(os.environ)
        argv = server_argv(env)
        check_tls_files(os.environ)
    except ConfigError as error:
        log(f"{error}; refusing to start")
        sys.exit(64)
    uri = env["MLFLOW_BACKEND_STORE_URI"]
    log(f"backend {redacted(uri)}, artifacts {argv[argv.index('--default-artifact-root') + 1]}")
    log("upgrading the database schema")
    upgrade_schema(uri)
    log(f"serving on {HOST}:{argv[argv.index('--port') + 1]}")
    os.execve(sys.executable, argv, env)


if __name__ == "__main__":
    main()
