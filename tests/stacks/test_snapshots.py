"""One JSON snapshot per stack: any template change shows up as a diff to review.

Asset hashes change with every edit under docker/ or every CDK release, so
they are normalised; everything else is compared exactly. Update with
`pytest tests/stacks/test_snapshots.py --snapshot-update` after reading the diff.
"""

import json
import re
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from stacks import names

ASSET_HASH = re.compile(r"\b[0-9a-f]{64}\b")


def normalise(template: dict[str, Any]) -> Any:
    return json.loads(ASSET_HASH.sub("<asset-hash>", json.dumps(template)))


@pytest.fixture
def snapshot_json(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


@pytest.mark.parametrize("stack_name", names.ALL_STACKS)
def test_template_matches_snapshot(
    stack_name: str, templates: dict[str, Any], snapshot_json: SnapshotAssertion
) -> None:
    assert normalise(templates[stack_name]) == snapshot_json


@pytest.mark.parametrize("stack_name", [names.VPC_STACK, names.GATEWAY_STACK, names.STUDIO_STACK])
def test_accounts_mode_template_matches_snapshot(
    stack_name: str, accounts_templates: dict[str, Any], snapshot_json: SnapshotAssertion
) -> None:
    """auth_mode=accounts with profiles alice and bob (the gateway adds the IAM sign-in API)."""
    assert normalise(accounts_templates[stack_name]) == snapshot_json


@pytest.mark.parametrize("stack_name", [names.VPC_STACK, names.GATEWAY_STACK, names.STUDIO_STACK])
def test_sso_mode_template_matches_snapshot(
    stack_name: str, sso_templates: dict[str, Any], snapshot_json: SnapshotAssertion
) -> None:
    """auth_mode=sso with the Cognito pool and profiles alice and bob (the gateway registers the sign-in URLs)."""
    assert normalise(sso_templates[stack_name]) == snapshot_json


def test_normalise_hides_only_asset_hashes() -> None:
    digest = "a" * 64
    template = {"Image": f"repo:{digest}", "Name": "mlflow", "Short": "a" * 63}
    assert normalise(template) == {"Image": "repo:<asset-hash>", "Name": "mlflow", "Short": "a" * 63}
