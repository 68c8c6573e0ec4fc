"""lab/source_dir/mlflow_setup.py in sso mode: a client-credentials token from a real OpenID provider.

The profile's secret (moto in-process) holds an app client; the token comes
from npm `oidc-provider` on loopback (localrun/oidc.py), the same provider
`make local AUTH_MODE=sso` and the sso integration tests use.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow_setup import MlflowSetupError, configure_mlflow

from localrun.oidc import OidcClient, OidcProvider

pytestmark = pytest.mark.integration  # npm oidc-provider on loopback

URL = "https://abc123.execute-api.eu-west-1.amazonaws.com"
SECRET_NAME = "mlflow/studio-alice"
AUDIENCE = "mlflow-ui-client"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    workdir: Path = tmp_path_factory.mktemp("oidc")
    server = OidcProvider(workdir, log_dir=workdir, users=[], clients=[OidcClient("studio-alice")], audience=AUDIENCE)
    server.start()
    yield server
    server.stop()


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def deploy_sso(session, provider: OidcProvider, **fields: str) -> str:
    client = provider.clients["studio-alice"]
    login = {"client_id": client.client_id, "client_secret": client.client_secret, "token_url": provider.token_url}
    login |= {"scope": "mlflow"} | fields
    session.client("ssm").put_parameter(Name="/mlflow/tracking-url", Value=URL, Type="String")
    session.client("secretsmanager").create_secret(Name=SECRET_NAME, SecretString=json.dumps(login))
    return client.client_secret


def test_sso_login_exports_a_bearer_token_and_drops_the_password(aws, provider: OidcProvider) -> None:
    deploy_sso(aws, provider)
    env = {"MLFLOW_TRACKING_USERNAME": "left-over", "MLFLOW_TRACKING_PASSWORD": "left-over-password"}
    connection = configure_mlflow(
        tracking_url_parameter="/mlflow/tracking-url", secret_name=SECRET_NAME, session=aws, environ=env
    )
    assert env["MLFLOW_TRACKING_URI"] == URL
    assert "MLFLOW_TRACKING_USERNAME" not in env and "MLFLOW_TRACKING_PASSWORD" not in env
    token = claims(env["MLFLOW_TRACKING_TOKEN"])
    # What the server checks: issuer, audience, the client the user is named after, expiry.
    assert (token["iss"], token["aud"], token["client_id"]) == (provider.issuer, AUDIENCE, "studio-alice")
    assert token["exp"] > token["iat"]
    assert connection.username == "studio-alice"
    assert env["MLFLOW_TRACKING_TOKEN"] not in repr(connection) + str(connection)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"client_secret": "not-the-secret-value"}, "Could not get a token for app client 'studio-alice'"),
        ({"token_url": ""}, "needs non-empty string fields 'client_id', 'client_secret' and 'token_url'"),
        ({"token_url": "http://idp.example.com/token"}, "token_url must be an https URL"),
    ],
)
def test_sso_login_problems_are_one_line_errors(aws, provider: OidcProvider, fields: dict, message: str) -> None:
    secret = deploy_sso(aws, provider, **fields)
    with pytest.raises(MlflowSetupError, match=message) as error:
        configure_mlflow(
            tracking_url_parameter="/mlflow/tracking-url", secret_name=SECRET_NAME, session=aws, environ={}
        )
    text = str(error.value)
    assert "\n" not in text
    assert secret not in text and "not-the-secret-value" not in text


def test_without_authlib_the_error_says_what_to_install(aws, provider: OidcProvider, monkeypatch) -> None:
    """Studio kernels and training containers lack Authlib unless it is installed: one line says which."""
    secret = deploy_sso(aws, provider)
    for name in ("authlib", "authlib.common.errors", "authlib.integrations.requests_client"):
        monkeypatch.setitem(sys.modules, name, None)  # `import` now raises ImportError
    expected = r"needs the OAuth client Authlib: pip install 'Authlib>=1.8,<2'$"
    with pytest.raises(MlflowSetupError, match=expected) as error:
        configure_mlflow(
            tracking_url_parameter="/mlflow/tracking-url", secret_name=SECRET_NAME, session=aws, environ={}
        )
    assert "\n" not in str(error.value) and secret not in str(error.value)
