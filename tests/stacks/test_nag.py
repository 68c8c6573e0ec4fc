"""cdk-nag AwsSolutions runs on every synth; the app must come out with zero open findings."""

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3

from stacks import names
from stacks.nag_acknowledgments import _nag_name
from tests.stacks.helpers import DOMAIN_CONTEXT
from tests.synth import (
    DAY_TWO_VARIANT,
    IAM_SCALE_TO_ZERO_VARIANT,
    MODEL_DEPLOYMENT_VARIANT,
    SSO_MODEL_DEPLOYMENT_VARIANT,
    build_app,
    synth_directory,
    synth_templates,
)

VARIANTS = [
    {},
    {"removal_policy": "destroy"},
    {"sagemaker_domain_id": "d-abcdef123456"},
    {"az_count": 3, "nat_gateways": 3, "aurora_min_acu": 0.5},
    {"auth_mode": "accounts", "user_profiles": "alice,bob"},
    {"auth_mode": "accounts", "removal_policy": "destroy", "sagemaker_domain_id": "d-abcdef123456"},
    DAY_TWO_VARIANT,
    DOMAIN_CONTEXT,
    {**DOMAIN_CONTEXT, "auth_mode": "accounts", "user_profiles": "alice,bob"},
    MODEL_DEPLOYMENT_VARIANT,
    SSO_MODEL_DEPLOYMENT_VARIANT,
    # Scale to zero with IAM sign-in: every schedule the shared mode has, and the IAM listener's.
    IAM_SCALE_TO_ZERO_VARIANT,
]


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_synth_passes_aws_solutions_checks(overrides: dict[str, Any]) -> None:
    # app.synth() raises ValidationFailed when any finding is unacknowledged.
    assert set(synth_templates(**overrides)) == set(names.ALL_STACKS)


def test_an_unacknowledged_finding_fails_synth() -> None:
    """The plugin is really active: a bucket without TLS enforcement must stop synth."""
    app, stacks = build_app()
    s3.Bucket(stacks.gateway, "CarelessBucket", enforce_ssl=False)
    with pytest.raises(RuntimeError, match=r"AwsSolutions-S10"):
        app.synth()


def _acknowledgments(assembly: Path) -> dict[str, str]:
    """(construct path, rule id) -> reason, from the metadata Validations.acknowledge() writes.

    Read from the synthesized assembly, which keeps every construct's metadata in its stack's
    metadata file: the cached synth, instead of building the app again.
    """
    found = {}
    manifest = json.loads((assembly / "manifest.json").read_text())
    for artifact in manifest["artifacts"].values():
        if "additionalMetadataFile" not in artifact:
            continue
        metadata = json.loads((assembly / artifact["additionalMetadataFile"]).read_text())
        for path, entries in metadata.items():
            for entry in entries:
                if entry["type"] == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                    for rule, reason in entry["data"].items():
                        found[f"{path.lstrip('/')} {rule}"] = reason
    return found


def test_every_acknowledgment_names_a_rule_and_gives_a_reason() -> None:
    # aws-cdk-lib acknowledges a few CloudFormation-Validate rules itself; ours are AwsSolutions.
    ours = {where: reason for where, reason in _acknowledgments(synth_directory()).items() if "AwsSolutions" in where}
    assert len(ours) >= 20
    for where, reason in ours.items():
        assert " AwsSolutions::AwsSolutions-" in where, where
        assert len(reason.split()) >= 8, f"reason too thin for {where}: {reason}"


def test_wildcard_names_render_like_cdk_nag() -> None:
    joined = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::", {"Fn::GetAtt": ["B1", "Arn"]}, "/x*"]]}
    assert _nag_name(joined) == "arn:<AWS::Partition>:s3:::<B1.Arn>/x*"
    assert _nag_name({"Fn::Sub": "a-${AWS::Region}"}) == '{"Fn::Sub":"a-${AWS::Region}"}'
