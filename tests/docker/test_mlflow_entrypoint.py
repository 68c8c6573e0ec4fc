"""docker/mlflow/entrypoint.py: database URI, server command, defaults."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import ModuleType

import pytest
from mlflow.server.security_utils import is_allowed_host_header, should_block_cors_request
from sqlalchemy.engine import make_url

from localrun.services import MLFLOW_ENTRYPOINT

PASSWORD = "p@ss:w/o%rd#?&x"
ENV = {
    "DB_HOST": "mlflow.cluster-abc.eu-west-1.rds.amazonaws.com",
    "DB_PORT": "5432",
    "DB_NAME": "mlflow",
    "DB_USERNAME": "mlflow_admin",
    "DB_PASSWORD": PASSWORD,
    "MLFLOW_ARTIFACT_ROOT": "s3://bucket/mlflow",
    "AWS_REGION": "eu-west-1",
}


@pytest.fixture(scope="module")
def entrypoint() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mlflow_entrypoint", MLFLOW_ENTRYPOINT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_server_command_line_is_loopback_with_direct_artifacts(entrypoint: ModuleType) -> None:
    argv = entrypoint.server_argv(entrypoint.server_environment(ENV))
    joined = " ".join(argv)
    assert "--host 127.0.0.1" in joined and "--port 5000" in joined
    assert "--workers 2" in joined
    assert "--default-artifact-root s3://bucket/mlflow" in joined
    assert "--no-serve-artifacts" in argv
    assert "postgresql" not in joined and "p%40ss" not in joined and PASSWORD not in joined


def test_server_environment_carries_the_uri_not_the_password(entrypoint: ModuleType) -> None:
    env = entrypoint.server_environment(ENV)
    assert "DB_PASSWORD" not in env
    assert make_url(env["MLFLOW_BACKEND_STORE_URI"]).password == PASSWORD
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    overridden = entrypoint.server_environment(
        {**ENV, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"}
    )
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


def test_cors_allows_the_api_gateway_origin_only(entrypoint: ModuleType) -> None:
    origins = entrypoint.server_environment(ENV)["MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"].split(",")
    ok = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
    assert not should_block_cors_request(ok, "POST", origins)
    assert should_block_cors_request("https://attacker.example", "POST", origins)


@pytest.mark.parametrize("missing", ["DB_PASSWORD", "MLFLOW_ARTIFACT_ROOT"])
def test_refuses_to_start_with_a_clear_message(missing: str) -> None:
    env = {k: v for k, v in ENV.items() if k != missing}
    result = subprocess.run(
        [sys.executable, MLFLOW_ENTRYPOINT], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 64
    assert missing in result.stderr and "refusing to start" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout


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
