"""MLflow's SigV4 signer (requests-auth-aws-sigv4) for the keys and region an environment holds."""

from __future__ import annotations

from collections.abc import Mapping

from requests_auth_aws_sigv4 import AWSSigV4


def env_signer(env: Mapping[str, str]) -> AWSSigV4:
    """The signer a client with `env` (MlflowStack.signed_client_env, make local's key file, a role session) uses."""
    return AWSSigV4(
        "execute-api", region=env["AWS_REGION"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], aws_session_token=env.get("AWS_SESSION_TOKEN"),
    )  # fmt: skip
