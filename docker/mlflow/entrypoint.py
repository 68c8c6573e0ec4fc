"""Start the MLflow tracking server the way this deployment needs it.

The image runs this file; the integration tests and `make local` run the very
same file natively. It builds the database URIs itself (so no password
appears on a command line), migrates the schemas once under a PostgreSQL
advisory lock (tasks starting together never race), then runs MLflow's
`mlflow server` bound to loopback: only the nginx container of the task
can reach it.

It starts in two stages, one process (the container's PID 1) throughout:
  1. no argument: check the settings and write the runtime dir, importing
     nothing of MLflow; hand the original environment over an inherited pipe
     and exec stage 2 with the server's environment (`server_environment`).
  2. `serve --environment-fd N`: read the original environment from the
     pipe (it never enters os.environ), load the auth app, migrate, create
     the admin, then run MLflow's CLI in this process, which execs uvicorn
     in it (server_exec.py). /proc/<pid>/environ (a process's initial
     environment, for its whole life) shows only what the server needs: no
     admin password, no MLFLOW_WEBHOOK_KEY, the database password only
     inside the URI (and as PGPASSWORD where the mode has a users' database).

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
  MLFLOW_ARTIFACTS_DESTINATION
      s3://bucket/prefix; MLflow serves artifacts from there (new
      experiments get `mlflow-artifacts:/<id>`), large transfers go
      between client and S3 through presigned URLs it issues
  MLFLOW_AUTH_MODE      shared (default: nginx checks the one shared user),
                        accounts (MLflow's basic-auth app: users, permissions) or
                        sso (the mlflow-oidc-auth plugin: people sign in at an
                        OpenID provider, code sends its bearer tokens)
  MLFLOW_WORKERS        uvicorn worker processes (default 2)
  MLFLOW_PORT           loopback port (default 5000)
  MLFLOW_PUBLIC_DOMAIN  optional custom domain: joins the allowed hosts/origins
  MLFLOW_RUNTIME_DIR    the only directory this writes to (default /tmp/mlflow)
  MLFLOW_BACKEND_STORE_URI
      only when DB_HOST is unset: a ready URI for local runs (e.g. SQLite)
accounts mode also reads:
  MLFLOW_AUTH_ADMIN_USERNAME, MLFLOW_AUTH_ADMIN_PASSWORD
      the admin (fields of the credentials secret); created on first start,
      its password reset from the secret on every start
  MLFLOW_FLASK_SERVER_SECRET_KEY
      shared by every task, so each accepts what another issued
  MLFLOW_AUTH_DEFAULT_PERMISSION
      READ (default), EDIT, MANAGE or NO_PERMISSIONS: what a user may do on
      experiments and models nobody granted them
  MLFLOW_AUTH_DB_NAME   the users' database in the same server (default
                        mlflow_auth), created on first start
  MLFLOW_AUTH_CREDENTIAL_CACHE
      validated (default), mlflow-ttl or none: how password checks are cached
      (see credential_cache.py; the other two exist to measure against)
  MLFLOW_IAM_SIGN_IN    true: code signs in with its IAM identity (iam_sign_in.py;
                        modes whose row has iam_sign_in), default false
  MLFLOW_IAM_PRINCIPALS JSON object {"<role or user ARN>": "<MLflow user>"}
                        (CI pipelines; not secret)
  MLFLOW_IAM_PRINCIPALS_PATH
                        SSM path of one parameter per Studio profile
                        ({"user": ..., "roles": [...]}), read every minute
sso mode also reads (and maps to the plugin's settings, see sso_settings()):
  OIDC_DISCOVERY_URL    the provider's /.well-known/openid-configuration; the
                        issuer every token must carry is derived from it
  OIDC_CLIENT_ID, OIDC_CLIENT_SECRET
                        the MLflow app client (secret: an ECS secret)
  OIDC_AUDIENCE         the `aud` code's bearer tokens must carry (default
                        OIDC_CLIENT_ID; for a Cognito issuer, unchecked unless
                        set: Cognito's client-credentials tokens carry no `aud`,
                        and every app client of the stack's pool is this
                        deployment's, so the issuer check binds them already)
  OIDC_ADMIN_GROUP      members are MLflow admins (default mlflow-admins)
  OIDC_ALLOWED_GROUP    optional: only its members (and admins) may sign in;
                        unset, a member of any group may
  OIDC_GROUPS_CLAIM     the ID token claim listing groups (default
                        cognito:groups for a Cognito issuer, groups otherwise)
  OIDC_MACHINE_CLIENTS  optional, comma-separated app client ids whose
                        client-credentials tokens act as MLflow users of that
                        name (Studio profiles, pipelines); created on start
  MLFLOW_FLASK_SERVER_SECRET_KEY, MLFLOW_AUTH_DEFAULT_PERMISSION as above
  MLFLOW_AUTH_DB_NAME   the plugin's users' database (default mlflow_oidc_auth)
  MLFLOW_DEPLOYMENT_LOGIN_SECRET_ARN
                        optional (model_deployments): a Secrets Manager secret
                        {"username", "password"}; its user becomes an admin
                        service account signing in with an access token the
                        plugin issues, written back as the password (the
                        model deployment functions' login, ensure_deployment_login)
every mode reads, when set:
  MLFLOW_WEBHOOK_KEY    a random string shared by every task (model_deployments):
                        MLflow's webhook secrets are encrypted with a Fernet key
                        derived from it, so every process reads what another
                        stored (unset, each process makes up its own key)
MLflow's own MLFLOW_SERVER_ALLOWED_HOSTS, MLFLOW_SERVER_CORS_ALLOWED_ORIGINS
and the switches set in `server_environment` may be overridden too.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import importlib
import json
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from auth_modes import DEFAULT_AUTH_MODE, MODES, AuthMode, ServerApp, parse_mode
from iam_callers import PASSWORD_CHECK_SETTING, PRINCIPALS_ENV, PRINCIPALS_PATH_ENV, SIGN_IN_ENV, principals_from_json
from request_guard import SOURCE_PATTERN

HOST = "127.0.0.1"
THIS_FILE = Path(__file__).resolve()
HERE = THIS_FILE.parent
DEFAULT_WORKERS = "2"
DEFAULT_RUNTIME_DIR = "/tmp/mlflow"  # noqa: S108 - the task's own scratch volume, no other user
DB_VARIABLES = ("DB_HOST", "DB_NAME", "DB_USERNAME", "DB_PASSWORD")
# Amazon RDS's certificate bundle for all commercial regions; the Dockerfile
# downloads it here when the image is built.
DEFAULT_SSLROOTCERT = "/opt/mlflow/rds-global-bundle.pem"
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
VERIFYING_SSLMODES = ("verify-ca", "verify-full")
PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
CREDENTIAL_CACHES = ("validated", "mlflow-ttl", "none")
VALIDATED_CHECK = "credential_cache:authenticate_request"
STOCK_CHECK = "mlflow.server.auth:authenticate_request_basic_auth"
# IAM sign-in: the verified caller's user, else the password check above (iam_sign_in.py).
IAM_CHECK = "iam_sign_in:authenticate_request"
_SSM_PATH = re.compile(r"(/[A-Za-z0-9_.-]+)+/?")
# As in reviewed_source.py's lines; `make upgrade-check` looks for it.
NOT_REVIEWED = "is not the reviewed one"
DEFAULT_ADMIN_GROUP = "mlflow-admins"
# The `mlflow.app` entry point of deployment_app.py (mlflow_deployment-1.0.dist-info).
APP_NAME = "deployment"

DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
_COGNITO_ISSUER = re.compile(r"https://cognito-idp\.[a-z0-9-]+\.amazonaws\.com/[A-Za-z0-9_-]+")
# Claims a bearer token's user is named by, in order: a person's email (ID
# tokens), else their preferred_username, else the app client's id (a
# client-credentials token of Cognito or most IdPs carries only `client_id`).
USERNAME_CLAIMS = "email,preferred_username,client_id"
# pg_advisory_lock key every task of this deployment agrees on ("mlflowdb").
MIGRATION_LOCK_KEY = 0x6D6C666C6F776462
_HOSTNAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class ConfigError(Exception):
    """The environment does not describe a server we can start."""


def auth_mode(env: Mapping[str, str]) -> AuthMode:
    try:
        return parse_mode(env.get("MLFLOW_AUTH_MODE") or DEFAULT_AUTH_MODE)
    except ValueError as error:
        raise ConfigError(f"MLFLOW_AUTH_MODE {error}") from None


def app_setup(env: Mapping[str, str]) -> AppSetup:
    """How to ready the server app of the environment's mode."""
    return APP_SETUPS[MODES[auth_mode(env)].server_app]


