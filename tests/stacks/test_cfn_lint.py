"""cfn-lint on every synthesized template: no errors, and only justified warnings."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stacks import names
from tests.stacks.helpers import DOMAIN_CONTEXT
from tests.synth import synth_directory

# Warnings we accept, each for a reason that holds for every occurrence.
JUSTIFIED_WARNINGS = {
    # aws-cdk-lib adds explicit DependsOn next to Ref/GetAtt for its custom-resource
    # providers and for the ECS service -> listener ordering; redundant but harmless.
    "W3005": "redundant DependsOn emitted by aws-cdk-lib",
}


def _lint(template: Path) -> list[dict]:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--format", "json", str(template)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode in (0, 2, 4, 6, 8, 10, 12, 14), result.stderr
    return json.loads(result.stdout or "[]")


# (variant, stack): every stack by default; the stacks a custom domain changes with one.
TEMPLATES = [({}, name) for name in names.ALL_STACKS] + [
    (DOMAIN_CONTEXT, name) for name in (names.VPC_STACK, names.GATEWAY_STACK)
]


@pytest.mark.parametrize(
    ("overrides", "stack_name"), TEMPLATES, ids=[f"{name}{'-domain' if o else ''}" for o, name in TEMPLATES]
)
def test_template_is_lint_clean(overrides: dict, stack_name: str) -> None:
    template = synth_directory(**overrides) / f"{stack_name}.template.json"
    findings = _lint(template)
    unexpected = [
        f"{f['Rule']['Id']} {f['Message']}"
        for f in findings
        if f["Rule"]["Id"] not in JUSTIFIED_WARNINGS or f["Level"] == "Error"
    ]
    assert unexpected == []


def test_lint_reports_a_broken_template(tmp_path: Path) -> None:
    broken = tmp_path / "broken.template.json"
    broken.write_text(json.dumps({"Resources": {"Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"Nope": 1}}}}))
    assert any(f["Level"] == "Error" for f in _lint(broken))
