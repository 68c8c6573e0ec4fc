"""sso mode: a colleague's app client reaches none of another's GenAI resources (genai_resources.py)."""

from __future__ import annotations

import pytest
import requests

from localrun.stack import MlflowStack
from tests.integration.conftest import SSO_COLLEAGUE, SSO_GROUP, SSO_MACHINE
from tests.integration.genai_resources import Caller, assert_colleague_refused, make_owned

pytestmark = [pytest.mark.integration, SSO_GROUP]


def bearer_caller(stack: MlflowStack, client_id: str) -> Caller:
    assert stack.oidc is not None
    headers = {"Authorization": f"Bearer {stack.oidc.client_credentials_token(client_id)}"}

    def call(method: str, path: str, **kwargs: object) -> requests.Response:
        return requests.request(method, stack.proxy_url + path, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]

    return call


def test_issues_label_schemas_review_queues_and_datasets_stay_the_owners(sso_stack: MlflowStack) -> None:
    owner, colleague = bearer_caller(sso_stack, SSO_MACHINE), bearer_caller(sso_stack, SSO_COLLEAGUE)
    assert_colleague_refused(owner, colleague, make_owned(owner, colleague), SSO_COLLEAGUE)