def check_required_env(env: Mapping[str, str]) -> None:
    """Every variable the mode's table row names is set and not blank."""
    mode = auth_mode(env)
    for name in MODES[mode].required_env:
        if not (env.get(name) or "").strip():
            raise ConfigError(f"{name} is missing or empty; {mode} mode needs it")


def runtime_dir(env: Mapping[str, str]) -> Path:
    path = env.get("MLFLOW_RUNTIME_DIR") or DEFAULT_RUNTIME_DIR
    if not path.startswith("/"):
        raise ConfigError(f"MLFLOW_RUNTIME_DIR must be an absolute path, got {path!r}")
    return Path(path)


def _database_uri(env: Mapping[str, str], name: str, *, with_password: bool) -> str:
    missing = [variable for variable in DB_VARIABLES if not env.get(variable)]
    if missing:
        raise ConfigError(f"missing database settings: {', '.join(missing)}")
    port = env.get("DB_PORT") or "5432"
    if not port.isdigit():
        raise ConfigError(f"DB_PORT must be a number, got {port!r}")
    user = quote(env["DB_USERNAME"], safe="")
    if with_password:
        user += ":" + quote(env["DB_PASSWORD"], safe="")
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
        f"postgresql+psycopg2://{user}@{env['DB_HOST']}:{port}/{quote(name, safe='')}"
        f"?{tls}&{CONNECTION_LIVENESS}&options={options}"
    )


