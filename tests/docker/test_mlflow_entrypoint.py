"""docker/mlflow/entrypoint.py: database URIs, server command, auth settings, defaults."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from mlflow.server.auth import sqlalchemy_store as mlflow_auth_store
from mlflow.server.security_utils import is_allowed_host_header, should_block_cors_request
from sqlalchemy.engine import make_url

from localrun.process import free_port
from localrun.services import MLFLOW_ENTRYPOINT
from tests.docker.image_modules import image_module

PASSWORD = "p@ss:w/o%rd#?&x"
ENV = {
    "DB_HOST": "mlflow.cluster-abc.eu-west-1.rds.amazonaws.com",
    "DB_PORT": "5432",
    "DB_NAME": "mlflow",
    "DB_USERNAME": "mlflow_admin",
    "DB_PASSWORD": PASSWORD,
    "MLFLOW_ARTIFACTS_DESTINATION": "s3://bucket/mlflow-artifacts",
    "AWS_REGION": "eu-west-1",
}
ADMIN_PASSWORD = "admin:pass@word%with-length"
ACCOUNTS = {
    **ENV,
    "MLFLOW_AUTH_MODE": "accounts",
    "MLFLOW_AUTH_ADMIN_USERNAME": "mlflow",
    "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-secret-key-0123456789",
    "MLFLOW_AUTH_DEFAULT_PERMISSION": "NO_PERMISSIONS",
}

IAM_ON = {"MLFLOW_IAM_SIGN_IN": "true"}

CLIENT_SECRET = "oidc-client-secret-value"
SSO = {
    **ENV,
    "MLFLOW_AUTH_MODE": "sso",
    "OIDC_DISCOVERY_URL": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Abc123/.well-known/openid-configuration",
    "OIDC_CLIENT_ID": "ui-client-id",
    "OIDC_CLIENT_SECRET": CLIENT_SECRET,
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-secret-key-0123456789",
}


@pytest.fixture(scope="module")
def entrypoint() -> Iterator[ModuleType]:
    with image_module("entrypoint") as module:
        yield module


def test_password_with_reserved_characters_survives_the_uri(entrypoint: ModuleType) -> None:
    url = make_url(entrypoint.backend_store_uri(ENV))
    assert url.password == PASSWORD
    assert (url.host, url.port, url.database, url.username) == (
        ENV["DB_HOST"], 5432, "mlflow", "mlflow_admin",
    )  # fmt: skip
    # TLS with the server's certificate checked against the RDS bundle in the image.
    assert url.query["sslmode"] == "verify-full"
    assert url.query["sslrootcert"] == entrypoint.DEFAULT_SSLROOTCERT == "/opt/mlflow/rds-global-bundle.pem"
    assert url.query["options"] == "-c idle_session_timeout=60000"


def test_idle_timeout_is_configurable(entrypoint: ModuleType) -> None:
    url = make_url(entrypoint.backend_store_uri({**ENV, "DB_IDLE_SESSION_TIMEOUT": "5"}))
    assert url.query["options"] == "-c idle_session_timeout=5000"
    with pytest.raises(entrypoint.ConfigError, match="DB_IDLE_SESSION_TIMEOUT"):
        entrypoint.backend_store_uri({**ENV, "DB_IDLE_SESSION_TIMEOUT": "5; DROP"})


def test_redacted_uri_hides_the_password(entrypoint: ModuleType) -> None:
    uri = entrypoint.backend_store_uri(ENV)
    shown = entrypoint.redacted(uri)
    assert "***" in shown and "mlflow_admin" in shown
    assert PASSWORD not in shown and "p%40ss" not in shown


@pytest.mark.parametrize("missing", ["DB_HOST", "DB_NAME", "DB_USERNAME", "DB_PASSWORD"])
def test_missing_database_setting_is_an_error(entrypoint: ModuleType, missing: str) -> None:
    with pytest.raises(entrypoint.ConfigError, match=missing):
        entrypoint.backend_store_uri({**ENV, missing: ""})


def test_server_command_line_is_loopback_serving_artifacts(entrypoint: ModuleType) -> None:
    argv = entrypoint.server_argv(entrypoint.server_environment(ENV))
    assert argv[0] == "server"  # MLflow's CLI command, run in the entrypoint's process
    joined = " ".join(argv)
    assert "--host 127.0.0.1" in joined and "--port 5000" in joined
    assert "--workers 2" in joined
    assert "--serve-artifacts" in argv
    assert "--artifacts-destination s3://bucket/mlflow-artifacts" in joined
    assert "--default-artifact-root mlflow-artifacts:/" in joined
    # Shared mode too: MLflow's own app (nginx authenticates), behind the request guard.
    assert argv[-2:] == ["--app-name", "deployment"]
    assert "postgresql" not in joined and "p%40ss" not in joined and PASSWORD not in joined


def test_every_task_derives_the_same_webhook_encryption_key_from_the_shared_one(entrypoint: ModuleType) -> None:
    """MLflow encrypts webhook secrets with MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY (a Fernet key), else per process."""
    from cryptography.fernet import Fernet

    shared = "AbCdEf0123456789" * 4
    first, second = (entrypoint.server_environment({**ENV, "MLFLOW_WEBHOOK_KEY": shared}) for _ in range(2))
    key = first["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"]
    assert key == second["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"]
    token = Fernet(key).encrypt(b"webhook secret")  # one task stores ...
    assert (
        Fernet(second["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"]).decrypt(token) == b"webhook secret"
    )  # ... another reads
    assert "MLFLOW_WEBHOOK_KEY" not in first and shared not in first.values()
    other = entrypoint.server_environment({**ENV, "MLFLOW_WEBHOOK_KEY": shared + "x"})
    assert other["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"] != key
    assert "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY" not in entrypoint.server_environment(ENV)


def test_accounts_mode_runs_mlflows_auth_app(entrypoint: ModuleType) -> None:
    argv = entrypoint.server_argv(entrypoint.server_environment(ACCOUNTS))
    assert argv[argv.index("--app-name") + 1] == "deployment"
    assert entrypoint.server_environment(ACCOUNTS)["MLFLOW_AUTH_MODE"] == "accounts"  # deployment_app picks basic-auth
    assert "--serve-artifacts" in argv
    joined = " ".join(argv)
    assert ADMIN_PASSWORD not in joined and PASSWORD not in joined


def test_accounts_environment_keeps_passwords_out_of_the_server(entrypoint: ModuleType) -> None:
    env = entrypoint.server_environment(ACCOUNTS)
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" not in env, "the admin exists before the server starts"
    assert "DB_PASSWORD" not in env
    assert env["PGPASSWORD"] == PASSWORD  # libpq's source for the users' database
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/tmp/mlflow/basic_auth.ini"
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == ACCOUNTS["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    assert str(Path(MLFLOW_ENTRYPOINT).parent) in env["PYTHONPATH"].split(":")
    assert env["TMPDIR"].startswith("/tmp/mlflow/")


def test_auth_ini_names_the_users_database_without_a_password(entrypoint: ModuleType) -> None:
    text = entrypoint.auth_config(ACCOUNTS)
    assert PASSWORD not in text and "p%40ss" not in text and ADMIN_PASSWORD not in text
    parser = configparser.ConfigParser()  # as MLflow reads it
    parser.read_string(text)
    section = parser["mlflow"]
    url = make_url(section["database_uri"])
    assert (url.host, url.database, url.username, url.password) == (
        ENV["DB_HOST"], "mlflow_auth", "mlflow_admin", None,
    )  # fmt: skip
    assert url.query["options"] == "-c idle_session_timeout=60000"
    assert section["default_permission"] == "NO_PERMISSIONS"
    assert section["admin_username"] == "mlflow"
    assert section["authorization_function"] == "credential_cache:authenticate_request"
    assert section["auth_cache_ttl_seconds"] == "0"


@pytest.mark.parametrize(
    "cache, function, ttl",
    [
        ("none", "mlflow.server.auth:authenticate_request_basic_auth", "0"),
        ("mlflow-ttl", "mlflow.server.auth:authenticate_request_basic_auth", "60"),
    ],
)
def test_credential_cache_alternatives(entrypoint: ModuleType, cache: str, function: str, ttl: str) -> None:
    parser = configparser.ConfigParser()
    parser.read_string(entrypoint.auth_config({**ACCOUNTS, "MLFLOW_AUTH_CREDENTIAL_CACHE": cache}))
    assert parser["mlflow"]["authorization_function"] == function
    assert parser["mlflow"]["auth_cache_ttl_seconds"] == ttl


def test_users_database_name(entrypoint: ModuleType) -> None:
    assert make_url(entrypoint.auth_database_uri(ACCOUNTS)).database == "mlflow_auth"
    named = {**ACCOUNTS, "MLFLOW_AUTH_DB_NAME": "team_users"}
    assert make_url(entrypoint.auth_database_uri(named)).database == "team_users"
    for bad in ("Users", "users; DROP", "mlflow", "1users"):
        with pytest.raises(entrypoint.ConfigError, match="MLFLOW_AUTH_DB_NAME"):
            entrypoint.auth_database_uri({**ACCOUNTS, "MLFLOW_AUTH_DB_NAME": bad})


def test_runtime_dir_is_the_only_place_written(entrypoint: ModuleType, tmp_path: Path) -> None:
    env = {**ACCOUNTS, "MLFLOW_RUNTIME_DIR": str(tmp_path / "runtime")}
    server_env = entrypoint.server_environment(env)
    entrypoint.prepare_runtime_dir(env, server_env)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert written == ["runtime", "runtime/basic_auth.ini", "runtime/tmp"]
    ini = tmp_path / "runtime" / "basic_auth.ini"
    assert ini.stat().st_mode & 0o077 == 0
    assert (tmp_path / "runtime").stat().st_mode & 0o077 == 0
    assert server_env["MLFLOW_AUTH_CONFIG_PATH"] == str(ini)


def test_public_domain_joins_hosts_and_origins(entrypoint: ModuleType) -> None:
    env = entrypoint.server_environment({**ENV, "MLFLOW_PUBLIC_DOMAIN": "mlflow.example.com"})
    hosts = env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert is_allowed_host_header(hosts, "mlflow.example.com")
    assert is_allowed_host_header(hosts, "mlflow.example.com:443")
    assert not is_allowed_host_header(hosts, "other.example.com")
    origins = env["MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"].split(",")
    assert not should_block_cors_request("https://mlflow.example.com", "POST", origins)
    with pytest.raises(entrypoint.ConfigError, match="MLFLOW_PUBLIC_DOMAIN"):
        entrypoint.server_environment({**ENV, "MLFLOW_PUBLIC_DOMAIN": "https://x.example.com/"})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"MLFLOW_AUTH_MODE": "oidc"}, "MLFLOW_AUTH_MODE must be one of shared, accounts, sso"),
        ({"MLFLOW_AUTH_MODE": "Accounts"}, "MLFLOW_AUTH_MODE must be one of"),
        ({"MLFLOW_FLASK_SERVER_SECRET_KEY": ""}, "MLFLOW_FLASK_SERVER_SECRET_KEY is missing"),
        ({"MLFLOW_AUTH_ADMIN_USERNAME": ""}, "MLFLOW_AUTH_ADMIN_USERNAME is missing"),
        ({"MLFLOW_AUTH_ADMIN_PASSWORD": ""}, "MLFLOW_AUTH_ADMIN_PASSWORD is missing"),
        ({"MLFLOW_AUTH_ADMIN_PASSWORD": "short"}, "at least 12 characters"),
        ({"MLFLOW_AUTH_DEFAULT_PERMISSION": "WRITE"}, "MLFLOW_AUTH_DEFAULT_PERMISSION must be one of"),
        ({"MLFLOW_AUTH_CREDENTIAL_CACHE": "forever"}, "MLFLOW_AUTH_CREDENTIAL_CACHE must be one of"),
        ({"MLFLOW_IAM_SIGN_IN": "yes"}, "MLFLOW_IAM_SIGN_IN must be true or false, got 'yes'"),
        ({**IAM_ON, "MLFLOW_IAM_PRINCIPALS": "[]"}, "MLFLOW_IAM_PRINCIPALS is not a JSON object of ARN -> MLflow user"),
        ({**IAM_ON, "MLFLOW_IAM_PRINCIPALS": "{"}, "MLFLOW_IAM_PRINCIPALS is not JSON"),
        (
            {**IAM_ON, "MLFLOW_IAM_PRINCIPALS": '{"arn:aws:iam::123456789012:root": "x"}'},
            "MLFLOW_IAM_PRINCIPALS 'arn:aws:iam",
        ),
        (
            {**IAM_ON, "MLFLOW_IAM_PRINCIPALS": '{"arn:aws:iam::123456789012:role/ci": "a b"}'},
            "MLFLOW_IAM_PRINCIPALS 'a b' is not",
        ),
        (
            {**IAM_ON, "MLFLOW_IAM_PRINCIPALS_PATH": "mlflow/iam"},
            "MLFLOW_IAM_PRINCIPALS_PATH must be an SSM parameter path",
        ),
        ({**IAM_ON, "MLFLOW_IAM_PRINCIPALS_PATH": "/mlflow/iam principals"}, "MLFLOW_IAM_PRINCIPALS_PATH must be"),
    ],
)
def test_bad_accounts_settings_are_one_line_errors(
    entrypoint: ModuleType, overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(entrypoint.ConfigError, match=re.escape(message)) as error:
        entrypoint.server_environment({**ACCOUNTS, **overrides})
    assert "\n" not in str(error.value)
    assert ADMIN_PASSWORD not in str(error.value)


@pytest.mark.parametrize("permission", ["READ", "EDIT", "MANAGE", "NO_PERMISSIONS"])
def test_default_permissions(entrypoint: ModuleType, permission: str) -> None:
    parser = configparser.ConfigParser()
    parser.read_string(entrypoint.auth_config({**ACCOUNTS, "MLFLOW_AUTH_DEFAULT_PERMISSION": permission}))
    assert parser["mlflow"]["default_permission"] == permission


def test_server_environment_carries_the_uri_not_the_password(entrypoint: ModuleType) -> None:
    env = entrypoint.server_environment(ENV)
    assert "DB_PASSWORD" not in env
    assert make_url(env["MLFLOW_BACKEND_STORE_URI"]).password == PASSWORD
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    overridden = entrypoint.server_environment({**ENV, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"})
    assert overridden["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"


@pytest.mark.parametrize(
    "host, allowed",
    [
        ("a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com", True),
        ("internal-mlflow-123456.eu-west-1.elb.amazonaws.com", True),
        ("internal-mlflow-123456.eu-west-1.elb.amazonaws.com:80", True),
        ("10.0.3.17:8080", True),  # the ALB health check
        ("127.0.0.1:5000", True),
        ("a1b2c3d4e5.execute-api.us-east-1.amazonaws.com", False),  # other region
        ("mlflow.attacker.example", False),
    ],
)
def test_default_allowed_hosts(entrypoint: ModuleType, host: str, allowed: bool) -> None:
    patterns = entrypoint.server_environment(ENV)["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert is_allowed_host_header(patterns, host) is allowed


def test_unknown_region_accepts_any_region(entrypoint: ModuleType) -> None:
    env = {k: v for k, v in ENV.items() if k != "AWS_REGION"}
    patterns = entrypoint.server_environment(env)["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert is_allowed_host_header(patterns, "abc.execute-api.ap-south-1.amazonaws.com")


def test_an_operators_allowed_hosts_spare_mlflows_server_import(entrypoint: ModuleType) -> None:
    """MLflow's default hosts live in its server package (about 0.5 CPU-s to import): with the
    setting given, they are not read, and the entrypoint imports nothing of MLflow building the
    server's environment (issue 22)."""
    code = (
        "import json, sys, entrypoint; env = entrypoint.server_environment(json.loads(sys.argv[1])); "
        "print(env['MLFLOW_SERVER_ALLOWED_HOSTS'], sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))"
    )
    for env in (ENV, ACCOUNTS, SSO):
        result = subprocess.run(
            [sys.executable, "-c", code, json.dumps({**env, "MLFLOW_SERVER_ALLOWED_HOSTS": "mlflow.internal.example"})],
            env={**os.environ, "PYTHONPATH": str(MLFLOW_ENTRYPOINT.parent)},
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        assert result.stdout.split() == ["mlflow.internal.example", "[]"], env.get("MLFLOW_AUTH_MODE")


def test_the_first_stage_imports_nothing_of_mlflow(entrypoint: ModuleType) -> None:
    """Stage 1 builds stage 2's environment without MLflow's default hosts (stage 2 adds them, importing
    MLflow once for the whole start)."""
    code = (
        "import json, sys, entrypoint; env = entrypoint.server_environment(json.loads(sys.argv[1]), "
        "mlflow_defaults=False); entrypoint.server_argv(env); "
        "print('MLFLOW_SERVER_ALLOWED_HOSTS' in env, sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))"
    )
    for env in (ENV, ACCOUNTS, SSO):
        result = subprocess.run(
            [sys.executable, "-c", code, json.dumps(env)],
            env={**os.environ, "PYTHONPATH": str(MLFLOW_ENTRYPOINT.parent)},
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        assert result.stdout.split() == ["False", "[]"], env.get("MLFLOW_AUTH_MODE")
    assert entrypoint.server_environment(ENV)["MLFLOW_SERVER_ALLOWED_HOSTS"]  # by default, with them


def test_cors_allows_the_api_gateway_origin_only(entrypoint: ModuleType) -> None:
    origins = entrypoint.server_environment(ENV)["MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"].split(",")
    ok = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
    assert not should_block_cors_request(ok, "POST", origins)
    assert should_block_cors_request("https://attacker.example", "POST", origins)


@pytest.mark.parametrize(
    "base, missing",
    [
        (ENV, "DB_PASSWORD"),
        (ENV, "MLFLOW_ARTIFACTS_DESTINATION"),
        (ACCOUNTS, "MLFLOW_FLASK_SERVER_SECRET_KEY"),
        (ACCOUNTS, "MLFLOW_AUTH_ADMIN_PASSWORD"),
    ],
)
def test_refuses_to_start_with_a_clear_message(base: dict[str, str], missing: str, tmp_path: Path) -> None:
    env = {k: v for k, v in base.items() if k != missing} | {"MLFLOW_RUNTIME_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, MLFLOW_ENTRYPOINT], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 64
    assert missing in result.stderr and "refusing to start" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert PASSWORD not in result.stderr + result.stdout
    assert ADMIN_PASSWORD not in result.stderr + result.stdout


def start_until_the_database(app: Path, env: dict[str, str], tmp_path: Path) -> tuple[str, configparser.ConfigParser]:
    """Run the entrypoint in `app` against a closed database port: it gets as far as the migration.

    The server's whole start (MLflow's imports, seconds each): its tests are integration tests.
    """
    env = {
        **env, "DB_HOST": "127.0.0.1", "DB_PORT": str(free_port()), "DB_SSLMODE": "disable",
        "MLFLOW_RUNTIME_DIR": str(tmp_path / "runtime"),
    }  # fmt: skip
    result = subprocess.run(
        [sys.executable, str(app / "entrypoint.py")], env=env, capture_output=True, text=True, timeout=120
    )
    assert "refusing to start" not in result.stderr and result.returncode != 64, result.stderr
    parser = configparser.ConfigParser()
    parser.read(tmp_path / "runtime" / "basic_auth.ini")
    return result.stderr + result.stdout, parser


def image_copy(tmp_path: Path, broken: str, text: str) -> Path:
    app = tmp_path / "app"
    shutil.copytree(MLFLOW_ENTRYPOINT.parent, app, ignore=shutil.ignore_patterns("__pycache__"))
    (app / broken).write_text(text)
    return app


@pytest.mark.integration
def test_accounts_mode_falls_back_to_mlflows_own_check_where_the_patches_do_not_load(tmp_path: Path) -> None:
    """The image's files, except that auth_lookups.py imports a name this MLflow does not have, as it
    would after a release renamed one: the server starts with MLflow's own check, uncached."""
    app = image_copy(
        tmp_path, "auth_lookups.py", "from mlflow.server.auth.sqlalchemy_store import GrantRowOfANewRelease\n"
    )
    stderr, parser = start_until_the_database(app, ACCOUNTS, tmp_path)
    lines = stderr.splitlines()
    fallback = [line for line in lines if "credential_cache.py does not load" in line]
    assert fallback == [
        "mlflow entrypoint: MLflow's auth app is not the reviewed one (credential_cache.py does not load: "
        "ImportError: cannot import name 'GrantRowOfANewRelease' from 'mlflow.server.auth.sqlalchemy_store' "
        f"({Path(mlflow_auth_store.__file__)})): MLflow's own password check serves, uncached, correct but slower"
    ], stderr
    assert lines.index(fallback[0]) < next(i for i, line in enumerate(lines) if "mode accounts, backend" in line)
    assert parser["mlflow"]["authorization_function"] == "mlflow.server.auth:authenticate_request_basic_auth"
    assert parser["mlflow"]["auth_cache_ttl_seconds"] == "0"  # MLflow's TTL cache stays off: never weaker
    assert PASSWORD not in stderr
    assert ADMIN_PASSWORD not in stderr


def test_tls_settings(entrypoint: ModuleType, tmp_path) -> None:
    bundle = tmp_path / "ca bundle.pem"
    url = make_url(entrypoint.backend_store_uri({**ENV, "DB_SSLROOTCERT": str(bundle)}))
    assert (url.query["sslmode"], url.query["sslrootcert"]) == ("verify-full", str(bundle))
    url = make_url(entrypoint.backend_store_uri({**ENV, "DB_SSLMODE": "verify-ca"}))
    assert url.query["sslrootcert"] == entrypoint.DEFAULT_SSLROOTCERT
    # The local stack's switch: no TLS, and no CA bundle to look for.
    url = make_url(entrypoint.backend_store_uri({**ENV, "DB_SSLMODE": "disable"}))
    assert url.query["sslmode"] == "disable" and "sslrootcert" not in url.query
    with pytest.raises(entrypoint.ConfigError, match="DB_SSLMODE must be one of"):
        entrypoint.backend_store_uri({**ENV, "DB_SSLMODE": "verify-full&sslmode=disable"})


def test_the_image_ships_the_ca_bundle_where_the_entrypoint_looks(entrypoint: ModuleType) -> None:
    dockerfile = (MLFLOW_ENTRYPOINT.parent / "Dockerfile").read_text()
    source = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
    assert f"ADD --chmod=0644 {source} {entrypoint.DEFAULT_SSLROOTCERT}" in dockerfile


def test_refuses_to_start_without_the_ca_bundle(tmp_path) -> None:
    missing = tmp_path / "no-bundle.pem"
    result = subprocess.run(
        [sys.executable, MLFLOW_ENTRYPOINT], env={**ENV, "DB_SSLROOTCERT": str(missing)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 64
    assert f"DB_SSLROOTCERT {missing} is not a file" in result.stderr and "refusing to start" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout


def test_sso_mode_runs_the_oidc_plugin_with_its_settings(entrypoint: ModuleType) -> None:
    env = entrypoint.server_environment(SSO)
    assert entrypoint.server_argv(env)[-2:] == ["--app-name", "deployment"]
    assert env["MLFLOW_AUTH_MODE"] == "sso"  # deployment_app picks the OIDC plugin
    # Tokens must name the discovery URL's issuer. Cognito's client-credentials tokens carry
    # no `aud`, so with the stack's own pool the audience is not checked unless configured.
    assert env["OIDC_ISSUER"] == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Abc123"
    assert "OIDC_AUDIENCE" not in env
    assert entrypoint.server_environment({**SSO, "OIDC_AUDIENCE": "x"})["OIDC_AUDIENCE"] == "x"
    assert env["OIDC_GROUPS_ATTRIBUTE"] == "cognito:groups"
    assert env["OIDC_ADMIN_GROUP_NAME"] == "mlflow-admins"
    assert (env["OIDC_GROUP_NAME"], env["OIDC_GROUP_NAME_PATTERN"]) == ("mlflow-admins", "*")
    assert env["OIDC_USERNAME_FIELD"].split(",")[-1] == "client_id"
    assert env["SECRET_KEY"] == SSO["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    assert env["SESSION_COOKIE_SECURE"] == "true"
    assert env["OIDC_PROVISION_ON_BEARER_AUTH"] == env["OIDC_TRUST_BEARER_GROUP_CLAIMS"] == "false"
    assert env["PERMISSION_CACHE_TTL_SECONDS"] == "0"
    assert env["TRUSTED_PROXIES"] == "127.0.0.1/32"
    users_db = make_url(env["OIDC_USERS_DB_URI"])
    assert (users_db.database, users_db.password) == ("mlflow_oidc_auth", None)
    assert env["PGPASSWORD"] == PASSWORD and "DB_PASSWORD" not in env


def test_sso_groups_and_audience_follow_the_settings(entrypoint: ModuleType) -> None:
    env = entrypoint.server_environment({
        **SSO, "OIDC_DISCOVERY_URL": "https://login.example.com/realms/x/.well-known/openid-configuration",
        "OIDC_ALLOWED_GROUP": "data-science", "OIDC_ADMIN_GROUP": "ml-admins", "OIDC_AUDIENCE": "api://mlflow",
    })  # fmt: skip
    assert env["OIDC_ISSUER"] == "https://login.example.com/realms/x"
    assert env["OIDC_GROUPS_ATTRIBUTE"] == "groups"
    assert (env["OIDC_GROUP_NAME"], env["OIDC_GROUP_NAME_PATTERN"]) == ("data-science", "")
    assert env["OIDC_ADMIN_GROUP_NAME"] == "ml-admins"
    assert env["OIDC_AUDIENCE"] == "api://mlflow"
    # Any other issuer: tokens must be for the MLflow app client unless told otherwise.
    other = entrypoint.server_environment({
        **SSO, "OIDC_DISCOVERY_URL": "https://login.example.com/realms/x/.well-known/openid-configuration",
    })  # fmt: skip
    assert other["OIDC_AUDIENCE"] == SSO["OIDC_CLIENT_ID"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"OIDC_CLIENT_SECRET": ""}, "OIDC_CLIENT_SECRET is missing"),
        ({"OIDC_CLIENT_ID": " "}, "OIDC_CLIENT_ID is missing"),
        ({"MLFLOW_FLASK_SERVER_SECRET_KEY": ""}, "MLFLOW_FLASK_SERVER_SECRET_KEY is missing"),
        ({"OIDC_DISCOVERY_URL": "https://idp.example.com/"}, "OIDC_DISCOVERY_URL must be"),
        ({"OIDC_DISCOVERY_URL": "http://idp.example.com/.well-known/openid-configuration"}, "must use https"),
        ({"OIDC_ALLOWED_GROUP": "a,b"}, "OIDC_ALLOWED_GROUP must be one name"),
        ({"OIDC_MACHINE_CLIENTS": "abc,has space"}, "OIDC_MACHINE_CLIENTS must list"),
        ({"MLFLOW_AUTH_DEFAULT_PERMISSION": "ALL"}, "MLFLOW_AUTH_DEFAULT_PERMISSION must be one of"),
    ],
)
def test_bad_sso_settings_are_one_line_errors(entrypoint: ModuleType, overrides: dict[str, str], message: str) -> None:
    with pytest.raises(entrypoint.ConfigError, match=message) as error:
        entrypoint.server_environment({**SSO, **overrides})
    assert "\n" not in str(error.value)
    assert CLIENT_SECRET not in str(error.value)


IAM = {
    **ACCOUNTS,
    "MLFLOW_IAM_SIGN_IN": "true",
    "MLFLOW_IAM_PRINCIPALS": '{"arn:aws:iam::123456789012:role/ci": "ci-pipeline"}',
    "MLFLOW_IAM_PRINCIPALS_PATH": "/mlflow/iam-principals",
}


@pytest.mark.parametrize(
    "cache, password_check",
    [
        ("validated", "credential_cache:authenticate_request"),
        ("none", "mlflow.server.auth:authenticate_request_basic_auth"),
    ],
)
def test_iam_sign_in_wraps_the_configured_password_check(
    entrypoint: ModuleType, cache: str, password_check: str
) -> None:
    parser = configparser.ConfigParser()  # as MLflow and iam_sign_in.py read it
    parser.read_string(entrypoint.auth_config({**IAM, "MLFLOW_AUTH_CREDENTIAL_CACHE": cache}))
    assert parser["mlflow"]["authorization_function"] == "iam_sign_in:authenticate_request"
    assert parser["mlflow"]["iam_password_check"] == password_check
    off = configparser.ConfigParser()
    off.read_string(
        entrypoint.auth_config({**IAM, "MLFLOW_IAM_SIGN_IN": "false", "MLFLOW_AUTH_CREDENTIAL_CACHE": cache})
    )
    assert off["mlflow"]["authorization_function"] == password_check
    assert "iam_password_check" not in off["mlflow"]
    # The table and path reach the server as they are: not secret.
    server_env = entrypoint.server_environment(IAM)
    assert server_env["MLFLOW_IAM_PRINCIPALS"] == IAM["MLFLOW_IAM_PRINCIPALS"]
    assert server_env["MLFLOW_IAM_PRINCIPALS_PATH"] == "/mlflow/iam-principals"


def test_iam_sign_in_is_refused_in_a_mode_without_it(entrypoint: ModuleType) -> None:
    with pytest.raises(
        entrypoint.ConfigError, match="^MLFLOW_IAM_SIGN_IN is true, but shared mode has no IAM sign-in$"
    ):
        entrypoint.server_environment({**ENV, "MLFLOW_IAM_SIGN_IN": "true"})
    assert entrypoint.server_environment({**ENV, "MLFLOW_IAM_SIGN_IN": "false"})


def test_iam_sign_in_reaches_the_sso_server_with_its_table(entrypoint: ModuleType) -> None:
    settings = {key: IAM[key] for key in ("MLFLOW_IAM_SIGN_IN", "MLFLOW_IAM_PRINCIPALS", "MLFLOW_IAM_PRINCIPALS_PATH")}
    server_env = entrypoint.server_environment({**SSO, **settings})
    assert {key: server_env[key] for key in settings} == settings


@pytest.mark.parametrize(
    "overrides, named",
    [
        ({**ENV, "MLFLOW_IAM_SIGN_IN": "true"}, "MLFLOW_IAM_SIGN_IN is true, but shared mode"),
        ({**IAM, "MLFLOW_IAM_PRINCIPALS": '{"arn:aws:iam::123456789012:role/ci": ["x"]}'}, "MLFLOW_IAM_PRINCIPALS"),
    ],
)
def test_refuses_to_start_on_iam_settings_that_cannot_work(
    overrides: dict[str, str], named: str, tmp_path: Path
) -> None:
    env = overrides | {"MLFLOW_RUNTIME_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, MLFLOW_ENTRYPOINT], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 64
    assert named in result.stderr and "refusing to start" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_iam_sign_in_hands_over_to_mlflows_own_check_where_the_cache_does_not_load(tmp_path: Path) -> None:
    app = image_copy(
        tmp_path, "auth_lookups.py", "from mlflow.server.auth.sqlalchemy_store import GrantRowOfANewRelease\n"
    )
    stderr, parser = start_until_the_database(app, IAM, tmp_path)
    assert "credential_cache.py does not load" in stderr
    assert parser["mlflow"]["authorization_function"] == "iam_sign_in:authenticate_request"
    assert parser["mlflow"]["iam_password_check"] == "mlflow.server.auth:authenticate_request_basic_auth"


@pytest.mark.integration
def test_a_server_whose_iam_sign_in_does_not_load_serves_passwords_only(tmp_path: Path) -> None:
    app = image_copy(tmp_path, "iam_sign_in.py", "from iam_callers import NameOfANewRelease\n")
    stderr, parser = start_until_the_database(app, IAM, tmp_path)
    assert [line for line in stderr.splitlines() if "IAM sign-in is off" in line] == [
        "mlflow entrypoint: IAM sign-in is off: iam_sign_in.py does not load (ImportError: cannot import name "
        f"'NameOfANewRelease' from 'iam_callers' ({app / 'iam_callers.py'})); passwords only"
    ]
    assert parser["mlflow"]["authorization_function"] == "credential_cache:authenticate_request"
