"""docker/nginx/entrypoint.sh: refusal, password hashing, rendered config.

nginx itself is replaced by a stub that records how it was started, except
where the real binary checks the rendered configuration.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from localrun.services import NGINX_ENTRYPOINT, nginx_binary

PASSWORD = "pa:ss@w/o%rd#?&"


@pytest.fixture
def stub(tmp_path: Path) -> Path:
    """An 'nginx' that writes its argv and environment next to itself."""
    path = tmp_path / "fake-nginx"
    path.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/argv"\nenv > "$(dirname "$0")/env"\n')
    path.chmod(0o755)
    return path


def run(stub: Path, **overrides: str | None) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "MLFLOW_USERNAME": "alice",
        "MLFLOW_PASSWORD": PASSWORD,
        "NGINX_BIN": str(stub),
        "NGINX_RUNTIME_DIR": str(stub.parent / "runtime"),
        "NGINX_LISTEN_ADDRESS": "127.0.0.1",
    }
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run([NGINX_ENTRYPOINT], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("variable", ["MLFLOW_USERNAME", "MLFLOW_PASSWORD"])
@pytest.mark.parametrize("value", [None, ""])
def test_refuses_to_start_without_credentials(stub: Path, variable: str, value: str | None) -> None:
    result = run(stub, **{variable: value})
    assert result.returncode != 0
    assert f"{variable} is missing or empty" in result.stderr
    assert "refusing to start" in result.stderr
    assert not (stub.parent / "argv").exists(), "nginx must not be started"
    assert not (stub.parent / "runtime" / "htpasswd").exists()


@pytest.mark.parametrize(
    "overrides",
    [
        {"MLFLOW_USERNAME": "al:ice"},
        {"NGINX_PORT": "8080; include /etc/passwd"},
        {"NGINX_PORT": "0"},
        {"NGINX_PORT": "70000"},
        {"MLFLOW_UPSTREAM": "127.0.0.1:5000; } server { listen 9"},
        {"MLFLOW_UPSTREAM": "mlflow&host|x:5000"},
        {"NGINX_LISTEN_ADDRESS": "0.0.0.0 ssl"},
        {"NGINX_RUNTIME_DIR": "relative/dir"},
    ],
)
def test_rejects_values_that_could_inject_config(stub: Path, overrides: dict[str, str]) -> None:
    result = run(stub, **overrides)
    assert result.returncode != 0, result.stderr
    assert "nginx entrypoint:" in result.stderr
    assert not (stub.parent / "argv").exists()


def test_password_file_holds_a_salted_sha512_crypt_hash(stub: Path) -> None:
    assert run(stub).returncode == 0
    htpasswd = stub.parent / "runtime" / "htpasswd"
    content = htpasswd.read_text()
    assert re.fullmatch(r"alice:\$6\$rounds=1000\$[A-Za-z0-9./]{16}\$[A-Za-z0-9./]{86}\n", content)
    assert PASSWORD not in content
    assert not content.split(":", 1)[1].startswith(("$1$", "$apr1$", "{PLAIN}", "{SHA}"))
    assert htpasswd.stat().st_mode & 0o077 == 0, "password file must be private"
    # The system crypt() that nginx uses accepts the password and only it.
    stored = content.strip().split(":", 1)[1]
    check = 'print crypt($ENV{P}, $ENV{H}) eq $ENV{H} ? "yes" : "no"'
    for password, expected in [(PASSWORD, "yes"), (PASSWORD + "x", "no")]:
        verdict = subprocess.run(
            ["perl", "-e", check], env={"P": password, "H": stored},
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert verdict == expected


def test_each_start_uses_a_new_salt(stub: Path) -> None:
    hashes = set()
    for _ in range(2):
        assert run(stub).returncode == 0
        hashes.add((stub.parent / "runtime" / "htpasswd").read_text())
    assert len(hashes) == 2


def test_nginx_gets_neither_the_password_nor_it_on_argv(stub: Path) -> None:
    result = run(stub)
    assert result.returncode == 0, result.stderr
    env = (stub.parent / "env").read_text()
    argv = (stub.parent / "argv").read_text().split("\n")
    assert "MLFLOW_PASSWORD" not in env
    assert PASSWORD not in env and PASSWORD not in "".join(argv)
    assert PASSWORD not in result.stdout + result.stderr
    runtime = str(stub.parent / "runtime")
    assert argv[:4] == ["-p", f"{runtime}/", "-c", f"{runtime}/nginx.conf"]


def test_rendered_config_is_valid_and_keeps_the_limits(stub: Path) -> None:
    assert run(stub, NGINX_PORT="18080", MLFLOW_UPSTREAM="127.0.0.1:15000").returncode == 0
    runtime = stub.parent / "runtime"
    config = rendered(runtime)
    assert "@" not in re.sub(r"#.*", "", config), "placeholder left unrendered"
    for directive in [
        "listen 127.0.0.1:18080 default_server;",
        "server 127.0.0.1:15000;",
        "client_max_body_size 10m;",
        "proxy_read_timeout 30s;",
        "server_tokens off;",
        "location = /elb-status {",
        "auth_basic_user_file htpasswd;",
        'proxy_set_header Authorization "";',
    ]:
        assert directive in config
    assert "proxy_set_header Authorization $http_authorization" not in config
    result = subprocess.run(
        [nginx_binary(), "-t", "-p", f"{runtime}/", "-c", str(runtime / "nginx.conf"),
         "-e", "stderr"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def rendered(runtime: Path) -> str:
    """The rendered config with the part both servers include."""
    return (runtime / "nginx.conf").read_text() + (runtime / "server_common.conf").read_text()


def render(stub: Path, **overrides: str | None) -> str:
    result = run(stub, **overrides)
    assert result.returncode == 0, result.stderr
    return (stub.parent / "runtime" / "nginx.conf").read_text()


def nginx_accepts(stub: Path) -> None:
    runtime = stub.parent / "runtime"
    result = subprocess.run(
        [nginx_binary(), "-t", "-p", f"{runtime}/", "-c", str(runtime / "nginx.conf"),
         "-e", "stderr"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_shared_mode_is_the_default_and_asks_for_credentials(stub: Path) -> None:
    config = render(stub)
    assert 'auth_basic "MLflow";' in config
    assert 'proxy_set_header Authorization "";' in config
    assert render(stub, MLFLOW_AUTH_MODE="shared") == config


def test_accounts_mode_needs_no_credentials_and_passes_them_through(stub: Path) -> None:
    result = run(stub, MLFLOW_AUTH_MODE="accounts", MLFLOW_USERNAME=None, MLFLOW_PASSWORD=None)
    assert result.returncode == 0, result.stderr
    assert "mode accounts" in result.stderr
    runtime = stub.parent / "runtime"
    config = rendered(runtime)
    assert "auth_basic off;" in config
    assert "proxy_set_header Authorization $http_authorization;" in config
    assert not (runtime / "htpasswd").exists()
    # The same limits, health path and header handling as in shared mode.
    for directive in [
        "client_max_body_size 10m;",
        "proxy_read_timeout 30s;",
        "location = /elb-status {",
        "gzip on;",
        "proxy_set_header Host $public_host;",
        "if ($cross_site_write) {",
    ]:
        assert directive in config
    nginx_accepts(stub)


def test_switching_to_accounts_removes_the_old_password_file(stub: Path) -> None:
    assert run(stub).returncode == 0
    assert (stub.parent / "runtime" / "htpasswd").exists()
    assert run(stub, MLFLOW_AUTH_MODE="accounts").returncode == 0
    assert not (stub.parent / "runtime" / "htpasswd").exists()


def test_sso_mode_passes_requests_without_credentials_to_the_oidc_plugin(stub: Path) -> None:
    """A browser without a session must reach MLflow to be sent to the identity provider."""
    accounts = render(stub, MLFLOW_AUTH_MODE="accounts", MLFLOW_USERNAME=None, MLFLOW_PASSWORD=None)
    sso = render(stub, MLFLOW_AUTH_MODE="sso", MLFLOW_USERNAME=None, MLFLOW_PASSWORD=None)
    assert '"" 1;' in accounts and '"" 0;' in sso
    # Otherwise exactly accounts mode: Authorization through, same-origin rule, /elb-status.
    assert sso.replace('"" 0;', '"" 1;') == accounts
    assert not (stub.parent / "runtime" / "htpasswd").exists()
    nginx_accepts(stub)


@pytest.mark.parametrize("mode", ["oidc", "Accounts", "shared; include x"])
def test_unknown_mode_is_refused(stub: Path, mode: str) -> None:
    result = run(stub, MLFLOW_AUTH_MODE=mode)
    assert result.returncode != 0
    assert "MLFLOW_AUTH_MODE must be shared, accounts or sso" in result.stderr
    assert not (stub.parent / "argv").exists()


IAM = {"MLFLOW_AUTH_MODE": "accounts", "MLFLOW_USERNAME": None, "MLFLOW_PASSWORD": None}


def server_blocks(config: str) -> list[str]:
    """The server { ... } blocks of a rendered config, in order."""
    return re.findall(r"^    server \{\n.*?^    \}\n", config, re.M | re.S)


def test_without_iam_listen_there_is_one_server_and_it_removes_the_caller_header(stub: Path) -> None:
    for overrides in ({}, IAM, {**IAM, "MLFLOW_AUTH_MODE": "sso"}):
        config = render(stub, **overrides)
        (password,) = server_blocks(config)
        assert 'proxy_set_header X-Mlflow-Iam-Caller "";' in password
        assert "include server_common.conf;" in password
        assert "@IAM_SERVER" not in config
        nginx_accepts(stub)


@pytest.mark.parametrize("mode", ["accounts", "sso"])
def test_iam_listen_adds_a_server_that_needs_the_caller_and_drops_authorization(stub: Path, mode: str) -> None:
    result = run(stub, **{**IAM, "MLFLOW_AUTH_MODE": mode}, NGINX_PORT="18080", NGINX_IAM_LISTEN="18081")
    assert result.returncode == 0, result.stderr
    assert "127.0.0.1:18081 (IAM sign-in)" in result.stderr
    config = (stub.parent / "runtime" / "nginx.conf").read_text()
    assert "@" not in re.sub(r"#.*", "", config), "placeholder left unrendered"
    password, iam = server_blocks(config)
    assert "listen 127.0.0.1:18080 default_server;" in password
    assert 'proxy_set_header X-Mlflow-Iam-Caller "";' in password
    assert "proxy_set_header Authorization $http_authorization;" in password
    assert "listen 127.0.0.1:18081;" in iam
    assert "auth_basic off;" in iam
    assert 'proxy_set_header Authorization "";' in iam
    # Passed on as received (every copy), so MLflow sees and refuses a second one.
    assert "X-Mlflow-Iam-Caller" not in re.sub(r"#.*", "", iam)
    assert "if ($no_iam_caller) {" in iam and "return 401" in iam
    # The same cross-site check, headers and health path: the one included part.
    assert "include server_common.conf;" in iam
    nginx_accepts(stub)


@pytest.mark.parametrize("mode", ["shared"])
def test_iam_listen_is_refused_in_a_mode_without_iam_sign_in(stub: Path, mode: str) -> None:
    result = run(stub, **{**IAM, "MLFLOW_AUTH_MODE": mode, "MLFLOW_USERNAME": "alice", "MLFLOW_PASSWORD": PASSWORD},
                 NGINX_IAM_LISTEN="8081")  # fmt: skip
    assert result.returncode != 0
    assert f"NGINX_IAM_LISTEN is set, but {mode} mode has no IAM sign-in; refusing to start" in result.stderr
    assert not (stub.parent / "argv").exists()


@pytest.mark.parametrize("value", ["8081; include /etc/passwd", "0", "70000", "8080", "127.0.0.1:8081", "-1"])
def test_iam_listen_must_be_another_port(stub: Path, value: str) -> None:
    result = run(stub, **IAM, NGINX_IAM_LISTEN=value)
    assert result.returncode != 0, result.stderr
    assert "NGINX_IAM_LISTEN must be" in result.stderr
    assert not (stub.parent / "argv").exists()
