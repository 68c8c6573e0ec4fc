"""stacks/components/tracking_service_props.py: the props refuse a mode's missing needs before anything is built."""

import aws_cdk as cdk
import pytest
from aws_cdk import aws_secretsmanager as secretsmanager

from stacks.auth_modes import MODES
from stacks.components.tracking_service_props import AuthSettings, OidcSettings


def _secret() -> secretsmanager.ISecret:
    stack = cdk.Stack(cdk.App())
    return secretsmanager.Secret.from_secret_name_v2(stack, "Secret", "any")


@pytest.mark.parametrize("mode", [mode for mode, needs in MODES.items() if needs.session_key])
def test_a_mode_with_sessions_needs_the_session_key(mode: str) -> None:
    secret = _secret()
    oidc = OidcSettings(discovery_url="https://id.example/", client_secret=secret, admin_group="a", allowed_group=None)
    with pytest.raises(ValueError, match=f"{mode} mode needs a session key secret"):
        AuthSettings(mode=mode, default_permission="READ", server_credentials=secret, oidc=oidc)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", [mode for mode, needs in MODES.items() if needs.sign_in_provider])
def test_a_mode_with_sign_in_needs_the_provider(mode: str) -> None:
    secret = _secret()
    with pytest.raises(ValueError, match=f"{mode} mode needs the OIDC provider's settings"):
        AuthSettings(mode=mode, default_permission="READ", server_credentials=secret, session_key=secret)  # type: ignore[arg-type]


def test_props_are_frozen() -> None:
    auth = AuthSettings(mode="shared", default_permission="READ", server_credentials=_secret())
    with pytest.raises(AttributeError):
        auth.mode = "accounts"  # type: ignore[misc]
