"""Synthesize the app the way `cdk synth` does, but in-process and offline."""

import atexit
import fcntl
import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk

from stacks.app_builder import build_stacks
from stacks.config import cdk_json_context, config_from_app
from stacks.project_stacks import ProjectStacks

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

REPO = Path(__file__).resolve().parents[1]
# Everything a synthesis reads besides its overrides: the stacks' code, the Docker
# contexts and Lambda code they package, the context, and this file's way of building.
SYNTH_INPUTS = ("stacks", "docker", "app.py", "cdk.json", "tests/synth.py")
# Synthesized assemblies kept across runs (`make clean` removes them with .pytest_cache).
CACHE_ROOT = REPO / ".pytest_cache" / "synth"
# Another source state's assemblies are removed once no run has used them for this long.
STALE_AFTER_SECONDS = 15 * 60


def _input_files(repo: Path) -> list[Path]:
    found = []
    for name in SYNTH_INPUTS:
        path = repo / name
        candidates = path.rglob("*") if path.is_dir() else [path]
        found += [f for f in candidates if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"]
    return sorted(found)


@functools.cache
def _installed() -> str:
    return "\n".join(sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()))


@functools.cache
def source_key(repo: Path = REPO) -> str:
    """A digest of every input of a synthesis: any change to them is a new key, so a stale template is never read.

    The inputs are the files of SYNTH_INPUTS (contents and names), the installed
    distributions' versions (aws-cdk-lib, cdk-nag, jsii, pydantic, ...), the Python
    version and the CDK_* environment variables the CDK reads.
    """
    digest = hashlib.sha256()
    for path in _input_files(repo):
        digest.update(f"{path.relative_to(repo)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(_installed().encode())
    digest.update(sys.version.encode())
    digest.update(json.dumps(sorted((k, v) for k, v in os.environ.items() if k.startswith("CDK_"))).encode())
    return digest.hexdigest()[:16]


def _prune_other_sources(root: Path, current: str) -> None:
    """Drop the assemblies of source states no run has used lately (each is tens of MB)."""
    for other in root.iterdir():
        if other.is_dir() and other.name != current and time.time() - other.stat().st_mtime > STALE_AFTER_SECONDS:
            shutil.rmtree(other, ignore_errors=True)


@functools.cache
def _cache_dir() -> Path:
    root = CACHE_ROOT
    root.mkdir(parents=True, exist_ok=True)
    current = root / source_key()
    current.mkdir(exist_ok=True)
    os.utime(current)  # in use: not stale for the other source states' runs
    _prune_other_sources(root, current.name)
    return current


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


@functools.lru_cache(maxsize=None)
def _synth(overrides_json: str) -> tuple[Path, dict[str, Template]]:
    """Synthesize a variant once for every run of the same sources.

    The assembly is kept under the source key: xdist workers and later runs read it,
    the first to need it holds the variant's lock and synthesizes (into a temporary
    folder renamed when complete, so no reader sees half an assembly).
    """
    shared = _cache_dir()
    key = hashlib.sha256(overrides_json.encode()).hexdigest()[:16]
    final = shared / key
    with open(shared / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (final / _TEMPLATES_FILE).exists():
            partial = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=shared))
            try:
                _synth_into(json.loads(overrides_json), partial)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            partial.rename(final)
    return final, json.loads((final / _TEMPLATES_FILE).read_text())


# The day-two settings away from their defaults, in one synth several test modules share
# (one synth per worker process instead of one per test).
DAY_TWO_VARIANT: dict[str, Any] = {
    "alarm_email": "ops@example.com",
    "backup_retention_days": 35,
    "artifact_version_retention_days": 7,
    "aurora_min_acu": 1,
    "aurora_max_acu": 16,
    "on_demand_task_count": 4,  # no Fargate Spot: every task up to max_task_count on regular Fargate
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
# The same in sso mode, where the deployment functions sign in with a login the tasks issue.
SSO_MODEL_DEPLOYMENT_VARIANT: dict[str, Any] = {**MODEL_DEPLOYMENT_VARIANT, "auth_mode": "sso"}


def synth_templates(**overrides: Any) -> dict[str, Template]:
    """Stack name -> synthesized CloudFormation template (cached per set of overrides)."""
    return _synth(json.dumps(overrides, sort_keys=True))[1]


def synth_directory(**overrides: Any) -> Path:
    """The cloud assembly directory (templates on disk, for cfn-lint)."""
    return _synth(json.dumps(overrides, sort_keys=True))[0]
