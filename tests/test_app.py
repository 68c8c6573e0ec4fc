"""The CDK app through the pinned CLI, the way users run it: offline, no credentials."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacks import names

ROOT = Path(__file__).resolve().parent.parent
CDK = ROOT / "node_modules" / ".bin" / "cdk"


def _offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "CDK_DEFAULT_ACCOUNT"}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # cdk.json runs python3
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        CDK_DISABLE_CLI_TELEMETRY="true",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
    )
    return env


def _cdk(*args: str) -> subprocess.CompletedProcess[str]:
    if not CDK.exists():
        pytest.fail("node_modules/.bin/cdk is missing: run `npm ci` (make test does)")
    return subprocess.run(
        [str(CDK), *args, "--no-notices"],
        cwd=ROOT,
        env=_offline_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_pinned_cli_version() -> None:
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"]
    assert pinned.startswith("2.1148.")
    result = _cdk("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(pinned)


def test_cli_synthesizes_exactly_the_four_stacks_offline(tmp_path: Path) -> None:
    out = tmp_path / "cdk.out"
    result = _cdk("synth", "--all", "--quiet", "--output", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    listed = _cdk("list", "--output", str(tmp_path / "list.out"))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == list(names.ALL_STACKS)
    assert sorted(p.name for p in out.glob("*.template.json")) == sorted(
        f"{name}.template.json" for name in names.ALL_STACKS
    )
    assert not (ROOT / "cdk.context.json").exists(), "synth must not perform context lookups"


def test_bad_configuration_stops_synth_with_one_clear_line(tmp_path: Path) -> None:
    result = _cdk("synth", "--all", "--quiet", "-c", "task_memory_mib=3000", "--output", str(tmp_path / "o"))
    assert result.returncode != 0
    assert "error: Invalid configuration: task_memory_mib=3000" in result.stderr
    assert "Traceback" not in result.stderr and "jsii" not in result.stderr.lower()


def test_app_py_exits_2_on_a_bad_value_without_a_traceback() -> None:
    env = _offline_env() | {"CDK_CONTEXT_JSON": json.dumps({"vpc_cidr": "10.0.0.0/33"}), "CDK_OUTDIR": "/nonexistent"}
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: Invalid configuration: vpc_cidr"), result.stderr
