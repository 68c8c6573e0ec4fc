"""The database URI the mlflow entrypoint builds verifies the server for real.

A throwaway CA signs a certificate for `localhost`; PostgreSQL serves it. With
the entrypoint's default sslmode (verify-full) the connection succeeds only
with that CA and that host name, exactly what protects the Aurora connection
with the RDS bundle in the image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import sqlalchemy

from localrun.services import Postgres
from localrun.stack import new_password
from tests.docker.image_modules import image_module

pytestmark = pytest.mark.integration

DB_NAME = "mlflow"
DB_USER = "mlflow"
DB_PASSWORD = new_password("@:/%")


def openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", key, "-out", cert, cwd=directory)  # fmt: skip
    return key, cert


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate it signed for `localhost` only, and an unrelated CA."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl not found: it is one of the system packages `make test` installs")
    directory = tmp_path_factory.mktemp("tls")
    ca_key, ca_cert = make_ca(directory, "test-ca")
    _, other_ca = make_ca(directory, "other-ca")
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", "server.key", "-out", "server.csr", cwd=directory)  # fmt: skip
    openssl("x509", "-req", "-in", "server.csr", "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.pem", cwd=directory)  # fmt: skip
    return {
        "ca": ca_cert, "other_ca": other_ca,
        "server_cert": directory / "server.pem", "server_key": directory / "server.key",
    }  # fmt: skip


@pytest.fixture(scope="module")
def tls_postgres(tmp_path_factory: pytest.TempPathFactory, certificates: dict[str, Path]) -> Iterator[Postgres]:
    root = tmp_path_factory.mktemp("tls-postgres")
    server = Postgres(
        root / "postgres", log_dir=root / "logs", superuser_password=new_password(),
        settings={"ssl": "on", "ssl_cert_file": "server.pem", "ssl_key_file": "server.key"},
    )  # fmt: skip
    # PostgreSQL reads the key only if its own user owns it and nobody else can read it.
    for name in ("server_cert", "server_key"):
        target = server.workdir / certificates[name].name
        shutil.copy(certificates[name], target)
        target.chmod(0o600)
        if server.run_as:
            os.chown(target, *server.run_as)
    # Relative file names resolve against the data directory.
    server.settings = {k: str(server.workdir / v) if k.endswith("_file") else v for k, v in server.settings.items()}
    server.start()
    server.ensure_database(DB_NAME, DB_USER, DB_PASSWORD)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def entrypoint() -> Iterator[ModuleType]:
    with image_module("entrypoint") as module:
        yield module


def connect(entrypoint: ModuleType, server: Postgres, **env: str) -> bool:
    """Connect with the URI the entrypoint builds (default sslmode); True if the session uses TLS."""
    settings = {
        "DB_HOST": "localhost", "DB_PORT": str(server.port), "DB_NAME": DB_NAME,
        "DB_USERNAME": DB_USER, "DB_PASSWORD": DB_PASSWORD, **env,
    }  # fmt: skip
    engine = sqlalchemy.create_engine(entrypoint.backend_store_uri(settings), poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            return bool(connection.execute(sqlalchemy.text(query)).scalar())
    finally:
        engine.dispose()


def test_verify_full_accepts_the_right_ca_and_host(entrypoint, tls_postgres, certificates) -> None:
    assert connect(entrypoint, tls_postgres, DB_SSLROOTCERT=str(certificates["ca"])) is True


def test_verify_full_refuses_a_certificate_from_another_ca(entrypoint, tls_postgres, certificates) -> None:
    with pytest.raises(sqlalchemy.exc.OperationalError, match="certificate verify failed"):
        connect(entrypoint, tls_postgres, DB_SSLROOTCERT=str(certificates["other_ca"]))


def test_verify_full_refuses_a_certificate_for_another_host(entrypoint, tls_postgres, certificates) -> None:
    # Same server, same CA, but reached as 127.0.0.1: the certificate names only localhost.
    with pytest.raises(sqlalchemy.exc.OperationalError, match="does not match host name"):
        connect(entrypoint, tls_postgres, DB_HOST="127.0.0.1", DB_SSLROOTCERT=str(certificates["ca"]))


def test_require_would_trust_any_certificate(entrypoint, tls_postgres, certificates) -> None:
    """What verify-full closes: sslmode=require encrypts, but ignores who signed the certificate."""
    assert connect(entrypoint, tls_postgres, DB_SSLMODE="require", DB_HOST="127.0.0.1") is True
