"""Synthesize the app the way `cdk synth` does, but in-process and offline."""

import atexit
import fcntl
import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk

from stacks.app_builder import build_stacks
from stacks.config import cdk_json_context, config_from_app
from stacks.project_stacks import ProjectStacks
from tests.conftest import SHARED_SYNTH_DIR_VARIABLE

Template = dict[str, Any]


def build_app(**overrides: Any) -> tuple[cdk.App, ProjectStacks]:
    """A cdk.App with cdk.json's context (which cdk.App() alone does not read) plus overrides."""
    context = {**cdk_json_context(), **overrides}
    outdir = tempfile.mkdtemp(prefix="cdk-test-")
    # Each assembly holds copies of the Docker contexts: removed when the test process ends.
    atexit.register(shutil.rmtree, outdir, ignore_errors=True)
    app = cdk.App(context=context, outdir=outdir)
    return app, build_stacks(app, config_from_app(app))


_TEMPLATES_FILE = "templates-by-stack.json"


def _synth_into(overrides: dict[str, Any], outdir: Path) -> dict[str, Template]:
    context = {**cdk_json_context(), **overrides}
    app = cdk.App(context=context, outdir=str(outdir))
    build_stacks(app, config_from_app(app))
    assembly = app.synth()
    templates = {
        stack.stack_name: stack.template
        for stack in assembly.stacks  # type: ignore[attr-defined]
    }
    (outdir / _TEMPLATES_FILE).write_text(json.dumps(templates))
    return templates


def _shared_synth(overrides_json: str, shared: Path) -> tuple[Path, dict[str, Template]]:
    """Synthesize once per variant for all workers: the first one holds the lock and synthesizes, the others read."""
    key = hashlib.sha256(overrides_json.encode()).hexdigest()[:16]
    final = shared / key
    with open(shared / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (final / _TEMPLATES_FILE).exists():
            partial = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=shared))
            _synth_into(json.loads(overrides_json), partial)
            partial.rename(final)
    return final, json.loads((final / _TEMPLATES_FILE).read_text())


@functools.lru_cache(maxsize=None)
def _synth(overrides_json: str) -> tuple[Path, dict[str, Template]]:
    shared = os.environ.get(SHARED_SYNTH_DIR_VARIABLE)
    if shared:
        return _shared_synth(overrides_json, Path(shared))
    outdir = Path(tempfile.mkdtemp(prefix="cdk-test-"))
    atexit.register(shutil.rmtree, outdir, ignore_errors=True)
    return outdir, _synth_into(json.loads(overrides_json), outdir)


# The day-two settings away from their defaults, in one synth several test modules share
# (one synth per worker process instead of one per test).
DAY_TWO_VARIANT: dict[str, Any] = {
    "alarm_email": "ops@example.com",
    "backup_retention_days": 35,
    "artifact_version_retention_days": 7,
    "aurora_min_acu": 1,
    "aurora_max_acu": 16,
}


# Zero tasks on weeknights and weekends (docs/operations.md, "Scaling to zero at night").
SCALE_TO_ZERO_VARIANT: dict[str, Any] = {
    "schedule_scale_to_zero": {"down": "cron(0 19 ? * MON-FRI *)", "up": "cron(0 7 ? * MON-FRI *)"},
}
# The same with IAM sign-in (accounts mode's default): the IAM listener is switched too.
IAM_SCALE_TO_ZERO_VARIANT: dict[str, Any] = {**SCALE_TO_ZERO_VARIANT, "auth_mode": "accounts"}


# One registered model that deploys when its alias moves (stacks/components/model_deployment.py).
MODEL_DEPLOYMENT_VARIANT: dict[str, Any] = {
    "model_deployments": [{"model_name": "churn", "alias": "champion", "instance_type": "ml.m5.large"}],
}


def synth_templates(**overrides: Any) -> dict[str, Template]:
    """Stack name -> synthesized CloudFormation template (cached per set of overrides)."""
    return _synth(json.dumps(overrides, sort_keys=True))[1]


def synth_directory(**overrides: Any) -> Path:
    """The cloud assembly directory (templates on disk, for cfn-lint)."""
    return _synth(json.dumps(overrides, sort_keys=True))[0]
