"""The IAM sign-in settings: on by default where the mode maps callers, refused where it cannot, principals checked."""

import json
import re

import pytest

from stacks.auth_modes import MODES
from stacks.config import ConfigError, ProjectConfig, cdk_json_context

CI_ROLE = "arn:aws:iam::123456789012:role/ci"
CI_PRINCIPALS = {CI_ROLE: "ci", "arn:aws-us-gov:iam::123456789012:user/deployer": "deployer"}


def _config(**overrides: object) -> ProjectConfig:
    return ProjectConfig.from_context({**cdk_json_context(), **overrides})


def _error(**overrides: object) -> str:
    with pytest.raises(ConfigError) as caught:
        _config(**overrides)
    message = str(caught.value)
    assert message.startswith("Invalid configuration: ") and "\n" not in message
    return message


@pytest.mark.parametrize("mode", list(MODES))
def test_unset_follows_the_modes_row(mode: str) -> None:
    config = _config(auth_mode=mode)
    assert config.auth.iam_sign_in is None
    assert config.iam_sign_in_enabled is MODES[mode].iam_sign_in
    assert _config(auth_mode=mode, iam_sign_in="false").iam_sign_in_enabled is False


def test_accounts_mode_turns_it_on_by_default_and_off_on_request() -> None:
    assert _config(auth_mode="accounts").iam_sign_in_enabled
    assert _config(auth_mode="accounts", iam_sign_in="true").iam_sign_in_enabled
    assert _config(auth_mode="accounts", iam_sign_in=True).iam_sign_in_enabled
    assert not _config(auth_mode="accounts", iam_sign_in=False).iam_sign_in_enabled
    assert not _config().iam_sign_in_enabled


EXTERNAL = {
    "auth_mode": "sso",
    "oidc_provider": "external",
    "oidc_discovery_url": "https://login.example.com/.well-known/openid-configuration",
    "oidc_client_secret_name": "mlflow/oidc",
}


def test_sso_mode_turns_it_on_by_default_with_the_cognito_pool_only() -> None:
    assert _config(auth_mode="sso").iam_sign_in_enabled
    assert not _config(auth_mode="sso", iam_sign_in="false").iam_sign_in_enabled
    # An external provider's profile clients are unknown at synth: on only on request (iam_principals).
    assert not _config(**EXTERNAL).iam_sign_in_enabled
    with_ci = _config(**EXTERNAL, iam_sign_in="true", iam_principals=CI_PRINCIPALS)
    assert with_ci.iam_sign_in_enabled and with_ci.auth.iam_principals == CI_PRINCIPALS
    assert "iam_principals=" in _error(**EXTERNAL, iam_principals=CI_PRINCIPALS)


@pytest.mark.parametrize("mode", [mode for mode, needs in MODES.items() if not needs.iam_sign_in])
def test_true_is_refused_where_the_mode_cannot_map_a_caller(mode: str) -> None:
    message = _error(auth_mode=mode, iam_sign_in="true")
    assert re.search(r"\biam_sign_in=True is not supported with auth_mode=" + mode, message), message
    assert "true with auth_mode=accounts" in message


def test_a_word_that_is_not_a_boolean_is_refused() -> None:
    message = _error(auth_mode="accounts", iam_sign_in="maybe")
    assert "iam_sign_in='maybe' is not true, false or empty" in message


def test_principals_from_json_text_or_an_object() -> None:
    from_text = _config(auth_mode="accounts", iam_principals=json.dumps(CI_PRINCIPALS))
    from_object = _config(auth_mode="accounts", iam_principals=CI_PRINCIPALS)
    assert from_text.auth.iam_principals == from_object.auth.iam_principals == CI_PRINCIPALS
    assert _config(auth_mode="accounts", iam_principals="  ").auth.iam_principals == {}
    assert _config().auth.iam_principals == {}


@pytest.mark.parametrize(
    ("principals", "problem"),
    [
        ("{oops", "is not JSON"),
        (json.dumps([CI_ROLE]), "is not a JSON object of ARN -> MLflow user"),
        (json.dumps({"arn:aws:iam::123456789012:root": "admin"}), "is not an IAM role, assumed-role or user ARN"),
        (json.dumps({"arn:aws:iam::123456789012:federated-user/bob": "bob"}), "is not an IAM role"),
        (json.dumps({CI_ROLE + " ": "ci"}), "is not an IAM role"),
        (json.dumps({CI_ROLE: "has space"}), "is not an MLflow user name"),
        (json.dumps({CI_ROLE: 7}), "is not an MLflow user name"),
        (json.dumps({CI_ROLE: "ci", "arn:aws:iam::123456789012:role/team/ci": "other"}), "mapped to two users"),
    ],
)
def test_bad_principals_are_refused_naming_the_key(principals: str, problem: str) -> None:
    message = _error(auth_mode="accounts", iam_principals=principals)
    assert message.startswith("Invalid configuration: iam_principals=") and problem in message, message


def test_principals_need_iam_sign_in_on() -> None:
    for overrides in ({}, {"auth_mode": "accounts", "iam_sign_in": "false"}):
        message = _error(**overrides, iam_principals=json.dumps({CI_ROLE: "ci"}))
        assert "iam_principals=" in message and "only used with IAM sign-in on" in message, message
