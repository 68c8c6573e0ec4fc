"""accounts mode: a colleague with no grant reaches none of an experiment's GenAI resources (genai_resources.py)."""

from __future__ import annotations

import functools

import pytest

from localrun.stack import MlflowStack
from tests.integration.genai_resources import assert_colleague_refused, make_owned
from tests.integration.mlflow_users import ACCOUNTS_GROUP, Accounts, api

pytestmark = [pytest.mark.integration, ACCOUNTS_GROUP]


def test_issues_label_schemas_review_queues_and_datasets_stay_the_owners(
    accounts_stack: MlflowStack, accounts: Accounts
) -> None:
    a, b = accounts.new_user("genai-owner"), accounts.new_user("genai-colleague")
    owner = functools.partial(api, accounts_stack, account=a)
    colleague = functools.partial(api, accounts_stack, account=b)
    assert_colleague_refused(owner, colleague, make_owned(owner, colleague), b.username)
