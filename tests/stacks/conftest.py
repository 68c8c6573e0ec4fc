"""Synthesized templates, shared by the stack tests (synthesis takes seconds)."""

import pytest

from stacks import names
from tests.stacks.helpers import SSO_CONTEXT
from tests.synth import Template, synth_templates


@pytest.fixture(scope="session")
def templates() -> dict[str, Template]:
    return synth_templates()


@pytest.fixture(scope="session")
def vpc_template(templates: dict[str, Template]) -> Template:
    return templates[names.VPC_STACK]


@pytest.fixture(scope="session")
def gateway_template(templates: dict[str, Template]) -> Template:
    return templates[names.GATEWAY_STACK]


@pytest.fixture(scope="session")
def monitoring_template(templates: dict[str, Template]) -> Template:
    return templates[names.MONITORING_STACK]


@pytest.fixture(scope="session")
def studio_template(templates: dict[str, Template]) -> Template:
    return templates[names.STUDIO_STACK]


@pytest.fixture(scope="session")
def dev_templates() -> dict[str, Template]:
    """removal_policy=destroy: the throwaway-dev variant."""
    return synth_templates(removal_policy="destroy")


@pytest.fixture(scope="session")
def accounts_templates() -> dict[str, Template]:
    """auth_mode=accounts with two Studio profiles (IAM sign-in on, the mode's default)."""
    return synth_templates(auth_mode="accounts", user_profiles="alice,bob")


@pytest.fixture(scope="session")
def accounts_password_templates() -> dict[str, Template]:
    """auth_mode=accounts with two Studio profiles and IAM sign-in off: the roles read their logins."""
    return synth_templates(auth_mode="accounts", user_profiles="alice,bob", iam_sign_in="false")


@pytest.fixture(scope="session")
def sso_templates() -> dict[str, Template]:
    """auth_mode=sso with the Cognito pool and two Studio profiles."""
    return synth_templates(**SSO_CONTEXT)
