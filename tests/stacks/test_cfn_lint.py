"""cfn-lint on every synthesized template: no errors, and only justified warnings.

Findings are kept beside each cached assembly (tests/synth.py), so a template is linted
once per state of the sources rather than once per run.
"""

import functools
import hashlib
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from stacks import names
from tests.stacks.helpers import DOMAIN_CONTEXT, SSO_CONTEXT
from tests.synth import (
    IAM_SCALE_TO_ZERO_VARIANT,
    MODEL_DEPLOYMENT_VARIANT,
    SSO_MODEL_DEPLOYMENT_VARIANT,
    synth_directory,
)

# Warnings we accept, each for a reason that holds for every occurrence.
JUSTIFIED_WARNINGS = {
    # aws-cdk-lib adds explicit DependsOn next to Ref/GetAtt for its custom-resource
    # providers and for the ECS service -> listener ordering; redundant but harmless.
    "W3005": "redundant DependsOn emitted by aws-cdk-lib",
}


LINT_ARGS = ("--format", "json")


def _lint(*templates: Path) -> list[dict]:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), *LINT_ARGS, *map(str, templates)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode in (0, 2, 4, 6, 8, 10, 12, 14), result.stderr
    return json.loads(result.stdout or "[]")


# The default app, accounts mode with two profiles (the same overrides the stack tests
# synthesize), and both with a custom domain (HTTPS listener, custom domain name).
ACCOUNTS = {"auth_mode": "accounts", "user_profiles": "alice,bob"}
# sso with Cognito: pool, clients, the gateway's sign-in URL registration (an external
# issuer adds no resource type of its own: an imported secret, a plain one per profile).
VARIANTS = {
    "defaults": {},
    "accounts": ACCOUNTS,
    "domain-accounts": {**DOMAIN_CONTEXT, **ACCOUNTS},
    "sso": SSO_CONTEXT,
    "model-deployments": MODEL_DEPLOYMENT_VARIANT,
    "sso-model-deployments": SSO_MODEL_DEPLOYMENT_VARIANT,
    # Every schedule of the shared mode's scale to zero, and the IAM listener's.
    "scale-to-zero-iam": IAM_SCALE_TO_ZERO_VARIANT,
}


STACKS = list(names.ALL_STACKS)


def _findings_file(assembly: Path) -> Path:
    """Where one assembly's findings are kept, named for how cfn-lint ran on it.

    The assembly's folder belongs to one state of the sources and installed
    packages (cfn-lint's version among them, tests/synth.py), so its templates,
    and what this cfn-lint says of them, never change.
    """
    how = hashlib.sha256(json.dumps([version("cfn-lint"), LINT_ARGS]).encode()).hexdigest()[:16]
    return assembly / f"cfn-lint-{how}.json"


@functools.lru_cache(maxsize=None)
def _lint_all() -> dict[tuple[str, str], list[dict]]:
    """(variant, stack) -> findings; one cfn-lint run for the apps not linted yet (its start-up dominates the time)."""
    assemblies = {variant: synth_directory(**overrides) for variant, overrides in VARIANTS.items()}
    unlinted = {variant: path for variant, path in assemblies.items() if not _findings_file(path).exists()}
    templates = {
        (variant, stack): assembly / f"{stack}.template.json"
        for variant, assembly in unlinted.items()
        for stack in STACKS
    }
    if templates:
        findings = _lint(*templates.values())
        by_template = {key: [f for f in findings if Path(f["Filename"]) == path] for key, path in templates.items()}
        assert sum(map(len, by_template.values())) == len(findings), "a finding names no template of the apps"
        for variant, assembly in unlinted.items():
            partial = assembly / f".{_findings_file(assembly).name}.{os.getpid()}"
            partial.write_text(json.dumps({stack: by_template[variant, stack] for stack in STACKS}))
            partial.rename(_findings_file(assembly))
    return {
        (variant, stack): found
        for variant, assembly in assemblies.items()
        for stack, found in json.loads(_findings_file(assembly).read_text()).items()
    }


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("stack_name", STACKS)
def test_template_is_lint_clean(stack_name: str, variant: str) -> None:
    findings = _lint_all()[variant, stack_name]
    unexpected = [
        f"{f['Rule']['Id']} {f['Message']}"
        for f in findings
        if f["Rule"]["Id"] not in JUSTIFIED_WARNINGS or f["Level"] == "Error"
    ]
    assert unexpected == []


def test_lint_reports_a_broken_template(tmp_path: Path) -> None:
    broken = tmp_path / "broken.template.json"
    broken.write_text(json.dumps({"Resources": {"Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"Nope": 1}}}}))
    fine = tmp_path / "fine.template.json"
    fine.write_text(json.dumps({"Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}}}))
    findings = _lint(fine, broken)
    assert any(f["Level"] == "Error" for f in findings)
    # Findings name their template, which is how each stack gets its own.
    assert {Path(f["Filename"]).name for f in findings} == {"broken.template.json"}