# libpq: give up on a connection attempt after 10 s, and on a connection whose
# peer stopped answering (a paused or failed-over database) within about 30 s,
# instead of the kernel's minutes, so no request waits past the gateway's 30 s.
CONNECTION_LIVENESS = (
    "connect_timeout=10&keepalives=1&keepalives_idle=30&keepalives_interval=5&keepalives_count=3&tcp_user_timeout=30000"
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


def backend_store_uri(env: Mapping[str, str]) -> str:
    """The SQLAlchemy URI for the database, with user and password URL-encoded.

    Encoding every reserved character (`@:/%#?&` ...) keeps a generated
    password from being read as part of the host, path or query.
    """
    if not env.get("DB_HOST") and env.get("MLFLOW_BACKEND_STORE_URI"):
        return env["MLFLOW_BACKEND_STORE_URI"]
    return _database_uri(env, env.get("DB_NAME", ""), with_password=True)


def auth_database_name(env: Mapping[str, str]) -> str:
    name = env.get("MLFLOW_AUTH_DB_NAME") or MODES[auth_mode(env)].auth_database or ""
    if not _DB_NAME.fullmatch(name) or name == env.get("DB_NAME"):
        raise ConfigError(
            "MLFLOW_AUTH_DB_NAME must be 1-63 lowercase letters, digits or _ (not starting "
            f"with a digit) and differ from DB_NAME, got {name!r}"
        )
    return name


def auth_database_uri(env: Mapping[str, str]) -> str:
    """The users' database: same server and login, no password in the URI.

    The URI goes into the auth app's ini file; libpq takes the password from
    PGPASSWORD in the server's environment instead, so no file holds it.
    """
    if not env.get("DB_HOST") and env.get("MLFLOW_BACKEND_STORE_URI", "").startswith("sqlite:///"):
        # Local runs without PostgreSQL: a second SQLite file next to the first.
        main = Path(env["MLFLOW_BACKEND_STORE_URI"].removeprefix("sqlite:///"))
        return f"sqlite:///{main.with_name(auth_database_name(env) + '.db')}"
    return _database_uri(env, auth_database_name(env), with_password=False)


def redacted(uri: str) -> str:
    """The URI with its password replaced, fit for a log line."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", uri)


def aws_region(env: Mapping[str, str]) -> str:
    """The task's region (ECS sets AWS_REGION) or a wildcard when unknown."""
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or ""
    return region if re.fullmatch(r"[a-z0-9-]+", region) else "*"


def public_domain(env: Mapping[str, str]) -> str | None:
    domain = (env.get("MLFLOW_PUBLIC_DOMAIN") or "").strip().lower()
    if domain and not _HOSTNAME.fullmatch(domain):
        raise ConfigError(f"MLFLOW_PUBLIC_DOMAIN must be a DNS name like mlflow.example.com, got {domain!r}")
    return domain or None


def default_allowed_hosts(env: Mapping[str, str]) -> str:
    """Host headers MLflow accepts: its defaults plus the AWS front doors.

    MLflow 3 rejects unknown Host headers (DNS-rebinding protection). Clients
    reach this server as the API Gateway host name (or the custom domain) and
    the ALB's host name; the ALB health check uses the task's private IP,
    which MLflow's defaults (loopback and private ranges) already cover.

    Only asked for when MLFLOW_SERVER_ALLOWED_HOSTS is unset: MLflow's defaults
    live in its server package, whose import builds its whole app (about 0.5
    CPU-s). The worker cannot add them instead: MLflow's Flask app reads the
    setting when that package is imported, which reading the defaults does.
    """
    from mlflow.server.security_utils import get_default_allowed_hosts

    region = aws_region(env)
    public = [f"*.execute-api.{region}.amazonaws.com", f"*.{region}.elb.amazonaws.com"]
    if domain := public_domain(env):
        public.append(domain)
    return ",".join([*get_default_allowed_hosts(), *public, *(f"{h}:*" for h in public)])


def default_cors_origins(env: Mapping[str, str]) -> str:
    """Origins MLflow accepts state-changing browser requests from.

    nginx already refuses any Origin other than this deployment's own; this
    list is MLflow's second line and names the possible public origins.
    """
    origins = [f"https://*.execute-api.{aws_region(env)}.amazonaws.com"]
    if domain := public_domain(env):
        origins.append(f"https://{domain}")
    return ",".join(origins)


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def default_permission(env: Mapping[str, str]) -> str:
    return _choice(env, "MLFLOW_AUTH_DEFAULT_PERMISSION", "READ", PERMISSIONS)


def credential_cache(env: Mapping[str, str]) -> str:
    return _choice(env, "MLFLOW_AUTH_CREDENTIAL_CACHE", "validated", CREDENTIAL_CACHES)


def iam_sign_in(env: Mapping[str, str]) -> bool:
    """Whether code may sign in with its IAM identity; ConfigError on a setting that cannot work."""
    value = env.get(SIGN_IN_ENV) or "false"
    if value not in ("true", "false"):
        raise ConfigError(f"{SIGN_IN_ENV} must be true or false, got {value!r}")
    if value == "false":
        return False
    mode = auth_mode(env)
    if not MODES[mode].iam_sign_in:
        raise ConfigError(f"{SIGN_IN_ENV} is true, but {mode} mode has no IAM sign-in")
    try:
        principals_from_json(env.get(PRINCIPALS_ENV) or "")
    except ValueError as error:
        raise ConfigError(f"{PRINCIPALS_ENV} {error}") from None
    path = env.get(PRINCIPALS_PATH_ENV) or ""
    if path and not _SSM_PATH.fullmatch(path):
        raise ConfigError(f"{PRINCIPALS_PATH_ENV} must be an SSM parameter path like /mlflow/iam, got {path!r}")
    return True


def auth_config(env: Mapping[str, str]) -> str:
    """The basic-auth app's ini file (MLFLOW_AUTH_CONFIG_PATH): nothing secret in it."""
    cache = credential_cache(env)
    password_check = VALIDATED_CHECK if cache == "validated" else STOCK_CHECK
    settings = {
        "default_permission": default_permission(env),
        # configparser reads % as interpolation: the URI's escapes are doubled.
        "database_uri": auth_database_uri(env).replace("%", "%%"),
        "admin_username": env["MLFLOW_AUTH_ADMIN_USERNAME"],
        # With IAM sign-in, its check first, which hands requests without a caller to the password check.
        "authorization_function": IAM_CHECK if iam_sign_in(env) else password_check,
        **({PASSWORD_CHECK_SETTING: password_check} if iam_sign_in(env) else {}),
        "grant_default_workspace_access": "false",
        # MLflow's own cache keeps a deleted user valid on other workers and
        # tasks for the TTL; the validated cache forgets at once.
        "auth_cache_ttl_seconds": "60" if cache == "mlflow-ttl" else "0",
    }
    lines = ["# Written by entrypoint.py at every start; see its docstring.", "[mlflow]"]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def load_credential_cache(server_env: Mapping[str, str]) -> None:
    """Load the `validated` check now, as the server will at its first signed-in request.

    credential_cache.py and the modules it installs reach into MLflow's auth
    app, each patch fenced by the source it was reviewed against. Should the
    module not even load on this MLflow, the server would answer every
    signed-in request with 500; instead the ini file written before names
    MLflow's own check (its TTL cache stays off: never weaker than
    `validated`), one line says so, and the server starts.
    """
    # MLflow's auth module reads its ini file when imported.
    path = Path(server_env["MLFLOW_AUTH_CONFIG_PATH"])
    os.environ["MLFLOW_AUTH_CONFIG_PATH"] = str(path)
    try:
        with warnings.catch_warnings():  # the server process prints MLflow's import-time warnings itself
            warnings.simplefilter("ignore")
            importlib.import_module("credential_cache")
    except Exception as error:  # noqa: BLE001 - whatever it is, the server would answer it with 500s
        # authorization_function, or with IAM sign-in the password check it hands over to.
        path.write_text(path.read_text().replace(f" = {VALIDATED_CHECK}\n", f" = {STOCK_CHECK}\n"))
        log(
            f"MLflow's auth app {NOT_REVIEWED} (credential_cache.py does not load: {type(error).__name__}: "
            f"{error}): MLflow's own password check serves, uncached, correct but slower"
        )


def load_iam_sign_in(server_env: Mapping[str, str]) -> None:
    """Load iam_sign_in.py now, as the server will at its first request.

    Should it not load, the server would answer every request with 500; instead
    authorization_function becomes the password check alone (IAM callers get 401, nobody
    gets in who would not have without IAM sign-in), one line says so, and the server starts.
    """
    path = Path(server_env["MLFLOW_AUTH_CONFIG_PATH"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module("iam_sign_in")
    except Exception as error:  # noqa: BLE001 - whatever it is, the server would answer it with 500s
        text = path.read_text()
        check = re.search(rf"^{PASSWORD_CHECK_SETTING} = (.*)$", text, re.M)
        password_check = check[1] if check else STOCK_CHECK
        path.write_text(
            text.replace(f"authorization_function = {IAM_CHECK}\n", f"authorization_function = {password_check}\n")
        )
        log(f"IAM sign-in is off: iam_sign_in.py does not load ({type(error).__name__}: {error}); passwords only")


def preload_basic_auth(env: Mapping[str, str], server_env: Mapping[str, str]) -> None:
    preload_credential_cache(env, server_env)
    if iam_sign_in(env):
        load_iam_sign_in(server_env)


def check_accounts_settings(env: Mapping[str, str]) -> None:
    check_required_env(env)
    if len(env["MLFLOW_AUTH_ADMIN_PASSWORD"]) < 12:
        raise ConfigError("MLFLOW_AUTH_ADMIN_PASSWORD must be at least 12 characters (MLflow's rule)")
    if re.search(r"[:\s]", env["MLFLOW_AUTH_ADMIN_USERNAME"]):
        raise ConfigError("MLFLOW_AUTH_ADMIN_USERNAME must not contain ':' or whitespace")
    default_permission(env)
    credential_cache(env)
    auth_database_name(env)


def oidc_issuer(env: Mapping[str, str]) -> str:
    """The issuer tokens must name: the discovery URL without its well-known suffix (OIDC Discovery 1.0, 4)."""
    url = (env.get("OIDC_DISCOVERY_URL") or "").strip()
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url) or not url.endswith(DISCOVERY_SUFFIX):
        raise ConfigError(
            f"OIDC_DISCOVERY_URL must be the provider's https://.../.well-known/openid-configuration URL, got {url!r}"
        )
    return url.removesuffix(DISCOVERY_SUFFIX)


def machine_clients(env: Mapping[str, str]) -> list[str]:
    clients = [c.strip() for c in (env.get("OIDC_MACHINE_CLIENTS") or "").split(",") if c.strip()]
    for client in clients:
        if not re.fullmatch(r"[A-Za-z0-9._~+/=-]{1,128}", client):
            raise ConfigError(f"OIDC_MACHINE_CLIENTS must list app client ids separated by commas, got {client!r}")
    return clients


def check_sso_settings(env: Mapping[str, str]) -> None:
    check_required_env(env)
    issuer = oidc_issuer(env)
    if not issuer.startswith("https://") and not re.match(r"http://(127\.0\.0\.1|localhost)[:/]", issuer + "/"):
        raise ConfigError(f"OIDC_DISCOVERY_URL must use https (plain http only on loopback), got {issuer!r}")
    for name in ("OIDC_ADMIN_GROUP", "OIDC_ALLOWED_GROUP", "OIDC_GROUPS_CLAIM"):
        if re.search(r"[,\s]", env.get(name) or ""):
            raise ConfigError(f"{name} must be one name without commas or spaces, got {env[name]!r}")
    default_permission(env)
    auth_database_name(env)
    machine_clients(env)


def sso_settings(env: Mapping[str, str]) -> dict[str, str]:
    """Our sso settings as the mlflow-oidc-auth plugin's (11.x) configuration names.

    The plugin reads its settings from the environment. Everything here is
    either derived or a plain setting; the two secrets (client secret, Flask
    key) are only renamed.
    """
    issuer = oidc_issuer(env)
    admin_group = env.get("OIDC_ADMIN_GROUP") or DEFAULT_ADMIN_GROUP
    allowed_group = env.get("OIDC_ALLOWED_GROUP") or ""
    cognito = bool(_COGNITO_ISSUER.fullmatch(issuer))
    groups_claim = env.get("OIDC_GROUPS_CLAIM") or ("cognito:groups" if cognito else "groups")
    audience = env.get("OIDC_AUDIENCE") or ("" if cognito else env["OIDC_CLIENT_ID"])
    settings = {
        "OIDC_DISCOVERY_URL": env["OIDC_DISCOVERY_URL"].strip(),
        "OIDC_CLIENT_ID": env["OIDC_CLIENT_ID"],
        "OIDC_CLIENT_SECRET": env["OIDC_CLIENT_SECRET"],
        # Bearer tokens: signature (the provider's JWKS, asymmetric algorithms
        # only), expiry (required), issuer and audience are all checked (the
        # audience only where tokens carry one, see OIDC_AUDIENCE above).
        "OIDC_ISSUER": issuer,
        **({"OIDC_AUDIENCE": audience} if audience else {}),
        "OIDC_USERNAME_FIELD": USERNAME_CLAIMS,
        "OIDC_GROUPS_ATTRIBUTE": groups_claim,
        "OIDC_ADMIN_GROUP_NAME": admin_group,
        # The plugin admits a person only through a group: the allowed one,
        # or (none configured) any group the provider asserts.
        "OIDC_GROUP_NAME": allowed_group or admin_group,
        "OIDC_GROUP_NAME_PATTERN": "" if allowed_group else "*",
        # Signed-cookie key and the key the server-side sessions' tokens are
        # encrypted with (derived from it): the same on every task, so a
        # session started on one task is honoured by all.
        "SECRET_KEY": env["MLFLOW_FLASK_SERVER_SECRET_KEY"],
        "DEFAULT_MLFLOW_PERMISSION": default_permission(env),
        "OIDC_USERS_DB_URI": auth_database_uri(env),
        # nginx (same task, loopback) sets X-Forwarded-Proto/Host from the
        # public origin: the redirect URI becomes <public origin>/callback.
        "TRUSTED_PROXIES": "127.0.0.1/32",
        # Opening the tracking URL goes straight to the provider's sign-in.
        "AUTOMATIC_LOGIN_REDIRECT": "true",
        # Tokens never create users or make admins: people are created when
        # they sign in, code's users by OIDC_MACHINE_CLIENTS (or an admin).
        "OIDC_PROVISION_ON_BEARER_AUTH": "false",
        "OIDC_TRUST_BEARER_GROUP_CLAIMS": "false",
        # The plugin keeps permission decisions for 30 s in each worker and forgets them
        # only in the worker that changed them: a revoked grant would still be honoured
        # elsewhere. Off, so grants and revocations hold at once on every worker and task.
        "PERMISSION_CACHE_TTL_SECONDS": "0",
    }
    # Deployed, the public origin is https (API Gateway); `make local` on
    # plain http turns this off explicitly.
    settings["SESSION_COOKIE_SECURE"] = env.get("SESSION_COOKIE_SECURE") or "true"
    return settings


def basic_auth_environment(env: Mapping[str, str], result: dict[str, str]) -> None:
    """MLflow's basic-auth app: its ini file's path; the admin's password stays out of the server."""
    check_accounts_settings(env)
    result["MLFLOW_AUTH_CONFIG_PATH"] = str(runtime_dir(env) / "basic_auth.ini")
    # Needed only to create the admin, which happens before `mlflow
    # server` starts: the long-running server never holds it.
    result.pop("MLFLOW_AUTH_ADMIN_PASSWORD", None)


def oidc_environment(env: Mapping[str, str], result: dict[str, str]) -> None:
    """The OIDC plugin: our settings under its names."""
    check_sso_settings(env)
    result |= sso_settings(env)
    # The plugin's own names carry them now.
    result.pop("OIDC_ADMIN_GROUP", None)
    result.pop("OIDC_ALLOWED_GROUP", None)


def webhook_encryption_key(shared: str) -> str:
    """The Fernet key (URL-safe base64 of 32 bytes) MLflow encrypts webhook secrets with, from a shared string."""
    return base64.urlsafe_b64encode(hashlib.sha256(shared.encode()).digest()).decode()


def server_environment(env: Mapping[str, str], *, mlflow_defaults: bool = True) -> dict[str, str]:
    """The environment `mlflow server` runs with.

    `mlflow_defaults=False` leaves out MLflow's default allowed hosts (when
    MLFLOW_SERVER_ALLOWED_HOSTS is unset): only its server package knows them,
    so the first stage goes without and the second, which imports MLflow
    anyway, adds them to the environment its workers inherit.
    """
    result = dict(env)
    mode = auth_mode(env)
    result["MLFLOW_AUTH_MODE"] = mode
    result["MLFLOW_BACKEND_STORE_URI"] = backend_store_uri(env)
    runtime = runtime_dir(env)
    # The database password now lives only inside the URI above (and, with
    # a users' database, in PGPASSWORD for it).
    password = result.pop("DB_PASSWORD", None)
    if MODES[mode].auth_database and password and env.get("DB_HOST"):
        result["PGPASSWORD"] = password  # for the mode's users' database
    APP_SETUPS[MODES[mode].server_app].environment(env, result)
    iam_sign_in(env)  # refused in a mode without it
    # deployment_app.py, request_guard.py, credential_cache.py and the entry point
    # that names the app sit next to this file.
    result["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)
    # MLflow 3 surfaces this deployment keeps off unless asked for: the AI gateway stores
    # provider keys and calls out from the server; custom scorers run user code in it.
    result.setdefault("MLFLOW_ENABLE_AI_GATEWAY", "false")
    result.setdefault("MLFLOW_SERVER_ENABLE_CUSTOM_SCORERS", "false")
    result["MLFLOW_ENABLE_REMOTE_ASSISTANT"] = "false"  # request_guard.py closes its routes as well
    shared_webhook_key = result.pop("MLFLOW_WEBHOOK_KEY", None)
    if shared_webhook_key:
        result["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"] = webhook_encryption_key(shared_webhook_key)
    # MLflow's own check of model version sources, behind request_guard.py's (the same rule).
    result.setdefault("MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX", SOURCE_PATTERN)
    # An operator's value spares importing MLflow's server package.
    if mlflow_defaults and "MLFLOW_SERVER_ALLOWED_HOSTS" not in result:
        result["MLFLOW_SERVER_ALLOWED_HOSTS"] = default_allowed_hosts(env)
    # The UI's own POSTs carry the public origin; MLflow blocks
    # state-changing cross-origin requests from anywhere else.
    result.setdefault("MLFLOW_SERVER_CORS_ALLOWED_ORIGINS", default_cors_origins(env))
    # The job runner (huey consumers for GenAI scorers, prompt optimisation
    # and trace rollups) starts extra processes worth hundreds of MB; this
    # deployment tracks experiments and models and uses none of it.
    result.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # A private server has no business reporting usage to a third party.
    result.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # A burst after idle (everyone's first request as the pooled connections
    # were just closed) needs more connections than pool_size 5 + overflow 10
    # of each engine: log-batch holds two at once and a worker serves up to
    # 40 requests in its thread pool, so the rest waited 30 s for a checkout
    # and nginx answered 504 (issue 23). No overflow limit: the thread pool
    # bounds the connections, and the server closes the idle ones anyway.
    # MLflow applies this to every engine it creates (tracking, registry,
    # the auth app's store).
    result.setdefault("MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW", "-1")
    # MLflow's default connection pool stays: NullPool (a new connection
    # per request) would also leave an idle server without connections, but
    # it halves log-batch throughput (benchmarks/proxy_overhead.py
    # --poolclass NullPool: about 50 vs 110 req/s). The server-side idle
    # timeout in the URI frees idle connections instead.
    result.setdefault("PYTHONUNBUFFERED", "1")
    # Proxied uploads and downloads buffer in temporary files: keep them in
    # the one writable directory (the image's root filesystem is read-only).
    result["TMPDIR"] = str(runtime / "tmp")
    # Presigned URLs are signed for a region; ECS sets AWS_REGION.
    if env.get("AWS_REGION"):
        result.setdefault("AWS_DEFAULT_REGION", env["AWS_REGION"])
    public_domain(env)
    return result


def server_argv(env: Mapping[str, str]) -> list[str]:
    """The arguments of MLflow's CLI (`mlflow server ...`): nothing secret in them."""
    destination = env.get("MLFLOW_ARTIFACTS_DESTINATION")
    if not destination:
        raise ConfigError("MLFLOW_ARTIFACTS_DESTINATION is missing (e.g. s3://bucket/mlflow-artifacts)")
    workers = env.get("MLFLOW_WORKERS") or DEFAULT_WORKERS
    port = env.get("MLFLOW_PORT") or "5000"
    if not workers.isdigit() or int(workers) < 1:
        raise ConfigError(f"MLFLOW_WORKERS must be a positive number, got {workers!r}")
    if not port.isdigit():
        raise ConfigError(f"MLFLOW_PORT must be a number, got {port!r}")
    argv = [
        "server",
        "--host", HOST,
        "--port", port,
        "--workers", workers,
        # Artifacts go through MLflow, so its permissions govern them too;
        # large ones go straight to S3 through presigned URLs it issues.
        "--serve-artifacts",
        "--artifacts-destination", destination,
        "--default-artifact-root", "mlflow-artifacts:/",
    ]  # fmt: skip
    # deployment_app.py: the mode's own app (MLflow's, its basic-auth app, or the OIDC
    # plugin) behind request_guard.py, in every mode.
    return [*argv, "--app-name", APP_NAME]


def log(message: str) -> None:
    print(f"mlflow entrypoint: {message}", file=sys.stderr, flush=True)


@contextmanager
def migration_lock(uri: str) -> Iterator[None]:
    """Hold PostgreSQL's advisory lock: one task migrates, the others wait and find it done."""
    if not uri.startswith("postgresql"):
        yield  # SQLite: one local process, nothing to race
        return
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(uri, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            # Migrations may outlast the idle timeouts of this waiting session.
            conn.execute(sqlalchemy.text("SET idle_session_timeout = 0"))
            conn.execute(sqlalchemy.text("SET idle_in_transaction_session_timeout = 0"))
            log("waiting for the schema migration lock")
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
    finally:
        engine.dispose()


def upgrade_tracking_schema(uri: str) -> None:
    """Create or migrate the tracking tables, as `mlflow db upgrade` does, in this process."""
    from mlflow.store.db import utils as db_utils

    engine = db_utils.create_sqlalchemy_engine_with_retry(uri)
    try:
        head = db_utils._get_latest_schema_revision()
        current = None if db_utils._is_empty_database(engine) else db_utils._get_schema_version(engine)
        if current == head:
            log(f"tracking schema is current ({head})")
            return
        if current is None:
            db_utils._initialize_tables(engine)
        else:
            db_utils._upgrade_db(engine)
        log(f"tracking schema migrated from {current or 'an empty database'} to {head}")
    finally:
        engine.dispose()


def ensure_auth_database(env: Mapping[str, str]) -> None:
    """Create the users' database in the same server on first start."""
    if not env.get("DB_HOST"):
        return
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    name = auth_database_name(env)
    engine = sqlalchemy.create_engine(backend_store_uri(env), poolclass=NullPool)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            exists = conn.execute(
                sqlalchemy.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if not exists:
                # The name passed _DB_NAME's check, so quoting it is enough.
                conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
                log(f"created database {name}")
    finally:
        engine.dispose()


def bootstrap_auth_store(env: Mapping[str, str]) -> None:
    """Migrate the users' schema and create (or re-key) the admin, with MLflow's own code."""
    import sqlalchemy
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from mlflow.server.auth.db import utils as auth_db_utils

    uri = auth_database_uri(env)
    engine = sqlalchemy.create_engine(uri)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": "alembic_version_auth"})
            before = context.get_current_revision()
    finally:
        engine.dispose()
    head = ScriptDirectory.from_config(auth_db_utils._get_alembic_config(uri)).get_current_head()

    # Reads MLFLOW_AUTH_CONFIG_PATH (the ini file stage 1 wrote), which bootstrap_basic_auth has set.
    from mlflow.server import auth

    username, password = env["MLFLOW_AUTH_ADMIN_USERNAME"], env["MLFLOW_AUTH_ADMIN_PASSWORD"]
    # MLflow's bootstrap_admin_user, with the password handed to it: the admin password is
    # in no process's environment (MLflow would read it from there).
    auth.store.init_db(auth.auth_config.database_uri, read_db_uri=auth.auth_config.read_database_uri)  # migrations
    auth.create_admin_user(username, password)  # the admin, if it does not exist
    if before != head:
        log(f"auth schema migrated from {before or 'an empty database'} to {head}")
    else:
        log(f"auth schema is current ({head})")
    if not auth.store.authenticate_user(username, password, use_primary=True):
        # The secret is the admin's source of truth: rotating it and
        # restarting the tasks rotates the admin's password.
        auth.store.update_user(username, password=password, is_admin=True)
        log(f"admin {username}: password set from MLFLOW_AUTH_ADMIN_PASSWORD")


def bootstrap_sso_store(env: Mapping[str, str], server_env: Mapping[str, str]) -> None:
    """Migrate the plugin's schema and create the users code acts as."""
    # The plugin reads its configuration from the environment at import.
    names = {*sso_settings(env), "PGPASSWORD"}
    os.environ.update({k: v for k, v in server_env.items() if k in names})
    import sqlalchemy
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from mlflow_oidc_auth.db import utils as oidc_db_utils

    uri = server_env["OIDC_USERS_DB_URI"]
    engine = sqlalchemy.create_engine(uri)
    try:
        with engine.connect() as conn:
            before = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    head = ScriptDirectory.from_config(oidc_db_utils._get_alembic_config(uri)).get_current_head()
    from mlflow_oidc_auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(uri)  # migrates to head when behind
    log(f"sso users schema migrated from {before or 'an empty database'} to {head}" if before != head
        else f"sso users schema is current ({head})")  # fmt: skip
    for client_id in machine_clients(env):
        if not store.has_user(client_id):
            # A service account signs in only with its provider's tokens.
            store.create_user(
                client_id, client_id, is_admin=False, is_service_account=True,
                service_account_source="default",
            )  # fmt: skip
            log(f"created user {client_id} for that app client's tokens")
    if env.get(DEPLOYMENT_LOGIN_ENV):
        ensure_deployment_login(env[DEPLOYMENT_LOGIN_ENV], store)
    store.engine.dispose()


DEPLOYMENT_LOGIN_ENV = "MLFLOW_DEPLOYMENT_LOGIN_SECRET_ARN"
# The plugin issues access tokens for at most a year: a year less a day, renewed at a
# start (every task start migrates, one at a time) once fewer than RENEW_BEFORE are left.
DEPLOYMENT_TOKEN_LIFETIME = timedelta(days=365)
DEPLOYMENT_TOKEN_RENEW_BEFORE = timedelta(days=60)
DEPLOYMENT_TOKEN_NAME = "model-deployment"  # noqa: S105 - the token's name in the plugin, no secret


def ensure_deployment_login(secret_arn: str, store: Any) -> None:
    """sso mode with model_deployments: the login the deployment worker and webhook registrar use.

    They sign in with HTTP basic, as they do in accounts mode with the admin. mlflow-oidc-auth
    accepts basic auth only for an internal service account with an access token it issued
    itself (never a chosen password), so the secret's user is made such an account (an admin:
    only admins manage webhooks) and the token it issues is written back as the secret's
    password. A password that still signs in, with a token far from expiry, is left alone.

    Nothing here stops MLflow from starting: an unreadable secret, or a name that belongs to
    someone else's account, leaves the functions without a login (their deployments fail and
    alarm) and says so in one line.
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("secretsmanager")
    try:
        login = json.loads(client.get_secret_value(SecretId=secret_arn)["SecretString"])
        username, password = str(login["username"]), str(login.get("password", ""))
    except (BotoCoreError, ClientError, ValueError, KeyError, TypeError) as exc:
        log(f"model deployments get no MLflow login: could not read {{username, password}} from {secret_arn} "
            f"({type(exc).__name__})")  # fmt: skip
        return
    if not store.has_user(username):
        store.create_user(username, username, is_admin=True, is_service_account=True,
                          service_account_source="internal")  # fmt: skip
        log(f"created service account {username} (admin) for the model deployment functions")
    user = store.get_user(username)
    if not (user.is_admin and user.is_service_account and user.service_account_source == "internal"):
        log(f"model deployments get no MLflow login: {username} (from {secret_arn}) is an account of someone "
            "else's, not the deployment functions' service account; no token issued")  # fmt: skip
        return
    now = datetime.now(timezone.utc).replace(tzinfo=None)  # the plugin stores naive UTC
    tokens = [t for t in store.list_user_tokens(username) if t.name == DEPLOYMENT_TOKEN_NAME]
    if (
        tokens
        and tokens[0].expires_at > now + DEPLOYMENT_TOKEN_RENEW_BEFORE
        and store.authenticate_user(username, password)
    ):
        return
    _, token, _ = store.replace_user_token(username, DEPLOYMENT_TOKEN_NAME, now + DEPLOYMENT_TOKEN_LIFETIME, None)
    try:
        client.put_secret_value(SecretId=secret_arn, SecretString=json.dumps({"username": username, "password": token}))
    except (BotoCoreError, ClientError) as exc:
        log(f"model deployments get no MLflow login: could not write the issued token to {secret_arn} "
            f"({type(exc).__name__}); the next task start issues another")  # fmt: skip
        return
    log(f"issued {username} an access token until {(now + DEPLOYMENT_TOKEN_LIFETIME).date()} (in its secret)")


def write_auth_config(env: Mapping[str, str], server_env: Mapping[str, str]) -> None:
    path = Path(server_env["MLFLOW_AUTH_CONFIG_PATH"])
    path.write_text(auth_config(env))
    path.chmod(0o600)


def prepare_runtime_dir(env: Mapping[str, str], server_env: Mapping[str, str]) -> None:
    runtime = runtime_dir(env)
    (runtime / "tmp").mkdir(parents=True, exist_ok=True, mode=0o700)
    runtime.chmod(0o700)
    app_setup(env).files(env, server_env)


def preload_credential_cache(env: Mapping[str, str], server_env: Mapping[str, str]) -> None:
    if credential_cache(env) == "validated":
        load_credential_cache(server_env)


def bootstrap_basic_auth(env: Mapping[str, str], server_env: Mapping[str, str]) -> None:
    ensure_auth_database(env)
    # MLflow's auth module reads its settings from the environment.
    os.environ.update({k: v for k, v in server_env.items() if k in ("MLFLOW_AUTH_CONFIG_PATH", "PGPASSWORD")})
    bootstrap_auth_store(env)


def bootstrap_oidc(env: Mapping[str, str], server_env: Mapping[str, str]) -> None:
    ensure_auth_database(env)
    bootstrap_sso_store(env, server_env)


def migrate(env: Mapping[str, str], server_env: Mapping[str, str]) -> None:
    """Every schema change of a rollout, done by exactly one task."""
    uri = server_env["MLFLOW_BACKEND_STORE_URI"]
    with migration_lock(uri):
        upgrade_tracking_schema(uri)
        app_setup(env).bootstrap(env, server_env)


def _nothing(*_: object) -> None:
    """MLflow's own app needs no settings, files or schema of its own."""


@dataclass(frozen=True)
class AppSetup:
    """How the entrypoint readies one server app (auth_modes.ServerApp) before `mlflow server` starts."""

    environment: Callable[[Mapping[str, str], dict[str, str]], None]  # checks the settings, edits the server's env
    files: Callable[[Mapping[str, str], Mapping[str, str]], None]  # writes into the runtime dir
    preload: Callable[[Mapping[str, str], Mapping[str, str]], None]  # imports what the server will, to fail early
    bootstrap: Callable[[Mapping[str, str], Mapping[str, str]], None]  # its schema and users, under the lock


APP_SETUPS: dict[ServerApp, AppSetup] = {
    "mlflow": AppSetup(environment=_nothing, files=_nothing, preload=_nothing, bootstrap=_nothing),
    "basic-auth": AppSetup(
        environment=basic_auth_environment,
        files=write_auth_config,
        preload=preload_basic_auth,
        bootstrap=bootstrap_basic_auth,
    ),
    "oidc": AppSetup(environment=oidc_environment, files=_nothing, preload=_nothing, bootstrap=bootstrap_oidc),
}


def gc(argv: list[str]) -> None:
    """`entrypoint.py gc [--apply] [--delete-orphans]`: garbage_collection.py with the server's settings."""
    import garbage_collection

    try:
        env = dict(os.environ)
        server_env = server_environment(env)
        destination = server_env.get("MLFLOW_ARTIFACTS_DESTINATION") or ""
        if not destination:
            raise ConfigError("MLFLOW_ARTIFACTS_DESTINATION is missing (e.g. s3://bucket/mlflow-artifacts)")
        check_tls_files(env)
    except ConfigError as error:
        log(f"{error}; refusing to run gc")
        sys.exit(64)
    os.environ.update({k: v for k, v in server_env.items() if k in ("AWS_DEFAULT_REGION", "PGPASSWORD")})
    uri = server_env["MLFLOW_BACKEND_STORE_URI"]
    log(f"gc: backend {redacted(uri)}, artifacts {destination}")
    sys.exit(garbage_collection.main(argv, uri, destination, env))


SERVE = "serve"
ENVIRONMENT_FD = "--environment-fd"


@contextmanager
def refusing_to_start() -> Iterator[None]:
    """A setting that cannot work, or a runtime dir that cannot be written: one line, exit 64."""
    try:
        yield
    except ConfigError as error:
        log(f"{error}; refusing to start")
        sys.exit(64)
    except OSError as error:
        log(f"cannot write to MLFLOW_RUNTIME_DIR ({error.strerror}); refusing to start")
        sys.exit(64)


def hand_over_environment(env: Mapping[str, str]) -> int:
    """A pipe holding `env` as JSON, for stage 2: the read end, inheritable; the write end closed.

    Nobody reads before the exec, so all of it must fit the pipe: it grows to the payload
    (Linux lets any process go to 1 MiB) and is written without blocking, so a larger
    environment is refused instead of hanging the start.
    """
    payload = json.dumps(dict(env)).encode()
    written = 0
    try:
        read_end, write_end = os.pipe()
        try:
            if len(payload) > fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ):
                fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, len(payload))
            os.set_blocking(write_end, False)
            written = os.write(write_end, payload)
        finally:
            os.close(write_end)
    except OSError as error:
        reason = error.strerror
    else:
        reason = "it does not fit"
    if written != len(payload):
        raise ConfigError(f"the environment ({len(payload)} bytes) cannot go to the server over a pipe ({reason})")
    os.set_inheritable(read_end, True)
    return read_end


def received_environment(args: list[str]) -> dict[str, str]:
    """The original environment stage 1 wrote to the pipe `serve --environment-fd N` names.

    Errors name the descriptor, never what it held.
    """
    if len(args) != 2 or args[0] != ENVIRONMENT_FD or not args[1].isdigit():
        raise ConfigError(
            f"{SERVE} needs {ENVIRONMENT_FD} <fd> from the entrypoint's first stage (run it without arguments)"
        )
    fd = int(args[1])
    try:
        with os.fdopen(fd, "rb") as pipe:
            data = pipe.read()
    except OSError as error:
        raise ConfigError(f"cannot read the environment from {ENVIRONMENT_FD} {fd} ({error.strerror})") from None
    try:
        env = json.loads(data)
    except ValueError:
        env = None
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ConfigError(f"{ENVIRONMENT_FD} {fd} does not hold the environment as a JSON object of strings")
    return env


def start() -> None:
    """Stage 1, the container's command: check, write the runtime dir, exec stage 2 with the server's environment.

    Nothing here imports MLflow; stage 2 does, once. The original environment (with the
    admin password, DB_PASSWORD, MLFLOW_WEBHOOK_KEY) goes over the pipe, so stage 2's
    initial environment, which /proc shows for the life of the server, is the server's.
    """
    with refusing_to_start():
        env = dict(os.environ)
        # The command line's settings first: they pass through server_environment unchanged.
        server_argv(env)
        server_env = server_environment(env, mlflow_defaults=False)
        check_tls_files(env)
        prepare_runtime_dir(env, server_env)
        read_end = hand_over_environment(env)
    stage_2 = [sys.executable, str(THIS_FILE), SERVE, ENVIRONMENT_FD, str(read_end)]
    os.execve(sys.executable, stage_2, server_env)  # noqa: S606 - our interpreter and file, no shell


def prepare_server(args: list[str]) -> list[str]:
    """Stage 2 up to serving: the auth app loaded, schemas migrated, users created; MLflow CLI's arguments.

    The original environment lives only in this call's locals (never os.environ) and is
    gone when it returns, before the server runs.
    """
    with refusing_to_start():
        env = received_environment(args)
        argv = server_argv(env)
        server_env = server_environment(env)
        # MLflow's default allowed hosts, which stage 1 left out; uvicorn's workers inherit them.
        os.environ["MLFLOW_SERVER_ALLOWED_HOSTS"] = server_env["MLFLOW_SERVER_ALLOWED_HOSTS"]
        app_setup(env).preload(env, server_env)
    uri = server_env["MLFLOW_BACKEND_STORE_URI"]
    log(f"mode {auth_mode(env)}, backend {redacted(uri)}, artifacts {server_env['MLFLOW_ARTIFACTS_DESTINATION']}")
    migrate(env, server_env)
    log(f"serving on {HOST}:{argv[argv.index('--port') + 1]}")
    return argv


def serve(args: list[str]) -> None:
    """Stage 2 (`serve --environment-fd N`): prepare, then MLflow's own CLI in this process.

    MLflow's server command would start uvicorn as a child and wait on it; server_exec.py
    has it exec uvicorn in this process instead, so what stage 2 loaded is not kept resident.
    """
    argv = prepare_server(args)
    import server_exec
    from mlflow.cli import cli

    server_exec.install()
    cli.main(args=argv, prog_name="mlflow")


def main() -> None:
    command = sys.argv[1:2]
    if command == ["gc"]:
        gc(sys.argv[2:])
    elif command == [SERVE]:
        serve(sys.argv[2:])
    else:
        start()


if __name__ == "__main__":
    main()
